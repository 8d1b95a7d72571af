// PreemptionWatch: polls a cloud's "is this VM being preempted?" URL and calls back once when
// it says yes, so that a worker on a Spot VM checkpoints its jobs at a step boundary before the
// machine goes away (SIGTERM does the same; the metadata server often says so first). GCE:
// http://metadata.google.internal/computeMetadata/v1/instance/preempted answers "TRUE" or
// "FALSE" to a GET with the header "Metadata-Flavor: Google". The URL is configurable, so a
// test (or another cloud's equivalent that answers TRUE/FALSE) can stand in. Thread-safe.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"

namespace kiln::sched {

struct PreemptionWatchOptions {
  std::string url;
  std::chrono::milliseconds interval{1000};
  std::chrono::milliseconds timeout{2000};  // per poll
  // Called once, on the watch's thread, when the URL answers TRUE.
  std::function<void()> on_preempted;
};

class PreemptionWatch {
 public:
  // Starts polling at once. The caller checks the URL first (http::CheckHttpUrl).
  explicit PreemptionWatch(PreemptionWatchOptions options);
  ~PreemptionWatch();  // Stop()
  void Stop();
  bool preempted() const;

 private:
  void Run();

  const PreemptionWatchOptions options_;
  mutable absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool preempted_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace kiln::sched
