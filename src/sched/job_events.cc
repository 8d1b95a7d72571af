#include "sched/job_events.h"

#include <algorithm>

namespace kiln::sched {
namespace {
constexpr size_t kMaxQueuedEvents = 256;
}  // namespace

void EventStream::Next(std::function<void(std::optional<JobEvent>)> deliver) {
  std::optional<JobEvent> event;
  bool end = false;
  {
    absl::MutexLock lock(&mu_);
    if (!events_.empty()) {
      event = std::move(events_.front());
      events_.pop_front();
    } else if (ended_ && !drained_) {
      drained_ = true;
      end = true;
    } else if (!drained_) {
      waiting_ = std::move(deliver);
      return;
    } else {
      end = true;
    }
  }
  if (end) {
    deliver(std::nullopt);
  } else {
    deliver(std::move(event));
  }
}

void EventStream::Push(JobEvent event) {
  std::function<void(std::optional<JobEvent>)> deliver;
  {
    absl::MutexLock lock(&mu_);
    if (ended_) return;
    if (event.final) ended_ = true;
    if (waiting_) {
      deliver = std::move(waiting_);
      waiting_ = nullptr;
    } else {
      if (events_.size() >= kMaxQueuedEvents) {
        // Drop the oldest progress event; state changes are few and always kept.
        auto it = std::find_if(events_.begin(), events_.end(), [](const JobEvent& e) {
          return e.name == "progress" || e.name.empty();
        });
        if (it != events_.end()) events_.erase(it);
      }
      events_.push_back(std::move(event));
      return;
    }
  }
  deliver(std::move(event));
}

void EventStream::Close() {
  std::function<void(std::optional<JobEvent>)> deliver;
  {
    absl::MutexLock lock(&mu_);
    ended_ = true;
    drained_ = true;
    events_.clear();
    deliver = std::move(waiting_);
    waiting_ = nullptr;
  }
  hub_->Unsubscribe(job_id_, this);
  if (deliver) deliver(std::nullopt);
}

JobEvents::~JobEvents() { Shutdown(); }

std::shared_ptr<EventStream> JobEvents::Subscribe(const std::string& job_id, bool previews) {
  std::shared_ptr<EventStream> stream(new EventStream(this, job_id, previews));
  absl::MutexLock lock(&mu_);
  if (shut_down_) {
    absl::MutexLock stream_lock(&stream->mu_);
    stream->ended_ = true;
    return stream;
  }
  if (count_ >= max_streams_) return nullptr;
  streams_[job_id].push_back(stream);
  ++count_;
  return stream;
}

void JobEvents::Unsubscribe(const std::string& job_id, const EventStream* stream) {
  absl::MutexLock lock(&mu_);
  auto it = streams_.find(job_id);
  if (it == streams_.end()) return;
  auto& v = it->second;
  const size_t before = v.size();
  v.erase(std::remove_if(v.begin(), v.end(),
                         [&](const std::weak_ptr<EventStream>& w) {
                           auto s = w.lock();
                           return !s || s.get() == stream;
                         }),
          v.end());
  count_ -= before - v.size();
  if (v.empty()) streams_.erase(it);
}

void JobEvents::Publish(const std::string& job_id, const JobEvent& event) {
  std::vector<std::shared_ptr<EventStream>> targets;
  {
    absl::MutexLock lock(&mu_);
    auto it = streams_.find(job_id);
    if (it == streams_.end()) return;
    for (auto& w : it->second) {
      if (auto s = w.lock()) targets.push_back(std::move(s));
    }
    if (event.final) {
      count_ -= it->second.size();
      streams_.erase(it);
    }
  }
  for (auto& s : targets) s->Push(event);
}

bool JobEvents::HasSubscribers(const std::string& job_id) const {
  absl::MutexLock lock(&mu_);
  return streams_.count(job_id) > 0;
}

bool JobEvents::WantsPreviews(const std::string& job_id) const {
  absl::MutexLock lock(&mu_);
  auto it = streams_.find(job_id);
  if (it == streams_.end()) return false;
  for (const auto& w : it->second) {
    if (auto s = w.lock(); s && s->previews()) return true;
  }
  return false;
}

void JobEvents::Keepalive() {
  std::vector<std::shared_ptr<EventStream>> targets;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [id, v] : streams_) {
      for (auto& w : v) {
        if (auto s = w.lock()) targets.push_back(std::move(s));
      }
    }
  }
  for (auto& s : targets) s->Push(JobEvent{"", "", false});
}

void JobEvents::Shutdown() {
  std::vector<std::shared_ptr<EventStream>> targets;
  {
    absl::MutexLock lock(&mu_);
    shut_down_ = true;
    for (auto& [id, v] : streams_) {
      for (auto& w : v) {
        if (auto s = w.lock()) targets.push_back(std::move(s));
      }
    }
    streams_.clear();
    count_ = 0;
  }
  for (auto& s : targets) s->Push(JobEvent{"end", R"({"reason":"server shutting down"})", true});
}

size_t JobEvents::streams() const {
  absl::MutexLock lock(&mu_);
  return count_;
}

}  // namespace kiln::sched
