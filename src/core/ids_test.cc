#include "core/ids.h"

#include <set>

#include "core/strings.h"
#include "gtest/gtest.h"

namespace kiln {
namespace {

TEST(Ulid, WellFormedUniqueAndTimeOrdered) {
  std::set<std::string> seen;
  std::string prev;
  for (int64_t ms = 1'700'000'000'000; ms < 1'700'000'000'050; ++ms) {
    const std::string id = NewUlid(ms);
    EXPECT_TRUE(IsUlid(id)) << id;
    EXPECT_LT(prev, id);
    prev = id;
    seen.insert(id);
  }
  for (int i = 0; i < 100; ++i) seen.insert(NewUlid());
  EXPECT_EQ(seen.size(), 150u);
  for (const char* bad : {"", "01J", "01JXXXXXXXXXXXXXXXXXXXXXXU", "81JZZZZZZZZZZZZZZZZZZZZZZZ",
                          "01jxxxxxxxxxxxxxxxxxxxxxxx", "../../../../etc/passwd0000"}) {
    EXPECT_FALSE(IsUlid(bad)) << bad;
  }
}

TEST(Base64, RoundTripsAndRejectsGarbage) {
  for (const std::string& s :
       std::vector<std::string>{"", "a", "ab", "abc", "abcd", std::string("\0\xff\x10", 3)}) {
    auto back = Base64Decode(Base64Encode(s));
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(*back, s);
  }
  EXPECT_EQ(*Base64Decode("aGk"), "hi");  // unpadded
  EXPECT_FALSE(Base64Decode("a").ok());
  EXPECT_FALSE(Base64Decode("aGk*").ok());
  EXPECT_FALSE(Base64Decode("aG k").ok());
}

}  // namespace
}  // namespace kiln
