// GET /v1/autoscale: per model, the work waiting and running in device-seconds and the replicas
// the policy asks for (scale/autoscale_policy.h); what KEDA's metrics-api scaler or a managed
// instance group's custom metric reads.
#include <cmath>

#include "api/errors.h"
#include "api/handlers.h"
#include "nlohmann/json.hpp"

namespace kiln::api {

std::vector<ModelScale> ComputeScale(const ApiContext& ctx) {
  std::vector<ModelScale> out;
  if (!ctx.scheduler) return out;
  for (const sched::ModelLoad& load : ctx.scheduler->Loads()) {
    ModelScale m;
    m.load = load;
    m.work.queued = load.waiting_sync;
    m.work.queued_seconds = load.waiting_sync_seconds;
    m.work.running = load.held - load.waiting_sync;
    m.work.running_seconds = load.running_remaining_seconds;
    if (ctx.queue) {
      m.backlog = ctx.queue->Backlog(load.model);
      if (m.backlog.ok()) {
        m.work.queued += m.backlog->queued;
        m.work.queued_seconds += m.backlog->queued_cost;
        // Claimed jobs are in `held` already; jobs running elsewhere (other workers) are not.
        m.work.running = std::max(m.work.running, m.backlog->running);
        m.work.running_seconds = std::max(m.work.running_seconds, m.backlog->running_cost);
      }
    }
    m.desired = scale::DesiredReplicas(ctx.autoscale, m.work);
    out.push_back(std::move(m));
  }
  return out;
}

http::Response HandleAutoscale(const ApiContext& ctx, const http::Request& req) {
  if (auto s = CheckQuery(req, {}); !s.ok()) return ErrorResponse(s);
  const std::vector<ModelScale> models = ComputeScale(ctx);
  for (const ModelScale& m : models) {
    if (!m.backlog.ok()) return ErrorResponse(m.backlog.status());
  }
  nlohmann::json list = nlohmann::json::array();
  int total = 0;
  double backlog = 0;
  for (const ModelScale& m : models) {
    total += m.desired;
    backlog += m.work.queued_seconds + m.work.running_seconds;
    list.push_back({{"model", m.load.model},
                    {"backlog_seconds", m.work.queued_seconds + m.work.running_seconds},
                    {"queued_seconds", m.work.queued_seconds},
                    {"running_seconds", m.work.running_seconds},
                    {"queued", m.work.queued},
                    {"running", m.work.running},
                    {"replicas", m.load.replicas},
                    {"desired_replicas", m.desired}});
  }
  nlohmann::json body = {{"object", "autoscale"},
                         {"policy",
                          {{"target_seconds_per_replica", ctx.autoscale.target_seconds_per_replica},
                           {"min_replicas", ctx.autoscale.min_replicas},
                           {"max_replicas", ctx.autoscale.max_replicas}}},
                         {"backlog_seconds", backlog},
                         {"desired_replicas", total},
                         {"models", list}};
  return http::Response::Json(200, body.dump());
}

}  // namespace kiln::api
