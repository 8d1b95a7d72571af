// KilnMetrics: every metric Kiln exports, in one place, so names and labels are defined once.
// Layers take the families they update (or nothing, in tests). Thread-safe.
#pragma once

#include "obs/metrics.h"

namespace kiln::obs {

struct KilnMetrics {
  explicit KilnMetrics(Registry& registry);

  Registry& registry;
  // HTTP, by route pattern ("/v1/jobs/{id}") so that label values stay few.
  Family<Counter>& http_requests;    // method, route, code
  Family<Histogram>& http_duration;  // method, route: until the response is ready to write
  // Requests from admission to their images (sync) or from submission to their images (jobs).
  Family<Histogram>& request_duration;  // model, kind = sync | job
  Family<Counter>& images;              // model
  // model, kind, outcome = succeeded | failed | cancelled | client_gone (a sync request whose
  // client closed its connection first) | handed_back
  Family<Counter>& requests_finished;
  // The replica step loop.
  Family<Histogram>& batch_rows;        // model: denoiser rows in one step
  Family<Histogram>& step_duration;     // model: one denoiser call for the whole batch
  Family<Counter>& webhook_deliveries;  // outcome = delivered | failed
  // Set at scrape time.
  Family<Gauge>& queue_depth;         // model, priority = interactive | async | batch
  Family<Gauge>& queue_backlog;       // model, priority: device-seconds
  Family<Gauge>& requests_running;    // model: held by replicas
  Family<Gauge>& jobs;                // model, state: jobs in the durable queue
  Family<Gauge>& replicas;            // model
  Family<Gauge>& model_load_seconds;  // model
  Family<Gauge>& model_ready;         // model: 1 when loaded
  Family<Gauge>& autoscale_desired;   // model: replicas the autoscaling policy asks for
  Family<Gauge>& autoscale_backlog;   // model: queued + running device-seconds
  Family<Gauge>& event_streams;       // (no labels): job event streams (SSE) open
};

// Adds the process metrics (CPU seconds, resident and virtual memory, open and max file
// descriptors, threads, start time), read from /proc at scrape time.
void AddProcessMetrics(Registry& registry);

}  // namespace kiln::obs
