// ModelParts: the networks of one loaded model behind the four calls the pipeline makes (encode
// text, denoise a batch of rows, encode an image, decode latents). Kiln's TorchScript models and
// natively loaded Stable Diffusion models implement it, so both share the pipeline's step-level
// batching, samplers, guidance and checkpoints. Engine-internal. Not thread-safe unless
// concurrent() says so: each pipeline serialises its calls.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model_spec.h"
#include "torch/torch.h"

namespace kiln::engine {

struct TextEmbedding {
  torch::Tensor hidden;  // [B, T, D]
  torch::Tensor pooled;  // [B, P] for models with added conditions (SDXL); else undefined
};

// One denoiser call's rows.
struct DenoiseBatch {
  torch::Tensor x;           // [B, C, h, w], already multiplied by the sampler's input scale
  torch::Tensor t;           // [B] float training timesteps
  torch::Tensor hidden;      // [B, T, D]
  torch::Tensor image_cond;  // [B, C', h, w]
  torch::Tensor pooled;      // [B, P] (models with added conditions)
  torch::Tensor time_ids;    // [B, 6] (models with added conditions)
};

// An encoded image: the latent distribution's mean and standard deviation (unscaled); `std` is
// undefined for an encoder that returns one latent.
struct EncodedImage {
  torch::Tensor mean;
  torch::Tensor std;
};

class ModelParts {
 public:
  virtual ~ModelParts() = default;

  virtual absl::StatusOr<TextEmbedding> EncodeText(const std::vector<std::string>& prompts) = 0;
  // Returns the prediction [B, C, h, w] (eps or v, as the model's schedule says), float32.
  virtual absl::StatusOr<torch::Tensor> Denoise(const DenoiseBatch& batch) = 0;
  virtual bool has_encoder() const = 0;
  // pixels: [1, 3, H, W] in [-1, 1]. REQUIRES: has_encoder().
  virtual absl::StatusOr<EncodedImage> EncodeImage(const torch::Tensor& pixels) = 0;
  // latents: [B, C, h, w] unscaled (pipeline latents / latent_scale) -> [B, 3, H, W] in [-1, 1].
  virtual absl::StatusOr<torch::Tensor> Decode(const torch::Tensor& latents) = 0;

  // SDXL: the denoiser takes pooled text embeddings and size/crop time ids per row.
  virtual bool uses_added_conditions() const { return false; }
  // SDXL's force_zeros_for_empty_prompt: an empty negative prompt is all-zero embeddings.
  virtual bool zeros_for_empty_negative() const { return false; }
  // Whether calls from several threads at once are safe (immutable networks), so that replicas
  // of the model may share these parts instead of loading their own.
  virtual bool concurrent() const { return false; }
  // Bytes of the networks' parameters as loaded (in their compute dtype).
  virtual int64_t parameter_bytes() const = 0;
};

// Kiln's own TorchScript model folders (model.yaml).
absl::StatusOr<std::unique_ptr<ModelParts>> LoadTorchScriptParts(const ModelSpec& spec,
                                                                 const torch::Device& device);

}  // namespace kiln::engine
