#include "engine/sd/sd_parts.h"

#include <yaml-cpp/yaml.h>

#include <optional>
#include <set>

#include "core/logging.h"
#include "core/status_util.h"
#include "core/strings.h"
#include "engine/samplers/sampler_spec.h"
#include "engine/sd/autoencoder_kl.h"
#include "engine/sd/clip_text_model.h"
#include "engine/sd/config_json.h"
#include "engine/sd/ldm_checkpoint.h"
#include "engine/sd/unet.h"
#include "engine/tokenizer/tokenizer.h"

namespace kiln::engine::sd {
namespace {

namespace fs = std::filesystem;

// The pad token a tokenizer folder names: CLIP's end token, or "!" (id 0) as SDXL's second
// tokenizer has.
absl::StatusOr<TokenizerSpec> ReadTokenizer(const fs::path& dir) {
  TokenizerSpec t;
  t.type = TokenizerType::kClipBpe;
  t.max_length = 77;
  t.vocab = dir / "vocab.json";
  t.merges = dir / "merges.txt";
  for (const fs::path& f : {t.vocab, t.merges}) {
    if (!fs::exists(f)) return absl::InvalidArgumentError(StrCat(f.string(), ": missing"));
  }
  if (fs::exists(dir / "special_tokens_map.json")) {
    KILN_ASSIGN_OR_RETURN(nlohmann::json map, ReadJsonFile(dir / "special_tokens_map.json"));
    std::string pad = "<|endoftext|>";
    if (map.contains("pad_token")) {
      const auto& p = map["pad_token"];
      if (p.is_string()) pad = p.get<std::string>();
      if (p.is_object() && p.contains("content") && p["content"].is_string()) {
        pad = p["content"].get<std::string>();
      }
    }
    if (pad != "<|endoftext|>" && pad != "!") {
      return absl::InvalidArgumentError(StrCat((dir / "special_tokens_map.json").string(),
                                               ": pad_token '", pad,
                                               "' is not supported (<|endoftext|> or !)"));
    }
    t.pad_with_eos = pad == "<|endoftext|>";
  }
  return t;
}

absl::StatusOr<std::pair<nlohmann::json, fs::path>> ReadConfig(const fs::path& file) {
  KILN_ASSIGN_OR_RETURN(nlohmann::json json, ReadJsonFile(file));
  if (!json.is_object())
    return absl::InvalidArgumentError(StrCat(file.string(), ": not an object"));
  return std::make_pair(std::move(json), file);
}

// The default sampler diffusers' scheduler class stands for; Kiln has no PNDM or LMS, so those
// fall back to Euler on the same schedule.
std::string SamplerForScheduler(const std::string& cls, bool karras) {
  std::string name = "euler";
  if (cls == "EulerAncestralDiscreteScheduler") name = "euler_a";
  if (cls == "DDIMScheduler") name = "ddim";
  if (cls == "DPMSolverMultistepScheduler") name = "dpmpp_2m";
  if (karras && (name == "euler" || name == "dpmpp_2m")) name += "_karras";
  return name;
}

absl::Status ReadSchedule(const fs::path& file, ModelSpec& spec) {
  KILN_ASSIGN_OR_RETURN(auto config, ReadConfig(file));
  ConfigReader r(config.first, file);
  ScheduleSpec& s = spec.schedule;
  s.diffusers_plans = true;
  s.num_train_timesteps = static_cast<int>(r.Int("num_train_timesteps", 1000));
  s.beta_start = r.Double("beta_start", 0.0001);
  s.beta_end = r.Double("beta_end", 0.02);
  const std::string betas = r.String("beta_schedule", "linear");
  if (betas == "linear") {
    s.beta_schedule = BetaSchedule::kLinear;
  } else if (betas == "scaled_linear") {
    s.beta_schedule = BetaSchedule::kScaledLinear;
  } else if (betas == "squaredcos_cap_v2") {
    s.beta_schedule = BetaSchedule::kSquaredCosCapV2;
  } else {
    r.Fail("beta_schedule", StrCat("'", betas, "' is not supported"));
  }
  const std::string prediction = r.String("prediction_type", "epsilon");
  if (prediction == "epsilon") {
    s.prediction_type = PredictionType::kEps;
  } else if (prediction == "v_prediction") {
    s.prediction_type = PredictionType::kV;
  } else {
    r.Fail("prediction_type", StrCat("'", prediction, "' is not supported"));
  }
  if (r.Has("trained_betas")) r.Fail("trained_betas", "explicit betas are not supported");
  if (r.Bool("rescale_betas_zero_snr", false)) {
    r.Fail("rescale_betas_zero_snr", "zero-SNR schedules are not supported");
  }
  if (r.Has("timestep_spacing")) {
    const std::string spacing = r.String("timestep_spacing", "");
    if (spacing == "linspace") {
      s.timestep_spacing = TimestepSpacing::kLinspace;
    } else if (spacing == "leading") {
      s.timestep_spacing = TimestepSpacing::kLeading;
    } else if (spacing == "trailing") {
      s.timestep_spacing = TimestepSpacing::kTrailing;
    } else {
      r.Fail("timestep_spacing", StrCat("'", spacing, "' is not supported"));
    }
  }
  s.steps_offset = static_cast<int>(r.Int("steps_offset", 0));
  s.set_alpha_to_one = r.Bool("set_alpha_to_one", true);
  s.clip_sample = r.Bool("clip_sample", true);
  s.clip_sample_range = r.Double("clip_sample_range", 1.0);
  if (r.Bool("thresholding", false))
    r.Fail("thresholding", "dynamic thresholding is not supported");
  spec.defaults.sampler =
      SamplerForScheduler(r.String("_class_name", ""), r.Bool("use_karras_sigmas", false));
  if (s.num_train_timesteps < 2 || s.num_train_timesteps > 100000) {
    r.Fail("num_train_timesteps", "must be in 2..100000");
  }
  return r.status();
}

// What the UNet and VAE configurations say about sizes, channels and the architecture.
absl::Status DescribeArchitecture(const fs::path& dir, const UNetConfig& unet, const VaeConfig& vae,
                                  bool sdxl, ModelSpec& spec) {
  spec.channels = unet.out_channels;
  if (vae.latent_channels != unet.out_channels) {
    return absl::InvalidArgumentError(
        StrCat(dir.string(), ": the VAE's latent_channels ", vae.latent_channels,
               " does not match the UNet's out_channels ", unet.out_channels));
  }
  spec.image_cond_channels = static_cast<int>(unet.in_channels - unet.out_channels);
  if (spec.image_cond_channels != 0 && spec.image_cond_channels != vae.latent_channels) {
    return absl::InvalidArgumentError(
        StrCat(dir.string(), ": the UNet's in_channels ", unet.in_channels,
               " is neither the latent channels (text-to-image) nor twice them "
               "(InstructPix2Pix)"));
  }
  spec.text_encoder = dir / "text_encoder";
  spec.denoiser = dir / "unet";
  spec.decoder = dir / "vae";
  spec.encoder = dir / "vae";
  spec.downsample = 1 << (vae.block_out_channels.size() - 1);
  spec.latent_scale = vae.scaling_factor;
  spec.image_cond_scale = 1.0;
  const int native = static_cast<int>(unet.sample_size) * spec.downsample;
  spec.sizes = {ImageSize{native, native}};
  spec.size_multiple = 8;
  spec.min_side = 64;
  spec.max_side = 2 * native;
  spec.max_batch = 8;
  if (spec.image_cond_channels > 0) {
    spec.architecture = "instruct-pix2pix";
    spec.supports_generate = false;
    spec.supports_edit = true;
    spec.description = "InstructPix2Pix";
  } else if (sdxl) {
    spec.architecture = "sdxl";
    spec.defaults.guidance_scale = 5.0;
    spec.description = "Stable Diffusion XL";
  } else if (unet.cross_attention_dim == 1024 ||
             spec.schedule.prediction_type == PredictionType::kV) {
    spec.architecture = "sd2";
    spec.description = "Stable Diffusion 2.x";
  } else {
    spec.architecture = "sd1";
    spec.description = "Stable Diffusion 1.x";
  }
  return absl::OkStatus();
}

// `kiln.yaml` (diffusers folder) or `<stem>.kiln.yaml` (single file): the operator's overrides.
absl::Status ApplyOverrides(const fs::path& file, ModelSpec& spec) {
  if (!fs::exists(file)) return absl::OkStatus();
  auto bad = [&](const std::string& key, absl::string_view why) {
    return absl::InvalidArgumentError(StrCat(file.string(), ": ", key, ": ", why));
  };
  YAML::Node root;
  try {
    if (fs::file_size(file) > (1 << 20)) return bad("(file)", "larger than 1 MiB");
    root = YAML::LoadFile(file.string());
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(StrCat(file.string(), ": not valid YAML: ", e.what()));
  }
  if (root.IsNull()) return absl::OkStatus();
  if (!root.IsMap()) return bad("(file)", "expected a mapping");
  try {
    for (const auto& kv : root) {
      const std::string key = kv.first.as<std::string>();
      const YAML::Node& v = kv.second;
      if (key == "description") {
        spec.description = v.as<std::string>();
      } else if (key == "dtype") {
        const std::string d = v.as<std::string>();
        if (d != "float32" && d != "bfloat16" && d != "float16") {
          return bad(key, "must be float32, bfloat16 or float16");
        }
        spec.dtype = d;
      } else if (key == "sizes") {
        if (!v.IsSequence() || v.size() == 0) return bad(key, "expected a list of \"WxH\"");
        std::vector<ImageSize> sizes;
        for (const auto& item : v) {
          auto size = ParseImageSize(item.as<std::string>());
          if (!size.ok()) return bad(key, size.status().message());
          if (size->width % 8 != 0 || size->height % 8 != 0) {
            return bad(key, StrCat(size->ToString(), ": sides must be multiples of 8"));
          }
          sizes.push_back(*size);
        }
        spec.sizes = sizes;
      } else if (key == "clip_skip") {
        const int c = v.as<int>();
        if (c < 0 || c > 11) return bad(key, "must be in 0..11");
        if (spec.architecture == "sdxl") return bad(key, "SDXL always uses the penultimate layer");
        spec.clip_skip = c;
      } else if (key == "any_size") {
        if (!v.as<bool>()) spec.size_multiple = 0;  // only `sizes`
      } else if (key == "max_side") {
        const int m = v.as<int>();
        if (m < spec.min_side || m > 8192) return bad(key, "must be in 64..8192");
        spec.max_side = m;
      } else if (key == "max_batch") {
        const int m = v.as<int>();
        if (m < 1 || m > 256) return bad(key, "must be in 1..256");
        spec.max_batch = m;
      } else if (key == "defaults") {
        if (!v.IsMap()) return bad(key, "expected a mapping");
        for (const auto& d : v) {
          const std::string k = d.first.as<std::string>();
          if (k == "steps") {
            spec.defaults.steps = d.second.as<int>();
            if (spec.defaults.steps < 1 || spec.defaults.steps > 150) {
              return bad("defaults.steps", "must be in 1..150");
            }
          } else if (k == "guidance_scale" || k == "image_guidance_scale") {
            const double g = d.second.as<double>();
            if (g < 0 || g > 30) return bad("defaults." + k, "must be in 0..30");
            (k == "guidance_scale" ? spec.defaults.guidance_scale
                                   : spec.defaults.image_guidance_scale) = g;
          } else if (k == "sampler") {
            const std::string name = d.second.as<std::string>();
            auto sampler = ParseSamplerName(name);
            if (!sampler.ok()) return bad("defaults.sampler", sampler.status().message());
            spec.defaults.sampler = sampler->Name();
          } else {
            return bad("defaults." + k,
                       "unknown key (steps, guidance_scale, "
                       "image_guidance_scale, sampler)");
          }
        }
      } else if (key != "text_encoder_heads") {  // read with the checkpoint's layout
        return bad(key,
                   "unknown key (description, dtype, sizes, any_size, max_side, max_batch, "
                   "defaults, text_encoder_heads)");
      }
    }
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(StrCat(file.string(), ": ", e.what()));
  }
  return absl::OkStatus();
}

}  // namespace

bool IsDiffusersFolder(const fs::path& dir) { return fs::exists(dir / "model_index.json"); }

absl::StatusOr<ModelSpec> LoadDiffusersSpec(const fs::path& dir) {
  ModelSpec spec;
  spec.name = dir.filename().string();
  spec.dir = dir;
  spec.format = ModelFormat::kDiffusers;
  spec.kind = ModelKind::kLatent;
  KILN_RETURN_IF_ERROR(ReadConfig(dir / "model_index.json").status());
  for (const char* part : {"unet", "vae", "text_encoder", "tokenizer", "scheduler"}) {
    if (!fs::is_directory(dir / part)) {
      return absl::InvalidArgumentError(
          StrCat(dir.string(), ": the diffusers folder has no ", part, "/"));
    }
  }
  const bool sdxl = fs::is_directory(dir / "text_encoder_2");
  KILN_ASSIGN_OR_RETURN(auto unet_json, ReadConfig(dir / "unet" / "config.json"));
  KILN_ASSIGN_OR_RETURN(UNetConfig unet, ParseUNetConfig(unet_json.first, unet_json.second));
  KILN_ASSIGN_OR_RETURN(auto vae_json, ReadConfig(dir / "vae" / "config.json"));
  KILN_ASSIGN_OR_RETURN(VaeConfig vae, ParseVaeConfig(vae_json.first, vae_json.second));
  KILN_RETURN_IF_ERROR(ReadSchedule(dir / "scheduler" / "scheduler_config.json", spec));
  KILN_ASSIGN_OR_RETURN(spec.tokenizer, ReadTokenizer(dir / "tokenizer"));
  if (sdxl != unet.text_time_embedding) {
    return absl::InvalidArgumentError(
        StrCat((dir / "unet" / "config.json").string(),
               sdxl ? ": an SDXL folder (text_encoder_2/) needs addition_embed_type text_time"
                    : ": addition_embed_type text_time needs text_encoder_2/ (SDXL)"));
  }
  KILN_RETURN_IF_ERROR(DescribeArchitecture(dir, unet, vae, sdxl, spec));
  KILN_RETURN_IF_ERROR(ApplyOverrides(dir / "kiln.yaml", spec));
  return spec;
}

absl::StatusOr<ModelSpec> LoadSingleFileSpec(const fs::path& file) {
  KILN_ASSIGN_OR_RETURN(SingleFileLayout layout, ReadSingleFile(file));
  ModelSpec spec;
  spec.name = file.stem().string();
  spec.dir = file;
  spec.format = ModelFormat::kSingleFile;
  spec.kind = ModelKind::kLatent;
  spec.schedule = layout.schedule;
  spec.defaults.sampler = "euler";
  // The file holds no tokenizer: CLIP's vocabulary comes from `<stem>.tokenizer/` beside it or a
  // `clip-tokenizer/` folder shared by the checkpoints in the same folder.
  fs::path tokenizer = file.parent_path() / (spec.name + ".tokenizer");
  if (!fs::is_directory(tokenizer)) tokenizer = file.parent_path() / "clip-tokenizer";
  if (!fs::is_directory(tokenizer)) {
    return absl::InvalidArgumentError(
        StrCat(file.string(),
               ": a single-file checkpoint needs CLIP's tokenizer (vocab.json and "
               "merges.txt) in ",
               (file.parent_path() / "clip-tokenizer").string(), " or ", tokenizer.string()));
  }
  KILN_ASSIGN_OR_RETURN(spec.tokenizer, ReadTokenizer(tokenizer));
  spec.text_encoder = spec.denoiser = spec.decoder = spec.encoder = file;
  KILN_RETURN_IF_ERROR(DescribeArchitecture(file, layout.unet, layout.vae, false, spec));
  spec.description += " (single-file checkpoint)";
  KILN_RETURN_IF_ERROR(ApplyOverrides(file.parent_path() / (spec.name + ".kiln.yaml"), spec));
  return spec;
}

namespace {

// The weight files of a component folder: one .safetensors file, its fp16 variant, or the shards
// an index lists. A pickle-only folder is refused with how to convert.
absl::Status AddComponentWeights(const fs::path& dir, const std::string& stem, Weights& w) {
  for (const std::string& name : {stem + ".safetensors", stem + ".fp16.safetensors"}) {
    if (!fs::exists(dir / name)) continue;
    KILN_ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open(dir / name));
    w.AddFile(file);
    return absl::OkStatus();
  }
  const fs::path index = dir / (stem + ".safetensors.index.json");
  if (fs::exists(index)) {
    KILN_ASSIGN_OR_RETURN(nlohmann::json json, ReadJsonFile(index));
    std::set<std::string> shards;
    if (json.contains("weight_map") && json["weight_map"].is_object()) {
      for (const auto& [key, value] : json["weight_map"].items()) {
        if (value.is_string()) shards.insert(value.get<std::string>());
      }
    }
    if (shards.empty())
      return absl::InvalidArgumentError(StrCat(index.string(), ": no weight_map"));
    for (const std::string& shard : shards) {
      if (fs::path(shard).has_parent_path()) {
        return absl::InvalidArgumentError(
            StrCat(index.string(), ": shard '", shard, "' is not a file name in the folder"));
      }
      KILN_ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open(dir / shard));
      w.AddFile(file);
    }
    return absl::OkStatus();
  }
  for (const std::string& name : {stem + ".bin", stem + ".fp16.bin", stem + ".ckpt"}) {
    if (fs::exists(dir / name)) return CheckNotPickle(dir / name);
  }
  return absl::InvalidArgumentError(StrCat(dir.string(), ": no ", stem, ".safetensors weights"));
}

class StableDiffusionParts final : public ModelParts {
 public:
  absl::StatusOr<TextEmbedding> EncodeText(const std::vector<std::string>& prompts) override {
    try {
      torch::Tensor ids1 = Ids(*tokenizer1_, prompts);
      ClipTextOutput o1 = text_encoder1_->Forward(ids1);
      if (!text_encoder2_) {
        const int skip =
            std::min<int>(spec_.clip_skip, static_cast<int>(o1.hidden_states.size()) - 2);
        torch::Tensor hidden =
            skip > 0
                ? text_encoder1_->FinalNorm(
                      o1.hidden_states[o1.hidden_states.size() - 1 - static_cast<size_t>(skip)])
                : o1.last_hidden_state;
        return TextEmbedding{hidden.to(torch::kFloat32), {}};
      }
      // SDXL conditions on both encoders' penultimate layers and te2's projected pooled vector.
      ClipTextOutput o2 = text_encoder2_->Forward(Ids(*tokenizer2_, prompts));
      const auto& h1 = o1.hidden_states[o1.hidden_states.size() - 2];
      const auto& h2 = o2.hidden_states[o2.hidden_states.size() - 2];
      return TextEmbedding{torch::cat({h1, h2}, -1).to(torch::kFloat32),
                           o2.text_embeds.to(torch::kFloat32)};
    } catch (const std::exception& e) {
      return absl::InternalError(
          StrCat("model '", spec_.name, "': text encoder failed: ", e.what()));
    }
  }

  absl::StatusOr<torch::Tensor> Denoise(const DenoiseBatch& b) override {
    try {
      torch::Tensor x = spec_.image_cond_channels > 0 ? torch::cat({b.x, b.image_cond}, 1) : b.x;
      AddedConditions added{b.pooled, b.time_ids};
      return unet_->Forward(x, b.t, b.hidden, uses_added_conditions() ? &added : nullptr)
          .to(torch::kFloat32);
    } catch (const std::exception& e) {
      return absl::InternalError(StrCat("model '", spec_.name, "': UNet failed: ", e.what()));
    }
  }

  bool has_encoder() const override { return vae_->has_encoder(); }

  absl::StatusOr<EncodedImage> EncodeImage(const torch::Tensor& pixels) override {
    try {
      LatentDistribution d = vae_->Encode(pixels);
      return EncodedImage{d.mean, d.std()};
    } catch (const std::exception& e) {
      return absl::InternalError(
          StrCat("model '", spec_.name, "': VAE encoder failed: ", e.what()));
    }
  }

  absl::StatusOr<torch::Tensor> Decode(const torch::Tensor& latents) override {
    try {
      // Latents up to 128 a side (1024 pixels) decode whole; larger pictures decode in tiles.
      return vae_->DecodeTiled(latents, /*tile=*/128, /*overlap=*/32);
    } catch (const std::exception& e) {
      return absl::InternalError(
          StrCat("model '", spec_.name, "': VAE decoder failed: ", e.what()));
    }
  }

  bool uses_added_conditions() const override { return unet_->config().text_time_embedding; }
  bool zeros_for_empty_negative() const override { return force_zeros_; }
  // Forward calls only read the loaded weights; the tokenizers are immutable.
  bool concurrent() const override { return true; }
  int64_t parameter_bytes() const override { return parameter_bytes_; }

  ModelSpec spec_;
  torch::Device device_{torch::kCPU};
  std::unique_ptr<Tokenizer> tokenizer1_, tokenizer2_;
  std::optional<ClipTextModel> text_encoder1_, text_encoder2_;
  std::optional<UNet> unet_;
  std::optional<AutoencoderKL> vae_;
  bool force_zeros_ = false;
  int64_t parameter_bytes_ = 0;

 private:
  torch::Tensor Ids(const Tokenizer& tok, const std::vector<std::string>& prompts) const {
    std::vector<int64_t> ids;
    for (const auto& p : prompts) {
      std::vector<int64_t> row = tok.Encode(p);
      ids.insert(ids.end(), row.begin(), row.end());
    }
    return torch::tensor(ids, torch::kInt64)
        .view({static_cast<int64_t>(prompts.size()), -1})
        .to(device_);
  }
};

// Tensors a component's files hold that its architecture does not use: logged, and listed in
// `problems` when asked.
void ReportUnused(const std::string& where, const Weights& w, std::vector<std::string>* problems) {
  std::vector<std::string> unused;
  for (const std::string& name : w.Unused()) {
    // transformers' position_ids buffer is not a weight.
    if (name.find("position_ids") == std::string::npos) unused.push_back(name);
  }
  if (unused.empty()) return;
  log::Warn("weights not used by the architecture",
            {{"where", where}, {"count", unused.size()}, {"first", unused.front()}});
  if (problems) {
    problems->push_back(StrCat(where, ": ", unused.size(),
                               " tensors are not used by the architecture (first: ", unused.front(),
                               ")"));
  }
}

// Loads one component: its config, then its weights, checking every tensor.
template <typename Config, typename Parse, typename Build>
absl::Status LoadComponent(const fs::path& dir, const std::string& stem, const Placement& where,
                           Parse parse, Build build, std::vector<std::string>* problems,
                           int64_t* bytes) {
  KILN_ASSIGN_OR_RETURN(auto json, ReadConfig(dir / "config.json"));
  KILN_ASSIGN_OR_RETURN(Config config, parse(json.first, json.second));
  Weights w(where);
  KILN_RETURN_IF_ERROR(AddComponentWeights(dir, stem, w));
  build(config, w);
  KILN_RETURN_IF_ERROR(w.status());
  *bytes += w.bytes_placed();
  ReportUnused(dir.string(), w, problems);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<ModelParts>> LoadStableDiffusionParts(
    const ModelSpec& spec, const torch::Device& device, std::vector<std::string>* problems) {
  if (spec.format == ModelFormat::kTorchScript) {
    return absl::InvalidArgumentError(
        StrCat("model '", spec.name, "' is not a Stable Diffusion model"));
  }
  c10::InferenceMode inference;
  auto parts = std::make_unique<StableDiffusionParts>();
  parts->spec_ = spec;
  parts->device_ = device;
  const fs::path& dir = spec.dir;
  Placement where{torch::kFloat32, device};
  if (spec.dtype == "float16") where.dtype = torch::kFloat16;
  if (spec.dtype == "bfloat16") where.dtype = torch::kBFloat16;
  KILN_ASSIGN_OR_RETURN(parts->tokenizer1_, Tokenizer::Create(spec.tokenizer));
  if (spec.format == ModelFormat::kSingleFile) {
    KILN_ASSIGN_OR_RETURN(SingleFileLayout layout, ReadSingleFile(dir));
    auto check = [&](Weights& w) { return w.status(); };
    Weights text(where), unet(where), vae(Placement{torch::kFloat32, device});
    AddTextEncoderWeights(layout, text);
    parts->text_encoder1_ = ClipTextModel::Load(layout.text, text);
    KILN_RETURN_IF_ERROR(check(text));
    AddUNetWeights(layout, unet);
    parts->unet_ = UNet::Load(layout.unet, unet);
    KILN_RETURN_IF_ERROR(check(unet));
    AddVaeWeights(layout, vae);
    parts->vae_ = AutoencoderKL::Load(layout.vae, vae, /*with_encoder=*/true);
    KILN_RETURN_IF_ERROR(check(vae));
    parts->parameter_bytes_ = text.bytes_placed() + unet.bytes_placed() + vae.bytes_placed();
    ReportUnused(dir.string() + " (text encoder)", text, problems);
    ReportUnused(dir.string() + " (UNet)", unet, problems);
    ReportUnused(dir.string() + " (VAE)", vae, problems);
    return std::unique_ptr<ModelParts>(std::move(parts));
  }
  auto clip = [&](const fs::path& sub, bool projection, std::optional<ClipTextModel>& out) {
    return LoadComponent<ClipTextConfig>(
        sub, "model", where,
        [&](const nlohmann::json& j, const fs::path& f) {
          return ParseClipTextConfig(j, f, projection);
        },
        [&](const ClipTextConfig& c, Weights& w) { out = ClipTextModel::Load(c, w); }, problems,
        &parts->parameter_bytes_);
  };
  KILN_RETURN_IF_ERROR(clip(dir / "text_encoder", false, parts->text_encoder1_));
  if (spec.architecture == "sdxl") {
    KILN_ASSIGN_OR_RETURN(TokenizerSpec t2, ReadTokenizer(dir / "tokenizer_2"));
    KILN_ASSIGN_OR_RETURN(parts->tokenizer2_, Tokenizer::Create(t2));
    KILN_RETURN_IF_ERROR(clip(dir / "text_encoder_2", true, parts->text_encoder2_));
    KILN_ASSIGN_OR_RETURN(auto index, ReadConfig(dir / "model_index.json"));
    parts->force_zeros_ =
        ConfigReader(index.first, index.second).Bool("force_zeros_for_empty_prompt", true);
  }
  KILN_RETURN_IF_ERROR(LoadComponent<UNetConfig>(
      dir / "unet", "diffusion_pytorch_model", where, ParseUNetConfig,
      [&](const UNetConfig& c, Weights& w) { parts->unet_ = UNet::Load(c, w); }, problems,
      &parts->parameter_bytes_));
  // The VAE always runs in float32: SDXL's overflows in half precision (its force_upcast), and
  // it is a small part of the work.
  KILN_RETURN_IF_ERROR(LoadComponent<VaeConfig>(
      dir / "vae", "diffusion_pytorch_model", Placement{torch::kFloat32, device}, ParseVaeConfig,
      [&](const VaeConfig& c, Weights& w) {
        parts->vae_ = AutoencoderKL::Load(c, w, /*with_encoder=*/true);
      },
      problems, &parts->parameter_bytes_));
  return std::unique_ptr<ModelParts>(std::move(parts));
}

}  // namespace kiln::engine::sd
