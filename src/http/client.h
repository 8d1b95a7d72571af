// A small blocking HTTP client (libcurl) for outgoing calls: webhooks, and later OTLP and the
// object store. Thread-safe: each call uses its own handle.
#pragma once

#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "http/address_policy.h"

namespace kiln::http {

struct ClientResponse {
  long status = 0;
  std::string body;  // at most 64 KiB kept
  // The response's header fields, names lower-cased (the last response when there were several,
  // as after a 100 Continue).
  std::vector<std::pair<std::string, std::string>> headers;
  // The value of header `name` (lower case), or "".
  std::string Header(std::string_view name) const;
};

struct ClientRequest {
  std::string method = "GET";  // GET, PUT, POST, HEAD, DELETE
  std::string url;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  std::chrono::milliseconds timeout{30000};
  size_t max_body_bytes = 64 << 10;  // longer answers are cut there
  // When set, the call goes only where the policy allows: the host is resolved once, every
  // address it has is judged, the connection goes to an allowed one directly (no second lookup,
  // no proxy from the environment), and every socket opened is judged again.
  // Refused: PermissionDenied, before anything is sent.
  const AddressPolicy* policy = nullptr;
};

// Sends one request. Transport failures are Unavailable; any HTTP answer is a ClientResponse.
// Redirects are not followed.
absl::StatusOr<ClientResponse> Fetch(const ClientRequest& request);

// POSTs `body` to an http(s) URL. Transport failures (refused, timeout, DNS) are Unavailable;
// any HTTP answer, 5xx included, is a ClientResponse. Redirects are not followed.
absl::StatusOr<ClientResponse> Post(const std::string& url, const std::string& body,
                                    const std::vector<std::pair<std::string, std::string>>& headers,
                                    std::chrono::milliseconds timeout,
                                    const AddressPolicy* policy = nullptr);

// InvalidArgument (naming `field`) unless `url` is an absolute http:// or https:// URL with a
// host, at most 2048 bytes, without spaces or control characters.
absl::Status CheckHttpUrl(std::string_view url, std::string_view field);

}  // namespace kiln::http
