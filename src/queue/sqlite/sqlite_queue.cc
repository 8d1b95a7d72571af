// The SQLite JobQueue: one database file in WAL mode, one connection guarded by a mutex. Every
// state change is one transaction, so a crash leaves each job in exactly one state.
#include <sqlite3.h>

#include <algorithm>
#include <functional>
#include <limits>

#include "absl/synchronization/mutex.h"
#include "core/ids.h"
#include "core/status_util.h"
#include "core/strings.h"
#include "nlohmann/json.hpp"
#include "queue/job_queue.h"

namespace kiln::queue {
namespace {

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS jobs (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  model TEXT NOT NULL,
  request TEXT NOT NULL,
  klass INTEGER NOT NULL,
  priority INTEGER NOT NULL,
  tenant TEXT NOT NULL,
  cost REAL NOT NULL,
  deadline_ms INTEGER NOT NULL,
  webhook TEXT NOT NULL,
  idempotency_key TEXT NOT NULL,
  batch_id TEXT NOT NULL,
  max_attempts INTEGER NOT NULL,
  state INTEGER NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  created_ms INTEGER NOT NULL,
  started_ms INTEGER NOT NULL DEFAULT 0,
  finished_ms INTEGER NOT NULL DEFAULT 0,
  worker TEXT NOT NULL DEFAULT '',
  lease_until_ms INTEGER NOT NULL DEFAULT 0,
  step INTEGER NOT NULL DEFAULT 0,
  num_steps INTEGER NOT NULL DEFAULT 0,
  result_keys TEXT NOT NULL DEFAULT '[]',
  error TEXT NOT NULL DEFAULT '',
  error_code TEXT NOT NULL DEFAULT '',
  cancel_requested INTEGER NOT NULL DEFAULT 0,
  webhook_status TEXT NOT NULL DEFAULT '',
  traceparent TEXT NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_idempotency ON jobs(tenant, idempotency_key)
  WHERE idempotency_key <> '';
CREATE INDEX IF NOT EXISTS jobs_claim ON jobs(model, state, klass, priority, seq);
CREATE INDEX IF NOT EXISTS jobs_batch ON jobs(batch_id) WHERE batch_id <> '';
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state, lease_until_ms);
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs(finished_ms) WHERE state >= 2;
CREATE INDEX IF NOT EXISTS jobs_open_by_tenant ON jobs(tenant, state) WHERE state IN (0,1);
CREATE TABLE IF NOT EXISTS batches (
  id TEXT PRIMARY KEY,
  model TEXT NOT NULL,
  created_ms INTEGER NOT NULL,
  total INTEGER NOT NULL,
  metadata TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tenant_weights (
  tenant TEXT PRIMARY KEY,
  weight REAL NOT NULL
);
)sql";

// The claim order of the queued jobs of one model, as a CTE named `ordered` with a column `ord`.
constexpr const char* kOrderedCte = R"sql(
WITH q AS (
  SELECT j.seq, j.id, j.klass, j.priority, j.cost,
         SUM(j.cost) OVER (PARTITION BY j.klass, j.priority, j.tenant ORDER BY j.seq
                           ROWS UNBOUNDED PRECEDING) / COALESCE(w.weight, 1.0) AS share
  FROM jobs j LEFT JOIN tenant_weights w ON w.tenant = j.tenant
  WHERE j.model = ?1 AND j.state = 0),
ordered AS (
  SELECT seq, id, cost,
         ROW_NUMBER() OVER (ORDER BY klass, priority DESC, share, seq) AS ord
  FROM q)
)sql";

constexpr const char* kJobColumns =
    "id, model, request, klass, priority, tenant, cost, deadline_ms, webhook, idempotency_key, "
    "batch_id, max_attempts, seq, state, attempts, created_ms, started_ms, finished_ms, worker, "
    "lease_until_ms, step, num_steps, result_keys, error, error_code, cancel_requested, "
    "webhook_status, traceparent";

// A prepared statement; finalized on destruction.
// SQLITE_FULL: 507 Insufficient Storage, not a rate limit (429).
absl::Status DiskFull() {
  return WithHttpStatus(absl::ResourceExhaustedError("the disk is full (the job queue)"), 507);
}

class Stmt {
 public:
  Stmt(sqlite3* db, std::string_view sql) : db_(db) {
    rc_ = sqlite3_prepare_v2(db, sql.data(), static_cast<int>(sql.size()), &stmt_, nullptr);
  }
  ~Stmt() { sqlite3_finalize(stmt_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  absl::Status prepared() const {
    if (rc_ == SQLITE_OK) return absl::OkStatus();
    return absl::InternalError(StrCat("sqlite prepare: ", sqlite3_errmsg(db_)));
  }
  Stmt& Bind(int i, int64_t v) {
    sqlite3_bind_int64(stmt_, i, v);
    return *this;
  }
  Stmt& Bind(int i, int v) { return Bind(i, static_cast<int64_t>(v)); }
  Stmt& Bind(int i, double v) {
    sqlite3_bind_double(stmt_, i, v);
    return *this;
  }
  Stmt& Bind(int i, std::string_view v) {
    sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  // SQLITE_ROW or SQLITE_DONE; anything else becomes an error.
  absl::StatusOr<bool> Next() {
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    if (rc == SQLITE_CONSTRAINT) {
      return absl::AlreadyExistsError(StrCat("sqlite: ", sqlite3_errmsg(db_)));
    }
    if (rc == SQLITE_FULL) return DiskFull();
    return absl::UnavailableError(StrCat("sqlite step: ", sqlite3_errmsg(db_)));
  }
  absl::Status Run() {
    KILN_RETURN_IF_ERROR(prepared());
    auto r = Next();
    return r.ok() ? absl::OkStatus() : r.status();
  }
  int64_t Int(int col) const { return sqlite3_column_int64(stmt_, col); }
  double Double(int col) const { return sqlite3_column_double(stmt_, col); }
  std::string Text(int col) const {
    const auto* p = sqlite3_column_text(stmt_, col);
    return p ? std::string(reinterpret_cast<const char*>(p), sqlite3_column_bytes(stmt_, col))
             : std::string();
  }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  int rc_;
};

Job ReadJob(const Stmt& s) {
  Job j;
  j.spec.id = s.Text(0);
  j.spec.model = s.Text(1);
  j.spec.request = s.Text(2);
  j.spec.klass = static_cast<PriorityClass>(s.Int(3));
  j.spec.priority = static_cast<int>(s.Int(4));
  j.spec.tenant = s.Text(5);
  j.spec.cost = s.Double(6);
  j.spec.deadline_ms = s.Int(7);
  j.spec.webhook = s.Text(8);
  j.spec.idempotency_key = s.Text(9);
  j.spec.batch_id = s.Text(10);
  j.spec.max_attempts = static_cast<int>(s.Int(11));
  j.seq = s.Int(12);
  j.state = static_cast<JobState>(s.Int(13));
  j.attempts = static_cast<int>(s.Int(14));
  j.created_ms = s.Int(15);
  j.started_ms = s.Int(16);
  j.finished_ms = s.Int(17);
  j.worker = s.Text(18);
  j.lease_until_ms = s.Int(19);
  j.step = static_cast<int>(s.Int(20));
  j.num_steps = static_cast<int>(s.Int(21));
  auto keys = nlohmann::json::parse(s.Text(22), nullptr, false);
  if (keys.is_array()) {
    for (const auto& k : keys) {
      if (k.is_string()) j.result_keys.push_back(k.get<std::string>());
    }
  }
  j.error = s.Text(23);
  j.error_code = s.Text(24);
  j.cancel_requested = s.Int(25) != 0;
  j.webhook_status = s.Text(26);
  j.spec.traceparent = s.Text(27);
  return j;
}

class SqliteQueue final : public JobQueue {
 public:
  SqliteQueue(sqlite3* db, QueueOptions options) : db_(db), options_(std::move(options)) {
    if (!options_.now_ms) options_.now_ms = UnixMillis;
  }
  ~SqliteQueue() override { sqlite3_close(db_); }

  absl::Status Init() {
    absl::MutexLock lock(&mu_);
    KILN_RETURN_IF_ERROR(Exec("PRAGMA journal_mode=WAL"));
    KILN_RETURN_IF_ERROR(
        Exec(options_.synchronous_full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL"));
    KILN_RETURN_IF_ERROR(Exec("PRAGMA foreign_keys=ON"));
    KILN_RETURN_IF_ERROR(Exec(kSchema));
    // Databases made before jobs carried their trace context get the column.
    Stmt has(db_, "SELECT COUNT(*) FROM pragma_table_info('jobs') WHERE name='traceparent'");
    KILN_ASSIGN_OR_RETURN(bool row, has.Next());
    if (row && has.Int(0) == 0) {
      KILN_RETURN_IF_ERROR(
          Exec("ALTER TABLE jobs ADD COLUMN traceparent TEXT NOT NULL DEFAULT ''"));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<EnqueueResult> Enqueue(const NewJob& job) override {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<EnqueueResult> result;
    KILN_RETURN_IF_ERROR(Transaction([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      result = EnqueueLocked(job);
      return result.status();
    }));
    return result;
  }

  absl::Status EnqueueBatch(const Batch& batch, const std::vector<NewJob>& jobs) override {
    absl::MutexLock lock(&mu_);
    return Transaction([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
      Stmt ins(db_,
               "INSERT INTO batches(id, model, created_ms, total, metadata) VALUES(?,?,?,?,?)");
      ins.Bind(1, batch.id).Bind(2, batch.model).Bind(3, Now()).Bind(4, batch.total);
      ins.Bind(5, batch.metadata);
      KILN_RETURN_IF_ERROR(ins.Run());
      for (const NewJob& j : jobs) {
        KILN_ASSIGN_OR_RETURN(EnqueueResult r, EnqueueLocked(j));
        if (!r.created) {
          return absl::AlreadyExistsError(StrCat("job ", j.id, " repeats an idempotency key"));
        }
      }
      return absl::OkStatus();
    });
  }

  absl::StatusOr<std::vector<Job>> Claim(const std::string& model, int max,
                                         const std::string& worker, int64_t lease_ms) override {
    absl::MutexLock lock(&mu_);
    std::vector<Job> out;
    if (max <= 0) return out;
    KILN_RETURN_IF_ERROR(Transaction([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
      std::vector<std::string> ids;
      {
        Stmt sel(db_, StrCat(kOrderedCte, "SELECT id FROM ordered ORDER BY ord LIMIT ?2"));
        KILN_RETURN_IF_ERROR(sel.prepared());
        sel.Bind(1, model).Bind(2, max);
        while (true) {
          KILN_ASSIGN_OR_RETURN(bool row, sel.Next());
          if (!row) break;
          ids.push_back(sel.Text(0));
        }
      }
      const int64_t now = Now();
      for (const std::string& id : ids) {
        Stmt up(db_,
                "UPDATE jobs SET state=1, attempts=attempts+1, started_ms=?1, worker=?2, "
                "lease_until_ms=?3, step=0 WHERE id=?4 AND state=0");
        up.Bind(1, now).Bind(2, worker).Bind(3, now + lease_ms).Bind(4, id);
        KILN_RETURN_IF_ERROR(up.Run());
        KILN_ASSIGN_OR_RETURN(Job j, GetLocked(id));
        out.push_back(std::move(j));
      }
      return absl::OkStatus();
    }));
    return out;
  }

  absl::Status Heartbeat(const std::string& id, const std::string& worker, int64_t lease_ms,
                         int step, int num_steps) override {
    absl::MutexLock lock(&mu_);
    Stmt up(db_,
            "UPDATE jobs SET lease_until_ms=?1, step=?2, num_steps=?3 "
            "WHERE id=?4 AND state=1 AND worker=?5");
    up.Bind(1, Now() + lease_ms).Bind(2, step).Bind(3, num_steps).Bind(4, id).Bind(5, worker);
    KILN_RETURN_IF_ERROR(up.Run());
    return ChangedOne(id);
  }

  absl::Status Complete(const std::string& id, const std::string& worker,
                        const std::vector<std::string>& result_keys) override {
    absl::MutexLock lock(&mu_);
    Stmt up(db_,
            "UPDATE jobs SET state=2, finished_ms=?1, result_keys=?2, step=num_steps, "
            "lease_until_ms=0, error='', error_code='' WHERE id=?3 AND state=1 AND worker=?4");
    up.Bind(1, Now()).Bind(2, nlohmann::json(result_keys).dump()).Bind(3, id).Bind(4, worker);
    KILN_RETURN_IF_ERROR(up.Run());
    return ChangedOne(id);
  }

  absl::StatusOr<Job> Fail(const std::string& id, const std::string& worker,
                           const std::string& error, const std::string& code,
                           bool retryable) override {
    absl::MutexLock lock(&mu_);
    Stmt up(db_,
            "UPDATE jobs SET state = CASE WHEN ?1 AND attempts < max_attempts THEN 0 ELSE 3 END, "
            "finished_ms = CASE WHEN ?1 AND attempts < max_attempts THEN 0 ELSE ?2 END, "
            "error=?3, error_code=?4, worker='', lease_until_ms=0 "
            "WHERE id=?5 AND state=1 AND worker=?6");
    up.Bind(1, retryable ? 1 : 0).Bind(2, Now()).Bind(3, error).Bind(4, code).Bind(5, id);
    up.Bind(6, worker);
    KILN_RETURN_IF_ERROR(up.Run());
    KILN_RETURN_IF_ERROR(ChangedOne(id));
    return GetLocked(id);
  }

  absl::Status Release(const std::string& id, const std::string& worker) override {
    absl::MutexLock lock(&mu_);
    Stmt up(db_,
            "UPDATE jobs SET state=0, attempts=MAX(attempts-1, 0), worker='', lease_until_ms=0 "
            "WHERE id=?1 AND state=1 AND worker=?2");
    up.Bind(1, id).Bind(2, worker);
    KILN_RETURN_IF_ERROR(up.Run());
    return ChangedOne(id);
  }

  absl::StatusOr<Job> Cancel(const std::string& id) override {
    absl::MutexLock lock(&mu_);
    KILN_RETURN_IF_ERROR(Transaction([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
      Stmt q(db_,
             "UPDATE jobs SET state=4, finished_ms=?1, error='cancelled by request', "
             "error_code='cancelled' WHERE id=?2 AND state=0");
      q.Bind(1, Now()).Bind(2, id);
      KILN_RETURN_IF_ERROR(q.Run());
      Stmt r(db_, "UPDATE jobs SET cancel_requested=1 WHERE id=?1 AND state=1");
      r.Bind(1, id);
      return r.Run();
    }));
    return GetLocked(id);
  }

  absl::Status MarkCancelled(const std::string& id, const std::string& worker) override {
    absl::MutexLock lock(&mu_);
    Stmt up(db_,
            "UPDATE jobs SET state=4, finished_ms=?1, error='cancelled by request', "
            "error_code='cancelled', lease_until_ms=0 WHERE id=?2 AND state=1 AND worker=?3");
    up.Bind(1, Now()).Bind(2, id).Bind(3, worker);
    KILN_RETURN_IF_ERROR(up.Run());
    return ChangedOne(id);
  }

  absl::StatusOr<Job> Get(const std::string& id) override {
    absl::MutexLock lock(&mu_);
    return GetLocked(id);
  }

  absl::StatusOr<JobPage> List(const JobFilter& f) override {
    absl::MutexLock lock(&mu_);
    std::string sql = StrCat("SELECT ", kJobColumns, " FROM jobs WHERE 1=1");
    if (f.state) StrAppend(&sql, " AND state=?1");
    if (!f.model.empty()) StrAppend(&sql, " AND model=?2");
    if (!f.batch_id.empty()) StrAppend(&sql, " AND batch_id=?3");
    if (!f.before.empty()) StrAppend(&sql, " AND id<?4");
    if (!f.tenant.empty()) StrAppend(&sql, " AND tenant=?6");
    StrAppend(&sql, " ORDER BY id DESC LIMIT ?5");
    Stmt s(db_, sql);
    KILN_RETURN_IF_ERROR(s.prepared());
    if (f.state) s.Bind(1, static_cast<int>(*f.state));
    if (!f.model.empty()) s.Bind(2, f.model);
    if (!f.batch_id.empty()) s.Bind(3, f.batch_id);
    if (!f.before.empty()) s.Bind(4, f.before);
    s.Bind(5, f.limit + 1);
    if (!f.tenant.empty()) s.Bind(6, f.tenant);
    JobPage page;
    while (true) {
      KILN_ASSIGN_OR_RETURN(bool row, s.Next());
      if (!row) break;
      page.jobs.push_back(ReadJob(s));
    }
    if (static_cast<int>(page.jobs.size()) > f.limit) {
      page.jobs.pop_back();
      page.has_more = true;
    }
    return page;
  }

  absl::StatusOr<Batch> GetBatch(const std::string& id) override {
    absl::MutexLock lock(&mu_);
    Stmt s(db_, "SELECT id, model, created_ms, total, metadata FROM batches WHERE id=?1");
    s.Bind(1, id);
    KILN_ASSIGN_OR_RETURN(bool row, s.Next());
    if (!row) return WithField(absl::NotFoundError(StrCat("no batch '", id, "'")), "batch_id");
    return Batch{s.Text(0), s.Text(1), s.Int(2), static_cast<int>(s.Int(3)), s.Text(4)};
  }

  absl::StatusOr<std::map<JobState, int>> BatchCounts(const std::string& id) override {
    absl::MutexLock lock(&mu_);
    Stmt s(db_, "SELECT state, COUNT(*) FROM jobs WHERE batch_id=?1 GROUP BY state");
    s.Bind(1, id);
    std::map<JobState, int> out;
    while (true) {
      KILN_ASSIGN_OR_RETURN(bool row, s.Next());
      if (!row) break;
      out[static_cast<JobState>(s.Int(0))] = static_cast<int>(s.Int(1));
    }
    return out;
  }

  absl::StatusOr<std::vector<Job>> ExpireLeases(bool all) override {
    absl::MutexLock lock(&mu_);
    const int64_t cutoff = all ? std::numeric_limits<int64_t>::max() : Now();
    KILN_ASSIGN_OR_RETURN(std::vector<std::string> ids,
                          Ids("SELECT id FROM jobs WHERE state=1 AND lease_until_ms < ?1", cutoff));
    return UpdateEach(
        ids,
        "UPDATE jobs SET state = CASE WHEN attempts < max_attempts THEN 0 ELSE 3 END, "
        "finished_ms = CASE WHEN attempts < max_attempts THEN 0 ELSE ?1 END, "
        "error = 'the worker running the job stopped (lease expired) after ' || "
        "attempts || ' attempt(s)', error_code='worker_lost', worker='', "
        "lease_until_ms=0 WHERE id=?2 AND state=1");
  }

  absl::StatusOr<std::vector<Job>> ExpireDeadlines() override {
    absl::MutexLock lock(&mu_);
    KILN_ASSIGN_OR_RETURN(
        std::vector<std::string> ids,
        Ids("SELECT id FROM jobs WHERE state=0 AND deadline_ms > 0 AND deadline_ms < ?1", Now()));
    return UpdateEach(
        ids,
        "UPDATE jobs SET state=3, finished_ms=?1, error='the deadline passed before "
        "the job could start', error_code='deadline_exceeded' WHERE id=?2 AND state=0");
  }

  absl::StatusOr<std::optional<Job>> FindIdempotent(const std::string& tenant,
                                                    const std::string& key) override {
    absl::MutexLock lock(&mu_);
    Stmt s(db_, "SELECT id, created_ms FROM jobs WHERE tenant=?1 AND idempotency_key=?2");
    s.Bind(1, tenant).Bind(2, key);
    KILN_ASSIGN_OR_RETURN(bool row, s.Next());
    if (!row || s.Int(1) < Now() - options_.idempotency_ttl_ms) return std::optional<Job>();
    KILN_ASSIGN_OR_RETURN(Job job, GetLocked(s.Text(0)));
    return std::optional<Job>(std::move(job));
  }

  absl::StatusOr<TenantWork> OpenWork(const std::string& tenant) override {
    absl::MutexLock lock(&mu_);
    Stmt s(db_,
           "SELECT COUNT(*), COALESCE(SUM(CASE WHEN state=0 THEN cost ELSE 0 END), 0) FROM jobs "
           "WHERE tenant=?1 AND state IN (0,1)");
    s.Bind(1, tenant);
    KILN_ASSIGN_OR_RETURN(bool row, s.Next());
    TenantWork w;
    if (row) {
      w.open = static_cast<int>(s.Int(0));
      w.queued_cost = s.Double(1);
    }
    return w;
  }

  absl::StatusOr<ModelBacklog> Backlog(const std::string& model) override {
    absl::MutexLock lock(&mu_);
    Stmt s(db_,
           "SELECT state, klass, COUNT(*), SUM(cost) FROM jobs WHERE model=?1 AND state IN (0,1) "
           "GROUP BY state, klass");
    s.Bind(1, model);
    ModelBacklog b;
    while (true) {
      KILN_ASSIGN_OR_RETURN(bool row, s.Next());
      if (!row) break;
      const int n = static_cast<int>(s.Int(2));
      if (s.Int(0) == 0) {
        b.queued += n;
        b.queued_cost += s.Double(3);
        b.queued_by_class[static_cast<PriorityClass>(s.Int(1))] += n;
        b.queued_cost_by_class[static_cast<PriorityClass>(s.Int(1))] += s.Double(3);
      } else {
        b.running += n;
      }
    }
    return b;
  }

  absl::StatusOr<std::map<JobState, int>> StateCounts(const std::string& model) override {
    absl::MutexLock lock(&mu_);
    Stmt s(db_, "SELECT state, COUNT(*) FROM jobs WHERE model=?1 GROUP BY state");
    s.Bind(1, model);
    std::map<JobState, int> counts;
    while (true) {
      KILN_ASSIGN_OR_RETURN(bool row, s.Next());
      if (!row) break;
      counts[static_cast<JobState>(s.Int(0))] = static_cast<int>(s.Int(1));
    }
    return counts;
  }

  absl::StatusOr<QueuePosition> Position(const Job& job) override {
    absl::MutexLock lock(&mu_);
    Stmt s(db_, StrCat(kOrderedCte,
                       "SELECT COUNT(*), COALESCE(SUM(cost), 0) FROM ordered WHERE ord < "
                       "(SELECT ord FROM ordered WHERE id=?2)"));
    KILN_RETURN_IF_ERROR(s.prepared());
    s.Bind(1, job.spec.model).Bind(2, job.id());
    KILN_ASSIGN_OR_RETURN(bool row, s.Next());
    if (!row) return QueuePosition{};
    return QueuePosition{static_cast<int>(s.Int(0)), s.Double(1)};
  }

  absl::Status SetWebhookStatus(const std::string& id, const std::string& status_json) override {
    absl::MutexLock lock(&mu_);
    Stmt up(db_, "UPDATE jobs SET webhook_status=?1 WHERE id=?2");
    up.Bind(1, status_json).Bind(2, id);
    KILN_RETURN_IF_ERROR(up.Run());
    return ChangedOne(id);
  }

  absl::StatusOr<std::vector<Job>> PendingWebhooks() override {
    absl::MutexLock lock(&mu_);
    Stmt s(db_, StrCat("SELECT ", kJobColumns,
                       " FROM jobs WHERE state >= 2 AND webhook <> '' AND (webhook_status = '' "
                       "OR json_extract(webhook_status, '$.state') = 'pending') ORDER BY seq"));
    KILN_RETURN_IF_ERROR(s.prepared());
    std::vector<Job> out;
    while (true) {
      KILN_ASSIGN_OR_RETURN(bool row, s.Next());
      if (!row) break;
      out.push_back(ReadJob(s));
    }
    return out;
  }

  absl::StatusOr<std::vector<std::string>> PurgeFinished(int64_t finished_before_ms,
                                                         int limit) override {
    absl::MutexLock lock(&mu_);
    std::vector<std::string> ids;
    KILN_RETURN_IF_ERROR(Transaction([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
      const std::string select = StrCat(
          "SELECT id FROM jobs WHERE state >= 2 AND finished_ms < ?1 ORDER BY finished_ms, seq "
          "LIMIT ",
          std::max(limit, 0));
      KILN_ASSIGN_OR_RETURN(ids, Ids(select.c_str(), finished_before_ms));
      for (const std::string& id : ids) {
        Stmt del(db_, "DELETE FROM jobs WHERE id=?1");
        del.Bind(1, id);
        KILN_RETURN_IF_ERROR(del.Run());
      }
      Stmt batches(db_,
                   "DELETE FROM batches WHERE created_ms < ?1 AND NOT EXISTS "
                   "(SELECT 1 FROM jobs WHERE jobs.batch_id = batches.id)");
      batches.Bind(1, finished_before_ms);
      return batches.Run();
    }));
    return ids;
  }

  absl::Status ClearTenantWeights() override {
    absl::MutexLock lock(&mu_);
    return Exec("DELETE FROM tenant_weights");
  }

  absl::Status SetTenantWeight(const std::string& tenant, double weight) override {
    if (!(weight > 0)) return InvalidField("weight", "a tenant weight must be positive");
    absl::MutexLock lock(&mu_);
    Stmt up(db_,
            "INSERT INTO tenant_weights(tenant, weight) VALUES(?1, ?2) "
            "ON CONFLICT(tenant) DO UPDATE SET weight=excluded.weight");
    up.Bind(1, tenant).Bind(2, weight);
    return up.Run();
  }

 private:
  int64_t Now() const { return options_.now_ms(); }

  absl::Status Exec(const char* sql) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    char* err = nullptr;
    const int rc = sqlite3_exec(db_, sql, nullptr, nullptr, &err);
    if (rc == SQLITE_OK) return absl::OkStatus();
    std::string msg = err ? err : sqlite3_errstr(rc);
    sqlite3_free(err);
    if (rc == SQLITE_FULL) return DiskFull();
    return absl::UnavailableError(StrCat("sqlite: ", msg));
  }

  // Runs `body` in one write transaction: committed when it returns OK, rolled back otherwise.
  absl::Status Transaction(const std::function<absl::Status()>& body)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    KILN_RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
    absl::Status s = body();
    if (s.ok()) s = Exec("COMMIT");
    if (!s.ok()) (void)Exec("ROLLBACK");
    return s;
  }

  absl::Status ChangedOne(const std::string& id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (sqlite3_changes(db_) == 1) return absl::OkStatus();
    auto job = GetLocked(id);
    if (!job.ok()) return job.status();
    return absl::FailedPreconditionError(
        StrCat("job ", id, " is ", JobStateName(job->state),
               job->state == JobState::kRunning ? " under another lease" : ""));
  }

  absl::StatusOr<std::vector<std::string>> Ids(const char* sql, int64_t arg)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Stmt s(db_, sql);
    KILN_RETURN_IF_ERROR(s.prepared());
    s.Bind(1, arg);
    std::vector<std::string> ids;
    while (true) {
      KILN_ASSIGN_OR_RETURN(bool row, s.Next());
      if (!row) break;
      ids.push_back(s.Text(0));
    }
    return ids;
  }

  // Runs `sql` (?1 = now, ?2 = a job id) for each of `ids`; returns the jobs as they are after.
  absl::StatusOr<std::vector<Job>> UpdateEach(const std::vector<std::string>& ids, const char* sql)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::vector<Job> out;
    for (const std::string& id : ids) {
      Stmt up(db_, sql);
      up.Bind(1, Now()).Bind(2, id);
      KILN_RETURN_IF_ERROR(up.Run());
      KILN_ASSIGN_OR_RETURN(Job j, GetLocked(id));
      out.push_back(std::move(j));
    }
    return out;
  }

  absl::StatusOr<Job> GetLocked(const std::string& id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Stmt s(db_, StrCat("SELECT ", kJobColumns, " FROM jobs WHERE id=?1"));
    KILN_RETURN_IF_ERROR(s.prepared());
    s.Bind(1, id);
    KILN_ASSIGN_OR_RETURN(bool row, s.Next());
    if (!row) return WithField(absl::NotFoundError(StrCat("no job '", id, "'")), "job_id");
    return ReadJob(s);
  }

  absl::StatusOr<EnqueueResult> EnqueueLocked(const NewJob& job)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!job.idempotency_key.empty()) {
      Stmt s(db_, "SELECT id, created_ms FROM jobs WHERE tenant=?1 AND idempotency_key=?2");
      s.Bind(1, job.tenant).Bind(2, job.idempotency_key);
      KILN_ASSIGN_OR_RETURN(bool row, s.Next());
      if (row && s.Int(1) < Now() - options_.idempotency_ttl_ms) {
        // The key expired: the earlier job keeps its record but no longer owns the key.
        Stmt release(db_, "UPDATE jobs SET idempotency_key='' WHERE id=?1");
        release.Bind(1, s.Text(0));
        KILN_RETURN_IF_ERROR(release.Run());
        row = false;
      }
      if (row) {
        KILN_ASSIGN_OR_RETURN(Job earlier, GetLocked(s.Text(0)));
        if (!SameRequest(earlier.spec.request, job.request) || earlier.spec.model != job.model) {
          return WithField(absl::FailedPreconditionError(
                               "this Idempotency-Key was used before with a different request"),
                           "Idempotency-Key");
        }
        return EnqueueResult{std::move(earlier), false};
      }
    }
    Stmt ins(db_,
             "INSERT INTO jobs(id, model, request, klass, priority, tenant, cost, deadline_ms, "
             "webhook, idempotency_key, batch_id, max_attempts, state, created_ms, traceparent) "
             "VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,0,?13,?14)");
    ins.Bind(1, job.id).Bind(2, job.model).Bind(3, job.request);
    ins.Bind(4, static_cast<int>(job.klass)).Bind(5, job.priority).Bind(6, job.tenant);
    ins.Bind(7, job.cost).Bind(8, job.deadline_ms).Bind(9, job.webhook);
    ins.Bind(10, job.idempotency_key).Bind(11, job.batch_id).Bind(12, job.max_attempts);
    ins.Bind(13, Now()).Bind(14, job.traceparent);
    KILN_RETURN_IF_ERROR(ins.Run());
    KILN_ASSIGN_OR_RETURN(Job stored, GetLocked(job.id));
    return EnqueueResult{std::move(stored), true};
  }

  absl::Mutex mu_;
  sqlite3* db_ ABSL_PT_GUARDED_BY(mu_);
  QueueOptions options_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<JobQueue>> OpenSqliteQueue(const std::string& path,
                                                          QueueOptions options) {
  sqlite3* db = nullptr;
  const int rc = sqlite3_open_v2(
      path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    sqlite3_close(db);
    return absl::UnavailableError(StrCat("cannot open the queue database ", path, ": ", msg));
  }
  sqlite3_busy_timeout(db, 5000);
  auto queue = std::make_unique<SqliteQueue>(db, std::move(options));
  KILN_RETURN_IF_ERROR(Annotate(queue->Init(), StrCat("queue database ", path)));
  return std::unique_ptr<JobQueue>(std::move(queue));
}

}  // namespace kiln::queue
