// multipart/form-data bodies: the input's first line is the Content-Type (its boundary), the
// rest the body; what parses goes on to the /v1/images/edits and /v1/jobs form readers.
#include <memory>

#include "api/openai_params.h"
#include "fuzz/fuzz_target.h"
#include "http/multipart.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text = kiln::fuzz::AsText(data, size);
  const size_t newline = text.find('\n');
  if (newline == std::string_view::npos) return 0;
  auto boundary = kiln::http::MultipartBoundary(text.substr(0, newline));
  if (!boundary.ok()) return 0;
  auto parts = kiln::http::ParseMultipart(text.substr(newline + 1), *boundary);
  if (!parts.ok()) return 0;
  (void)kiln::api::ParseEditsRequest(*parts, kiln::fuzz::TestModels());
  (void)kiln::api::ParseJobForm(*parts, kiln::fuzz::TestModels(), kiln::http::AddressPolicy());
  return 0;
}
