// Per-key quotas: open jobs and queued seconds counted from the queue plus what is reserved,
// daily images that survive reopening the ledger, refunds, and the headers' figures.
#include "quota/quotas.h"

#include <filesystem>

#include "core/ids.h"
#include "core/status_util.h"
#include "gtest/gtest.h"
#include "queue/job_queue.h"
#include "quota/usage_ledger.h"

namespace kiln::quota {
namespace {

constexpr int64_t kDayMs = 24 * 3600 * 1000;

class QuotasTest : public ::testing::Test {
 protected:
  void SetUp() override {
    queue::QueueOptions o;
    o.now_ms = [this] { return now_; };
    auto q = queue::JobQueue::Open("memory:", o);
    ASSERT_TRUE(q.ok()) << q.status();
    queue_ = std::move(*q);
    auto ledger = UsageLedger::Open(":memory:");
    ASSERT_TRUE(ledger.ok()) << ledger.status();
    ledger_ = std::move(*ledger);
    quotas_ = std::make_unique<Quotas>(queue_.get(), ledger_.get(), [this] { return now_; });
  }

  std::string Enqueue(const std::string& tenant, double cost) {
    queue::NewJob j;
    j.id = NewUlid(now_ + counter_++);
    j.model = "m";
    j.request = R"({"prompt":"x"})";
    j.tenant = tenant;
    j.cost = cost;
    EXPECT_TRUE(queue_->Enqueue(j).ok());
    return j.id;
  }

  static Demand For(const std::string& tenant, int jobs, int64_t images, double cost) {
    return Demand{"key-" + tenant, tenant, jobs, images, cost};
  }

  int64_t now_ = 1'700'000'000'000;  // 2023-11-14 22:13:20 UTC
  int counter_ = 0;
  std::unique_ptr<queue::JobQueue> queue_;
  std::unique_ptr<UsageLedger> ledger_;
  std::unique_ptr<Quotas> quotas_;
};

TEST_F(QuotasTest, ConcurrentJobsCountQueuedRunningAndReservedWorkOfTheTenant) {
  KeyLimits limits;
  limits.concurrent_jobs = 3;
  const std::string running = Enqueue("a", 1);
  auto claimed = queue_->Claim("m", 1, "w", 60000);
  ASSERT_TRUE(claimed.ok() && claimed->size() == 1 && (*claimed)[0].id() == running);
  Enqueue("a", 1);
  Enqueue("b", 1);  // another tenant's job does not count

  auto held = quotas_->Admit(limits, For("a", 1, 1, 1));  // a sync generation in flight
  ASSERT_TRUE(held.ok()) << held.status();
  EXPECT_EQ(quotas_->reserved_jobs("a"), 1);

  auto refused = quotas_->Admit(limits, For("a", 1, 1, 1));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(refused.status().message().find("concurrent_jobs"), std::string::npos);
  ASSERT_TRUE(RateLimitOf(refused.status()).has_value());
  EXPECT_EQ(RateLimitOf(refused.status())->limit, 3);
  EXPECT_EQ(RateLimitOf(refused.status())->remaining, 0);
  EXPECT_GE(RetryAfterOf(refused.status()).value_or(0), 1);

  *held = QuotaTicket();  // the generation ended
  EXPECT_EQ(quotas_->reserved_jobs("a"), 0);
  EXPECT_TRUE(quotas_->Admit(limits, For("a", 1, 1, 1)).ok());
  // A finished job no longer counts.
  ASSERT_TRUE(queue_->Complete(running, "w", {}).ok());
  auto two = quotas_->Admit(limits, For("a", 2, 2, 2));
  EXPECT_TRUE(two.ok()) << two.status();

  // More jobs at once than the limit can never fit: no Retry-After.
  auto never = quotas_->Admit(limits, For("c", 4, 4, 4));
  ASSERT_FALSE(never.ok());
  EXPECT_FALSE(RetryAfterOf(never.status()).has_value());
}

TEST_F(QuotasTest, QueuedSecondsCountOnlyWorkNotYetRunning) {
  KeyLimits limits;
  limits.queued_seconds = 10;
  Enqueue("a", 6);
  auto near = quotas_->Admit(limits, For("a", 1, 1, 5));
  ASSERT_FALSE(near.ok());
  EXPECT_NE(near.status().message().find("queued_seconds"), std::string::npos);
  EXPECT_EQ(RetryAfterOf(near.status()).value_or(0), 1);        // 6 + 5 - 10 = 1 s over
  EXPECT_TRUE(quotas_->Admit(limits, For("a", 1, 1, 4)).ok());  // 6 + 4: at the limit
  // Once the queued job runs, its seconds no longer count.
  ASSERT_TRUE(queue_->Claim("m", 1, "w", 60000).ok());
  EXPECT_TRUE(quotas_->Admit(limits, For("a", 1, 1, 9)).ok());
  EXPECT_FALSE(quotas_->Admit(limits, For("a", 1, 1, 11)).ok());
}

TEST_F(QuotasTest, ImagesPerDayAreCountedPerKeyAndDayAndGivenBackOnRefund) {
  KeyLimits limits;
  limits.images_per_day = 5;
  auto first = quotas_->Admit(limits, For("a", 1, 4, 1));
  ASSERT_TRUE(first.ok());
  auto over = quotas_->Admit(limits, For("a", 1, 2, 1));
  ASSERT_FALSE(over.ok());
  EXPECT_NE(over.status().message().find("1 of its images_per_day (5) left"), std::string::npos)
      << over.status();
  EXPECT_EQ(RateLimitOf(over.status())->remaining, 1);
  // Until 00:00 UTC: 2023-11-14 22:13:20 -> 1 h 46 min 40 s.
  EXPECT_EQ(RetryAfterOf(over.status()).value_or(0), 6400);
  EXPECT_TRUE(quotas_->Admit(limits, For("b", 1, 5, 1)).ok());  // another key's count

  first->Refund();  // the work never ran
  first->Refund();  // once only
  EXPECT_EQ(*ledger_->Used("key-a", now_ / kDayMs), 0);
  EXPECT_TRUE(quotas_->Admit(limits, For("a", 1, 5, 1)).ok());
  EXPECT_FALSE(quotas_->Admit(limits, For("a", 1, 1, 1)).ok());
  now_ += 2 * 3600 * 1000;  // the next UTC day
  EXPECT_TRUE(quotas_->Admit(limits, For("a", 1, 5, 1)).ok());
  // Asking for more than a day allows is never granted, and says so without Retry-After.
  auto never = quotas_->Admit(limits, For("c", 1, 6, 1));
  ASSERT_FALSE(never.ok());
  EXPECT_FALSE(RetryAfterOf(never.status()).has_value());
}

TEST_F(QuotasTest, KeysWithoutQuotasHoldNothing) {
  for (int i = 0; i < 100; ++i) {
    auto t = quotas_->Admit(KeyLimits{}, For("a", 1, 10, 100));
    ASSERT_TRUE(t.ok());
  }
  EXPECT_EQ(quotas_->reserved_jobs("a"), 0);
}

TEST(UsageLedger, CountsSurviveReopeningTheFileAndOldDaysAreForgotten) {
  const auto dir = std::filesystem::temp_directory_path() / ("kiln-ledger-" + NewUlid());
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "usage.db").string();
  {
    auto ledger = UsageLedger::Open(path);
    ASSERT_TRUE(ledger.ok()) << ledger.status();
    auto take = (*ledger)->Take("k", 100, 3, 5);
    ASSERT_TRUE(take.ok());
    EXPECT_TRUE(take->granted);
    EXPECT_EQ(take->used, 3);
    take = (*ledger)->Take("k", 100, 3, 5);
    EXPECT_FALSE(take->granted);
    EXPECT_EQ(take->used, 3);
    ASSERT_TRUE((*ledger)->Take("k", 99, 1, 5).ok());
  }
  {
    auto ledger = UsageLedger::Open(path);
    ASSERT_TRUE(ledger.ok());
    EXPECT_EQ(*(*ledger)->Used("k", 100), 3);  // a restart keeps the day's count
    EXPECT_FALSE((*ledger)->Take("k", 100, 3, 5)->granted);
    ASSERT_TRUE((*ledger)->Give("k", 100, 10).ok());
    EXPECT_EQ(*(*ledger)->Used("k", 100), 0);  // never below zero
    ASSERT_TRUE((*ledger)->ForgetBefore(100).ok());
    EXPECT_EQ(*(*ledger)->Used("k", 99), 0);
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace kiln::quota
