// /v1/jobs: create (202, durable before the answer), get, list, cancel, and follow a job's
// events as Server-Sent Events.
#include "api/errors.h"
#include "api/handlers.h"
#include "api/openai_params.h"
#include "core/ids.h"
#include "core/json_parse.h"
#include "core/status_util.h"
#include "core/strings.h"

namespace kiln::api {
namespace {

absl::Status CheckJobId(const std::string& id) {
  if (!IsUlid(id)) {
    return InvalidField("job_id", StrCat("'", id.substr(0, 64), "' is not a job id (a ULID)"));
  }
  return absl::OkStatus();
}

// The job `id` as `caller` may see it: another tenant's job is "no job", exactly as a job that
// does not exist, so that ids reveal nothing.
absl::StatusOr<queue::Job> VisibleJob(const ApiContext& ctx, const Caller& caller,
                                      const std::string& id) {
  auto job = ctx.queue->Get(id);
  if (job.ok() && !CanSee(caller, job->spec.tenant)) {
    return WithField(absl::NotFoundError(StrCat("no job '", id, "'")), "job_id");
  }
  return job;
}

std::string SseFrame(const sched::JobEvent& e) {
  if (e.name.empty()) return ": keep-alive\n\n";
  return StrCat("event: ", e.name, "\ndata: ", e.data, "\n\n");
}

// Adapts a job's EventStream to the server's chunked body: the current state first, then
// live events until the final one.
class SseSource final : public http::ChunkSource {
 public:
  SseSource(std::shared_ptr<sched::EventStream> stream, sched::JobEvent first)
      : stream_(std::move(stream)), first_(std::move(first)) {}

  void Next(std::function<void(std::optional<std::string>)> deliver) override {
    if (first_) {
      sched::JobEvent e = std::move(*first_);
      first_.reset();
      if (e.final) {
        done_ = true;
        stream_->Close();
      }
      deliver(SseFrame(e));
      return;
    }
    if (done_) {
      deliver(std::nullopt);
      return;
    }
    stream_->Next([deliver = std::move(deliver)](std::optional<sched::JobEvent> e) {
      if (!e) {
        deliver(std::nullopt);
      } else {
        deliver(SseFrame(*e));
      }
    });
  }
  void Cancel() override { stream_->Close(); }

 private:
  std::shared_ptr<sched::EventStream> stream_;
  std::optional<sched::JobEvent> first_;
  bool done_ = false;  // the server calls Next from one strand at a time
};

}  // namespace

http::Response HandleCreateJob(const ApiContext& ctx, const http::Request& req) {
  if (auto s = CheckBody(req, {"application/json", "multipart/form-data"}, ctx.max_multipart_bytes);
      !s.ok()) {
    return ErrorResponse(s);
  }
  absl::StatusOr<ImageRequest> request;
  if (req.MediaType() == "multipart/form-data") {
    // The /v1/images/edits form (an uploaded image file), or a generation without the image.
    auto parts = FormParts(req);
    if (!parts.ok()) return ErrorResponse(parts.status());
    request = ParseJobForm(*parts, *ctx.models, ctx.webhook_policy);
  } else {
    auto body = ParseJsonWithLimits(req.body, "the request body");
    if (!body.ok()) return ErrorResponse(body.status());
    request = ParseJobRequest(*body, *ctx.models, ctx.webhook_policy, /*batch_line=*/false);
  }
  if (!request.ok()) return ErrorResponse(request.status());
  // A store that takes no writes now (a full disk: 507) would fail the job after accepting it.
  if (ctx.dependencies) {
    if (absl::Status s = ctx.dependencies->store(); !s.ok()) return ErrorResponse(s);
  }
  std::string idempotency_key(req.Header("idempotency-key").value_or(""));
  if (idempotency_key.size() > 255) {
    return ErrorResponse(InvalidField("Idempotency-Key", "Idempotency-Key is longer than 255"));
  }
  for (char c : idempotency_key) {
    if (static_cast<unsigned char>(c) < 0x21 || static_cast<unsigned char>(c) > 0x7e) {
      return ErrorResponse(
          InvalidField("Idempotency-Key", "Idempotency-Key must be printable ASCII"));
    }
  }
  sched::JobSubmission s;
  s.model = request->model;
  s.request = std::move(request->generation);
  s.image_bytes = std::move(request->image_bytes);
  s.klass = queue::PriorityClass::kAsync;
  s.priority = request->priority;
  s.tenant = TenantOf(ctx, req);
  s.traceparent = req.trace.Traceparent();
  s.deadline_ms = request->deadline_ms > 0 ? UnixMillis() + request->deadline_ms : 0;
  s.webhook = request->webhook;
  s.idempotency_key = idempotency_key;
  s.seed_given = request->seed_given;
  auto cost = ctx.scheduler->EstimateCost(s.model, s.request);
  if (!cost.ok()) return ErrorResponse(cost.status());
  // A retry of a job this Idempotency-Key names already runs nothing new: Submit answers it
  // with that job (or 409), so it asks no quota. Otherwise the ticket is held until Submit
  // returns: from then on the queue counts the job.
  std::optional<queue::Job> earlier;
  if (!idempotency_key.empty()) {
    auto found = ctx.queue->FindIdempotent(s.tenant, idempotency_key);
    if (!found.ok()) return ErrorResponse(found.status());
    earlier = std::move(*found);
  }
  auto ticket = earlier ? absl::StatusOr<quota::QuotaTicket>(quota::QuotaTicket())
                        : AdmitWork(ctx, req, 1, s.request.n, *cost);
  if (!ticket.ok()) return ErrorResponse(ticket.status());
  auto result = ctx.jobs->Submit(std::move(s));
  if (!result.ok() || !result->created) ticket->Refund();  // nothing new will run
  if (!result.ok()) return ErrorResponse(result.status());
  http::Response r = http::Response::Json(result->created ? 202 : 200,
                                          ctx.jobs->JobJson(result->job, BaseUrl(req)).dump());
  r.headers.emplace_back("Location", StrCat("/v1/jobs/", result->job.id()));
  if (!result->created) r.headers.emplace_back("Idempotent-Replayed", "true");
  return r;
}

http::Response HandleGetJob(const ApiContext& ctx, const http::Request& req,
                            const std::string& id) {
  if (auto s = CheckJobId(id); !s.ok()) return ErrorResponse(s);
  if (auto s = CheckQuery(req, {}); !s.ok()) return ErrorResponse(s);
  auto job = VisibleJob(ctx, CallerOf(ctx, req), id);
  if (!job.ok()) return ErrorResponse(job.status());
  return http::Response::Json(200, ctx.jobs->JobJson(*job, BaseUrl(req)).dump());
}

http::Response HandleListJobs(const ApiContext& ctx, const http::Request& req) {
  if (auto s = CheckQuery(req, {"state", "model", "limit", "after", "batch_id"}); !s.ok()) {
    return ErrorResponse(s);
  }
  queue::JobFilter filter;
  if (const Caller caller = CallerOf(ctx, req); !caller.admin) filter.tenant = caller.tenant;
  if (auto it = req.query.find("state"); it != req.query.end()) {
    filter.state = queue::ParseJobState(it->second);
    if (!filter.state) {
      return ErrorResponse(
          InvalidField("state", "'state' must be queued, running, succeeded, failed or cancelled"));
    }
  }
  if (auto it = req.query.find("model"); it != req.query.end()) {
    if (it->second.size() > 256) return ErrorResponse(InvalidField("model", "'model' too long"));
    filter.model = it->second;
  }
  if (auto it = req.query.find("batch_id"); it != req.query.end()) {
    if (!IsUlid(it->second)) return ErrorResponse(InvalidField("batch_id", "not a batch id"));
    filter.batch_id = it->second;
  }
  if (auto it = req.query.find("limit"); it != req.query.end()) {
    auto n = ParseInt(it->second);
    if (!n.ok() || *n < 1 || *n > 100) {
      return ErrorResponse(InvalidField("limit", "'limit' must be an integer in 1..100"));
    }
    filter.limit = static_cast<int>(*n);
  }
  if (auto it = req.query.find("after"); it != req.query.end()) {
    if (!IsUlid(it->second)) {
      return ErrorResponse(
          InvalidField("after", "'after' must be a cursor from a previous page (a job id)"));
    }
    filter.before = it->second;
  }
  auto page = ctx.queue->List(filter);
  if (!page.ok()) return ErrorResponse(page.status());
  const std::string base = BaseUrl(req);
  nlohmann::json data = nlohmann::json::array();
  for (const queue::Job& j : page->jobs) data.push_back(ctx.jobs->JobJson(j, base));
  nlohmann::json body = {{"object", "list"}, {"data", data}, {"has_more", page->has_more}};
  body["next_cursor"] = page->has_more ? nlohmann::json(page->jobs.back().id()) : nullptr;
  return http::Response::Json(200, body.dump());
}

http::Response HandleCancelJob(const ApiContext& ctx, const http::Request& req,
                               const std::string& id) {
  if (auto s = CheckJobId(id); !s.ok()) return ErrorResponse(s);
  auto before = VisibleJob(ctx, CallerOf(ctx, req), id);
  if (!before.ok()) return ErrorResponse(before.status());
  if (queue::IsFinal(before->state)) {
    return ErrorResponse(
        WithField(absl::FailedPreconditionError(
                      StrCat("job ", id, " is already ", queue::JobStateName(before->state))),
                  "job_id"));
  }
  auto job = ctx.jobs->Cancel(id);
  if (!job.ok()) return ErrorResponse(job.status());
  nlohmann::json body = ctx.jobs->JobJson(*job, BaseUrl(req));
  body["cancel_requested"] = true;
  return http::Response::Json(job->state == queue::JobState::kCancelled ? 200 : 202, body.dump());
}

http::Response HandleJobEvents(const ApiContext& ctx, const http::Request& req,
                               const std::string& id) {
  if (auto s = CheckJobId(id); !s.ok()) return ErrorResponse(s);
  if (auto s = CheckQuery(req, {"previews"}); !s.ok()) return ErrorResponse(s);
  bool previews = false;
  if (auto it = req.query.find("previews"); it != req.query.end()) {
    if (it->second != "0" && it->second != "1" && it->second != "true" && it->second != "false") {
      return ErrorResponse(InvalidField("previews", "'previews' must be 1, 0, true or false"));
    }
    previews = it->second == "1" || it->second == "true";
  }
  if (auto job = VisibleJob(ctx, CallerOf(ctx, req), id); !job.ok()) {
    return ErrorResponse(job.status());
  }
  // Subscribe before reading the state, so that no change falls between the two.
  auto stream = ctx.events->Subscribe(id, previews);
  if (!stream) {
    return ErrorResponse(WithRetryAfter(
        absl::ResourceExhaustedError("too many event streams are open; retry later"), 5));
  }
  auto job = ctx.queue->Get(id);
  if (!job.ok()) {
    stream->Close();
    return ErrorResponse(job.status());
  }
  sched::JobEvent first{std::string(queue::JobStateName(job->state)),
                        ctx.jobs->JobJson(*job, BaseUrl(req)).dump(), queue::IsFinal(job->state)};
  http::Response r;
  r.status = 200;
  r.content_type = "text/event-stream";
  r.headers.emplace_back("Cache-Control", "no-cache");
  r.headers.emplace_back("X-Accel-Buffering", "no");
  r.stream = std::make_shared<SseSource>(std::move(stream), std::move(first));
  return r;
}

}  // namespace kiln::api
