#include "core/ids.h"

#include <chrono>
#include <random>

#include "absl/synchronization/mutex.h"

namespace kiln {
namespace {

constexpr char kCrockford[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

}  // namespace

uint64_t Random64() {
  static absl::Mutex mu(absl::kConstInit);
  static std::mt19937_64* rng = nullptr;
  absl::MutexLock lock(&mu);
  if (!rng) {
    std::random_device rd;
    std::seed_seq seq{rd(), rd(), rd(), rd(), rd(), rd(), rd(), rd()};
    rng = new std::mt19937_64(seq);
  }
  return (*rng)();
}

int64_t UnixMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string NewUlid() { return NewUlid(UnixMillis()); }

std::string NewUlid(int64_t unix_ms) {
  // 128 bits: 48 of time then 80 random, written as 26 base32 digits (the first holds 3 bits).
  const uint64_t t = static_cast<uint64_t>(unix_ms) & ((uint64_t{1} << 48) - 1);
  const uint64_t r1 = Random64(), r2 = Random64();
  const uint64_t hi = (t << 16) | (r1 >> 48);   // 48 time bits + 16 random
  const uint64_t lo = (r1 << 16) | (r2 >> 48);  // 64 random
  std::string out(26, '0');
  // Bit i (0 = least significant) of the 128-bit value.
  auto bit = [&](int i) -> int { return i >= 64 ? (hi >> (i - 64)) & 1 : (lo >> i) & 1; };
  for (int d = 0; d < 26; ++d) {
    int v = 0;
    for (int b = 4; b >= 0; --b) {
      const int i = (25 - d) * 5 + b;
      v = (v << 1) | (i < 128 ? bit(i) : 0);
    }
    out[d] = kCrockford[v];
  }
  return out;
}

bool IsUlid(std::string_view text) {
  if (text.size() != 26 || text[0] > '7') return false;
  for (char c : text) {
    bool ok = false;
    for (const char* p = kCrockford; *p; ++p) ok |= (*p == c);
    if (!ok) return false;
  }
  return true;
}

}  // namespace kiln
