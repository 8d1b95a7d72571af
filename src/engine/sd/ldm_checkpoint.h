// Single-file Stable Diffusion checkpoints with the original LDM key names (what A1111, ComfyUI
// and most model sites distribute): the architecture is read from the key layout and tensor
// shapes, with an optional LDM .yaml beside the file for what shapes cannot say (head counts,
// latent scale, noise schedule); the weights are handed to the native modules under diffusers'
// names, key by key, without copying the file. SD 1.x layouts are supported; SD 2.x and SDXL
// single files are recognised and refused with how to convert them. Stateless; thread-safe.
#pragma once

#include <filesystem>
#include <memory>

#include "absl/status/statusor.h"
#include "engine/model_spec.h"
#include "engine/sd/autoencoder_kl.h"
#include "engine/sd/clip_text_model.h"
#include "engine/sd/unet.h"
#include "engine/sd/weights.h"

namespace kiln::engine::sd {

// A regular file named *.safetensors.
bool IsSingleFileCheckpoint(const std::filesystem::path& path);

struct SingleFileLayout {
  std::shared_ptr<const SafetensorsFile> file;
  std::string architecture;  // "sd1"
  ClipTextConfig text;
  UNetConfig unet;
  VaeConfig vae;
  ScheduleSpec schedule;
};

// Reads the file's header (and `<stem>.yaml` beside it, when present) into the component
// configurations. `<stem>.kiln.yaml` may set `text_encoder_heads` (default: 64-wide heads, as
// CLIP ViT-L/14 has). Errors name the file and the key or tensor.
absl::StatusOr<SingleFileLayout> ReadSingleFile(const std::filesystem::path& file);

// Adds the component's tensors to `weights` under their diffusers names.
void AddTextEncoderWeights(const SingleFileLayout& layout, Weights& weights);
void AddUNetWeights(const SingleFileLayout& layout, Weights& weights);
void AddVaeWeights(const SingleFileLayout& layout, Weights& weights);

}  // namespace kiln::engine::sd
