// POST /v1/images/generations and /v1/images/edits: validate, generate, answer as OpenAI does.
#include <chrono>

#include "api/errors.h"
#include "api/handlers.h"
#include "api/openai_params.h"
#include "core/logging.h"
#include "core/status_util.h"
#include "core/strings.h"
#include "engine/image_codec.h"
#include "http/multipart.h"
#include "nlohmann/json.hpp"

namespace kiln::api {
namespace {

absl::Status CheckBody(const http::Request& req, std::string_view media_type, size_t limit) {
  if (req.MediaType() != media_type) {
    return WithHttpStatus(
        WithField(absl::InvalidArgumentError(StrCat("Content-Type must be ", media_type, ", not '",
                                                    req.Header("content-type").value_or(""), "'")),
                  "content-type"),
        415);
  }
  if (req.body.size() > limit) {
    return WithHttpStatus(absl::InvalidArgumentError(StrCat("request body is ", req.body.size(),
                                                            " bytes; the limit is ", limit)),
                          413);
  }
  return absl::OkStatus();
}

http::Response Generate(const ImageRequest& request) {
  const auto start = std::chrono::steady_clock::now();
  log::Info(
      "generation started",
      {{"model", request.model}, {"n", request.generation.n}, {"steps", request.generation.steps}});
  auto images = request.pipeline->Generate(request.generation);
  if (!images.ok()) {
    log::Error("generation failed",
               {{"model", request.model}, {"error", std::string(images.status().message())}});
    return ErrorResponse(images.status());
  }
  nlohmann::json data = nlohmann::json::array();
  for (size_t i = 0; i < images->size(); ++i) {
    auto png = engine::EncodePng(
        (*images)[i],
        engine::PngParameters(request.generation, request.model, static_cast<int>(i)));
    if (!png.ok()) return ErrorResponse(png.status());
    data.push_back({{"b64_json", Base64Encode(*png)}, {"seed", request.generation.seed + i}});
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  log::Info("images generated", {{"model", request.model},
                                 {"n", request.generation.n},
                                 {"steps", request.generation.steps},
                                 {"size", request.generation.size.ToString()},
                                 {"seconds", seconds}});
  nlohmann::json body = {{"created", std::chrono::duration_cast<std::chrono::seconds>(
                                         std::chrono::system_clock::now().time_since_epoch())
                                         .count()},
                         {"data", std::move(data)},
                         {"model", request.model},
                         {"steps", request.generation.steps},
                         {"sampler", request.generation.sampler.Name()},
                         {"guidance_scale", request.generation.guidance_scale},
                         {"size", request.generation.size.ToString()}};
  return http::Response::Json(200, body.dump());
}

}  // namespace

http::Response HandleImageGenerations(const ApiContext& ctx, const http::Request& req) {
  if (auto s = CheckBody(req, "application/json", ctx.max_json_bytes); !s.ok()) {
    return ErrorResponse(s);
  }
  auto request = ParseGenerationsRequest(req.body, *ctx.models);
  if (!request.ok()) return ErrorResponse(request.status());
  return Generate(*request);
}

http::Response HandleImageEdits(const ApiContext& ctx, const http::Request& req) {
  if (auto s = CheckBody(req, "multipart/form-data", ctx.max_multipart_bytes); !s.ok()) {
    return ErrorResponse(s);
  }
  auto boundary = http::MultipartBoundary(req.Header("content-type").value_or(""));
  if (!boundary.ok()) return ErrorResponse(WithField(boundary.status(), "content-type"));
  auto parts = http::ParseMultipart(req.body, *boundary);
  if (!parts.ok()) return ErrorResponse(parts.status());
  auto request = ParseEditsRequest(*parts, *ctx.models);
  if (!request.ok()) return ErrorResponse(request.status());
  return Generate(*request);
}

}  // namespace kiln::api
