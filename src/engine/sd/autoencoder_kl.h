// AutoencoderKL: Stable Diffusion's VAE (diffusers' AutoencoderKL), encoding pictures to latents
// and decoding latents to pictures, with a tiled decode for large pictures. Parameter names are
// diffusers' (older files' query/key/value/proj_attn names are read too). Immutable after Load;
// Encode/Decode are thread-safe.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/sd/weights.h"
#include "nlohmann/json.hpp"

namespace kiln::engine::sd {

struct VaeConfig {
  int64_t in_channels = 3;
  int64_t out_channels = 3;
  int64_t latent_channels = 4;
  std::vector<int64_t> block_out_channels = {128, 256, 512, 512};
  int64_t layers_per_block = 2;
  int64_t norm_num_groups = 32;
  double scaling_factor = 0.18215;
  bool force_upcast = true;  // SDXL's VAE overflows in fp16: run it in float32
  int64_t sample_size = 512;
};

absl::StatusOr<VaeConfig> ParseVaeConfig(const nlohmann::json& config,
                                         const std::filesystem::path& file);

struct LatentDistribution {
  torch::Tensor mean;    // unscaled (multiply by scaling_factor for pipeline latents)
  torch::Tensor logvar;  // clamped to [-30, 20]
  torch::Tensor std() const { return torch::exp(0.5 * logvar); }
};

class AutoencoderKL {
 public:
  // Takes "encoder.*", "decoder.*", "quant_conv.*" and "post_quant_conv.*"; the encoder parts
  // only when `with_encoder`. Check weights.status().
  static AutoencoderKL Load(const VaeConfig& config, Weights& weights, bool with_encoder);

  const VaeConfig& config() const { return config_; }
  bool has_encoder() const { return encoder_.conv_in.weight.defined(); }
  int64_t downsample() const { return int64_t{1} << (config_.block_out_channels.size() - 1); }

  // x: [B, 3, H, W] in [-1, 1]. REQUIRES: has_encoder().
  LatentDistribution Encode(const torch::Tensor& x) const;
  // z: [B, latent, h, w], unscaled (pipeline latents / scaling_factor). Returns [B, 3, H, W],
  // nominally [-1, 1], unclamped.
  torch::Tensor Decode(const torch::Tensor& z) const;
  // Decode in overlapping latent tiles of `tile` (blended over `overlap` latents), for pictures
  // whose full decode would not fit in memory. Close to Decode, not identical (the mid-block
  // attention and GroupNorm statistics see one tile at a time).
  torch::Tensor DecodeTiled(const torch::Tensor& z, int64_t tile = 64, int64_t overlap = 16) const;

 private:
  struct Resnet {
    GroupNorm norm1, norm2;
    Conv2d conv1, conv2, shortcut;
    torch::Tensor operator()(const torch::Tensor& x) const;
  };
  struct MidAttention {
    GroupNorm norm;
    Linear q, k, v, out;
    torch::Tensor operator()(const torch::Tensor& x) const;
  };
  struct Stage {
    std::vector<Resnet> resnets;
    Conv2d resample;
  };
  struct Coder {
    Conv2d conv_in, conv_out;
    std::vector<Stage> stages;
    Resnet mid1, mid2;
    MidAttention mid_attention;
    GroupNorm norm_out;
  };
  static Resnet LoadResnet(Weights& w, const std::string& name, int64_t in, int64_t out,
                           int64_t groups);
  static MidAttention LoadMidAttention(Weights& w, const std::string& name, int64_t c,
                                       int64_t groups);

  VaeConfig config_;
  Coder encoder_, decoder_;
  Conv2d quant_conv_, post_quant_conv_;
};

}  // namespace kiln::engine::sd
