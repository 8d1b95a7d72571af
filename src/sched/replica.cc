#include "sched/replica.h"

#include <map>

#include "core/logging.h"
#include "core/strings.h"

namespace kiln::sched {
namespace {

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Whether the item is to stop here: it was cancelled, or (a sync item) its client closed its
// connection, which marks it cancelled and counted as client_gone.
bool StopRequested(WorkItem& item) {
  if (item.cancel) return true;
  if (!item.client_left || !item.client_left()) return false;
  item.client_gone = true;
  item.cancel = true;
  return true;
}

}  // namespace

Replica::Replica(int index, engine::Engine* engine, WorkSource* source, StepCostModel* cost,
                 ReplicaOptions options)
    : index_(index), engine_(engine), source_(source), cost_(cost), options_(options) {}

Replica::~Replica() { Stop(std::chrono::milliseconds(0)); }

void Replica::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void Replica::Stop(std::chrono::milliseconds grace) {
  if (!thread_.joinable()) return;
  stop_deadline_ns_ = NowNs() + std::chrono::nanoseconds(grace).count();
  stopping_ = true;
  thread_.join();
}

void Replica::Loop() {
  while (true) {
    if (stopping_) {
      if (running_.empty() || NowNs() >= stop_deadline_ns_) break;
    } else {
      // Request-level batching only admits into an empty batch.
      if (!options_.request_level || running_.empty()) Admit(running_.empty());
      if (running_.empty()) {
        // Next() returned nothing while idle: the source is stopping (or spuriously woke).
        if (stopping_) break;
        continue;
      }
    }
    StepAll();
  }
  // Hand back whatever did not finish within the grace period; jobs keep their progress in a
  // checkpoint taken at this step boundary, so that the next worker resumes them.
  while (!running_.empty()) {
    Running& r = running_.back();
    if (r.item->klass != queue::PriorityClass::kInteractive) {
      auto checkpoint = engine_->Checkpoint(*r.generation);
      if (checkpoint.ok()) {
        r.item->checkpoint = std::move(*checkpoint);
        r.item->checkpoint_step = r.generation->step();
      } else {
        log::Warn("cannot checkpoint a job; it will start over",
                  {{"job", r.item->id}, {"error", checkpoint.status().ToString()}});
      }
    }
    Retire(running_.size() - 1,
           absl::UnavailableError("the server stopped before the job finished; handed back"));
  }
}

void Replica::Admit(bool idle) {
  int free_rows = options_.max_rows - running_rows_.load();
  while (free_rows > 0 || (idle && running_.empty())) {
    WorkItemPtr item = source_->Next(free_rows, idle && running_.empty());
    if (!item) return;
    if (StopRequested(*item)) {
      source_->Finished(std::move(item), absl::CancelledError("cancelled by request"));
      continue;
    }
    const int64_t start_ns = obs::UnixNanos();
    absl::StatusOr<std::unique_ptr<engine::Generation>> generation;
    if (!item->resume_from.empty()) {
      generation = engine_->Resume(item->request, item->resume_from);
      if (generation.ok()) {
        item->resumed_from_step = (*generation)->step();
        log::Info("job resumed from its checkpoint",
                  {{"job", item->id}, {"step", item->resumed_from_step}});
      } else {
        log::Warn("cannot resume a job from its checkpoint; starting over",
                  {{"job", item->id}, {"error", generation.status().ToString()}});
      }
    }
    if (item->resumed_from_step < 0) generation = engine_->Start(item->request);
    const int64_t started_ns = obs::UnixNanos();
    if (Tracing(*item)) {
      options_.tracer->RecordChild(item->trace, "queue.wait", item->accepted_ms * 1000000, start_ns,
                                   {{"kiln.model", item->model}});
      // Start draws the initial noise, encodes the prompt and, for edits, the source image.
      options_.tracer->RecordChild(item->trace, "text.encode", start_ns, started_ns,
                                   {{"kiln.model", item->model}, {"kiln.replica", index_}},
                                   generation.ok() ? "" : generation.status().ToString());
    }
    if (!generation.ok()) {
      source_->Finished(std::move(item), generation.status());
      continue;
    }
    if (log::Enabled(log::Level::kDebug)) {
      log::Debug("generation started", {{"id", item->id},
                                        {"model", item->model},
                                        {"replica", index_},
                                        {"steps", item->request.steps},
                                        {"n", item->request.n},
                                        {"batch_rows", running_rows_.load()}});
    }
    item->num_steps = (*generation)->num_steps();
    item->step = (*generation)->step();
    const int rows = (*generation)->rows();
    running_rows_ += rows;
    ++running_items_;
    free_rows -= rows;
    running_.push_back({std::move(item), std::move(*generation), started_ns});
  }
}

void Replica::Retire(size_t index, absl::StatusOr<std::vector<engine::Image>> result) {
  Running r = std::move(running_[index]);
  running_.erase(running_.begin() + static_cast<std::ptrdiff_t>(index));
  running_rows_ -= r.generation->rows();
  --running_items_;
  if (Tracing(*r.item)) {
    options_.tracer->RecordChild(
        r.item->trace, "denoise", r.denoise_start_ns,
        r.denoise_end_ns ? r.denoise_end_ns : obs::UnixNanos(),
        {{"kiln.steps", static_cast<int64_t>(r.steps_run)},
         {"kiln.num_steps", static_cast<int64_t>(r.generation->num_steps())},
         {"kiln.batch_rows.max", static_cast<int64_t>(r.max_batch_rows)},
         {"kiln.batch_rows.mean",
          r.steps_run > 0 ? static_cast<double>(r.batch_rows_sum) / r.steps_run : 0.0},
         {"kiln.sampler", r.item->request.sampler.Name()},
         {"kiln.replica", index_}},
        result.ok() ? "" : result.status().ToString());
    if (r.denoise_end_ns) {
      options_.tracer->RecordChild(r.item->trace, "decode", r.denoise_end_ns, r.decode_end_ns,
                                   {{"kiln.images", static_cast<int64_t>(r.item->request.n)}});
    }
  }
  source_->Finished(std::move(r.item), std::move(result));
}

void Replica::StepAll() {
  // Cancellations take effect at the step boundary.
  for (size_t i = running_.size(); i-- > 0;) {
    if (StopRequested(*running_[i].item)) Retire(i, absl::CancelledError("cancelled by request"));
  }
  if (running_.empty()) return;
  // One denoiser call per latent shape.
  std::map<std::pair<int, int>, std::vector<size_t>> groups;
  for (size_t i = 0; i < running_.size(); ++i) {
    const ImageSize& s = running_[i].item->request.size;
    groups[{s.width, s.height}].push_back(i);
  }
  std::vector<size_t> failed;
  absl::Status failure;
  for (const auto& [size, members] : groups) {
    std::vector<engine::Generation*> batch;
    int rows = 0;
    for (size_t i : members) {
      batch.push_back(running_[i].generation.get());
      rows += running_[i].generation->rows();
    }
    const int64_t t0 = NowNs();
    absl::Status s = engine_->Step(batch);
    const double seconds = (NowNs() - t0) * 1e-9;
    if (!s.ok()) {
      log::Error("denoising step failed", {{"replica", index_}, {"error", s.ToString()}});
      failed.insert(failed.end(), members.begin(), members.end());
      failure = s;
      continue;
    }
    cost_->Observe(rows, static_cast<double>(size.first) * size.second, seconds);
    for (size_t i : members) {
      Running& r = running_[i];
      ++r.steps_run;
      r.batch_rows_sum += rows;
      r.max_batch_rows = std::max(r.max_batch_rows, rows);
    }
    if (options_.batch_rows) options_.batch_rows->Observe(rows);
    if (options_.step_seconds) options_.step_seconds->Observe(seconds);
  }
  for (size_t i = 0; i < running_.size(); ++i) {
    Running& r = running_[i];
    r.item->step = r.generation->step();
    source_->Progress(*r.item, *r.generation, *engine_);
  }
  // Retire failures and finished items, from the back so indices stay valid.
  for (size_t i = running_.size(); i-- > 0;) {
    if (std::find(failed.begin(), failed.end(), i) != failed.end()) {
      Retire(i, failure);
    } else if (running_[i].generation->done()) {
      running_[i].denoise_end_ns = obs::UnixNanos();
      auto images = engine_->Finish(*running_[i].generation);
      running_[i].decode_end_ns = obs::UnixNanos();
      Retire(i, std::move(images));
    }
  }
}

}  // namespace kiln::sched
