// POST /v1/images/generations and /v1/images/edits: validate, queue in the scheduler's
// interactive class, answer as OpenAI does when the images are ready. The handler thread is
// released while the request waits (a deferred response).
#include <chrono>

#include "api/errors.h"
#include "api/handlers.h"
#include "api/openai_params.h"
#include "core/ids.h"
#include "core/logging.h"
#include "core/status_util.h"
#include "core/strings.h"
#include "engine/image_codec.h"
#include "http/multipart.h"
#include "nlohmann/json.hpp"

namespace kiln::api {
namespace {

// The answer for finished images: b64_json inline, or URLs of PNGs written to the store.
http::Response ImagesResponse(const ApiContext& ctx, const ImageRequest& request,
                              const std::string& id, const std::string& tenant,
                              const std::string& base_url, const std::vector<engine::Image>& images,
                              double seconds, const TraceContext& trace) {
  nlohmann::json data = nlohmann::json::array();
  const bool tracing = ctx.tracer && ctx.tracer->enabled();
  for (size_t i = 0; i < images.size(); ++i) {
    const int64_t t0 = tracing ? obs::UnixNanos() : 0;
    auto png = engine::EncodePng(
        images[i], engine::PngParameters(request.generation, request.model, static_cast<int>(i)));
    if (!png.ok()) return ErrorResponse(png.status());
    if (tracing) {
      ctx.tracer->RecordChild(trace, "png.encode", t0, obs::UnixNanos(),
                              {{"kiln.image", static_cast<int64_t>(i)},
                               {"kiln.bytes", static_cast<int64_t>(png->size())}});
    }
    nlohmann::json entry = {{"seed", request.generation.seed + i}};
    if (request.response_format == ResponseFormat::kUrl) {
      const std::string key = SyncImageKey(ctx, tenant, id, i);
      const int64_t t1 = tracing ? obs::UnixNanos() : 0;
      absl::Status stored = ctx.store->Put(key, *png);
      if (tracing) {
        ctx.tracer->RecordChild(trace, "store.write", t1, obs::UnixNanos(), {{"kiln.key", key}},
                                stored.ok() ? "" : stored.ToString());
      }
      if (absl::Status s = stored; !s.ok()) {
        log::Error("storing an image failed", {{"key", key}, {"error", s.ToString()}});
        return ErrorResponse(Annotate(s, "storing the image"));
      }
      entry["url"] =
          StrCat(base_url, "/v1/files/", key, ctx.file_urls.Query(key, UnixMillis() / 1000));
    } else {
      entry["b64_json"] = Base64Encode(*png);
    }
    data.push_back(std::move(entry));
  }
  log::Info("images generated", {{"id", id},
                                 {"trace_id", trace.trace_id},
                                 {"model", request.model},
                                 {"n", request.generation.n},
                                 {"steps", request.generation.steps},
                                 {"size", request.generation.size.ToString()},
                                 {"seconds", seconds}});
  nlohmann::json body = {{"created", std::chrono::duration_cast<std::chrono::seconds>(
                                         std::chrono::system_clock::now().time_since_epoch())
                                         .count()},
                         {"data", std::move(data)},
                         {"model", request.model},
                         {"steps", request.generation.steps},
                         {"sampler", request.generation.sampler.Name()},
                         {"guidance_scale", request.generation.guidance_scale},
                         {"size", request.generation.size.ToString()}};
  return http::Response::Json(200, body.dump());
}

http::Response RunSync(const ApiContext& ctx, ImageRequest request, const http::Request& req) {
  if (request.response_format == ResponseFormat::kUrl && !ctx.store) {
    return ErrorResponse(InvalidField("response_format", "this server has no result store"));
  }
  auto item = std::make_shared<sched::WorkItem>();
  item->id = NewUlid();
  item->model = request.model;
  item->request = request.generation;
  item->klass = queue::PriorityClass::kInteractive;
  item->priority = request.priority;
  item->tenant = TenantOf(ctx, req);
  item->accepted_ms = UnixMillis();
  item->trace = req.trace;
  // Nobody will read the images of a client that left: the replica asks at admission and at
  // every step, and the rows leave the batch.
  item->client_left = req.client_left;
  auto cost = ctx.scheduler->EstimateCost(request.model, request.generation);
  if (!cost.ok()) return ErrorResponse(cost.status());
  item->cost = *cost;
  auto ticket = AdmitWork(ctx, req, 1, request.generation.n, *cost);
  if (!ticket.ok()) return ErrorResponse(ticket.status());
  // Held until the generation ends: a sync generation counts against concurrent_jobs while it
  // runs, and gives its images back to the day when it fails.
  auto quota = std::make_shared<quota::QuotaTicket>(std::move(*ticket));
  // Encoding a few small PNGs inline on the replica costs less than a thread hop.
  item->inline_done = request.response_format == ResponseFormat::kB64Json &&
                      int64_t{request.generation.n} * request.generation.size.width *
                              request.generation.size.height <=
                          int64_t{128} * 128;
  const int64_t deadline = request.deadline_ms > 0 ? UnixMillis() + request.deadline_ms : 0;
  const std::string base_url = BaseUrl(req);
  http::Response r;
  r.deferred = [&ctx, item, deadline, base_url, quota,
                request =
                    std::make_shared<ImageRequest>(std::move(request))](http::Responder respond) {
    const auto start = std::chrono::steady_clock::now();
    item->on_done = [&ctx, request, base_url, respond, start, quota](
                        sched::WorkItem& w, absl::StatusOr<std::vector<engine::Image>> images) {
      if (!images.ok()) quota->Refund();
      *quota = quota::QuotaTicket();  // the generation no longer counts
      if (!images.ok() && w.client_gone) {
        log::Info("generation cancelled: the client closed its connection",
                  {{"id", w.id}, {"trace_id", w.trace.trace_id}, {"model", request->model}});
        respond(ErrorResponse(images.status()));  // dropped by the server
        return;
      }
      if (!images.ok()) {
        log::Error("generation failed", {{"id", w.id},
                                         {"trace_id", w.trace.trace_id},
                                         {"model", request->model},
                                         {"error", std::string(images.status().message())}});
        respond(ErrorResponse(images.status()));
        return;
      }
      const double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      respond(ImagesResponse(ctx, *request, w.id, w.tenant, base_url, *images, seconds, w.trace));
    };
    if (absl::Status s = ctx.scheduler->SubmitSync(item, deadline); !s.ok()) {
      quota->Refund();
      *quota = quota::QuotaTicket();
      respond(ErrorResponse(s));
    }
  };
  return r;
}

}  // namespace

http::Response HandleImageGenerations(const ApiContext& ctx, const http::Request& req) {
  if (auto s = CheckBody(req, {"application/json"}, ctx.max_json_bytes); !s.ok()) {
    return ErrorResponse(s);
  }
  auto request = ParseGenerationsRequest(req.body, *ctx.models);
  if (!request.ok()) return ErrorResponse(request.status());
  return RunSync(ctx, std::move(*request), req);
}

http::Response HandleImageEdits(const ApiContext& ctx, const http::Request& req) {
  if (auto s = CheckBody(req, {"multipart/form-data"}, ctx.max_multipart_bytes); !s.ok()) {
    return ErrorResponse(s);
  }
  auto parts = FormParts(req);
  if (!parts.ok()) return ErrorResponse(parts.status());
  auto request = ParseEditsRequest(*parts, *ctx.models);
  if (!request.ok()) return ErrorResponse(request.status());
  return RunSync(ctx, std::move(*request), req);
}

}  // namespace kiln::api
