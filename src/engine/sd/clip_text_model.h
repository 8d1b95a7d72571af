// ClipTextModel: the CLIP text transformer Stable Diffusion conditions on (Hugging Face's
// CLIPTextModel / CLIPTextModelWithProjection, parameter names as transformers saves them).
// Immutable after Load; Forward is thread-safe.
#pragma once

#include <filesystem>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/sd/weights.h"
#include "nlohmann/json.hpp"

namespace kiln::engine::sd {

struct ClipTextConfig {
  int64_t vocab_size = 49408;
  int64_t hidden_size = 768;
  int64_t intermediate_size = 3072;
  int64_t num_layers = 12;
  int64_t num_heads = 12;
  int64_t max_positions = 77;
  bool quick_gelu = true;  // hidden_act: quick_gelu (SD 1.x, SDXL te1) or gelu (SD 2.x, SDXL te2)
  double layer_norm_eps = 1e-5;
  int64_t projection_dim = 0;  // > 0: CLIPTextModelWithProjection (text_projection, no bias)
};

// Reads a transformers config.json; errors name `file` and the key.
absl::StatusOr<ClipTextConfig> ParseClipTextConfig(const nlohmann::json& config,
                                                   const std::filesystem::path& file,
                                                   bool with_projection);

struct ClipTextOutput {
  // hidden_states[0] is the embedding output, [i] the output of layer i (no final LayerNorm).
  std::vector<torch::Tensor> hidden_states;
  torch::Tensor last_hidden_state;  // final_layer_norm(hidden_states.back())
  torch::Tensor pooled;             // last_hidden_state at each row's first end token
  torch::Tensor text_embeds;        // text_projection(pooled); undefined without projection
};

class ClipTextModel {
 public:
  // Takes "text_model.*" (and "text_projection.weight") from `weights`; check weights.status().
  static ClipTextModel Load(const ClipTextConfig& config, Weights& weights);

  const ClipTextConfig& config() const { return config_; }

  // ids: int64 [B, T], T <= max_positions. Causal mask only (no padding mask), as the SD
  // pipelines call it. The pooled row is argmax(ids), i.e. the first end token (id 49407).
  ClipTextOutput Forward(const torch::Tensor& ids) const;

  // final_layer_norm, for conditioning on an earlier layer as diffusers' clip_skip does.
  torch::Tensor FinalNorm(const torch::Tensor& hidden) const { return final_norm_(hidden); }

 private:
  struct Layer {
    LayerNorm norm1, norm2;
    Linear q, k, v, out, fc1, fc2;
  };
  ClipTextConfig config_;
  torch::Tensor token_embedding, position_embedding;
  std::vector<Layer> layers_;
  LayerNorm final_norm_;
  Linear projection_;
};

}  // namespace kiln::engine::sd
