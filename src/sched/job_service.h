// JobService: the life of async jobs around the scheduler. It admits and writes jobs (input
// images to the store first, then the durable record), turns claimed jobs into work, writes
// results under deterministic keys before marking a job succeeded (so a re-run rewrites the
// same keys: at-least-once delivery, exactly-once effects), publishes job events, and sends
// webhooks for final states. Thread-safe.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/url_signer.h"
#include "engine/model_repository.h"
#include "nlohmann/json.hpp"
#include "obs/tracer.h"
#include "queue/job_queue.h"
#include "sched/job_events.h"
#include "sched/scheduler.h"
#include "sched/webhooks.h"
#include "store/blob_store.h"

namespace kiln::sched {

struct JobSubmission {
  std::string model;
  engine::GenerationRequest request;
  std::string image_bytes;  // the validated input of an edit or img2img request
  queue::PriorityClass klass = queue::PriorityClass::kAsync;
  int priority = 0;
  std::string tenant = "anonymous";
  int64_t deadline_ms = 0;  // absolute Unix ms; 0 = none
  std::string webhook;
  std::string idempotency_key;
  // Without a client seed, a job with an Idempotency-Key draws its seed from the key, so that a
  // retry is the same request (and replays the job instead of a 409).
  bool seed_given = true;
  std::string custom_id;    // batches: the caller's id for the line
  std::string traceparent;  // the submitting request's trace position
};

struct JobServiceOptions {
  std::string worker_id = "embedded";  // also names this process as the origin of its events
  int max_attempts = 3;
  std::string public_base_url;    // prefix of result URLs in webhooks ("" = relative)
  UrlSigner file_urls;            // signs result URLs (with API keys on); off: plain URLs
  obs::Tracer* tracer = nullptr;  // optional: spans for result encoding and store writes
};

class JobService final : public JobFeed {
 public:
  JobService(queue::JobQueue* queue, store::BlobStore* store, engine::ModelRepository* models,
             JobEvents* events, WebhookSender* webhooks, JobServiceOptions options);

  // REQUIRES: called once, before Submit and before the scheduler starts.
  void set_scheduler(Scheduler* scheduler) { scheduler_ = scheduler; }

  // Admission, then the input image, then the durable record; returns the stored job (or the
  // earlier one for a repeated idempotency key).
  absl::StatusOr<queue::EnqueueResult> Submit(JobSubmission submission);
  // All jobs of a batch in one transaction. Returns the batch id.
  absl::StatusOr<queue::Batch> SubmitBatch(std::vector<JobSubmission> submissions,
                                           const nlohmann::json& metadata);
  // DELETE /v1/jobs/{id}.
  absl::StatusOr<queue::Job> Cancel(const std::string& id);
  // After a restart: final jobs whose webhook was not delivered yet.
  void ResendPendingWebhooks();
  // Retention: deletes the final jobs that finished more than `retention` ago (at most 20000
  // a call), with their files (inputs, images, results). Returns how many went.
  absl::StatusOr<int> PurgeFinished(std::chrono::milliseconds retention);

  // JobFeed.
  absl::StatusOr<WorkItemPtr> Load(const queue::Job& job) override;
  void Changed(const queue::Job& job) override;

  // An event another process published about a job (a distributed queue's on_event): passed
  // to this process's streams of that job.
  void Received(const std::string& job_id, const std::string& event_json);

  // The API representation of a job; result URLs start with `base_url`.
  nlohmann::json JobJson(const queue::Job& job, const std::string& base_url);

  static std::string ResultKey(const std::string& job_id, int index);
  static std::string InputKey(const std::string& job_id);
  static std::string CheckpointKey(const std::string& job_id);

 private:
  void OnDone(WorkItem& item, absl::StatusOr<std::vector<engine::Image>> result);
  // Deletes every file under jobs/{id}/ of each job (best effort, logged).
  void DeleteJobFiles(const std::vector<std::string>& ids);
  absl::StatusOr<std::vector<std::string>> WriteResults(const WorkItem& item,
                                                        const std::vector<engine::Image>& images);
  absl::StatusOr<queue::NewJob> Prepare(JobSubmission& s);
  // Publishes `event` through the queue to the other processes (distributed mode).
  void Forward(const std::string& job_id, const JobEvent& event);
  // POSTs {"type": "job.<state>", "data": data} to the job's webhook. REQUIRES: webhooks_.
  void SendWebhook(const queue::Job& job, nlohmann::json data);

  queue::JobQueue* const queue_;
  store::BlobStore* const store_;
  engine::ModelRepository* const models_;
  JobEvents* const events_;
  WebhookSender* const webhooks_;
  const JobServiceOptions options_;
  Scheduler* scheduler_ = nullptr;
};

}  // namespace kiln::sched
