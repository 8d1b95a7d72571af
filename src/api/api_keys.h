// API keys: who is calling. Keys come from a YAML file (--api-keys FILE, read again on SIGHUP)
// or the environment ($KILN_API_KEYS, the same YAML), and are kept and compared as SHA-256
// hashes. Each names a tenant and a role (user, or admin: sees every tenant's work and the
// operator routes). Without keys, every caller is an admin whose tenant is a hash of its bearer
// token (fair sharing only), and the server listens on loopback unless told otherwise.
// Thread-safe: Reload swaps the whole set.
#pragma once

#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "http/message.h"

namespace kiln::api {

struct Caller {
  std::string tenant;
  bool admin = false;
  std::string key;  // the key's SHA-256 (hex); empty without keys
};

struct ApiKey {
  std::string sha256;  // hex, of the key
  std::string tenant;
  bool admin = false;
  int requests_per_minute = 0;  // 0: no limit
};

// Whether a request may go on under its key's rate limit.
struct RateDecision {
  bool allowed = true;
  int limit = 0;                // requests per minute; 0: none
  int retry_after_seconds = 0;  // when refused: until one request is allowed again
};

// The entries of a keys document:
//   keys:
//     - key: "sk-..."            # or key_sha256: "<64 hex digits>"
//       tenant: team-a           # letters, digits, '.', '_', '-'; at most 64
//       role: user               # user (default) | admin
//       limits: {requests_per_minute: 600}
// Errors name `source` and the entry. Limits other than requests_per_minute are refused: they
// are not enforced yet.
absl::StatusOr<std::vector<ApiKey>> ParseApiKeys(std::string_view yaml, std::string_view source);

class ApiKeys {
 public:
  ApiKeys() = default;  // no keys: authentication is off
  // Reads `path` when set, else $KILN_API_KEYS when set; neither: off.
  static absl::StatusOr<std::unique_ptr<ApiKeys>> Load(const std::string& path);
  // Reads the file again (SIGHUP); on an error the keys in use stay.
  absl::Status Reload();

  bool enabled() const { return enabled_; }
  size_t size() const;
  // The caller of `request`: with keys, the tenant and role of its `Authorization: Bearer` key,
  // or Unauthenticated; without, an admin named by a hash of its token ("anonymous" without).
  absl::StatusOr<Caller> Authenticate(const http::Request& request) const;
  // Counts one request of `caller` against its key's requests_per_minute (a token bucket that
  // holds a minute's worth and refills continuously). `now_ms`: any monotonic milliseconds.
  RateDecision Admit(const Caller& caller, int64_t now_ms) const;

 private:
  struct Bucket {
    double tokens = 0;
    int64_t last_ms = 0;
  };
  void Set(std::vector<ApiKey> keys);

  bool enabled_ = false;
  std::string path_;
  mutable absl::Mutex mu_;
  std::unordered_map<std::string, ApiKey> by_hash_ ABSL_GUARDED_BY(mu_);
  // By key hash. Use, not configuration: it changes under a const ApiKeys.
  mutable std::unordered_map<std::string, Bucket> buckets_ ABSL_GUARDED_BY(mu_);
};

// The tenant of requests without keys: a hash of the bearer token, or "anonymous".
std::string TenantOfToken(std::string_view token);

}  // namespace kiln::api
