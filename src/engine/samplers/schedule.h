// NoiseSchedule: the training noise schedule (betas -> alphas_cumprod -> sigmas) and the plan of
// sigmas/timesteps that a sampler walks for a given number of steps. Immutable; thread-safe.
#pragma once

#include <vector>

#include "absl/status/statusor.h"
#include "engine/model_spec.h"
#include "engine/samplers/sampler_spec.h"

namespace kiln::engine {

class NoiseSchedule {
 public:
  static absl::StatusOr<NoiseSchedule> Create(const ScheduleSpec& spec);

  int num_train_timesteps() const { return static_cast<int>(alphas_cumprod_.size()); }
  const std::vector<double>& alphas_cumprod() const { return alphas_cumprod_; }
  // sigma(t) = sqrt((1 - abar_t) / abar_t) at integer training timesteps.
  const std::vector<double>& sigmas() const { return sigmas_; }
  double sigma_min() const { return sigmas_.front(); }
  double sigma_max() const { return sigmas_.back(); }

  // sigma at a fractional timestep: linear interpolation between training timesteps.
  double SigmaAt(double t) const;
  // The fractional timestep whose sigma is `sigma`: interpolation in log-sigma, clamped to
  // [0, T-1] (as diffusers' `_sigma_to_t`).
  double TimestepForSigma(double sigma) const;

  const ScheduleSpec& spec() const { return spec_; }

 private:
  ScheduleSpec spec_;
  std::vector<double> alphas_cumprod_;
  std::vector<double> sigmas_;
};

// The path one sampling run walks, in sigma space (x_sigma = x0 + sigma * eps).
struct SigmaPlan {
  std::vector<double> sigmas;     // steps + 1 values, decreasing; the last is the end point
  std::vector<double> timesteps;  // steps values: the model's t at sigmas[i]
  // The initial sample is noise * init_noise_sigma (or image + noise * sigmas[start]).
  double init_noise_sigma = 1.0;
  // The result is x * output_scale: 1 when the plan ends at sigma 0; DDIM ends at abar_0 and
  // maps back from sigma space by 1/sqrt(1 + sigma_end^2).
  double output_scale = 1.0;
  // DPM++ 2M: the last step is first order (diffusers' lower_order_final below 15 steps).
  bool lower_order_final = false;
  // DDIM: the estimate of x0 is clipped to [-clip_denoised, clip_denoised] before the step (the
  // noise direction keeps the model's prediction); 0 = no clipping.
  double clip_denoised = 0;
};

// REQUIRES: steps >= 1.
SigmaPlan PlanSigmas(const NoiseSchedule& schedule, const SamplerSpec& sampler, int steps);

// Karras et al. sigmas: n values from sigma_max down to sigma_min, rho = 7 (no trailing zero).
std::vector<double> KarrasSigmas(double sigma_min, double sigma_max, int n, double rho = 7.0);

}  // namespace kiln::engine
