#include "sched/cost_model.h"

#include <algorithm>
#include <bit>
#include <cmath>

namespace kiln::sched {
namespace {
// Weight of the newest measurement; about the last 20 steps of a bucket dominate.
constexpr double kAlpha = 0.05;
}  // namespace

StepCostModel::StepCostModel(double prior) : prior_(prior) {}

int StepCostModel::Bucket(int rows) {
  const int b = std::bit_width(static_cast<unsigned>(std::max(1, rows))) - 1;
  return std::clamp(b, 0, kBuckets - 1);
}

void StepCostModel::Observe(int rows, double pixels_per_row, double seconds) {
  if (rows <= 0 || pixels_per_row <= 0 || !(seconds >= 0)) return;
  const double per = seconds / (rows * pixels_per_row);
  absl::MutexLock lock(&mu_);
  const int b = Bucket(rows);
  // The first few measurements of a bucket average evenly, later ones decay.
  const double a = std::max(kAlpha, 1.0 / (count_[b] + 1));
  ewma_[b] = count_[b] == 0 ? per : ewma_[b] + a * (per - ewma_[b]);
  ++count_[b];
  ++observations_;
}

double StepCostModel::SecondsPerRowPixel(int batch_rows) const {
  absl::MutexLock lock(&mu_);
  const int b = Bucket(batch_rows);
  if (count_[b] > 0) return ewma_[b];
  // The nearest measured bucket; a smaller batch is a safe (pessimistic) stand-in.
  for (int d = 1; d < kBuckets; ++d) {
    if (b - d >= 0 && count_[b - d] > 0) return ewma_[b - d];
    if (b + d < kBuckets && count_[b + d] > 0) return ewma_[b + d];
  }
  return prior_;
}

double StepCostModel::Cost(int steps, int rows, double pixels_per_row, int batch_rows) const {
  return steps * rows * pixels_per_row * SecondsPerRowPixel(batch_rows);
}

int StepCostModel::observations() const {
  absl::MutexLock lock(&mu_);
  return observations_;
}

}  // namespace kiln::sched
