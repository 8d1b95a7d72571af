#include "sched/scheduler.h"

#include <atomic>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <cmath>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "core/ids.h"
#include "core/logging.h"
#include "core/status_util.h"
#include "core/strings.h"
#include "sched/fair_queue.h"
#include "sched/replica.h"

namespace kiln::sched {
namespace {

int RetryAfter(double wait_seconds) {
  return static_cast<int>(std::clamp(std::ceil(wait_seconds), 1.0, 3600.0));
}

// In a spin-wait loop: lets the CPU save power and a hyperthread sibling run.
void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

}  // namespace

// Background threads shared by all lanes: maintenance, and the finisher pool that runs
// on_done (PNG encoding, store writes) off the replica threads.
struct Scheduler::Background {
  boost::asio::thread_pool finishers{2};
  absl::Mutex mu;
  bool stop ABSL_GUARDED_BY(mu) = false;
  std::thread maintenance;
};

struct Scheduler::Lane final : public WorkSource {
  std::string model;
  int max_rows = 8;
  std::vector<std::unique_ptr<engine::Pipeline>> extra_pipelines;
  std::vector<engine::Engine*> pipelines;
  std::vector<std::unique_ptr<Replica>> replicas;
  StepCostModel cost;
  queue::JobQueue* queue = nullptr;
  JobFeed* feed = nullptr;
  const SchedulerOptions* options = nullptr;
  boost::asio::thread_pool* finishers = nullptr;

  // Metrics for an item that ended (or was handed back at shutdown).
  void Count(const WorkItem& item, const absl::StatusOr<std::vector<engine::Image>>& result) {
    obs::KilnMetrics& m = *options->metrics;
    const std::string kind = item.klass == queue::PriorityClass::kInteractive ? "sync" : "job";
    std::string outcome = "failed";
    if (result.ok()) {
      outcome = "succeeded";
      m.images.With({model}).Inc(static_cast<double>(result->size()));
      if (item.accepted_ms > 0) {
        m.request_duration.With({model, kind})
            .Observe(static_cast<double>(UnixMillis() - item.accepted_ms) / 1000.0);
      }
    } else if (absl::IsCancelled(result.status())) {
      outcome = item.client_gone ? "client_gone" : "cancelled";
    } else if (absl::IsUnavailable(result.status())) {
      outcome = "handed_back";
    }
    m.requests_finished.With({model, kind, outcome}).Inc();
  }

  mutable absl::Mutex mu;
  FairQueue pending ABSL_GUARDED_BY(mu);
  std::map<std::string, WorkItemPtr> held ABSL_GUARDED_BY(mu);  // admitted, not yet done
  int waiting_sync ABSL_GUARDED_BY(mu) = 0;
  bool durable_hint ABSL_GUARDED_BY(mu) = true;  // the durable queue may hold work
  bool claiming ABSL_GUARDED_BY(mu) = false;
  bool stopping ABSL_GUARDED_BY(mu) = false;
  // Bumped, under mu, whenever HasWork() may have turned true: an idle replica that polls
  // before sleeping (SpinForWork) watches it without taking the lock.
  std::atomic<uint64_t> wakes{0};

  bool HasWork() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    return stopping || !pending.empty() || (durable_hint && !claiming && queue && feed);
  }

  // Remaining device-seconds of the items replicas are running.
  double RunningRemaining() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    double sum = 0;
    for (const auto& [id, item] : held) {
      const int n = item->num_steps.load();
      if (n > 0) sum += item->cost * (1.0 - static_cast<double>(item->step.load()) / n);
    }
    return sum;
  }

  int replica_count() const { return std::max<int>(1, static_cast<int>(pipelines.size())); }

  WorkItemPtr Next(int free_rows, bool idle) override {
    std::chrono::steady_clock::time_point spin_until{};
    mu.Lock();
    while (true) {
      if (stopping) break;
      auto fits = [&](const WorkItem& w) { return idle || w.rows <= free_rows; };
      // Only the first item in service order may start: letting smaller ones pass it whenever
      // it does not fit the free rows would starve it under steady load.
      if (WorkItemPtr item = pending.PopFrontIf(fits)) {
        if (item->klass == queue::PriorityClass::kInteractive) --waiting_sync;
        mu.Unlock();
        return item;
      }
      if (pending.empty() && durable_hint && !claiming && queue && feed) {
        claiming = true;
        const int want = std::clamp(free_rows / 2, 1, 16);
        mu.Unlock();
        std::vector<WorkItemPtr> loaded;
        auto jobs = queue->Claim(model, want, options->worker_id, options->lease.count());
        if (jobs.ok()) {
          for (const queue::Job& job : *jobs) {
            auto item = feed->Load(job);
            if (item.ok()) {
              loaded.push_back(std::move(*item));
              continue;
            }
            log::Error("cannot load a claimed job",
                       {{"job", job.id()}, {"error", item.status().ToString()}});
            auto failed = queue->Fail(job.id(), options->worker_id,
                                      std::string(item.status().message()), "invalid_job", false);
            if (failed.ok()) feed->Changed(*failed);
          }
        } else {
          log::Error("claiming jobs failed",
                     {{"model", model}, {"error", jobs.status().ToString()}});
        }
        mu.Lock();
        claiming = false;
        ++wakes;  // another idle replica may take what was loaded
        if (!jobs.ok() || static_cast<int>(jobs->size()) < want) durable_hint = false;
        for (WorkItemPtr& item : loaded) {
          item->rows = item->request.n * engine::RowsPerImage(item->request);
          held[item->id] = item;
          pending.Push(std::move(item));
        }
        continue;
      }
      if (!idle) break;
      if (spin_until == std::chrono::steady_clock::time_point{}) {
        spin_until = std::chrono::steady_clock::now() + options->idle_spin;
      }
      if (SpinForWork(spin_until)) continue;
      mu.AwaitWithTimeout(absl::Condition(this, &Lane::HasWork), absl::Seconds(1));
    }
    mu.Unlock();
    return nullptr;
  }

  // Polls `wakes` with mu released until it changes (true) or `until` passes (false).
  bool SpinForWork(std::chrono::steady_clock::time_point until) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    if (std::chrono::steady_clock::now() >= until) return false;
    const uint64_t seen = wakes.load();
    mu.Unlock();
    bool woken = false;
    for (int i = 0;; ++i) {
      if (wakes.load() != seen) {
        woken = true;
        break;
      }
      // The clock is read every 64 polls: reading it costs more than a poll.
      if (i % 64 == 63 && std::chrono::steady_clock::now() >= until) break;
      CpuRelax();
    }
    mu.Lock();
    return woken;
  }

  void Finished(WorkItemPtr item, absl::StatusOr<std::vector<engine::Image>> result) override {
    if (options->metrics) Count(*item, result);
    if (item->inline_done) {
      if (item->on_done) item->on_done(*item, std::move(result));
      Unhold(*item);
      return;
    }
    boost::asio::post(*finishers, [this, item = std::move(item), result = std::move(result)] {
      if (item->on_done) item->on_done(*item, result);
      Unhold(*item);
    });
  }

  // Forgets a finished item. The same job may be held again already: a run that lost its job
  // (a broker reconnect gave it to another worker) ends after the job came back to this worker.
  void Unhold(const WorkItem& item) {
    absl::MutexLock lock(&mu);
    auto it = held.find(item.id);
    if (it != held.end() && it->second.get() == &item) held.erase(it);
  }

  void Progress(WorkItem& item, const engine::Generation& generation,
                engine::Engine& pipeline) override {
    if (!item.on_progress) return;
    if (item.wants_preview && item.wants_preview()) {
      auto preview = pipeline.Preview(generation);
      item.on_progress(item, preview.ok() ? &*preview : nullptr);
    } else {
      item.on_progress(item, nullptr);
    }
  }

  // Runs a few steps of a small request to load kernels and calibrate the cost model.
  absl::Status WarmUp(engine::Engine& pipeline) {
    const engine::ModelSpec& spec = pipeline.spec();
    engine::GenerationRequest r;
    r.prompt = "warm up";
    r.steps = 4;
    r.size = spec.sizes.front();
    r.guidance_scale = spec.defaults.guidance_scale;
    KILN_ASSIGN_OR_RETURN(r.sampler, engine::ParseSamplerName(spec.defaults.sampler));
    if (!spec.supports_generate) {
      // An edit-only model (InstructPix2Pix) warms up on an edit of a grey picture.
      engine::Image grey{r.size.width, r.size.height,
                         std::vector<uint8_t>(size_t(r.size.width) * r.size.height * 3, 128)};
      r.conditioning = engine::InstructEdit{std::move(grey), spec.defaults.image_guidance_scale};
    }
    for (int n : {1, std::max(1, max_rows / engine::RowsPerImage(r))}) {
      r.n = std::min(n, 10);
      KILN_ASSIGN_OR_RETURN(auto gen, pipeline.Start(r));
      engine::Generation* batch[] = {gen.get()};
      for (int s = 0; s < r.steps; ++s) {
        const auto t0 = std::chrono::steady_clock::now();
        KILN_RETURN_IF_ERROR(pipeline.Step(batch));
        const double dt =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        // The first steps include one-time compilation; they are not typical.
        if (s >= 2) cost.Observe(gen->rows(), double(r.size.width) * r.size.height, dt);
      }
      KILN_RETURN_IF_ERROR(pipeline.Finish(*gen).status());
      if (n == 1 && max_rows / engine::RowsPerImage(r) <= 1) break;
    }
    // Without guidance a request encodes one prompt and brings one row per image: shapes the
    // runs above may not have used, and TorchScript specialises on first use.
    if (r.guidance_scale != 1.0 && spec.supports_generate) {
      r.n = 1;
      r.guidance_scale = 1.0;
      KILN_ASSIGN_OR_RETURN(auto gen, pipeline.Start(r));
      engine::Generation* batch[] = {gen.get()};
      KILN_RETURN_IF_ERROR(pipeline.Step(batch));
    }
    return absl::OkStatus();
  }
};

Scheduler::Scheduler(engine::ModelRepository* models, queue::JobQueue* queue, JobFeed* feed,
                     SchedulerOptions options)
    : models_(models),
      queue_(queue),
      feed_(feed),
      options_(std::move(options)),
      background_(std::make_unique<Background>()) {}

Scheduler::~Scheduler() { Stop(std::chrono::milliseconds(0)); }

absl::Status Scheduler::Start() {
  for (const engine::ModelEntry& entry : models_->entries()) {
    if (!entry.status.ok()) continue;
    auto lane = std::make_unique<Lane>();
    lane->model = entry.name;
    lane->queue = queue_;
    lane->feed = feed_;
    lane->options = &options_;
    lane->finishers = &background_->finishers;
    const engine::ModelSpec& spec = entry.spec;
    lane->max_rows = options_.max_batch_rows > 0 ? options_.max_batch_rows : spec.max_batch;
    if (!entry.pipeline) {
      // A gateway: the lane prices and admits jobs; workers run them.
      lanes_[entry.name] = std::move(lane);
      continue;
    }
    lane->pipelines.push_back(entry.pipeline.get());
    for (int i = 1; i < options_.replicas; ++i) {
      // Native models share their weights between replicas; TorchScript ones load a copy.
      KILN_ASSIGN_OR_RETURN(auto p, entry.pipeline->Replicate());
      lane->pipelines.push_back(p.get());
      lane->extra_pipelines.push_back(std::move(p));
    }
    for (engine::Engine* p : lane->pipelines) {
      KILN_RETURN_IF_ERROR(Annotate(lane->WarmUp(*p), StrCat("warming up model ", entry.name)));
    }
    for (size_t i = 0; i < lane->pipelines.size(); ++i) {
      ReplicaOptions ro;
      ro.max_rows = lane->max_rows;
      ro.request_level = options_.request_level;
      ro.tracer = options_.tracer;
      if (options_.metrics) {
        ro.batch_rows = &options_.metrics->batch_rows.With({entry.name});
        ro.step_seconds = &options_.metrics->step_duration.With({entry.name});
      }
      lane->replicas.push_back(std::make_unique<Replica>(static_cast<int>(i), lane->pipelines[i],
                                                         lane.get(), &lane->cost, ro));
    }
    log::Info("model lane ready",
              {{"model", entry.name},
               {"replicas", lane->pipelines.size()},
               {"max_rows", lane->max_rows},
               {"seconds_per_row_pixel", lane->cost.SecondsPerRowPixel(lane->max_rows)}});
    lanes_[entry.name] = std::move(lane);
  }
  for (auto& [name, lane] : lanes_) {
    for (auto& r : lane->replicas) r->Start();
  }
  background_->maintenance = std::thread([this] { Maintain(); });
  return absl::OkStatus();
}

void Scheduler::Stop(std::chrono::milliseconds grace) {
  {
    absl::MutexLock lock(&background_->mu);
    if (background_->stop) return;
    background_->stop = true;
  }
  const auto deadline = std::chrono::steady_clock::now() + grace;
  for (auto& [name, lane] : lanes_) {
    absl::MutexLock lock(&lane->mu);
    lane->stopping = true;
    ++lane->wakes;
  }
  for (auto& [name, lane] : lanes_) {
    for (auto& r : lane->replicas) {
      r->Stop(std::chrono::duration_cast<std::chrono::milliseconds>(
          std::max(deadline - std::chrono::steady_clock::now(), std::chrono::nanoseconds(0))));
    }
    // Items still waiting never started: hand them back.
    std::vector<WorkItemPtr> left;
    {
      absl::MutexLock lock(&lane->mu);
      while (WorkItemPtr item = lane->pending.PopIf([](const WorkItem&) { return true; })) {
        left.push_back(std::move(item));
      }
    }
    for (WorkItemPtr& item : left) {
      lane->Finished(std::move(item),
                     absl::UnavailableError("the server stopped before the request started"));
    }
  }
  if (background_->maintenance.joinable()) background_->maintenance.join();
  background_->finishers.join();
}

absl::StatusOr<double> Scheduler::EstimateCost(const std::string& model,
                                               const engine::GenerationRequest& request) const {
  auto it = lanes_.find(model);
  if (it == lanes_.end()) {
    return WithField(absl::NotFoundError(StrCat("model '", model, "' is not being served")),
                     "model");
  }
  const Lane& lane = *it->second;
  int steps = request.steps;
  if (const auto* i2i = std::get_if<engine::ImageToImage>(&request.conditioning)) {
    steps = std::clamp(static_cast<int>(request.steps * i2i->strength), 1, request.steps);
  }
  const int rows = request.n * engine::RowsPerImage(request);
  return lane.cost.Cost(steps, rows, double(request.size.width) * request.size.height,
                        lane.max_rows);
}

absl::Status Scheduler::SubmitSync(WorkItemPtr item, int64_t deadline_ms) {
  auto it = lanes_.find(item->model);
  if (it == lanes_.end()) {
    return WithField(absl::NotFoundError(StrCat("model '", item->model, "' is not being served")),
                     "model");
  }
  Lane& lane = *it->second;
  if (lane.pipelines.empty()) {
    return absl::UnavailableError(StrCat("this server runs no replica of model '", item->model,
                                         "'; submit an async job (POST /v1/jobs)"));
  }
  item->rows = item->request.n * engine::RowsPerImage(item->request);
  absl::MutexLock lock(&lane.mu);
  if (lane.stopping) return absl::UnavailableError("the server is shutting down");
  const double wait =
      (lane.pending.CostAhead(queue::PriorityClass::kInteractive) + lane.RunningRemaining()) /
      lane.replica_count();
  if (lane.waiting_sync >= options_.max_queued_sync) {
    return WithRetryAfter(absl::ResourceExhaustedError(StrCat(
                              "too many requests are waiting for model '", item->model, "' (",
                              lane.waiting_sync, "); retry later or submit an async job")),
                          RetryAfter(wait));
  }
  if (deadline_ms > 0 && UnixMillis() + (wait + item->cost) * 1000.0 > deadline_ms) {
    return WithRetryAfter(WithField(absl::ResourceExhaustedError(StrCat(
                                        "the deadline cannot be met: the predicted wait is ", wait,
                                        " s and the request takes about ", item->cost, " s")),
                                    "deadline_ms"),
                          RetryAfter(wait));
  }
  ++lane.waiting_sync;
  lane.held[item->id] = item;
  lane.pending.Push(std::move(item));
  ++lane.wakes;
  return absl::OkStatus();
}

absl::Status Scheduler::AdmitJob(const std::string& model, queue::PriorityClass klass, double cost,
                                 int64_t deadline_ms, int count) {
  auto it = lanes_.find(model);
  if (it == lanes_.end()) {
    return WithField(absl::NotFoundError(StrCat("model '", model, "' is not being served")),
                     "model");
  }
  if (!queue_) return absl::FailedPreconditionError("this server has no job queue");
  Lane& lane = *it->second;
  KILN_ASSIGN_OR_RETURN(queue::ModelBacklog backlog, queue_->Backlog(model));
  double wait;
  {
    absl::MutexLock lock(&lane.mu);
    if (lane.stopping) return absl::UnavailableError("the server is shutting down");
    wait = (backlog.queued_cost + lane.pending.total_cost() + lane.RunningRemaining()) /
           lane.replica_count();
  }
  if (backlog.queued + count > options_.max_queued_jobs) {
    return WithRetryAfter(
        absl::ResourceExhaustedError(
            StrCat("the queue for model '", model, "' holds ", backlog.queued, " jobs; ", count,
                   " more would pass its bound of ", options_.max_queued_jobs, "; retry later")),
        RetryAfter(wait));
  }
  if (deadline_ms > 0 && UnixMillis() + (wait + cost) * 1000.0 > deadline_ms) {
    return WithRetryAfter(WithField(absl::ResourceExhaustedError(
                                        StrCat("the deadline cannot be met: the predicted wait is ",
                                               wait, " s and the job takes about ", cost, " s")),
                                    "deadline_ms"),
                          RetryAfter(wait));
  }
  (void)klass;
  return absl::OkStatus();
}

void Scheduler::NotifyQueued(const std::string& model) {
  auto it = lanes_.find(model);
  if (it == lanes_.end()) return;
  absl::MutexLock lock(&it->second->mu);
  it->second->durable_hint = true;
  ++it->second->wakes;
}

absl::Status Scheduler::SetTenantWeights(const std::map<std::string, double>& weights) {
  for (const auto& [tenant, weight] : weights) {
    if (!(weight > 0) || weight > 1e6) {
      return InvalidField("weight", "a tenant weight must be in (0, 1000000]");
    }
  }
  for (auto& [name, lane] : lanes_) {
    absl::MutexLock lock(&lane->mu);
    lane->pending.ClearWeights();
    for (const auto& [tenant, weight] : weights) lane->pending.SetWeight(tenant, weight);
  }
  if (!queue_) return absl::OkStatus();
  KILN_RETURN_IF_ERROR(queue_->ClearTenantWeights());
  for (const auto& [tenant, weight] : weights) {
    KILN_RETURN_IF_ERROR(queue_->SetTenantWeight(tenant, weight));
  }
  return absl::OkStatus();
}

bool Scheduler::Cancel(const std::string& id) {
  for (auto& [name, lane] : lanes_) {
    WorkItemPtr removed;
    {
      absl::MutexLock lock(&lane->mu);
      auto h = lane->held.find(id);
      if (h == lane->held.end()) continue;
      h->second->cancel = true;
      removed = lane->pending.Remove(id);
      if (removed && removed->klass == queue::PriorityClass::kInteractive) --lane->waiting_sync;
    }
    // A waiting item never reaches a replica: finish it here.
    if (removed) lane->Finished(std::move(removed), absl::CancelledError("cancelled by request"));
    return true;
  }
  return false;
}

std::optional<LiveProgress> Scheduler::Progress(const std::string& id) const {
  for (const auto& [name, lane] : lanes_) {
    absl::MutexLock lock(&lane->mu);
    auto h = lane->held.find(id);
    if (h != lane->held.end()) return LiveProgress{h->second->step, h->second->num_steps};
  }
  return std::nullopt;
}

absl::StatusOr<Estimate> Scheduler::EstimateJob(const queue::Job& job) {
  auto it = lanes_.find(job.spec.model);
  if (it == lanes_.end()) return Estimate{job.spec.cost, 0, 0};
  Lane& lane = *it->second;
  Estimate e;
  e.cost_seconds = job.spec.cost;
  if (job.state == queue::JobState::kQueued && queue_) {
    KILN_ASSIGN_OR_RETURN(queue::QueuePosition pos, queue_->Position(job));
    absl::MutexLock lock(&lane.mu);
    e.queue_position = pos.ahead + static_cast<int>(lane.pending.size());
    e.wait_seconds =
        (pos.cost_ahead + lane.pending.CostAhead(job.spec.klass) + lane.RunningRemaining()) /
        lane.replica_count();
  } else if (job.state == queue::JobState::kRunning) {
    if (auto p = Progress(job.id()); p && p->num_steps > 0) {
      e.cost_seconds = job.spec.cost * (1.0 - static_cast<double>(p->step) / p->num_steps);
    }
  }
  return e;
}

std::vector<ModelLoad> Scheduler::Loads() const {
  std::vector<ModelLoad> out;
  for (const auto& [name, lane] : lanes_) {
    absl::MutexLock lock(&lane->mu);
    ModelLoad l;
    l.model = name;
    l.replicas = static_cast<int>(lane->pipelines.size());
    l.waiting_sync = lane->waiting_sync;
    l.held = static_cast<int>(lane->held.size());
    for (const auto& r : lane->replicas) l.running += r->running_items();
    l.running_remaining_seconds = lane->RunningRemaining();
    l.waiting_sync_seconds = lane->pending.CostAhead(queue::PriorityClass::kInteractive);
    l.seconds_per_row_pixel = lane->cost.SecondsPerRowPixel(lane->max_rows);
    l.steps_observed = lane->cost.observations();
    out.push_back(l);
  }
  return out;
}

void Scheduler::Maintain() {
  while (true) {
    {
      absl::MutexLock lock(&background_->mu);
      background_->mu.AwaitWithTimeout(absl::Condition(&background_->stop),
                                       absl::Milliseconds(options_.maintenance_interval.count()));
      if (background_->stop) return;
    }
    if (!queue_) continue;
    for (auto& [name, lane] : lanes_) {
      std::vector<WorkItemPtr> leased;
      {
        absl::MutexLock lock(&lane->mu);
        for (const auto& [id, item] : lane->held) {
          if (item->klass != queue::PriorityClass::kInteractive) leased.push_back(item);
        }
        lane->durable_hint = true;  // cheap re-check; also catches jobs requeued elsewhere
        ++lane->wakes;
      }
      for (const WorkItemPtr& item : leased) {
        absl::Status s = queue_->Heartbeat(item->id, options_.worker_id, options_.lease.count(),
                                           item->step, item->num_steps);
        if (!s.ok() && absl::IsFailedPrecondition(s)) {
          // The lease is gone (cancelled, or expired while we were stalled): stop the work.
          item->cancel = true;
        }
      }
    }
    auto expired = queue_->ExpireLeases(false);
    if (expired.ok()) {
      for (const queue::Job& j : *expired) {
        if (feed_) feed_->Changed(j);
        if (j.state == queue::JobState::kQueued) NotifyQueued(j.spec.model);
      }
    }
    auto late = queue_->ExpireDeadlines();
    if (late.ok() && feed_) {
      for (const queue::Job& j : *late) feed_->Changed(j);
    }
  }
}

}  // namespace kiln::sched
