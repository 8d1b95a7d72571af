// GET /v1/models and /v1/models/{id}: OpenAI's list shape, with each model's abilities beside.
#include "api/errors.h"
#include "api/handlers.h"
#include "core/status_util.h"
#include "core/strings.h"
#include "nlohmann/json.hpp"

namespace kiln::api {
namespace {

nlohmann::json ModelJson(const engine::ModelEntry& entry) {
  const engine::ModelSpec& spec = entry.spec;
  nlohmann::json tasks = nlohmann::json::array();
  if (spec.supports_generate) tasks.push_back("generate");
  if (spec.supports_edit) tasks.push_back("edit");
  nlohmann::json sizes = nlohmann::json::array();
  for (const auto& s : spec.sizes) sizes.push_back(s.ToString());
  nlohmann::json any_size = nullptr;
  if (spec.size_multiple > 0) {
    any_size = {{"multiple_of", spec.size_multiple},
                {"min_side", spec.min_side},
                {"max_side", spec.max_side}};
  }
  return {{"id", spec.name},
          {"object", "model"},
          {"created", 0},
          {"owned_by", "kiln"},
          {"description", spec.description},
          {"tasks", tasks},
          {"sizes", sizes},
          {"any_size", any_size},
          {"architecture", spec.architecture},
          {"format", spec.format == engine::ModelFormat::kDiffusers    ? "diffusers"
                     : spec.format == engine::ModelFormat::kSingleFile ? "single-file"
                                                                       : "torchscript"},
          {"dtype", spec.dtype},
          // Parameters as loaded; null on a gateway, which loads no networks.
          {"memory_bytes", entry.pipeline ? nlohmann::json(entry.pipeline->parameter_bytes())
                                          : nlohmann::json(nullptr)},
          {"max_batch", spec.max_batch},
          {"defaults",
           {{"steps", spec.defaults.steps},
            {"guidance_scale", spec.defaults.guidance_scale},
            {"image_guidance_scale", spec.defaults.image_guidance_scale},
            {"sampler", spec.defaults.sampler}}}};
}

}  // namespace

http::Response HandleListModels(const ApiContext& ctx, const http::Request&) {
  nlohmann::json data = nlohmann::json::array();
  for (const auto& e : ctx.models->entries()) {
    if (e.status.ok()) data.push_back(ModelJson(e));
  }
  return http::Response::Json(200, nlohmann::json{{"object", "list"}, {"data", data}}.dump());
}

http::Response HandleGetModel(const ApiContext& ctx, const std::string& id) {
  auto p = ctx.models->Find(id);
  if (!p.ok()) return ErrorResponse(p.status());
  for (const auto& e : ctx.models->entries()) {
    if (e.name == id) return http::Response::Json(200, ModelJson(e).dump());
  }
  return ErrorResponse(absl::NotFoundError(StrCat("model '", id, "' does not exist")));
}

}  // namespace kiln::api
