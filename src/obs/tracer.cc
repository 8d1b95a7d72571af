#include "obs/tracer.h"

#include <cstdlib>
#include <deque>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "core/logging.h"
#include "core/strings.h"
#include "http/client.h"

namespace kiln::obs {

struct Tracer::State {
  absl::Mutex mu;
  std::deque<Span> queue ABSL_GUARDED_BY(mu);
  bool stop ABSL_GUARDED_BY(mu) = false;
  int64_t dropped ABSL_GUARDED_BY(mu) = 0;
  bool warned ABSL_GUARDED_BY(mu) = false;
  std::thread exporter;
};

namespace {

nlohmann::json AttributeValue(const nlohmann::json& v) {
  if (v.is_boolean()) return {{"boolValue", v.get<bool>()}};
  // OTLP/JSON writes 64-bit integers as strings.
  if (v.is_number_integer()) return {{"intValue", std::to_string(v.get<int64_t>())}};
  if (v.is_number()) return {{"doubleValue", v.get<double>()}};
  if (v.is_string()) return {{"stringValue", v.get<std::string>()}};
  return {{"stringValue", v.dump()}};
}

}  // namespace

int64_t UnixNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

nlohmann::json OtlpTraces(const std::vector<Span>& spans, const std::string& service_name) {
  nlohmann::json out = nlohmann::json::array();
  for (const Span& s : spans) {
    nlohmann::json attrs = nlohmann::json::array();
    for (const auto& [k, v] : s.attributes)
      attrs.push_back({{"key", k}, {"value", AttributeValue(v)}});
    nlohmann::json span = {{"traceId", s.context.trace_id},
                           {"spanId", s.context.span_id},
                           {"name", s.name},
                           {"kind", static_cast<int>(s.kind)},
                           {"startTimeUnixNano", std::to_string(s.start_ns)},
                           {"endTimeUnixNano", std::to_string(s.end_ns)},
                           {"attributes", attrs}};
    if (!s.parent_span_id.empty()) span["parentSpanId"] = s.parent_span_id;
    // Status codes: 1 ok, 2 error.
    span["status"] = s.error.empty() ? nlohmann::json{{"code", 1}}
                                     : nlohmann::json{{"code", 2}, {"message", s.error}};
    out.push_back(std::move(span));
  }
  return {{"resourceSpans",
           {{{"resource",
              {{"attributes",
                {{{"key", "service.name"}, {"value", {{"stringValue", service_name}}}}}}}},
             {"scopeSpans", {{{"scope", {{"name", "kiln"}}}, {"spans", out}}}}}}}};
}

Tracer::Tracer(TracerOptions options)
    : options_(std::move(options)), state_(std::make_unique<State>()) {
  if (!enabled()) return;
  state_->exporter = std::thread([this] {
    const std::string url = options_.endpoint.ends_with("/v1/traces")
                                ? options_.endpoint
                                : StrCat(options_.endpoint, "/v1/traces");
    State& st = *state_;
    // After Stop, a few more batches at most, so that a collector that is down cannot hold up
    // the shutdown for long (each export waits up to options_.timeout).
    int batches_after_stop = 0;
    while (true) {
      std::vector<Span> batch;
      bool stopping = false;
      {
        absl::MutexLock lock(&st.mu);
        auto ready = [&st, this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(st.mu) {
          return st.stop || st.queue.size() >= options_.max_batch;
        };
        st.mu.AwaitWithTimeout(absl::Condition(&ready),
                               absl::Milliseconds(options_.flush_interval.count()));
        stopping = st.stop;
        if (stopping && ++batches_after_stop > 2) {
          st.dropped += static_cast<int64_t>(st.queue.size());
          st.queue.clear();
        }
        while (!st.queue.empty() && batch.size() < options_.max_batch) {
          batch.push_back(std::move(st.queue.front()));
          st.queue.pop_front();
        }
        if (stopping && batch.empty()) return;
      }
      if (batch.empty()) continue;
      auto response = http::Post(url, OtlpTraces(batch, options_.service_name).dump(),
                                 {{"Content-Type", "application/json"}}, options_.timeout);
      const bool ok = response.ok() && response->status >= 200 && response->status < 300;
      absl::MutexLock lock(&st.mu);
      if (!ok) {
        st.dropped += static_cast<int64_t>(batch.size());
        if (!st.warned) {
          st.warned = true;  // once: a collector that is down should not flood the log
          log::Warn("cannot export traces",
                    {{"url", url},
                     {"error", response.ok() ? StrCat("HTTP ", response->status)
                                             : std::string(response.status().message())}});
        }
      }
    }
  });
}

Tracer::~Tracer() {
  if (!state_->exporter.joinable()) return;
  {
    absl::MutexLock lock(&state_->mu);
    state_->stop = true;
  }
  state_->exporter.join();
}

void Tracer::Record(Span span) {
  if (!enabled() || !span.context.sampled) return;
  absl::MutexLock lock(&state_->mu);
  if (state_->queue.size() >= options_.max_queue) {
    ++state_->dropped;
    return;
  }
  state_->queue.push_back(std::move(span));
}

void Tracer::RecordChild(const TraceContext& parent, std::string name, int64_t start_ns,
                         int64_t end_ns,
                         std::vector<std::pair<std::string, nlohmann::json>> attributes,
                         std::string error) {
  if (!enabled() || !parent.valid() || !parent.sampled) return;
  Span s;
  s.name = std::move(name);
  s.context = parent.Child();
  s.parent_span_id = parent.span_id;
  s.start_ns = start_ns;
  s.end_ns = end_ns;
  s.attributes = std::move(attributes);
  s.error = std::move(error);
  Record(std::move(s));
}

int64_t Tracer::dropped() const {
  absl::MutexLock lock(&state_->mu);
  return state_->dropped;
}

TracerOptions TracerOptionsFromEnv(const std::string& endpoint_flag) {
  TracerOptions o;
  if (!endpoint_flag.empty()) {
    o.endpoint = endpoint_flag;
  } else if (const char* t = std::getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"); t && *t) {
    o.endpoint = t;
  } else if (const char* b = std::getenv("OTEL_EXPORTER_OTLP_ENDPOINT"); b && *b) {
    o.endpoint = b;
  }
  while (o.endpoint.ends_with("/")) o.endpoint.pop_back();
  if (const char* n = std::getenv("OTEL_SERVICE_NAME"); n && *n) o.service_name = n;
  return o;
}

}  // namespace kiln::obs
