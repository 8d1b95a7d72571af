// JobService around a job that two runs held in turn: the first run lost it (its lease expired,
// or its broker connection closed) and hands it back late. Its checkpoint must not outlive the
// job, and its hand-back must not take the job from the run that holds it now.
#include "sched/job_service.h"

#include "engine/request_codec.h"
#include "gtest/gtest.h"

namespace kiln::sched {
namespace {

class JobServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto q = queue::JobQueue::Open("memory:");
    ASSERT_TRUE(q.ok()) << q.status();
    queue_ = std::move(*q);
    engine::GenerationRequest r;
    r.prompt = "a red circle";
    r.steps = 4;
    r.size = {8, 8};
    queue::NewJob job;
    job.id = "job1";
    job.model = "test-pixel";
    job.request = engine::RequestToJson(r, "").dump();
    auto enqueued = queue_->Enqueue(job);
    ASSERT_TRUE(enqueued.ok()) << enqueued.status();
  }

  // The service of the process that runs as `worker`.
  JobService Service(const std::string& worker) {
    JobServiceOptions options;
    options.worker_id = worker;
    return JobService(queue_.get(), store_.get(), nullptr, &events_, nullptr, options);
  }

  // `worker` claims the job and this process loads it to run.
  WorkItemPtr ClaimAndLoad(JobService& service, const std::string& worker) {
    auto claimed = queue_->Claim("test-pixel", 1, worker, 60000);
    EXPECT_TRUE(claimed.ok() && claimed->size() == 1u) << claimed.status();
    if (!claimed.ok() || claimed->empty()) return nullptr;
    auto item = service.Load((*claimed)[0]);
    EXPECT_TRUE(item.ok()) << item.status();
    return item.ok() ? *item : nullptr;
  }

  // The running job's lease ends (its worker stalled): the job is queued again.
  void ExpireTheLease() {
    auto expired = queue_->ExpireLeases(/*all=*/true);
    ASSERT_TRUE(expired.ok()) << expired.status();
  }

  // The first run's lease ends and worker "w2" claims the job.
  void LoseTheLeaseToW2() {
    ExpireTheLease();
    auto claimed = queue_->Claim("test-pixel", 1, "w2", 60000);
    ASSERT_TRUE(claimed.ok() && claimed->size() == 1u) << claimed.status();
  }

  bool HasCheckpoint() { return store_->Exists(JobService::CheckpointKey("job1")).value_or(true); }

  std::unique_ptr<queue::JobQueue> queue_;
  std::unique_ptr<store::BlobStore> store_ = store::NewMemoryStore();
  JobEvents events_;
};

TEST_F(JobServiceTest, AHandBackStoresTheCheckpointAndRequeuesTheJob) {
  JobService service = Service("w1");
  WorkItemPtr item = ClaimAndLoad(service, "w1");
  ASSERT_NE(item, nullptr);
  item->checkpoint = "state at step 2";
  item->checkpoint_step = 2;
  item->on_done(*item, absl::UnavailableError("stopping"));
  EXPECT_EQ(store_->Get(JobService::CheckpointKey("job1")).value_or(""), "state at step 2");
  auto job = queue_->Get("job1");
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->state, queue::JobState::kQueued);
  EXPECT_EQ(job->attempts, 0) << "handing back is not an attempt";
}

TEST_F(JobServiceTest, ARunThatLostTheJobHandsItBackWithoutLeavingItsCheckpoint) {
  JobService service = Service("w1");
  WorkItemPtr item = ClaimAndLoad(service, "w1");
  ASSERT_NE(item, nullptr);
  LoseTheLeaseToW2();
  // w1 stops now, with its checkpoint; w2 may finish the job without ever reading it.
  item->checkpoint = "state at step 2";
  item->on_done(*item, absl::UnavailableError("stopping"));
  EXPECT_FALSE(HasCheckpoint()) << "a checkpoint outlives the run that holds the job";
  auto job = queue_->Get("job1");
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->state, queue::JobState::kRunning);
  EXPECT_EQ(job->worker, "w2");
}

TEST_F(JobServiceTest, TheRunThatCompletesALaterAttemptDeletesACheckpointItDidNotUse) {
  JobService service = Service("w2");
  ASSERT_NE(ClaimAndLoad(service, "w1"), nullptr);
  ExpireTheLease();
  WorkItemPtr second = ClaimAndLoad(service, "w2");
  ASSERT_NE(second, nullptr);
  EXPECT_TRUE(second->resume_from.empty());
  // The first run's late hand-back stores its checkpoint while the second run goes on.
  ASSERT_TRUE(store_->Put(JobService::CheckpointKey("job1"), "state at step 2").ok());
  engine::Image image{8, 8, std::vector<uint8_t>(8 * 8 * 3, 200)};
  second->on_done(*second, std::vector<engine::Image>{image});
  auto job = queue_->Get("job1");
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->state, queue::JobState::kSucceeded) << job->error;
  EXPECT_FALSE(HasCheckpoint()) << "a succeeded job keeps a stray checkpoint";
  EXPECT_TRUE(store_->Exists(JobService::ResultKey("job1", 0)).value_or(false));
}

}  // namespace
}  // namespace kiln::sched
