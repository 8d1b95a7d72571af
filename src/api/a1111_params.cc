#include "api/a1111_params.h"

#include <algorithm>
#include <cmath>
#include <ctime>

#include "api/openai_params.h"
#include "core/ids.h"
#include "core/json_parse.h"
#include "core/status_util.h"
#include "core/strings.h"
#include "fmt/format.h"

namespace kiln::api {
namespace {

using nlohmann::json;

enum class Kind { kString, kNumber, kInt, kBool, kBoolOrInt, kObject, kArray };
constexpr unsigned kTxt = 1, kImg = 2, kBoth = kTxt | kImg;

bool NonEmpty(const json& v) {
  return (v.is_string() || v.is_array() || v.is_object()) && !v.empty();
}
bool IsTrue(const json& v) { return v.is_boolean() && v.get<bool>(); }
bool NotZero(const json& v) { return v.is_number() && v.get<double>() != 0.0; }
bool Positive(const json& v) { return v.is_number() && v.get<double>() > 0.0; }
bool NotOne(const json& v) { return v.is_number() && v.get<double>() != 1.0; }

// Every field of A1111's txt2img and img2img bodies (A1111 1.10). `refused` says when a value
// asks for something Kiln cannot do; fields without it are honoured below, or are ones A1111
// itself ignores in these requests (the hires-fix settings without enable_hr, the mask settings
// without a mask, script_args without a script). Null is always accepted, as A1111 does.
struct FieldRule {
  std::string_view name;
  Kind kind;
  unsigned routes;
  bool (*refused)(const json&);
  std::string_view why;
};

constexpr FieldRule kFields[] = {
    {"prompt", Kind::kString, kBoth, nullptr, ""},
    {"negative_prompt", Kind::kString, kBoth, nullptr, ""},
    {"styles", Kind::kArray, kBoth, NonEmpty, "Kiln has no saved prompt styles"},
    {"seed", Kind::kInt, kBoth, nullptr, ""},
    {"subseed", Kind::kInt, kBoth, nullptr, ""},
    {"subseed_strength", Kind::kNumber, kBoth, NotZero, "variation seeds are not supported"},
    {"seed_resize_from_h", Kind::kInt, kBoth, Positive, "seed resizing is not supported"},
    {"seed_resize_from_w", Kind::kInt, kBoth, Positive, "seed resizing is not supported"},
    {"sampler_name", Kind::kString, kBoth, nullptr, ""},
    {"sampler_index", Kind::kString, kBoth, nullptr, ""},
    {"scheduler", Kind::kString, kBoth, nullptr, ""},
    {"batch_size", Kind::kInt, kBoth, nullptr, ""},
    {"n_iter", Kind::kInt, kBoth, nullptr, ""},
    {"steps", Kind::kInt, kBoth, nullptr, ""},
    {"cfg_scale", Kind::kNumber, kBoth, nullptr, ""},
    {"width", Kind::kInt, kBoth, nullptr, ""},
    {"height", Kind::kInt, kBoth, nullptr, ""},
    {"restore_faces", Kind::kBool, kBoth, IsTrue, "face restoration is not available"},
    {"tiling", Kind::kBool, kBoth, IsTrue, "tiling is not supported"},
    {"do_not_save_samples", Kind::kBool, kBoth, nullptr, ""},
    {"do_not_save_grid", Kind::kBool, kBoth, nullptr, ""},
    {"eta", Kind::kNumber, kBoth, nullptr, ""},  // checked against the sampler below
    {"denoising_strength", Kind::kNumber, kBoth, nullptr, ""},
    {"s_min_uncond", Kind::kNumber, kBoth, NotZero,
     "skipping the negative branch is not supported"},
    {"s_churn", Kind::kNumber, kBoth, nullptr, ""},  // checked against the sampler below
    {"s_tmax", Kind::kNumber, kBoth, nullptr, ""},
    {"s_tmin", Kind::kNumber, kBoth, nullptr, ""},
    {"s_noise", Kind::kNumber, kBoth, nullptr, ""},  // checked against the sampler below
    {"override_settings", Kind::kObject, kBoth, nullptr, ""},
    {"override_settings_restore_afterwards", Kind::kBool, kBoth, nullptr, ""},
    {"refiner_checkpoint", Kind::kString, kBoth, NonEmpty, "a refiner model is not supported"},
    {"refiner_switch_at", Kind::kNumber, kBoth, nullptr, ""},
    {"disable_extra_networks", Kind::kBool, kBoth, nullptr, ""},
    {"firstpass_image", Kind::kString, kBoth, NonEmpty, "a first-pass image is not supported"},
    {"comments", Kind::kObject, kBoth, nullptr, ""},
    {"force_task_id", Kind::kString, kBoth, nullptr, ""},
    {"script_name", Kind::kString, kBoth, NonEmpty, "scripts are not supported"},
    {"script_args", Kind::kArray, kBoth, nullptr, ""},
    {"send_images", Kind::kBool, kBoth, nullptr, ""},
    {"save_images", Kind::kBool, kBoth, nullptr, ""},
    {"alwayson_scripts", Kind::kObject, kBoth, NonEmpty,
     "always-on scripts (ControlNet, ADetailer, ...) are not supported"},
    {"infotext", Kind::kString, kBoth, NonEmpty,
     "reading settings from an infotext is not supported; send them as fields"},
    {"enable_hr", Kind::kBool, kTxt, IsTrue,
     "hires fix is not supported; ask for the final size directly"},
    {"firstphase_width", Kind::kInt, kTxt, nullptr, ""},
    {"firstphase_height", Kind::kInt, kTxt, nullptr, ""},
    {"hr_scale", Kind::kNumber, kTxt, nullptr, ""},
    {"hr_upscaler", Kind::kString, kTxt, nullptr, ""},
    {"hr_second_pass_steps", Kind::kInt, kTxt, nullptr, ""},
    {"hr_resize_x", Kind::kInt, kTxt, nullptr, ""},
    {"hr_resize_y", Kind::kInt, kTxt, nullptr, ""},
    {"hr_checkpoint_name", Kind::kString, kTxt, nullptr, ""},
    {"hr_additional_modules", Kind::kArray, kTxt, nullptr, ""},
    {"hr_sampler_name", Kind::kString, kTxt, nullptr, ""},
    {"hr_scheduler", Kind::kString, kTxt, nullptr, ""},
    {"hr_prompt", Kind::kString, kTxt, nullptr, ""},
    {"hr_negative_prompt", Kind::kString, kTxt, nullptr, ""},
    {"init_images", Kind::kArray, kImg, nullptr, ""},
    {"resize_mode", Kind::kInt, kImg, NotZero, "only resize_mode 0 (just resize) is supported"},
    {"image_cfg_scale", Kind::kNumber, kImg, nullptr, ""},
    {"mask", Kind::kString, kImg, NonEmpty, "inpainting masks are not supported"},
    {"mask_blur_x", Kind::kInt, kImg, nullptr, ""},
    {"mask_blur_y", Kind::kInt, kImg, nullptr, ""},
    {"mask_blur", Kind::kInt, kImg, nullptr, ""},
    {"mask_round", Kind::kBool, kImg, nullptr, ""},
    {"inpainting_fill", Kind::kInt, kImg, nullptr, ""},
    {"inpaint_full_res", Kind::kBoolOrInt, kImg, nullptr, ""},
    {"inpaint_full_res_padding", Kind::kInt, kImg, nullptr, ""},
    {"inpainting_mask_invert", Kind::kBoolOrInt, kImg, nullptr, ""},
    {"initial_noise_multiplier", Kind::kNumber, kImg, NotOne,
     "initial_noise_multiplier other than 1 is not supported"},
    {"latent_mask", Kind::kString, kImg, NonEmpty, "latent masks are not supported"},
    {"include_init_images", Kind::kBool, kImg, nullptr, ""},
};

bool HasKind(const json& v, Kind kind) {
  switch (kind) {
    case Kind::kString:
      return v.is_string();
    case Kind::kNumber:
      return v.is_number();
    case Kind::kInt:
      return v.is_number_integer() ||
             (v.is_number_float() && std::abs(v.get<double>()) < 9e15 &&
              v.get<double>() == static_cast<double>(static_cast<int64_t>(v.get<double>())));
    case Kind::kBool:
      return v.is_boolean();
    case Kind::kBoolOrInt:
      return v.is_boolean() || v.is_number_integer();
    case Kind::kObject:
      return v.is_object();
    case Kind::kArray:
      return v.is_array();
  }
  return false;
}

const char* KindName(Kind kind) {
  switch (kind) {
    case Kind::kString:
      return "a string";
    case Kind::kNumber:
      return "a number";
    case Kind::kInt:
      return "an integer";
    case Kind::kBool:
      return "a boolean";
    case Kind::kBoolOrInt:
      return "a boolean or an integer";
    case Kind::kObject:
      return "an object";
    case Kind::kArray:
      return "an array";
  }
  return "";
}

absl::Status CheckFields(const json& body, A1111Route route) {
  const unsigned bit = route == A1111Route::kTxt2Img ? kTxt : kImg;
  for (const auto& [name, value] : body.items()) {
    const FieldRule* rule = nullptr;
    for (const FieldRule& r : kFields) {
      if (r.name == name && (r.routes & bit)) rule = &r;
    }
    if (!rule) {
      return InvalidField(name, StrCat("unrecognized request argument '", name,
                                       "' (Kiln knows A1111 1.10's fields)"));
    }
    if (value.is_null()) continue;
    if (!HasKind(value, rule->kind)) {
      return InvalidField(name, StrCat("'", name, "' must be ", KindName(rule->kind)));
    }
    if (rule->refused && rule->refused(value)) {
      return InvalidField(name, StrCat("'", name, "': ", rule->why));
    }
  }
  return absl::OkStatus();
}

// The field's value when present and not null.
const json* Get(const json& body, std::string_view name) {
  auto it = body.find(name);
  return it == body.end() || it->is_null() ? nullptr : &*it;
}

absl::StatusOr<int> IntField(const json& body, std::string_view name, int lo, int hi,
                             int fallback) {
  const json* v = Get(body, name);
  if (!v) return fallback;
  const double d = v->get<double>();
  if (d < lo || d > hi) return InvalidField(name, StrCat("'", name, "' must be in ", lo, "..", hi));
  return static_cast<int>(d);
}

absl::StatusOr<double> NumberField(const json& body, std::string_view name, double lo, double hi,
                                   double fallback) {
  const json* v = Get(body, name);
  if (!v) return fallback;
  const double d = v->get<double>();
  if (!(d >= lo && d <= hi)) {
    return InvalidField(name, StrCat("'", name, "' must be between ", lo, " and ", hi));
  }
  return d;
}

absl::StatusOr<std::string> TextField(const json& body, std::string_view name) {
  const json* v = Get(body, name);
  if (!v) return std::string();
  std::string s = v->get<std::string>();
  if (Utf8Chars(s) > kMaxPromptChars) {
    return InvalidField(name,
                        StrCat("'", name, "' is longer than ", kMaxPromptChars, " characters"));
  }
  return s;
}

// A seed field: -1 (or absent) draws one below 2^32, as A1111 does.
absl::StatusOr<uint64_t> SeedField(const json& body, std::string_view name) {
  const json* v = Get(body, name);
  if (!v || v->get<double>() == -1) return Random64() % 4294967295u;
  const double d = v->get<double>();
  if (d < 0 || d > 9007199254740992.0) {
    return InvalidField(name, StrCat("'", name, "' must be -1 (random) or in 0..2^53"));
  }
  return static_cast<uint64_t>(d);
}

// The model: override_settings.sd_model_checkpoint, else the options' default, else the
// repository's.
absl::StatusOr<const engine::ModelSpec*> ChooseModel(const json& body,
                                                     const engine::ModelRepository& models,
                                                     const std::string& default_model) {
  if (const json* o = Get(body, "override_settings")) {
    for (const auto& [key, value] : o->items()) {
      if (key != "sd_model_checkpoint") {
        const std::string field = StrCat("override_settings.", key);
        return InvalidField(field, StrCat("'", field,
                                          "' cannot be overridden; Kiln honours only "
                                          "override_settings.sd_model_checkpoint"));
      }
    }
    if (const json* name = Get(*o, "sd_model_checkpoint")) {
      const std::string field = "override_settings.sd_model_checkpoint";
      if (!name->is_string()) return InvalidField(field, StrCat("'", field, "' must be a string"));
      return ResolveA1111Checkpoint(name->get<std::string>(), models, field);
    }
  }
  if (!default_model.empty()) return models.Find(default_model);
  return models.Default();
}

// Sampler and schedule: sampler_name (or the deprecated sampler_index), then A1111's scheduler,
// whose "automatic" means Karras sigmas for DPM++ 2M (A1111's own default for it).
absl::Status ChooseSampler(const json& body, const engine::ModelSpec& spec, A1111Request& out) {
  std::string field = "sampler_name";
  const json* name = Get(body, "sampler_name");
  if (!name || name->get<std::string>().empty()) {
    field = "sampler_index";
    name = Get(body, "sampler_index");
    if (name && name->get<std::string>().empty()) name = nullptr;
  }
  const json* scheduler = Get(body, "scheduler");
  std::string sched = scheduler ? ToLowerAscii(scheduler->get<std::string>()) : "";
  if (sched.empty()) sched = "automatic";
  if (sched != "automatic" && sched != "uniform" && sched != "karras") {
    return InvalidField("scheduler", StrCat("'scheduler' must be automatic, uniform or karras "
                                            "(the schedules Kiln runs), not '",
                                            scheduler->get<std::string>(), "'"));
  }
  if (!name) {
    auto parsed = engine::ParseSamplerName(spec.defaults.sampler);
    if (!parsed.ok()) return parsed.status();
    out.generation.sampler = *parsed;
  } else {
    auto parsed = engine::ParseSamplerName(name->get<std::string>());
    if (!parsed.ok()) return InvalidField(field, ToStd(parsed.status().message()));
    out.generation.sampler = *parsed;
    if (sched == "automatic" && parsed->kind == engine::SamplerKind::kDpmpp2m) {
      out.generation.sampler.karras = true;
    }
  }
  if (sched == "karras") out.generation.sampler.karras = true;
  if (sched == "uniform") out.generation.sampler.karras = false;
  out.scheduler_label = out.generation.sampler.karras ? "Karras"
                        : sched == "uniform"          ? "Uniform"
                                                      : "Automatic";

  // The sampler settings that change what A1111 draws with this sampler.
  const engine::SamplerKind kind = out.generation.sampler.kind;
  if (const json* eta = Get(body, "eta")) {
    const double e = eta->get<double>();
    if (kind == engine::SamplerKind::kEulerAncestral && e != 1.0) {
      return InvalidField("eta", "'eta' must be 1 with Euler a (Kiln adds the full noise)");
    }
    if (kind == engine::SamplerKind::kDdim && e != 0.0) {
      return InvalidField("eta", "'eta' must be 0 with DDIM (Kiln's DDIM is deterministic)");
    }
  }
  if (const json* s = Get(body, "s_noise");
      s && kind == engine::SamplerKind::kEulerAncestral && s->get<double>() != 1.0) {
    return InvalidField("s_noise", "'s_noise' must be 1 with Euler a");
  }
  if (const json* s = Get(body, "s_churn");
      s && kind == engine::SamplerKind::kEuler && s->get<double>() != 0.0) {
    return InvalidField("s_churn", "'s_churn' must be 0 with Euler (churn is not supported)");
  }
  return absl::OkStatus();
}

absl::Status ReadInitImage(const json& body, const engine::ModelSpec& spec, A1111Request& out) {
  const json* images = Get(body, "init_images");
  if (!images || images->empty()) {
    return InvalidField("init_images", "'init_images' must hold the image to start from");
  }
  if (images->size() > 1) {
    return InvalidField("init_images", "exactly one image in 'init_images' is supported");
  }
  if (!(*images)[0].is_string()) {
    return InvalidField("init_images", "'init_images' must hold base64 images");
  }
  KILN_ASSIGN_OR_RETURN(std::string bytes,
                        DecodeBase64Field((*images)[0].get<std::string>(), "init_images"));
  KILN_ASSIGN_OR_RETURN(engine::Image image, DecodeUpload(bytes, "init_images"));
  const json* strength = Get(body, "denoising_strength");
  if (spec.supports_edit) {
    // An instruction-edit model redraws the whole picture under the image's guidance.
    if (strength && strength->get<double>() != 1.0) {
      return InvalidField(
          "denoising_strength",
          StrCat("'denoising_strength' must be 1 (or absent) for model '", spec.name,
                 "': it is an instruction-edit model and redraws the whole image, "
                 "guided by image_cfg_scale"));
    }
    engine::InstructEdit edit;
    edit.image = std::move(image);
    KILN_ASSIGN_OR_RETURN(
        edit.image_guidance_scale,
        NumberField(body, "image_cfg_scale", 0.0, 30.0, spec.defaults.image_guidance_scale));
    out.generation.conditioning = std::move(edit);
    return absl::OkStatus();
  }
  // image_cfg_scale is read by A1111 only for instruction-edit models, as here.
  engine::ImageToImage i2i;
  i2i.image = std::move(image);
  const double s = strength ? strength->get<double>() : 0.75;
  if (!(s > 0.0 && s <= 1.0)) {
    return InvalidField("denoising_strength", "'denoising_strength' must be in (0, 1]");
  }
  i2i.strength = s;
  out.generation.conditioning = std::move(i2i);
  return absl::OkStatus();
}

std::string Trimmed(double v) { return fmt::format("{}", v); }

}  // namespace

absl::StatusOr<const engine::ModelSpec*> ResolveA1111Checkpoint(
    std::string_view name, const engine::ModelRepository& models, std::string_view field) {
  std::string n(Trim(name));
  if (n.size() > 512) return InvalidField(field, StrCat("'", field, "' is too long"));
  // "model.safetensors [6ce0161689]" -> "model.safetensors" -> "model".
  if (n.ends_with("]")) {
    if (size_t open = n.rfind(" ["); open != std::string::npos) n.resize(open);
  }
  for (std::string_view ext : {".safetensors", ".ckpt"}) {
    if (n.ends_with(ext) && !models.Find(n).ok()) n.resize(n.size() - ext.size());
  }
  auto spec = models.Find(n);
  if (absl::IsNotFound(spec.status())) {
    return WithField(absl::NotFoundError(StrCat("checkpoint '", name,
                                                "' is not served here; GET /sdapi/v1/sd-models "
                                                "lists the ones that are")),
                     field);
  }
  if (!spec.ok()) return WithField(spec.status(), field);
  return spec;
}

absl::StatusOr<A1111Request> ParseA1111Request(A1111Route route, std::string_view json_body,
                                               const engine::ModelRepository& models,
                                               const std::string& default_model) {
  KILN_ASSIGN_OR_RETURN(json body, ParseJsonWithLimits(json_body, "the request body"));
  if (!body.is_object()) {
    return absl::InvalidArgumentError("the request body must be a JSON object");
  }
  KILN_RETURN_IF_ERROR(CheckFields(body, route));

  A1111Request out;
  engine::GenerationRequest& g = out.generation;
  KILN_ASSIGN_OR_RETURN(out.spec, ChooseModel(body, models, default_model));
  const engine::ModelSpec& spec = *out.spec;
  KILN_ASSIGN_OR_RETURN(g.prompt, TextField(body, "prompt"));
  KILN_ASSIGN_OR_RETURN(g.negative_prompt, TextField(body, "negative_prompt"));

  const ImageSize native = spec.sizes.front();
  KILN_ASSIGN_OR_RETURN(g.size.width, IntField(body, "width", 1, 16384, native.width));
  KILN_ASSIGN_OR_RETURN(g.size.height, IntField(body, "height", 1, 16384, native.height));
  // The engine's check, naming A1111's field instead of `size`.
  if (absl::Status s = engine::CheckSizeForModel(g.size, spec); !s.ok()) {
    return WithField(s, g.size.width != native.width ? "width" : "height");
  }
  KILN_ASSIGN_OR_RETURN(g.steps, IntField(body, "steps", 1, 150, spec.defaults.steps));
  KILN_ASSIGN_OR_RETURN(g.guidance_scale,
                        NumberField(body, "cfg_scale", 0.0, 30.0, spec.defaults.guidance_scale));
  KILN_ASSIGN_OR_RETURN(out.batch_size, IntField(body, "batch_size", 1, 10, 1));
  KILN_ASSIGN_OR_RETURN(out.n_iter, IntField(body, "n_iter", 1, kMaxA1111Images, 1));
  if (out.batch_size * out.n_iter > kMaxA1111Images) {
    return InvalidField("n_iter",
                        StrCat("batch_size x n_iter must be at most ", kMaxA1111Images, " images"));
  }
  g.n = out.batch_size;
  KILN_ASSIGN_OR_RETURN(g.seed, SeedField(body, "seed"));
  KILN_ASSIGN_OR_RETURN(uint64_t subseed, SeedField(body, "subseed"));
  out.subseed = static_cast<int64_t>(subseed);
  KILN_RETURN_IF_ERROR(ChooseSampler(body, spec, out));
  if (const json* v = Get(body, "send_images")) out.send_images = v->get<bool>();
  if (const json* v = Get(body, "save_images")) out.save_images = v->get<bool>();
  if (const json* v = Get(body, "force_task_id")) {
    out.task_id = v->get<std::string>();
    if (out.task_id.size() > 128) {
      return InvalidField("force_task_id", "'force_task_id' is longer than 128 characters");
    }
  }
  if (route == A1111Route::kImg2Img) KILN_RETURN_IF_ERROR(ReadInitImage(body, spec, out));
  KILN_RETURN_IF_ERROR(engine::CheckRequestForModel(g, spec));

  out.parameters = body;
  json& p = out.parameters;
  p["prompt"] = g.prompt;
  p["negative_prompt"] = g.negative_prompt;
  if (!p.contains("seed") || p["seed"].is_null()) p["seed"] = -1;
  if (!p.contains("subseed") || p["subseed"].is_null()) p["subseed"] = -1;
  p["sampler_name"] = A1111SamplerName(g.sampler);
  p["scheduler"] = out.scheduler_label;
  p["batch_size"] = out.batch_size;
  p["n_iter"] = out.n_iter;
  p["steps"] = g.steps;
  p["cfg_scale"] = g.guidance_scale;
  p["width"] = g.size.width;
  p["height"] = g.size.height;
  p["send_images"] = out.send_images;
  p["save_images"] = out.save_images;
  p["override_settings"] = {{"sd_model_checkpoint", spec.name}};
  if (route == A1111Route::kImg2Img) {
    if (const auto* i2i = std::get_if<engine::ImageToImage>(&g.conditioning)) {
      p["denoising_strength"] = i2i->strength;
    } else if (const auto* e = std::get_if<engine::InstructEdit>(&g.conditioning)) {
      p["denoising_strength"] = 1.0;
      p["image_cfg_scale"] = e->image_guidance_scale;
    }
    const json* include = Get(body, "include_init_images");
    if (!(include && include->get<bool>())) {
      p["init_images"] = nullptr;
      p["mask"] = nullptr;
    }
  }
  return out;
}

std::string A1111SamplerName(const engine::SamplerSpec& sampler) {
  switch (sampler.kind) {
    case engine::SamplerKind::kEuler:
      return "Euler";
    case engine::SamplerKind::kEulerAncestral:
      return "Euler a";
    case engine::SamplerKind::kDdim:
      return "DDIM";
    case engine::SamplerKind::kDpmpp2m:
      return "DPM++ 2M";
  }
  return "";
}

json A1111Samplers() {
  return json::array({
      {{"name", "DPM++ 2M"},
       {"aliases", {"k_dpmpp_2m", "dpmpp_2m"}},
       {"options", {{"scheduler", "karras"}}}},
      {{"name", "Euler a"},
       {"aliases", {"k_euler_a", "k_euler_ancestral", "euler_a"}},
       {"options", {{"uses_ensd", "True"}}}},
      {{"name", "Euler"}, {"aliases", {"k_euler", "euler"}}, {"options", json::object()}},
      {{"name", "DDIM"}, {"aliases", {"ddim"}}, {"options", json::object()}},
  });
}

json A1111Schedulers() {
  return json::array({
      {{"name", "automatic"},
       {"label", "Automatic"},
       {"aliases", nullptr},
       {"default_rho", -1},
       {"need_inner_model", false}},
      {{"name", "uniform"},
       {"label", "Uniform"},
       {"aliases", nullptr},
       {"default_rho", -1},
       {"need_inner_model", true}},
      {{"name", "karras"},
       {"label", "Karras"},
       {"aliases", nullptr},
       {"default_rho", 7.0},
       {"need_inner_model", false}},
  });
}

std::string A1111Infotext(const A1111Request& request, int index) {
  const engine::GenerationRequest& g = request.generation;
  std::string text = g.prompt;
  if (!g.negative_prompt.empty()) StrAppend(&text, "\nNegative prompt: ", g.negative_prompt);
  StrAppend(&text, "\nSteps: ", g.steps, ", Sampler: ", A1111SamplerName(g.sampler),
            ", Schedule type: ", request.scheduler_label,
            ", CFG scale: ", Trimmed(g.guidance_scale),
            ", Seed: ", g.seed + static_cast<uint64_t>(index), ", Size: ", g.size.ToString(),
            ", Model: ", request.spec->name);
  if (const auto* i2i = std::get_if<engine::ImageToImage>(&g.conditioning)) {
    StrAppend(&text, ", Denoising strength: ", Trimmed(i2i->strength));
  } else if (const auto* e = std::get_if<engine::InstructEdit>(&g.conditioning)) {
    StrAppend(&text, ", Image CFG scale: ", Trimmed(e->image_guidance_scale));
  }
  StrAppend(&text, ", Version: kiln");
  return text;
}

json A1111Info(const A1111Request& request, const std::vector<int>& indices,
               int64_t job_timestamp_unix) {
  const engine::GenerationRequest& g = request.generation;
  json all_prompts = json::array(), all_negative = json::array(), all_seeds = json::array(),
       all_subseeds = json::array(), infotexts = json::array();
  for (int i : indices) {
    all_prompts.push_back(g.prompt);
    all_negative.push_back(g.negative_prompt);
    all_seeds.push_back(g.seed + static_cast<uint64_t>(i));
    all_subseeds.push_back(request.subseed + i);
    infotexts.push_back(A1111Infotext(request, i));
  }
  std::tm tm{};
  const std::time_t t = job_timestamp_unix;
  gmtime_r(&t, &tm);
  char stamp[16];
  std::strftime(stamp, sizeof stamp, "%Y%m%d%H%M%S", &tm);
  json denoising = nullptr;
  if (const auto* i2i = std::get_if<engine::ImageToImage>(&g.conditioning)) {
    denoising = i2i->strength;
  } else if (std::holds_alternative<engine::InstructEdit>(g.conditioning)) {
    denoising = 1.0;
  }
  json extra = {{"Schedule type", request.scheduler_label}};
  if (const auto* e = std::get_if<engine::InstructEdit>(&g.conditioning)) {
    extra["Image CFG scale"] = e->image_guidance_scale;
  }
  return {{"prompt", g.prompt},
          {"all_prompts", all_prompts},
          {"negative_prompt", g.negative_prompt},
          {"all_negative_prompts", all_negative},
          {"seed", g.seed},
          {"all_seeds", all_seeds},
          {"subseed", request.subseed},
          {"all_subseeds", all_subseeds},
          {"subseed_strength", 0},
          {"width", g.size.width},
          {"height", g.size.height},
          {"sampler_name", A1111SamplerName(g.sampler)},
          {"cfg_scale", g.guidance_scale},
          {"steps", g.steps},
          {"batch_size", request.batch_size},
          {"restore_faces", false},
          {"face_restoration_model", nullptr},
          {"sd_model_name", request.spec->name},
          {"sd_model_hash", nullptr},
          {"sd_vae_name", nullptr},
          {"sd_vae_hash", nullptr},
          {"seed_resize_from_w", -1},
          {"seed_resize_from_h", -1},
          {"denoising_strength", denoising},
          {"extra_generation_params", extra},
          {"index_of_first_image", 0},
          {"infotexts", infotexts},
          {"styles", json::array()},
          {"job_timestamp", stamp},
          {"clip_skip", request.spec->clip_skip + 1},  // A1111 counts the last layer as 1
          {"is_using_inpainting_conditioning", false},
          {"version", "kiln"}};
}

}  // namespace kiln::api
