// Model descriptions: the first byte picks model.yaml (Kiln's own) or a diffusers config.json
// (UNet, VAE, CLIP text encoder without or with a projection); the rest is the file.
#include <filesystem>

#include "core/json_parse.h"
#include "engine/model_spec.h"
#include "engine/sd/autoencoder_kl.h"
#include "engine/sd/clip_text_model.h"
#include "engine/sd/unet.h"
#include "fuzz/fuzz_target.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view text = kiln::fuzz::AsText(data + 1, size - 1);
  const std::filesystem::path dir = std::filesystem::temp_directory_path() / "kiln-fuzz-model";
  if (data[0] % 5 == 0) {
    (void)kiln::engine::ParseModelSpec(text, dir);
    return 0;
  }
  auto json = kiln::ParseJsonWithLimits(text, "config.json");
  if (!json.ok()) return 0;
  const std::filesystem::path file = dir / "config.json";
  switch (data[0] % 5) {
    case 1:
      (void)kiln::engine::sd::ParseUNetConfig(*json, file);
      break;
    case 2:
      (void)kiln::engine::sd::ParseVaeConfig(*json, file);
      break;
    default:  // 3: SD's text encoder; 4: SDXL's second one, with its projection
      (void)kiln::engine::sd::ParseClipTextConfig(*json, file, data[0] % 5 == 4);
      break;
  }
  return 0;
}
