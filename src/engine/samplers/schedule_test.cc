#include "engine/samplers/schedule.h"

#include <cmath>

#include "gtest/gtest.h"

namespace kiln::engine {
namespace {

NoiseSchedule StableDiffusionSchedule() {
  ScheduleSpec spec;  // SD 1.x: scaled_linear, 0.00085..0.012, 1000 steps
  return *NoiseSchedule::Create(spec);
}

TEST(NoiseSchedule, StableDiffusionSigmaRange) {
  NoiseSchedule s = StableDiffusionSchedule();
  // Reference values of diffusers' EulerDiscreteScheduler for SD 1.x.
  EXPECT_NEAR(s.sigma_max(), 14.6146, 1e-4);
  EXPECT_NEAR(s.sigma_min(), 0.0292, 1e-4);
  EXPECT_NEAR(s.alphas_cumprod().front(), 1 - 0.00085, 1e-12);
}

TEST(NoiseSchedule, LinearAndCosineAreMonotonic) {
  for (BetaSchedule b : {BetaSchedule::kLinear, BetaSchedule::kSquaredCosCapV2}) {
    ScheduleSpec spec;
    spec.beta_schedule = b;
    spec.beta_start = 0.0001;
    spec.beta_end = 0.02;
    NoiseSchedule s = *NoiseSchedule::Create(spec);
    for (int i = 1; i < s.num_train_timesteps(); ++i) {
      ASSERT_GT(s.sigmas()[i], s.sigmas()[i - 1]) << i;
    }
  }
  ScheduleSpec linear;
  linear.beta_schedule = BetaSchedule::kLinear;
  linear.beta_start = 0.0001;
  linear.beta_end = 0.02;
  // DDPM's linear schedule: abar_999 = prod(1 - beta_i), computed here independently.
  double prod = 1;
  for (int i = 0; i < 1000; ++i) prod *= 1 - (0.0001 + (0.02 - 0.0001) * i / 999.0);
  EXPECT_NEAR(NoiseSchedule::Create(linear)->alphas_cumprod().back(), prod, 1e-15);
}

TEST(NoiseSchedule, TimestepForSigmaInvertsSigmaAt) {
  NoiseSchedule s = StableDiffusionSchedule();
  for (double t : {0.0, 1.0, 17.5, 500.0, 998.25, 999.0}) {
    EXPECT_NEAR(s.TimestepForSigma(s.SigmaAt(std::floor(t))), std::floor(t), 1e-6) << t;
  }
  EXPECT_EQ(s.TimestepForSigma(1e-9), 0.0);
  EXPECT_EQ(s.TimestepForSigma(1e9), 999.0);
}

TEST(PlanSigmas, EulerLinspace) {
  NoiseSchedule s = StableDiffusionSchedule();
  SigmaPlan p = PlanSigmas(s, {SamplerKind::kEuler, false}, 20);
  ASSERT_EQ(p.timesteps.size(), 20u);
  ASSERT_EQ(p.sigmas.size(), 21u);
  EXPECT_DOUBLE_EQ(p.timesteps.front(), 999.0);
  EXPECT_DOUBLE_EQ(p.timesteps.back(), 0.0);
  EXPECT_NEAR(p.timesteps[1], 999.0 - 999.0 / 19, 1e-9);
  EXPECT_NEAR(p.sigmas.front(), 14.6146, 1e-4);
  EXPECT_EQ(p.sigmas.back(), 0.0);
  EXPECT_NEAR(p.init_noise_sigma, 14.6146, 1e-4);
}

TEST(PlanSigmas, KarrasEndpointsAndRho) {
  std::vector<double> k = KarrasSigmas(0.0292, 14.6146, 5);
  EXPECT_NEAR(k.front(), 14.6146, 1e-9);
  EXPECT_NEAR(k.back(), 0.0292, 1e-9);
  // Middle value by the formula (max^(1/7) + 0.5 (min^(1/7) - max^(1/7)))^7, computed
  // independently.
  const double mid = std::pow((std::pow(14.6146, 1 / 7.0) + std::pow(0.0292, 1 / 7.0)) / 2, 7.0);
  EXPECT_NEAR(k[2], mid, 1e-9);
  EXPECT_NEAR(mid, 1.2745, 1e-3);  // python: ((14.6146**(1/7) + 0.0292**(1/7))/2)**7
}

TEST(PlanSigmas, DdimLeadingSpacing) {
  NoiseSchedule s = StableDiffusionSchedule();
  SigmaPlan p = PlanSigmas(s, {SamplerKind::kDdim, false}, 50);
  // diffusers' DDIMScheduler with steps_offset=1: 981, 961, ..., 1.
  EXPECT_EQ(p.timesteps.front(), 981);
  EXPECT_EQ(p.timesteps[1], 961);
  EXPECT_EQ(p.timesteps.back(), 1);
  EXPECT_NEAR(p.sigmas.back(), s.sigma_min(), 1e-12);
  EXPECT_NEAR(p.init_noise_sigma, std::sqrt(1 + p.sigmas.front() * p.sigmas.front()), 1e-12);
}

}  // namespace
}  // namespace kiln::engine
