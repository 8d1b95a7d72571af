// UrlSigner: expiring, HMAC-signed grants to read one result-store key without an API key, so
// that a browser can load an image URL Kiln handed out (`<img src>` sends no Authorization).
// Immutable; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace kiln {

class UrlSigner {
 public:
  UrlSigner() = default;  // off: Query() is "" and Verify() refuses
  // `key`: the HMAC key (never sent); `ttl_seconds`: how long a grant lasts.
  UrlSigner(std::string key, int64_t ttl_seconds);

  bool enabled() const { return !key_.empty(); }
  // "?expires=<unix seconds>&signature=<hex>" granting `store_key` from `now_unix` for the TTL,
  // or "" when off.
  std::string Query(std::string_view store_key, int64_t now_unix) const;
  // OK when (`expires`, `signature`) grant `store_key` at `now_unix`; PermissionDenied otherwise
  // (bad, tampered, for another key, or expired).
  absl::Status Verify(std::string_view store_key, std::string_view expires,
                      std::string_view signature, int64_t now_unix) const;

 private:
  std::string Sign(std::string_view store_key, int64_t expires) const;

  std::string key_;
  int64_t ttl_seconds_ = 0;
};

}  // namespace kiln
