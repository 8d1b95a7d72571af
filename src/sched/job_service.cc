#include "sched/job_service.h"

#include <map>

#include "core/crypto.h"
#include "core/ids.h"
#include "core/logging.h"
#include "core/status_util.h"
#include "core/strings.h"
#include "engine/image_codec.h"
#include "engine/request_codec.h"

namespace kiln::sched {
namespace {

nlohmann::json Seconds(int64_t ms) {
  return ms > 0 ? nlohmann::json(ms / 1000.0) : nlohmann::json(nullptr);
}

}  // namespace

JobService::JobService(queue::JobQueue* queue, store::BlobStore* store,
                       engine::ModelRepository* models, JobEvents* events, WebhookSender* webhooks,
                       JobServiceOptions options)
    : queue_(queue),
      store_(store),
      models_(models),
      events_(events),
      webhooks_(webhooks),
      options_(std::move(options)) {}

std::string JobService::ResultKey(const std::string& job_id, int index) {
  return StrCat("jobs/", job_id, "/", index, ".png");
}

std::string JobService::CheckpointKey(const std::string& job_id) {
  return StrCat("jobs/", job_id, "/checkpoint.bin");
}

std::string JobService::InputKey(const std::string& job_id) {
  return StrCat("jobs/", job_id, "/input");
}

absl::StatusOr<queue::NewJob> JobService::Prepare(JobSubmission& s) {
  queue::NewJob job;
  job.id = NewUlid();
  job.model = s.model;
  KILN_ASSIGN_OR_RETURN(job.cost, scheduler_->EstimateCost(s.model, s.request));
  if (!s.idempotency_key.empty() && !s.seed_given) {
    // 52 bits of the key's hash: below 2^53, like every drawn seed.
    s.request.seed = std::stoull(Sha256Hex(StrCat(s.tenant, "\n", s.idempotency_key)).substr(0, 13),
                                 nullptr, 16);
  }
  std::string image_key;
  if (!std::holds_alternative<engine::TextToImage>(s.request.conditioning)) {
    image_key = InputKey(job.id);
  }
  nlohmann::json request = engine::RequestToJson(s.request, image_key);
  // The input's identity: the key names this job's copy, the hash says what it holds (an
  // idempotent retry with the same image is the same request; see queue::SameRequest).
  if (!image_key.empty()) request["image_sha256"] = Sha256Hex(s.image_bytes);
  if (!s.custom_id.empty()) request["custom_id"] = s.custom_id;
  job.request = request.dump();
  job.klass = s.klass;
  job.priority = s.priority;
  job.tenant = s.tenant;
  job.traceparent = s.traceparent;
  job.deadline_ms = s.deadline_ms;
  job.webhook = s.webhook;
  job.idempotency_key = s.idempotency_key;
  job.max_attempts = options_.max_attempts;
  return job;
}

absl::StatusOr<queue::EnqueueResult> JobService::Submit(JobSubmission s) {
  KILN_ASSIGN_OR_RETURN(queue::NewJob job, Prepare(s));
  KILN_RETURN_IF_ERROR(scheduler_->AdmitJob(job.model, job.klass, job.cost, job.deadline_ms));
  if (!s.image_bytes.empty()) {
    KILN_RETURN_IF_ERROR(
        Annotate(store_->Put(InputKey(job.id), s.image_bytes), "storing the input image"));
  }
  auto result = queue_->Enqueue(job);
  if (!result.ok() || !result->created) {
    // Nothing refers to the input we just wrote.
    if (!s.image_bytes.empty()) (void)store_->Delete(InputKey(job.id));
    return result;
  }
  scheduler_->NotifyQueued(job.model);
  return result;
}

absl::StatusOr<queue::Batch> JobService::SubmitBatch(std::vector<JobSubmission> submissions,
                                                     const nlohmann::json& metadata) {
  queue::Batch batch;
  batch.id = NewUlid();
  batch.total = static_cast<int>(submissions.size());
  batch.metadata = metadata.dump();
  std::vector<queue::NewJob> jobs;
  for (JobSubmission& s : submissions) {
    KILN_ASSIGN_OR_RETURN(queue::NewJob job, Prepare(s));
    job.batch_id = batch.id;
    if (batch.model.empty()) batch.model = job.model;
    if (batch.model != job.model) batch.model = "mixed";
    jobs.push_back(std::move(job));
  }
  // Admission per model: the batch must fit each model's backlog bound as a whole.
  std::map<std::string, std::pair<int, double>> per_model;
  for (const queue::NewJob& j : jobs) {
    per_model[j.model].first += 1;
    per_model[j.model].second += j.cost;
  }
  for (const auto& [model, load] : per_model) {
    KILN_RETURN_IF_ERROR(
        scheduler_->AdmitJob(model, queue::PriorityClass::kBatch, load.second, 0, load.first));
  }
  KILN_RETURN_IF_ERROR(queue_->EnqueueBatch(batch, jobs));
  for (const queue::NewJob& j : jobs) scheduler_->NotifyQueued(j.model);
  return queue_->GetBatch(batch.id);
}

absl::StatusOr<queue::Job> JobService::Cancel(const std::string& id) {
  KILN_ASSIGN_OR_RETURN(queue::Job job, queue_->Cancel(id));
  if (job.state == queue::JobState::kRunning) {
    // Held here: stop it at the next step boundary (or drop it if it had not started).
    scheduler_->Cancel(id);
  } else if (job.state == queue::JobState::kCancelled && job.finished_ms > 0) {
    Changed(job);
  }
  return job;
}

absl::StatusOr<WorkItemPtr> JobService::Load(const queue::Job& job) {
  auto parsed = nlohmann::json::parse(job.spec.request, nullptr, false);
  if (parsed.is_discarded()) return absl::InvalidArgumentError("the stored request is not JSON");
  KILN_ASSIGN_OR_RETURN(engine::StoredRequest stored, engine::RequestFromJson(parsed));
  if (!stored.image_key.empty()) {
    KILN_ASSIGN_OR_RETURN(std::string bytes, store_->Get(stored.image_key));
    KILN_ASSIGN_OR_RETURN(engine::Image image, engine::DecodeImage(bytes, engine::DecodeLimits{}));
    if (auto* e = std::get_if<engine::InstructEdit>(&stored.request.conditioning)) {
      e->image = std::move(image);
    } else if (auto* i = std::get_if<engine::ImageToImage>(&stored.request.conditioning)) {
      i->image = std::move(image);
    }
  }
  auto item = std::make_shared<WorkItem>();
  // A job handed back by a stopping worker continues from where it was.
  auto checkpoint = store_->Get(CheckpointKey(job.id()));
  item->may_have_checkpoint = job.attempts > 1;
  if (checkpoint.ok()) {
    item->resume_from = std::move(*checkpoint);
  } else if (!absl::IsNotFound(checkpoint.status())) {
    log::Warn("cannot read a job's checkpoint; it starts over",
              {{"job", job.id()}, {"error", checkpoint.status().ToString()}});
  }
  item->id = job.id();
  item->model = job.spec.model;
  item->request = std::move(stored.request);
  item->klass = job.spec.klass;
  item->priority = job.spec.priority;
  item->tenant = job.spec.tenant;
  item->accepted_ms = job.created_ms;
  item->trace = ParseTraceparent(job.spec.traceparent).value_or(TraceContext{});
  item->cost = job.spec.cost;
  const std::string id = job.id();
  item->wants_preview = [this, id] { return events_->WantsPreviews(id); };
  item->on_progress = [this](WorkItem& w, const engine::Image* preview) {
    nlohmann::json data = {
        {"id", w.id}, {"step", w.step.load()}, {"num_steps", w.num_steps.load()}};
    // Other processes' streams get progress without previews (they stay small).
    if (queue_->forwards_events()) Forward(w.id, JobEvent{"progress", data.dump(), false});
    if (!events_->HasSubscribers(w.id)) return;
    if (preview) {
      auto png = engine::EncodePng(*preview, {});
      if (png.ok()) data["preview"] = StrCat("data:image/png;base64,", Base64Encode(*png));
    }
    events_->Publish(w.id, JobEvent{"progress", data.dump(), false});
  };
  item->on_done = [this](WorkItem& w, absl::StatusOr<std::vector<engine::Image>> result) {
    OnDone(w, std::move(result));
  };
  Changed(job);  // "running"
  return item;
}

absl::StatusOr<std::vector<std::string>> JobService::WriteResults(
    const WorkItem& item, const std::vector<engine::Image>& images) {
  // An earlier attempt killed mid-write may have left a partial temporary file; this attempt is
  // now the only writer of the job's folder.
  KILN_RETURN_IF_ERROR(store_->RemoveLeftovers(StrCat("jobs/", item.id)));
  std::vector<std::string> keys;
  obs::Tracer* tracer = options_.tracer && options_.tracer->enabled() ? options_.tracer : nullptr;
  for (size_t i = 0; i < images.size(); ++i) {
    const int64_t t0 = tracer ? obs::UnixNanos() : 0;
    KILN_ASSIGN_OR_RETURN(
        std::string png,
        engine::EncodePng(images[i],
                          engine::PngParameters(item.request, item.model, static_cast<int>(i))));
    const std::string key = ResultKey(item.id, static_cast<int>(i));
    const int64_t t1 = tracer ? obs::UnixNanos() : 0;
    absl::Status stored = store_->Put(key, png);
    if (tracer) {
      tracer->RecordChild(item.trace, "png.encode", t0, t1,
                          {{"kiln.image", static_cast<int64_t>(i)},
                           {"kiln.bytes", static_cast<int64_t>(png.size())}});
      tracer->RecordChild(item.trace, "store.write", t1, obs::UnixNanos(), {{"kiln.key", key}},
                          stored.ok() ? "" : stored.ToString());
    }
    KILN_RETURN_IF_ERROR(stored);
    keys.push_back(key);
  }
  nlohmann::json result = {{"id", item.id},
                           {"model", item.model},
                           {"request", engine::RequestSummary(item.request)},
                           {"images", keys}};
  if (item.resumed_from_step >= 0) result["resumed_from_step"] = item.resumed_from_step;
  KILN_RETURN_IF_ERROR(store_->Put(StrCat("jobs/", item.id, "/result.json"), result.dump()));
  return keys;
}

absl::StatusOr<int> JobService::PurgeFinished(std::chrono::milliseconds retention) {
  constexpr int kChunk = 1000;
  const int64_t cutoff = UnixMillis() - retention.count();
  int total = 0;
  // Chunks keep each transaction short; a round ends when a chunk comes back short (or after
  // 20 chunks, so that one round never holds the caller for long).
  for (int round = 0; round < 20; ++round) {
    KILN_ASSIGN_OR_RETURN(std::vector<std::string> ids, queue_->PurgeFinished(cutoff, kChunk));
    DeleteJobFiles(ids);
    total += static_cast<int>(ids.size());
    if (static_cast<int>(ids.size()) < kChunk) break;
  }
  if (total > 0) log::Info("retention: deleted finished jobs", {{"count", total}});
  return total;
}

void JobService::DeleteJobFiles(const std::vector<std::string>& ids) {
  for (const std::string& id : ids) {
    // The record is gone first: a file left by a failed delete is unreachable, never half a job.
    auto keys = store_->List(StrCat("jobs/", id, "/"), 10000);
    if (!keys.ok()) {
      log::Warn("retention: cannot list a purged job's files",
                {{"job", id}, {"error", keys.status().ToString()}});
      continue;
    }
    for (const std::string& key : *keys) {
      if (absl::Status s = store_->Delete(key); !s.ok()) {
        log::Warn("retention: cannot delete a file", {{"key", key}, {"error", s.ToString()}});
      }
    }
  }
}

void JobService::OnDone(WorkItem& item, absl::StatusOr<std::vector<engine::Image>> result) {
  const std::string& worker = options_.worker_id;
  absl::Status s;
  if (result.ok()) {
    auto keys = WriteResults(item, *result);
    if (keys.ok()) {
      // The checkpoint goes before the job is marked succeeded, so that a succeeded job never
      // has one. A run that lost the job (its lease, or its broker connection) and handed it
      // back late may have stored one while this run went on without it.
      if (!item.resume_from.empty() || item.may_have_checkpoint) {
        (void)store_->Delete(CheckpointKey(item.id));
      }
      s = queue_->Complete(item.id, worker, *keys);
    } else {
      log::Error("storing results failed", {{"job", item.id},
                                            {"trace_id", item.trace.trace_id},
                                            {"error", keys.status().ToString()}});
      auto failed =
          queue_->Fail(item.id, worker, StrCat("storing results failed: ", keys.status().message()),
                       "store_error", /*retryable=*/true);
      s = failed.status();
    }
  } else if (absl::IsCancelled(result.status())) {
    s = queue_->MarkCancelled(item.id, worker);
  } else if (absl::IsUnavailable(result.status())) {
    // Handed back at shutdown: another run picks it up without counting an attempt, from the
    // checkpoint when there is one.
    bool saved = false;
    if (!item.checkpoint.empty()) {
      absl::Status put = store_->Put(CheckpointKey(item.id), item.checkpoint);
      saved = put.ok();
      if (saved) {
        log::Info("job checkpointed", {{"job", item.id}, {"step", item.checkpoint_step}});
      } else {
        log::Warn("cannot store a job's checkpoint; it will start over",
                  {{"job", item.id}, {"error", put.ToString()}});
      }
    }
    s = queue_->Release(item.id, worker);
    if (s.ok()) {
      log::Info("job handed back", {{"job", item.id}, {"trace_id", item.trace.trace_id}});
    } else {
      // Not ours any more: another run holds the job (it may even have finished), so this
      // checkpoint must not outlive it. That run may lose the progress, never the job.
      if (saved && absl::IsFailedPrecondition(s)) (void)store_->Delete(CheckpointKey(item.id));
      log::Warn("job not handed back", {{"job", item.id}, {"error", s.ToString()}});
    }
    return;
  } else {
    log::Error("job failed", {{"job", item.id},
                              {"trace_id", item.trace.trace_id},
                              {"error", result.status().ToString()}});
    // Invalid requests fail at once; anything else (a device error) is retried.
    const bool retry = !absl::IsInvalidArgument(result.status());
    s = queue_
            ->Fail(item.id, worker, std::string(result.status().message()),
                   retry ? "generation_error" : "invalid_request", retry)
            .status();
  }
  if (!s.ok()) {
    log::Warn("job state change refused", {{"job", item.id}, {"error", s.ToString()}});
    // The lease was lost meanwhile (or the broker gave the job to another worker): the job's
    // current holder reports its changes, and a second report could repeat its webhook.
    if (absl::IsFailedPrecondition(s)) return;
  }
  auto job = queue_->Get(item.id);
  if (!job.ok()) return;
  Changed(*job);
  if (job->state == queue::JobState::kQueued) scheduler_->NotifyQueued(job->spec.model);
}

nlohmann::json JobService::JobJson(const queue::Job& job, const std::string& base_url) {
  nlohmann::json j = {{"id", job.id()},
                      {"object", "job"},
                      {"model", job.spec.model},
                      {"state", queue::JobStateName(job.state)},
                      {"class", queue::PriorityClassName(job.spec.klass)},
                      {"priority", job.spec.priority},
                      {"created_at", Seconds(job.created_ms)},
                      {"started_at", Seconds(job.started_ms)},
                      {"finished_at", Seconds(job.finished_ms)},
                      {"attempts", job.attempts},
                      {"max_attempts", job.spec.max_attempts},
                      {"estimated_cost_seconds", job.spec.cost}};
  auto request = nlohmann::json::parse(job.spec.request, nullptr, false);
  if (request.is_object()) {
    if (request.contains("custom_id")) j["custom_id"] = request["custom_id"];
    request.erase("image_key");
    request.erase("image_sha256");
    request.erase("custom_id");
    j["request"] = request;
  }
  int step = job.step, num_steps = job.num_steps;
  if (scheduler_ && job.state == queue::JobState::kRunning) {
    if (auto p = scheduler_->Progress(job.id()); p && p->num_steps > 0) {
      step = p->step;
      num_steps = p->num_steps;
    }
  }
  if (job.state == queue::JobState::kSucceeded && request.is_object()) {
    num_steps = request.value("steps", num_steps);
    step = num_steps;
  }
  j["progress"] = {{"step", step}, {"num_steps", num_steps}};
  if (!queue::IsFinal(job.state) && scheduler_) {
    auto e = scheduler_->EstimateJob(job);
    if (e.ok()) {
      if (job.state == queue::JobState::kQueued) j["queue_position"] = e->queue_position;
      j["eta_seconds"] = e->wait_seconds + e->cost_seconds;
    }
  }
  if (job.spec.deadline_ms > 0) j["deadline_at"] = Seconds(job.spec.deadline_ms);
  if (!job.spec.batch_id.empty()) j["batch_id"] = job.spec.batch_id;
  nlohmann::json data = nlohmann::json::array();
  for (const std::string& key : job.result_keys) {
    data.push_back({{"url", StrCat(base_url, "/v1/files/", key,
                                   options_.file_urls.Query(key, UnixMillis() / 1000))}});
  }
  j["data"] = data;
  j["error"] = job.error.empty() || job.state == queue::JobState::kSucceeded
                   ? nlohmann::json(nullptr)
                   : nlohmann::json{{"message", job.error}, {"code", job.error_code}};
  if (!job.spec.webhook.empty()) {
    nlohmann::json w = {{"url", job.spec.webhook}};
    auto status = nlohmann::json::parse(job.webhook_status, nullptr, false);
    if (status.is_object()) {
      for (const char* k : {"state", "attempts", "last_status", "last_error"}) {
        if (status.contains(k)) w[k] = status[k];
      }
    } else {
      w["state"] = queue::IsFinal(job.state) ? "pending" : "waiting";
    }
    j["webhook"] = w;
  }
  return j;
}

void JobService::Forward(const std::string& job_id, const JobEvent& event) {
  nlohmann::json e = {{"origin", options_.worker_id},
                      {"name", event.name},
                      {"data", event.data},
                      {"final", event.final}};
  queue_->PublishEvent(job_id, e.dump());
}

void JobService::Received(const std::string& job_id, const std::string& event_json) {
  if (!events_->HasSubscribers(job_id)) return;
  auto e = nlohmann::json::parse(event_json, nullptr, false);
  if (!e.is_object() || !e.contains("name") || !e["name"].is_string() || !e.contains("data") ||
      !e["data"].is_string()) {
    return;
  }
  if (e.value("origin", "") == options_.worker_id) return;  // published here already
  events_->Publish(job_id, JobEvent{e["name"].get<std::string>(), e["data"].get<std::string>(),
                                    e.value("final", false)});
}

void JobService::Changed(const queue::Job& job) {
  const bool final = queue::IsFinal(job.state);
  const bool publish = events_->HasSubscribers(job.id());
  const bool forward = queue_->forwards_events();
  const bool notify = final && !job.spec.webhook.empty() && webhooks_;
  if (!publish && !notify && !forward) return;
  nlohmann::json data = JobJson(job, options_.public_base_url);
  const JobEvent event{std::string(queue::JobStateName(job.state)), data.dump(), final};
  if (forward) Forward(job.id(), event);
  if (publish) events_->Publish(job.id(), event);
  if (notify) {
    (void)queue_->SetWebhookStatus(job.id(), R"({"state":"pending","attempts":0})");
    SendWebhook(job, std::move(data));
  }
}

void JobService::SendWebhook(const queue::Job& job, nlohmann::json data) {
  nlohmann::json body = {{"type", StrCat("job.", queue::JobStateName(job.state))},
                         {"data", std::move(data)}};
  webhooks_->Send(job.id(), job.spec.webhook, body.dump());
}

void JobService::ResendPendingWebhooks() {
  auto jobs = queue_->PendingWebhooks();
  if (!jobs.ok()) {
    log::Error("cannot list pending webhooks", {{"error", jobs.status().ToString()}});
    return;
  }
  for (const queue::Job& job : *jobs) {
    if (!webhooks_) break;
    SendWebhook(job, JobJson(job, options_.public_base_url));
  }
  if (!jobs->empty()) log::Info("webhooks resent after restart", {{"count", jobs->size()}});
}

}  // namespace kiln::sched
