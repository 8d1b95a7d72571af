// AUTOMATIC1111's /sdapi/v1: txt2img and img2img go through the scheduler like every other
// request (admission, fair sharing, step-level batching, metrics); the rest reads or changes
// the A1111 session (default checkpoint, progress, interrupt, skip).
#include "api/a1111.h"

#include <chrono>

#include "api/errors.h"
#include "api/handlers.h"
#include "core/ids.h"
#include "core/json_parse.h"
#include "core/logging.h"
#include "core/status_util.h"
#include "core/strings.h"
#include "engine/image_codec.h"
#include "nlohmann/json.hpp"

namespace kiln::api {
namespace {

using nlohmann::json;

// The answer once every iteration has ended: the images of the finished ones, in order.
http::Response TaskResponse(const ApiContext& ctx, A1111Task& task) {
  std::vector<std::vector<engine::Image>> finished;  // per iteration; empty when skipped
  {
    absl::MutexLock lock(&task.mu);
    if (task.client_gone) return ErrorResponse(absl::CancelledError("the client went away"));
    if (!task.error.ok()) return ErrorResponse(task.error);
    for (auto& o : task.outcomes) finished.push_back(std::move(o.images));
  }
  const A1111Request& r = task.request;
  std::vector<int> indices;
  json images = json::array();
  for (size_t k = 0; k < finished.size(); ++k) {
    for (size_t i = 0; i < finished[k].size(); ++i) {
      const int index = static_cast<int>(k) * r.batch_size + static_cast<int>(i);
      auto png = engine::EncodePng(finished[k][i], {{"parameters", A1111Infotext(r, index)}});
      if (!png.ok()) return ErrorResponse(png.status());
      if (r.save_images) {
        const std::string key = SyncImageKey(ctx, task.tenant, task.iterations[k]->id, i);
        if (absl::Status s = ctx.store->Put(key, *png); !s.ok()) {
          log::Error("storing an image failed", {{"key", key}, {"error", s.ToString()}});
          return ErrorResponse(Annotate(s, "saving the image (save_images)"));
        }
      }
      indices.push_back(index);
      if (r.send_images) images.push_back(Base64Encode(*png));
    }
  }
  json info = A1111Info(task.request, indices, task.started_ms / 1000);
  log::Info("a1111 images generated", {{"task", task.id},
                                       {"model", task.request.spec->name},
                                       {"images", static_cast<int64_t>(indices.size())},
                                       {"steps", task.request.generation.steps}});
  json body = {{"images", std::move(images)},
               {"parameters", task.request.parameters},
               {"info", info.dump(-1, ' ', false, json::error_handler_t::replace)}};
  return http::Response::Json(200, body.dump(-1, ' ', false, json::error_handler_t::replace));
}

void Finish(const ApiContext& ctx, A1111Session& session, const std::shared_ptr<A1111Task>& task) {
  session.Remove(task.get());
  {
    absl::MutexLock lock(&task->mu);
    task->quota = quota::QuotaTicket();  // the call no longer counts
  }
  task->respond(TaskResponse(ctx, *task));
}

http::Response Generate(const ApiContext& ctx, const std::shared_ptr<A1111Session>& session,
                        const http::Request& req, A1111Route route) {
  const size_t limit = route == A1111Route::kTxt2Img ? ctx.max_json_bytes : ctx.max_multipart_bytes;
  if (auto s = CheckBody(req, {"application/json"}, limit); !s.ok()) return ErrorResponse(s);
  auto parsed = ParseA1111Request(route, req.body, *ctx.models, session->default_model());
  if (!parsed.ok()) return ErrorResponse(parsed.status());
  if (parsed->save_images && !ctx.store) {
    return ErrorResponse(InvalidField("save_images", "this server has no result store"));
  }
  auto task = std::make_shared<A1111Task>();
  task->id = parsed->task_id.empty() ? StrCat("task(", NewUlid(), ")") : parsed->task_id;
  task->tenant = TenantOf(ctx, req);
  task->started_ms = UnixMillis();
  task->request = std::move(*parsed);
  const A1111Request& r = task->request;
  std::weak_ptr<A1111Task> weak = task;
  std::weak_ptr<A1111Session> weak_session = session;
  double cost_seconds = 0;
  for (int k = 0; k < r.n_iter; ++k) {
    auto item = std::make_shared<sched::WorkItem>();
    item->id = NewUlid();
    item->model = r.spec->name;
    item->request = r.generation;
    item->request.seed = r.generation.seed + static_cast<uint64_t>(k) * r.batch_size;
    item->klass = queue::PriorityClass::kInteractive;
    item->tenant = task->tenant;
    item->accepted_ms = task->started_ms;
    item->trace = req.trace;
    item->client_left = req.client_left;
    auto cost = ctx.scheduler->EstimateCost(item->model, item->request);
    if (!cost.ok()) return ErrorResponse(cost.status());
    item->cost = *cost;
    cost_seconds += *cost;
    item->wants_preview = [weak] {
      auto t = weak.lock();
      return t && t->preview_wanted.load();
    };
    item->on_progress = [weak](sched::WorkItem&, const engine::Image* preview) {
      auto t = weak.lock();
      if (!t || !preview) return;
      auto png = engine::EncodePng(*preview, {});
      if (!png.ok()) return;
      absl::MutexLock lock(&t->mu);
      t->preview_png = std::move(*png);
    };
    item->on_done = [&ctx, weak, weak_session, k](
                        sched::WorkItem& w, absl::StatusOr<std::vector<engine::Image>> images) {
      auto t = weak.lock();
      auto s = weak_session.lock();
      if (!t || !s) return;
      if (t->Finish(k, std::move(images), w.client_gone.load())) Finish(ctx, *s, t);
    };
    task->iterations.push_back(std::move(item));
  }
  auto ticket = AdmitWork(ctx, req, r.n_iter, int64_t{r.n_iter} * r.batch_size, cost_seconds);
  if (!ticket.ok()) return ErrorResponse(ticket.status());
  {
    absl::MutexLock lock(&task->mu);
    task->outcomes.resize(r.n_iter);
    task->remaining = r.n_iter;
    task->quota = std::move(*ticket);
  }

  http::Response response;
  response.deferred = [&ctx, session, task](http::Responder respond) {
    task->respond = std::move(respond);
    session->Add(task);
    const int n = static_cast<int>(task->iterations.size());
    for (int k = 0; k < n; ++k) {
      // An /interrupt or /skip that came while the earlier iterations were being submitted.
      if (task->IsSkipped(k)) {
        if (task->Finish(k, absl::CancelledError("skipped"), false)) Finish(ctx, *session, task);
        continue;
      }
      absl::Status s = ctx.scheduler->SubmitSync(task->iterations[k], /*deadline_ms=*/0);
      if (s.ok()) continue;
      // All or nothing: the iterations already admitted are cancelled, and the call answers
      // with the admission error (429 with Retry-After when the queue is full).
      {
        absl::MutexLock lock(&task->mu);
        task->quota.Refund();  // nothing runs
      }
      for (const auto& item : task->Skip(0, k)) ctx.scheduler->Cancel(item->id);
      if (task->NotSubmitted(k, s)) Finish(ctx, *session, task);
      return;
    }
  };
  return response;
}

json NoProgress() {
  return {{"progress", 0.0},
          {"eta_relative", 0.0},
          {"state",
           {{"skipped", false},
            {"interrupted", false},
            {"stopping_generation", false},
            {"job", ""},
            {"job_count", 0},
            {"job_timestamp", "0"},
            {"job_no", 0},
            {"sampling_step", 0},
            {"sampling_steps", 0}}},
          {"current_image", nullptr},
          {"textinfo", nullptr},
          {"current_task", nullptr}};
}

http::Response Progress(const ApiContext& ctx, const A1111Session& session,
                        const http::Request& req) {
  if (auto s = CheckQuery(req, {"skip_current_image"}); !s.ok()) return ErrorResponse(s);
  bool skip_image = false;
  if (auto it = req.query.find("skip_current_image"); it != req.query.end()) {
    const std::string v = ToLowerAscii(it->second);
    if (v != "true" && v != "false") {
      return ErrorResponse(
          InvalidField("skip_current_image", "'skip_current_image' must be true or false"));
    }
    skip_image = v == "true";
  }
  auto task = session.Current(TenantOf(ctx, req));
  if (!task) return http::Response::Json(200, NoProgress().dump());
  if (!skip_image) task->preview_wanted = true;

  const int current = task->Current();
  const int n = static_cast<int>(task->iterations.size());
  int64_t done = 0, total = 0;
  int step = 0, steps = 0;
  double cost = 0;
  std::string preview;
  bool interrupted = false;
  {
    absl::MutexLock lock(&task->mu);
    for (int k = 0; k < n; ++k) {
      const sched::WorkItem& item = *task->iterations[k];
      const int item_steps = item.num_steps > 0 ? item.num_steps.load() : item.request.steps;
      const auto& o = task->outcomes[k];
      total += item_steps;
      done += o.done || o.skipped ? item_steps : item.step.load();
      cost += o.done || o.skipped ? 0.0 : item.cost;
      if (k == current) {
        step = item.step;
        steps = item_steps;
      }
    }
    interrupted = task->interrupted;
    if (!skip_image) preview = task->preview_png;
  }
  const double progress = total > 0 ? static_cast<double>(done) / total : 0.0;
  const double elapsed = (UnixMillis() - task->started_ms) / 1000.0;
  // As A1111 does once work has started; before that, the cost model's device-seconds.
  const double eta = progress > 0 ? elapsed / progress - elapsed : cost;
  json body = NoProgress();
  body["progress"] = progress;
  body["eta_relative"] = eta;
  body["state"]["interrupted"] = interrupted;
  body["state"]["job"] = StrCat("Batch ", std::min(current + 1, n), " out of ", n);
  body["state"]["job_count"] = n;
  body["state"]["job_no"] = std::min(current, n - 1);
  body["state"]["job_timestamp"] = std::to_string(task->started_ms / 1000);
  body["state"]["sampling_step"] = step;
  body["state"]["sampling_steps"] = steps;
  body["current_image"] = preview.empty() ? json(nullptr) : json(Base64Encode(preview));
  body["current_task"] = task->id;
  return http::Response::Json(200, body.dump(-1, ' ', false, json::error_handler_t::replace));
}

// /interrupt stops the caller's oldest call (its finished iterations are still returned);
// /skip stops that call's current iteration and goes on with the next.
http::Response Stop(const ApiContext& ctx, const A1111Session& session, const http::Request& req,
                    bool whole_task) {
  if (auto task = session.Current(TenantOf(ctx, req))) {
    const int current = task->Current();
    const int n = static_cast<int>(task->iterations.size());
    if (whole_task) {
      absl::MutexLock lock(&task->mu);
      task->interrupted = true;
    }
    for (const auto& item : task->Skip(current, whole_task ? n : std::min(current + 1, n))) {
      ctx.scheduler->Cancel(item->id);
    }
  }
  return http::Response::Json(200, "{}");
}

json Options(const ApiContext& ctx, const A1111Session& session) {
  std::string model = session.default_model();
  if (model.empty()) {
    auto spec = ctx.models->Default();
    if (spec.ok()) model = (*spec)->name;
  }
  return {{"sd_model_checkpoint", model},
          {"sd_checkpoint_hash", nullptr},
          {"samples_format", "png"},
          {"eta_ancestral", 1.0},
          {"eta_ddim", 0.0}};
}

http::Response SetOptions(const ApiContext& ctx, A1111Session& session, const http::Request& req) {
  if (auto s = CheckBody(req, {"application/json"}, ctx.max_json_bytes); !s.ok()) {
    return ErrorResponse(s);
  }
  auto body = ParseJsonWithLimits(req.body, "the request body");
  if (!body.ok()) return ErrorResponse(body.status());
  if (!body->is_object()) {
    return ErrorResponse(absl::InvalidArgumentError("the request body must be a JSON object"));
  }
  const json current = Options(ctx, session);
  std::string model;
  for (const auto& [key, value] : body->items()) {
    if (key == "sd_model_checkpoint") {
      if (!value.is_string()) {
        return ErrorResponse(InvalidField(key, "'sd_model_checkpoint' must be a string"));
      }
      auto spec = ResolveA1111Checkpoint(value.get<std::string>(), *ctx.models, key);
      if (!spec.ok()) return ErrorResponse(spec.status());
      model = (*spec)->name;
    } else if (!current.contains(key)) {
      return ErrorResponse(InvalidField(key, StrCat("unknown option '", key, "'")));
    } else if (current[key] != value) {
      return ErrorResponse(InvalidField(
          key, StrCat("option '", key, "' is fixed in Kiln; only sd_model_checkpoint can change")));
    }
  }
  // Requests read the default once, when they are parsed: those in flight keep their model.
  if (!model.empty()) {
    session.set_default_model(model);
    log::Info("a1111 default checkpoint changed", {{"model", model}});
  }
  return http::Response::Json(200, "true");
}

http::Response SdModels(const ApiContext& ctx) {
  json out = json::array();
  for (const auto& e : ctx.models->entries()) {
    if (!e.status.ok()) continue;
    out.push_back({{"title", e.name},
                   {"model_name", e.name},
                   {"hash", nullptr},
                   {"sha256", nullptr},
                   {"filename", e.name},
                   {"config", nullptr}});
  }
  return http::Response::Json(200, out.dump());
}

}  // namespace

void AddA1111Routes(http::Router& router, const ApiContext& ctx) {
  const ApiContext* c = &ctx;
  auto session = std::make_shared<A1111Session>();
  using P = http::PathParams;
  using R = http::Request;
  const auto add = [&](const char* method, const char* path, Access access, http::Handler h) {
    router.Add(method, path, Guarded(ctx, access, std::move(h)));
  };
  add("POST", "/sdapi/v1/txt2img", Access::kUser, [c, session](const R& r, const P&) {
    return Generate(*c, session, r, A1111Route::kTxt2Img);
  });
  add("POST", "/sdapi/v1/img2img", Access::kUser, [c, session](const R& r, const P&) {
    return Generate(*c, session, r, A1111Route::kImg2Img);
  });
  add("GET", "/sdapi/v1/progress", Access::kUser,
      [c, session](const R& r, const P&) { return Progress(*c, *session, r); });
  add("POST", "/sdapi/v1/interrupt", Access::kUser,
      [c, session](const R& r, const P&) { return Stop(*c, *session, r, /*whole_task=*/true); });
  add("POST", "/sdapi/v1/skip", Access::kUser,
      [c, session](const R& r, const P&) { return Stop(*c, *session, r, /*whole_task=*/false); });
  add("GET", "/sdapi/v1/options", Access::kUser, [c, session](const R&, const P&) {
    return http::Response::Json(200, Options(*c, *session).dump());
  });
  // The default checkpoint is every caller's: with API keys, only an admin changes it.
  add("POST", "/sdapi/v1/options", Access::kAdmin,
      [c, session](const R& r, const P&) { return SetOptions(*c, *session, r); });
  add("GET", "/sdapi/v1/sd-models", Access::kUser,
      [c](const R&, const P&) { return SdModels(*c); });
  add("GET", "/sdapi/v1/samplers", Access::kUser,
      [](const R&, const P&) { return http::Response::Json(200, A1111Samplers().dump()); });
  add("GET", "/sdapi/v1/schedulers", Access::kUser,
      [](const R&, const P&) { return http::Response::Json(200, A1111Schedulers().dump()); });
  add("GET", "/sdapi/v1/upscalers", Access::kUser,
      [](const R&, const P&) { return http::Response::Json(200, "[]"); });
  // No scripts: clients such as webuiapi ask at start which extensions are installed.
  add("GET", "/sdapi/v1/scripts", Access::kUser, [](const R&, const P&) {
    return http::Response::Json(200, R"({"txt2img":[],"img2img":[]})");
  });
}

}  // namespace kiln::api
