// UNet2DConditionModel: the Stable Diffusion denoiser as diffusers defines it, in the variants SD
// uses: SD 1.x (conv projections), SD 2.x (linear projections, per-block head counts), SDXL
// (text_time added embedding, several transformer layers per block) and InstructPix2Pix (8 input
// channels). Parameter names are diffusers'. Immutable after Load; Forward is thread-safe.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/sd/weights.h"
#include "nlohmann/json.hpp"

namespace kiln::engine::sd {

struct UNetConfig {
  int64_t in_channels = 4;
  int64_t out_channels = 4;
  std::vector<int64_t> block_out_channels = {320, 640, 1280, 1280};
  std::vector<bool> down_has_attention = {true, true, true, false};  // CrossAttnDownBlock2D?
  std::vector<bool> up_has_attention = {false, true, true, true};    // CrossAttnUpBlock2D?
  int64_t layers_per_block = 2;
  // Per down block (up blocks use them reversed); diffusers' SD configs call the head count
  // attention_head_dim.
  std::vector<int64_t> num_heads = {8, 8, 8, 8};
  std::vector<int64_t> transformer_layers = {1, 1, 1, 1};
  int64_t cross_attention_dim = 768;
  bool use_linear_projection = false;
  int64_t norm_num_groups = 32;
  double norm_eps = 1e-5;
  bool flip_sin_to_cos = true;
  double freq_shift = 0;
  // SDXL: addition_embed_type "text_time".
  bool text_time_embedding = false;
  int64_t addition_time_embed_dim = 0;
  int64_t projection_class_embeddings_input_dim = 0;
  int64_t sample_size = 64;  // latent side the model was trained at
};

// Reads a diffusers unet/config.json; anything this engine does not implement (other block
// types, class embeddings, attention variants) is an error naming the key.
absl::StatusOr<UNetConfig> ParseUNetConfig(const nlohmann::json& config,
                                           const std::filesystem::path& file);

// SDXL's added conditions, one row per sample.
struct AddedConditions {
  torch::Tensor text_embeds;  // [B, pooled dim]
  torch::Tensor time_ids;     // [B, 6]
};

class UNet {
 public:
  // Takes the diffusers UNet parameters from `weights`; check weights.status().
  static UNet Load(const UNetConfig& config, Weights& weights);

  const UNetConfig& config() const { return config_; }

  // sample [B, in, h, w], timesteps [B] (training t, fractional allowed), context [B, T, D];
  // `added` is required when config().text_time_embedding. Returns [B, out, h, w].
  torch::Tensor Forward(const torch::Tensor& sample, const torch::Tensor& timesteps,
                        const torch::Tensor& context, const AddedConditions* added) const;

 private:
  struct ResnetBlock {
    GroupNorm norm1, norm2;
    Conv2d conv1, conv2;
    Linear time_emb_proj;
    Conv2d shortcut;  // undefined when the channel count does not change
    torch::Tensor operator()(const torch::Tensor& x, const torch::Tensor& temb) const;
  };
  struct TransformerBlock {
    LayerNorm norm1, norm2, norm3;
    Linear q1, k1, v1, out1, q2, k2, v2, out2, ff_in, ff_out;
  };
  struct Transformer {
    GroupNorm norm;
    Linear proj_in_linear, proj_out_linear;  // use_linear_projection
    Conv2d proj_in_conv, proj_out_conv;      // otherwise
    std::vector<TransformerBlock> blocks;
    int64_t heads = 8;
    torch::Tensor operator()(const torch::Tensor& x, const torch::Tensor& context) const;
  };
  struct Block {
    std::vector<ResnetBlock> resnets;
    std::vector<Transformer> attentions;  // empty, or one per resnet
    Conv2d resample;                      // downsampler / upsampler conv; undefined when none
  };

  static ResnetBlock LoadResnet(Weights& w, const std::string& name, int64_t in, int64_t out,
                                int64_t temb, const UNetConfig& c);
  static Transformer LoadTransformer(Weights& w, const std::string& name, int64_t channels,
                                     int64_t heads, int64_t layers, const UNetConfig& c);

  UNetConfig config_;
  Conv2d conv_in_, conv_out_;
  Linear time_linear1_, time_linear2_, add_linear1_, add_linear2_;
  std::vector<Block> down_, up_;
  ResnetBlock mid_resnet1_, mid_resnet2_;
  Transformer mid_attention_;
  GroupNorm norm_out_;
};

}  // namespace kiln::engine::sd
