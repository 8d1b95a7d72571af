#include "http/client.h"

#include <curl/curl.h>

#include <mutex>

#include "core/status_util.h"
#include "core/strings.h"

namespace kiln::http {
namespace {

struct Sink {
  std::string* out;
  size_t limit;
};

size_t Collect(char* data, size_t size, size_t n, void* user) {
  auto* sink = static_cast<Sink*>(user);
  const size_t bytes = size * n;
  if (sink->out->size() < sink->limit) {
    sink->out->append(data, std::min(bytes, sink->limit - sink->out->size()));
  }
  return bytes;
}

}  // namespace

absl::Status CheckHttpUrl(std::string_view url, std::string_view field) {
  if (url.size() > 2048) return InvalidField(field, StrCat("'", field, "' is longer than 2048"));
  std::string_view rest;
  if (StartsWithIgnoreCase(url, "http://")) {
    rest = url.substr(7);
  } else if (StartsWithIgnoreCase(url, "https://")) {
    rest = url.substr(8);
  } else {
    return InvalidField(field, StrCat("'", field, "' must be an http:// or https:// URL"));
  }
  for (char c : url) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) {
      return InvalidField(field, StrCat("'", field, "' holds a space or control character"));
    }
  }
  const size_t end = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, end);
  if (authority.find('@') != std::string_view::npos) {
    return InvalidField(field, StrCat("'", field, "' must not carry credentials"));
  }
  if (authority.empty() || authority.front() == ':') {
    return InvalidField(field, StrCat("'", field, "' has no host"));
  }
  return absl::OkStatus();
}

absl::StatusOr<ClientResponse> Post(const std::string& url, const std::string& body,
                                    const std::vector<std::pair<std::string, std::string>>& headers,
                                    std::chrono::milliseconds timeout) {
  return Fetch({"POST", url, body, headers, timeout});
}

absl::StatusOr<ClientResponse> Fetch(const ClientRequest& r) {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  CURL* curl = curl_easy_init();
  if (!curl) return absl::InternalError("curl_easy_init failed");
  ClientResponse out;
  curl_slist* list = nullptr;
  for (const auto& [k, v] : r.headers) {
    list = curl_slist_append(list, StrCat(k, ": ", v).c_str());
  }
  list = curl_slist_append(list, "Expect:");
  curl_easy_setopt(curl, CURLOPT_URL, r.url.c_str());
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
  if (r.method == "HEAD") {
    curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
  } else if (r.method != "GET") {
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, r.method.c_str());
  }
  if (r.method == "POST" || r.method == "PUT") {
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, r.body.data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(r.body.size()));
  }
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, list);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(r.timeout.count()));
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
  Sink sink{&out.body, r.max_body_bytes};
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, Collect);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &sink);
  const CURLcode rc = curl_easy_perform(curl);
  if (rc == CURLE_OK) curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &out.status);
  curl_slist_free_all(list);
  curl_easy_cleanup(curl);
  if (rc != CURLE_OK) {
    return absl::UnavailableError(StrCat(r.method, " ", r.url, ": ", curl_easy_strerror(rc)));
  }
  return out;
}

}  // namespace kiln::http
