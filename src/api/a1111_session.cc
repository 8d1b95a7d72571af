#include "api/a1111_session.h"

namespace kiln::api {

bool A1111Task::Finish(int k, absl::StatusOr<std::vector<engine::Image>> images, bool client_left) {
  absl::MutexLock lock(&mu);
  Outcome& o = outcomes[k];
  if (o.done) return false;
  o.done = true;
  if (images.ok()) {
    o.images = std::move(*images);
  } else if (client_left) {
    client_gone = true;
  } else if (!o.skipped && error.ok()) {
    error = images.status();
  }
  return --remaining == 0;
}

std::vector<sched::WorkItemPtr> A1111Task::Skip(int from, int to) {
  std::vector<sched::WorkItemPtr> running;
  absl::MutexLock lock(&mu);
  for (int k = from; k < to; ++k) {
    if (outcomes[k].done || outcomes[k].skipped) continue;
    outcomes[k].skipped = true;
    running.push_back(iterations[k]);
  }
  return running;
}

bool A1111Task::NotSubmitted(int from, absl::Status why) {
  absl::MutexLock lock(&mu);
  error = std::move(why);
  for (size_t k = from; k < outcomes.size(); ++k) {
    outcomes[k].done = true;
    --remaining;
  }
  return remaining == 0;
}

bool A1111Task::IsSkipped(int k) const {
  absl::MutexLock lock(&mu);
  return outcomes[k].skipped;
}

int A1111Task::Current() const {
  absl::MutexLock lock(&mu);
  for (size_t k = 0; k < outcomes.size(); ++k) {
    if (!outcomes[k].done && !outcomes[k].skipped) return static_cast<int>(k);
  }
  return static_cast<int>(outcomes.size());
}

std::string A1111Session::default_model() const {
  absl::MutexLock lock(&mu_);
  return default_model_;
}

void A1111Session::set_default_model(std::string name) {
  absl::MutexLock lock(&mu_);
  default_model_ = std::move(name);
}

void A1111Session::Add(std::shared_ptr<A1111Task> task) {
  absl::MutexLock lock(&mu_);
  tasks_.push_back(std::move(task));
}

void A1111Session::Remove(const A1111Task* task) {
  absl::MutexLock lock(&mu_);
  std::erase_if(tasks_, [task](const auto& t) { return t.get() == task; });
}

std::shared_ptr<A1111Task> A1111Session::Current(const std::string& tenant) const {
  absl::MutexLock lock(&mu_);
  for (const auto& t : tasks_) {
    if (t->tenant == tenant) return t;
  }
  return nullptr;
}

}  // namespace kiln::api
