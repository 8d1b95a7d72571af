// Quotas: the per-key limits on work (concurrent jobs, queued device-seconds, images per UTC
// day) checked when a request asks for work. A tenant's queued and running async jobs are counted
// by the queue; work admitted but not yet in the queue (a submission in progress) or never in it
// (synchronous generations) is reserved here until its ticket ends. Requests per minute are a
// rate, not a quota: ApiKeys::Admit. Thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace kiln::queue {
class JobQueue;
}

namespace kiln::quota {

class UsageLedger;

// The limits of one API key; 0 means none.
struct KeyLimits {
  int requests_per_minute = 0;
  int concurrent_jobs = 0;     // the tenant's queued + running jobs and sync generations
  double queued_seconds = 0;   // estimated device-seconds of the tenant's work not yet running
  int64_t images_per_day = 0;  // images granted to this key per UTC day
  bool CountsJobs() const { return concurrent_jobs > 0 || queued_seconds > 0; }
  bool any_quota() const { return CountsJobs() || images_per_day > 0; }
};

// What one request asks for.
struct Demand {
  std::string key;     // the key's SHA-256: where its daily count is kept
  std::string tenant;  // whose jobs count against concurrent_jobs and queued_seconds
  int jobs = 1;
  int64_t images = 1;
  double cost_seconds = 0;  // the scheduler's estimate for all of it
};

class Quotas;

// Admitted work. While it lives, its jobs and cost count as the tenant's (until the queue counts
// them itself: keep it until Submit returned, or, for a sync generation, until it is done).
// Refund() gives the images back to the day when the work never ran. Move-only.
class QuotaTicket {
 public:
  QuotaTicket() = default;  // admits nothing, holds nothing
  QuotaTicket(QuotaTicket&& other) noexcept;
  QuotaTicket& operator=(QuotaTicket&& other) noexcept;
  ~QuotaTicket();

  void Refund();

 private:
  friend class Quotas;
  void Release();
  Quotas* quotas_ = nullptr;
  Demand demand_;
  int64_t day_ = 0;
  bool took_images_ = false;
};

class Quotas {
 public:
  // `queue` counts open jobs; `ledger` keeps daily counts (null: images_per_day cannot be set);
  // `now_ms`: Unix milliseconds (the day of a count is the UTC day).
  Quotas(queue::JobQueue* queue, UsageLedger* ledger, std::function<int64_t()> now_ms);

  // Admits `demand` under `limits`, or answers ResourceExhausted (HTTP 429) naming the limit,
  // with Retry-After and RateLimit payloads (see core/status_util.h); a demand that could never
  // fit (more jobs, images or seconds than the limit) has no Retry-After.
  absl::StatusOr<QuotaTicket> Admit(const KeyLimits& limits, const Demand& demand);

  // Work reserved now (tests).
  int reserved_jobs(const std::string& tenant) const;

 private:
  friend class QuotaTicket;
  struct Reserved {
    int jobs = 0;
    double cost = 0;
  };
  void Unreserve(const Demand& demand);
  void GiveBack(const Demand& demand, int64_t day);

  queue::JobQueue* queue_;
  UsageLedger* ledger_;
  std::function<int64_t()> now_ms_;
  mutable absl::Mutex mu_;
  std::map<std::string, Reserved> reserved_ ABSL_GUARDED_BY(mu_);
  int64_t forgotten_before_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace kiln::quota
