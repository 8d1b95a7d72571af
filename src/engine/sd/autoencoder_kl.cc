#include "engine/sd/autoencoder_kl.h"

#include <cmath>

#include "core/status_util.h"
#include "core/strings.h"
#include "engine/sd/config_json.h"

namespace kiln::engine::sd {

absl::StatusOr<VaeConfig> ParseVaeConfig(const nlohmann::json& config,
                                         const std::filesystem::path& file) {
  ConfigReader r(config, file);
  VaeConfig c;
  c.in_channels = r.Int("in_channels", 3);
  c.out_channels = r.Int("out_channels", 3);
  c.latent_channels = r.Int("latent_channels", 4);
  c.layers_per_block = r.Int("layers_per_block", 2);
  c.norm_num_groups = r.Int("norm_num_groups", 32);
  c.scaling_factor = r.Double("scaling_factor", 0.18215);
  c.force_upcast = r.Bool("force_upcast", true);
  c.sample_size = r.Int("sample_size", c.sample_size);
  const size_t n = r.Strings("down_block_types").size();
  if (r.Has("block_out_channels")) {
    c.block_out_channels = r.IntOrList("block_out_channels", 0, n ? n : 4);
  }
  for (const std::string& t : r.Strings("down_block_types")) {
    if (t != "DownEncoderBlock2D") r.Fail("down_block_types", StrCat("'", t, "' is not supported"));
  }
  for (const std::string& t : r.Strings("up_block_types")) {
    if (t != "UpDecoderBlock2D") r.Fail("up_block_types", StrCat("'", t, "' is not supported"));
  }
  for (int64_t ch : c.block_out_channels) {
    if (ch <= 0 || ch % c.norm_num_groups != 0) {
      r.Fail("block_out_channels", "every width must be a positive multiple of norm_num_groups");
      break;
    }
  }
  if (c.scaling_factor <= 0) r.Fail("scaling_factor", "must be positive");
  if (r.String("act_fn", "silu") != "silu") r.Fail("act_fn", "only silu is supported");
  KILN_RETURN_IF_ERROR(r.status());
  return c;
}

AutoencoderKL::Resnet AutoencoderKL::LoadResnet(Weights& w, const std::string& name, int64_t in,
                                                int64_t out, int64_t groups) {
  Resnet r;
  r.norm1 = LoadGroupNorm(w, name + ".norm1", in, groups, 1e-6);
  r.conv1 = LoadConv(w, name + ".conv1", in, out, 3);
  r.norm2 = LoadGroupNorm(w, name + ".norm2", out, groups, 1e-6);
  r.conv2 = LoadConv(w, name + ".conv2", out, out, 3);
  if (in != out) r.shortcut = LoadConv(w, name + ".conv_shortcut", in, out, 1);
  return r;
}

torch::Tensor AutoencoderKL::Resnet::operator()(const torch::Tensor& x) const {
  torch::Tensor h = conv1(torch::silu(norm1(x)));
  h = conv2(torch::silu(norm2(h)));
  return (shortcut.weight.defined() ? shortcut(x) : x) + h;
}

AutoencoderKL::MidAttention AutoencoderKL::LoadMidAttention(Weights& w, const std::string& name,
                                                            int64_t c, int64_t groups) {
  MidAttention a;
  a.norm = LoadGroupNorm(w, name + ".group_norm", c, groups, 1e-6);
  // Files written by diffusers before 0.14 use the old attention names.
  const bool old = w.Has(name + ".query.weight");
  a.q = LoadLinear(w, name + (old ? ".query" : ".to_q"), c, c);
  a.k = LoadLinear(w, name + (old ? ".key" : ".to_k"), c, c);
  a.v = LoadLinear(w, name + (old ? ".value" : ".to_v"), c, c);
  a.out = LoadLinear(w, name + (old ? ".proj_attn" : ".to_out.0"), c, c);
  return a;
}

torch::Tensor AutoencoderKL::MidAttention::operator()(const torch::Tensor& x) const {
  const int64_t b = x.size(0), c = x.size(1), h = x.size(2), wd = x.size(3);
  torch::Tensor t = norm(x).view({b, c, h * wd}).transpose(1, 2);
  torch::Tensor o = out(Attention(q(t), k(t), v(t), /*heads=*/1));
  return o.transpose(1, 2).reshape({b, c, h, wd}) + x;
}

AutoencoderKL AutoencoderKL::Load(const VaeConfig& c, Weights& w, bool with_encoder) {
  AutoencoderKL m;
  m.config_ = c;
  const auto& boc = c.block_out_channels;
  const size_t n = boc.size();
  const int64_t g = c.norm_num_groups, lat = c.latent_channels, top = boc.back();
  auto load_mid = [&](Coder& coder, const std::string& p) {
    coder.mid1 = LoadResnet(w, p + "mid_block.resnets.0", top, top, g);
    coder.mid_attention = LoadMidAttention(w, p + "mid_block.attentions.0", top, g);
    coder.mid2 = LoadResnet(w, p + "mid_block.resnets.1", top, top, g);
  };
  if (with_encoder) {
    Coder& e = m.encoder_;
    e.conv_in = LoadConv(w, "encoder.conv_in", c.in_channels, boc[0], 3);
    for (size_t i = 0; i < n; ++i) {
      const std::string p = StrCat("encoder.down_blocks.", i, ".");
      Stage s;
      for (int64_t j = 0; j < c.layers_per_block; ++j) {
        const int64_t in = j == 0 ? boc[i == 0 ? 0 : i - 1] : boc[i];
        s.resnets.push_back(LoadResnet(w, StrCat(p, "resnets.", j), in, boc[i], g));
      }
      if (i + 1 < n) {
        s.resample = LoadConv(w, p + "downsamplers.0.conv", boc[i], boc[i], 3, /*stride=*/2, 0);
      }
      e.stages.push_back(std::move(s));
    }
    load_mid(e, "encoder.");
    e.norm_out = LoadGroupNorm(w, "encoder.conv_norm_out", top, g, 1e-6);
    e.conv_out = LoadConv(w, "encoder.conv_out", top, 2 * lat, 3);
    m.quant_conv_ = LoadConv(w, "quant_conv", 2 * lat, 2 * lat, 1);
  }
  Coder& d = m.decoder_;
  m.post_quant_conv_ = LoadConv(w, "post_quant_conv", lat, lat, 1);
  d.conv_in = LoadConv(w, "decoder.conv_in", lat, top, 3);
  load_mid(d, "decoder.");
  int64_t prev = top;
  for (size_t i = 0; i < n; ++i) {
    const int64_t out = boc[n - 1 - i];
    const std::string p = StrCat("decoder.up_blocks.", i, ".");
    Stage s;
    for (int64_t j = 0; j <= c.layers_per_block; ++j) {
      s.resnets.push_back(LoadResnet(w, StrCat(p, "resnets.", j), j == 0 ? prev : out, out, g));
    }
    if (i + 1 < n) s.resample = LoadConv(w, p + "upsamplers.0.conv", out, out, 3);
    prev = out;
    d.stages.push_back(std::move(s));
  }
  d.norm_out = LoadGroupNorm(w, "decoder.conv_norm_out", boc[0], g, 1e-6);
  d.conv_out = LoadConv(w, "decoder.conv_out", boc[0], c.out_channels, 3);
  return m;
}

LatentDistribution AutoencoderKL::Encode(const torch::Tensor& x) const {
  const Coder& e = encoder_;
  torch::Tensor h = e.conv_in(x.to(e.conv_in.weight.scalar_type()));
  for (const Stage& s : e.stages) {
    for (const Resnet& r : s.resnets) h = r(h);
    if (s.resample.weight.defined()) {
      // The VAE pads right and bottom by one, then convolves with stride 2 and no padding.
      h = s.resample(torch::constant_pad_nd(h, {0, 1, 0, 1}));
    }
  }
  h = e.mid2(e.mid_attention(e.mid1(h)));
  h = quant_conv_(e.conv_out(torch::silu(e.norm_out(h)))).to(torch::kFloat32);
  std::vector<torch::Tensor> parts = h.chunk(2, 1);
  return LatentDistribution{parts[0], parts[1].clamp(-30.0, 20.0)};
}

torch::Tensor AutoencoderKL::Decode(const torch::Tensor& z) const {
  const Coder& d = decoder_;
  torch::Tensor h = post_quant_conv_(z.to(d.conv_in.weight.scalar_type()));
  h = d.conv_in(h);
  h = d.mid2(d.mid_attention(d.mid1(h)));
  for (const Stage& s : d.stages) {
    for (const Resnet& r : s.resnets) h = r(h);
    if (s.resample.weight.defined()) {
      h = s.resample(
          torch::upsample_nearest2d(h, std::vector<int64_t>{h.size(2) * 2, h.size(3) * 2}));
    }
  }
  return d.conv_out(torch::silu(d.norm_out(h))).to(torch::kFloat32);
}

torch::Tensor AutoencoderKL::DecodeTiled(const torch::Tensor& z, int64_t tile,
                                         int64_t overlap) const {
  const int64_t h = z.size(2), w = z.size(3), f = downsample();
  if (h <= tile && w <= tile) return Decode(z);
  const int64_t stride = std::max<int64_t>(1, tile - overlap);
  auto starts = [&](int64_t size) {
    std::vector<int64_t> s;
    for (int64_t p = 0;; p += stride) {
      if (p + tile >= size) {
        s.push_back(std::max<int64_t>(0, size - tile));
        break;
      }
      s.push_back(p);
    }
    return s;
  };
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat32).device(z.device());
  torch::Tensor out = torch::zeros({z.size(0), config_.out_channels, h * f, w * f}, f32);
  torch::Tensor weight = torch::zeros({1, 1, h * f, w * f}, f32);
  // A tile's weight ramps up linearly over the overlap from each inner edge, so that neighbours
  // cross-fade instead of showing a seam.
  auto ramp = [&](int64_t len, bool ramp_start, bool ramp_end) {
    torch::Tensor r = torch::ones({len}, f32);
    const int64_t o = std::min(overlap * f, len / 2);
    for (int64_t i = 0; i < o; ++i) {
      const float v = static_cast<float>(i + 1) / static_cast<float>(o + 1);
      if (ramp_start) r[i] = std::min(r[i].item<float>(), v);
      if (ramp_end) r[len - 1 - i] = std::min(r[len - 1 - i].item<float>(), v);
    }
    return r;
  };
  const std::vector<int64_t> ys = starts(h), xs = starts(w);
  for (int64_t y : ys) {
    for (int64_t x : xs) {
      const int64_t th = std::min(tile, h - y), tw = std::min(tile, w - x);
      torch::Tensor part = Decode(z.slice(2, y, y + th).slice(3, x, x + tw));
      torch::Tensor wy = ramp(th * f, y > 0, y + th < h).view({1, 1, -1, 1});
      torch::Tensor wx = ramp(tw * f, x > 0, x + tw < w).view({1, 1, 1, -1});
      torch::Tensor wt = wy * wx;
      out.slice(2, y * f, (y + th) * f).slice(3, x * f, (x + tw) * f) += part * wt;
      weight.slice(2, y * f, (y + th) * f).slice(3, x * f, (x + tw) * f) += wt;
    }
  }
  return out / weight;
}

}  // namespace kiln::engine::sd
