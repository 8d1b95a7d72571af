#include "engine/sd/ldm_checkpoint.h"

#include <yaml-cpp/yaml.h>

#include <charconv>
#include <map>
#include <optional>
#include <set>

#include "core/status_util.h"
#include "core/strings.h"

namespace kiln::engine::sd {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kUNet = "model.diffusion_model.";
constexpr std::string_view kVae = "first_stage_model.";
constexpr std::string_view kText = "cond_stage_model.transformer.";

bool StartsWith(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

// Reads "<int>." from the front of `s`, advancing it.
std::optional<int> TakeIndex(std::string_view& s) {
  int v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end == s.data() + s.size() || *end != '.') return std::nullopt;
  s.remove_prefix(static_cast<size_t>(end - s.data()) + 1);
  return v;
}

// Replaces a leading `from` with `to`; false when `s` does not start with `from`.
bool Rename(std::string& s, std::string_view from, std::string_view to) {
  if (!StartsWith(s, from)) return false;
  s = std::string(to) + s.substr(from.size());
  return true;
}

std::string UNetResnet(std::string rest) {
  Rename(rest, "in_layers.0.", "norm1.") || Rename(rest, "in_layers.2.", "conv1.") ||
      Rename(rest, "emb_layers.1.", "time_emb_proj.") || Rename(rest, "out_layers.0.", "norm2.") ||
      Rename(rest, "out_layers.3.", "conv2.") || Rename(rest, "skip_connection.", "conv_shortcut.");
  return rest;
}

// An LDM UNet key (after "model.diffusion_model.") under its diffusers name.
std::optional<std::string> UNetName(std::string_view key, int layers) {
  std::string k(key);
  if (Rename(k, "time_embed.0.", "time_embedding.linear_1.") ||
      Rename(k, "time_embed.2.", "time_embedding.linear_2.") ||
      Rename(k, "label_emb.0.0.", "add_embedding.linear_1.") ||
      Rename(k, "label_emb.0.2.", "add_embedding.linear_2.") ||
      Rename(k, "input_blocks.0.0.", "conv_in.") || Rename(k, "out.0.", "conv_norm_out.") ||
      Rename(k, "out.2.", "conv_out.")) {
    return k;
  }
  std::string_view s = key;
  if (StartsWith(s, "input_blocks.")) {
    s.remove_prefix(13);
    auto i = TakeIndex(s), j = TakeIndex(s);
    if (!i || !j || *i < 1) return std::nullopt;
    const int block = (*i - 1) / (layers + 1), layer = (*i - 1) % (layers + 1);
    const std::string rest(s);
    if (*j == 0 && StartsWith(rest, "op.")) {
      return StrCat("down_blocks.", block, ".downsamplers.0.conv.", rest.substr(3));
    }
    if (*j == 0) return StrCat("down_blocks.", block, ".resnets.", layer, ".", UNetResnet(rest));
    if (*j == 1) return StrCat("down_blocks.", block, ".attentions.", layer, ".", rest);
    return std::nullopt;
  }
  if (StartsWith(s, "middle_block.")) {
    s.remove_prefix(13);
    auto j = TakeIndex(s);
    const std::string rest(s);
    if (j == 0) return StrCat("mid_block.resnets.0.", UNetResnet(rest));
    if (j == 1) return StrCat("mid_block.attentions.0.", rest);
    if (j == 2) return StrCat("mid_block.resnets.1.", UNetResnet(rest));
    return std::nullopt;
  }
  if (StartsWith(s, "output_blocks.")) {
    s.remove_prefix(14);
    auto i = TakeIndex(s), j = TakeIndex(s);
    if (!i || !j) return std::nullopt;
    const int block = *i / (layers + 1), layer = *i % (layers + 1);
    const std::string rest(s);
    if (*j == 0) return StrCat("up_blocks.", block, ".resnets.", layer, ".", UNetResnet(rest));
    if (StartsWith(rest, "conv.")) {
      return StrCat("up_blocks.", block, ".upsamplers.0.conv.", rest.substr(5));
    }
    if (*j == 1) return StrCat("up_blocks.", block, ".attentions.", layer, ".", rest);
    return std::nullopt;
  }
  return std::nullopt;
}

// An LDM VAE key (after "first_stage_model.") under its diffusers name; `levels` is the number of
// resolution levels (the decoder's up.* run in the opposite order to diffusers' up_blocks).
std::optional<std::string> VaeName(std::string_view key, int levels) {
  std::string k(key);
  if (StartsWith(k, "quant_conv.") || StartsWith(k, "post_quant_conv.")) return k;
  std::string coder;
  if (Rename(k, "encoder.", "")) coder = "encoder.";
  if (coder.empty() && Rename(k, "decoder.", "")) coder = "decoder.";
  if (coder.empty()) return std::nullopt;
  auto resnet = [](std::string rest) {
    Rename(rest, "nin_shortcut.", "conv_shortcut.");
    return rest;
  };
  if (StartsWith(k, "conv_in.") || StartsWith(k, "conv_out.")) return coder + k;
  if (Rename(k, "norm_out.", "conv_norm_out.")) return coder + k;
  if (Rename(k, "mid.block_1.", "")) return coder + "mid_block.resnets.0." + resnet(k);
  if (Rename(k, "mid.block_2.", "")) return coder + "mid_block.resnets.1." + resnet(k);
  if (Rename(k, "mid.attn_1.", "")) {
    Rename(k, "norm.", "group_norm.") || Rename(k, "q.", "to_q.") || Rename(k, "k.", "to_k.") ||
        Rename(k, "v.", "to_v.") || Rename(k, "proj_out.", "to_out.0.");
    return coder + "mid_block.attentions.0." + k;
  }
  std::string_view s = k;
  const bool down = StartsWith(s, "down."), up = StartsWith(s, "up.");
  if (!down && !up) return std::nullopt;
  s.remove_prefix(down ? 5 : 3);
  auto level = TakeIndex(s);
  if (!level) return std::nullopt;
  const int block = down ? *level : levels - 1 - *level;
  const std::string blocks = StrCat(coder, down ? "down_blocks." : "up_blocks.", block, ".");
  std::string rest(s);
  if (Rename(rest, "block.", "")) {
    std::string_view r = rest;
    auto j = TakeIndex(r);
    if (!j) return std::nullopt;
    return StrCat(blocks, "resnets.", *j, ".", resnet(std::string(r)));
  }
  if (Rename(rest, "downsample.conv.", "")) return blocks + "downsamplers.0.conv." + rest;
  if (Rename(rest, "upsample.conv.", "")) return blocks + "upsamplers.0.conv." + rest;
  return std::nullopt;
}

// Shape of `key`, or empty when absent.
std::vector<int64_t> ShapeOf(const SafetensorsFile& f, const std::string& key) {
  auto it = f.tensors().find(key);
  return it == f.tensors().end() ? std::vector<int64_t>{} : it->second.shape;
}

// Counts i = 0, 1, ... while `pattern(i)` names a tensor.
int CountWhile(const SafetensorsFile& f, const std::function<std::string(int)>& pattern) {
  int n = 0;
  while (f.contains(pattern(n))) ++n;
  return n;
}

// The optional yaml beside the checkpoint: `<stem><suffix>` (the LDM config, or Kiln's
// overrides).
absl::StatusOr<YAML::Node> ReadYamlBeside(const fs::path& file, const std::string& suffix) {
  fs::path yaml = file.parent_path() / (file.stem().string() + suffix);
  if (!fs::exists(yaml)) return YAML::Node();
  try {
    if (fs::file_size(yaml) > (1 << 20)) {
      return absl::InvalidArgumentError(StrCat(yaml.string(), ": larger than 1 MiB"));
    }
    return YAML::LoadFile(yaml.string());
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(StrCat(yaml.string(), ": not valid YAML: ", e.what()));
  }
}

template <typename T>
std::optional<T> YamlValue(const YAML::Node& root, std::initializer_list<const char*> path) {
  try {
    YAML::Node n = root;
    for (const char* p : path) {
      if (!n.IsMap() || !n[p]) return std::nullopt;
      n.reset(n[p]);
    }
    return n.as<T>();
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

}  // namespace

bool IsSingleFileCheckpoint(const fs::path& path) {
  std::error_code ec;
  return path.extension() == ".safetensors" && fs::is_regular_file(path, ec);
}

absl::StatusOr<SingleFileLayout> ReadSingleFile(const fs::path& path) {
  KILN_ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open(path));
  const SafetensorsFile& f = *file;
  const std::string name = path.string();
  auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError(StrCat(name, ": ", why));
  };
  bool sdxl = false, sd2 = false, sd1 = false;
  for (const auto& [key, info] : f.tensors()) {
    if (StartsWith(key, "conditioner.embedders.")) sdxl = true;
    if (StartsWith(key, "cond_stage_model.model.")) sd2 = true;
    if (StartsWith(key, kText)) sd1 = true;
  }
  if (sdxl || sd2) {
    return bad(StrCat("a single-file ", sdxl ? "SDXL" : "Stable Diffusion 2.x",
                      " checkpoint (OpenCLIP text encoder keys); Kiln reads SD 1.x single files "
                      "only so far: convert it to a diffusers folder (diffusers' "
                      "from_single_file(...).save_pretrained(DIR)) and serve that"));
  }
  if (!sd1 || !f.contains(StrCat(kUNet, "input_blocks.0.0.weight")) ||
      !f.contains(StrCat(kVae, "decoder.conv_in.weight"))) {
    return bad(
        "not a Stable Diffusion checkpoint: it lacks the LDM UNet, VAE or text encoder "
        "keys (model.diffusion_model.*, first_stage_model.*, cond_stage_model.*)");
  }
  KILN_ASSIGN_OR_RETURN(YAML::Node yaml, ReadYamlBeside(path, ".yaml"));
  KILN_ASSIGN_OR_RETURN(YAML::Node overrides, ReadYamlBeside(path, ".kiln.yaml"));
  SingleFileLayout l;
  l.file = file;
  l.architecture = "sd1";

  // UNet: widths and depths from the shapes.
  UNetConfig& u = l.unet;
  const std::string un(kUNet);
  const auto conv_in = ShapeOf(f, un + "input_blocks.0.0.weight");
  if (conv_in.size() != 4)
    return bad("model.diffusion_model.input_blocks.0.0.weight is not a conv");
  u.in_channels = conv_in[1];
  int layers = 0;
  while (f.contains(StrCat(un, "input_blocks.", layers + 1, ".0.in_layers.0.weight"))) ++layers;
  if (layers == 0) return bad("no UNet resnets under model.diffusion_model.input_blocks");
  u.layers_per_block = layers;
  u.block_out_channels.clear();
  u.down_has_attention.clear();
  u.transformer_layers.clear();
  for (int b = 0;; ++b) {
    const int first = 1 + b * (layers + 1);
    const auto conv1 = ShapeOf(f, StrCat(un, "input_blocks.", first, ".0.in_layers.2.weight"));
    if (conv1.empty()) break;
    u.block_out_channels.push_back(conv1[0]);
    const std::string attn = StrCat(un, "input_blocks.", first, ".1.");
    u.down_has_attention.push_back(f.contains(attn + "norm.weight"));
    u.transformer_layers.push_back(std::max(1, CountWhile(f, [&](int i) {
                                              return StrCat(attn, "transformer_blocks.", i,
                                                            ".norm1.weight");
                                            })));
    if (!f.contains(StrCat(un, "input_blocks.", first + layers, ".0.op.weight"))) break;
  }
  const size_t n = u.block_out_channels.size();
  u.up_has_attention.clear();
  for (size_t b = 0; b < n; ++b) {
    u.up_has_attention.push_back(
        f.contains(StrCat(un, "output_blocks.", b * (layers + 1), ".1.norm.weight")));
  }
  u.out_channels = ShapeOf(f, un + "out.2.weight").empty() ? 4 : ShapeOf(f, un + "out.2.weight")[0];
  for (const auto& [key, info] : f.tensors()) {
    if (StartsWith(key, un) && key.find("attn2.to_k.weight") != std::string::npos) {
      u.cross_attention_dim = info.shape[1];
    }
    if (StartsWith(key, un) && key.find(".proj_in.weight") != std::string::npos) {
      u.use_linear_projection = info.shape.size() == 2;
    }
  }
  const auto heads =
      YamlValue<int64_t>(yaml, {"model", "params", "unet_config", "params", "num_heads"});
  const auto head_channels =
      YamlValue<int64_t>(yaml, {"model", "params", "unet_config", "params", "num_head_channels"});
  u.num_heads.clear();
  for (int64_t ch : u.block_out_channels) {
    // SD 1.x: 8 heads everywhere; a yaml may give the count or the width per head instead.
    int64_t h = heads && *heads > 0 ? *heads : 8;
    if (head_channels && *head_channels > 0) h = ch / *head_channels;
    u.num_heads.push_back(h);
  }
  u.sample_size =
      YamlValue<int64_t>(yaml, {"model", "params", "unet_config", "params", "image_size"})
          .value_or(64);
  for (size_t b = 0; b < n; ++b) {
    if (u.num_heads[b] <= 0 || u.block_out_channels[b] % u.num_heads[b] != 0) {
      return bad(StrCat("the UNet's block width ", u.block_out_channels[b], " does not split into ",
                        u.num_heads[b], " attention heads"));
    }
  }

  // VAE.
  VaeConfig& v = l.vae;
  const std::string vn(kVae);
  v.block_out_channels.clear();
  for (int i = 0;; ++i) {
    const auto conv1 = ShapeOf(f, StrCat(vn, "encoder.down.", i, ".block.0.conv1.weight"));
    if (conv1.empty()) break;
    v.block_out_channels.push_back(conv1[0]);
  }
  if (v.block_out_channels.empty()) return bad("no VAE encoder blocks under first_stage_model");
  v.layers_per_block =
      CountWhile(f, [&](int j) { return StrCat(vn, "encoder.down.0.block.", j, ".conv1.weight"); });
  const auto post_quant = ShapeOf(f, vn + "post_quant_conv.weight");
  if (post_quant.empty()) return bad("first_stage_model.post_quant_conv.weight is missing");
  v.latent_channels = post_quant[0];
  v.scaling_factor = YamlValue<double>(yaml, {"model", "params", "scale_factor"}).value_or(0.18215);
  v.sample_size = u.sample_size * (int64_t{1} << (v.block_out_channels.size() - 1));

  // Text encoder: CLIP ViT-L/14 layout; its heads are 64 wide (a yaml cannot say otherwise).
  ClipTextConfig& t = l.text;
  const std::string tn = StrCat(kText, "text_model.");
  const auto tokens = ShapeOf(f, tn + "embeddings.token_embedding.weight");
  const auto positions = ShapeOf(f, tn + "embeddings.position_embedding.weight");
  const auto fc1 = ShapeOf(f, tn + "encoder.layers.0.mlp.fc1.weight");
  if (tokens.size() != 2 || positions.size() != 2 || fc1.size() != 2) {
    return bad("the text encoder's embeddings or first layer are missing");
  }
  t.vocab_size = tokens[0];
  t.hidden_size = tokens[1];
  t.max_positions = positions[0];
  t.intermediate_size = fc1[0];
  t.num_layers =
      CountWhile(f, [&](int i) { return StrCat(tn, "encoder.layers.", i, ".layer_norm1.weight"); });
  t.num_heads = std::max<int64_t>(1, t.hidden_size / 64);
  if (auto h = YamlValue<int64_t>(overrides, {"text_encoder_heads"})) t.num_heads = *h;
  if (t.num_heads <= 0 || t.hidden_size % t.num_heads != 0) {
    return bad(StrCat("the text encoder's width ", t.hidden_size, " does not split into ",
                      t.num_heads, " heads"));
  }
  t.quick_gelu = true;

  // Noise schedule: SD 1.x's, or the yaml's.
  ScheduleSpec& s = l.schedule;
  s.diffusers_plans = true;
  s.beta_schedule = BetaSchedule::kScaledLinear;
  s.beta_start = YamlValue<double>(yaml, {"model", "params", "linear_start"}).value_or(0.00085);
  s.beta_end = YamlValue<double>(yaml, {"model", "params", "linear_end"}).value_or(0.012);
  s.num_train_timesteps = YamlValue<int>(yaml, {"model", "params", "timesteps"}).value_or(1000);
  s.steps_offset = 1;
  s.set_alpha_to_one = false;  // as SD 1.x's published scheduler configs
  s.clip_sample = false;
  if (YamlValue<std::string>(yaml, {"model", "params", "parameterization"}).value_or("eps") ==
      "v") {
    s.prediction_type = PredictionType::kV;
  }
  return l;
}

void AddTextEncoderWeights(const SingleFileLayout& l, Weights& w) { w.AddFile(l.file, kText); }

void AddUNetWeights(const SingleFileLayout& l, Weights& w) {
  for (const auto& [key, info] : l.file->tensors()) {
    if (!StartsWith(key, kUNet)) continue;
    if (auto name = UNetName(std::string_view(key).substr(kUNet.size()),
                             static_cast<int>(l.unet.layers_per_block))) {
      w.Add(*name, l.file, key);
    }
  }
}

void AddVaeWeights(const SingleFileLayout& l, Weights& w) {
  const int levels = static_cast<int>(l.vae.block_out_channels.size());
  for (const auto& [key, info] : l.file->tensors()) {
    if (!StartsWith(key, kVae)) continue;
    if (auto name = VaeName(std::string_view(key).substr(kVae.size()), levels)) {
      w.Add(*name, l.file, key);
    }
  }
}

}  // namespace kiln::engine::sd
