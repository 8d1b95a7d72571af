// The JobQueue contract, run against the in-memory twin and a SQLite file.
#include "queue/job_queue.h"

#include <filesystem>

#include "core/ids.h"
#include "gtest/gtest.h"

namespace kiln::queue {
namespace {

class JobQueueTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    QueueOptions o;
    o.now_ms = [this] { return now_; };
    o.synchronous_full = false;
    if (GetParam()) {
      dir_ = std::filesystem::temp_directory_path() / ("kiln-queue-test-" + NewUlid());
      std::filesystem::create_directories(dir_);
      url_ = "sqlite://" + (dir_ / "q.db").string();
    } else {
      url_ = "memory:";
    }
    auto q = JobQueue::Open(url_, o);
    ASSERT_TRUE(q.ok()) << q.status();
    q_ = std::move(*q);
  }
  void TearDown() override {
    q_.reset();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  NewJob Job(std::string tenant = "a", double cost = 1, PriorityClass klass = PriorityClass::kAsync,
             int priority = 0) {
    NewJob j;
    j.id = NewUlid(now_ + static_cast<int64_t>(counter_++));
    j.model = "m";
    j.request = R"({"prompt":"x"})";
    j.tenant = std::move(tenant);
    j.cost = cost;
    j.klass = klass;
    j.priority = priority;
    return j;
  }
  std::string Enqueue(NewJob j) {
    auto r = q_->Enqueue(j);
    EXPECT_TRUE(r.ok()) << r.status();
    return j.id;
  }
  std::vector<std::string> ClaimIds(int n) {
    auto jobs = q_->Claim("m", n, "w1", 1000);
    EXPECT_TRUE(jobs.ok()) << jobs.status();
    std::vector<std::string> ids;
    for (const auto& j : *jobs) ids.push_back(j.id());
    return ids;
  }

  int64_t now_ = 1'700'000'000'000;
  int counter_ = 0;
  std::filesystem::path dir_;
  std::string url_;
  std::unique_ptr<JobQueue> q_;
};

TEST_P(JobQueueTest, ClaimsByClassThenPriorityThenAge) {
  const std::string batch = Enqueue(Job("a", 1, PriorityClass::kBatch));
  const std::string low = Enqueue(Job("a", 1, PriorityClass::kAsync, -1));
  const std::string normal = Enqueue(Job("a", 1));
  const std::string high = Enqueue(Job("a", 1, PriorityClass::kAsync, 5));
  EXPECT_EQ(ClaimIds(10), (std::vector<std::string>{high, normal, low, batch}));
  EXPECT_TRUE(ClaimIds(1).empty());
}

TEST_P(JobQueueTest, SharesFairlyAcrossTenantsByCostAndWeight) {
  std::vector<std::string> flood;
  for (int i = 0; i < 4; ++i) flood.push_back(Enqueue(Job("flood", 1)));
  const std::string small = Enqueue(Job("small", 1));
  // The newcomer's first job goes before the flood's second.
  auto order = ClaimIds(2);
  EXPECT_EQ(order, (std::vector<std::string>{flood[0], small}));
  // A heavier weight earns a larger share: weight 4 -> four of its jobs per one of weight 1.
  ASSERT_TRUE(q_->SetTenantWeight("vip", 4).ok());
  std::vector<std::string> vip;
  for (int i = 0; i < 4; ++i) vip.push_back(Enqueue(Job("vip", 1)));
  order = ClaimIds(5);
  EXPECT_EQ(order[0], vip[0]);
  EXPECT_EQ(std::count(order.begin(), order.end(), flood[1]), 1);
  EXPECT_FALSE(q_->SetTenantWeight("x", 0).ok());
}

TEST_P(JobQueueTest, IdempotencyKeyReturnsTheEarlierJob) {
  NewJob j = Job();
  j.idempotency_key = "k1";
  ASSERT_TRUE(q_->Enqueue(j).ok());
  NewJob again = Job();
  again.idempotency_key = "k1";
  auto r = q_->Enqueue(again);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->created);
  EXPECT_EQ(r->job.id(), j.id);
  NewJob other_tenant = Job("b");
  other_tenant.idempotency_key = "k1";
  EXPECT_TRUE(q_->Enqueue(other_tenant)->created);
  NewJob different = Job();
  different.idempotency_key = "k1";
  different.request = R"({"prompt":"y"})";
  EXPECT_TRUE(absl::IsFailedPrecondition(q_->Enqueue(different).status()));
}

TEST_P(JobQueueTest, AnIdempotencyKeyExpiresAfterItsTtl) {
  NewJob j = Job();
  j.idempotency_key = "k1";
  ASSERT_TRUE(q_->Enqueue(j).ok());
  now_ += 24 * 3600 * 1000 - 1;  // still within the day
  NewJob replay = Job();
  replay.idempotency_key = "k1";
  EXPECT_FALSE(q_->Enqueue(replay)->created);
  now_ += 2;  // expired: a new job, even for a different request, and it owns the key now
  NewJob later = Job();
  later.idempotency_key = "k1";
  later.request = R"({"prompt":"y"})";
  auto r = q_->Enqueue(later);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->created);
  NewJob again = Job();
  again.idempotency_key = "k1";
  again.request = later.request;
  auto replayed = q_->Enqueue(again);
  ASSERT_TRUE(replayed.ok()) << replayed.status();
  EXPECT_FALSE(replayed->created);
  EXPECT_EQ(replayed->job.id(), later.id);
  EXPECT_TRUE(q_->Get(j.id).ok()) << "the earlier job itself stays";
}

TEST_P(JobQueueTest, PurgeDeletesOnlyFinalJobsThatFinishedBeforeTheCutoff) {
  const std::string done = Enqueue(Job());
  const std::string failed = Enqueue(Job());
  ASSERT_EQ(ClaimIds(2).size(), 2u);
  ASSERT_TRUE(q_->Complete(done, "w1", {"jobs/" + done + "/0.png"}).ok());
  ASSERT_TRUE(q_->Fail(failed, "w1", "boom", "engine_error", /*retryable=*/false).ok());
  const int64_t finished = now_;
  now_ += 1000;
  const std::string running = Enqueue(Job());
  ASSERT_EQ(ClaimIds(1).size(), 1u);
  const std::string queued = Enqueue(Job());
  Batch batch;
  batch.id = NewUlid();
  batch.model = "m";
  batch.created_ms = now_;
  batch.total = 1;
  NewJob line = Job();
  line.batch_id = batch.id;
  ASSERT_TRUE(q_->EnqueueBatch(batch, {line}).ok());
  now_ += 1000;

  // Nothing finished before the cutoff yet.
  EXPECT_TRUE(q_->PurgeFinished(finished, 100)->empty());
  // One at a time (the limit), oldest first.
  auto first = q_->PurgeFinished(finished + 1, 1);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(*first, std::vector<std::string>{done});
  auto second = q_->PurgeFinished(now_, 100);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(*second, std::vector<std::string>{failed});
  EXPECT_TRUE(absl::IsNotFound(q_->Get(done).status()));
  EXPECT_TRUE(absl::IsNotFound(q_->Get(failed).status()));
  for (const std::string& id : {running, queued, line.id}) EXPECT_TRUE(q_->Get(id).ok()) << id;
  EXPECT_TRUE(q_->GetBatch(batch.id).ok()) << "its job is still queued";
  // The batch goes with its last job.
  q_->Cancel(line.id).IgnoreError();
  now_ += 1000;
  auto third = q_->PurgeFinished(now_, 100);
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_EQ(*third, std::vector<std::string>{line.id});
  EXPECT_TRUE(absl::IsNotFound(q_->GetBatch(batch.id).status()));
}

TEST_P(JobQueueTest, LeaseExpiryRequeuesThenFailsAfterMaxAttempts) {
  NewJob j = Job();
  j.max_attempts = 2;
  Enqueue(j);
  ASSERT_EQ(ClaimIds(1).size(), 1u);
  now_ += 500;
  ASSERT_TRUE(q_->Heartbeat(j.id, "w1", 1000, 3, 10).ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(q_->Heartbeat(j.id, "other", 1000, 3, 10)));
  now_ += 900;  // within the renewed lease
  EXPECT_TRUE(q_->ExpireLeases()->empty());
  now_ += 200;
  auto expired = q_->ExpireLeases();
  ASSERT_EQ(expired->size(), 1u);
  EXPECT_EQ((*expired)[0].state, JobState::kQueued);
  // The old holder cannot complete it any more.
  EXPECT_TRUE(absl::IsFailedPrecondition(q_->Complete(j.id, "w1", {})));
  ASSERT_EQ(ClaimIds(1).size(), 1u);
  expired = q_->ExpireLeases(/*all=*/true);
  ASSERT_EQ(expired->size(), 1u);
  EXPECT_EQ((*expired)[0].state, JobState::kFailed);
  EXPECT_EQ((*expired)[0].attempts, 2);
  EXPECT_EQ((*expired)[0].error_code, "worker_lost");
}

TEST_P(JobQueueTest, CompleteFailRetryAndRelease) {
  const std::string a = Enqueue(Job());
  ClaimIds(1);
  ASSERT_TRUE(q_->Complete(a, "w1", {"jobs/a/0.png"}).ok());
  auto done = q_->Get(a);
  EXPECT_EQ(done->state, JobState::kSucceeded);
  EXPECT_EQ(done->result_keys, std::vector<std::string>{"jobs/a/0.png"});

  const std::string b = Enqueue(Job());
  ClaimIds(1);
  auto retried = q_->Fail(b, "w1", "device error", "generation_error", true);
  EXPECT_EQ(retried->state, JobState::kQueued);
  ClaimIds(1);
  auto failed = q_->Fail(b, "w1", "bad request", "invalid_request", false);
  EXPECT_EQ(failed->state, JobState::kFailed);
  EXPECT_EQ(failed->error, "bad request");

  const std::string c = Enqueue(Job());
  ClaimIds(1);
  ASSERT_TRUE(q_->Release(c, "w1").ok());
  auto released = q_->Get(c);
  EXPECT_EQ(released->state, JobState::kQueued);
  EXPECT_EQ(released->attempts, 0);  // handing back is not an attempt
}

TEST_P(JobQueueTest, CancelQueuedAtOnceAndRunningAtTheWorker) {
  const std::string a = Enqueue(Job());
  const std::string b = Enqueue(Job());
  ClaimIds(1);  // a runs
  auto qb = q_->Cancel(b);
  EXPECT_EQ(qb->state, JobState::kCancelled);
  auto ra = q_->Cancel(a);
  EXPECT_EQ(ra->state, JobState::kRunning);
  EXPECT_TRUE(ra->cancel_requested);
  ASSERT_TRUE(q_->MarkCancelled(a, "w1").ok());
  EXPECT_EQ(q_->Get(a)->state, JobState::kCancelled);
  EXPECT_TRUE(absl::IsNotFound(q_->Cancel(NewUlid()).status()));
}

TEST_P(JobQueueTest, BatchIsAllOrNothing) {
  Batch batch{NewUlid(), "m", 0, 2, "{}"};
  NewJob x = Job(), y = Job();
  x.batch_id = y.batch_id = batch.id;
  x.idempotency_key = y.idempotency_key = "same";  // the second collides
  EXPECT_FALSE(q_->EnqueueBatch(batch, {x, y}).ok());
  EXPECT_FALSE(q_->GetBatch(batch.id).ok());
  EXPECT_TRUE(absl::IsNotFound(q_->Get(x.id).status()));
  y.idempotency_key = "";
  ASSERT_TRUE(q_->EnqueueBatch(batch, {x, y}).ok());
  auto counts = q_->BatchCounts(batch.id);
  EXPECT_EQ((*counts)[JobState::kQueued], 2);
}

TEST_P(JobQueueTest, ListsNewestFirstWithACursor) {
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(Enqueue(Job()));
  JobFilter f;
  f.limit = 2;
  auto p1 = q_->List(f);
  ASSERT_EQ(p1->jobs.size(), 2u);
  EXPECT_TRUE(p1->has_more);
  EXPECT_EQ(p1->jobs[0].id(), ids[4]);
  f.before = p1->jobs.back().id();
  f.limit = 10;
  auto p2 = q_->List(f);
  ASSERT_EQ(p2->jobs.size(), 3u);
  EXPECT_FALSE(p2->has_more);
  EXPECT_EQ(p2->jobs.back().id(), ids[0]);
  f = {};
  f.state = JobState::kRunning;
  EXPECT_TRUE(q_->List(f)->jobs.empty());
}

TEST_P(JobQueueTest, DeadlinesPositionsAndBacklog) {
  NewJob late = Job("a", 2);
  late.deadline_ms = now_ + 100;
  Enqueue(late);
  NewJob second = Job("a", 3);
  Enqueue(second);
  auto pos = q_->Position(*q_->Get(second.id));
  EXPECT_EQ(pos->ahead, 1);
  EXPECT_DOUBLE_EQ(pos->cost_ahead, 2);
  auto backlog = q_->Backlog("m");
  EXPECT_EQ(backlog->queued, 2);
  EXPECT_DOUBLE_EQ(backlog->queued_cost, 5);
  EXPECT_DOUBLE_EQ(backlog->queued_cost_by_class[PriorityClass::kAsync], 5);
  EXPECT_EQ(backlog->queued_by_class[PriorityClass::kAsync], 2);
  now_ += 101;
  auto expired = q_->ExpireDeadlines();
  ASSERT_EQ(expired->size(), 1u);
  EXPECT_EQ((*expired)[0].error_code, "deadline_exceeded");
  EXPECT_EQ(q_->Backlog("m")->queued, 1);
  auto counts = q_->StateCounts("m");
  ASSERT_TRUE(counts.ok());
  EXPECT_EQ((*counts)[JobState::kQueued], 1);
  EXPECT_EQ((*counts)[JobState::kFailed], 1);
  EXPECT_TRUE(q_->StateCounts("other")->empty());
}

TEST_P(JobQueueTest, WebhookStatusAndPendingAfterRestart) {
  NewJob j = Job();
  j.webhook = "http://127.0.0.1:1/hook";
  Enqueue(j);
  ClaimIds(1);
  ASSERT_TRUE(q_->Complete(j.id, "w1", {}).ok());
  EXPECT_EQ(q_->PendingWebhooks()->size(), 1u);
  ASSERT_TRUE(q_->SetWebhookStatus(j.id, R"({"state":"delivered","attempts":1})").ok());
  EXPECT_TRUE(q_->PendingWebhooks()->empty());
}

INSTANTIATE_TEST_SUITE_P(Backends, JobQueueTest, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "Sqlite" : "Memory"; });

TEST(JobQueueOpen, RejectsBadUrlsAndSurvivesReopen) {
  EXPECT_FALSE(JobQueue::Open("sqlite://relative.db").ok());
  EXPECT_FALSE(JobQueue::Open("redis://x").ok());
  // The broker queue keeps its job records in a store; without one it cannot work.
  EXPECT_TRUE(absl::IsInvalidArgument(JobQueue::Open("amqp://guest@localhost/").status()));
  const auto dir = std::filesystem::temp_directory_path() / ("kiln-queue-reopen-" + NewUlid());
  std::filesystem::create_directories(dir);
  const std::string url = "sqlite://" + (dir / "q.db").string();
  NewJob j;
  j.id = NewUlid();
  j.model = "m";
  j.request = "{}";
  {
    auto q = JobQueue::Open(url);
    ASSERT_TRUE(q.ok());
    ASSERT_TRUE((*q)->Enqueue(j).ok());
  }
  auto q = JobQueue::Open(url);
  ASSERT_TRUE(q.ok());
  EXPECT_EQ((*q)->Get(j.id)->state, JobState::kQueued);
  q->reset();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace kiln::queue
