// AddressPolicy: which network addresses Kiln may connect to on a caller's behalf (webhooks).
// Loopback, private, link-local, multicast, unique-local, unspecified, shared (CGNAT) and
// reserved ranges are refused, IPv4 and IPv6 alike, IPv4 inside IPv6 (mapped, compatible,
// NAT64, 6to4) judged as the IPv4 it carries, unless an allowlist of CIDR blocks names them.
// Immutable after construction; thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

struct sockaddr;

namespace kiln::http {

// An IPv4 or IPv6 address; IPv4 is kept as its IPv4-mapped IPv6 form (::ffff:a.b.c.d).
struct IpAddress {
  std::array<uint8_t, 16> bytes{};
  std::string ToString() const;
};

// The address a URL host names when it is an address literal: dotted quads and the other forms
// the C resolver also reads as IPv4 ("127.1", "2130706433", "0x7f000001", "0177.0.0.1"), or
// IPv6 (brackets optional). nullopt for a host name.
std::optional<IpAddress> ParseIpLiteral(std::string_view host);
// Whether `address` is this machine's loopback, strictly: 127.0.0.0/8 (also as ::ffff:127.x)
// or ::1. Unlike AddressPolicy::Refusal, IPv4 carried by 6to4, NAT64 or compatible forms does
// not count: a peer can choose such a source address.
bool IsLoopback(const IpAddress& address);
// Whether `host` (a --host to listen on, or a peer's address) is "localhost" or a loopback
// address literal, judged as IsLoopback does.
bool IsLoopbackHost(std::string_view host);
// The address a connected or resolved socket address holds (AF_INET or AF_INET6).
std::optional<IpAddress> FromSockaddr(const sockaddr* address);

class AddressPolicy {
 public:
  // `allow`: CIDR blocks ("127.0.0.1/32", "10.0.0.0/8", "::1/128", "fd00::/8") that are
  // reachable even though they fall in a refused range. An error names `field`.
  static absl::StatusOr<AddressPolicy> Make(const std::vector<std::string>& allow,
                                            std::string_view field = "webhook_allow");
  AddressPolicy() = default;  // refuses every non-public range

  // Why `address` may not be reached ("loopback", "private", "link-local", ...), or "" when it
  // may.
  std::string Refusal(const IpAddress& address) const;

  // For a URL a caller gave (already checked by CheckHttpUrl): InvalidArgument naming `field`
  // when its host is an address literal in a refused range, or "localhost". Host names are
  // judged when they are resolved, at delivery.
  absl::Status CheckUrl(std::string_view url, std::string_view field) const;

 private:
  struct Block {
    IpAddress base;
    int prefix = 0;  // bits, over the 16-byte form (IPv4 blocks are 96 + n)
  };
  std::vector<Block> allow_;
};

// The host and port of an http(s) URL (the port defaulted from the scheme), as libcurl reads
// them: the host lower-cased, IPv6 without brackets. REQUIRES: CheckHttpUrl(url) is OK.
struct HostPort {
  std::string host;
  int port = 0;
};
absl::StatusOr<HostPort> UrlHostPort(std::string_view url);

}  // namespace kiln::http
