// What AUTOMATIC1111's API keeps between calls, per server process: the default checkpoint
// (/sdapi/v1/options) and the txt2img/img2img calls in flight, which /sdapi/v1/progress,
// /interrupt and /skip act on. A1111 serves one user at a time; Kiln serves many, so each
// caller (tenant) sees and stops only its own calls, the oldest first. Thread-safe.
#pragma once

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "api/a1111_params.h"
#include "engine/image.h"
#include "http/message.h"
#include "quota/quotas.h"
#include "sched/work_item.h"

namespace kiln::api {

// One txt2img or img2img call: its iterations (one work item each, all submitted at once, so
// the scheduler batches them) and what they produced. `iterations` is fixed before the task is
// shared; the rest is guarded.
struct A1111Task {
  std::string id;  // force_task_id, or "task(<ulid>)"
  std::string tenant;
  int64_t started_ms = 0;
  A1111Request request;
  std::vector<sched::WorkItemPtr> iterations;
  http::Responder respond;
  // Set by /progress (unless it skips the image): previews are made only while someone looks.
  std::atomic<bool> preview_wanted{false};

  struct Outcome {
    bool done = false;
    bool skipped = false;  // interrupted or skipped by the caller: no images, no error
    std::vector<engine::Image> images;
  };
  mutable absl::Mutex mu;
  std::vector<Outcome> outcomes ABSL_GUARDED_BY(mu);  // one per iteration
  int remaining ABSL_GUARDED_BY(mu) = 0;              // iterations without an outcome
  bool interrupted ABSL_GUARDED_BY(mu) = false;
  bool client_gone ABSL_GUARDED_BY(mu) = false;
  absl::Status error ABSL_GUARDED_BY(mu);  // the first failure that is not a skip
  std::string preview_png ABSL_GUARDED_BY(mu);
  // The call's place in its key's quotas, held until the call ends.
  quota::QuotaTicket quota ABSL_GUARDED_BY(mu);

  // Records iteration `k`'s end. Returns true for the call that ended the last one: that caller
  // answers the request.
  bool Finish(int k, absl::StatusOr<std::vector<engine::Image>> images, bool client_left);
  // Marks iterations [from, to) skipped (interrupt, skip, or a failed submission) and returns
  // the ones that were still running, to cancel. Finished ones stay as they are.
  std::vector<sched::WorkItemPtr> Skip(int from, int to);
  // Iterations [from, end) could not be submitted (`why`: the admission error, which the call
  // answers with). Returns true when that ended the last iteration.
  bool NotSubmitted(int from, absl::Status why);
  // Whether iteration `k` was skipped (interrupted before or while it ran).
  bool IsSkipped(int k) const;
  // The first iteration without an outcome; iterations.size() when all have one.
  int Current() const;
};

class A1111Session {
 public:
  // The checkpoint chosen through /sdapi/v1/options; "" = the repository's default.
  std::string default_model() const;
  void set_default_model(std::string name);

  void Add(std::shared_ptr<A1111Task> task);
  void Remove(const A1111Task* task);
  // The tenant's oldest call in flight, or null.
  std::shared_ptr<A1111Task> Current(const std::string& tenant) const;

 private:
  mutable absl::Mutex mu_;
  std::string default_model_ ABSL_GUARDED_BY(mu_);
  std::vector<std::shared_ptr<A1111Task>> tasks_ ABSL_GUARDED_BY(mu_);  // in start order
};

}  // namespace kiln::api
