// StepCostModel: what one denoising step costs on one replica, learned online from measured step
// times. The unit is seconds per row-pixel (one denoiser row of one output pixel), tracked per
// batch-size bucket (1, 2, 4, ... rows) because per-row cost falls as batches grow. A request's
// cost in device-seconds is steps x rows x pixels x that figure at the batch size the replica is
// expected to run. Thread-safe.
#pragma once

#include <array>

#include "absl/synchronization/mutex.h"

namespace kiln::sched {

class StepCostModel {
 public:
  // `prior_seconds_per_row_pixel` is used until a bucket has been measured.
  explicit StepCostModel(double prior_seconds_per_row_pixel = 2e-7);

  // One denoiser step over `rows` rows of `pixels_per_row` output pixels took `seconds`.
  void Observe(int rows, double pixels_per_row, double seconds);

  // Seconds per row-pixel when steps run `batch_rows` rows at a time.
  double SecondsPerRowPixel(int batch_rows) const;

  // Device-seconds for `steps` steps of `rows` rows at `pixels_per_row`, when the replica runs
  // batches of `batch_rows` rows.
  double Cost(int steps, int rows, double pixels_per_row, int batch_rows) const;

  int observations() const;

 private:
  static constexpr int kBuckets = 12;  // up to 2048 rows
  static int Bucket(int rows);

  mutable absl::Mutex mu_;
  double prior_;
  std::array<double, kBuckets> ewma_ ABSL_GUARDED_BY(mu_){};
  std::array<int, kBuckets> count_ ABSL_GUARDED_BY(mu_){};
  int observations_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace kiln::sched
