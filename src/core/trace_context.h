// TraceContext: a W3C Trace Context (traceparent) position in a distributed trace: the trace id,
// the id of the current span, and the sampled flag. Plain value; thread-compatible.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace kiln {

struct TraceContext {
  std::string trace_id;  // 32 lower-case hex digits, not all zero
  std::string span_id;   // 16 lower-case hex digits, not all zero
  bool sampled = true;

  bool valid() const { return trace_id.size() == 32 && span_id.size() == 16; }
  // "00-<trace_id>-<span_id>-01"
  std::string Traceparent() const;
  // The same trace, a new span id (a child of this span).
  TraceContext Child() const;
  // A new trace.
  static TraceContext NewRoot();
};

// Parses a traceparent header value. Returns nullopt for anything malformed (wrong lengths,
// upper-case or non-hex digits, all-zero ids, version ff); such a header is ignored, never an
// error. Versions above 00 are read by their first four fields, as the spec asks.
std::optional<TraceContext> ParseTraceparent(std::string_view value);

// 16 or 8 random bytes as hex (trace and span ids).
std::string NewTraceId();
std::string NewSpanId();

}  // namespace kiln
