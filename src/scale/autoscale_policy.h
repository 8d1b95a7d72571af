// AutoscalePolicy: how many replicas a model should have, from the work it has, in
// device-seconds. Pure; thread-safe.
//
//   work    = queued device-seconds (all classes) + the remaining device-seconds of running items
//   desired = ceil(work / target_seconds_per_replica), at least 1 while anything is queued or
//             running, at least min_replicas, at most max_replicas
//
// So an idle model scales to zero (with min_replicas 0), one request wakes one replica, and a
// backlog of 10 minutes with a 60 s target asks for 10.
#pragma once

namespace kiln::scale {

struct AutoscalePolicy {
  double target_seconds_per_replica = 60;  // the backlog one replica may carry
  int min_replicas = 0;
  int max_replicas = 16;
};

struct ModelWork {
  double queued_seconds = 0;
  double running_seconds = 0;  // remaining
  int queued = 0;
  int running = 0;
};

int DesiredReplicas(const AutoscalePolicy& policy, const ModelWork& work);

}  // namespace kiln::scale
