// JobEvents: the in-process hub that carries a job's events (queued, started, progress with
// optional previews, and the final state) to the streams that follow it (SSE clients).
// Streams are bounded: when a slow reader falls behind, old progress events are dropped,
// never state changes. Thread-safe.
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"

namespace kiln::sched {

struct JobEvent {
  std::string name;  // SSE event name; empty for a keep-alive comment
  std::string data;  // JSON
  bool final = false;
};

class JobEvents;

// One subscriber's view of one job.
class EventStream {
 public:
  // Delivers the next event, or nullopt after the final one (or on shutdown). One outstanding
  // call at a time; `deliver` may run on the publishing thread.
  void Next(std::function<void(std::optional<JobEvent>)> deliver);
  void Close();  // the reader went away
  bool previews() const { return previews_; }

 private:
  friend class JobEvents;
  EventStream(JobEvents* hub, std::string job_id, bool previews)
      : hub_(hub), job_id_(std::move(job_id)), previews_(previews) {}
  // Queues an event; returns the deliver callback to run (outside the lock) if one waited.
  void Push(JobEvent event);

  JobEvents* const hub_;
  const std::string job_id_;
  const bool previews_;
  absl::Mutex mu_;
  std::deque<JobEvent> events_ ABSL_GUARDED_BY(mu_);
  std::function<void(std::optional<JobEvent>)> waiting_ ABSL_GUARDED_BY(mu_);
  bool ended_ ABSL_GUARDED_BY(mu_) = false;    // final event queued, or shut down
  bool drained_ ABSL_GUARDED_BY(mu_) = false;  // nullopt delivered
};

class JobEvents {
 public:
  explicit JobEvents(size_t max_streams = 10000) : max_streams_(max_streams) {}
  ~JobEvents();

  // Follows `job_id`; null when the stream limit is reached.
  std::shared_ptr<EventStream> Subscribe(const std::string& job_id, bool previews);
  // Sends `event` to every stream of the job; a final event ends them.
  void Publish(const std::string& job_id, const JobEvent& event);
  bool HasSubscribers(const std::string& job_id) const;
  bool WantsPreviews(const std::string& job_id) const;
  // Sends a keep-alive comment to every stream (so dead connections are found).
  void Keepalive();
  // Ends every stream; later subscriptions end at once.
  void Shutdown();
  size_t streams() const;

 private:
  friend class EventStream;
  void Unsubscribe(const std::string& job_id, const EventStream* stream);

  const size_t max_streams_;
  mutable absl::Mutex mu_;
  std::map<std::string, std::vector<std::weak_ptr<EventStream>>> streams_ ABSL_GUARDED_BY(mu_);
  size_t count_ ABSL_GUARDED_BY(mu_) = 0;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace kiln::sched
