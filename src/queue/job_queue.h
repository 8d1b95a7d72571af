// JobQueue: the durable, at-least-once queue of async jobs. A claimed job holds a lease that its
// worker renews by heartbeats; a lease that expires returns the job to the queue (or fails it
// after max attempts, with the last error). Claims serve priority classes strictly, then
// priority, then weighted fair shares across tenants (each tenant's queued cost, cumulated in
// order, divided by its weight), then age. Implementations are thread-safe.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "queue/job.h"

namespace kiln::store {
class BlobStore;
}

namespace kiln::queue {

struct QueueOptions {
  std::function<int64_t()> now_ms;  // defaults to the system clock
  bool synchronous_full = true;     // SQLite: fsync every commit (durable across power loss)

  // An Idempotency-Key names one job for this long; afterwards the same key makes a new job.
  int64_t idempotency_ttl_ms = 24 * 3600 * 1000;

  // amqp:// only (the distributed mode).
  store::BlobStore* records = nullptr;  // required: where job and batch records live
  std::vector<std::string> models;      // job queues to declare
  std::vector<std::string> consume;     // models whose jobs this process runs (a worker)
  int prefetch = 8;                     // unacked deliveries per consumed model
  int delivery_limit = 20;              // deliveries before the broker dead-letters a job
  // A running job whose delivery's connection broke went back to the broker. When it has not
  // come back to this worker this long after the worker reconnected, another worker runs it:
  // the heartbeat refuses it, and this run stops rather than spend the device time twice.
  int64_t redelivery_grace_ms = 15000;
  // Workers report what they run every this often (gateways count running work from the
  // reports, which expire after three intervals: a killed worker's jobs stop counting).
  int64_t load_report_ms = 5000;
  bool handle_dead_letters = false;  // mark dead-lettered jobs failed (gateways)
  // Called on the broker's thread for every job event any worker published ("job.<id>");
  // set on gateways, which stream events to their clients.
  std::function<void(const std::string& job_id, const std::string& event_json)> on_event;
  // Called on the broker's thread when a job of `model` arrived for this worker.
  std::function<void(const std::string& model)> on_available;
};

struct EnqueueResult {
  Job job;
  bool created = true;  // false: an earlier job with the same idempotency key was returned
};

struct JobFilter {
  std::optional<JobState> state;
  std::string model;     // empty: any
  std::string batch_id;  // empty: any
  std::string tenant;    // empty: any (an admin); else only this tenant's jobs
  std::string before;    // cursor: only ids sorted before this one (newest first paging)
  int limit = 20;
};

struct JobPage {
  std::vector<Job> jobs;  // newest first
  bool has_more = false;
};

struct Batch {
  std::string id;
  std::string model;
  int64_t created_ms = 0;
  int total = 0;
  std::string metadata;  // JSON object
};

struct ModelBacklog {
  int queued = 0;
  int running = 0;
  double queued_cost = 0;   // device-seconds
  double running_cost = 0;  // device-seconds the running jobs still need (0 where unknown)
  std::map<PriorityClass, int> queued_by_class;
  std::map<PriorityClass, double> queued_cost_by_class;
};

// A tenant's unfinished jobs, for its key's quotas.
struct TenantWork {
  int open = 0;            // queued or running
  double queued_cost = 0;  // device-seconds of the queued ones
};

// Where a queued job stands: the jobs that will be claimed before it.
struct QueuePosition {
  int ahead = 0;
  double cost_ahead = 0;
};

// Whether two stored requests (JSON) ask for the same work: equal but for "image_key", which
// names each job's own copy of its input (the input itself is compared by "image_sha256").
bool SameRequest(std::string_view a, std::string_view b);

class JobQueue {
 public:
  virtual ~JobQueue() = default;

  // "sqlite:///abs/path.db", "memory:" (SQLite in memory; for unit tests) or
  // "amqp://user:pass@host:port/vhost" (RabbitMQ, with records in options.records).
  static absl::StatusOr<std::unique_ptr<JobQueue>> Open(std::string_view url,
                                                        QueueOptions options = {});

  // Stores a new queued job. With an idempotency key this tenant used before, returns the earlier
  // job (created = false), or FailedPrecondition when its request differs.
  virtual absl::StatusOr<EnqueueResult> Enqueue(const NewJob& job) = 0;
  // The job `tenant`'s Idempotency-Key `key` names now (within the key's time to live), if any:
  // a retry that Enqueue would answer with that job.
  virtual absl::StatusOr<std::optional<Job>> FindIdempotent(const std::string& tenant,
                                                            const std::string& key) = 0;
  // Stores a batch record and all its jobs in one transaction: all or nothing.
  virtual absl::Status EnqueueBatch(const Batch& batch, const std::vector<NewJob>& jobs) = 0;

  // Leases up to `max` queued jobs of `model` to `worker` until now + lease_ms (state running,
  // attempts + 1), in claim order.
  virtual absl::StatusOr<std::vector<Job>> Claim(const std::string& model, int max,
                                                 const std::string& worker, int64_t lease_ms) = 0;
  // Renews the lease and records progress. FailedPrecondition when `worker` no longer holds it.
  virtual absl::Status Heartbeat(const std::string& id, const std::string& worker, int64_t lease_ms,
                                 int step, int num_steps) = 0;
  // running -> succeeded with its results. FailedPrecondition when the lease was lost.
  virtual absl::Status Complete(const std::string& id, const std::string& worker,
                                const std::vector<std::string>& result_keys) = 0;
  // running -> queued again when `retryable` and attempts remain, else failed. Returns the job.
  virtual absl::StatusOr<Job> Fail(const std::string& id, const std::string& worker,
                                   const std::string& error, const std::string& code,
                                   bool retryable) = 0;
  // running -> queued without counting the attempt (a worker handing a job back on shutdown).
  virtual absl::Status Release(const std::string& id, const std::string& worker) = 0;
  // queued -> cancelled at once; running -> cancel_requested (the worker stops it at its next
  // step and calls MarkCancelled). Final jobs are returned unchanged. NotFound for unknown ids.
  virtual absl::StatusOr<Job> Cancel(const std::string& id) = 0;
  virtual absl::Status MarkCancelled(const std::string& id, const std::string& worker) = 0;

  virtual absl::StatusOr<Job> Get(const std::string& id) = 0;
  virtual absl::StatusOr<JobPage> List(const JobFilter& filter) = 0;
  virtual absl::StatusOr<Batch> GetBatch(const std::string& id) = 0;
  // Counts of a batch's jobs by state.
  virtual absl::StatusOr<std::map<JobState, int>> BatchCounts(const std::string& id) = 0;

  // Running jobs whose lease ended before now: requeued, or failed after max attempts. With
  // `all`, every running job counts as expired (a restarted embedded server owns them all).
  // Returns the jobs as they are afterwards.
  virtual absl::StatusOr<std::vector<Job>> ExpireLeases(bool all = false) = 0;
  // Queued jobs whose deadline passed before they started: failed (deadline_exceeded).
  virtual absl::StatusOr<std::vector<Job>> ExpireDeadlines() = 0;

  virtual absl::StatusOr<ModelBacklog> Backlog(const std::string& model) = 0;
  // How many of the model's jobs are in each state (states with none are absent).
  // Unimplemented where counting would read every record (the distributed queue).
  virtual absl::StatusOr<std::map<JobState, int>> StateCounts(const std::string& model) = 0;
  virtual absl::StatusOr<QueuePosition> Position(const Job& job) = 0;
  // The tenant's queued and running jobs (all models). Unimplemented where counting would read
  // every record (the distributed queue).
  virtual absl::StatusOr<TenantWork> OpenWork(const std::string& tenant) = 0;

  // Retention: deletes up to `limit` final jobs that finished before `finished_before_ms`, and
  // batches left with no job, and returns the deleted jobs' ids (their files go next).
  // Unimplemented in the distributed mode (give the bucket a lifecycle rule instead).
  virtual absl::StatusOr<std::vector<std::string>> PurgeFinished(int64_t finished_before_ms,
                                                                 int limit) = 0;

  // Webhook delivery outcome (a JSON object) recorded on the job.
  virtual absl::Status SetWebhookStatus(const std::string& id, const std::string& status_json) = 0;
  // Final jobs with a webhook whose delivery has not finished (after a restart).
  virtual absl::StatusOr<std::vector<Job>> PendingWebhooks() = 0;

  // Weighted fair sharing: a tenant's weight (default 1).
  virtual absl::Status SetTenantWeight(const std::string& tenant, double weight) = 0;
  // Every tenant back to weight 1.
  virtual absl::Status ClearTenantWeights() = 0;

  // Whether the queue can be used now (the broker is connected); for readiness.
  virtual absl::Status Check() { return absl::OkStatus(); }
  // Distributed queues carry job events between processes: a worker publishes each event
  // (a JSON object {"name", "data", "final"}) and the gateways' on_event receives it.
  virtual bool forwards_events() const { return false; }
  virtual void PublishEvent(const std::string& job_id, const std::string& event_json) {}
};

}  // namespace kiln::queue
