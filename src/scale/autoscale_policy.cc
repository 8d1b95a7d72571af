#include "scale/autoscale_policy.h"

#include <algorithm>
#include <cmath>

namespace kiln::scale {

int DesiredReplicas(const AutoscalePolicy& p, const ModelWork& w) {
  const double work = std::max(0.0, w.queued_seconds) + std::max(0.0, w.running_seconds);
  int desired = 0;
  if (p.target_seconds_per_replica > 0) {
    desired = static_cast<int>(std::min(1e6, std::ceil(work / p.target_seconds_per_replica)));
  }
  if (w.queued > 0 || w.running > 0) desired = std::max(desired, 1);
  return std::clamp(desired, p.min_replicas, std::max(p.min_replicas, p.max_replicas));
}

}  // namespace kiln::scale
