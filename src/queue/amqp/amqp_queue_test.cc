// The distributed JobQueue's bookkeeping when a worker's broker connection breaks under a
// running job, with a broker the test drives (tests/integration/amqp_queue_test.cc runs the
// same queue against a real RabbitMQ, where who gets a redelivered message is up to RabbitMQ).
#include "queue/amqp/amqp_queue.h"

#include <atomic>
#include <optional>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "core/ids.h"
#include "gtest/gtest.h"
#include "queue/job_record.h"
#include "store/blob_store.h"

namespace kiln::queue {
namespace {

using amqp::Delivery;

// Publishes into a list and delivers what the test says, on connections the test opens and
// closes. A delivery is live while its connection is the current one (as in amqp::Broker).
class FakeBroker final : public amqp::Broker {
 public:
  explicit FakeBroker(amqp::BrokerOptions options) : options_(std::move(options)) {}

  absl::Status PublishJob(const std::string& model, const std::string& body) override {
    absl::MutexLock lock(&mu_);
    published_.push_back(body);
    return absl::OkStatus();
  }
  absl::Status PublishEvent(const std::string&, const std::string&) override {
    return absl::OkStatus();
  }
  void Ack(const Delivery& d) override { Settle(d, "ack"); }
  void Reject(const Delivery& d) override { Settle(d, "reject"); }
  void Requeue(const Delivery& d) override { Settle(d, "requeue"); }
  bool Live(const Delivery& d) const override {
    absl::MutexLock lock(&mu_);
    return connected_ && d.connection == connection_;
  }
  absl::StatusOr<amqp::QueueStats> Stats(const std::string&) override { return amqp::QueueStats{}; }
  absl::Status Health() const override {
    absl::MutexLock lock(&mu_);
    return connected_ ? absl::OkStatus() : absl::UnavailableError("disconnected");
  }
  void Stop() override {}

  // Delivers `body` on the current connection, as the broker's consumer thread would.
  uint64_t Deliver(const std::string& model, const std::string& body) {
    Delivery d;
    {
      absl::MutexLock lock(&mu_);
      d.model = model;
      d.tag = ++tag_;
      d.connection = connection_;
      d.body = body;
    }
    options_.on_job(d);
    return d.tag;
  }
  void Disconnect() {
    absl::MutexLock lock(&mu_);
    connected_ = false;
  }
  void Reconnect() {
    absl::MutexLock lock(&mu_);
    connected_ = true;
    ++connection_;
  }
  std::string LastPublished() {
    absl::MutexLock lock(&mu_);
    return published_.empty() ? "" : published_.back();
  }
  // "ack 3" for each settlement, in order; settlements of dead connections are dropped.
  std::vector<std::string> settled() {
    absl::MutexLock lock(&mu_);
    return settled_;
  }

 private:
  void Settle(const Delivery& d, const char* how) {
    absl::MutexLock lock(&mu_);
    if (connected_ && d.connection == connection_) {
      settled_.push_back(std::string(how) + " " + std::to_string(d.tag));
    }
  }

  const amqp::BrokerOptions options_;
  mutable absl::Mutex mu_;
  bool connected_ ABSL_GUARDED_BY(mu_) = true;
  uint64_t connection_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t tag_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::string> published_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> settled_ ABSL_GUARDED_BY(mu_);
};

constexpr int64_t kGraceMs = 15000;

class AmqpQueueBookkeepingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    queue_ = OpenWorker(&broker_);
    ASSERT_NE(queue_, nullptr);
  }

  // A worker's queue over the records, with a broker of its own (the test's worker "w1", or
  // another).
  std::unique_ptr<JobQueue> OpenWorker(FakeBroker** broker) {
    QueueOptions o;
    o.records = records_.get();
    o.now_ms = [this] { return now_ms_.load(); };
    o.models = {"m"};
    o.consume = {"m"};
    o.redelivery_grace_ms = kGraceMs;
    auto q = OpenAmqpQueue("amqp://localhost", o, [broker](amqp::BrokerOptions bo) {
      auto b = std::make_unique<FakeBroker>(std::move(bo));
      *broker = b.get();
      return absl::StatusOr<std::unique_ptr<amqp::Broker>>(std::move(b));
    });
    EXPECT_TRUE(q.ok()) << q.status();
    return q.ok() ? std::move(*q) : nullptr;
  }

  // Enqueues a job, delivers its message and claims it as worker "w1".
  Job EnqueueAndClaim() {
    NewJob spec;
    spec.id = NewUlid();
    spec.model = "m";
    spec.request = R"({"prompt":"a red circle","steps":10})";
    auto enqueued = queue_->Enqueue(spec);
    EXPECT_TRUE(enqueued.ok()) << enqueued.status();
    body_ = broker_->LastPublished();
    broker_->Deliver("m", body_);
    auto claimed = queue_->Claim("m", 1, "w1", 60000);
    EXPECT_TRUE(claimed.ok() && claimed->size() == 1u);
    return claimed.ok() && !claimed->empty() ? (*claimed)[0] : Job{};
  }

  absl::Status Beat(const Job& job) { return queue_->Heartbeat(job.id(), "w1", 60000, 3, 10); }
  // The connection breaks and comes back without the job's message: after the grace, the
  // heartbeat gives the job up.
  void GiveUp(const Job& job) {
    broker_->Disconnect();
    broker_->Reconnect();
    ASSERT_EQ(Beat(job), absl::OkStatus());
    now_ms_ += kGraceMs;
    ASSERT_TRUE(absl::IsFailedPrecondition(Beat(job)));
  }
  std::optional<JobState> State(const Job& job) {
    auto seen = queue_->Get(job.id());
    EXPECT_TRUE(seen.ok()) << seen.status();
    return seen.ok() ? std::optional<JobState>(seen->state) : std::nullopt;
  }
  std::string Record(const std::string& id) {
    auto text = records_->Get(JobRecordKey(id));
    return text.ok() ? *text : text.status().ToString();
  }

  std::unique_ptr<store::BlobStore> records_ = store::NewMemoryStore();
  FakeBroker* broker_ = nullptr;  // owned by queue_
  std::unique_ptr<JobQueue> queue_;
  std::atomic<int64_t> now_ms_{1'800'000'000'000};
  std::string body_;  // the job message
};

TEST_F(AmqpQueueBookkeepingTest, AJobThatComesBackAfterAReconnectGoesOn) {
  Job job = EnqueueAndClaim();
  ASSERT_FALSE(job.id().empty());
  broker_->Disconnect();
  broker_->Reconnect();
  ASSERT_EQ(Beat(job), absl::OkStatus());
  // The broker gives the message back to this worker; no claim needs to take it (the worker's
  // batch may be full): the next heartbeat finds it.
  const uint64_t again = broker_->Deliver("m", body_);
  now_ms_ += kGraceMs + 1;
  ASSERT_EQ(Beat(job), absl::OkStatus());
  // The run settles the new delivery, so its end is recorded, and no second run starts.
  ASSERT_EQ(queue_->Complete(job.id(), "w1", {}), absl::OkStatus());
  EXPECT_EQ(broker_->settled(), std::vector<std::string>{"ack " + std::to_string(again)});
  auto claimed = queue_->Claim("m", 1, "w1", 60000);
  ASSERT_TRUE(claimed.ok()) << claimed.status();
  EXPECT_TRUE(claimed->empty()) << "the redelivery started a second run";
  EXPECT_EQ(State(job), JobState::kSucceeded);
}

TEST_F(AmqpQueueBookkeepingTest, AJobThatWentToAnotherWorkerIsGivenUpAfterTheGrace) {
  Job job = EnqueueAndClaim();
  ASSERT_FALSE(job.id().empty());
  const std::string running = Record(job.id());
  broker_->Disconnect();
  // While this worker is disconnected nothing can come back to it: the clock does not run.
  now_ms_ += 10 * kGraceMs;
  ASSERT_EQ(Beat(job), absl::OkStatus());
  broker_->Reconnect();
  ASSERT_EQ(Beat(job), absl::OkStatus());
  now_ms_ += kGraceMs - 1;
  ASSERT_EQ(Beat(job), absl::OkStatus());
  now_ms_ += 1;
  absl::Status lost = Beat(job);
  EXPECT_TRUE(absl::IsFailedPrecondition(lost)) << lost;
  // The scheduler stops the run; its end is not this worker's to record.
  EXPECT_TRUE(absl::IsFailedPrecondition(queue_->MarkCancelled(job.id(), "w1")));
  EXPECT_EQ(Record(job.id()), running);
  EXPECT_TRUE(broker_->settled().empty());
}

TEST_F(AmqpQueueBookkeepingTest, AMessageThatComesBackToAStoppingRunWaitsForItsEnd) {
  Job job = EnqueueAndClaim();
  ASSERT_FALSE(job.id().empty());
  ASSERT_NO_FATAL_FAILURE(GiveUp(job));
  // The message comes back late (the other worker's connection broke too): the run that gave
  // the job up is still stopping, so the new delivery waits for it.
  const uint64_t again = broker_->Deliver("m", body_);
  auto claimed = queue_->Claim("m", 1, "w1", 60000);
  ASSERT_TRUE(claimed.ok()) << claimed.status();
  EXPECT_TRUE(claimed->empty()) << "a second run of the job started while the first still ran";
  EXPECT_TRUE(absl::IsFailedPrecondition(queue_->MarkCancelled(job.id(), "w1")));
  claimed = queue_->Claim("m", 1, "w1", 60000);
  ASSERT_TRUE(claimed.ok()) << claimed.status();
  ASSERT_EQ(claimed->size(), 1u) << "the job's message was lost";
  EXPECT_EQ((*claimed)[0].attempts, 2);
  ASSERT_EQ(queue_->Complete(job.id(), "w1", {}), absl::OkStatus());
  EXPECT_EQ(broker_->settled(), std::vector<std::string>{"ack " + std::to_string(again)});
}

TEST_F(AmqpQueueBookkeepingTest, AStoppingRunThatCompletesAnywayIsNotRunAgain) {
  Job job = EnqueueAndClaim();
  ASSERT_FALSE(job.id().empty());
  ASSERT_NO_FATAL_FAILURE(GiveUp(job));
  const uint64_t again = broker_->Deliver("m", body_);
  // The run was at its last step: it completes before it stops. Every run writes the same
  // results, so the job is done; the message that came back is acked, not run.
  ASSERT_EQ(queue_->Complete(job.id(), "w1", {}), absl::OkStatus());
  auto claimed = queue_->Claim("m", 1, "w1", 60000);
  ASSERT_TRUE(claimed.ok()) << claimed.status();
  EXPECT_TRUE(claimed->empty()) << "a completed job ran again";
  EXPECT_EQ(broker_->settled(), std::vector<std::string>{"ack " + std::to_string(again)});
  EXPECT_EQ(State(job), JobState::kSucceeded);
}

// Two workers, one job: the run that lost the job (its connection broke, the broker gave the
// message to another worker) finishes anyway; its write is conditional on the record it wrote at
// its claim, so it is refused, and the record stays the one the other worker is running.
TEST_F(AmqpQueueBookkeepingTest, AWorkerThatLostItsJobCannotOverwriteTheOtherWorkersRecord) {
  Job job = EnqueueAndClaim();
  ASSERT_FALSE(job.id().empty());
  broker_->Disconnect();
  FakeBroker* other_broker = nullptr;
  std::unique_ptr<JobQueue> other = OpenWorker(&other_broker);
  ASSERT_NE(other, nullptr);
  other_broker->Deliver("m", body_);
  auto claimed = other->Claim("m", 1, "w2", 60000);
  ASSERT_TRUE(claimed.ok()) << claimed.status();
  ASSERT_EQ(claimed->size(), 1u);
  EXPECT_EQ((*claimed)[0].attempts, 2);
  const std::string theirs = Record(job.id());

  broker_->Reconnect();
  absl::Status late = queue_->Complete(job.id(), "w1", {"jobs/" + job.id() + "/0.png"});
  EXPECT_TRUE(absl::IsFailedPrecondition(late)) << late;
  EXPECT_EQ(Record(job.id()), theirs) << "the lost run overwrote the record";
  auto seen = other->Get(job.id());
  ASSERT_TRUE(seen.ok());
  EXPECT_EQ(seen->state, JobState::kRunning);
  EXPECT_EQ(seen->worker, "w2");
  // The worker that has the job records its end.
  ASSERT_EQ(other->Complete(job.id(), "w2", {}), absl::OkStatus());
  EXPECT_EQ(State(job), JobState::kSucceeded);
  EXPECT_EQ(other_broker->settled(), std::vector<std::string>{"ack 1"});
}

// Once a worker claimed a queued job, a write over the queued version (a gateway's cancel that
// read it before the claim) is refused, and a cancel asks the worker to stop instead.
TEST_F(AmqpQueueBookkeepingTest, ACancelOfAClaimedJobIsARequestAndAStaleQueuedWriteIsRefused) {
  NewJob spec;
  spec.id = NewUlid();
  spec.model = "m";
  spec.request = R"({"prompt":"a red circle","steps":10})";
  ASSERT_TRUE(queue_->Enqueue(spec).ok());
  auto before = records_->GetVersioned(JobRecordKey(spec.id));
  ASSERT_TRUE(before.ok());
  broker_->Deliver("m", broker_->LastPublished());
  ASSERT_EQ(queue_->Claim("m", 1, "w1", 60000)->size(), 1u);
  // The gateway's conditional write over the queued version it read is refused.
  auto stale = records_->PutIf(JobRecordKey(spec.id), "{}", before->version);
  EXPECT_TRUE(absl::IsFailedPrecondition(stale.status()));
  auto cancelled = queue_->Cancel(spec.id);
  ASSERT_TRUE(cancelled.ok()) << cancelled.status();
  EXPECT_EQ(cancelled->state, JobState::kRunning);
  EXPECT_TRUE(cancelled->cancel_requested);
}

}  // namespace
}  // namespace kiln::queue
