#include "core/url_signer.h"

#include <openssl/crypto.h>

#include "core/crypto.h"
#include "core/strings.h"

namespace kiln {

UrlSigner::UrlSigner(std::string key, int64_t ttl_seconds)
    : key_(std::move(key)), ttl_seconds_(ttl_seconds) {}

std::string UrlSigner::Sign(std::string_view store_key, int64_t expires) const {
  return HmacSha256Hex(key_, StrCat("GET /v1/files/", store_key, "\n", expires));
}

std::string UrlSigner::Query(std::string_view store_key, int64_t now_unix) const {
  if (!enabled()) return "";
  const int64_t expires = now_unix + ttl_seconds_;
  return StrCat("?expires=", expires, "&signature=", Sign(store_key, expires));
}

absl::Status UrlSigner::Verify(std::string_view store_key, std::string_view expires,
                               std::string_view signature, int64_t now_unix) const {
  const auto refused = [](std::string_view why) {
    return absl::PermissionDeniedError(StrCat("this file URL ", why, "; ask for the job again"));
  };
  if (!enabled()) return refused("is not signed by this server");
  auto when = ParseInt(expires);
  if (!when.ok()) return refused("has a malformed 'expires'");
  const std::string want = Sign(store_key, *when);
  if (signature.size() != want.size() ||
      CRYPTO_memcmp(signature.data(), want.data(), want.size()) != 0) {
    return refused("has a signature that does not match");
  }
  if (*when < now_unix) return refused("has expired");
  return absl::OkStatus();
}

}  // namespace kiln
