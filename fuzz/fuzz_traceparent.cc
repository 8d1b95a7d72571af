// traceparent headers (W3C trace context): whatever parses must print back as a header that
// parses to the same ids.
#include "core/trace_context.h"
#include "fuzz/fuzz_target.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto parsed = kiln::ParseTraceparent(kiln::fuzz::AsText(data, size));
  if (!parsed) return 0;
  if (!parsed->valid()) std::abort();
  auto again = kiln::ParseTraceparent(parsed->Traceparent());
  if (!again || again->trace_id != parsed->trace_id || again->span_id != parsed->span_id) {
    std::abort();
  }
  if (!kiln::ParseTraceparent(parsed->Child().Traceparent())) std::abort();
  return 0;
}
