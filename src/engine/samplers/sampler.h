// Sampler: one request's walk along its SigmaPlan, advanced one step at a time so that requests
// with different samplers and step counts can share each denoiser call (step-level batching).
// The sample lives in sigma space (x = x0 + sigma * eps); the denoiser sees x * input_scale().
// Not thread-safe: owned by one generation.
#pragma once

#include <span>
#include <vector>

#include "engine/samplers/sampler_spec.h"
#include "engine/samplers/schedule.h"
#include "torch/torch.h"

namespace kiln::engine {

class Sampler {
 public:
  // REQUIRES: 0 <= start_step < plan.timesteps.size().
  Sampler(SamplerSpec spec, SigmaPlan plan, int start_step);

  int step() const { return step_; }
  int num_steps() const { return static_cast<int>(plan_.timesteps.size()); }
  bool done() const { return step_ >= num_steps(); }
  const SamplerSpec& spec() const { return spec_; }
  const SigmaPlan& plan() const { return plan_; }

  // REQUIRES: !done().
  double sigma() const { return plan_.sigmas[step_]; }
  double timestep() const { return plan_.timesteps[step_]; }
  double input_scale() const;

  // Advances `x` (rows = images) by one step given the denoised estimate of x0 at sigma().
  // Ancestral sampling draws row i's noise from generators[i], so each image's randomness is
  // its own and does not depend on its batch neighbours. REQUIRES: !done().
  void Advance(torch::Tensor& x, const torch::Tensor& denoised,
               std::span<at::Generator> generators);

  // The final image-space sample (DDIM maps back from sigma space). REQUIRES: done().
  torch::Tensor Output(const torch::Tensor& x) const;

  // What a checkpoint must keep beyond the sample: the step and the previous estimate (DPM++ 2M;
  // undefined for the other samplers and before the first step).
  const torch::Tensor& old_denoised() const { return old_denoised_; }
  // REQUIRES: 0 <= step <= num_steps().
  void Restore(int step, torch::Tensor old_denoised) {
    step_ = step;
    old_denoised_ = std::move(old_denoised);
  }

 private:
  SamplerSpec spec_;
  SigmaPlan plan_;
  int step_;
  torch::Tensor old_denoised_;  // DPM++ 2M: the previous step's estimate
};

// Per-row standard normal noise of `shape` (first dim = rows), row i from generators[i].
torch::Tensor RowNoise(at::IntArrayRef shape, std::span<at::Generator> generators);

}  // namespace kiln::engine
