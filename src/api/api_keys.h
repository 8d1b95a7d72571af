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
#include "quota/quotas.h"

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
  quota::KeyLimits limits;
};

// What the process can enforce, which decides which limits a keys file may set.
struct KeyRules {
  // The queue counts a tenant's jobs (the embedded queue; not the distributed one), as
  // concurrent_jobs and queued_seconds need.
  bool job_limits = true;
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
//       limits: {requests_per_minute: 600, concurrent_jobs: 4, queued_seconds: 300,
//                images_per_day: 5000}
// Errors name `source` and the entry; a limit `rules` say cannot be enforced is refused.
absl::StatusOr<std::vector<ApiKey>> ParseApiKeys(std::string_view yaml, std::string_view source,
                                                 KeyRules rules = {});

class ApiKeys {
 public:
  ApiKeys() = default;  // no keys: authentication is off
  // Reads `path` when set, else $KILN_API_KEYS when set; neither: off.
  static absl::StatusOr<std::unique_ptr<ApiKeys>> Load(const std::string& path,
                                                       KeyRules rules = {});
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
  // The limits of `caller`'s key (none without keys, or for a key no longer listed).
  quota::KeyLimits LimitsOf(const Caller& caller) const;

 private:
  struct Bucket {
    double tokens = 0;
    int64_t last_ms = 0;
  };
  void Set(std::vector<ApiKey> keys);

  bool enabled_ = false;
  std::string path_;
  KeyRules rules_;
  mutable absl::Mutex mu_;
  std::unordered_map<std::string, ApiKey> by_hash_ ABSL_GUARDED_BY(mu_);
  // By key hash. Use, not configuration: it changes under a const ApiKeys.
  mutable std::unordered_map<std::string, Bucket> buckets_ ABSL_GUARDED_BY(mu_);
};

// The tenant of requests without keys: a hash of the bearer token, or "anonymous".
std::string TenantOfToken(std::string_view token);

}  // namespace kiln::api
