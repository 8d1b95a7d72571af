#include "sched/fair_queue.h"

#include <algorithm>

namespace kiln::sched {

void FairQueue::Push(WorkItemPtr item) {
  auto w = weights_.find(item->tenant);
  const double weight = w == weights_.end() ? 1.0 : w->second;
  double& last = last_finish_[item->tenant];
  const double start = std::max(virtual_now_, last);
  // A zero-cost item still advances its tenant a little, so counts alone are fair too.
  item->virtual_finish = start + std::max(item->cost, 1e-9) / weight;
  last = item->virtual_finish;
  item->seq = next_seq_++;
  const Key key = KeyOf(*item);
  total_cost_ += item->cost;
  by_id_[item->id] = key;
  items_.emplace(key, std::move(item));
}

WorkItemPtr FairQueue::PopIf(const std::function<bool(const WorkItem&)>& fits) {
  for (auto it = items_.begin(); it != items_.end(); ++it) {
    if (!fits(*it->second)) continue;
    WorkItemPtr item = std::move(it->second);
    items_.erase(it);
    by_id_.erase(item->id);
    total_cost_ -= item->cost;
    // Virtual time follows the start of the item in service.
    virtual_now_ = std::max(virtual_now_, item->virtual_finish - std::max(item->cost, 1e-9));
    if (items_.empty()) {
      total_cost_ = 0;
      last_finish_.clear();
    }
    return item;
  }
  return nullptr;
}

WorkItemPtr FairQueue::PopFrontIf(const std::function<bool(const WorkItem&)>& fits) {
  if (items_.empty() || !fits(*items_.begin()->second)) return nullptr;
  return PopIf([](const WorkItem&) { return true; });
}

WorkItemPtr FairQueue::Remove(const std::string& id) {
  auto k = by_id_.find(id);
  if (k == by_id_.end()) return nullptr;
  auto it = items_.find(k->second);
  WorkItemPtr item = std::move(it->second);
  items_.erase(it);
  by_id_.erase(k);
  total_cost_ -= item->cost;
  return item;
}

double FairQueue::CostAhead(queue::PriorityClass klass) const {
  double sum = 0;
  for (const auto& [key, item] : items_) {
    if (std::get<0>(key) <= static_cast<int>(klass)) sum += item->cost;
  }
  return sum;
}

}  // namespace kiln::sched
