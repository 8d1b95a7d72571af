#include "sched/fair_queue.h"

#include "gtest/gtest.h"
#include "sched/cost_model.h"

namespace kiln::sched {
namespace {

WorkItemPtr Item(std::string id, std::string tenant, double cost,
                 queue::PriorityClass klass = queue::PriorityClass::kAsync, int priority = 0,
                 int rows = 1) {
  auto w = std::make_shared<WorkItem>();
  w->id = std::move(id);
  w->tenant = std::move(tenant);
  w->cost = cost;
  w->klass = klass;
  w->priority = priority;
  w->rows = rows;
  return w;
}

std::vector<std::string> Drain(FairQueue& q) {
  std::vector<std::string> out;
  while (auto w = q.PopIf([](const WorkItem&) { return true; })) out.push_back(w->id);
  return out;
}

TEST(FairQueue, ClassesAreStrictThenPriority) {
  FairQueue q;
  q.Push(Item("batch", "a", 1, queue::PriorityClass::kBatch));
  q.Push(Item("async", "a", 1));
  q.Push(Item("async-high", "a", 1, queue::PriorityClass::kAsync, 3));
  q.Push(Item("sync", "a", 1, queue::PriorityClass::kInteractive));
  EXPECT_EQ(Drain(q), (std::vector<std::string>{"sync", "async-high", "async", "batch"}));
}

TEST(FairQueue, AFloodingTenantDoesNotStarveOthers) {
  FairQueue q;
  for (int i = 0; i < 5; ++i) q.Push(Item("a" + std::to_string(i), "a", 1));
  q.Push(Item("b0", "b", 1));
  q.Push(Item("b1", "b", 1));
  auto order = Drain(q);
  // b's two jobs are served within the first four, not after a's five.
  const auto pos_b1 = std::find(order.begin(), order.end(), "b1") - order.begin();
  EXPECT_LE(pos_b1, 3);
  EXPECT_EQ(order.front(), "a0");
}

TEST(FairQueue, WeightsAndCostsShapeTheShare) {
  FairQueue q;
  q.SetWeight("heavy", 3);
  for (int i = 0; i < 6; ++i) q.Push(Item("h" + std::to_string(i), "heavy", 1));
  for (int i = 0; i < 6; ++i) q.Push(Item("l" + std::to_string(i), "light", 1));
  auto order = Drain(q);
  // In the first eight served, the weight-3 tenant gets about three times the other's share.
  const auto heavy = std::count_if(order.begin(), order.begin() + 8,
                                   [](const std::string& s) { return s[0] == 'h'; });
  EXPECT_EQ(heavy, 6);
}

TEST(FairQueue, PopIfSkipsItemsThatDoNotFitAndRemoveWorks) {
  FairQueue q;
  q.Push(Item("big", "a", 1, queue::PriorityClass::kAsync, 0, 8));
  q.Push(Item("small", "a", 1, queue::PriorityClass::kAsync, 0, 2));
  q.Push(Item("gone", "a", 1));
  // The head does not fit: nothing behind it may pass.
  EXPECT_EQ(q.PopFrontIf([](const WorkItem& w) { return w.rows <= 4; }), nullptr);
  EXPECT_EQ(q.PopIf([](const WorkItem& w) { return w.rows <= 4; })->id, "small");
  EXPECT_EQ(q.Remove("gone")->id, "gone");
  EXPECT_EQ(q.Remove("gone"), nullptr);
  EXPECT_DOUBLE_EQ(q.total_cost(), 1);
  EXPECT_DOUBLE_EQ(q.CostAhead(queue::PriorityClass::kInteractive), 0);
  EXPECT_DOUBLE_EQ(q.CostAhead(queue::PriorityClass::kAsync), 1);
  EXPECT_EQ(Drain(q), std::vector<std::string>{"big"});
}

TEST(StepCostModel, LearnsPerBatchBucketAndFallsBackToTheNearest) {
  StepCostModel m(1.0);
  EXPECT_DOUBLE_EQ(m.SecondsPerRowPixel(4), 1.0);  // the prior
  m.Observe(1, 100, 0.01);                         // 1e-4 s per row-pixel at batch 1
  EXPECT_DOUBLE_EQ(m.SecondsPerRowPixel(1), 1e-4);
  EXPECT_DOUBLE_EQ(m.SecondsPerRowPixel(16), 1e-4);       // nearest measured bucket
  for (int i = 0; i < 50; ++i) m.Observe(16, 100, 0.04);  // 2.5e-5 at batch 16
  EXPECT_NEAR(m.SecondsPerRowPixel(16), 2.5e-5, 1e-9);
  EXPECT_NEAR(m.SecondsPerRowPixel(20), 2.5e-5, 1e-9);
  EXPECT_NEAR(m.Cost(10, 2, 100, 16), 10 * 2 * 100 * 2.5e-5, 1e-9);
  m.Observe(0, 100, 1);  // ignored
  m.Observe(4, 100, -1);
  EXPECT_EQ(m.observations(), 51);
}

}  // namespace
}  // namespace kiln::sched
