#include "sched/webhooks.h"

#include "core/crypto.h"
#include "core/logging.h"
#include "core/strings.h"
#include "http/client.h"

namespace kiln::sched {

std::string SignWebhook(const std::string& secret, int64_t unix_seconds, const std::string& body) {
  return StrCat("t=", unix_seconds, ",v1=", HmacSha256Hex(secret, StrCat(unix_seconds, ".", body)));
}

WebhookSender::WebhookSender(WebhookOptions options,
                             std::function<void(const std::string&, const nlohmann::json&)> record)
    : options_(std::move(options)), record_(std::move(record)) {
  thread_ = std::thread([this] { Run(); });
}

WebhookSender::~WebhookSender() { Stop(); }

void WebhookSender::Send(const std::string& job_id, const std::string& url,
                         const std::string& body) {
  absl::MutexLock lock(&mu_);
  if (stop_) return;
  if (due_.size() >= options_.max_pending) {
    log::Warn("webhook queue full; delivery left pending", {{"job", job_id}});
    return;
  }
  due_.emplace(std::chrono::steady_clock::now(), Delivery{job_id, url, body, 0});
}

void WebhookSender::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

size_t WebhookSender::pending() const {
  absl::MutexLock lock(&mu_);
  return due_.size();
}

void WebhookSender::Run() {
  while (true) {
    Delivery d;
    {
      absl::MutexLock lock(&mu_);
      while (true) {
        if (stop_) return;
        const auto now = std::chrono::steady_clock::now();
        if (!due_.empty() && due_.begin()->first <= now) break;
        const auto wait =
            due_.empty()
                ? std::chrono::milliseconds(200)
                : std::chrono::duration_cast<std::chrono::milliseconds>(due_.begin()->first - now) +
                      std::chrono::milliseconds(1);
        mu_.AwaitWithTimeout(absl::Condition(&stop_),
                             absl::Milliseconds(std::min<int64_t>(wait.count(), 200)));
      }
      d = std::move(due_.begin()->second);
      due_.erase(due_.begin());
    }
    ++d.attempts;
    const int64_t now_s = std::chrono::duration_cast<std::chrono::seconds>(
                              std::chrono::system_clock::now().time_since_epoch())
                              .count();
    auto response = http::Post(d.url, d.body,
                               {{"Content-Type", "application/json"},
                                {"User-Agent", "kiln-webhook"},
                                {"Kiln-Job-Id", d.job_id},
                                {"Kiln-Signature", SignWebhook(options_.secret, now_s, d.body)}},
                               options_.timeout, &options_.policy);
    nlohmann::json status = {{"url", d.url}, {"attempts", d.attempts}};
    bool retry = false;
    if (response.ok()) {
      status["last_status"] = response->status;
      if (response->status >= 200 && response->status < 300) {
        status["state"] = "delivered";
      } else {
        status["last_error"] = StrCat("HTTP ", response->status);
        retry = response->status == 429 || response->status >= 500 || response->status == 408;
      }
    } else {
      status["last_error"] = std::string(response.status().message());
      retry = !absl::IsPermissionDenied(response.status());  // a refused address stays refused
    }
    if (!status.contains("state")) {
      if (retry && d.attempts < options_.max_attempts) {
        status["state"] = "pending";
        const auto backoff = options_.first_backoff * (1 << std::min(d.attempts - 1, 16));
        absl::MutexLock lock(&mu_);
        due_.emplace(std::chrono::steady_clock::now() + backoff, d);
      } else {
        status["state"] = "failed";
      }
    }
    const std::string state = status["state"];
    if (options_.deliveries && state != "pending") options_.deliveries->With({state}).Inc();
    log::Info("webhook attempt", {{"job", d.job_id},
                                  {"state", status["state"]},
                                  {"attempts", d.attempts},
                                  {"last_status", status.value("last_status", 0)}});
    record_(d.job_id, status);
  }
}

}  // namespace kiln::sched
