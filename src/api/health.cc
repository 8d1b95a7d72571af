// GET /healthz (the process answers) and GET /readyz (every model folder loaded, the store and
// the queue usable).
#include "api/handlers.h"
#include "nlohmann/json.hpp"

namespace kiln::api {

http::Response HandleHealthz(const ApiContext&, const http::Request&) {
  return http::Response::Json(200, R"({"status":"ok"})");
}

http::Response HandleReadyz(const ApiContext& ctx, const http::Request&) {
  nlohmann::json models = nlohmann::json::object();
  for (const auto& e : ctx.models->entries()) {
    models[e.name] = e.status.ok() ? nlohmann::json("ready")
                                   : nlohmann::json({{"error", std::string(e.status.message())}});
  }
  bool ready = ctx.models->AllLoaded();
  nlohmann::json body = {{"models", models}};
  if (ctx.dependencies) {
    const absl::Status store = ctx.dependencies->store();
    body["store"] = store.ok() ? nlohmann::json("ready")
                               : nlohmann::json({{"error", std::string(store.message())}});
    ready = ready && store.ok();
    const absl::Status queue = ctx.dependencies->queue();
    body["queue"] = queue.ok() ? nlohmann::json("ready")
                               : nlohmann::json({{"error", std::string(queue.message())}});
    ready = ready && queue.ok();
  }
  body["status"] = ready ? "ready" : "not_ready";
  if (ctx.models->entries().empty()) body["reason"] = "no model folders found";
  return http::Response::Json(ready ? 200 : 503,
                              body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

}  // namespace kiln::api
