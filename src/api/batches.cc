// /v1/batches: many generation requests in one JSONL body, validated as a whole (one bad line
// and nothing is queued), run in the batch class; and /v1/files/{key} for results.
#include "api/errors.h"
#include "api/handlers.h"
#include "api/openai_params.h"
#include "core/ids.h"
#include "core/json_parse.h"
#include "core/status_util.h"
#include "core/strings.h"

namespace kiln::api {
namespace {

nlohmann::json BatchJson(const queue::Batch& b, const std::map<queue::JobState, int>& counts) {
  nlohmann::json c = nlohmann::json::object();
  int done = 0;
  for (queue::JobState s :
       {queue::JobState::kQueued, queue::JobState::kRunning, queue::JobState::kSucceeded,
        queue::JobState::kFailed, queue::JobState::kCancelled}) {
    auto it = counts.find(s);
    const int n = it == counts.end() ? 0 : it->second;
    c[std::string(queue::JobStateName(s))] = n;
    if (queue::IsFinal(s)) done += n;
  }
  c["total"] = b.total;
  nlohmann::json j = {
      {"id", b.id},
      {"object", "batch"},
      {"model", b.model},
      {"created_at", b.created_ms / 1000.0},
      {"status", done == b.total                                       ? "completed"
                 : counts.count(queue::JobState::kRunning) || done > 0 ? "in_progress"
                                                                       : "queued"},
      {"request_counts", c},
      {"results_url", StrCat("/v1/batches/", b.id, "/results")}};
  auto meta = nlohmann::json::parse(b.metadata, nullptr, false);
  if (meta.is_object() && !meta.empty()) j["metadata"] = meta;
  return j;
}

absl::Status CheckBatchId(const std::string& id) {
  if (!IsUlid(id)) {
    return InvalidField("batch_id", StrCat("'", id.substr(0, 64), "' is not a batch id"));
  }
  return absl::OkStatus();
}

}  // namespace

http::Response HandleCreateBatch(const ApiContext& ctx, const http::Request& req) {
  if (auto s =
          CheckBody(req, {"application/jsonl", "application/x-ndjson", "application/x-jsonlines"},
                    ctx.max_batch_bytes);
      !s.ok()) {
    return ErrorResponse(s);
  }
  if (auto s = CheckQuery(req, {}); !s.ok()) return ErrorResponse(s);
  std::vector<sched::JobSubmission> subs;
  const std::string tenant = TenantOf(ctx, req);
  int line_no = 0;
  for (std::string_view line : Split(req.body, "\n")) {
    ++line_no;
    line = Trim(line);
    if (line.empty()) continue;
    if (static_cast<int>(subs.size()) >= ctx.max_batch_lines) {
      return ErrorResponse(
          InvalidField("body", StrCat("a batch holds at most ", ctx.max_batch_lines, " requests")));
    }
    auto where = [&](const absl::Status& s) {
      const std::string field = FieldOf(s).value_or("");
      return WithField(
          absl::Status(s.code(), StrCat("line ", line_no, ": ", s.message())),
          field.empty() ? StrCat("line ", line_no) : StrCat("line ", line_no, ": ", field));
    };
    auto obj = ParseJsonWithLimits(line, "the request");
    if (!obj.ok()) return ErrorResponse(where(obj.status()));
    auto request = ParseJobRequest(*obj, *ctx.models, ctx.webhook_policy, /*batch_line=*/true);
    if (!request.ok()) return ErrorResponse(where(request.status()));
    sched::JobSubmission s;
    s.model = request->model;
    s.request = std::move(request->generation);
    if (!request->image_bytes.empty()) {
      return ErrorResponse(where(InvalidField("image", "batch lines are text-to-image only")));
    }
    s.klass = queue::PriorityClass::kBatch;
    s.priority = request->priority;
    s.tenant = tenant;
    s.traceparent = req.trace.Traceparent();
    s.webhook = request->webhook;
    s.custom_id = request->custom_id;
    subs.push_back(std::move(s));
  }
  if (subs.empty()) return ErrorResponse(InvalidField("body", "the batch has no requests"));
  int64_t images = 0;
  double cost = 0;
  for (const sched::JobSubmission& s : subs) {
    auto one = ctx.scheduler->EstimateCost(s.model, s.request);
    if (!one.ok()) return ErrorResponse(one.status());
    cost += *one;
    images += s.request.n;
  }
  // Held until SubmitBatch returns: from then on the queue counts the jobs.
  auto ticket = AdmitWork(ctx, req, static_cast<int>(subs.size()), images, cost);
  if (!ticket.ok()) return ErrorResponse(ticket.status());
  auto batch = ctx.jobs->SubmitBatch(std::move(subs), nlohmann::json::object());
  if (!batch.ok()) {
    // Refused before anything was stored (admission, a model): nothing runs. A failure of the
    // queue or the store may come after part of the batch was queued: those images stay counted.
    const absl::StatusCode code = batch.status().code();
    if (code != absl::StatusCode::kUnavailable && code != absl::StatusCode::kInternal &&
        code != absl::StatusCode::kUnknown && code != absl::StatusCode::kDataLoss) {
      ticket->Refund();
    }
    return ErrorResponse(batch.status());
  }
  auto counts = ctx.queue->BatchCounts(batch->id);
  if (!counts.ok()) return ErrorResponse(counts.status());
  http::Response r = http::Response::Json(202, BatchJson(*batch, *counts).dump());
  r.headers.emplace_back("Location", StrCat("/v1/batches/", batch->id));
  return r;
}

namespace {

// The batch `id` as `caller` may see it: a batch is its jobs' tenant's, and another tenant's
// batch is "no batch", exactly as one that does not exist.
absl::StatusOr<queue::Batch> VisibleBatch(const ApiContext& ctx, const Caller& caller,
                                          const std::string& id) {
  auto batch = ctx.queue->GetBatch(id);
  if (!batch.ok() || caller.admin) return batch;
  queue::JobFilter filter;
  filter.batch_id = id;
  filter.limit = 1;
  auto page = ctx.queue->List(filter);
  if (!page.ok()) return page.status();
  if (page->jobs.empty() || page->jobs[0].spec.tenant != caller.tenant) {
    return WithField(absl::NotFoundError(StrCat("no batch '", id, "'")), "batch_id");
  }
  return batch;
}

}  // namespace

http::Response HandleGetBatch(const ApiContext& ctx, const http::Request& req,
                              const std::string& id) {
  if (auto s = CheckBatchId(id); !s.ok()) return ErrorResponse(s);
  auto batch = VisibleBatch(ctx, CallerOf(ctx, req), id);
  if (!batch.ok()) return ErrorResponse(batch.status());
  auto counts = ctx.queue->BatchCounts(id);
  if (!counts.ok()) return ErrorResponse(counts.status());
  return http::Response::Json(200, BatchJson(*batch, *counts).dump());
}

http::Response HandleBatchResults(const ApiContext& ctx, const http::Request& req,
                                  const std::string& id) {
  if (auto s = CheckBatchId(id); !s.ok()) return ErrorResponse(s);
  auto batch = VisibleBatch(ctx, CallerOf(ctx, req), id);
  if (!batch.ok()) return ErrorResponse(batch.status());
  queue::JobFilter filter;
  filter.batch_id = id;
  filter.limit = 100;
  std::vector<queue::Job> all;
  while (true) {
    auto page = ctx.queue->List(filter);
    if (!page.ok()) return ErrorResponse(page.status());
    all.insert(all.end(), page->jobs.begin(), page->jobs.end());
    if (!page->has_more) break;
    filter.before = page->jobs.back().id();
  }
  std::sort(all.begin(), all.end(),
            [](const queue::Job& a, const queue::Job& b) { return a.seq < b.seq; });
  const std::string base = BaseUrl(req);
  std::string out;
  for (const queue::Job& j : all) {
    nlohmann::json full = ctx.jobs->JobJson(j, base);
    nlohmann::json line = {{"custom_id", full.value("custom_id", nlohmann::json(nullptr))},
                           {"job_id", j.id()},
                           {"state", full["state"]},
                           {"data", full["data"]},
                           {"error", full["error"]}};
    StrAppend(&out, line.dump(), "\n");
  }
  http::Response r;
  r.content_type = "application/jsonl";
  r.body = std::move(out);
  return r;
}

http::Response HandleGetFile(const ApiContext& ctx, const http::Request& req,
                             const std::string& key) {
  if (auto s = store::CheckKey(key); !s.ok()) return ErrorResponse(s);
  const auto no_file = [&key] {
    return ErrorResponse(WithField(absl::NotFoundError(StrCat("no file '", key, "'")), "key"));
  };
  if (!(key.rfind("jobs/", 0) == 0 || key.rfind("images/", 0) == 0)) return no_file();
  if (auto s = CheckQuery(req, {"expires", "signature"}); !s.ok()) return ErrorResponse(s);
  const auto expires = req.query.find("expires");
  const auto signature = req.query.find("signature");
  if (expires != req.query.end() || signature != req.query.end()) {
    // A signed URL Kiln handed out: it grants this key until it expires, without an API key.
    absl::Status granted = ctx.file_urls.Verify(
        key, expires == req.query.end() ? "" : expires->second,
        signature == req.query.end() ? "" : signature->second, UnixMillis() / 1000);
    if (!granted.ok()) return ErrorResponse(granted);
  } else {
    auto caller = Authenticate(ctx, req);
    if (!caller.ok()) return Unauthorized(caller.status());
    // Another tenant's files are "no file", exactly as missing ones.
    if (key.rfind("jobs/", 0) == 0 && !caller->admin) {
      const std::string id = key.substr(5, key.find('/', 5) - 5);
      auto job = ctx.queue->Get(id);
      if (!job.ok() || !CanSee(*caller, job->spec.tenant)) return no_file();
    }
    if (key.rfind("images/", 0) == 0 && !MayReadImage(*caller, key)) return no_file();
  }
  auto bytes = ctx.store->Get(key);
  if (!bytes.ok()) {
    if (absl::IsNotFound(bytes.status())) {
      return ErrorResponse(WithField(absl::NotFoundError(StrCat("no file '", key, "'")), "key"));
    }
    return ErrorResponse(bytes.status());
  }
  http::Response r;
  r.body = std::move(*bytes);
  r.content_type = key.ends_with(".png")    ? "image/png"
                   : key.ends_with(".json") ? "application/json"
                                            : "application/octet-stream";
  r.headers.emplace_back("Cache-Control", "private, max-age=86400");
  return r;
}

}  // namespace kiln::api
