// Identifiers: ULIDs (48-bit millisecond time + 80 random bits, Crockford base32, 26 chars),
// which sort by creation time as strings. Thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace kiln {

std::string NewUlid();
std::string NewUlid(int64_t unix_ms);  // for tests
bool IsUlid(std::string_view text);

// Milliseconds since the Unix epoch (system clock).
int64_t UnixMillis();

// 64 random bits from a process-wide generator seeded once from the OS: for seeds and ids, not
// for secrets. Thread-safe.
uint64_t Random64();

}  // namespace kiln
