// WebhookSender: delivers job notifications by POST, signed with HMAC-SHA256, retried with
// exponential backoff on transport errors, 429 and 5xx. Each outcome is reported through
// `record` so that it is written on the job. Deliveries run on one background thread.
// Thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "http/address_policy.h"
#include "nlohmann/json.hpp"
#include "obs/metrics.h"

namespace kiln::sched {

struct WebhookOptions {
  std::string secret;  // HMAC key
  int max_attempts = 5;
  std::chrono::milliseconds first_backoff{1000};  // doubled after each failure
  std::chrono::milliseconds timeout{10000};       // per attempt
  size_t max_pending = 100000;
  // Where deliveries may go (resolved, judged and pinned per attempt); a refused address fails
  // the delivery at once, without a retry.
  http::AddressPolicy policy;
  // Optional: deliveries that ended, by outcome (delivered | failed).
  obs::Family<obs::Counter>* deliveries = nullptr;
};

// The signature header value: "t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>".
std::string SignWebhook(const std::string& secret, int64_t unix_seconds, const std::string& body);

class WebhookSender {
 public:
  // `record(job_id, status)`: status is {"state": "pending"|"delivered"|"failed", "attempts",
  // "last_status", "last_error", "url"}.
  WebhookSender(WebhookOptions options,
                std::function<void(const std::string&, const nlohmann::json&)> record);
  ~WebhookSender();  // Stop()

  // Queues a delivery of `body` (JSON) to `url` for `job_id`.
  void Send(const std::string& job_id, const std::string& url, const std::string& body);
  // Stops after the attempt in progress; undelivered webhooks stay "pending" on their jobs and
  // are sent again after a restart.
  void Stop();
  size_t pending() const;

 private:
  struct Delivery {
    std::string job_id, url, body;
    int attempts = 0;
  };
  void Run();

  const WebhookOptions options_;
  const std::function<void(const std::string&, const nlohmann::json&)> record_;
  mutable absl::Mutex mu_;
  std::multimap<std::chrono::steady_clock::time_point, Delivery> due_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace kiln::sched
