#include "scale/autoscale_policy.h"

#include "gtest/gtest.h"

namespace kiln::scale {
namespace {

TEST(AutoscalePolicy, ScalesWithTheBacklogToZeroAndWithinBounds) {
  AutoscalePolicy p{60, 0, 16};
  EXPECT_EQ(DesiredReplicas(p, {}), 0);                         // idle: zero
  EXPECT_EQ(DesiredReplicas(p, {0.5, 0, 1, 0}), 1);             // one small job wakes one
  EXPECT_EQ(DesiredReplicas(p, {0, 0.1, 0, 1}), 1);             // running keeps one
  EXPECT_EQ(DesiredReplicas(p, {600, 0, 100, 0}), 10);          // 10 minutes of work
  EXPECT_EQ(DesiredReplicas(p, {590, 20, 100, 2}), 11);         // running work counts
  EXPECT_EQ(DesiredReplicas(p, {60000, 0, 9999, 0}), 16);       // capped
  EXPECT_EQ(DesiredReplicas({60, 2, 16}, {}), 2);               // floor
  EXPECT_EQ(DesiredReplicas({60, 3, 1}, {6000, 0, 10, 0}), 3);  // max below min: min wins
  EXPECT_EQ(DesiredReplicas(p, {-5, -5, 0, 0}), 0);             // nonsense input stays sane
}

}  // namespace
}  // namespace kiln::scale
