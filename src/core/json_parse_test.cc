#include "core/json_parse.h"

#include <string>

#include "gtest/gtest.h"

namespace kiln {
namespace {

TEST(JsonDepth, CountsArraysAndObjectsButNotBracketsInStrings) {
  EXPECT_EQ(*JsonDepth(R"({"a": 1})", 8), 1);
  EXPECT_EQ(*JsonDepth(R"({"a": [1, {"b": []}]})", 8), 4);
  EXPECT_EQ(*JsonDepth(R"({"a": "[[[[{{{{", "b": "\"[[[["})", 2), 1);
  EXPECT_EQ(*JsonDepth("3", 0), 0);
}

TEST(JsonDepth, StopsAtTheFirstByteTooDeep) {
  const std::string deep = std::string(10'000'000, '[');
  auto depth = JsonDepth(deep, 32);
  ASSERT_FALSE(depth.ok());
  EXPECT_EQ(depth.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(depth.status().message().find("deeper than 32 levels (at byte 32)"), std::string::npos)
      << depth.status();
}

TEST(ParseJsonWithLimits, RefusesDeepNestingAndBadSyntaxNamingTheText) {
  std::string body = R"({"prompt": )" + std::string(40, '[') + std::string(40, ']') + "}";
  auto deep = ParseJsonWithLimits(body, "the request body");
  ASSERT_FALSE(deep.ok());
  EXPECT_NE(deep.status().message().find("the request body is nested deeper than 32 levels"),
            std::string::npos);

  auto bad = ParseJsonWithLimits(R"({"prompt": )", "line 3");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(), "line 3 is not valid JSON");

  auto ok = ParseJsonWithLimits(R"({"prompt": [[["x"]]]})", "the request body");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ((*ok)["prompt"][0][0][0], "x");
}

}  // namespace
}  // namespace kiln
