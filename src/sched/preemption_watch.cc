#include "sched/preemption_watch.h"

#include "absl/strings/ascii.h"
#include "core/logging.h"
#include "http/client.h"

namespace kiln::sched {

PreemptionWatch::PreemptionWatch(PreemptionWatchOptions options) : options_(std::move(options)) {
  thread_ = std::thread([this] { Run(); });
}

PreemptionWatch::~PreemptionWatch() { Stop(); }

void PreemptionWatch::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

bool PreemptionWatch::preempted() const {
  absl::MutexLock lock(&mu_);
  return preempted_;
}

void PreemptionWatch::Run() {
  std::string last_error;  // logged when it changes, not on every poll
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (stop_) return;
    }
    http::ClientRequest request;
    request.url = options_.url;
    request.headers = {{"Metadata-Flavor", "Google"}};
    request.timeout = options_.timeout;
    request.max_body_bytes = 64;
    auto response = http::Fetch(request);
    std::string error;
    if (!response.ok()) {
      error = std::string(response.status().message());
    } else if (response->status != 200) {
      error = "HTTP " + std::to_string(response->status);
    } else if (absl::AsciiStrToUpper(absl::StripAsciiWhitespace(response->body)) == "TRUE") {
      log::Warn("the machine is being preempted: stopping", {{"url", options_.url}});
      {
        absl::MutexLock lock(&mu_);
        preempted_ = true;
      }
      if (options_.on_preempted) options_.on_preempted();
      return;
    }
    if (error != last_error) {
      if (!error.empty()) {
        log::Warn("the preemption URL does not answer; still polling",
                  {{"url", options_.url}, {"error", error}});
      }
      last_error = error;
    }
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(&stop_), absl::Milliseconds(options_.interval.count()));
  }
}

}  // namespace kiln::sched
