#include "http/multipart.h"

#include "gtest/gtest.h"

namespace kiln::http {
namespace {

const char kBody[] =
    "preamble\r\n"
    "--XyZ\r\n"
    "Content-Disposition: form-data; name=\"prompt\"\r\n\r\n"
    "make it blue\r\n"
    "--XyZ\r\n"
    "Content-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n"
    "Content-Type: image/png\r\n\r\n"
    "\x89PNG\r\n--not-a-boundary\r\n"
    "--XyZ--\r\n";

TEST(Multipart, ParsesFieldsAndFiles) {
  auto boundary = MultipartBoundary("multipart/form-data; boundary=XyZ");
  ASSERT_TRUE(boundary.ok());
  auto parts = ParseMultipart(std::string_view(kBody, sizeof(kBody) - 1), *boundary);
  ASSERT_TRUE(parts.ok()) << parts.status();
  ASSERT_EQ(parts->size(), 2u);
  EXPECT_EQ((*parts)[0].name, "prompt");
  EXPECT_EQ((*parts)[0].data, "make it blue");
  EXPECT_EQ((*parts)[1].filename, "a.png");
  EXPECT_EQ((*parts)[1].content_type, "image/png");
  EXPECT_EQ((*parts)[1].data, "\x89PNG\r\n--not-a-boundary");
}

TEST(Multipart, BoundaryFromQuotedParameter) {
  EXPECT_EQ(*MultipartBoundary("Multipart/Form-Data; charset=utf-8; boundary=\"a b\""), "a b");
  EXPECT_FALSE(MultipartBoundary("multipart/form-data").ok());
  EXPECT_FALSE(MultipartBoundary("application/json; boundary=x").ok());
}

TEST(Multipart, TruncatedBodiesAreErrors) {
  const std::string body(kBody, sizeof(kBody) - 1);
  for (size_t cut :
       {size_t{0}, size_t{20}, size_t{60}, size_t{90}, body.size() - 12, body.size() - 3}) {
    auto parts = ParseMultipart(body.substr(0, cut), "XyZ");
    EXPECT_FALSE(parts.ok()) << "cut at " << cut;
  }
}

TEST(Multipart, PartWithoutNameAndTooManyParts) {
  EXPECT_FALSE(ParseMultipart("--b\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b--", "b").ok());
  std::string many;
  for (int i = 0; i < 5; ++i)
    many += "--b\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\nx\r\n";
  many += "--b--";
  EXPECT_TRUE(ParseMultipart(many, "b").ok());
  EXPECT_FALSE(ParseMultipart(many, "b", {.max_parts = 3}).ok());
}

}  // namespace
}  // namespace kiln::http
