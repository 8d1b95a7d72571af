#include "http/address_policy.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <memory>

#include "core/status_util.h"
#include "core/strings.h"

namespace kiln::http {
namespace {

IpAddress FromV4(const uint8_t v4[4]) {
  IpAddress a;
  a.bytes[10] = a.bytes[11] = 0xff;
  std::memcpy(&a.bytes[12], v4, 4);
  return a;
}

bool HasPrefix(const IpAddress& a, const IpAddress& base, int bits) {
  for (int i = 0; i < 16 && bits > 0; ++i, bits -= 8) {
    const uint8_t mask = bits >= 8 ? 0xff : static_cast<uint8_t>(0xff << (8 - bits));
    if ((a.bytes[i] & mask) != (base.bytes[i] & mask)) return false;
  }
  return true;
}

bool AllZero(const uint8_t* p, int n) {
  for (int i = 0; i < n; ++i) {
    if (p[i] != 0) return false;
  }
  return true;
}

// The IPv4 address an IPv6 one carries: mapped (::ffff:0:0/96), compatible (::/96), NAT64
// (64:ff9b::/96) and 6to4 (2002::/16). Null when it carries none.
const uint8_t* EmbeddedV4(const IpAddress& a) {
  const uint8_t* b = a.bytes.data();
  if (AllZero(b, 10) && b[10] == 0xff && b[11] == 0xff) return b + 12;
  if (AllZero(b, 12) && !(AllZero(b + 12, 3) && b[15] <= 1)) return b + 12;  // not :: or ::1
  static constexpr uint8_t kNat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
  if (std::memcmp(b, kNat64, 12) == 0) return b + 12;
  if (b[0] == 0x20 && b[1] == 0x02) return b + 2;
  return nullptr;
}

std::string V4Refusal(const uint8_t* v) {
  const uint8_t a = v[0], b = v[1], c = v[2];
  if (a == 0) return "unspecified";
  if (a == 127) return "loopback";
  if (a == 10 || (a == 172 && (b & 0xf0) == 16) || (a == 192 && b == 168)) return "private";
  if (a == 169 && b == 254) return "link-local";
  if (a == 100 && (b & 0xc0) == 64) return "shared (carrier-grade NAT)";
  if (a >= 224 && a <= 239) return "multicast";
  if (a >= 240) return "reserved";  // and 255.255.255.255, broadcast
  if (a == 192 && b == 0 && (c == 0 || c == 2)) return "reserved";
  if ((a == 198 && b == 51 && c == 100) || (a == 203 && b == 0 && c == 113)) return "reserved";
  if (a == 192 && b == 88 && c == 99) return "reserved";
  if (a == 198 && (b & 0xfe) == 18) return "reserved";  // benchmarking
  return "";
}

std::string V6Refusal(const IpAddress& a) {
  const uint8_t* b = a.bytes.data();
  if (AllZero(b, 15) && b[15] == 0) return "unspecified";
  if (AllZero(b, 15) && b[15] == 1) return "loopback";
  if (b[0] == 0xff) return "multicast";
  if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) return "link-local";
  if (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0) return "private";  // site-local, deprecated
  if ((b[0] & 0xfe) == 0xfc) return "unique-local";
  if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0d && b[3] == 0xb8) return "reserved";  // docs
  if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0 && b[3] == 0) return "reserved";        // Teredo
  if (b[0] == 0x01 && AllZero(b + 1, 7)) return "reserved";                             // discard
  if (AllZero(b, 2)) return "reserved";  // ::/16 holds nothing routable but what is handled above
  return "";
}

}  // namespace

std::string IpAddress::ToString() const {
  char text[INET6_ADDRSTRLEN] = {};
  static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(bytes.data(), kMapped, 12) == 0) {
    inet_ntop(AF_INET, &bytes[12], text, sizeof text);
  } else {
    inet_ntop(AF_INET6, bytes.data(), text, sizeof text);
  }
  return text;
}

std::optional<IpAddress> ParseIpLiteral(std::string_view host) {
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (host.empty() || host.size() > 255) return std::nullopt;
  std::string h(host);
  if (h.find(':') != std::string::npos) {
    if (size_t zone = h.find('%'); zone != std::string::npos) h.resize(zone);
    IpAddress a;
    if (inet_pton(AF_INET6, h.c_str(), a.bytes.data()) != 1) return std::nullopt;
    return a;
  }
  // inet_aton reads what the resolver reads as an IPv4 address, shorthand forms included.
  in_addr v4{};
  if (inet_aton(h.c_str(), &v4) == 0) return std::nullopt;
  return FromV4(reinterpret_cast<const uint8_t*>(&v4.s_addr));
}

bool IsLoopback(const IpAddress& a) {
  const uint8_t* b = a.bytes.data();
  const bool mapped = AllZero(b, 10) && b[10] == 0xff && b[11] == 0xff;
  if (mapped) return b[12] == 127;
  return AllZero(b, 15) && b[15] == 1;
}

bool IsLoopbackHost(std::string_view host) {
  if (host == "localhost") return true;
  auto ip = ParseIpLiteral(host);
  return ip && IsLoopback(*ip);
}

std::optional<IpAddress> FromSockaddr(const sockaddr* address) {
  if (!address) return std::nullopt;
  if (address->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(address);
    return FromV4(reinterpret_cast<const uint8_t*>(&in->sin_addr.s_addr));
  }
  if (address->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(address);
    IpAddress a;
    std::memcpy(a.bytes.data(), &in6->sin6_addr, 16);
    return a;
  }
  return std::nullopt;
}

absl::StatusOr<AddressPolicy> AddressPolicy::Make(const std::vector<std::string>& allow,
                                                  std::string_view field) {
  AddressPolicy policy;
  for (const std::string& entry : allow) {
    std::string_view text = Trim(entry);
    if (text.empty()) continue;
    const size_t slash = text.find('/');
    auto address = ParseIpLiteral(text.substr(0, slash));
    const bool v4 = text.substr(0, slash).find(':') == std::string_view::npos;
    const int max_bits = v4 ? 32 : 128;
    int bits = max_bits;
    if (slash != std::string_view::npos) {
      auto parsed = ParseInt(text.substr(slash + 1));
      if (!parsed.ok() || *parsed < 0 || *parsed > max_bits) address.reset();
      if (parsed.ok()) bits = static_cast<int>(*parsed);
    }
    // Only dotted quads in CIDR blocks: "10.1/8" is too easy to misread.
    if (v4 && std::count(text.begin(), text.begin() + std::min(slash, text.size()), '.') != 3) {
      address.reset();
    }
    if (!address) {
      return InvalidField(field, StrCat("'", entry,
                                        "' is not an IP address or CIDR block (such as "
                                        "127.0.0.1/32, 10.0.0.0/8 or fd00::/8)"));
    }
    policy.allow_.push_back({*address, v4 ? 96 + bits : bits});
  }
  return policy;
}

std::string AddressPolicy::Refusal(const IpAddress& address) const {
  for (const Block& b : allow_) {
    if (HasPrefix(address, b.base, b.prefix)) return "";
  }
  if (const uint8_t* v4 = EmbeddedV4(address)) return V4Refusal(v4);
  return V6Refusal(address);
}

absl::Status AddressPolicy::CheckUrl(std::string_view url, std::string_view field) const {
  KILN_ASSIGN_OR_RETURN(HostPort hp, UrlHostPort(url));
  std::string why;
  if (hp.host == "localhost" || hp.host.ends_with(".localhost")) {
    auto loopback = ParseIpLiteral("127.0.0.1");
    if (!Refusal(*loopback).empty()) why = "loopback (localhost)";
  } else if (auto literal = ParseIpLiteral(hp.host)) {
    why = Refusal(*literal);
    if (!why.empty()) why = StrCat(why, " (", literal->ToString(), ")");
  }
  if (why.empty()) return absl::OkStatus();
  return InvalidField(field, StrCat("'", field, "' points at a ", why,
                                    " address; Kiln calls only public addresses unless the "
                                    "operator allows a range (--webhook-allow)"));
}

absl::StatusOr<HostPort> UrlHostPort(std::string_view url) {
  std::unique_ptr<CURLU, decltype(&curl_url_cleanup)> u(curl_url(), curl_url_cleanup);
  if (!u) return absl::InternalError("curl_url failed");
  const std::string text(url);
  if (curl_url_set(u.get(), CURLUPART_URL, text.c_str(), 0) != CURLUE_OK) {
    return absl::InvalidArgumentError(StrCat("'", url, "' is not a URL"));
  }
  char* host = nullptr;
  char* port = nullptr;
  HostPort out;
  if (curl_url_get(u.get(), CURLUPART_HOST, &host, 0) == CURLUE_OK && host) {
    out.host = ToLowerAscii(host);
  }
  if (curl_url_get(u.get(), CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK && port) {
    auto p = ParseInt(port);
    if (p.ok()) out.port = static_cast<int>(*p);
  }
  curl_free(host);
  curl_free(port);
  if (out.host.size() >= 2 && out.host.front() == '[' && out.host.back() == ']') {
    out.host = out.host.substr(1, out.host.size() - 2);
  }
  if (out.host.empty() || out.port <= 0) {
    return absl::InvalidArgumentError(StrCat("'", url, "' has no host or port"));
  }
  return out;
}

}  // namespace kiln::http
