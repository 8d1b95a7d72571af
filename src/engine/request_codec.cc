#include "engine/request_codec.h"

#include "core/status_util.h"
#include "core/strings.h"

namespace kiln::engine {
namespace {

const char* ModeName(const Conditioning& c) {
  if (std::holds_alternative<InstructEdit>(c)) return "edit";
  if (std::holds_alternative<ImageToImage>(c)) return "img2img";
  return "generate";
}

}  // namespace

nlohmann::json RequestToJson(const GenerationRequest& r, const std::string& image_key) {
  nlohmann::json j = {{"prompt", r.prompt},
                      {"negative_prompt", r.negative_prompt},
                      {"steps", r.steps},
                      {"guidance_scale", r.guidance_scale},
                      {"seed", r.seed},
                      {"sampler", r.sampler.Name()},
                      {"size", r.size.ToString()},
                      {"n", r.n},
                      {"mode", ModeName(r.conditioning)}};
  if (const auto* e = std::get_if<InstructEdit>(&r.conditioning)) {
    j["image_guidance_scale"] = e->image_guidance_scale;
    j["image_key"] = image_key;
  } else if (const auto* i = std::get_if<ImageToImage>(&r.conditioning)) {
    j["strength"] = i->strength;
    j["image_key"] = image_key;
  }
  return j;
}

nlohmann::json RequestSummary(const GenerationRequest& r) {
  nlohmann::json j = RequestToJson(r, "");
  j.erase("image_key");
  return j;
}

absl::StatusOr<StoredRequest> RequestFromJson(const nlohmann::json& j) {
  StoredRequest out;
  GenerationRequest& r = out.request;
  try {
    r.prompt = j.at("prompt").get<std::string>();
    r.negative_prompt = j.at("negative_prompt").get<std::string>();
    r.steps = j.at("steps").get<int>();
    r.guidance_scale = j.at("guidance_scale").get<double>();
    r.seed = j.at("seed").get<uint64_t>();
    KILN_ASSIGN_OR_RETURN(r.sampler, ParseSamplerName(j.at("sampler").get<std::string>()));
    KILN_ASSIGN_OR_RETURN(r.size, ParseImageSize(j.at("size").get<std::string>()));
    r.n = j.at("n").get<int>();
    const std::string mode = j.at("mode").get<std::string>();
    if (mode == "edit") {
      InstructEdit e;
      e.image_guidance_scale = j.at("image_guidance_scale").get<double>();
      out.image_key = j.at("image_key").get<std::string>();
      r.conditioning = std::move(e);
    } else if (mode == "img2img") {
      ImageToImage i;
      i.strength = j.at("strength").get<double>();
      out.image_key = j.at("image_key").get<std::string>();
      r.conditioning = std::move(i);
    } else if (mode != "generate") {
      return absl::InvalidArgumentError(StrCat("stored request: unknown mode '", mode, "'"));
    }
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(StrCat("stored request is malformed: ", e.what()));
  }
  return out;
}

}  // namespace kiln::engine
