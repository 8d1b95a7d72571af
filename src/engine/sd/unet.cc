#include "engine/sd/unet.h"

#include <algorithm>

#include "core/status_util.h"
#include "core/strings.h"
#include "engine/sd/config_json.h"

namespace kiln::engine::sd {
namespace {

// Keys whose only supported value is their diffusers default for SD checkpoints.
struct Expected {
  const char* key;
  nlohmann::json value;
};

}  // namespace

absl::StatusOr<UNetConfig> ParseUNetConfig(const nlohmann::json& config,
                                           const std::filesystem::path& file) {
  ConfigReader r(config, file);
  UNetConfig c;
  c.in_channels = r.Int("in_channels", c.in_channels);
  c.out_channels = r.Int("out_channels", c.out_channels);
  c.layers_per_block = r.Int("layers_per_block", c.layers_per_block);
  c.cross_attention_dim = r.Int("cross_attention_dim", c.cross_attention_dim);
  c.use_linear_projection = r.Bool("use_linear_projection", false);
  c.norm_num_groups = r.Int("norm_num_groups", 32);
  c.norm_eps = r.Double("norm_eps", 1e-5);
  c.flip_sin_to_cos = r.Bool("flip_sin_to_cos", true);
  c.freq_shift = r.Double("freq_shift", 0);
  c.sample_size = r.Int("sample_size", c.sample_size);
  if (r.Has("block_out_channels")) {
    const nlohmann::json& boc = config["block_out_channels"];
    c.block_out_channels.clear();
    if (boc.is_array()) {
      for (const auto& v : boc) {
        if (v.is_number_integer()) c.block_out_channels.push_back(v.get<int64_t>());
      }
    }
    if (c.block_out_channels.empty() || c.block_out_channels.size() != boc.size()) {
      r.Fail("block_out_channels", "expected a list of integers");
    }
  }
  const size_t n = c.block_out_channels.size();
  std::vector<std::string> down = r.Strings("down_block_types");
  std::vector<std::string> up = r.Strings("up_block_types");
  if (down.empty())
    down = {"CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"};
  if (up.empty())
    up = {"UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"};
  if (down.size() != n || up.size() != n) {
    r.Fail("down_block_types", StrCat("down and up block lists must both have ", n,
                                      " entries (one per block_out_channels)"));
  }
  c.down_has_attention.clear();
  c.up_has_attention.clear();
  for (const std::string& t : down) {
    if (t != "CrossAttnDownBlock2D" && t != "DownBlock2D") {
      r.Fail("down_block_types", StrCat("block type '", t, "' is not supported"));
    }
    c.down_has_attention.push_back(t == "CrossAttnDownBlock2D");
  }
  for (const std::string& t : up) {
    if (t != "CrossAttnUpBlock2D" && t != "UpBlock2D") {
      r.Fail("up_block_types", StrCat("block type '", t, "' is not supported"));
    }
    c.up_has_attention.push_back(t == "CrossAttnUpBlock2D");
  }
  // diffusers' SD configs give the head count as attention_head_dim; num_attention_heads, when
  // set, takes precedence.
  c.num_heads = r.Has("num_attention_heads") ? r.IntOrList("num_attention_heads", 8, n)
                                             : r.IntOrList("attention_head_dim", 8, n);
  c.transformer_layers = r.IntOrList("transformer_layers_per_block", 1, n);
  const std::string mid = r.String("mid_block_type", "UNetMidBlock2DCrossAttn");
  if (mid != "UNetMidBlock2DCrossAttn") {
    r.Fail("mid_block_type", StrCat("'", mid, "' is not supported"));
  }
  const std::string addition = r.String("addition_embed_type", "");
  if (!addition.empty() && addition != "text_time") {
    r.Fail("addition_embed_type", StrCat("'", addition, "' is not supported"));
  }
  c.text_time_embedding = addition == "text_time";
  if (c.text_time_embedding) {
    c.addition_time_embed_dim = r.Int("addition_time_embed_dim", 256);
    c.projection_class_embeddings_input_dim = r.Int("projection_class_embeddings_input_dim", 2816);
  }
  const Expected expected[] = {
      {"class_embed_type", nullptr},
      {"encoder_hid_dim", nullptr},
      {"time_cond_proj_dim", nullptr},
      {"only_cross_attention", false},
      {"dual_cross_attention", false},
      {"resnet_time_scale_shift", "default"},
      {"time_embedding_type", "positional"},
      {"center_input_sample", false},
      {"conv_in_kernel", 3},
      {"conv_out_kernel", 3},
      {"act_fn", "silu"},
      {"mid_block_scale_factor", 1},
      {"num_class_embeds", nullptr},
      {"time_embedding_dim", nullptr},
      {"reverse_transformer_layers_per_block", nullptr},
      {"attention_type", "default"},
  };
  for (const Expected& e : expected) {
    auto it = config.find(e.key);
    if (it == config.end() || it->is_null() || *it == e.value) continue;
    if (e.value.is_number() && it->is_number() && it->get<double>() == e.value.get<double>()) {
      continue;
    }
    r.Fail(e.key, StrCat(it->dump(), " is not supported (only ", e.value.dump(), ")"));
  }
  for (size_t i = 0; i < n && r.status().ok(); ++i) {
    if (c.block_out_channels[i] % c.norm_num_groups != 0) {
      r.Fail("block_out_channels", "every width must be a multiple of norm_num_groups");
    } else if (c.num_heads[i] <= 0 || c.block_out_channels[i] % c.num_heads[i] != 0) {
      r.Fail("attention_head_dim", "each head count must divide its block's width");
    } else if (c.transformer_layers[i] <= 0) {
      r.Fail("transformer_layers_per_block", "must be positive");
    }
  }
  if (c.in_channels <= 0 || c.out_channels <= 0 || c.layers_per_block <= 0 ||
      c.cross_attention_dim <= 0) {
    r.Fail("in_channels",
           "channel counts, layers_per_block and cross_attention_dim must be positive");
  }
  KILN_RETURN_IF_ERROR(r.status());
  return c;
}

UNet::ResnetBlock UNet::LoadResnet(Weights& w, const std::string& name, int64_t in, int64_t out,
                                   int64_t temb, const UNetConfig& c) {
  ResnetBlock r;
  r.norm1 = LoadGroupNorm(w, name + ".norm1", in, c.norm_num_groups, c.norm_eps);
  r.conv1 = LoadConv(w, name + ".conv1", in, out, 3);
  r.time_emb_proj = LoadLinear(w, name + ".time_emb_proj", temb, out);
  r.norm2 = LoadGroupNorm(w, name + ".norm2", out, c.norm_num_groups, c.norm_eps);
  r.conv2 = LoadConv(w, name + ".conv2", out, out, 3);
  if (in != out) r.shortcut = LoadConv(w, name + ".conv_shortcut", in, out, 1);
  return r;
}

torch::Tensor UNet::ResnetBlock::operator()(const torch::Tensor& x,
                                            const torch::Tensor& temb) const {
  torch::Tensor h = conv1(torch::silu(norm1(x)));
  h = h + time_emb_proj(torch::silu(temb)).unsqueeze(-1).unsqueeze(-1);
  h = conv2(torch::silu(norm2(h)));
  return (shortcut.weight.defined() ? shortcut(x) : x) + h;
}

UNet::Transformer UNet::LoadTransformer(Weights& w, const std::string& name, int64_t channels,
                                        int64_t heads, int64_t layers, const UNetConfig& c) {
  Transformer t;
  t.heads = heads;
  t.norm = LoadGroupNorm(w, name + ".norm", channels, c.norm_num_groups, 1e-6);
  if (c.use_linear_projection) {
    t.proj_in_linear = LoadLinear(w, name + ".proj_in", channels, channels);
    t.proj_out_linear = LoadLinear(w, name + ".proj_out", channels, channels);
  } else {
    t.proj_in_conv = LoadConv(w, name + ".proj_in", channels, channels, 1);
    t.proj_out_conv = LoadConv(w, name + ".proj_out", channels, channels, 1);
  }
  const int64_t d = channels, ctx = c.cross_attention_dim, ff = 4 * channels;
  for (int64_t i = 0; i < layers; ++i) {
    const std::string p = StrCat(name, ".transformer_blocks.", i, ".");
    TransformerBlock b;
    b.norm1 = LoadLayerNorm(w, p + "norm1", d, 1e-5);
    b.norm2 = LoadLayerNorm(w, p + "norm2", d, 1e-5);
    b.norm3 = LoadLayerNorm(w, p + "norm3", d, 1e-5);
    b.q1 = LoadLinear(w, p + "attn1.to_q", d, d, false);
    b.k1 = LoadLinear(w, p + "attn1.to_k", d, d, false);
    b.v1 = LoadLinear(w, p + "attn1.to_v", d, d, false);
    b.out1 = LoadLinear(w, p + "attn1.to_out.0", d, d);
    b.q2 = LoadLinear(w, p + "attn2.to_q", d, d, false);
    b.k2 = LoadLinear(w, p + "attn2.to_k", ctx, d, false);
    b.v2 = LoadLinear(w, p + "attn2.to_v", ctx, d, false);
    b.out2 = LoadLinear(w, p + "attn2.to_out.0", d, d);
    b.ff_in = LoadLinear(w, p + "ff.net.0.proj", d, 2 * ff);
    b.ff_out = LoadLinear(w, p + "ff.net.2", ff, d);
    t.blocks.push_back(std::move(b));
  }
  return t;
}

torch::Tensor UNet::Transformer::operator()(const torch::Tensor& x,
                                            const torch::Tensor& context) const {
  const int64_t b = x.size(0), hh = x.size(2), ww = x.size(3);
  auto to_tokens = [&](const torch::Tensor& t) {
    return t.permute({0, 2, 3, 1}).reshape({b, hh * ww, t.size(1)});
  };
  auto to_map = [&](const torch::Tensor& t) {
    return t.reshape({b, hh, ww, t.size(2)}).permute({0, 3, 1, 2});
  };
  torch::Tensor h = norm(x);
  h = proj_in_conv.weight.defined() ? to_tokens(proj_in_conv(h)) : proj_in_linear(to_tokens(h));
  for (const TransformerBlock& blk : blocks) {
    torch::Tensor n = blk.norm1(h);
    h = h + blk.out1(Attention(blk.q1(n), blk.k1(n), blk.v1(n), heads));
    n = blk.norm2(h);
    h = h + blk.out2(Attention(blk.q2(n), blk.k2(context), blk.v2(context), heads));
    std::vector<torch::Tensor> parts = blk.ff_in(blk.norm3(h)).chunk(2, -1);
    h = h + blk.ff_out(parts[0] * torch::gelu(parts[1]));
  }
  h = proj_out_conv.weight.defined() ? proj_out_conv(to_map(h).contiguous())
                                     : to_map(proj_out_linear(h));
  return h + x;
}

UNet UNet::Load(const UNetConfig& c, Weights& w) {
  UNet u;
  u.config_ = c;
  const auto& boc = c.block_out_channels;
  const size_t n = boc.size();
  const int64_t temb = 4 * boc[0];
  u.conv_in_ = LoadConv(w, "conv_in", c.in_channels, boc[0], 3);
  u.time_linear1_ = LoadLinear(w, "time_embedding.linear_1", boc[0], temb);
  u.time_linear2_ = LoadLinear(w, "time_embedding.linear_2", temb, temb);
  if (c.text_time_embedding) {
    u.add_linear1_ =
        LoadLinear(w, "add_embedding.linear_1", c.projection_class_embeddings_input_dim, temb);
    u.add_linear2_ = LoadLinear(w, "add_embedding.linear_2", temb, temb);
  }
  for (size_t i = 0; i < n; ++i) {
    const std::string p = StrCat("down_blocks.", i, ".");
    Block b;
    const int64_t out = boc[i];
    for (int64_t j = 0; j < c.layers_per_block; ++j) {
      const int64_t in = j == 0 ? boc[i == 0 ? 0 : i - 1] : out;
      b.resnets.push_back(LoadResnet(w, StrCat(p, "resnets.", j), in, out, temb, c));
      if (c.down_has_attention[i]) {
        b.attentions.push_back(LoadTransformer(w, StrCat(p, "attentions.", j), out, c.num_heads[i],
                                               c.transformer_layers[i], c));
      }
    }
    if (i + 1 < n) {
      b.resample = LoadConv(w, p + "downsamplers.0.conv", out, out, 3, /*stride=*/2, 1);
    }
    u.down_.push_back(std::move(b));
  }
  const int64_t top = boc.back();
  u.mid_resnet1_ = LoadResnet(w, "mid_block.resnets.0", top, top, temb, c);
  u.mid_attention_ = LoadTransformer(w, "mid_block.attentions.0", top, c.num_heads.back(),
                                     c.transformer_layers.back(), c);
  u.mid_resnet2_ = LoadResnet(w, "mid_block.resnets.1", top, top, temb, c);
  int64_t prev = boc[n - 1];
  for (size_t i = 0; i < n; ++i) {
    const size_t r = n - 1 - i;  // the down block this up block mirrors
    const std::string p = StrCat("up_blocks.", i, ".");
    Block b;
    const int64_t out = boc[r];
    const int64_t skip_in = boc[r == 0 ? 0 : r - 1];
    for (int64_t j = 0; j <= c.layers_per_block; ++j) {
      const int64_t res_skip = j == c.layers_per_block ? skip_in : out;
      const int64_t in = (j == 0 ? prev : out) + res_skip;
      b.resnets.push_back(LoadResnet(w, StrCat(p, "resnets.", j), in, out, temb, c));
      if (c.up_has_attention[i]) {
        b.attentions.push_back(LoadTransformer(w, StrCat(p, "attentions.", j), out, c.num_heads[r],
                                               c.transformer_layers[r], c));
      }
    }
    if (i + 1 < n) b.resample = LoadConv(w, p + "upsamplers.0.conv", out, out, 3);
    prev = out;
    u.up_.push_back(std::move(b));
  }
  u.norm_out_ = LoadGroupNorm(w, "conv_norm_out", boc[0], c.norm_num_groups, c.norm_eps);
  u.conv_out_ = LoadConv(w, "conv_out", boc[0], c.out_channels, 3);
  return u;
}

torch::Tensor UNet::Forward(const torch::Tensor& sample, const torch::Tensor& timesteps,
                            const torch::Tensor& context, const AddedConditions* added) const {
  const int64_t batch = sample.size(0);
  const auto dtype = conv_in_.weight.scalar_type();
  torch::Tensor t = timesteps.to(torch::kFloat32).reshape({-1}).expand({batch});
  torch::Tensor emb = TimestepEmbedding(t, config_.block_out_channels[0], config_.flip_sin_to_cos,
                                        config_.freq_shift)
                          .to(dtype);
  emb = time_linear2_(torch::silu(time_linear1_(emb)));
  if (config_.text_time_embedding) {
    torch::Tensor time_embeds = TimestepEmbedding(added->time_ids.to(torch::kFloat32).reshape({-1}),
                                                  config_.addition_time_embed_dim,
                                                  config_.flip_sin_to_cos, config_.freq_shift)
                                    .reshape({batch, -1});
    torch::Tensor add = torch::cat({added->text_embeds.to(torch::kFloat32), time_embeds}, -1);
    emb = emb + add_linear2_(torch::silu(add_linear1_(add.to(dtype))));
  }
  const torch::Tensor ctx = context.to(dtype);
  torch::Tensor x = conv_in_(sample.to(dtype));
  std::vector<torch::Tensor> skips = {x};
  for (const Block& b : down_) {
    for (size_t j = 0; j < b.resnets.size(); ++j) {
      x = b.resnets[j](x, emb);
      if (!b.attentions.empty()) x = b.attentions[j](x, ctx);
      skips.push_back(x);
    }
    if (b.resample.weight.defined()) {
      x = b.resample(x);
      skips.push_back(x);
    }
  }
  x = mid_resnet2_(mid_attention_(mid_resnet1_(x, emb), ctx), emb);
  for (const Block& b : up_) {
    for (size_t j = 0; j < b.resnets.size(); ++j) {
      x = torch::cat({x, skips.back()}, 1);
      skips.pop_back();
      x = b.resnets[j](x, emb);
      if (!b.attentions.empty()) x = b.attentions[j](x, ctx);
    }
    if (b.resample.weight.defined()) {
      // Nearest x2, or to the next skip's size when a side was odd on the way down.
      const auto& next = skips.back();
      x = torch::upsample_nearest2d(x, std::vector<int64_t>{next.size(2), next.size(3)});
      x = b.resample(x);
    }
  }
  return conv_out_(torch::silu(norm_out_(x)));
}

}  // namespace kiln::engine::sd
