// Helpers shared by the handlers: body checks, tenant, base URL, query checks.
#include "api/handlers.h"
#include "core/crypto.h"
#include "core/status_util.h"
#include "core/strings.h"

namespace kiln::api {

absl::StatusOr<std::vector<http::FormPart>> FormParts(const http::Request& req) {
  auto boundary = http::MultipartBoundary(req.Header("content-type").value_or(""));
  if (!boundary.ok()) return WithField(boundary.status(), "content-type");
  return http::ParseMultipart(req.body, *boundary);
}

absl::Status CheckBody(const http::Request& req,
                       std::initializer_list<std::string_view> media_types, size_t limit) {
  const std::string media = req.MediaType();
  bool known = false;
  for (std::string_view m : media_types) known |= media == m;
  if (!known) {
    std::vector<std::string> names(media_types.begin(), media_types.end());
    return WithHttpStatus(WithField(absl::InvalidArgumentError(StrCat(
                                        "Content-Type must be ", Join(names, " or "), ", not '",
                                        req.Header("content-type").value_or(""), "'")),
                                    "content-type"),
                          415);
  }
  if (req.body.size() > limit) {
    return WithHttpStatus(absl::InvalidArgumentError(StrCat("request body is ", req.body.size(),
                                                            " bytes; the limit is ", limit)),
                          413);
  }
  return absl::OkStatus();
}

std::string TenantOf(const http::Request& req) {
  auto auth = req.Header("authorization");
  if (!auth) return "anonymous";
  std::string_view v = Trim(*auth);
  if (!StartsWithIgnoreCase(v, "bearer ")) return "anonymous";
  return TenantOfToken(Trim(v.substr(7)));
}

std::string TenantOfToken(std::string_view token) {
  if (token.empty() || token == "anonymous") return "anonymous";
  // Never the key itself: it would end up in the database and in logs.
  return "key-" + Sha256Hex(token).substr(0, 16);
}

std::string BaseUrl(const http::Request& req) {
  std::string host(req.Header("host").value_or(""));
  for (char c : host) {
    const bool ok = std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == ':' ||
                    c == '-' || c == '[' || c == ']' || c == '_';
    if (!ok) return "";
  }
  if (host.empty() || host.size() > 255) return "";
  return "http://" + host;
}

absl::Status CheckQuery(const http::Request& req, std::initializer_list<std::string_view> allowed) {
  for (const auto& [name, value] : req.query) {
    bool ok = false;
    for (std::string_view a : allowed) ok |= name == a;
    if (!ok) return InvalidField(name, StrCat("unknown query parameter '", name, "'"));
  }
  return absl::OkStatus();
}

}  // namespace kiln::api
