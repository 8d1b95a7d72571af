#include "api/errors.h"

#include "core/status_util.h"
#include "core/strings.h"
#include "nlohmann/json.hpp"

namespace kiln::api {
namespace {

const char* ErrorType(int http_status) {
  if (http_status == 401) return "authentication_error";
  if (http_status == 403) return "permission_error";
  if (http_status == 404) return "not_found_error";
  if (http_status == 429) return "rate_limit_error";
  if (http_status >= 500) return "server_error";
  return "invalid_request_error";
}

const char* ErrorCode(int http_status) {
  switch (http_status) {
    case 400:
      return "invalid_value";
    case 404:
      return "not_found";
    case 405:
      return "method_not_allowed";
    case 409:
      return "conflict";
    case 413:
      return "payload_too_large";
    case 415:
      return "unsupported_media_type";
    case 429:
      return "rate_limited";
    case 503:
      return "unavailable";
    default:
      return http_status >= 500 ? "internal_error" : "invalid_request";
  }
}

http::Response Render(int http_status, const std::string& message, const nlohmann::json& param,
                      const char* code) {
  nlohmann::json body = {
      {"error",
       {{"message", message}, {"type", ErrorType(http_status)}, {"param", param}, {"code", code}}}};
  return http::Response::Json(http_status,
                              body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

}  // namespace

int HttpStatusFor(const absl::Status& status) {
  if (auto forced = HttpStatusOf(status)) return *forced;
  switch (status.code()) {
    case absl::StatusCode::kOk:
      return 200;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
      return 400;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kAborted:
    case absl::StatusCode::kFailedPrecondition:
      return 409;
    case absl::StatusCode::kResourceExhausted:
      return 429;
    case absl::StatusCode::kCancelled:
      return 499;
    case absl::StatusCode::kUnimplemented:
      return 501;
    case absl::StatusCode::kUnavailable:
      return 503;
    case absl::StatusCode::kDeadlineExceeded:
      return 504;
    default:
      return 500;
  }
}

http::Response ErrorResponse(const absl::Status& status) {
  const int code = HttpStatusFor(status);
  auto field = FieldOf(status);
  const char* error_code = ErrorCode(code);
  if (code == 404 && field && (*field == "model" || field->ends_with("sd_model_checkpoint"))) {
    error_code = "model_not_found";
  }
  // Internal errors are logged by the caller; the client gets the message, which never holds
  // secrets (paths of model files at most).
  http::Response r = Render(code, std::string(status.message()),
                            field ? nlohmann::json(*field) : nlohmann::json(nullptr), error_code);
  if (auto retry = RetryAfterOf(status)) r.headers.emplace_back("Retry-After", StrCat(*retry));
  if (auto limit = RateLimitOf(status)) {
    r.headers.emplace_back("RateLimit-Limit", StrCat(limit->limit));
    r.headers.emplace_back("RateLimit-Remaining", StrCat(limit->remaining));
    if (auto retry = RetryAfterOf(status))
      r.headers.emplace_back("RateLimit-Reset", StrCat(*retry));
  }
  return r;
}

http::Response RenderHttpError(int http_status, const std::string& message) {
  return Render(http_status, message, nullptr, ErrorCode(http_status));
}

}  // namespace kiln::api
