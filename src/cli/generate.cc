// `kiln generate`: one request through the engine, written as PNG files.
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "cli/commands.h"
#include "core/strings.h"
#include "engine/image_codec.h"
#include "engine/model_repository.h"
#include "engine/model_spec.h"
#include "engine/pipeline.h"

namespace kiln::cli {
namespace {

int Fail(const std::string& message) {
  fprintf(stderr, "kiln generate: %s\n", message.c_str());
  return 1;
}

std::string OutputPath(const std::string& out, int index, int n) {
  if (n == 1) return out;
  std::filesystem::path p(out);
  return (p.parent_path() / StrCat(p.stem().string(), "-", index, p.extension().string())).string();
}

}  // namespace

int RunGenerate(const GenerateOptions& o) {
  // LibTorch from Debian starts with one intra-op thread; 0 means use every core.
  at::set_num_threads(o.threads > 0
                          ? o.threads
                          : static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  auto found = engine::FindModels(o.models);
  if (!found.ok()) return Fail(std::string(found.status().message()));
  if (found->empty()) return Fail("no model in '" + o.models + "'");
  // Without --model, the first model in name order, as the server's default.
  const engine::ModelLocation* location = &found->front();
  if (!o.model.empty()) {
    auto it = std::find_if(found->begin(), found->end(),
                           [&](const engine::ModelLocation& m) { return m.name == o.model; });
    if (it == found->end()) return Fail("no model '" + o.model + "' in '" + o.models + "'");
    location = &*it;
  }
  auto spec = engine::LoadModelSpecAt(location->path);
  if (!spec.ok()) return Fail(std::string(spec.status().message()));
  auto pipeline = engine::Pipeline::Load(*spec, o.device);
  if (!pipeline.ok()) return Fail(std::string(pipeline.status().message()));

  engine::GenerationRequest r;
  r.prompt = o.prompt;
  r.negative_prompt = o.negative_prompt;
  r.steps = o.steps.value_or(spec->defaults.steps);
  r.guidance_scale = o.guidance.value_or(spec->defaults.guidance_scale);
  if (r.guidance_scale < 0 || r.guidance_scale > 30) return Fail("--guidance must be in 0..30");
  if (o.seed) {
    r.seed = *o.seed;
  } else {
    std::random_device rd;
    r.seed = ((static_cast<uint64_t>(rd()) << 32) | rd()) & ((uint64_t{1} << 53) - 1);
  }
  auto sampler = engine::ParseSamplerName(o.sampler.empty() ? spec->defaults.sampler : o.sampler);
  if (!sampler.ok()) return Fail(std::string(sampler.status().message()));
  r.sampler = *sampler;
  if (o.size.empty()) {
    r.size = spec->sizes.front();
  } else {
    auto size = ParseImageSize(o.size);
    if (!size.ok()) return Fail(std::string(size.status().message()));
    r.size = *size;
  }
  r.n = o.n;
  if (!o.image.empty()) {
    std::ifstream in(o.image, std::ios::binary);
    if (!in) return Fail("cannot read --image '" + o.image + "'");
    std::ostringstream bytes;
    bytes << in.rdbuf();
    auto img = engine::DecodeImage(bytes.str(), {});
    if (!img.ok()) return Fail("--image: " + std::string(img.status().message()));
    if (o.edit) {
      r.conditioning = engine::InstructEdit{
          std::move(*img), o.image_guidance.value_or(spec->defaults.image_guidance_scale)};
    } else {
      r.conditioning = engine::ImageToImage{std::move(*img), o.strength.value_or(0.75)};
    }
  } else if (o.edit || o.strength) {
    return Fail("--edit and --strength need --image");
  }

  auto images = (*pipeline)->Generate(r);
  if (!images.ok()) return Fail(std::string(images.status().message()));
  for (size_t i = 0; i < images->size(); ++i) {
    auto png =
        engine::EncodePng((*images)[i], engine::PngParameters(r, spec->name, static_cast<int>(i)));
    if (!png.ok()) return Fail(std::string(png.status().message()));
    const std::string path = OutputPath(o.output, static_cast<int>(i), r.n);
    std::ofstream out(path, std::ios::binary);
    out.write(png->data(), static_cast<std::streamsize>(png->size()));
    if (!out) return Fail("cannot write '" + path + "'");
    printf("%s seed=%llu\n", path.c_str(), static_cast<unsigned long long>(r.seed + i));
  }
  return 0;
}

}  // namespace kiln::cli
