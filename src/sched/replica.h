// Replica: one model instance and the thread that runs its step loop (step-level continuous
// batching). At every step boundary it admits waiting items that fit into the running batch,
// runs one denoiser call per latent shape for all running items (each with its own sampler,
// timestep and step count; guidance rows included), reports progress, and retires finished
// items. A 4-step request never waits for a 50-step one. Thread-safe: Start/Stop from one owner.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include "engine/engine.h"
#include "obs/metrics.h"
#include "obs/tracer.h"
#include "sched/cost_model.h"
#include "sched/work_item.h"

namespace kiln::sched {

// Where a replica gets work and hands results back; implemented by the Scheduler.
class WorkSource {
 public:
  virtual ~WorkSource() = default;
  // The next item to admit: the first in service order whose rows fit `free_rows` (any item
  // when `idle`, so that an item larger than the batch still runs alone). With `idle` it waits
  // for work until stopping; otherwise it returns null at once when nothing fits.
  virtual WorkItemPtr Next(int free_rows, bool idle) = 0;
  // An item left the replica: images, an error, Cancelled, or Unavailable (handed back on stop).
  virtual void Finished(WorkItemPtr item, absl::StatusOr<std::vector<engine::Image>> result) = 0;
  // Progress after a step (on the replica thread; must be quick).
  virtual void Progress(WorkItem& item, const engine::Generation& generation,
                        engine::Engine& engine) = 0;
};

struct ReplicaOptions {
  int max_rows = 8;  // denoiser rows per step (the model's max_batch)
  // Baseline for benchmarks: admit only when the batch is empty and run it to completion
  // (request-level batching, as most model servers do).
  bool request_level = false;
  // Optional: rows per step and seconds per denoiser call.
  obs::Histogram* batch_rows = nullptr;
  obs::Histogram* step_seconds = nullptr;
  obs::Tracer* tracer = nullptr;  // optional: queue wait, encode, denoise and decode spans
};

class Replica {
 public:
  Replica(int index, engine::Engine* engine, WorkSource* source, StepCostModel* cost,
          ReplicaOptions options);
  ~Replica();  // Stop()

  void Start();
  // Stops admitting; running items finish until `grace` has passed, then the rest are handed
  // back (Finished with Unavailable). Joins the thread.
  void Stop(std::chrono::milliseconds grace);
  // Wakes a replica blocked in WorkSource::Next (the source's own stop flag decides).
  int running_rows() const { return running_rows_.load(); }
  int running_items() const { return running_items_.load(); }

 private:
  struct Running {
    WorkItemPtr item;
    std::unique_ptr<engine::Generation> generation;
    // For the item's trace spans (Unix ns).
    int64_t denoise_start_ns = 0;
    int64_t denoise_end_ns = 0;
    int64_t decode_end_ns = 0;
    int steps_run = 0;
    int64_t batch_rows_sum = 0;
    int max_batch_rows = 0;
  };
  bool Tracing(const WorkItem& item) const {
    return options_.tracer && options_.tracer->enabled() && item.trace.valid();
  }
  void Loop();
  void Admit(bool idle);
  void StepAll();
  void Retire(size_t index, absl::StatusOr<std::vector<engine::Image>> result);

  const int index_;
  engine::Engine* const engine_;
  WorkSource* const source_;
  StepCostModel* const cost_;
  const ReplicaOptions options_;
  std::vector<Running> running_;  // replica thread only
  std::atomic<int> running_rows_{0};
  std::atomic<int> running_items_{0};
  std::atomic<bool> stopping_{false};
  std::atomic<int64_t> stop_deadline_ns_{0};
  std::thread thread_;
};

}  // namespace kiln::sched
