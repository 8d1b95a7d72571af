// Pipeline: the Engine of every loaded model (Kiln's TorchScript folders and native Stable
// Diffusion models, through ModelParts): a generation is started, then advanced by Step() calls
// that may batch several generations into one denoiser call, then finished into images.
// Thread-safety: Start/Step/Finish may be called from several threads; calls that touch the
// model's networks are serialised internally, so one Pipeline is one replica of the model.
#pragma once

#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/engine.h"
#include "engine/image.h"
#include "engine/model_spec.h"
#include "engine/request.h"

namespace kiln::engine {

// Images as floats, NHWC, row-major.
struct FloatImages {
  int n = 0, height = 0, width = 0;
  std::vector<float> values;
};

class Pipeline final : public Engine {
 public:
  ~Pipeline() override;
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  // Loads the networks of `spec` (TorchScript files, or a Stable Diffusion model natively) onto
  // the CPU (or `device`, e.g. "cuda:0").
  static absl::StatusOr<std::unique_ptr<Pipeline>> Load(const ModelSpec& spec,
                                                        const std::string& device = "cpu");

  // Another replica of this model, with its own serialisation: it shares the loaded networks
  // when they may run on several threads at once (the native engine's immutable modules), and
  // loads them again otherwise (TorchScript).
  absl::StatusOr<std::unique_ptr<Pipeline>> Replicate() const;

  const ModelSpec& spec() const override;

  // Bytes of the loaded networks' parameters (shared between replicas where Replicate shares).
  int64_t parameter_bytes() const;

  // Tokenizes and encodes the prompts, prepares noise or the input image.
  absl::StatusOr<std::unique_ptr<Generation>> Start(const GenerationRequest& request) override;

  // Runs one denoising step for every generation in `batch` (none may be done), splitting the
  // rows into denoiser calls of at most spec().max_batch rows.
  absl::Status Step(std::span<Generation* const> batch) override;

  // Decodes a finished generation into its n images. REQUIRES: generation.done().
  absl::StatusOr<std::vector<Image>> Finish(Generation& generation) override;

  // The finished images as diffusers' output_type="np" gives them: float NHWC in [0, 1]
  // (clamp(decoded / 2 + 0.5)), for parity checks and tools. REQUIRES: generation.done().
  absl::StatusOr<FloatImages> FinishFloat(Generation& generation);

  // A low-resolution preview (at most `max_side` pixels a side) of the first image's current
  // estimate, for progress events. For latent models it shows the first three latent channels
  // (no decoder call), a rough picture. REQUIRES: at least one step taken.
  absl::StatusOr<Image> Preview(const Generation& generation, int max_side = 64) override;

  // A snapshot of `generation` at its step boundary (the sample, the sampler's state and every
  // image's RNG state) as opaque bytes, so that another process can Resume it: the resumed
  // generation continues exactly as this one would have.
  absl::StatusOr<std::string> Checkpoint(const Generation& generation) override;
  // Start(request) with the state of `checkpoint`. InvalidArgument when the checkpoint is
  // damaged or was taken from a different request.
  absl::StatusOr<std::unique_ptr<Generation>> Resume(const GenerationRequest& request,
                                                     std::string_view checkpoint) override;

  // Start, Step until done, Finish. `on_step(step, num_steps)` runs after each step.
  absl::StatusOr<std::vector<Image>> Generate(
      const GenerationRequest& request, const std::function<void(int, int)>& on_step = nullptr);

 private:
  struct Impl;
  explicit Pipeline(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kiln::engine
