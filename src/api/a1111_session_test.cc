// The bookkeeping behind /sdapi/v1/progress, /interrupt and /skip: which iterations end how, and
// which call answers.
#include "api/a1111_session.h"

#include "gtest/gtest.h"

namespace kiln::api {
namespace {

std::shared_ptr<A1111Task> MakeTask(int n_iter, const std::string& tenant = "anonymous") {
  auto task = std::make_shared<A1111Task>();
  task->tenant = tenant;
  for (int k = 0; k < n_iter; ++k) {
    auto item = std::make_shared<sched::WorkItem>();
    item->id = "item" + std::to_string(k);
    task->iterations.push_back(item);
  }
  absl::MutexLock lock(&task->mu);
  task->outcomes.resize(n_iter);
  task->remaining = n_iter;
  return task;
}

std::vector<engine::Image> OneImage() { return {engine::Image{1, 1, {1, 2, 3}}}; }

TEST(A1111Task, SkippedIterationsEndWithoutAnError) {
  auto task = MakeTask(3);
  EXPECT_EQ(task->Current(), 0);
  EXPECT_FALSE(task->Finish(0, OneImage(), false));
  EXPECT_EQ(task->Current(), 1);
  // /skip: the current iteration is cancelled; it ends Cancelled, which is not an error.
  auto running = task->Skip(1, 2);
  ASSERT_EQ(running.size(), 1u);
  EXPECT_EQ(running[0]->id, "item1");
  EXPECT_EQ(task->Current(), 2);
  EXPECT_FALSE(task->Finish(1, absl::CancelledError("cancelled"), false));
  EXPECT_TRUE(task->Finish(2, OneImage(), false));  // the last one answers
  absl::MutexLock lock(&task->mu);
  EXPECT_TRUE(task->error.ok());
  EXPECT_EQ(task->outcomes[0].images.size(), 1u);
  EXPECT_TRUE(task->outcomes[1].images.empty());
  EXPECT_EQ(task->outcomes[2].images.size(), 1u);
}

TEST(A1111Task, InterruptSkipsOnlyWhatIsStillRunning) {
  auto task = MakeTask(3);
  EXPECT_FALSE(task->Finish(0, OneImage(), false));
  auto running = task->Skip(task->Current(), 3);
  EXPECT_EQ(running.size(), 2u);
  EXPECT_TRUE(task->Skip(0, 3).empty());  // a second interrupt finds nothing left to stop
  EXPECT_EQ(task->Current(), 3);
  EXPECT_FALSE(task->Finish(1, absl::CancelledError("cancelled"), false));
  EXPECT_TRUE(task->Finish(2, absl::CancelledError("cancelled"), false));
  EXPECT_FALSE(task->Finish(2, OneImage(), false));  // ended already: ignored
  absl::MutexLock lock(&task->mu);
  EXPECT_TRUE(task->error.ok());
}

TEST(A1111Task, FailuresAndDepartedClientsAreKept) {
  auto failed = MakeTask(2);
  EXPECT_FALSE(failed->Finish(0, absl::InternalError("boom"), false));
  EXPECT_TRUE(failed->Finish(1, absl::InternalError("second"), false));
  {
    absl::MutexLock lock(&failed->mu);
    EXPECT_EQ(failed->error.message(), "boom");  // the first failure
  }
  auto gone = MakeTask(1);
  EXPECT_TRUE(gone->Finish(0, absl::CancelledError("client left"), true));
  absl::MutexLock lock(&gone->mu);
  EXPECT_TRUE(gone->client_gone);
}

TEST(A1111Task, ARefusedSubmissionEndsTheRestWithItsError) {
  auto task = MakeTask(3);
  // Iteration 0 was admitted, 1 was refused: 1 and 2 never run, 0 is cancelled.
  EXPECT_FALSE(task->NotSubmitted(1, absl::ResourceExhaustedError("queue full")));
  EXPECT_EQ(task->Skip(0, 1).size(), 1u);
  EXPECT_TRUE(task->Finish(0, absl::CancelledError("cancelled"), false));
  absl::MutexLock lock(&task->mu);
  EXPECT_TRUE(absl::IsResourceExhausted(task->error));
}

TEST(A1111Session, EachTenantSeesItsOldestCall) {
  A1111Session session;
  auto a1 = MakeTask(1, "a"), b = MakeTask(1, "b"), a2 = MakeTask(1, "a");
  session.Add(a1);
  session.Add(b);
  session.Add(a2);
  EXPECT_EQ(session.Current("a"), a1);
  EXPECT_EQ(session.Current("b"), b);
  EXPECT_EQ(session.Current("c"), nullptr);
  session.Remove(a1.get());
  EXPECT_EQ(session.Current("a"), a2);
  EXPECT_EQ(session.default_model(), "");
  session.set_default_model("test-latent");
  EXPECT_EQ(session.default_model(), "test-latent");
}

}  // namespace
}  // namespace kiln::api
