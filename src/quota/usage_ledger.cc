#include "quota/usage_ledger.h"

#include <sqlite3.h>

#include "absl/synchronization/mutex.h"
#include "core/status_util.h"
#include "core/strings.h"

namespace kiln::quota {
namespace {

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS daily_images (
  key TEXT NOT NULL,
  day INTEGER NOT NULL,
  images INTEGER NOT NULL,
  PRIMARY KEY (key, day)
);
)sql";

// One prepared statement; finalized when it goes out of scope.
class Statement {
 public:
  Statement(sqlite3* db, const char* sql) : db_(db) {
    rc_ = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr);
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  Statement& Bind(int i, std::string_view text) {
    if (rc_ == SQLITE_OK) {
      rc_ =
          sqlite3_bind_text(stmt_, i, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
    }
    return *this;
  }
  Statement& Bind(int i, int64_t value) {
    if (rc_ == SQLITE_OK) rc_ = sqlite3_bind_int64(stmt_, i, value);
    return *this;
  }
  // Runs one step: true when a row is there to read.
  absl::StatusOr<bool> Step() {
    if (rc_ != SQLITE_OK) return Error();
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    rc_ = rc;
    return Error();
  }
  int64_t Int(int column) { return sqlite3_column_int64(stmt_, column); }

 private:
  absl::Status Error() const {
    return absl::UnavailableError(StrCat("usage ledger: ", sqlite3_errmsg(db_)));
  }
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  int rc_ = SQLITE_OK;
};

}  // namespace

struct UsageLedger::Impl {
  absl::Mutex mu;
  sqlite3* db ABSL_PT_GUARDED_BY(mu) = nullptr;
  ~Impl() { sqlite3_close(db); }
};

UsageLedger::UsageLedger(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
UsageLedger::~UsageLedger() = default;

absl::StatusOr<std::unique_ptr<UsageLedger>> UsageLedger::Open(const std::string& path) {
  auto impl = std::make_unique<Impl>();
  absl::MutexLock lock(&impl->mu);
  const int rc =
      sqlite3_open_v2(path.c_str(), &impl->db,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    return absl::UnavailableError(StrCat("cannot open the usage ledger ", path, ": ",
                                         impl->db ? sqlite3_errmsg(impl->db) : sqlite3_errstr(rc)));
  }
  sqlite3_busy_timeout(impl->db, 5000);
  // WAL with NORMAL sync: a process crash loses nothing; a power cut may lose the last counts
  // (they err on the caller's side, never the other way).
  char* error = nullptr;
  const std::string setup = StrCat("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", kSchema);
  if (sqlite3_exec(impl->db, setup.c_str(), nullptr, nullptr, &error) != SQLITE_OK) {
    const std::string message = error ? error : "unknown error";
    sqlite3_free(error);
    return absl::UnavailableError(StrCat("usage ledger ", path, ": ", message));
  }
  return std::unique_ptr<UsageLedger>(new UsageLedger(std::move(impl)));
}

absl::StatusOr<LedgerTake> UsageLedger::Take(std::string_view key, int64_t day, int64_t n,
                                             int64_t limit) {
  absl::MutexLock lock(&impl_->mu);
  LedgerTake take;
  if (n <= limit) {
    // The conditional upsert adds only when the sum stays within the limit.
    Statement up(impl_->db,
                 "INSERT INTO daily_images(key, day, images) VALUES(?1, ?2, ?3) "
                 "ON CONFLICT(key, day) DO UPDATE SET images = images + ?3 "
                 "WHERE images + ?3 <= ?4");
    up.Bind(1, key).Bind(2, day).Bind(3, n).Bind(4, limit);
    KILN_RETURN_IF_ERROR(up.Step().status());
    take.granted = sqlite3_changes(impl_->db) > 0;
  }
  Statement get(impl_->db, "SELECT images FROM daily_images WHERE key=?1 AND day=?2");
  get.Bind(1, key).Bind(2, day);
  KILN_ASSIGN_OR_RETURN(bool row, get.Step());
  take.used = row ? get.Int(0) : 0;
  return take;
}

absl::Status UsageLedger::Give(std::string_view key, int64_t day, int64_t n) {
  absl::MutexLock lock(&impl_->mu);
  Statement down(impl_->db,
                 "UPDATE daily_images SET images = MAX(0, images - ?3) WHERE key=?1 AND day=?2");
  down.Bind(1, key).Bind(2, day).Bind(3, n);
  return down.Step().status();
}

absl::StatusOr<int64_t> UsageLedger::Used(std::string_view key, int64_t day) {
  absl::MutexLock lock(&impl_->mu);
  Statement get(impl_->db, "SELECT images FROM daily_images WHERE key=?1 AND day=?2");
  get.Bind(1, key).Bind(2, day);
  KILN_ASSIGN_OR_RETURN(bool row, get.Step());
  return row ? get.Int(0) : 0;
}

absl::Status UsageLedger::ForgetBefore(int64_t day) {
  absl::MutexLock lock(&impl_->mu);
  Statement del(impl_->db, "DELETE FROM daily_images WHERE day < ?1");
  del.Bind(1, day);
  return del.Step().status();
}

}  // namespace kiln::quota
