// Helpers for absl::Status / absl::StatusOr: early-return macros and errors that name the
// request field they are about. Stateless; thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define KILN_CONCAT_INNER(a, b) a##b
#define KILN_CONCAT(a, b) KILN_CONCAT_INNER(a, b)

#define KILN_RETURN_IF_ERROR(expr)               \
  do {                                           \
    ::absl::Status kiln_status_ = (expr);        \
    if (!kiln_status_.ok()) return kiln_status_; \
  } while (0)

#define KILN_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                               \
  if (!tmp.ok()) return std::move(tmp).status();   \
  lhs = std::move(tmp).value()

#define KILN_ASSIGN_OR_RETURN(lhs, expr) \
  KILN_ASSIGN_OR_RETURN_IMPL(KILN_CONCAT(kiln_statusor_, __LINE__), lhs, expr)

namespace kiln {

// An InvalidArgument error about one request field; the API reports `field` as OpenAI's `param`.
absl::Status InvalidField(std::string_view field, std::string_view message);

// Attaches the request field an error is about (kept through copies of the Status).
absl::Status WithField(absl::Status status, std::string_view field);
std::optional<std::string> FieldOf(const absl::Status& status);

// Overrides the HTTP status an error maps to, for the few cases a canonical code cannot say
// (413 body too large, 415 wrong content type).
absl::Status WithHttpStatus(absl::Status status, int http_status);
std::optional<int> HttpStatusOf(const absl::Status& status);

// Attaches a Retry-After (seconds) to an error, for 429 and 503 answers.
absl::Status WithRetryAfter(absl::Status status, int seconds);
std::optional<int> RetryAfterOf(const absl::Status& status);

// Attaches what a rate limit or quota allows and what is left of it (RateLimit-Limit and
// RateLimit-Remaining; RateLimit-Reset is the Retry-After), for 429 answers.
struct RateLimitInfo {
  int64_t limit = 0;
  int64_t remaining = 0;
};
absl::Status WithRateLimit(absl::Status status, RateLimitInfo info);
std::optional<RateLimitInfo> RateLimitOf(const absl::Status& status);

// Adds context in front of an error's message, keeping its code and payloads.
absl::Status Annotate(const absl::Status& status, std::string_view context);

}  // namespace kiln
