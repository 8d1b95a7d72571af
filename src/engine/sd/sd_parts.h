// Stable Diffusion models served natively: a diffusers folder (model_index.json, unet/, vae/,
// text_encoder[_2]/, tokenizer[_2]/, scheduler/) read into a ModelSpec, and its networks loaded
// as the pipeline's ModelParts. Stateless functions; thread-safe.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model_parts.h"
#include "engine/model_spec.h"

namespace kiln::engine::sd {

// True when `dir` looks like a diffusers pipeline folder (it has model_index.json).
bool IsDiffusersFolder(const std::filesystem::path& dir);

// Reads the folder's JSON configs (no weights) into a ModelSpec named after the folder: the
// architecture (SD 1.x, 2.x, SDXL, InstructPix2Pix), sizes, latent scale, noise schedule and
// default sampler. Errors name the file and the key.
absl::StatusOr<ModelSpec> LoadDiffusersSpec(const std::filesystem::path& dir);

// Reads a single-file LDM checkpoint (engine/sd/ldm_checkpoint.h) into a ModelSpec named after
// the file's stem. CLIP's tokenizer comes from `<stem>.tokenizer/` or `clip-tokenizer/` beside it.
absl::StatusOr<ModelSpec> LoadSingleFileSpec(const std::filesystem::path& file);

// Loads the networks of `spec` (format kDiffusers or kSingleFile) onto `device`. Errors name the
// file and the tensor; tensors the architecture does not use are logged and, when `problems` is
// given, listed there.
absl::StatusOr<std::unique_ptr<ModelParts>> LoadStableDiffusionParts(
    const ModelSpec& spec, const torch::Device& device,
    std::vector<std::string>* problems = nullptr);

}  // namespace kiln::engine::sd
