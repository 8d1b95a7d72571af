#include "quota/quotas.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <utility>

#include "core/logging.h"
#include "core/status_util.h"
#include "core/strings.h"
#include "queue/job_queue.h"
#include "quota/usage_ledger.h"

namespace kiln::quota {
namespace {

constexpr int64_t kDayMs = 24 * 3600 * 1000;

int64_t FloorDiv(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

absl::Status Refused(std::string message, int retry_after_seconds, RateLimitInfo info) {
  absl::Status s = WithRateLimit(absl::ResourceExhaustedError(std::move(message)), info);
  return retry_after_seconds > 0 ? WithRetryAfter(std::move(s), retry_after_seconds) : s;
}

std::string OneDecimal(double v) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.1f", v);
  return text;
}

int CeilSeconds(double seconds) {
  return static_cast<int>(std::clamp(std::ceil(seconds), 1.0, 86400.0));
}

}  // namespace

QuotaTicket::QuotaTicket(QuotaTicket&& other) noexcept { *this = std::move(other); }

QuotaTicket& QuotaTicket::operator=(QuotaTicket&& other) noexcept {
  if (this == &other) return *this;
  Release();
  quotas_ = std::exchange(other.quotas_, nullptr);
  demand_ = std::move(other.demand_);
  day_ = other.day_;
  took_images_ = std::exchange(other.took_images_, false);
  return *this;
}

QuotaTicket::~QuotaTicket() { Release(); }

void QuotaTicket::Refund() {
  if (!quotas_ || !took_images_) return;
  took_images_ = false;
  quotas_->GiveBack(demand_, day_);
}

void QuotaTicket::Release() {
  if (!quotas_) return;
  quotas_->Unreserve(demand_);
  quotas_ = nullptr;
}

Quotas::Quotas(queue::JobQueue* queue, UsageLedger* ledger, std::function<int64_t()> now_ms)
    : queue_(queue), ledger_(ledger), now_ms_(std::move(now_ms)) {}

absl::StatusOr<QuotaTicket> Quotas::Admit(const KeyLimits& limits, const Demand& demand) {
  QuotaTicket ticket;
  if (!limits.any_quota()) return ticket;
  absl::MutexLock lock(&mu_);
  if (limits.CountsJobs()) {
    if (limits.concurrent_jobs > 0 && demand.jobs > limits.concurrent_jobs) {
      return Refused(StrCat("this request makes ", demand.jobs,
                            " jobs, more than this API key's concurrent_jobs (",
                            limits.concurrent_jobs, ") allows at once"),
                     0, {limits.concurrent_jobs, limits.concurrent_jobs});
    }
    if (limits.queued_seconds > 0 && demand.cost_seconds > limits.queued_seconds) {
      return Refused(StrCat("this request needs about ", OneDecimal(demand.cost_seconds),
                            " device-seconds, more than this API key's queued_seconds (",
                            OneDecimal(limits.queued_seconds), ") allows"),
                     0,
                     {static_cast<int64_t>(limits.queued_seconds),
                      static_cast<int64_t>(limits.queued_seconds)});
    }
    KILN_ASSIGN_OR_RETURN(queue::TenantWork work, queue_->OpenWork(demand.tenant));
    const Reserved& held = reserved_[demand.tenant];
    const int open = work.open + held.jobs;
    const double queued = work.queued_cost + held.cost;
    if (limits.concurrent_jobs > 0 && open + demand.jobs > limits.concurrent_jobs) {
      // About when one of them finishes: the mean cost of what is queued, else a second.
      const double mean = open > 0 ? queued / open : 0;
      return Refused(
          StrCat("this API key's tenant has ", open,
                 " jobs queued or running; its concurrent_jobs limit is ", limits.concurrent_jobs),
          CeilSeconds(mean), {limits.concurrent_jobs, std::max(0, limits.concurrent_jobs - open)});
    }
    if (limits.queued_seconds > 0 && queued + demand.cost_seconds > limits.queued_seconds) {
      const double over = queued + demand.cost_seconds - limits.queued_seconds;
      return Refused(StrCat("this API key's tenant has about ", OneDecimal(queued),
                            " device-seconds of work queued; with this request's ",
                            OneDecimal(demand.cost_seconds), " it would pass its queued_seconds (",
                            OneDecimal(limits.queued_seconds), ")"),
                     CeilSeconds(over),
                     {static_cast<int64_t>(limits.queued_seconds),
                      static_cast<int64_t>(std::max(0.0, limits.queued_seconds - queued))});
    }
  }
  const int64_t now = now_ms_();
  const int64_t day = FloorDiv(now, kDayMs);
  if (limits.images_per_day > 0) {
    if (!ledger_) return absl::FailedPreconditionError("images_per_day needs a usage ledger");
    if (day > forgotten_before_ + 1) {
      // Yesterday's counts stay (a request admitted at midnight may still give images back).
      if (absl::Status s = ledger_->ForgetBefore(day - 1); !s.ok()) {
        log::Warn("old daily counts not deleted", {{"error", std::string(s.message())}});
      }
      forgotten_before_ = day - 1;
    }
    KILN_ASSIGN_OR_RETURN(LedgerTake take,
                          ledger_->Take(demand.key, day, demand.images, limits.images_per_day));
    if (!take.granted) {
      const int64_t left = std::max<int64_t>(0, limits.images_per_day - take.used);
      const int until_midnight =
          static_cast<int>(std::max<int64_t>(1, ((day + 1) * kDayMs - now + 999) / 1000));
      return Refused(
          StrCat("this request asks for ", demand.images, " images; this API key has ", left,
                 " of its images_per_day (", limits.images_per_day, ") left until 00:00 UTC"),
          demand.images > limits.images_per_day ? 0 : until_midnight,
          {limits.images_per_day, left});
    }
    ticket.took_images_ = true;
  }
  Reserved& held = reserved_[demand.tenant];
  held.jobs += demand.jobs;
  held.cost += demand.cost_seconds;
  ticket.quotas_ = this;
  ticket.demand_ = demand;
  ticket.day_ = day;
  return ticket;
}

void Quotas::Unreserve(const Demand& demand) {
  absl::MutexLock lock(&mu_);
  auto it = reserved_.find(demand.tenant);
  if (it == reserved_.end()) return;
  it->second.jobs -= demand.jobs;
  it->second.cost -= demand.cost_seconds;
  if (it->second.jobs <= 0) reserved_.erase(it);
}

void Quotas::GiveBack(const Demand& demand, int64_t day) {
  if (!ledger_) return;
  if (absl::Status s = ledger_->Give(demand.key, day, demand.images); !s.ok()) {
    log::Warn("images not given back to the day's count", {{"error", std::string(s.message())}});
  }
}

int Quotas::reserved_jobs(const std::string& tenant) const {
  absl::MutexLock lock(&mu_);
  auto it = reserved_.find(tenant);
  return it == reserved_.end() ? 0 : it->second.jobs;
}

}  // namespace kiln::quota
