// Hashes and MACs over OpenSSL, as lowercase hex. Stateless; thread-safe.
#pragma once

#include <string>
#include <string_view>

namespace kiln {

std::string Sha256Hex(std::string_view data);
std::string HmacSha256Hex(std::string_view key, std::string_view data);
// The 32 raw bytes (SigV4 derives its signing key by chaining these).
std::string HmacSha256(std::string_view key, std::string_view data);
// `bytes` random bytes from the OS, as hex.
std::string RandomHex(size_t bytes);

}  // namespace kiln
