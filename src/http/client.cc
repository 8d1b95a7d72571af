#include "http/client.h"

#include <curl/curl.h>
#include <netdb.h>
#include <sys/socket.h>

#include <memory>
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

// Judges every socket libcurl is about to open (CURLOPT_OPENSOCKETFUNCTION).
struct SocketGate {
  const AddressPolicy* policy;
  std::string refused;  // the first refusal, for the error
};

curl_socket_t OpenSocket(void* user, curlsocktype, curl_sockaddr* address) {
  auto* gate = static_cast<SocketGate*>(user);
  auto ip = FromSockaddr(&address->addr);
  const std::string why = ip ? gate->policy->Refusal(*ip) : "not an IP address";
  if (!why.empty()) {
    if (gate->refused.empty()) {
      gate->refused = StrCat(ip ? ip->ToString() : "?", " is a ", why, " address");
    }
    return CURL_SOCKET_BAD;
  }
  return socket(address->family, address->socktype, address->protocol);
}

// The address to connect `url` to under `policy`: a literal host as it is, a name resolved
// once, taking its first allowed address. PermissionDenied when there is none.
absl::StatusOr<std::pair<HostPort, IpAddress>> ResolveAllowed(const std::string& url,
                                                              const AddressPolicy& policy) {
  KILN_ASSIGN_OR_RETURN(HostPort hp, UrlHostPort(url));
  if (auto literal = ParseIpLiteral(hp.host)) {
    if (std::string why = policy.Refusal(*literal); !why.empty()) {
      return absl::PermissionDeniedError(StrCat(url, ": ", literal->ToString(), " is a ", why,
                                                " address, which Kiln does not call"));
    }
    return std::make_pair(hp, *literal);
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (int rc = getaddrinfo(hp.host.c_str(), nullptr, &hints, &found); rc != 0) {
    return absl::UnavailableError(
        StrCat(url, ": cannot resolve ", hp.host, ": ", gai_strerror(rc)));
  }
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> owned(found, freeaddrinfo);
  std::vector<std::string> refused;
  for (const addrinfo* ai = found; ai; ai = ai->ai_next) {
    auto ip = FromSockaddr(ai->ai_addr);
    if (!ip) continue;
    std::string why = policy.Refusal(*ip);
    if (why.empty()) return std::make_pair(hp, *ip);
    refused.push_back(StrCat(ip->ToString(), " (", why, ")"));
  }
  return absl::PermissionDeniedError(StrCat(
      url, ": ", hp.host, " resolves only to addresses Kiln does not call: ", Join(refused, ", ")));
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
                                    std::chrono::milliseconds timeout,
                                    const AddressPolicy* policy) {
  ClientRequest request{"POST", url, body, headers, timeout};
  request.policy = policy;
  return Fetch(request);
}

std::string ClientResponse::Header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (k == name) return v;
  }
  return "";
}

absl::StatusOr<ClientResponse> Fetch(const ClientRequest& r) {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  CURL* curl = curl_easy_init();
  if (!curl) return absl::InternalError("curl_easy_init failed");
  ClientResponse out;
  SocketGate gate{r.policy, ""};
  curl_slist* pinned = nullptr;
  if (r.policy) {
    auto target = ResolveAllowed(r.url, *r.policy);
    if (!target.ok()) {
      curl_easy_cleanup(curl);
      return target.status();
    }
    const auto& [hp, ip] = *target;
    const std::string address = ip.ToString();
    const bool v6 = address.find(':') != std::string::npos;
    // libcurl connects to this address for this host and port, without a lookup of its own.
    pinned = curl_slist_append(
        nullptr, StrCat(hp.host, ":", hp.port, ":", v6 ? "[" : "", address, v6 ? "]" : "").c_str());
    curl_easy_setopt(curl, CURLOPT_RESOLVE, pinned);
    // Directly, never through a proxy from the environment: a proxy would resolve the host
    // again itself, past the policy and the pin.
    curl_easy_setopt(curl, CURLOPT_PROXY, "");
    curl_easy_setopt(curl, CURLOPT_OPENSOCKETFUNCTION, OpenSocket);
    curl_easy_setopt(curl, CURLOPT_OPENSOCKETDATA, &gate);
  }
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
  if (rc == CURLE_OK) {
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &out.status);
    curl_header* h = nullptr;
    while ((h = curl_easy_nextheader(curl, CURLH_HEADER, -1, h)) != nullptr) {
      out.headers.emplace_back(ToLowerAscii(h->name), h->value);
    }
  }
  curl_slist_free_all(list);
  curl_slist_free_all(pinned);
  curl_easy_cleanup(curl);
  if (rc != CURLE_OK && !gate.refused.empty()) {
    return absl::PermissionDeniedError(
        StrCat(r.method, " ", r.url, ": ", gate.refused, ", which Kiln does not call"));
  }
  if (rc != CURLE_OK) {
    return absl::UnavailableError(StrCat(r.method, " ", r.url, ": ", curl_easy_strerror(rc)));
  }
  return out;
}

}  // namespace kiln::http
