#include "core/strings.h"

#include "core/status_util.h"
#include "gtest/gtest.h"

namespace kiln {
namespace {

TEST(ParseImageSize, AcceptsWxH) {
  auto s = ParseImageSize("512x768");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->width, 512);
  EXPECT_EQ(s->height, 768);
  EXPECT_EQ(s->ToString(), "512x768");
}

TEST(ParseImageSize, RejectsGarbage) {
  for (const char* bad : {"", "512", "x512", "512x", "ax5", "0x5", "5x-1", "99999x2", "5x5x5"}) {
    EXPECT_FALSE(ParseImageSize(bad).ok()) << bad;
  }
}

TEST(ParseNumbers, Strict) {
  EXPECT_EQ(*ParseInt("42"), 42);
  EXPECT_FALSE(ParseInt("42a").ok());
  EXPECT_FALSE(ParseInt("").ok());
  EXPECT_FALSE(ParseUint("-1").ok());
  EXPECT_DOUBLE_EQ(*ParseDouble("7.5"), 7.5);
  EXPECT_FALSE(ParseDouble("nan").ok());
  EXPECT_FALSE(ParseDouble("1e999").ok());
}

TEST(StatusUtil, FieldAndHttpPayloadsSurviveAnnotate) {
  absl::Status s = WithHttpStatus(InvalidField("prompt", "must not be empty"), 413);
  absl::Status a = Annotate(s, "request");
  EXPECT_EQ(a.message(), "request: must not be empty");
  EXPECT_EQ(FieldOf(a), "prompt");
  EXPECT_EQ(HttpStatusOf(a), 413);
  EXPECT_FALSE(FieldOf(absl::InternalError("x")).has_value());
}

TEST(Strings, IsValidUtf8) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("plain ascii"));
  EXPECT_TRUE(IsValidUtf8("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x8e\xa8"));  // é € 🎨
  EXPECT_FALSE(IsValidUtf8("\xff"));
  EXPECT_FALSE(IsValidUtf8("caf\xc3"));           // truncated
  EXPECT_FALSE(IsValidUtf8("\xe2\x82"));          // truncated
  EXPECT_FALSE(IsValidUtf8("\xc0\xaf"));          // overlong '/'
  EXPECT_FALSE(IsValidUtf8("\xed\xa0\x80"));      // a surrogate
  EXPECT_FALSE(IsValidUtf8("\xf4\x90\x80\x80"));  // past U+10FFFF
  EXPECT_FALSE(
      IsValidUtf8("a\x80"
                  "b"));  // a lone continuation byte
}

}  // namespace
}  // namespace kiln
