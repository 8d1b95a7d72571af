#include "http/multipart.h"

#include "core/strings.h"

namespace kiln::http {
namespace {

// Reads `key="value"` or `key=value` parameters after the first ';' of a header value.
std::string Param(std::string_view header_value, std::string_view key) {
  for (std::string_view part : Split(header_value, ";")) {
    part = Trim(part);
    const size_t eq = part.find('=');
    if (eq == std::string_view::npos) continue;
    if (!EqualsIgnoreCase(Trim(part.substr(0, eq)), key)) continue;
    std::string_view v = Trim(part.substr(eq + 1));
    if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
    return std::string(v);
  }
  return "";
}

}  // namespace

absl::StatusOr<std::string> MultipartBoundary(std::string_view content_type) {
  std::string_view media = Trim(content_type.substr(0, content_type.find(';')));
  if (!EqualsIgnoreCase(media, "multipart/form-data")) {
    return absl::InvalidArgumentError("Content-Type must be multipart/form-data");
  }
  std::string boundary = Param(content_type, "boundary");
  if (boundary.empty() || boundary.size() > 70) {
    return absl::InvalidArgumentError("multipart/form-data without a valid boundary parameter");
  }
  return boundary;
}

absl::StatusOr<std::vector<FormPart>> ParseMultipart(std::string_view body,
                                                     std::string_view boundary,
                                                     const MultipartLimits& limits) {
  const std::string delim = StrCat("--", boundary);
  const std::string next_delim = StrCat("\r\n--", boundary);
  std::vector<FormPart> parts;
  // The body starts with the first delimiter (a preamble before it is allowed and ignored).
  size_t pos = body.find(delim);
  if (pos == std::string_view::npos) {
    return absl::InvalidArgumentError("multipart body does not contain its boundary");
  }
  pos += delim.size();
  while (true) {
    if (body.substr(pos, 2) == "--") return parts;  // closing delimiter
    if (body.substr(pos, 2) != "\r\n") {
      return absl::InvalidArgumentError(
          "multipart body is truncated or malformed after a boundary");
    }
    pos += 2;
    const size_t header_end = body.find("\r\n\r\n", pos);
    if (header_end == std::string_view::npos) {
      return absl::InvalidArgumentError("multipart body is truncated inside a part's headers");
    }
    if (header_end - pos > limits.max_header_bytes) {
      return absl::InvalidArgumentError("a multipart part has headers that are too large");
    }
    FormPart part;
    for (std::string_view line : Split(body.substr(pos, header_end - pos), "\r\n")) {
      const size_t colon = line.find(':');
      if (colon == std::string_view::npos) continue;
      std::string_view name = Trim(line.substr(0, colon));
      std::string_view value = Trim(line.substr(colon + 1));
      if (EqualsIgnoreCase(name, "content-disposition")) {
        if (!StartsWithIgnoreCase(value, "form-data")) {
          return absl::InvalidArgumentError("a multipart part is not form-data");
        }
        part.name = Param(value, "name");
        part.filename = Param(value, "filename");
      } else if (EqualsIgnoreCase(name, "content-type")) {
        part.content_type = ToLowerAscii(value);
      }
    }
    if (part.name.empty()) {
      return absl::InvalidArgumentError("a multipart part has no name in Content-Disposition");
    }
    const size_t data_start = header_end + 4;
    const size_t data_end = body.find(next_delim, data_start);
    if (data_end == std::string_view::npos) {
      return absl::InvalidArgumentError(
          StrCat("multipart body is truncated inside part '", part.name, "'"));
    }
    part.data = body.substr(data_start, data_end - data_start);
    parts.push_back(std::move(part));
    if (parts.size() > limits.max_parts) {
      return absl::InvalidArgumentError(
          StrCat("multipart body has more than ", limits.max_parts, " parts"));
    }
    pos = data_end + next_delim.size();
  }
}

}  // namespace kiln::http
