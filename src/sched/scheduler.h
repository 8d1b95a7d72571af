// Scheduler: admission, queues and replicas for every loaded model. Sync requests wait in
// memory (interactive class); async jobs wait in the durable JobQueue and are claimed when a
// replica has room, through a JobFeed that turns a job into a WorkItem. Each model has its own
// fair queue, cost model and replicas. Thread-safe.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model_repository.h"
#include "obs/kiln_metrics.h"
#include "obs/tracer.h"
#include "queue/job_queue.h"
#include "sched/cost_model.h"
#include "sched/work_item.h"

namespace kiln::sched {

// Turns claimed jobs into work, and hears about jobs that changed outside a replica (expired
// leases and deadlines). Implemented by the JobService.
class JobFeed {
 public:
  virtual ~JobFeed() = default;
  // REQUIRES: job is running under this scheduler's worker id.
  virtual absl::StatusOr<WorkItemPtr> Load(const queue::Job& job) = 0;
  virtual void Changed(const queue::Job& job) = 0;
};

struct SchedulerOptions {
  int replicas = 1;  // per model
  std::string device = "cpu";
  std::string worker_id = "embedded";
  std::chrono::milliseconds lease{30000};
  std::chrono::milliseconds maintenance_interval{1000};
  int max_queued_sync = 64;     // per model: waiting sync requests
  int max_queued_jobs = 10000;  // per model: queued async and batch jobs
  int max_batch_rows = 0;       // 0: each model's max_batch
  bool request_level = false;   // benchmark baseline (see ReplicaOptions)
  // An idle replica polls its queue this long before it sleeps, so that a request arriving
  // soon after the last one starts without a thread wake-up (tens to hundreds of microseconds
  // on a VM). Costs up to this much of one core each time a replica runs out of work; 0 = never.
  std::chrono::microseconds idle_spin{200};
  obs::KilnMetrics* metrics = nullptr;  // optional
  obs::Tracer* tracer = nullptr;        // optional
};

// A prediction for one request or job.
struct Estimate {
  double cost_seconds = 0;  // the request's own device-seconds
  double wait_seconds = 0;  // until it starts
  int queue_position = 0;   // items ahead
};

// Live progress of an item a replica is running or holds.
struct LiveProgress {
  int step = 0;
  int num_steps = 0;
};

struct ModelLoad {
  std::string model;
  int replicas = 0;
  int waiting_sync = 0;
  int held = 0;     // claimed or running in this process
  int running = 0;  // in a replica's batch
  double running_remaining_seconds = 0;
  double waiting_sync_seconds = 0;
  double seconds_per_row_pixel = 0;
  int steps_observed = 0;
};

class Scheduler {
 public:
  // `queue` and `feed` may be null (sync only: benchmarks and tests).
  Scheduler(engine::ModelRepository* models, queue::JobQueue* queue, JobFeed* feed,
            SchedulerOptions options);
  ~Scheduler();

  // Loads extra replicas, warms each up (which also calibrates the cost model), and starts the
  // replica and maintenance threads.
  absl::Status Start();
  // Stops admitting, lets running items finish within `grace`, hands the rest back (async jobs
  // to the queue, sync requests get Unavailable), and joins every thread. Idempotent.
  void Stop(std::chrono::milliseconds grace);

  // Device-seconds `request` costs on `model`.
  absl::StatusOr<double> EstimateCost(const std::string& model,
                                      const engine::GenerationRequest& request) const;

  // Admits a sync item (cost already set) into the model's interactive queue, or returns
  // ResourceExhausted with a Retry-After when the queue is full or `deadline_ms` (absolute Unix
  // ms, 0 = none) cannot be met.
  absl::Status SubmitSync(WorkItemPtr item, int64_t deadline_ms);

  // Admission for `count` async jobs (one, or a batch) of `cost` device-seconds in all, before
  // they are written: ResourceExhausted when they would overflow the model's durable backlog or
  // the deadline cannot be met.
  absl::Status AdmitJob(const std::string& model, queue::PriorityClass klass, double cost,
                        int64_t deadline_ms, int count = 1);
  // A job of `model` was enqueued (or requeued): wake an idle replica to claim it.
  void NotifyQueued(const std::string& model);

  // Weighted fair sharing: a tenant with weight w gets w times a default tenant's share, for
  // sync requests (in memory) and queued jobs (in the durable queue). Replaces every weight:
  // tenants not in `weights` go back to 1.
  absl::Status SetTenantWeights(const std::map<std::string, double>& weights);

  // Cancels an item held in this process: removed if waiting, flagged if running. Returns
  // whether it was held here.
  bool Cancel(const std::string& id);

  std::optional<LiveProgress> Progress(const std::string& id) const;
  // When a queued job will start and how long it runs; for running jobs, the remaining time.
  absl::StatusOr<Estimate> EstimateJob(const queue::Job& job);

  std::vector<ModelLoad> Loads() const;

  struct Lane;  // one model's queues and replicas; internal

 private:
  void Maintain();

  engine::ModelRepository* const models_;
  queue::JobQueue* const queue_;
  JobFeed* const feed_;
  const SchedulerOptions options_;
  std::map<std::string, std::unique_ptr<Lane>> lanes_;
  struct Background;
  std::unique_ptr<Background> background_;
};

}  // namespace kiln::sched
