#include "engine/image_codec.h"

#include <png.h>

#include <cstring>

#include "gtest/gtest.h"
#include "tests/testing/png_bomb.h"

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

// A PNG of any colour type, bit depth and interlacing, written by libpng from 8-bit samples
// (`channels` per pixel: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA).
std::string WritePng(int w, int h, int color_type, int channels, bool interlaced,
                     const std::vector<uint8_t>& samples) {
  std::string out;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    return "";
  }
  png_set_write_fn(
      png, &out,
      [](png_structp p, png_bytep data, png_size_t n) {
        static_cast<std::string*>(png_get_io_ptr(p))->append(reinterpret_cast<char*>(data), n);
      },
      [](png_structp) {});
  png_set_IHDR(png, info, w, h, 8, color_type,
               interlaced ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  png_text text{};
  text.compression = PNG_TEXT_COMPRESSION_zTXt;
  text.key = const_cast<char*>("Comment");
  text.text = const_cast<char*>("compressed text chunks are skipped unread");
  png_set_text(png, info, &text, 1);
  png_write_info(png, info);
  std::vector<png_bytep> rows(h);
  for (int y = 0; y < h; ++y) {
    rows[y] = const_cast<png_bytep>(samples.data() + static_cast<size_t>(y) * w * channels);
  }
  png_write_image(png, rows.data());
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return out;
}

TEST(ImageCodec, DecodesGrayAlphaAndInterlacedPngs) {
  const int w = 13, h = 7;
  std::vector<uint8_t> gray(w * h), rgba(w * h * 4);
  for (int i = 0; i < w * h; ++i) {
    gray[i] = static_cast<uint8_t>(i * 3);
    rgba[i * 4 + 0] = static_cast<uint8_t>(i);
    rgba[i * 4 + 1] = static_cast<uint8_t>(255 - i);
    rgba[i * 4 + 2] = static_cast<uint8_t>(i * 5);
    rgba[i * 4 + 3] = i % 2 ? 255 : 0;  // opaque, or fully transparent (white)
  }
  for (bool interlaced : {false, true}) {
    auto g = DecodeImage(WritePng(w, h, PNG_COLOR_TYPE_GRAY, 1, interlaced, gray), {});
    ASSERT_TRUE(g.ok()) << g.status();
    ASSERT_EQ(g->width, w);
    ASSERT_EQ(g->height, h);
    for (int i = 0; i < w * h; ++i) {
      for (int c = 0; c < 3; ++c) ASSERT_EQ(g->rgb[i * 3 + c], gray[i]) << i << " " << interlaced;
    }
    auto a = DecodeImage(WritePng(w, h, PNG_COLOR_TYPE_RGBA, 4, interlaced, rgba), {});
    ASSERT_TRUE(a.ok()) << a.status();
    for (int i = 0; i < w * h; ++i) {
      for (int c = 0; c < 3; ++c) {
        ASSERT_EQ(a->rgb[i * 3 + c], i % 2 ? rgba[i * 4 + c] : 255) << i << " " << interlaced;
      }
    }
  }
  EXPECT_EQ(DecodesRunning(), 0);
}

TEST(ImageCodec, APngIsNeverInflatedPastItsDeclaredSize) {
  // A 1x1 RGB image whose data stream goes on for 256 MiB of zeros after its one row.
  const std::string png = testing::PngBomb(size_t{256} << 20);
  auto img = DecodeImage(png, {});
  ASSERT_TRUE(img.ok()) << img.status();
  EXPECT_EQ(img->width, 1);
  EXPECT_EQ(img->rgb, std::vector<uint8_t>(3, 0));

  // A declared size over the limit is refused before any pixel memory.
  const std::string huge = testing::PngBomb(1 << 20, 100000, 100000);
  auto refused = DecodeImage(huge, {});
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("100000x100000; the limit is"), std::string::npos)
      << refused.status();
}

TEST(ImageCodec, ResizeKeepsFlatColour) {
  Image img{4, 4, std::vector<uint8_t>(48, 200)};
  Image out = ResizeBilinear(img, 7, 3);
  EXPECT_EQ(out.width, 7);
  EXPECT_EQ(out.rgb, std::vector<uint8_t>(63, 200));
}

}  // namespace
}  // namespace kiln::engine
