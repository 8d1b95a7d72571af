#include "engine/request.h"

#include "core/status_util.h"
#include "core/strings.h"
#include "fmt/format.h"
#include "nlohmann/json.hpp"

namespace kiln::engine {

int RowsPerImage(const GenerationRequest& request) {
  if (std::holds_alternative<InstructEdit>(request.conditioning)) return 3;
  return request.guidance_scale == 1.0 ? 1 : 2;
}

absl::Status CheckSizeForModel(const ImageSize& size, const ModelSpec& model) {
  if (!model.SupportsSize(size)) {
    std::string sizes;
    for (const auto& s : model.sizes) StrAppend(&sizes, sizes.empty() ? "" : ", ", s.ToString());
    if (model.size_multiple > 0) {
      StrAppend(&sizes, ", or any WxH with sides multiples of ", model.size_multiple, " from ",
                model.min_side, " to ", model.max_side);
    }
    return InvalidField("size", StrCat("size ", size.ToString(), " is not supported by model '",
                                       model.name, "'; supported: ", sizes));
  }
  return absl::OkStatus();
}

absl::Status CheckRequestForModel(const GenerationRequest& r, const ModelSpec& model) {
  KILN_RETURN_IF_ERROR(CheckSizeForModel(r.size, model));
  if (r.n < 1 || r.n > 10) return InvalidField("n", "n must be in 1..10");
  if (r.steps < 1 || r.steps > 150) return InvalidField("steps", "steps must be in 1..150");
  if (std::holds_alternative<TextToImage>(r.conditioning) && !model.supports_generate) {
    return InvalidField("model", StrCat("model '", model.name, "' does not do text-to-image"));
  }
  if (std::holds_alternative<InstructEdit>(r.conditioning) && !model.supports_edit) {
    return InvalidField("model", StrCat("model '", model.name, "' does not do instruction edits"));
  }
  if (!std::holds_alternative<TextToImage>(r.conditioning) && model.kind == ModelKind::kLatent &&
      model.encoder.empty()) {
    return InvalidField("image", StrCat("model '", model.name,
                                        "' has no encoder, so it cannot take an input image"));
  }
  if (const auto* i2i = std::get_if<ImageToImage>(&r.conditioning)) {
    if (!(i2i->strength > 0.0 && i2i->strength <= 1.0)) {
      return InvalidField("strength", "strength must be in (0, 1]");
    }
  }
  return absl::OkStatus();
}

std::vector<std::pair<std::string, std::string>> PngParameters(const GenerationRequest& r,
                                                               const std::string& model_name,
                                                               int index) {
  const uint64_t seed = r.seed + static_cast<uint64_t>(index);
  std::string mode = "txt2img";
  nlohmann::json j = {{"prompt", r.prompt},
                      {"negative_prompt", r.negative_prompt},
                      {"seed", seed},
                      {"steps", r.steps},
                      {"sampler", r.sampler.Name()},
                      {"guidance_scale", r.guidance_scale},
                      {"size", r.size.ToString()},
                      {"model", model_name}};
  if (const auto* e = std::get_if<InstructEdit>(&r.conditioning)) {
    mode = "edit";
    j["image_guidance_scale"] = e->image_guidance_scale;
  } else if (const auto* i = std::get_if<ImageToImage>(&r.conditioning)) {
    mode = "img2img";
    j["strength"] = i->strength;
  }
  j["mode"] = mode;
  std::string a1111 = r.prompt;
  if (!r.negative_prompt.empty()) StrAppend(&a1111, "\nNegative prompt: ", r.negative_prompt);
  a1111 +=
      fmt::format("\nSteps: {}, Sampler: {}, CFG scale: {}, Seed: {}, Size: {}, Model: {}", r.steps,
                  r.sampler.Name(), r.guidance_scale, seed, r.size.ToString(), model_name);
  return {{"parameters", a1111},
          {"kiln", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)}};
}

}  // namespace kiln::engine
