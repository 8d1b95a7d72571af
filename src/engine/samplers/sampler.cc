#include "engine/samplers/sampler.h"

#include <cmath>

namespace kiln::engine {

Sampler::Sampler(SamplerSpec spec, SigmaPlan plan, int start_step)
    : spec_(spec), plan_(std::move(plan)), step_(start_step) {}

double Sampler::input_scale() const { return 1.0 / std::sqrt(sigma() * sigma() + 1.0); }

torch::Tensor RowNoise(at::IntArrayRef shape, std::span<at::Generator> generators) {
  std::vector<int64_t> row_shape(shape.begin(), shape.end());
  row_shape[0] = 1;
  std::vector<torch::Tensor> rows;
  rows.reserve(generators.size());
  for (auto& gen : generators) {
    rows.push_back(at::randn(row_shape, gen, torch::TensorOptions().dtype(torch::kFloat32)));
  }
  return torch::cat(rows, 0);
}

void Sampler::Advance(torch::Tensor& x, const torch::Tensor& denoised,
                      std::span<at::Generator> generators) {
  const double s = plan_.sigmas[step_];
  const double s_next = plan_.sigmas[step_ + 1];
  switch (spec_.kind) {
    case SamplerKind::kDdim:
      if (plan_.clip_denoised > 0) {
        // diffusers' clip_sample: x0 is clipped, the noise direction stays the model's.
        const double r = plan_.clip_denoised;
        x = denoised.clamp(-r, r) + (x - denoised) * (s_next / s);
        break;
      }
      [[fallthrough]];
    case SamplerKind::kEuler: {
      // dx/dsigma = (x - x0) / sigma; DDIM (eta = 0) is exactly this step in sigma space.
      torch::Tensor d = (x - denoised) / s;
      x = x + d * (s_next - s);
      break;
    }
    case SamplerKind::kEulerAncestral: {
      // Step down to sigma_down deterministically, then add fresh noise of size sigma_up.
      double sigma_up = 0.0;
      if (s_next > 0) {
        sigma_up = std::sqrt(std::max(0.0, s_next * s_next * (s * s - s_next * s_next) / (s * s)));
      }
      const double sigma_down = std::sqrt(std::max(0.0, s_next * s_next - sigma_up * sigma_up));
      torch::Tensor d = (x - denoised) / s;
      x = x + d * (sigma_down - s);
      if (sigma_up > 0) x = x + RowNoise(x.sizes(), generators) * sigma_up;
      break;
    }
    case SamplerKind::kDpmpp2m: {
      // Lu et al. DPM-Solver++(2M) in log-sigma time (t = -log sigma), first order on the first
      // step and into sigma 0.
      const double ratio = s_next / s;
      if (s_next == 0.0) {
        x = denoised.clone();
      } else {
        const double h = std::log(s) - std::log(s_next);  // t_next - t
        const double phi = -std::expm1(-h);
        const bool last = step_ + 1 == num_steps();
        if (!old_denoised_.defined() || step_ == 0 || (last && plan_.lower_order_final)) {
          x = x * ratio + denoised * phi;
        } else {
          const double s_prev = plan_.sigmas[step_ - 1];
          const double h_last = std::log(s_prev) - std::log(s);
          const double r = h_last / h;
          torch::Tensor d = denoised * (1.0 + 1.0 / (2.0 * r)) - old_denoised_ * (1.0 / (2.0 * r));
          x = x * ratio + d * phi;
        }
      }
      old_denoised_ = denoised;
      break;
    }
  }
  ++step_;
}

torch::Tensor Sampler::Output(const torch::Tensor& x) const {
  if (plan_.output_scale == 1.0) return x;
  return x * plan_.output_scale;
}

}  // namespace kiln::engine
