// AUTOMATIC1111's /sdapi/v1 request bodies (txt2img, img2img) read into Kiln requests, and the
// names and shapes A1111 clients expect back (samplers, schedulers, info). Every A1111 field is
// known here: the ones Kiln honours are applied, the ones A1111 itself ignores in that request
// are accepted, and the ones that would change the picture in a way Kiln cannot (hires fix,
// masks, scripts, variation seeds...) are refused with a 400 that names them. Thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model_repository.h"
#include "engine/request.h"
#include "nlohmann/json.hpp"

namespace kiln::api {

// Whether the body is for /sdapi/v1/txt2img or /sdapi/v1/img2img.
enum class A1111Route { kTxt2Img, kImg2Img };

// A validated A1111 request: `n_iter` iterations of `generation` (n = batch_size images each);
// iteration k starts at seed generation.seed + k * batch_size, as A1111 numbers its seeds.
struct A1111Request {
  const engine::ModelSpec* spec = nullptr;
  engine::GenerationRequest generation;
  int batch_size = 1;
  int n_iter = 1;
  int64_t subseed = 0;          // reported only (variation seeds are refused)
  std::string scheduler_label;  // "Automatic", "Uniform" or "Karras", as reported
  bool send_images = true;
  bool save_images = false;
  std::string task_id;  // force_task_id, or empty
  // The request as A1111 echoes it back in `parameters`: what was sent, with the values Kiln
  // resolved (model defaults) filled in, and without the input images unless asked for.
  nlohmann::json parameters;
};

inline constexpr int kMaxA1111Images = 32;  // batch_size x n_iter

// `default_model`: the checkpoint chosen through /sdapi/v1/options ("" = the repository's).
absl::StatusOr<A1111Request> ParseA1111Request(A1111Route route, std::string_view json_body,
                                               const engine::ModelRepository& models,
                                               const std::string& default_model);

// The loaded model an A1111 checkpoint name means: its name, its title, or either with A1111's
// decorations (" [hash]", a ".safetensors"/".ckpt" extension). NotFound names `field`.
absl::StatusOr<const engine::ModelSpec*> ResolveA1111Checkpoint(
    std::string_view name, const engine::ModelRepository& models, std::string_view field);

// A1111's display name for a sampler ("Euler a", "DPM++ 2M"), without the schedule.
std::string A1111SamplerName(const engine::SamplerSpec& sampler);
// GET /sdapi/v1/samplers and /sdapi/v1/schedulers: what Kiln can run, in A1111's shapes.
nlohmann::json A1111Samplers();
nlohmann::json A1111Schedulers();

// A1111's infotext for image `index` ("prompt\nNegative prompt: ...\nSteps: 20, Sampler: ...").
std::string A1111Infotext(const A1111Request& request, int index);
// The `info` object of a txt2img/img2img answer for the images with the given indices (the
// images of interrupted or skipped iterations are missing), as A1111 fills it.
nlohmann::json A1111Info(const A1111Request& request, const std::vector<int>& indices,
                         int64_t job_timestamp_unix);

}  // namespace kiln::api
