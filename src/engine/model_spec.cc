#include "engine/model_spec.h"

#include <fstream>
#include <sstream>

#include "core/status_util.h"
#include "core/strings.h"
#include "engine/samplers/sampler_spec.h"
#include "yaml-cpp/yaml.h"

namespace kiln::engine {
namespace {

namespace fs = std::filesystem;

// Reads typed fields from a YAML map and reports errors as "<file>: field <path>: <problem>".
class FieldReader {
 public:
  FieldReader(const YAML::Node& node, std::string file, std::string prefix)
      : node_(node), file_(std::move(file)), prefix_(std::move(prefix)) {}

  absl::Status Error(std::string_view field, std::string_view problem) const {
    return absl::InvalidArgumentError(StrCat(file_, ": field '", prefix_, field, "': ", problem));
  }

  bool Has(const char* field) const { return node_[field].IsDefined() && !node_[field].IsNull(); }

  template <typename T>
  absl::StatusOr<T> Get(const char* field) const {
    YAML::Node v = node_[field];
    if (!v.IsDefined() || v.IsNull()) return Error(field, "is required");
    if (!v.IsScalar()) return Error(field, "must be a scalar");
    try {
      return v.as<T>();
    } catch (const YAML::Exception&) {
      return Error(field, StrCat("has an invalid value '", v.Scalar(), "'"));
    }
  }

  template <typename T>
  absl::StatusOr<T> GetOr(const char* field, T fallback) const {
    if (!Has(field)) return fallback;
    return Get<T>(field);
  }

  absl::StatusOr<int> IntIn(const char* field, int lo, int hi, std::optional<int> fallback) const {
    absl::StatusOr<int> v =
        fallback && !Has(field) ? absl::StatusOr<int>(*fallback) : Get<int>(field);
    if (!v.ok()) return v;
    if (*v < lo || *v > hi) return Error(field, StrCat("must be in ", lo, "..", hi));
    return v;
  }

  absl::StatusOr<double> DoubleIn(const char* field, double lo, double hi,
                                  std::optional<double> fallback) const {
    absl::StatusOr<double> v =
        fallback && !Has(field) ? absl::StatusOr<double>(*fallback) : Get<double>(field);
    if (!v.ok()) return v;
    if (!(*v >= lo && *v <= hi)) return Error(field, StrCat("must be in ", lo, "..", hi));
    return v;
  }

  absl::StatusOr<FieldReader> Map(const char* field, bool required) const {
    YAML::Node v = node_[field];
    if (!v.IsDefined() || v.IsNull()) {
      if (required) return Error(field, "is required");
      return FieldReader(YAML::Node(YAML::NodeType::Map), file_, StrCat(prefix_, field, "."));
    }
    if (!v.IsMap()) return Error(field, "must be a map");
    return FieldReader(v, file_, StrCat(prefix_, field, "."));
  }

  const YAML::Node& node() const { return node_; }

 private:
  YAML::Node node_;
  std::string file_;
  std::string prefix_;
};

absl::StatusOr<fs::path> ModelFile(const FieldReader& r, const fs::path& dir, const char* field,
                                   bool required) {
  if (!r.Has(field)) {
    if (required) return r.Error(field, "is required");
    return fs::path();
  }
  KILN_ASSIGN_OR_RETURN(std::string name, r.Get<std::string>(field));
  fs::path rel(name);
  if (name.empty() || rel.is_absolute() || name.find("..") != std::string::npos) {
    return r.Error(field, "must be a file name inside the model folder");
  }
  fs::path full = dir / rel;
  std::error_code ec;
  if (!fs::is_regular_file(full, ec)) {
    return r.Error(field, StrCat("file '", full.string(), "' does not exist"));
  }
  return full;
}

absl::Status Parse(const YAML::Node& root, const fs::path& dir, ModelSpec& spec) {
  const std::string file = (dir / "model.yaml").string();
  if (!root.IsMap()) return absl::InvalidArgumentError(StrCat(file, ": must be a YAML map"));
  FieldReader r(root, file, "");

  KILN_ASSIGN_OR_RETURN(std::string kind, r.Get<std::string>("kind"));
  if (kind == "pixel") {
    spec.kind = ModelKind::kPixel;
  } else if (kind == "latent") {
    spec.kind = ModelKind::kLatent;
  } else {
    return r.Error("kind", StrCat("must be 'pixel' or 'latent', not '", kind, "'"));
  }
  KILN_ASSIGN_OR_RETURN(spec.description, r.GetOr<std::string>("description", ""));

  spec.supports_generate = false;
  spec.supports_edit = false;
  YAML::Node tasks = root["tasks"];
  if (!tasks.IsDefined() || !tasks.IsSequence() || tasks.size() == 0) {
    return r.Error("tasks", "must be a non-empty list of 'generate' and 'edit'");
  }
  for (const auto& t : tasks) {
    std::string task = t.IsScalar() ? t.Scalar() : "";
    if (task == "generate") {
      spec.supports_generate = true;
    } else if (task == "edit") {
      spec.supports_edit = true;
    } else {
      return r.Error("tasks", StrCat("unknown task '", task, "'"));
    }
  }

  YAML::Node sizes = root["sizes"];
  if (!sizes.IsDefined() || !sizes.IsSequence() || sizes.size() == 0) {
    return r.Error("sizes", "must be a non-empty list of \"WxH\"");
  }
  for (const auto& s : sizes) {
    auto size = ParseImageSize(s.IsScalar() ? s.Scalar() : "");
    if (!size.ok()) return r.Error("sizes", ToStd(size.status().message()));
    spec.sizes.push_back(*size);
  }

  KILN_ASSIGN_OR_RETURN(spec.channels, r.IntIn("channels", 1, 64, std::nullopt));
  KILN_ASSIGN_OR_RETURN(spec.image_cond_channels, r.IntIn("image_cond_channels", 0, 64, 0));
  KILN_ASSIGN_OR_RETURN(spec.downsample, r.IntIn("downsample", 1, 64, 1));
  KILN_ASSIGN_OR_RETURN(spec.latent_scale, r.DoubleIn("latent_scale", 1e-6, 1e6, 1.0));
  KILN_ASSIGN_OR_RETURN(spec.image_cond_scale, r.DoubleIn("image_cond_scale", 1e-6, 1e6, 1.0));
  KILN_ASSIGN_OR_RETURN(spec.max_batch, r.IntIn("max_batch", 1, 1024, 8));
  if (spec.kind == ModelKind::kPixel && spec.downsample != 1) {
    return r.Error("downsample", "must be 1 for a pixel model");
  }
  if (spec.kind == ModelKind::kPixel && spec.channels != 3) {
    return r.Error("channels", "must be 3 (RGB) for a pixel model");
  }
  for (const auto& s : spec.sizes) {
    if (s.width % spec.downsample != 0 || s.height % spec.downsample != 0) {
      return r.Error("sizes",
                     StrCat(s.ToString(), " is not a multiple of downsample ", spec.downsample));
    }
  }
  if (spec.supports_edit && spec.image_cond_channels == 0) {
    return r.Error("tasks", "'edit' needs image_cond_channels > 0");
  }

  KILN_ASSIGN_OR_RETURN(FieldReader sched, r.Map("schedule", true));
  KILN_ASSIGN_OR_RETURN(spec.schedule.num_train_timesteps,
                        sched.IntIn("num_train_timesteps", 2, 100000, 1000));
  KILN_ASSIGN_OR_RETURN(std::string beta, sched.Get<std::string>("beta_schedule"));
  if (beta == "linear") {
    spec.schedule.beta_schedule = BetaSchedule::kLinear;
  } else if (beta == "scaled_linear") {
    spec.schedule.beta_schedule = BetaSchedule::kScaledLinear;
  } else if (beta == "squaredcos_cap_v2") {
    spec.schedule.beta_schedule = BetaSchedule::kSquaredCosCapV2;
  } else {
    return sched.Error("beta_schedule", "must be one of linear, scaled_linear, squaredcos_cap_v2");
  }
  KILN_ASSIGN_OR_RETURN(spec.schedule.beta_start, sched.DoubleIn("beta_start", 1e-8, 0.5, 0.00085));
  KILN_ASSIGN_OR_RETURN(spec.schedule.beta_end, sched.DoubleIn("beta_end", 1e-8, 0.999, 0.012));
  if (spec.schedule.beta_end < spec.schedule.beta_start) {
    return sched.Error("beta_end", "must not be below beta_start");
  }
  KILN_ASSIGN_OR_RETURN(std::string pred, sched.GetOr<std::string>("prediction_type", "eps"));
  if (pred == "eps" || pred == "epsilon") {
    spec.schedule.prediction_type = PredictionType::kEps;
  } else if (pred == "v" || pred == "v_prediction") {
    spec.schedule.prediction_type = PredictionType::kV;
  } else {
    return sched.Error("prediction_type", "must be 'eps' or 'v'");
  }

  KILN_ASSIGN_OR_RETURN(FieldReader defaults, r.Map("defaults", false));
  KILN_ASSIGN_OR_RETURN(spec.defaults.steps, defaults.IntIn("steps", 1, 150, 20));
  KILN_ASSIGN_OR_RETURN(spec.defaults.guidance_scale,
                        defaults.DoubleIn("guidance_scale", 0, 30, 7.5));
  KILN_ASSIGN_OR_RETURN(spec.defaults.image_guidance_scale,
                        defaults.DoubleIn("image_guidance_scale", 0, 30, 1.5));
  KILN_ASSIGN_OR_RETURN(spec.defaults.sampler, defaults.GetOr<std::string>("sampler", "euler"));
  if (auto s = ParseSamplerName(spec.defaults.sampler); !s.ok()) {
    return defaults.Error("sampler", ToStd(s.status().message()));
  }

  KILN_ASSIGN_OR_RETURN(FieldReader tok, r.Map("tokenizer", true));
  KILN_ASSIGN_OR_RETURN(std::string tok_type, tok.Get<std::string>("type"));
  KILN_ASSIGN_OR_RETURN(spec.tokenizer.max_length, tok.IntIn("max_length", 2, 4096, 77));
  if (tok_type == "words") {
    spec.tokenizer.type = TokenizerType::kWords;
    KILN_ASSIGN_OR_RETURN(spec.tokenizer.vocab, ModelFile(tok, dir, "vocab", true));
  } else if (tok_type == "clip_bpe") {
    spec.tokenizer.type = TokenizerType::kClipBpe;
    KILN_ASSIGN_OR_RETURN(spec.tokenizer.vocab, ModelFile(tok, dir, "vocab", true));
    KILN_ASSIGN_OR_RETURN(spec.tokenizer.merges, ModelFile(tok, dir, "merges", true));
    KILN_ASSIGN_OR_RETURN(std::string pad, tok.GetOr<std::string>("pad", "eos"));
    if (pad != "eos" && pad != "zero") return tok.Error("pad", "must be 'eos' or 'zero'");
    spec.tokenizer.pad_with_eos = pad == "eos";
  } else {
    return tok.Error("type", "must be 'words' or 'clip_bpe'");
  }

  KILN_ASSIGN_OR_RETURN(FieldReader files, r.Map("files", true));
  KILN_ASSIGN_OR_RETURN(spec.text_encoder, ModelFile(files, dir, "text_encoder", true));
  KILN_ASSIGN_OR_RETURN(spec.denoiser, ModelFile(files, dir, "denoiser", true));
  const bool latent = spec.kind == ModelKind::kLatent;
  KILN_ASSIGN_OR_RETURN(spec.decoder, ModelFile(files, dir, "decoder", latent));
  KILN_ASSIGN_OR_RETURN(spec.encoder, ModelFile(files, dir, "encoder", false));
  if (!latent && (!spec.decoder.empty() || !spec.encoder.empty())) {
    return files.Error("decoder", "a pixel model has no decoder or encoder");
  }
  return absl::OkStatus();
}

}  // namespace

bool ModelSpec::SupportsSize(const ImageSize& size) const {
  for (const auto& s : sizes) {
    if (s == size) return true;
  }
  auto side_ok = [&](int v) { return v % size_multiple == 0 && v >= min_side && v <= max_side; };
  return size_multiple > 0 && side_ok(size.width) && side_ok(size.height);
}

absl::StatusOr<ModelSpec> ParseModelSpec(std::string_view yaml_text, const fs::path& dir) {
  ModelSpec spec;
  spec.dir = dir;
  spec.name = dir.filename().string();
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml_text));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        StrCat((dir / "model.yaml").string(), ": invalid YAML: ", e.what()));
  }
  KILN_RETURN_IF_ERROR(Parse(root, dir, spec));
  return spec;
}

absl::StatusOr<ModelSpec> LoadModelSpec(const fs::path& dir) {
  fs::path file = dir / "model.yaml";
  std::ifstream in(file, std::ios::binary);
  if (!in) return absl::NotFoundError(StrCat(file.string(), ": cannot be read"));
  std::ostringstream text;
  text << in.rdbuf();
  if (text.str().size() > (1 << 20)) {
    return absl::InvalidArgumentError(StrCat(file.string(), ": larger than 1 MiB"));
  }
  fs::path normal = fs::absolute(dir).lexically_normal();
  if (normal.filename().empty()) normal = normal.parent_path();
  return ParseModelSpec(text.str(), normal);
}

}  // namespace kiln::engine
