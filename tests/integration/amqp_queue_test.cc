// The distributed JobQueue against a real RabbitMQ (started here on loopback), below the HTTP
// layer: which writes reach a job's record, so that no write that lands late can turn a
// finished job back into a running one whose message is already acked (the job would be lost).
#include <atomic>
#include <functional>

#include "absl/synchronization/mutex.h"
#include "core/ids.h"
#include "gtest/gtest.h"
#include "queue/job_queue.h"
#include "queue/job_record.h"
#include "store/blob_store.h"
#include "tests/integration/rabbitmq.h"

namespace kiln::testing {
namespace {

using queue::Job;
using queue::JobState;

class AmqpQueueTest : public RabbitMqSuite {
 protected:
  void SetUp() override {
    ExpectBrokerStarted();
    model_ = "m" + NewUlid();  // a queue of its own, so tests do not see each other's jobs
    queue::QueueOptions options;
    options.records = records_.get();
    // A clock the test moves: progress is written at most twice a second.
    options.now_ms = [this] { return now_ms_.load(); };
    options.load_report_ms = 50;
    options.models = {model_};
    options.consume = {model_};
    options.on_available = [this](const std::string&) {
      absl::MutexLock lock(&mu_);
      ++available_;
    };
    auto q = queue::JobQueue::Open(broker().url(), options);
    ASSERT_TRUE(q.ok()) << q.status();
    queue_ = std::move(*q);
  }
  void TearDown() override { queue_.reset(); }

  // Enqueues one job and claims it as worker "w1".
  Job EnqueueAndClaim() {
    queue::NewJob spec;
    spec.id = NewUlid();
    spec.model = model_;
    spec.request = R"({"prompt":"a red circle","steps":10})";
    ForgetDeliveries();
    auto enqueued = queue_->Enqueue(spec);
    EXPECT_TRUE(enqueued.ok()) << enqueued.status();
    EXPECT_TRUE(AwaitDelivery());
    auto claimed = queue_->Claim(model_, 1, "w1", 60000);
    now_ms_ += 1000;
    EXPECT_TRUE(claimed.ok()) << claimed.status();
    EXPECT_EQ(claimed.ok() ? claimed->size() : 0u, 1u);
    return claimed.ok() && !claimed->empty() ? (*claimed)[0] : Job{};
  }

  // Deliveries announced by on_available: forget the ones so far, or wait for a new one.
  void ForgetDeliveries() {
    absl::MutexLock lock(&mu_);
    available_ = 0;
  }
  bool AwaitDelivery() {
    absl::MutexLock lock(&mu_);
    return mu_.AwaitWithTimeout(absl::Condition(
                                    +[](int* n) { return *n > 0; }, &available_),
                                absl::Seconds(30));
  }

  // Restarts RabbitMQ while a job runs: its unsettled message goes back to the queue and is
  // delivered again, here to this consumer.
  void RestartTheBroker() {
    ForgetDeliveries();
    ASSERT_TRUE(broker().Restart()) << broker().log();
    ASSERT_TRUE(AwaitDelivery()) << "the unsettled message was not delivered again";
  }

  std::string Record(const std::string& id) {
    auto text = records_->Get(queue::JobRecordKey(id));
    return text.ok() ? *text : text.status().ToString();
  }

  std::unique_ptr<store::BlobStore> records_ = store::NewMemoryStore();
  std::unique_ptr<queue::JobQueue> queue_;
  std::string model_;
  std::atomic<int64_t> now_ms_{1'800'000'000'000};
  absl::Mutex mu_;
  int available_ ABSL_GUARDED_BY(mu_) = 0;
};

TEST_F(AmqpQueueTest, ProgressIsReadableButNeverRewritesTheRecord) {
  Job job = EnqueueAndClaim();
  ASSERT_FALSE(job.id().empty());
  const std::string claimed = Record(job.id());
  ASSERT_EQ(queue_->Heartbeat(job.id(), "w1", 60000, 7, 10), absl::OkStatus());
  EXPECT_EQ(Record(job.id()), claimed) << "a heartbeat wrote the job record";
  auto seen = queue_->Get(job.id());
  ASSERT_TRUE(seen.ok()) << seen.status();
  EXPECT_EQ(seen->state, JobState::kRunning);
  EXPECT_EQ(seen->step, 7);
  EXPECT_EQ(seen->num_steps, 10);
}

TEST_F(AmqpQueueTest, ALateProgressWriteCannotUndoCompletion) {
  Job job = EnqueueAndClaim();
  ASSERT_FALSE(job.id().empty());
  const std::string progress_key = "jobs/" + job.id() + "/progress.json";
  ASSERT_EQ(queue_->Heartbeat(job.id(), "w1", 60000, 9, 10), absl::OkStatus());
  auto early = records_->Get(progress_key);
  ASSERT_TRUE(early.ok()) << early.status();
  ASSERT_EQ(queue_->Complete(job.id(), "w1", {"jobs/" + job.id() + "/0.png"}), absl::OkStatus());
  // The heartbeat's store write was not ordered with Complete's: it may land after it.
  ASSERT_EQ(records_->Put(progress_key, *early), absl::OkStatus());
  auto seen = queue_->Get(job.id());
  ASSERT_TRUE(seen.ok()) << seen.status();
  EXPECT_EQ(seen->state, JobState::kSucceeded);
  EXPECT_EQ(seen->step, seen->num_steps);
}

TEST_F(AmqpQueueTest, CancellingARunningJobLeavesItsRecordToTheWorker) {
  Job job = EnqueueAndClaim();
  ASSERT_FALSE(job.id().empty());
  const std::string claimed = Record(job.id());
  auto cancel = queue_->Cancel(job.id());
  ASSERT_TRUE(cancel.ok()) << cancel.status();
  EXPECT_TRUE(cancel->cancel_requested);
  EXPECT_EQ(Record(job.id()), claimed) << "the cancel wrote the running job's record";
  // The worker learns of it (the cancel event, or the marker on a later claim) and records
  // the end itself.
  EXPECT_TRUE(records_->Exists("jobs/" + job.id() + "/cancel").value_or(false));
  ASSERT_EQ(queue_->MarkCancelled(job.id(), "w1"), absl::OkStatus());
  auto seen = queue_->Get(job.id());
  ASSERT_TRUE(seen.ok()) << seen.status();
  EXPECT_EQ(seen->state, JobState::kCancelled);
}

TEST_F(AmqpQueueTest, ProgressOfAnEarlierAttemptIsNotShown) {
  Job job = EnqueueAndClaim();
  ASSERT_FALSE(job.id().empty());
  ASSERT_EQ(queue_->Heartbeat(job.id(), "w1", 60000, 8, 10), absl::OkStatus());
  // Handed back (a stopping worker) and claimed again: the new run starts at step 0.
  ForgetDeliveries();
  ASSERT_EQ(queue_->Release(job.id(), "w1"), absl::OkStatus());
  now_ms_ += 1000;
  EXPECT_TRUE(AwaitDelivery());
  auto again = queue_->Claim(model_, 1, "w2", 60000);
  now_ms_ += 1000;
  ASSERT_TRUE(again.ok()) << again.status();
  ASSERT_EQ(again->size(), 1u);
  auto seen = queue_->Get(job.id());
  ASSERT_TRUE(seen.ok()) << seen.status();
  EXPECT_EQ(seen->state, JobState::kRunning);
  EXPECT_EQ(seen->step, 0);
}

TEST_F(AmqpQueueTest, AWorkerWhoseConnectionClosedCannotHandBackTheJobItLost) {
  Job job = EnqueueAndClaim();
  ASSERT_FALSE(job.id().empty());
  // The broker restarts while w1 runs the job: the message goes back to its queue and out again,
  // here to this consumer, where w2 claims it. (Across processes, w2 may have finished the job by
  // the time w1 stops; handing back would then set the finished record back to queued.)
  ASSERT_NO_FATAL_FAILURE(RestartTheBroker());
  const std::string before = Record(job.id());
  absl::Status released = queue_->Release(job.id(), "w1");
  EXPECT_TRUE(absl::IsFailedPrecondition(released)) << released;
  EXPECT_EQ(Record(job.id()), before) << "a worker wrote the record of a job it no longer holds";
  auto again = queue_->Claim(model_, 1, "w2", 60000);
  ASSERT_TRUE(again.ok()) << again.status();
  ASSERT_EQ(again->size(), 1u) << "the job's message was lost";
  EXPECT_EQ((*again)[0].attempts, 2);
  ASSERT_EQ(queue_->Complete(job.id(), "w2", {}), absl::OkStatus());
  auto seen = queue_->Get(job.id());
  ASSERT_TRUE(seen.ok()) << seen.status();
  EXPECT_EQ(seen->state, JobState::kSucceeded);
}

TEST_F(AmqpQueueTest, AJobWhoseMessageCameBackToItsWorkerGoesOnThere) {
  Job job = EnqueueAndClaim();
  ASSERT_FALSE(job.id().empty());
  ASSERT_NO_FATAL_FAILURE(RestartTheBroker());
  // The message came back to this worker: its heartbeat takes the new delivery (no claim is
  // needed), and long after the grace the run still holds the job and can hand it back.
  ASSERT_EQ(queue_->Heartbeat(job.id(), "w1", 60000, 4, 10), absl::OkStatus());
  now_ms_ += 60000;
  ASSERT_EQ(queue_->Heartbeat(job.id(), "w1", 60000, 5, 10), absl::OkStatus());
  ForgetDeliveries();
  ASSERT_EQ(queue_->Release(job.id(), "w1"), absl::OkStatus());
  auto seen = queue_->Get(job.id());
  ASSERT_TRUE(seen.ok()) << seen.status();
  EXPECT_EQ(seen->state, JobState::kQueued);
  ASSERT_TRUE(AwaitDelivery()) << "the handed-back job was not published again";
  auto again = queue_->Claim(model_, 1, "w1", 60000);
  ASSERT_TRUE(again.ok()) << again.status();
  ASSERT_EQ(again->size(), 1u) << "the job's message was lost";
  EXPECT_EQ((*again)[0].attempts, 1) << "handing back counted as an attempt";
}

// Polls `done` (a queue's view, which no event announces) until it holds or 30 s pass.
bool Eventually(const std::function<bool()>& done) {
  const absl::Time until = absl::Now() + absl::Seconds(30);
  while (!done()) {
    if (absl::Now() > until) return false;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return true;
}

TEST_F(AmqpQueueTest, GatewaysCountTheJobsThatWorkersRun) {
  queue::QueueOptions go;
  go.records = records_.get();
  go.models = {model_};
  auto gateway = queue::JobQueue::Open(broker().url(), go);
  ASSERT_TRUE(gateway.ok()) << gateway.status();
  Job job = EnqueueAndClaim();
  ASSERT_FALSE(job.id().empty());
  ASSERT_EQ(queue_->Heartbeat(job.id(), "w1", 60000, 5, 10), absl::OkStatus());
  queue::ModelBacklog seen;
  EXPECT_TRUE(Eventually([&] {
    seen = (*gateway)->Backlog(model_).value_or(queue::ModelBacklog{});
    return seen.running == 1;
  })) << "the gateway never counted the running job";
  EXPECT_EQ(seen.queued, 0);
  ASSERT_EQ(queue_->Complete(job.id(), "w1", {}), absl::OkStatus());
  EXPECT_TRUE(Eventually([&] {
    return (*gateway)->Backlog(model_).value_or(queue::ModelBacklog{}).running == 0;
  })) << "the finished job still counts";
  // A worker that stops (or dies: its report expires) stops counting.
  Job second = EnqueueAndClaim();
  ASSERT_TRUE(Eventually(
      [&] { return (*gateway)->Backlog(model_).value_or(queue::ModelBacklog{}).running == 1; }));
  queue_.reset();
  EXPECT_TRUE(Eventually(
      [&] { return (*gateway)->Backlog(model_).value_or(queue::ModelBacklog{}).running == 0; }));
}

}  // namespace
}  // namespace kiln::testing
