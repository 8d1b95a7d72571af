// GenerationRequest: one fully resolved request to the engine (defaults already applied), and the
// checks that tie it to a model. Plain data; thread-compatible.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "core/strings.h"
#include "engine/image.h"
#include "engine/model_spec.h"
#include "engine/samplers/sampler_spec.h"

namespace kiln::engine {

// Text-to-image: the image condition is zeros.
struct TextToImage {};

// img2img: start from `image` noised to `strength` of the schedule (1.0 = pure noise).
struct ImageToImage {
  Image image;
  double strength = 0.75;
};

// Instruction edit (InstructPix2Pix): `image` conditions every step; the prompt is the
// instruction; `image_guidance_scale` weighs the image branch.
struct InstructEdit {
  Image image;
  double image_guidance_scale = 1.5;
};

using Conditioning = std::variant<TextToImage, ImageToImage, InstructEdit>;

struct GenerationRequest {
  std::string prompt;
  std::string negative_prompt;
  int steps = 20;
  double guidance_scale = 7.5;
  uint64_t seed = 0;  // image i uses seed + i
  SamplerSpec sampler;
  ImageSize size;
  int n = 1;
  Conditioning conditioning = TextToImage{};
};

// Denoiser rows per image: 1 without guidance, 2 with classifier-free guidance, 3 for an
// instruction edit (the same rule Pipeline::Start applies).
int RowsPerImage(const GenerationRequest& request);

// InvalidArgument naming `size` unless `model` draws `size` (one of its sizes, or within its
// any-size range); the message lists what it supports.
absl::Status CheckSizeForModel(const ImageSize& size, const ModelSpec& model);

// Returns InvalidArgument naming the field when `request` cannot run on `model`.
absl::Status CheckRequestForModel(const GenerationRequest& request, const ModelSpec& model);

// The generation parameters written into image `index`'s PNG text chunks: "parameters" in the
// A1111 text layout that tools already read, and "kiln" as JSON.
std::vector<std::pair<std::string, std::string>> PngParameters(const GenerationRequest& request,
                                                               const std::string& model_name,
                                                               int index);

}  // namespace kiln::engine
