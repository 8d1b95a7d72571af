#include "core/status_util.h"

#include <charconv>

#include "absl/strings/cord.h"
#include "core/strings.h"

namespace kiln {
namespace {
constexpr absl::string_view kFieldPayload = "kiln.dev/field";
constexpr absl::string_view kHttpPayload = "kiln.dev/http-status";
constexpr absl::string_view kRetryPayload = "kiln.dev/retry-after";
constexpr absl::string_view kRateLimitPayload = "kiln.dev/rate-limit";

bool ParseInt64(std::string_view text, int64_t* out) {
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), *out);
  return ec == std::errc() && ptr == text.data() + text.size() && !text.empty();
}

std::optional<int> IntPayload(const absl::Status& status, absl::string_view url) {
  auto payload = status.GetPayload(url);
  if (!payload) return std::nullopt;
  std::string text(*payload);
  int value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || ptr != text.data() + text.size()) return std::nullopt;
  return value;
}
}  // namespace

absl::Status InvalidField(std::string_view field, std::string_view message) {
  return WithField(absl::InvalidArgumentError(std::string(message)), field);
}

absl::Status WithField(absl::Status status, std::string_view field) {
  status.SetPayload(kFieldPayload, absl::Cord(std::string(field)));
  return status;
}

std::optional<std::string> FieldOf(const absl::Status& status) {
  auto payload = status.GetPayload(kFieldPayload);
  if (!payload) return std::nullopt;
  return std::string(*payload);
}

absl::Status WithHttpStatus(absl::Status status, int http_status) {
  status.SetPayload(kHttpPayload, absl::Cord(StrCat(http_status)));
  return status;
}

std::optional<int> HttpStatusOf(const absl::Status& status) {
  return IntPayload(status, kHttpPayload);
}

absl::Status WithRetryAfter(absl::Status status, int seconds) {
  status.SetPayload(kRetryPayload, absl::Cord(StrCat(seconds)));
  return status;
}

std::optional<int> RetryAfterOf(const absl::Status& status) {
  return IntPayload(status, kRetryPayload);
}

absl::Status WithRateLimit(absl::Status status, RateLimitInfo info) {
  status.SetPayload(kRateLimitPayload, absl::Cord(StrCat(info.limit, ",", info.remaining)));
  return status;
}

std::optional<RateLimitInfo> RateLimitOf(const absl::Status& status) {
  auto payload = status.GetPayload(kRateLimitPayload);
  if (!payload) return std::nullopt;
  const std::string text(*payload);
  const size_t comma = text.find(',');
  if (comma == std::string::npos) return std::nullopt;
  RateLimitInfo info;
  const std::string_view view(text);
  if (!ParseInt64(view.substr(0, comma), &info.limit) ||
      !ParseInt64(view.substr(comma + 1), &info.remaining)) {
    return std::nullopt;
  }
  return info;
}

absl::Status Annotate(const absl::Status& status, std::string_view context) {
  if (status.ok()) return status;
  absl::Status out(status.code(), StrCat(context, ": ", status.message()));
  status.ForEachPayload(
      [&out](absl::string_view url, const absl::Cord& payload) { out.SetPayload(url, payload); });
  return out;
}

}  // namespace kiln
