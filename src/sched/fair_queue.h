// FairQueue: the in-memory queue of items waiting for a replica. Classes are served strictly
// (interactive before async before batch), then priority (higher first), then start-time fair
// queueing across tenants: each item gets a virtual finish time = max(virtual now, the
// tenant's last finish) + cost / weight, and the smallest goes first, so a tenant that sends a
// flood waits behind tenants that send little. Not thread-safe: the scheduler guards it.
#pragma once

#include <functional>
#include <map>
#include <set>
#include <string>
#include <tuple>

#include "sched/work_item.h"

namespace kiln::sched {

class FairQueue {
 public:
  // Weight of `tenant` (default 1).
  void SetWeight(const std::string& tenant, double weight) { weights_[tenant] = weight; }
  void ClearWeights() { weights_.clear(); }

  void Push(WorkItemPtr item);
  // Removes and returns the first item for which `fits` is true (in service order), or null.
  WorkItemPtr PopIf(const std::function<bool(const WorkItem&)>& fits);
  // Removes and returns the first item in service order if `fits` holds for it; null otherwise
  // (the items behind it wait too, so a large item is never starved by smaller ones).
  WorkItemPtr PopFrontIf(const std::function<bool(const WorkItem&)>& fits);
  // Removes the item with this id, if queued.
  WorkItemPtr Remove(const std::string& id);

  bool empty() const { return items_.empty(); }
  size_t size() const { return items_.size(); }
  // Sum of the costs of the items ahead of a new item of `klass` (same or better class).
  double CostAhead(queue::PriorityClass klass) const;
  double total_cost() const { return total_cost_; }

 private:
  using Key = std::tuple<int, int, double, uint64_t>;  // class, -priority, finish, seq
  static Key KeyOf(const WorkItem& w) {
    return {static_cast<int>(w.klass), -w.priority, w.virtual_finish, w.seq};
  }

  std::map<Key, WorkItemPtr> items_;
  std::map<std::string, Key> by_id_;
  std::map<std::string, double> last_finish_;
  std::map<std::string, double> weights_;
  double virtual_now_ = 0;
  uint64_t next_seq_ = 0;
  double total_cost_ = 0;
};

}  // namespace kiln::sched
