#include "engine/image_codec.h"

#include "gtest/gtest.h"

namespace kiln::engine {
namespace {

Image Gradient(int w, int h) {
  Image img{w, h, std::vector<uint8_t>(static_cast<size_t>(w) * h * 3)};
  for (size_t i = 0; i < img.rgb.size(); ++i) img.rgb[i] = static_cast<uint8_t>(i * 7 % 256);
  return img;
}

TEST(ImageCodec, PngRoundTripIsLossless) {
  Image img = Gradient(17, 9);
  auto png = EncodePng(img, {{"parameters", "a prompt — with UTF-8 ✓"}, {"kiln", "{}"}});
  ASSERT_TRUE(png.ok()) << png.status();
  auto back = DecodeImage(*png, {});
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->width, 17);
  EXPECT_EQ(back->height, 9);
  EXPECT_EQ(back->rgb, img.rgb);
  auto text = ReadPngText(*png);
  ASSERT_TRUE(text.ok());
  ASSERT_EQ(text->size(), 2u);
  EXPECT_EQ((*text)[0].first, "parameters");
  EXPECT_EQ((*text)[0].second, "a prompt — with UTF-8 ✓");
}

TEST(ImageCodec, EncodingIsDeterministic) {
  Image img = Gradient(8, 8);
  EXPECT_EQ(*EncodePng(img, {{"k", "v"}}), *EncodePng(img, {{"k", "v"}}));
}

TEST(ImageCodec, RejectsNonImagesAndLimits) {
  EXPECT_FALSE(DecodeImage("", {}).ok());
  EXPECT_FALSE(DecodeImage("GIF89a....", {}).ok());
  std::string png = *EncodePng(Gradient(64, 64), {});
  EXPECT_FALSE(DecodeImage(png.substr(0, png.size() / 2), {}).ok());  // truncated
  auto too_many = DecodeImage(png, {1 << 20, 32 * 32});
  ASSERT_FALSE(too_many.ok());
  EXPECT_NE(too_many.status().message().find("64x64"), absl::string_view::npos);
  EXPECT_FALSE(DecodeImage(png, {100, 1 << 20}).ok());  // too many bytes
  EXPECT_FALSE(EncodePng(Image{4, 4, {1, 2, 3}}, {}).ok());
}

TEST(ImageCodec, ResizeKeepsFlatColour) {
  Image img{4, 4, std::vector<uint8_t>(48, 200)};
  Image out = ResizeBilinear(img, 7, 3);
  EXPECT_EQ(out.width, 7);
  EXPECT_EQ(out.rgb, std::vector<uint8_t>(63, 200));
}

}  // namespace
}  // namespace kiln::engine
