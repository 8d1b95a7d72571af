#include "queue/job_queue.h"

#include "core/status_util.h"
#include "core/strings.h"
#include "nlohmann/json.hpp"
#include "queue/amqp/amqp_queue.h"

namespace kiln::queue {

// Defined in sqlite/sqlite_queue.cc.
absl::StatusOr<std::unique_ptr<JobQueue>> OpenSqliteQueue(const std::string& path,
                                                          QueueOptions options);

std::string_view JobStateName(JobState state) {
  switch (state) {
    case JobState::kQueued:
      return "queued";
    case JobState::kRunning:
      return "running";
    case JobState::kSucceeded:
      return "succeeded";
    case JobState::kFailed:
      return "failed";
    case JobState::kCancelled:
      return "cancelled";
  }
  return "unknown";
}

std::optional<JobState> ParseJobState(std::string_view name) {
  for (JobState s : {JobState::kQueued, JobState::kRunning, JobState::kSucceeded, JobState::kFailed,
                     JobState::kCancelled}) {
    if (JobStateName(s) == name) return s;
  }
  return std::nullopt;
}

std::string_view PriorityClassName(PriorityClass c) {
  switch (c) {
    case PriorityClass::kInteractive:
      return "interactive";
    case PriorityClass::kAsync:
      return "async";
    case PriorityClass::kBatch:
      return "batch";
  }
  return "unknown";
}

absl::StatusOr<std::unique_ptr<JobQueue>> JobQueue::Open(std::string_view url,
                                                         QueueOptions options) {
  // SQLite's own in-memory database is the queue's in-memory twin: same SQL, no disk.
  if (url == "memory:") return OpenSqliteQueue(":memory:", std::move(options));
  constexpr std::string_view kSqlite = "sqlite://";
  if (url.substr(0, kSqlite.size()) == kSqlite) {
    std::string path(url.substr(kSqlite.size()));
    if (path.empty() || path.front() != '/') {
      return InvalidField("queue", StrCat("'", url, "': use sqlite:///absolute/path.db"));
    }
    return OpenSqliteQueue(path, std::move(options));
  }
  if (url.substr(0, 7) == "amqp://") return OpenAmqpQueue(url, std::move(options));
  return InvalidField("queue", StrCat("'", url,
                                      "' is not a queue URL (sqlite:///path.db or "
                                      "amqp://user:pass@host:port/vhost)"));
}

bool SameRequest(std::string_view a, std::string_view b) {
  if (a == b) return true;
  auto x = nlohmann::json::parse(a, nullptr, false);
  auto y = nlohmann::json::parse(b, nullptr, false);
  if (!x.is_object() || !y.is_object()) return false;
  x.erase("image_key");
  y.erase("image_key");
  return x == y;
}

}  // namespace kiln::queue
