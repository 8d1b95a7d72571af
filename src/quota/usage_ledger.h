// UsageLedger: how many images each API key was granted per UTC day, kept in a SQLite file in the
// data directory so that a daily limit survives a restart. One process owns the file (the
// gateway that admits the work). Thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace kiln::quota {

// What a Take found and did.
struct LedgerTake {
  bool granted = false;
  int64_t used = 0;  // the key's count for the day after the take (unchanged when refused)
};

class UsageLedger {
 public:
  // `path`: the SQLite file (created if missing), or ":memory:" (tests).
  static absl::StatusOr<std::unique_ptr<UsageLedger>> Open(const std::string& path);
  ~UsageLedger();
  UsageLedger(const UsageLedger&) = delete;
  UsageLedger& operator=(const UsageLedger&) = delete;

  // Adds `n` to `key`'s count for `day` (days since 1970-01-01, UTC) unless the count would then
  // pass `limit`; both in one statement, so concurrent takes never pass it together.
  absl::StatusOr<LedgerTake> Take(std::string_view key, int64_t day, int64_t n, int64_t limit);
  // Gives back `n` taken earlier (work refused after its take); the count stays >= 0.
  absl::Status Give(std::string_view key, int64_t day, int64_t n);
  absl::StatusOr<int64_t> Used(std::string_view key, int64_t day);
  // Deletes the counts of days before `day`.
  absl::Status ForgetBefore(int64_t day);

  struct Impl;  // internal to usage_ledger.cc

 private:
  explicit UsageLedger(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kiln::quota
