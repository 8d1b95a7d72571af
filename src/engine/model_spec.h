// ModelSpec: the validated contents of a model folder's model.yaml (docs/model-repository.md).
// Plain data; thread-compatible.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "core/strings.h"

namespace kiln::engine {

enum class ModelKind { kPixel, kLatent };
enum class BetaSchedule { kLinear, kScaledLinear, kSquaredCosCapV2 };
enum class PredictionType { kEps, kV };
enum class TokenizerType { kWords, kClipBpe };
enum class ModelFormat { kTorchScript, kDiffusers, kSingleFile };
enum class TimestepSpacing { kLinspace, kLeading, kTrailing };

struct ScheduleSpec {
  int num_train_timesteps = 1000;
  BetaSchedule beta_schedule = BetaSchedule::kScaledLinear;
  double beta_start = 0.00085;
  double beta_end = 0.012;
  PredictionType prediction_type = PredictionType::kEps;
  // Native SD models walk the sigmas, timesteps and end points diffusers 0.25 computes from the
  // model's scheduler config, so that a seed gives diffusers' picture; Kiln's own models keep
  // Kiln's plans (samplers/schedule.h).
  bool diffusers_plans = false;
  // diffusers_plans only: the config's timestep_spacing (absent: each sampler's own default,
  // as diffusers' from_config gives it) and steps_offset.
  std::optional<TimestepSpacing> timestep_spacing;
  int steps_offset = 0;
  // diffusers_plans, DDIM only: the last step goes to abar = 1 (sigma 0) rather than to abar_0
  // (the config's set_alpha_to_one; DDIMScheduler's default when absent).
  bool set_alpha_to_one = true;
  // diffusers_plans, DDIM only: clip the predicted x0 to [-range, range] (clip_sample, DDIM's
  // default when the config lacks it; SD's configs say false).
  bool clip_sample = true;
  double clip_sample_range = 1.0;
};

struct TokenizerSpec {
  TokenizerType type = TokenizerType::kWords;
  int max_length = 77;
  std::filesystem::path vocab;   // absolute
  std::filesystem::path merges;  // clip_bpe only
  bool pad_with_eos = true;      // clip_bpe only; false pads with id 0
};

struct ModelDefaults {
  int steps = 20;
  double guidance_scale = 7.5;
  double image_guidance_scale = 1.5;
  std::string sampler = "euler";
};

struct ModelSpec {
  std::string name;
  std::filesystem::path dir;
  // kTorchScript: a Kiln model folder (model.yaml); kDiffusers: a Stable Diffusion diffusers
  // folder; kSingleFile: one LDM-layout .safetensors checkpoint (`dir` is the file). The last
  // two are served by the native engine (engine/sd/).
  ModelFormat format = ModelFormat::kTorchScript;
  std::string architecture = "kiln";  // native: "sd1", "sd2", "sdxl" or "instruct-pix2pix"
  std::string dtype = "float32";      // what the networks compute in
  // Native SD 1.x/2.x: condition on the text encoder's layer this many before the last (then
  // its final LayerNorm), as diffusers' and A1111's clip_skip; 0 = the last layer.
  int clip_skip = 0;
  ModelKind kind = ModelKind::kPixel;
  std::string description;
  bool supports_generate = true;
  bool supports_edit = false;
  std::vector<ImageSize> sizes;  // first is the default
  // Besides `sizes`, any size whose sides are multiples of `size_multiple` within
  // [min_side, max_side] (0: only `sizes`).
  int size_multiple = 0;
  int min_side = 0;
  int max_side = 0;
  int channels = 3;
  int image_cond_channels = 0;
  int downsample = 1;
  double latent_scale = 1.0;
  double image_cond_scale = 1.0;
  int max_batch = 8;
  ScheduleSpec schedule;
  ModelDefaults defaults;
  TokenizerSpec tokenizer;
  std::filesystem::path text_encoder;  // absolute paths; decoder/encoder empty when absent
  std::filesystem::path denoiser;
  std::filesystem::path decoder;
  std::filesystem::path encoder;

  bool SupportsSize(const ImageSize& size) const;
};

// Reads and validates `dir/model.yaml`; the model's name is the folder's name. Errors name the
// file and the field. Referenced files must exist.
absl::StatusOr<ModelSpec> LoadModelSpec(const std::filesystem::path& dir);

// Validates YAML text as if it were `dir/model.yaml` (for tests and tools).
absl::StatusOr<ModelSpec> ParseModelSpec(std::string_view yaml_text,
                                         const std::filesystem::path& dir);

}  // namespace kiln::engine
