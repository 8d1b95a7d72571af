#include "core/trace_context.h"

#include <cstdint>
#include <random>

namespace kiln {
namespace {

bool IsLowerHex(std::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

bool AllZero(std::string_view s) { return s.find_first_not_of('0') == std::string_view::npos; }

}  // namespace

std::string TraceContext::Traceparent() const {
  return "00-" + trace_id + "-" + span_id + (sampled ? "-01" : "-00");
}

TraceContext TraceContext::Child() const { return {trace_id, NewSpanId(), sampled}; }

TraceContext TraceContext::NewRoot() { return {NewTraceId(), NewSpanId(), true}; }

namespace {

// Ids need to be unique, not secret: a per-thread generator seeded from the OS is fast enough to
// run on every request.
std::string RandomIdHex(int bytes) {
  thread_local std::mt19937_64 rng(std::random_device{}());
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  while (true) {
    out.clear();
    for (int i = 0; i < bytes; i += 8) {
      uint64_t v = rng();
      for (int j = 0; j < 16 && static_cast<int>(out.size()) < 2 * bytes; ++j, v >>= 4) {
        out += kHex[v & 15];
      }
    }
    if (!AllZero(out)) return out;
  }
}

}  // namespace

std::string NewTraceId() { return RandomIdHex(16); }

std::string NewSpanId() { return RandomIdHex(8); }

std::optional<TraceContext> ParseTraceparent(std::string_view v) {
  // version "-" trace-id "-" parent-id "-" flags: 2 + 1 + 32 + 1 + 16 + 1 + 2 = 55.
  if (v.size() < 55) return std::nullopt;
  const std::string_view version = v.substr(0, 2);
  if (!IsLowerHex(version) || version == "ff") return std::nullopt;
  if (version == "00" && v.size() != 55) return std::nullopt;
  if (v.size() > 55 && v[55] != '-') return std::nullopt;
  if (v[2] != '-' || v[35] != '-' || v[52] != '-') return std::nullopt;
  const std::string_view trace = v.substr(3, 32), span = v.substr(36, 16), flags = v.substr(53, 2);
  if (!IsLowerHex(trace) || !IsLowerHex(span) || !IsLowerHex(flags)) return std::nullopt;
  if (AllZero(trace) || AllZero(span)) return std::nullopt;
  const int f = std::stoi(std::string(flags), nullptr, 16);
  return TraceContext{std::string(trace), std::string(span), (f & 1) != 0};
}

}  // namespace kiln
