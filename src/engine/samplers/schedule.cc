#include "engine/samplers/schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace kiln::engine {

absl::StatusOr<NoiseSchedule> NoiseSchedule::Create(const ScheduleSpec& spec) {
  const int n = spec.num_train_timesteps;
  if (n < 2) return absl::InvalidArgumentError("num_train_timesteps must be at least 2");
  std::vector<double> betas(n);
  switch (spec.beta_schedule) {
    case BetaSchedule::kLinear:
      for (int i = 0; i < n; ++i) {
        betas[i] = spec.beta_start + (spec.beta_end - spec.beta_start) * i / (n - 1);
      }
      break;
    case BetaSchedule::kScaledLinear: {
      const double a = std::sqrt(spec.beta_start), b = std::sqrt(spec.beta_end);
      for (int i = 0; i < n; ++i) {
        const double v = a + (b - a) * i / (n - 1);
        betas[i] = v * v;
      }
      break;
    }
    case BetaSchedule::kSquaredCosCapV2: {
      // Nichol & Dhariwal's cosine schedule, betas capped at 0.999.
      auto alpha_bar = [](double t) {
        const double c = std::cos((t + 0.008) / 1.008 * std::numbers::pi / 2);
        return c * c;
      };
      for (int i = 0; i < n; ++i) {
        const double t1 = static_cast<double>(i) / n, t2 = static_cast<double>(i + 1) / n;
        betas[i] = std::min(1.0 - alpha_bar(t2) / alpha_bar(t1), 0.999);
      }
      break;
    }
  }
  NoiseSchedule s;
  s.spec_ = spec;
  s.alphas_cumprod_.resize(n);
  s.sigmas_.resize(n);
  double prod = 1.0;
  for (int i = 0; i < n; ++i) {
    prod *= 1.0 - betas[i];
    s.alphas_cumprod_[i] = prod;
    s.sigmas_[i] = std::sqrt((1.0 - prod) / prod);
  }
  return s;
}

double NoiseSchedule::SigmaAt(double t) const {
  const int last = num_train_timesteps() - 1;
  t = std::clamp(t, 0.0, static_cast<double>(last));
  const int lo = static_cast<int>(std::floor(t));
  const int hi = std::min(lo + 1, last);
  const double w = t - lo;
  return sigmas_[lo] * (1.0 - w) + sigmas_[hi] * w;
}

double NoiseSchedule::TimestepForSigma(double sigma) const {
  const int n = num_train_timesteps();
  if (sigma <= sigmas_.front()) return 0.0;
  if (sigma >= sigmas_.back()) return n - 1;
  const double log_sigma = std::log(sigma);
  // sigmas_ increase with t: find the first index whose sigma is >= sigma.
  const auto it = std::lower_bound(sigmas_.begin(), sigmas_.end(), sigma);
  const int hi = static_cast<int>(it - sigmas_.begin());
  const int lo = hi - 1;
  const double l0 = std::log(sigmas_[lo]), l1 = std::log(sigmas_[hi]);
  const double w = std::clamp((l0 - log_sigma) / (l0 - l1), 0.0, 1.0);
  return lo + w;
}

std::vector<double> KarrasSigmas(double sigma_min, double sigma_max, int n, double rho) {
  std::vector<double> out(n);
  const double min_inv = std::pow(sigma_min, 1.0 / rho);
  const double max_inv = std::pow(sigma_max, 1.0 / rho);
  for (int i = 0; i < n; ++i) {
    const double ramp = n == 1 ? 0.0 : static_cast<double>(i) / (n - 1);
    out[i] = std::pow(max_inv + ramp * (min_inv - max_inv), rho);
  }
  return out;
}

namespace {

// numpy's round: halves to even.
double RoundHalfEven(double v) { return std::nearbyint(v); }

// The timesteps diffusers' set_timesteps gives for `spacing`: DPM-Solver spaces steps + 1 points
// and drops the last (`plus_one`), the others space `steps` points.
std::vector<double> DiffusersTimesteps(TimestepSpacing spacing, int train, int steps, int offset,
                                       bool plus_one, bool round_linspace) {
  std::vector<double> t;
  const int points = plus_one ? steps + 1 : steps;
  switch (spacing) {
    case TimestepSpacing::kLinspace:
      for (int i = points - 1; i >= 0; --i) {
        const double v = points == 1 ? 0.0 : (train - 1) * static_cast<double>(i) / (points - 1);
        t.push_back(round_linspace ? RoundHalfEven(v) : v);
      }
      break;
    case TimestepSpacing::kLeading: {
      const int ratio = train / points;
      for (int i = points - 1; i >= 0; --i) t.push_back(static_cast<double>(i * ratio + offset));
      break;
    }
    case TimestepSpacing::kTrailing: {
      const double ratio = static_cast<double>(train) / steps;
      for (double v = train; v > 0 && static_cast<int>(t.size()) < steps; v -= ratio) {
        t.push_back(RoundHalfEven(v) - 1);
      }
      break;
    }
  }
  if (plus_one) t.resize(steps);
  return t;
}

// diffusers 0.25's plans, mapped into sigma space: x_sigma = x_vp * sqrt(1 + sigma^2).
SigmaPlan PlanDiffusers(const NoiseSchedule& schedule, const SamplerSpec& sampler, int steps) {
  const ScheduleSpec& spec = schedule.spec();
  const int train = schedule.num_train_timesteps();
  SigmaPlan plan;
  auto vp_start = [&] { plan.init_noise_sigma = std::sqrt(1.0 + plan.sigmas[0] * plan.sigmas[0]); };
  auto vp_end = [&] {
    plan.output_scale = 1.0 / std::sqrt(1.0 + plan.sigmas.back() * plan.sigmas.back());
  };
  switch (sampler.kind) {
    case SamplerKind::kEuler:
    case SamplerKind::kEulerAncestral: {
      const TimestepSpacing spacing = spec.timestep_spacing.value_or(TimestepSpacing::kLinspace);
      plan.timesteps =
          DiffusersTimesteps(spacing, train, steps, spec.steps_offset, false, /*round=*/false);
      for (double t : plan.timesteps) plan.sigmas.push_back(schedule.SigmaAt(t));
      if (sampler.karras) {
        plan.sigmas = KarrasSigmas(plan.sigmas.back(), plan.sigmas.front(), steps);
        plan.timesteps.clear();
        for (double s : plan.sigmas) plan.timesteps.push_back(schedule.TimestepForSigma(s));
      }
      const double top = plan.sigmas.front();
      plan.sigmas.push_back(0.0);
      plan.init_noise_sigma =
          spacing == TimestepSpacing::kLeading ? std::sqrt(top * top + 1.0) : top;
      return plan;
    }
    case SamplerKind::kDdim: {
      // DDIM (eta 0) is Euler in sigma space, ending at abar_0 (set_alpha_to_one false, as SD's
      // configs say) or at sigma 0.
      const TimestepSpacing spacing = spec.timestep_spacing.value_or(TimestepSpacing::kLeading);
      plan.timesteps =
          DiffusersTimesteps(spacing, train, steps, spec.steps_offset, false, /*round=*/true);
      for (double t : plan.timesteps) {
        const int ti = std::clamp(static_cast<int>(t), 0, train - 1);
        plan.sigmas.push_back(schedule.sigmas()[ti]);
      }
      if (sampler.karras) {
        plan.sigmas = KarrasSigmas(schedule.sigma_min(), schedule.sigma_max(), steps);
        plan.timesteps.clear();
        for (double s : plan.sigmas)
          plan.timesteps.push_back(RoundHalfEven(schedule.TimestepForSigma(s)));
      }
      plan.sigmas.push_back(spec.set_alpha_to_one ? 0.0 : schedule.sigma_min());
      if (spec.clip_sample) plan.clip_denoised = spec.clip_sample_range;
      vp_start();
      vp_end();
      return plan;
    }
    case SamplerKind::kDpmpp2m: {
      const TimestepSpacing spacing = spec.timestep_spacing.value_or(TimestepSpacing::kLinspace);
      if (sampler.karras) {
        plan.sigmas = KarrasSigmas(schedule.sigma_min(), schedule.sigma_max(), steps);
        for (double s : plan.sigmas)
          plan.timesteps.push_back(RoundHalfEven(schedule.TimestepForSigma(s)));
      } else {
        plan.timesteps =
            DiffusersTimesteps(spacing, train, steps, spec.steps_offset, true, /*round=*/true);
        for (double t : plan.timesteps) plan.sigmas.push_back(schedule.SigmaAt(t));
      }
      // diffusers 0.25 ends DPM-Solver at the training sigma_min, not at 0.
      plan.sigmas.push_back(schedule.sigma_min());
      plan.lower_order_final = steps < 15;
      vp_start();
      vp_end();
      return plan;
    }
  }
  return plan;
}

}  // namespace

SigmaPlan PlanSigmas(const NoiseSchedule& schedule, const SamplerSpec& sampler, int steps) {
  if (schedule.spec().diffusers_plans) return PlanDiffusers(schedule, sampler, steps);
  SigmaPlan plan;
  const int last = schedule.num_train_timesteps() - 1;
  if (sampler.kind == SamplerKind::kDdim && !sampler.karras) {
    // DDIM's own timesteps ("leading" spacing with offset 1, as Stable Diffusion's scheduler
    // config), ending at abar_0 rather than at sigma 0 (set_alpha_to_one = false).
    const int ratio = schedule.num_train_timesteps() / steps;
    for (int i = steps - 1; i >= 0; --i) {
      const int t = std::min(i * ratio + 1, last);
      plan.timesteps.push_back(t);
      plan.sigmas.push_back(schedule.sigmas()[t]);
    }
    plan.sigmas.push_back(schedule.sigma_min());
    plan.init_noise_sigma = std::sqrt(1.0 + plan.sigmas.front() * plan.sigmas.front());
    plan.output_scale = 1.0 / std::sqrt(1.0 + schedule.sigma_min() * schedule.sigma_min());
    return plan;
  }
  if (sampler.karras) {
    plan.sigmas = KarrasSigmas(schedule.sigma_min(), schedule.sigma_max(), steps);
    for (double s : plan.sigmas) plan.timesteps.push_back(schedule.TimestepForSigma(s));
  } else {
    // "linspace" spacing: t from T-1 down to 0 in `steps` evenly spaced (fractional) values.
    for (int i = 0; i < steps; ++i) {
      const double t = steps == 1 ? last : last - static_cast<double>(last) * i / (steps - 1);
      plan.timesteps.push_back(t);
      plan.sigmas.push_back(schedule.SigmaAt(t));
    }
  }
  plan.sigmas.push_back(0.0);
  plan.init_noise_sigma = plan.sigmas.front();
  if (sampler.kind == SamplerKind::kDdim) {
    // DDIM is Euler in sigma space; with Karras spacing it starts from unit-variance x_T.
    plan.init_noise_sigma = std::sqrt(1.0 + plan.sigmas.front() * plan.sigmas.front());
  }
  return plan;
}

}  // namespace kiln::engine
