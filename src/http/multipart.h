// multipart/form-data parsing (RFC 7578) for uploads such as /v1/images/edits. Stateless;
// thread-safe. Parts are views into the body, which must outlive them.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace kiln::http {

struct FormPart {
  std::string name;
  std::string filename;      // empty for plain fields
  std::string content_type;  // empty when not given
  std::string_view data;
};

struct MultipartLimits {
  size_t max_parts = 64;
  size_t max_header_bytes = 8 << 10;  // per part
};

// Extracts the boundary parameter of a multipart/form-data Content-Type.
absl::StatusOr<std::string> MultipartBoundary(std::string_view content_type);

// Parses `body`. Errors (InvalidArgument) say what is wrong: a missing boundary, a truncated
// body, a part without a name, too many parts.
absl::StatusOr<std::vector<FormPart>> ParseMultipart(std::string_view body,
                                                     std::string_view boundary,
                                                     const MultipartLimits& limits = {});

}  // namespace kiln::http
