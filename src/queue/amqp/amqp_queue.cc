// The distributed JobQueue: RabbitMQ carries the work (a quorum queue per model; an unacked
// delivery is the lease), the store holds the truth about each job (jobs/{id}/job.json), so any
// gateway answers for any job. See docs/architecture.md, "Distributed mode".
#include "queue/amqp/amqp_queue.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "absl/synchronization/mutex.h"
#include "core/crypto.h"
#include "core/ids.h"
#include "core/logging.h"
#include "core/status_util.h"
#include "core/strings.h"
#include "nlohmann/json.hpp"
#include "queue/amqp/broker.h"
#include "queue/job_queue.h"
#include "queue/job_record.h"
#include "store/blob_store.h"

namespace kiln::queue {
namespace {

using amqp::Delivery;

std::string CancelKey(const std::string& id) { return StrCat("jobs/", id, "/cancel"); }
// Step progress of a running job. It is kept apart from the record so that only state changes
// write the record: a progress write that lands late (it is not ordered with the worker's own
// Complete, nor with another worker's) can then never turn a finished job back into a running
// one whose message is already acked, which would lose it.
std::string ProgressKey(const std::string& id) { return StrCat("jobs/", id, "/progress.json"); }
std::string BatchKey(const std::string& id) { return StrCat("batches/", id, "/batch.json"); }
std::string IdempotencyKey(const NewJob& j) {
  return StrCat("idempotency/", Sha256Hex(StrCat(j.tenant, "\n", j.idempotency_key)));
}

// Job ids that were asked to cancel, remembered for a while (bounded).
class CancelSet {
 public:
  void Add(const std::string& id) {
    if (!ids_.insert(id).second) return;
    order_.push_back(id);
    if (order_.size() > 100000) {
      ids_.erase(order_.front());
      order_.pop_front();
    }
  }
  bool Contains(const std::string& id) const { return ids_.count(id) > 0; }

 private:
  std::set<std::string> ids_;
  std::deque<std::string> order_;
};

class AmqpJobQueue final : public JobQueue {
 public:
  explicit AmqpJobQueue(QueueOptions options) : options_(std::move(options)) {}
  ~AmqpJobQueue() override {
    if (reporter_.joinable()) {
      {
        absl::MutexLock lock(&mu_);
        stop_ = true;
      }
      reporter_.join();
      // Gone: gateways stop counting this worker's jobs now rather than when its report expires.
      (void)broker_->PublishEvent(StrCat("load.", instance_), R"({"ttl_ms":0,"models":{}})");
    }
    if (broker_) broker_->Stop();
  }

  absl::Status Start(std::string_view url, const BrokerFactory& make_broker) {
    if (!options_.records) {
      return absl::InvalidArgumentError("the amqp:// queue needs a store for its job records");
    }
    KILN_ASSIGN_OR_RETURN(amqp::AmqpUrl parsed, amqp::ParseAmqpUrl(url));
    amqp::BrokerOptions bo;
    bo.url = parsed;
    bo.declare_models = options_.models;
    bo.consume_models = options_.consume;
    bo.prefetch = options_.prefetch;
    bo.delivery_limit = options_.delivery_limit;
    if (!options_.consume.empty()) bo.event_patterns.push_back("cancel.*");
    if (options_.on_event) bo.event_patterns.push_back("job.*");
    if (options_.consume.empty()) bo.event_patterns.push_back("load.*");
    bo.consume_dead_letters = options_.handle_dead_letters;
    bo.on_job = [this](Delivery d) { Received(std::move(d)); };
    bo.on_event = [this](const std::string& key, const std::string& body) { Event(key, body); };
    bo.on_dead_letter = [this](const std::string& body) { DeadLetter(body); };
    KILN_ASSIGN_OR_RETURN(
        broker_, make_broker ? make_broker(std::move(bo)) : amqp::Broker::Start(std::move(bo)));
    if (!options_.consume.empty()) reporter_ = std::thread([this] { ReportLoad(); });
    return absl::OkStatus();
  }

  absl::StatusOr<std::optional<Job>> FindIdempotent(const std::string& tenant,
                                                    const std::string& key) override {
    NewJob probe;
    probe.tenant = tenant;
    probe.idempotency_key = key;
    auto id = records()->Get(IdempotencyKey(probe));
    if (absl::IsNotFound(id.status())) return std::optional<Job>();
    if (!id.ok()) return id.status();
    auto job = Get(*id);
    if (absl::IsNotFound(job.status())) return std::optional<Job>();
    if (!job.ok()) return job.status();
    if (job->created_ms < Now() - options_.idempotency_ttl_ms) return std::optional<Job>();
    return std::optional<Job>(std::move(*job));
  }

  absl::StatusOr<EnqueueResult> Enqueue(const NewJob& spec) override {
    if (!spec.idempotency_key.empty()) {
      auto earlier_id = records()->Get(IdempotencyKey(spec));
      std::optional<Job> earlier;
      if (earlier_id.ok()) {
        auto found = Get(*earlier_id);
        if (found.ok() && found->created_ms >= Now() - options_.idempotency_ttl_ms) {
          earlier = std::move(*found);
        } else if (!found.ok() && !absl::IsNotFound(found.status())) {
          return found.status();
        }  // expired, or its record is gone: the key makes a new job
      } else if (!absl::IsNotFound(earlier_id.status())) {
        return earlier_id.status();
      }
      if (earlier) {
        if (!SameRequest(earlier->spec.request, spec.request) ||
            earlier->spec.model != spec.model) {
          return WithField(absl::FailedPreconditionError(
                               "this Idempotency-Key was used before with a different request"),
                           "Idempotency-Key");
        }
        return EnqueueResult{std::move(*earlier), false};
      }
    }
    Job job = NewRecord(spec);
    KILN_RETURN_IF_ERROR(WriteIf(job, /*version=*/"").status());
    if (!spec.idempotency_key.empty()) {
      KILN_RETURN_IF_ERROR(records()->Put(IdempotencyKey(spec), spec.id));
    }
    if (absl::Status s = broker_->PublishJob(spec.model, EncodeJobRecord(job)); !s.ok()) {
      (void)records()->Delete(JobRecordKey(spec.id));
      if (!spec.idempotency_key.empty()) (void)records()->Delete(IdempotencyKey(spec));
      return absl::UnavailableError(StrCat("the job could not be queued: ", s.message()));
    }
    NotePublished(spec);
    return EnqueueResult{std::move(job), true};
  }

  absl::Status EnqueueBatch(const Batch& batch, const std::vector<NewJob>& jobs) override {
    nlohmann::json ids = nlohmann::json::array();
    for (const NewJob& j : jobs) ids.push_back(j.id);
    nlohmann::json b = {{"id", batch.id},       {"model", batch.model},       {"created_ms", Now()},
                        {"total", batch.total}, {"metadata", batch.metadata}, {"jobs", ids}};
    std::vector<Job> records;
    std::vector<std::string> versions;
    for (const NewJob& spec : jobs) {
      records.push_back(NewRecord(spec));
      KILN_ASSIGN_OR_RETURN(std::string version, WriteIf(records.back(), /*version=*/""));
      versions.push_back(std::move(version));
    }
    KILN_RETURN_IF_ERROR(this->records()->Put(BatchKey(batch.id), b.dump()));
    for (size_t i = 0; i < records.size(); ++i) {
      absl::Status s = broker_->PublishJob(records[i].spec.model, EncodeJobRecord(records[i]));
      if (s.ok()) {
        NotePublished(records[i].spec);
        continue;
      }
      // Jobs whose message never reached the broker fail at once, with the reason, rather
      // than staying queued forever.
      for (size_t k = i; k < records.size(); ++k) {
        Job& r = records[k];
        r.state = JobState::kFailed;
        r.finished_ms = Now();
        r.error = StrCat("the broker did not take the job: ", s.message());
        r.error_code = "enqueue_failed";
        (void)WriteIf(r, versions[k]);
      }
      return absl::UnavailableError(StrCat("the batch was only partly queued (", i, " of ",
                                           records.size(), " jobs): ", s.message()));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<Job>> Claim(const std::string& model, int max,
                                         const std::string& worker, int64_t lease_ms) override {
    std::vector<Job> out;
    while (static_cast<int>(out.size()) < max) {
      Delivery d;
      {
        absl::MutexLock lock(&mu_);
        auto& ready = ready_[model];
        if (ready.empty()) break;
        d = std::move(ready.front());
        ready.pop_front();
      }
      // A delivery of a connection that broke is back in its queue, maybe with another worker:
      // running it here too could write a running record after that worker finished the job.
      if (!broker_->Live(d)) continue;
      auto claimed = ClaimOne(d, worker, lease_ms);
      if (!claimed.ok()) {
        // The store is not answering: keep the delivery for a later claim.
        absl::MutexLock lock(&mu_);
        ready_[model].push_front(std::move(d));
        if (out.empty()) return claimed.status();
        break;
      }
      if (*claimed) out.push_back(std::move(**claimed));
    }
    return out;
  }

  absl::Status Heartbeat(const std::string& id, const std::string& worker, int64_t lease_ms,
                         int step, int num_steps) override {
    // The broker is asked outside mu_: it has a lock of its own.
    Delivery probe;
    {
      absl::MutexLock lock(&mu_);
      auto it = active_.find(id);
      if (it == active_.end()) return NotHeld(id);
      probe.connection = it->second.delivery.connection;
    }
    const bool live = broker_->Live(probe);
    const bool connected = !live && broker_->Health().ok();
    int64_t run;
    {
      absl::MutexLock lock(&mu_);
      auto it = active_.find(id);
      if (it == active_.end()) return NotHeld(id);
      if (cancelled_.Contains(id)) {
        return absl::FailedPreconditionError(StrCat("job ", id, " was cancelled"));
      }
      Active& a = it->second;
      if (live || a.delivery.connection != probe.connection) {
        a.lost_since_ms = 0;  // live, or a claim took a redelivery meanwhile
      } else if (!StillHeld(a, connected)) {
        return absl::FailedPreconditionError(
            StrCat("job ", id, " went back to the broker when its connection closed and did not ",
                   "come back to this worker: another worker runs it"));
      }
      a.job.step = step;
      a.job.num_steps = num_steps;
      a.job.lease_until_ms = Now() + lease_ms;
      // Progress reaches the store at most twice a second: enough for GET, cheap for the store.
      if (step == a.written_step || Now() - a.written_ms < 500) return absl::OkStatus();
      a.written_step = step;
      a.written_ms = Now();
      run = a.job.started_ms;
    }
    const nlohmann::json progress = {{"run", run}, {"step", step}, {"num_steps", num_steps}};
    return Annotate(records()->Put(ProgressKey(id), progress.dump()),
                    StrCat("writing the progress of job ", id));
  }

  absl::Status Complete(const std::string& id, const std::string& worker,
                        const std::vector<std::string>& result_keys) override {
    KILN_ASSIGN_OR_RETURN(Active a, Take(id));
    absl::Cleanup unpark = [this, &a] { Unpark(a); };
    a.job.state = JobState::kSucceeded;
    a.job.result_keys = result_keys;
    a.job.finished_ms = Now();
    a.job.step = a.job.num_steps;
    a.job.error.clear();
    a.job.error_code.clear();
    if (auto written = WriteIf(a.job, a.version); !written.ok()) {
      return Unsettled(a, written.status());
    }
    broker_->Ack(a.delivery);
    (void)records()->Delete(ProgressKey(id));  // tidiness only: a final record ignores it
    return absl::OkStatus();
  }

  absl::StatusOr<Job> Fail(const std::string& id, const std::string& worker,
                           const std::string& error, const std::string& code,
                           bool retryable) override {
    KILN_ASSIGN_OR_RETURN(Active a, TakeLive(id));
    absl::Cleanup unpark = [this, &a] { Unpark(a); };
    a.job.error = error;
    a.job.error_code = code;
    if (retryable && a.job.attempts < a.job.spec.max_attempts) {
      a.job.state = JobState::kQueued;
      Requeue(a);
      return a.job;
    }
    a.job.state = JobState::kFailed;
    a.job.finished_ms = Now();
    if (auto written = WriteIf(a.job, a.version); !written.ok()) {
      return Unsettled(a, written.status());
    }
    broker_->Reject(a.delivery);  // to kiln.dead, for inspection
    return a.job;
  }

  absl::Status Release(const std::string& id, const std::string& worker) override {
    KILN_ASSIGN_OR_RETURN(Active a, TakeLive(id));
    absl::Cleanup unpark = [this, &a] { Unpark(a); };
    a.job.state = JobState::kQueued;
    a.job.attempts = std::max(0, a.job.attempts - 1);  // handing back is not an attempt
    Requeue(a);
    return absl::OkStatus();
  }

  absl::StatusOr<Job> Cancel(const std::string& id) override {
    KILN_ASSIGN_OR_RETURN(Job job, Get(id));
    if (IsFinal(job.state)) return job;
    // The marker reaches a worker that claims the job later; the event one that runs it now.
    KILN_RETURN_IF_ERROR(records()->Put(CancelKey(id), "{}"));
    (void)broker_->PublishEvent(StrCat("cancel.", id), "{}");
    if (job.state == JobState::kQueued) {
      // Read again now that the marker is there, and write only over that version: a worker
      // that claimed the job meanwhile owns the record (and may have finished the job already).
      KILN_ASSIGN_OR_RETURN(Record read, ReadJob(id));
      job = std::move(read.job);
      if (job.state == JobState::kQueued) {
        job.state = JobState::kCancelled;
        job.finished_ms = Now();
        auto written = WriteIf(job, read.version);
        if (written.ok()) return job;
        if (!absl::IsFailedPrecondition(written.status())) return written.status();
        KILN_ASSIGN_OR_RETURN(job, Get(id));  // claimed meanwhile: its worker finds the marker
      }
      if (!IsFinal(job.state)) job.cancel_requested = true;
      return job;
    } else {
      // A running job's record belongs to its worker, which records the cancel at the next
      // step boundary; writing it here could undo a Complete that lands meanwhile.
      job.cancel_requested = true;
    }
    return job;
  }

  absl::Status MarkCancelled(const std::string& id, const std::string& worker) override {
    KILN_ASSIGN_OR_RETURN(Active a, TakeLive(id));
    absl::Cleanup unpark = [this, &a] { Unpark(a); };
    a.job.state = JobState::kCancelled;
    a.job.finished_ms = Now();
    if (auto written = WriteIf(a.job, a.version); !written.ok()) {
      return Unsettled(a, written.status());
    }
    broker_->Ack(a.delivery);
    return absl::OkStatus();
  }

  absl::StatusOr<Job> Get(const std::string& id) override {
    KILN_ASSIGN_OR_RETURN(Record record, ReadJob(id));
    Job job = std::move(record.job);
    if (job.state == JobState::kRunning) {
      // Progress is best effort: a record without it still answers.
      auto progress = records()->Get(ProgressKey(id));
      if (progress.ok()) {
        const auto p = nlohmann::json::parse(*progress, nullptr, false);
        const auto number = [&p](const char* key) -> int64_t {
          auto it = p.find(key);
          return it != p.end() && it->is_number_integer() ? it->get<int64_t>() : -1;
        };
        // Progress of an earlier run (it started at another time) does not describe this one.
        if (p.is_object() && number("run") == job.started_ms && number("num_steps") > 0 &&
            number("num_steps") <= 1000000 && number("step") >= 0 &&
            number("step") <= number("num_steps")) {
          job.step = static_cast<int>(number("step"));
          job.num_steps = static_cast<int>(number("num_steps"));
        }
      }
    }
    return job;
  }

  absl::StatusOr<JobPage> List(const JobFilter& filter) override {
    // Scans the records newest first; bounded so that one page never reads the whole store.
    constexpr int kMaxReads = 2000;
    KILN_ASSIGN_OR_RETURN(std::vector<std::string> keys, records()->List("jobs/", 1000000));
    std::vector<std::string> ids;
    for (const std::string& k : keys) {
      constexpr std::string_view kSuffix = "/job.json";
      if (k.size() > 5 + kSuffix.size() &&
          k.compare(k.size() - kSuffix.size(), kSuffix.size(), kSuffix) == 0) {
        ids.push_back(k.substr(5, k.size() - 5 - kSuffix.size()));
      }
    }
    std::sort(ids.rbegin(), ids.rend());
    JobPage page;
    int reads = 0;
    for (const std::string& id : ids) {
      if (!filter.before.empty() && id >= filter.before) continue;
      if (++reads > kMaxReads) {
        page.has_more = true;
        break;
      }
      auto job = Get(id);
      if (!job.ok()) continue;
      if (filter.state && job->state != *filter.state) continue;
      if (!filter.model.empty() && job->spec.model != filter.model) continue;
      if (!filter.batch_id.empty() && job->spec.batch_id != filter.batch_id) continue;
      if (!filter.tenant.empty() && job->spec.tenant != filter.tenant) continue;
      if (static_cast<int>(page.jobs.size()) == filter.limit) {
        page.has_more = true;
        break;
      }
      page.jobs.push_back(std::move(*job));
    }
    return page;
  }

  absl::StatusOr<Batch> GetBatch(const std::string& id) override {
    KILN_ASSIGN_OR_RETURN(nlohmann::json b, ReadBatch(id));
    Batch batch;
    batch.id = b.value("id", id);
    batch.model = b.value("model", "");
    batch.created_ms = b.value("created_ms", int64_t{0});
    batch.total = b.value("total", 0);
    batch.metadata = b.value("metadata", "{}");
    return batch;
  }

  absl::StatusOr<std::map<JobState, int>> BatchCounts(const std::string& id) override {
    KILN_ASSIGN_OR_RETURN(nlohmann::json b, ReadBatch(id));
    std::map<JobState, int> counts;
    for (const auto& job_id : b.value("jobs", nlohmann::json::array())) {
      if (!job_id.is_string()) continue;
      KILN_ASSIGN_OR_RETURN(Job job, Get(job_id.get<std::string>()));
      ++counts[job.state];
    }
    return counts;
  }

  // The broker's unacked deliveries are the leases: a worker that dies returns its jobs.
  absl::StatusOr<std::vector<Job>> ExpireLeases(bool) override { return std::vector<Job>{}; }
  // Deadlines are checked when a job is claimed.
  absl::StatusOr<std::vector<Job>> ExpireDeadlines() override { return std::vector<Job>{}; }

  absl::StatusOr<ModelBacklog> Backlog(const std::string& model) override {
    KILN_ASSIGN_OR_RETURN(amqp::QueueStats stats, broker_->Stats(model));
    ModelBacklog b;
    absl::MutexLock lock(&mu_);
    b.queued = static_cast<int>(stats.ready) + static_cast<int>(ready_[model].size());
    for (const auto& [id, a] : active_) {
      if (a.job.spec.model == model) {
        ++b.running;
        b.running_cost += Remaining(a.job);
      }
    }
    // Jobs that other workers run, from their reports (a gateway runs none itself).
    const int64_t now = Now();
    for (auto it = worker_loads_.begin(); it != worker_loads_.end();) {
      if (it->second.expires_ms < now) {
        it = worker_loads_.erase(it);
        continue;
      }
      if (auto m = it->second.models.find(model); m != it->second.models.end()) {
        b.queued += m->second.queued;
        b.running += m->second.running;
        b.running_cost += m->second.running_seconds;
      }
      ++it;
    }
    b.queued_cost = b.queued * MeanCost(model);
    b.queued_by_class[PriorityClass::kAsync] = b.queued;
    b.queued_cost_by_class[PriorityClass::kAsync] = b.queued_cost;
    return b;
  }

  // Counting every job by state would read every record; the distributed mode does not.
  absl::StatusOr<std::map<JobState, int>> StateCounts(const std::string&) override {
    return absl::UnimplementedError("the distributed queue does not count jobs by state");
  }

  // Counting a tenant's jobs would read every record: the distributed mode does not, and
  // refuses the per-key limits that need it (ApiKeys, QuotaNeeds).
  absl::StatusOr<TenantWork> OpenWork(const std::string&) override {
    return absl::UnimplementedError("the distributed queue does not count a tenant's jobs");
  }

  absl::StatusOr<QueuePosition> Position(const Job& job) override {
    KILN_ASSIGN_OR_RETURN(amqp::QueueStats stats, broker_->Stats(job.spec.model));
    absl::MutexLock lock(&mu_);
    // FIFO: every ready message is about ahead of a queued job (an estimate, not an order).
    return QueuePosition{static_cast<int>(stats.ready),
                         static_cast<double>(stats.ready) * MeanCost(job.spec.model)};
  }

  absl::Status SetWebhookStatus(const std::string& id, const std::string& status_json) override {
    return Update(id, [&status_json](Job& job) {
      job.webhook_status = status_json;
      return true;
    });
  }

  absl::StatusOr<std::vector<Job>> PendingWebhooks() override { return std::vector<Job>{}; }

  absl::StatusOr<std::vector<std::string>> PurgeFinished(int64_t, int) override {
    return absl::UnimplementedError(
        "the distributed queue keeps no index of finished jobs: give the bucket a lifecycle "
        "rule that expires jobs/, batches/ and idempotency/ instead");
  }

  // A broker queue is FIFO: tenant weights have no effect in the distributed mode.
  absl::Status SetTenantWeight(const std::string&, double) override { return absl::OkStatus(); }
  absl::Status ClearTenantWeights() override { return absl::OkStatus(); }

  absl::Status Check() override { return broker_->Health(); }
  bool forwards_events() const override { return true; }
  void PublishEvent(const std::string& job_id, const std::string& event_json) override {
    (void)broker_->PublishEvent(StrCat("job.", job_id), event_json);
  }

 private:
  struct Active {
    Delivery delivery;
    Job job;
    std::string version;  // of the record as this worker last wrote it
    int written_step = -1;
    int64_t written_ms = 0;
    // The delivery's connection broke: since when this worker has been connected again without
    // the job coming back to it (0: not counting), and whether it gave the job up (StillHeld).
    int64_t lost_since_ms = 0;
    bool lost = false;
    std::optional<Delivery> parked;  // a redelivery that came back after the job was given up
  };

  store::BlobStore* records() { return options_.records; }
  int64_t Now() const { return options_.now_ms ? options_.now_ms() : UnixMillis(); }

  Job NewRecord(const NewJob& spec) {
    Job job;
    job.spec = spec;
    job.state = JobState::kQueued;
    job.created_ms = Now();
    job.seq = job.created_ms;
    return job;
  }

  // A job record and the version it was read at.
  struct Record {
    Job job;
    std::string version;
  };

  absl::StatusOr<Record> ReadJob(const std::string& id) {
    if (!store::CheckKey(JobRecordKey(id)).ok()) {
      return WithField(absl::NotFoundError(StrCat("no job '", id, "'")), "job_id");
    }
    auto read = records()->GetVersioned(JobRecordKey(id));
    if (absl::IsNotFound(read.status())) {
      return WithField(absl::NotFoundError(StrCat("no job '", id, "'")), "job_id");
    }
    if (!read.ok()) return read.status();
    KILN_ASSIGN_OR_RETURN(Job job, DecodeJobRecord(read->bytes));
    return Record{std::move(job), std::move(read->version)};
  }

  // Every write of a record is conditional on the version its writer read or wrote last (empty:
  // the record must not exist yet), so that a writer that lost a race, such as a worker whose
  // job went to another worker, can never overwrite the record of the one that has the job.
  // FailedPrecondition when another writer came first. Returns the new version.
  absl::StatusOr<std::string> WriteIf(const Job& job, const std::string& version) {
    auto written = records()->PutIf(JobRecordKey(job.id()), EncodeJobRecord(job), version);
    if (!written.ok()) {
      return Annotate(written.status(), StrCat("writing the record of job ", job.id()));
    }
    return written;
  }

  // Read, change, write conditionally; again (a few times) when another writer came between.
  // `change` returns false to leave the record as it is.
  absl::Status Update(const std::string& id, const std::function<bool(Job&)>& change) {
    for (int attempt = 0;; ++attempt) {
      KILN_ASSIGN_OR_RETURN(Record r, ReadJob(id));
      if (!change(r.job)) return absl::OkStatus();
      auto written = WriteIf(r.job, r.version);
      if (written.ok() || !absl::IsFailedPrecondition(written.status()) || attempt == 4) {
        return written.status();
      }
    }
  }

  // A run whose end could not be recorded. When another writer changed the record (another
  // worker claimed the job), the job is that worker's: this delivery is settled (the broker
  // drops it when its connection is gone) and the record stays theirs. Otherwise the store
  // failed: the message goes back to the broker, and the job runs again (or its cancel marker
  // or attempts settle it at the next claim).
  absl::Status Unsettled(Active& a, const absl::Status& error) {
    if (absl::IsFailedPrecondition(error)) {
      log::Warn("a job's record was changed by another worker; this run's end is not recorded",
                {{"job", a.job.id()}, {"error", error.ToString()}});
      broker_->Ack(a.delivery);
      return error;
    }
    broker_->Requeue(a.delivery);
    return error;
  }

  absl::StatusOr<nlohmann::json> ReadBatch(const std::string& id) {
    if (!store::CheckKey(BatchKey(id)).ok()) {
      return WithField(absl::NotFoundError(StrCat("no batch '", id, "'")), "batch_id");
    }
    auto text = records()->Get(BatchKey(id));
    if (absl::IsNotFound(text.status())) {
      return WithField(absl::NotFoundError(StrCat("no batch '", id, "'")), "batch_id");
    }
    if (!text.ok()) return text.status();
    auto b = nlohmann::json::parse(*text, nullptr, false);
    if (!b.is_object()) return absl::DataLossError(StrCat("the record of batch ", id, " is bad"));
    return b;
  }

  void NotePublished(const NewJob& spec) {
    absl::MutexLock lock(&mu_);
    auto& [count, sum] = published_cost_[spec.model];
    ++count;
    sum += spec.cost;
  }

  double MeanCost(const std::string& model) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = published_cost_.find(model);
    if (it == published_cost_.end() || it->second.first == 0) return 0;
    return it->second.second / static_cast<double>(it->second.first);
  }

  static absl::Status NotHeld(const std::string& id) {
    return absl::FailedPreconditionError(StrCat("this worker does not hold job ", id));
  }

  // Whether this worker still holds a job whose delivery's connection broke (the broker put the
  // message back in its queue). Most often the message comes back to this worker after it
  // reconnects: the run goes on with the new delivery. When it has not come back
  // redelivery_grace_ms after the reconnect, another worker has it; the run is then lost for
  // good (`lost`), and stops at its next step. A heartbeat that finds this worker disconnected
  // (when nothing could come back to it) restarts the clock.
  bool StillHeld(Active& a, bool connected) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (a.lost) return false;
    if (AdoptRedelivery(a)) return true;
    if (!connected) {
      a.lost_since_ms = 0;
      return true;
    }
    if (a.lost_since_ms == 0) a.lost_since_ms = Now();
    if (Now() - a.lost_since_ms < options_.redelivery_grace_ms) return true;
    a.lost = true;
    log::Warn("a running job went to another worker after a broker reconnect; stopping it here",
              {{"job", a.job.id()}});
    return false;
  }

  // A redelivery of the job that is waiting to be claimed: it replaces the dead delivery.
  bool AdoptRedelivery(Active& a) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto ready = ready_.find(a.job.spec.model);
    if (ready == ready_.end()) return false;
    const std::string id = a.job.id();
    for (auto d = ready->second.begin(); d != ready->second.end(); ++d) {
      if (d->body.find(id) == std::string::npos) continue;  // cheap test before decoding
      auto sent = DecodeJobRecord(d->body);
      if (!sent.ok() || sent->id() != id) continue;
      a.delivery = std::move(*d);
      ready->second.erase(d);
      a.lost_since_ms = 0;
      return true;
    }
    return false;
  }

  // Removes the job from this worker's runs. The caller settles it, then calls Unpark.
  absl::StatusOr<Active> Take(const std::string& id) {
    absl::MutexLock lock(&mu_);
    auto it = active_.find(id);
    if (it == active_.end()) return NotHeld(id);
    Active a = std::move(it->second);
    active_.erase(it);
    return a;
  }

  // Puts back a redelivery that came while a lost run was stopping (ClaimOne parked it), once
  // that run's end is written: the next claim runs the job again, or acks the message when that
  // run completed the job after all.
  void Unpark(Active& a) {
    if (!a.parked) return;
    const std::string model = a.parked->model;
    {
      absl::MutexLock lock(&mu_);
      ready_[model].push_front(std::move(*a.parked));
    }
    a.parked.reset();
    if (options_.on_available) options_.on_available(model);
  }

  // Take, for the writes that must not land once the job may be another worker's: when the
  // connection that delivered it broke, the broker gave the message to the next consumer, which
  // may have run the job to the end already. Requeueing would set that finished record back to
  // queued (and publish a second message); failing or cancelling would overwrite its result.
  // Refused, the job stays with whoever holds the redelivered message. (Complete still tries:
  // its write is conditional on the record this worker wrote, so it lands only when no other
  // worker has claimed the job since.)
  absl::StatusOr<Active> TakeLive(const std::string& id) {
    KILN_ASSIGN_OR_RETURN(Active a, Take(id));
    if (!broker_->Live(a.delivery)) {
      Unpark(a);
      return absl::FailedPreconditionError(
          StrCat("job ", id, " went back to the broker when its connection closed; the worker ",
                 "that holds it now records its end"));
    }
    return a;
  }

  // Puts the job back as a fresh message (so that handing back does not use up the broker's
  // delivery limit), then settles the old delivery.
  void Requeue(Active& a) {
    a.job.worker.clear();
    a.job.lease_until_ms = 0;
    auto written = WriteIf(a.job, a.version);
    if (absl::IsFailedPrecondition(written.status())) {
      (void)Unsettled(a, written.status());  // another worker's job now: nothing to hand back
      return;
    }
    absl::Status s = written.status();
    if (s.ok()) s = broker_->PublishJob(a.job.spec.model, EncodeJobRecord(a.job));
    if (s.ok()) {
      broker_->Ack(a.delivery);
    } else {
      log::Warn("requeueing through the broker", {{"job", a.job.id()}, {"error", s.ToString()}});
      broker_->Requeue(a.delivery);
    }
  }

  // Claims one delivery: nullopt when the job needs no run (done, cancelled, out of attempts),
  // an error when its record cannot be read or written now.
  absl::StatusOr<std::optional<Job>> ClaimOne(const Delivery& d, const std::string& worker,
                                              int64_t lease_ms) {
    auto sent = DecodeJobRecord(d.body);
    if (!sent.ok()) {
      log::Error("a job message is not a job record; dead-lettered",
                 {{"model", d.model}, {"error", sent.status().ToString()}});
      broker_->Reject(d);
      return std::nullopt;
    }
    const std::string id = sent->id();
    {
      absl::MutexLock lock(&mu_);
      if (auto it = active_.find(id); it != active_.end()) {
        // Redelivered after a reconnect while this worker still runs it: settle the new copy.
        // A run that gave the job up is stopping; the job runs again once it has (Take).
        if (it->second.lost) {
          it->second.parked = d;
        } else {
          it->second.delivery = d;
          it->second.lost_since_ms = 0;
        }
        return std::nullopt;
      }
    }
    // Another writer between this claim's read and its write (another worker with a duplicate
    // message, a cancel, the run that lost the job recording its end): read again.
    for (int attempt = 0;; ++attempt) {
      auto claimed = TryClaim(d, *sent, worker, lease_ms);
      if (claimed.ok() || !absl::IsFailedPrecondition(claimed.status()) || attempt == 4) {
        return claimed;
      }
    }
  }

  // One read and conditional write of ClaimOne.
  absl::StatusOr<std::optional<Job>> TryClaim(const Delivery& d, const Job& sent,
                                              const std::string& worker, int64_t lease_ms) {
    const std::string id = sent.id();
    auto current = ReadJob(id);
    if (absl::IsNotFound(current.status())) {
      current = Record{sent, ""};  // the record was lost: the message carries everything
    } else if (!current.ok()) {
      return current.status();
    }
    Job job = std::move(current->job);
    const std::string version = std::move(current->version);
    const int64_t now = Now();
    if (IsFinal(job.state)) {
      broker_->Ack(d);  // a duplicate message of a job that is done
      return std::nullopt;
    }
    KILN_ASSIGN_OR_RETURN(bool cancel, records()->Exists(CancelKey(id)));
    bool cancelled;
    {
      absl::MutexLock lock(&mu_);
      cancelled = cancel || cancelled_.Contains(id);
    }
    if (cancelled) {
      job.state = JobState::kCancelled;
      job.finished_ms = now;
      KILN_RETURN_IF_ERROR(WriteIf(job, version).status());
      broker_->Ack(d);
      return std::nullopt;
    }
    if (job.spec.deadline_ms > 0 && now > job.spec.deadline_ms && job.started_ms == 0) {
      job.state = JobState::kFailed;
      job.finished_ms = now;
      job.error = "the job's deadline passed before it could start";
      job.error_code = "deadline_exceeded";
      KILN_RETURN_IF_ERROR(WriteIf(job, version).status());
      broker_->Ack(d);
      return std::nullopt;
    }
    if (job.attempts >= job.spec.max_attempts) {
      // Every attempt ended with its worker gone (killed, or the machine lost).
      job.state = JobState::kFailed;
      job.finished_ms = now;
      job.error =
          StrCat("the job was started ", job.attempts, " times and its worker stopped each time");
      job.error_code = "worker_lost";
      KILN_RETURN_IF_ERROR(WriteIf(job, version).status());
      broker_->Reject(d);
      return std::nullopt;
    }
    job.state = JobState::kRunning;
    ++job.attempts;
    job.worker = worker;
    job.started_ms = now;
    job.lease_until_ms = now + lease_ms;
    job.step = 0;
    job.cancel_requested = false;
    KILN_ASSIGN_OR_RETURN(std::string written, WriteIf(job, version));
    absl::MutexLock lock(&mu_);
    Active& a = active_[id];
    a.delivery = d;
    a.job = job;
    a.version = std::move(written);
    a.written_step = 0;
    a.written_ms = now;
    return std::optional<Job>(std::move(job));
  }

  // Consumer thread: a job message arrived.
  void Received(Delivery d) {
    const std::string model = d.model;
    {
      absl::MutexLock lock(&mu_);
      ready_[model].push_back(std::move(d));
    }
    if (options_.on_available) options_.on_available(model);
  }

  // Device-seconds a running job still needs, from its estimate and its progress.
  static double Remaining(const Job& job) {
    if (job.num_steps <= 0) return job.spec.cost;
    return job.spec.cost * static_cast<double>(job.num_steps - job.step) / job.num_steps;
  }

  // Worker: publishes what it runs, per model, until the queue closes.
  void ReportLoad() {
    while (true) {
      nlohmann::json models = nlohmann::json::object();
      {
        absl::MutexLock lock(&mu_);
        if (mu_.AwaitWithTimeout(absl::Condition(&stop_),
                                 absl::Milliseconds(options_.load_report_ms))) {
          return;
        }
        for (const std::string& model : options_.consume) {
          // Prefetched but not claimed yet: no longer "ready" in the broker, not running either.
          models[model] = {{"queued", static_cast<int64_t>(ready_[model].size())},
                           {"running", 0},
                           {"running_seconds", 0.0}};
        }
        for (const auto& [id, a] : active_) {
          auto& m = models[a.job.spec.model];
          m["running"] = m.value("running", 0) + 1;
          m["running_seconds"] = m.value("running_seconds", 0.0) + Remaining(a.job);
        }
      }
      const nlohmann::json report = {{"ttl_ms", 3 * options_.load_report_ms}, {"models", models}};
      (void)broker_->PublishEvent(StrCat("load.", instance_), report.dump());
    }
  }

  // Consumer thread (gateways): a worker's load report.
  void LoadReport(const std::string& worker, const std::string& body) {
    // Anyone with access to the exchange can publish: every figure is type-checked and bounded.
    const auto r = nlohmann::json::parse(body, nullptr, false);
    if (!r.is_object() || !r.contains("models") || !r["models"].is_object()) return;
    const auto bounded = [](const nlohmann::json& o, const char* key, double max) {
      auto it = o.find(key);
      if (it == o.end() || !it->is_number()) return 0.0;
      const double v = it->get<double>();
      return std::isfinite(v) ? std::clamp(v, 0.0, max) : 0.0;
    };
    WorkerLoad load;
    load.expires_ms = Now() + static_cast<int64_t>(bounded(r, "ttl_ms", 3600000));
    if (r["models"].size() > 1000) return;
    for (const auto& [model, m] : r["models"].items()) {
      if (!m.is_object()) continue;
      load.models[model] = {static_cast<int>(bounded(m, "queued", 100000)),
                            static_cast<int>(bounded(m, "running", 100000)),
                            bounded(m, "running_seconds", 1e7)};
    }
    absl::MutexLock lock(&mu_);
    if (worker == instance_) return;
    if (load.expires_ms <= Now()) {
      worker_loads_.erase(worker);
    } else if (worker_loads_.size() < 10000 || worker_loads_.count(worker)) {
      worker_loads_[worker] = std::move(load);
    }
  }

  // Consumer thread: "cancel.<id>", "job.<id>" or "load.<worker>".
  void Event(const std::string& key, const std::string& body) {
    if (key.rfind("load.", 0) == 0) {
      LoadReport(key.substr(5), body);
      return;
    }
    if (key.rfind("cancel.", 0) == 0) {
      absl::MutexLock lock(&mu_);
      cancelled_.Add(key.substr(7));
      return;
    }
    if (key.rfind("job.", 0) == 0 && options_.on_event) options_.on_event(key.substr(4), body);
  }

  // Consumer thread: a message the broker dead-lettered. Jobs that are not final yet ran out of
  // deliveries (their workers kept dying before settling them).
  void DeadLetter(const std::string& body) {
    auto sent = DecodeJobRecord(body);
    if (!sent.ok()) return;
    bool failed = false;
    absl::Status s = Update(sent->id(), [this, &failed](Job& job) {
      if (IsFinal(job.state)) return false;
      // A duplicate message of a job a worker claimed moments ago: that run records the end.
      if (job.state == JobState::kRunning && job.lease_until_ms > Now()) return false;
      job.state = JobState::kFailed;
      job.finished_ms = Now();
      job.error = "the broker dead-lettered the job after too many deliveries";
      job.error_code = "worker_lost";
      failed = true;
      return true;
    });
    if (!s.ok()) {
      if (!absl::IsNotFound(s)) {
        log::Error("cannot record a dead-lettered job",
                   {{"job", sent->id()}, {"error", s.ToString()}});
      }
      return;
    }
    if (failed) log::Warn("job dead-lettered", {{"job", sent->id()}});
  }

  // What another worker reported, per model: jobs it prefetched but has not started, jobs it
  // runs, and the device-seconds those still need.
  struct ModelLoad {
    int queued = 0;
    int running = 0;
    double running_seconds = 0;
  };
  struct WorkerLoad {
    int64_t expires_ms = 0;
    std::map<std::string, ModelLoad> models;
  };

  const QueueOptions options_;
  const std::string instance_ = NewUlid();  // names this process's load reports
  std::unique_ptr<amqp::Broker> broker_;
  std::thread reporter_;

  absl::Mutex mu_;
  std::map<std::string, std::deque<Delivery>> ready_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Active> active_ ABSL_GUARDED_BY(mu_);
  CancelSet cancelled_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::pair<int64_t, double>> published_cost_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, WorkerLoad> worker_loads_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

absl::StatusOr<std::unique_ptr<JobQueue>> OpenAmqpQueue(std::string_view url, QueueOptions options,
                                                        BrokerFactory make_broker) {
  auto queue = std::make_unique<AmqpJobQueue>(std::move(options));
  KILN_RETURN_IF_ERROR(queue->Start(url, make_broker));
  return queue;
}

}  // namespace kiln::queue
