// GET /metrics: the Prometheus text exposition of every Kiln metric. Gauges that describe the
// queues, replicas and models are computed here at scrape time.
#include <array>

#include "api/errors.h"
#include "api/handlers.h"
#include "core/logging.h"
#include "core/strings.h"

namespace kiln::api {

void CollectServingMetrics(const ApiContext& ctx) {
  obs::KilnMetrics& m = *ctx.metrics;
  for (const auto& e : ctx.models->entries()) {
    m.model_ready.With({e.name}).Set(e.status.ok() ? 1 : 0);
    m.model_load_seconds.With({e.name}).Set(e.load_seconds);
  }
  if (ctx.events) m.event_streams.With({}).Set(static_cast<double>(ctx.events->streams()));
  const std::string interactive(queue::PriorityClassName(queue::PriorityClass::kInteractive));
  // One read of the scheduler and the queue serves the autoscaling and the queue gauges.
  for (ModelScale& s : ComputeScale(ctx)) {
    const sched::ModelLoad& load = s.load;
    const std::string& model = load.model;
    m.replicas.With({model}).Set(load.replicas);
    m.requests_running.With({model}).Set(load.running);
    m.queue_depth.With({model, interactive}).Set(load.waiting_sync);
    m.queue_backlog.With({model, interactive}).Set(load.waiting_sync_seconds);
    if (s.backlog.ok()) {
      m.autoscale_desired.With({model}).Set(s.desired);
      m.autoscale_backlog.With({model}).Set(s.work.queued_seconds + s.work.running_seconds);
    }
    if (!ctx.queue) continue;
    absl::StatusOr<queue::ModelBacklog>& backlog = s.backlog;
    absl::StatusOr<std::map<queue::JobState, int>> states = ctx.queue->StateCounts(model);
    // A distributed queue does not count jobs by state (that would read every record).
    const bool counted = !absl::IsUnimplemented(states.status());
    if (!counted) states = std::map<queue::JobState, int>{};
    if (!backlog.ok() || !states.ok()) {
      log::Warn("metrics: cannot read the queue",
                {{"model", model},
                 {"error", (backlog.ok() ? states.status() : backlog.status()).ToString()}});
      continue;
    }
    for (queue::PriorityClass c : {queue::PriorityClass::kAsync, queue::PriorityClass::kBatch}) {
      const std::string name(queue::PriorityClassName(c));
      m.queue_depth.With({model, name}).Set(backlog->queued_by_class[c]);
      m.queue_backlog.With({model, name}).Set(backlog->queued_cost_by_class[c]);
    }
    if (!counted) continue;
    for (queue::JobState s :
         {queue::JobState::kQueued, queue::JobState::kRunning, queue::JobState::kSucceeded,
          queue::JobState::kFailed, queue::JobState::kCancelled}) {
      auto it = states->find(s);
      m.jobs.With({model, std::string(queue::JobStateName(s))})
          .Set(it == states->end() ? 0 : it->second);
    }
  }
}

http::RequestObserver HttpObserver(obs::KilnMetrics& metrics, obs::Tracer& tracer) {
  return [&metrics, &tracer](const http::RequestRecord& r) {
    // Label values come from a closed set, so a client cannot grow the series without bound.
    static const std::array<std::string_view, 6> kMethods = {"GET",    "POST", "PUT",
                                                             "DELETE", "HEAD", "OPTIONS"};
    std::string method = "other";
    for (std::string_view m : kMethods) {
      if (r.method == m) method = std::string(m);
    }
    const std::string route = r.route.empty() ? "unmatched" : std::string(r.route);
    metrics.http_requests.With({method, route, std::to_string(r.status)}).Inc();
    metrics.http_duration.With({method, route})
        .Observe(std::chrono::duration<double>(r.elapsed).count());
    if (!tracer.enabled() || !r.request || !r.request->trace.valid()) return;
    obs::Span span;
    span.name = StrCat(method, " ", route);
    span.context = r.request->trace;
    span.parent_span_id = r.request->parent_span_id;
    span.kind = obs::SpanKind::kServer;
    span.start_ns =
        std::chrono::duration_cast<std::chrono::nanoseconds>(r.start.time_since_epoch()).count();
    span.end_ns = span.start_ns + r.elapsed.count();
    span.attributes = {{"http.request.method", method},
                       {"http.route", route},
                       {"url.path", r.request->path},
                       {"http.response.status_code", r.status}};
    if (r.status >= 500) span.error = StrCat("HTTP ", r.status);
    tracer.Record(std::move(span));
  };
}

http::Response HandleMetrics(const ApiContext& ctx, const http::Request&) {
  if (!ctx.metrics) return ErrorResponse(absl::NotFoundError("metrics are not enabled"));
  http::Response r;
  r.status = 200;
  r.content_type = "text/plain; version=0.0.4; charset=utf-8";
  r.body = ctx.metrics->registry.Render();
  return r;
}

}  // namespace kiln::api
