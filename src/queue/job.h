// Job: the durable record of one async request, as the queue stores it. Plain data.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::queue {

enum class JobState { kQueued = 0, kRunning = 1, kSucceeded = 2, kFailed = 3, kCancelled = 4 };

std::string_view JobStateName(JobState state);
std::optional<JobState> ParseJobState(std::string_view name);
inline bool IsFinal(JobState s) { return s != JobState::kQueued && s != JobState::kRunning; }

// Scheduling classes, served strictly in this order: interactive (sync requests, which never
// enter the durable queue), async jobs, batch jobs.
enum class PriorityClass { kInteractive = 0, kAsync = 1, kBatch = 2 };
std::string_view PriorityClassName(PriorityClass c);

inline constexpr int kMinPriority = -10;
inline constexpr int kMaxPriority = 10;

// What a caller supplies to enqueue a job.
struct NewJob {
  std::string id;  // a ULID chosen by the caller (so that inputs can be stored under it first)
  std::string model;
  std::string request;  // the validated request, as JSON
  PriorityClass klass = PriorityClass::kAsync;
  int priority = 0;  // within the class, higher first
  std::string tenant = "anonymous";
  double cost = 0;          // estimated device-seconds
  int64_t deadline_ms = 0;  // absolute Unix ms by which the job must have started; 0 = none
  std::string webhook;
  std::string idempotency_key;  // unique per tenant when non-empty
  std::string batch_id;
  int max_attempts = 3;
  std::string traceparent;  // W3C trace context of the request that made the job, or empty
};

struct Job {
  NewJob spec;
  int64_t seq = 0;  // enqueue order
  JobState state = JobState::kQueued;
  int attempts = 0;  // claims so far
  int64_t created_ms = 0;
  int64_t started_ms = 0;  // last claim
  int64_t finished_ms = 0;
  std::string worker;
  int64_t lease_until_ms = 0;
  int step = 0;
  int num_steps = 0;
  std::vector<std::string> result_keys;
  std::string error;
  std::string error_code;
  bool cancel_requested = false;
  std::string webhook_status;  // JSON object, empty until a delivery is attempted

  const std::string& id() const { return spec.id; }
};

}  // namespace kiln::queue
