// WorkItem: one request as the scheduler sees it, sync or async, from admission until its
// images are done. The scheduler and the replica running it share it; the fields set at
// creation are read-only afterwards, `cancel` and the progress counters are atomics.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/trace_context.h"
#include "engine/image.h"
#include "engine/request.h"
#include "queue/job.h"

namespace kiln::sched {

struct WorkItem {
  std::string id;  // job id, or the sync request's id
  std::string model;
  engine::GenerationRequest request;
  queue::PriorityClass klass = queue::PriorityClass::kInteractive;
  int priority = 0;
  std::string tenant = "anonymous";
  double cost = 0;          // device-seconds, from the cost model at admission
  int rows = 1;             // denoiser rows per step
  int64_t accepted_ms = 0;  // Unix ms: a sync request's admission, a job's submission
  TraceContext trace;       // the span this work is done for (the HTTP request's); may be invalid
  // Asked after each step: whether on_progress should get a low-resolution preview.
  std::function<bool()> wants_preview;

  std::atomic<bool> cancel{false};
  // Sync requests: whether the client has closed its connection (the server's probe). The
  // replica asks at admission and at every step boundary; a true answer sets `client_gone` and
  // `cancel`, and the item is counted as client_gone. Called only from the replica thread.
  std::function<bool()> client_left;
  std::atomic<bool> client_gone{false};
  std::atomic<int> step{0};
  std::atomic<int> num_steps{0};

  // Called on the replica thread after each step. `preview` is null unless `previews`.
  std::function<void(WorkItem&, const engine::Image* preview)> on_progress;
  // When set, on_done is cheap (small images, no store write) and runs on the replica thread,
  // saving a thread hop; otherwise it runs on the finisher pool.
  bool inline_done = false;
  // Called once with the images or the error (Cancelled when cancelled).
  std::function<void(WorkItem&, absl::StatusOr<std::vector<engine::Image>>)> on_done;

  // Checkpoints (async jobs): the one to continue from, set at creation; and the one the
  // replica took when it handed the job back unfinished (set before on_done, may stay empty).
  std::string resume_from;
  int resumed_from_step = -1;  // set by the replica when it resumed; -1: started afresh
  std::string checkpoint;
  int checkpoint_step = 0;
  // Whether an earlier run of this job may have left a checkpoint behind (it was claimed
  // before): the run that completes it then deletes the checkpoint even if it did not use it.
  bool may_have_checkpoint = false;

  // Set by the fair queue.
  double virtual_finish = 0;
  uint64_t seq = 0;
};

using WorkItemPtr = std::shared_ptr<WorkItem>;

}  // namespace kiln::sched
