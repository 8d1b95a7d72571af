#include "api/openai_params.h"

#include <algorithm>
#include <random>
#include <set>

#include "core/ids.h"
#include "core/json_parse.h"
#include "core/status_util.h"
#include "core/strings.h"
#include "engine/image_codec.h"
#include "http/client.h"

namespace kiln::api {
namespace {

constexpr size_t kMaxImageBytes = 16 << 20;
constexpr int64_t kMaxImagePixels = 4096 * 4096;
// A request whose upload waits longer than this for a decoding slot gets a 503 (the handler
// thread it holds is shared with every other request).
constexpr int64_t kMaxDecodeWaitMs = 10000;

absl::Status TypeError(const std::string& name, std::string_view want) {
  return InvalidField(name, StrCat("'", name, "' must be ", want));
}

// The fields both endpoints accept, plus each endpoint's own.
const std::set<std::string>& CommonFields() {
  static const std::set<std::string> kFields = {
      "model", "prompt",        "negative_prompt", "n",
      "size",  "quality",       "response_format", "style",
      "user",  "output_format", "steps",           "guidance_scale",
      "seed",  "sampler",       "priority",        "deadline_ms"};
  return kFields;
}

absl::Status CheckKnownFields(const FieldSource& fields, const std::set<std::string>& extra) {
  for (const std::string& name : fields.Names()) {
    if (!CommonFields().contains(name) && !extra.contains(name)) {
      return InvalidField(name, StrCat("unrecognized request argument '", name, "'"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<double> DoubleIn(const FieldSource& f, const std::string& name, double lo, double hi,
                                double fallback) {
  KILN_ASSIGN_OR_RETURN(std::optional<double> v, f.Double(name));
  if (!v) return fallback;
  if (!(*v >= lo && *v <= hi)) {
    return InvalidField(name, StrCat("'", name, "' must be between ", lo, " and ", hi));
  }
  return *v;
}

absl::StatusOr<int> IntIn(const FieldSource& f, const std::string& name, int lo, int hi,
                          int fallback) {
  KILN_ASSIGN_OR_RETURN(std::optional<int64_t> v, f.Int(name));
  if (!v) return fallback;
  if (*v < lo || *v > hi) {
    return InvalidField(name, StrCat("'", name, "' must be an integer in ", lo, "..", hi));
  }
  return static_cast<int>(*v);
}

absl::StatusOr<std::string> Text(const FieldSource& f, const std::string& name, bool required) {
  KILN_ASSIGN_OR_RETURN(std::optional<std::string> v, f.String(name));
  if (!v || v->empty()) {
    if (required)
      return InvalidField(name, StrCat("'", name, "' is required and must not be empty"));
    return std::string();
  }
  if (Utf8Chars(*v) > kMaxPromptChars) {
    return InvalidField(name,
                        StrCat("'", name, "' is longer than ", kMaxPromptChars, " characters"));
  }
  return *v;
}

// Everything both endpoints share: model, prompt, sizes, sampling parameters, output.
absl::StatusOr<ImageRequest> ParseCommon(const FieldSource& f,
                                         const engine::ModelRepository& models) {
  ImageRequest out;
  engine::GenerationRequest& g = out.generation;
  KILN_ASSIGN_OR_RETURN(g.prompt, Text(f, "prompt", true));
  KILN_ASSIGN_OR_RETURN(g.negative_prompt, Text(f, "negative_prompt", false));

  KILN_ASSIGN_OR_RETURN(std::optional<std::string> model, f.String("model"));
  if (model && !model->empty()) {
    if (model->size() > 256) return InvalidField("model", "'model' is too long");
    KILN_ASSIGN_OR_RETURN(out.spec, models.Find(*model));
  } else {
    KILN_ASSIGN_OR_RETURN(out.spec, models.Default());
  }
  const engine::ModelSpec& spec = *out.spec;
  out.model = spec.name;

  KILN_ASSIGN_OR_RETURN(std::optional<std::string> size, f.String("size"));
  if (size && !size->empty() && *size != "auto") {
    auto parsed = ParseImageSize(*size);
    if (!parsed.ok()) return InvalidField("size", ToStd(parsed.status().message()));
    g.size = *parsed;
  } else {
    g.size = spec.sizes.front();
  }
  KILN_ASSIGN_OR_RETURN(g.n, IntIn(f, "n", 1, 10, 1));
  KILN_ASSIGN_OR_RETURN(g.steps, IntIn(f, "steps", 1, 150, spec.defaults.steps));
  KILN_ASSIGN_OR_RETURN(g.guidance_scale,
                        DoubleIn(f, "guidance_scale", 0.0, 30.0, spec.defaults.guidance_scale));

  KILN_ASSIGN_OR_RETURN(std::optional<std::string> sampler, f.String("sampler"));
  auto parsed_sampler = engine::ParseSamplerName(sampler ? *sampler : spec.defaults.sampler);
  if (!parsed_sampler.ok())
    return InvalidField("sampler", ToStd(parsed_sampler.status().message()));
  g.sampler = *parsed_sampler;

  KILN_ASSIGN_OR_RETURN(std::optional<uint64_t> seed, f.Uint("seed"));
  if (seed) {
    if (*seed > (uint64_t{1} << 53)) return InvalidField("seed", "'seed' must be in 0..2^53");
    g.seed = *seed;
    out.seed_given = true;
  } else {
    // Kept below 2^53 so that every JSON client reads the reported seed back exactly.
    g.seed = Random64() & ((uint64_t{1} << 53) - 1);
  }

  KILN_ASSIGN_OR_RETURN(std::optional<std::string> format, f.String("response_format"));
  if (!format || *format == "b64_json") {
    out.response_format = ResponseFormat::kB64Json;
  } else if (*format == "url") {
    out.response_format = ResponseFormat::kUrl;
  } else {
    return InvalidField("response_format", "'response_format' must be 'b64_json' or 'url'");
  }
  KILN_ASSIGN_OR_RETURN(std::optional<std::string> output_format, f.String("output_format"));
  if (output_format && *output_format != "png") {
    return InvalidField("output_format", "'output_format' must be 'png'");
  }
  KILN_ASSIGN_OR_RETURN(out.priority, IntIn(f, "priority", -10, 10, 0));
  KILN_ASSIGN_OR_RETURN(std::optional<int64_t> deadline, f.Int("deadline_ms"));
  if (deadline) {
    if (*deadline < 1 || *deadline > 7 * 24 * 3600 * 1000LL) {
      return InvalidField("deadline_ms",
                          "'deadline_ms' must be 1..604800000 milliseconds from now");
    }
    out.deadline_ms = *deadline;
  }
  for (const char* ignored : {"quality", "style", "user"}) {
    KILN_ASSIGN_OR_RETURN(std::optional<std::string> v, f.String(ignored));
    if (v && v->size() > 256) return InvalidField(ignored, StrCat("'", ignored, "' is too long"));
  }
  return out;
}

// The `webhook` field: an http(s) URL whose host, when an address literal, `policy` allows.
absl::StatusOr<std::string> WebhookField(const FieldSource& fields,
                                         const http::AddressPolicy& policy) {
  KILN_ASSIGN_OR_RETURN(std::optional<std::string> webhook, fields.String("webhook"));
  if (!webhook || webhook->empty()) return std::string();
  KILN_RETURN_IF_ERROR(http::CheckHttpUrl(*webhook, "webhook"));
  KILN_RETURN_IF_ERROR(policy.CheckUrl(*webhook, "webhook"));
  return *webhook;
}

// The input image (out.image_bytes) and how it conditions the request: mode edit|img2img.
absl::Status ParseConditioning(const FieldSource& fields, ImageRequest& out) {
  const engine::ModelSpec& spec = *out.spec;
  KILN_ASSIGN_OR_RETURN(engine::Image decoded, DecodeUpload(out.image_bytes, "image"));

  KILN_ASSIGN_OR_RETURN(std::optional<std::string> mode, fields.String("mode"));
  const std::string m = mode ? *mode : (spec.supports_edit ? "edit" : "img2img");
  if (m == "edit") {
    engine::InstructEdit edit;
    edit.image = std::move(decoded);
    KILN_ASSIGN_OR_RETURN(
        edit.image_guidance_scale,
        DoubleIn(fields, "image_guidance_scale", 0.0, 30.0, spec.defaults.image_guidance_scale));
    KILN_ASSIGN_OR_RETURN(std::optional<double> strength, fields.Double("strength"));
    if (strength) return InvalidField("strength", "'strength' applies to mode 'img2img' only");
    out.generation.conditioning = std::move(edit);
  } else if (m == "img2img") {
    engine::ImageToImage i2i;
    i2i.image = std::move(decoded);
    KILN_ASSIGN_OR_RETURN(std::optional<double> strength, fields.Double("strength"));
    if (strength && !(*strength > 0.0 && *strength <= 1.0)) {
      return InvalidField("strength", "'strength' must be in (0, 1]");
    }
    if (strength) i2i.strength = *strength;
    out.generation.conditioning = std::move(i2i);
  } else {
    return InvalidField("mode", "'mode' must be 'edit' or 'img2img'");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> DecodeBase64Field(std::string_view text, const std::string& field) {
  std::string_view b64 = text;
  if (b64.substr(0, 5) == "data:") {
    const size_t comma = b64.find(',');
    if (comma == std::string_view::npos ||
        b64.substr(0, comma).find(";base64") == std::string_view::npos) {
      return InvalidField(
          field, StrCat("'", field, "' data URL must be base64 (data:image/png;base64,...)"));
    }
    b64 = b64.substr(comma + 1);
  }
  auto bytes = Base64Decode(b64);
  if (!bytes.ok()) return InvalidField(field, StrCat("'", field, "' is not valid base64"));
  return std::move(*bytes);
}

absl::StatusOr<engine::Image> DecodeUpload(std::string_view bytes, const std::string& field) {
  auto decoded = engine::DecodeImage(bytes, {kMaxImageBytes, kMaxImagePixels, kMaxDecodeWaitMs});
  if (absl::IsUnavailable(decoded.status())) return decoded.status();  // busy: 503, retry
  if (!decoded.ok())
    return InvalidField(field, StrCat("'", field, "': ", decoded.status().message()));
  return std::move(*decoded);
}

// ---- JsonFields ----------------------------------------------------------------------------

std::vector<std::string> JsonFields::Names() const {
  std::vector<std::string> out;
  for (const auto& [k, v] : object_.items()) out.push_back(k);
  return out;
}

absl::StatusOr<std::optional<std::string>> JsonFields::String(const std::string& name) const {
  auto it = object_.find(name);
  if (it == object_.end() || it->is_null()) return std::nullopt;
  if (!it->is_string()) return TypeError(name, "a string");
  return it->get<std::string>();
}

absl::StatusOr<std::optional<int64_t>> JsonFields::Int(const std::string& name) const {
  auto it = object_.find(name);
  if (it == object_.end() || it->is_null()) return std::nullopt;
  if (it->is_number_integer()) {
    if (it->is_number_unsigned() && it->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
      return TypeError(name, "an integer in range");
    }
    return it->get<int64_t>();
  }
  if (it->is_number_float()) {
    const double d = it->get<double>();
    if (d == static_cast<double>(static_cast<int64_t>(d)) && std::abs(d) < 9e15) {
      return static_cast<int64_t>(d);
    }
  }
  return TypeError(name, "an integer");
}

absl::StatusOr<std::optional<uint64_t>> JsonFields::Uint(const std::string& name) const {
  auto it = object_.find(name);
  if (it == object_.end() || it->is_null()) return std::nullopt;
  if (it->is_number_unsigned()) return it->get<uint64_t>();
  if (it->is_number_integer() && it->get<int64_t>() >= 0)
    return static_cast<uint64_t>(it->get<int64_t>());
  return TypeError(name, "a non-negative integer");
}

absl::StatusOr<std::optional<double>> JsonFields::Double(const std::string& name) const {
  auto it = object_.find(name);
  if (it == object_.end() || it->is_null()) return std::nullopt;
  if (!it->is_number()) return TypeError(name, "a number");
  return it->get<double>();
}

// ---- FormFields ----------------------------------------------------------------------------

FormFields::FormFields(const std::vector<http::FormPart>& parts) {
  for (const auto& p : parts) {
    names_.push_back(p.name);
    if (p.filename.empty()) values_[p.name] = std::string(p.data);
  }
}

std::vector<std::string> FormFields::Names() const { return names_; }

absl::StatusOr<std::optional<std::string>> FormFields::String(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end()) return std::nullopt;
  // JSON bodies are checked by the parser; form fields end up in job records and PNG text.
  if (!IsValidUtf8(it->second)) return TypeError(name, "valid UTF-8 text");
  return it->second;
}

absl::StatusOr<std::optional<int64_t>> FormFields::Int(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end()) return std::nullopt;
  auto v = ParseInt(it->second);
  if (!v.ok()) return TypeError(name, "an integer");
  return *v;
}

absl::StatusOr<std::optional<uint64_t>> FormFields::Uint(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end()) return std::nullopt;
  auto v = ParseUint(it->second);
  if (!v.ok()) return TypeError(name, "a non-negative integer");
  return *v;
}

absl::StatusOr<std::optional<double>> FormFields::Double(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end()) return std::nullopt;
  auto v = ParseDouble(it->second);
  if (!v.ok()) return TypeError(name, "a number");
  return *v;
}

// ---- Endpoints -----------------------------------------------------------------------------

absl::StatusOr<ImageRequest> ParseGenerationsRequest(std::string_view json_body,
                                                     const engine::ModelRepository& models) {
  KILN_ASSIGN_OR_RETURN(nlohmann::json body, ParseJsonWithLimits(json_body, "the request body"));
  if (!body.is_object())
    return absl::InvalidArgumentError("the request body must be a JSON object");
  JsonFields fields(body);
  KILN_RETURN_IF_ERROR(CheckKnownFields(fields, {}));
  KILN_ASSIGN_OR_RETURN(ImageRequest out, ParseCommon(fields, models));
  KILN_RETURN_IF_ERROR(engine::CheckRequestForModel(out.generation, *out.spec));
  return out;
}

absl::StatusOr<ImageRequest> ParseJobRequest(const nlohmann::json& body,
                                             const engine::ModelRepository& models,
                                             const http::AddressPolicy& webhooks, bool batch_line) {
  if (!body.is_object()) return absl::InvalidArgumentError("the request must be a JSON object");
  JsonFields fields(body);
  std::set<std::string> extra = {"image", "image_guidance_scale", "strength", "mode", "webhook"};
  if (batch_line) extra.insert("custom_id");
  KILN_RETURN_IF_ERROR(CheckKnownFields(fields, extra));
  KILN_ASSIGN_OR_RETURN(ImageRequest out, ParseCommon(fields, models));
  KILN_ASSIGN_OR_RETURN(out.webhook, WebhookField(fields, webhooks));
  if (batch_line) {
    KILN_ASSIGN_OR_RETURN(std::optional<std::string> custom_id, fields.String("custom_id"));
    if (custom_id && custom_id->size() > 128) {
      return InvalidField("custom_id", "'custom_id' is longer than 128 characters");
    }
    if (custom_id) out.custom_id = *custom_id;
  }
  KILN_ASSIGN_OR_RETURN(std::optional<std::string> image, fields.String("image"));
  if (image && !image->empty()) {
    KILN_ASSIGN_OR_RETURN(out.image_bytes, DecodeBase64Field(*image, "image"));
    KILN_RETURN_IF_ERROR(ParseConditioning(fields, out));
  } else {
    for (const char* f : {"mode", "strength", "image_guidance_scale"}) {
      if (body.contains(f) && !body[f].is_null()) {
        return InvalidField(f, StrCat("'", f, "' needs an 'image'"));
      }
    }
  }
  KILN_RETURN_IF_ERROR(engine::CheckRequestForModel(out.generation, *out.spec));
  return out;
}

namespace {

// A multipart form: an edit (/v1/images/edits, no `webhooks`: the image is required) or a job
// (/v1/jobs: the image is optional, `webhook` is allowed and judged by `webhooks`).
absl::StatusOr<ImageRequest> ParseForm(const std::vector<http::FormPart>& parts,
                                       const engine::ModelRepository& models,
                                       const http::AddressPolicy* webhooks) {
  const bool job = webhooks != nullptr;
  FormFields fields(parts);
  std::set<std::string> known = {"image",    "image[]", "mask", "image_guidance_scale",
                                 "strength", "mode"};
  if (job) known.insert("webhook");
  KILN_RETURN_IF_ERROR(CheckKnownFields(fields, known));
  const http::FormPart* image_part = nullptr;
  int images = 0;
  for (const auto& p : parts) {
    if (p.name == "mask") {
      return InvalidField("mask",
                          "'mask' (inpainting) is not supported; edits follow the prompt "
                          "as an instruction over the whole image");
    }
    if (p.name == "image" || p.name == "image[]") {
      image_part = &p;
      ++images;
    } else if (!p.filename.empty()) {
      return InvalidField(p.name, StrCat("'", p.name, "' must be a text field, not a file"));
    }
  }
  if (!image_part && !job) return InvalidField("image", "'image' is required: the image to edit");
  if (images > 1) return InvalidField("image", "exactly one 'image' is supported");
  KILN_ASSIGN_OR_RETURN(ImageRequest out, ParseCommon(fields, models));
  if (webhooks) {
    KILN_ASSIGN_OR_RETURN(out.webhook, WebhookField(fields, *webhooks));
  }
  if (image_part) {
    out.image_bytes = std::string(image_part->data);
    KILN_RETURN_IF_ERROR(ParseConditioning(fields, out));
  } else {
    for (const char* f : {"mode", "strength", "image_guidance_scale"}) {
      KILN_ASSIGN_OR_RETURN(std::optional<std::string> v, fields.String(f));
      if (v) return InvalidField(f, StrCat("'", f, "' needs an 'image'"));
    }
  }
  KILN_RETURN_IF_ERROR(engine::CheckRequestForModel(out.generation, *out.spec));
  return out;
}

}  // namespace

absl::StatusOr<ImageRequest> ParseEditsRequest(const std::vector<http::FormPart>& parts,
                                               const engine::ModelRepository& models) {
  return ParseForm(parts, models, /*webhooks=*/nullptr);
}

absl::StatusOr<ImageRequest> ParseJobForm(const std::vector<http::FormPart>& parts,
                                          const engine::ModelRepository& models,
                                          const http::AddressPolicy& webhooks) {
  return ParseForm(parts, models, &webhooks);
}

}  // namespace kiln::api
