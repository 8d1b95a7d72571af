// Tracer: collects finished spans and exports them to an OpenTelemetry collector over OTLP/HTTP
// with JSON bodies ({endpoint}/v1/traces), in batches, from a background thread. Recording never
// blocks: when the queue is full a span is dropped and counted. Thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/trace_context.h"
#include "nlohmann/json.hpp"

namespace kiln::obs {

// OTLP span kinds used here.
enum class SpanKind { kInternal = 1, kServer = 2, kConsumer = 5 };

struct Span {
  std::string name;
  TraceContext context;        // the trace and this span's own id
  std::string parent_span_id;  // empty for a root span
  SpanKind kind = SpanKind::kInternal;
  int64_t start_ns = 0;  // Unix time
  int64_t end_ns = 0;
  std::vector<std::pair<std::string, nlohmann::json>> attributes;  // string, integer, float, bool
  std::string error;  // non-empty: the span failed with this message
};

struct TracerOptions {
  std::string endpoint;  // base URL ("http://127.0.0.1:4318"); empty: tracing off
  std::string service_name = "kiln";
  size_t max_queue = 8192;
  size_t max_batch = 512;
  std::chrono::milliseconds flush_interval{1000};
  std::chrono::milliseconds timeout{5000};  // per export request
};

class Tracer {
 public:
  explicit Tracer(TracerOptions options);
  // Exports what is queued, at most two more batches (each bounded by the timeout), then stops.
  ~Tracer();

  bool enabled() const { return !options_.endpoint.empty(); }
  void Record(Span span);
  // A child span of `parent` (which is the position the work was done for).
  void RecordChild(const TraceContext& parent, std::string name, int64_t start_ns, int64_t end_ns,
                   std::vector<std::pair<std::string, nlohmann::json>> attributes = {},
                   std::string error = "");
  int64_t dropped() const;

  struct State;

 private:
  const TracerOptions options_;
  std::unique_ptr<State> state_;
};

// The OTLP/JSON ExportTraceServiceRequest for `spans`.
nlohmann::json OtlpTraces(const std::vector<Span>& spans, const std::string& service_name);

// Now, in Unix nanoseconds.
int64_t UnixNanos();

// Options from the standard environment variables: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (a full
// URL ending in /v1/traces) or OTEL_EXPORTER_OTLP_ENDPOINT (the base URL), OTEL_SERVICE_NAME.
// `endpoint_flag`, when non-empty, wins over both.
TracerOptions TracerOptionsFromEnv(const std::string& endpoint_flag);

}  // namespace kiln::obs
