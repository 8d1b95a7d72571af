#include "engine/model_inspect.h"

#include <chrono>

#include "core/strings.h"
#include "engine/model_repository.h"
#include "engine/pipeline.h"
#include "engine/sd/safetensors.h"
#include "engine/sd/sd_parts.h"

namespace kiln::engine {
namespace {

namespace fs = std::filesystem;

// Adds the tensors of `file` whose names start with `prefix` to `c`.
void Count(const sd::SafetensorsFile& file, std::string_view prefix, ComponentReport& c) {
  for (const auto& [name, info] : file.tensors()) {
    if (name.compare(0, prefix.size(), prefix) != 0) continue;
    int64_t numel = 1;
    for (int64_t d : info.shape) numel *= d;
    ++c.tensors;
    c.parameters += numel;
    c.bytes += static_cast<int64_t>(info.end - info.begin);
    ++c.dtypes[info.dtype_name];
  }
}

void DiffusersComponents(const fs::path& dir, ModelReport& r) {
  std::vector<fs::path> parts;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.is_directory()) parts.push_back(e.path());
  }
  std::sort(parts.begin(), parts.end());
  for (const fs::path& part : parts) {
    ComponentReport c;
    c.name = part.filename().string();
    for (const auto& e : fs::directory_iterator(part, ec)) {
      const fs::path& p = e.path();
      const std::string ext = p.extension().string();
      if (ext == ".safetensors") {
        auto file = sd::SafetensorsFile::Open(p);
        if (!file.ok()) {
          r.problems.push_back(std::string(file.status().message()));
          continue;
        }
        c.files.push_back(p.filename().string());
        Count(**file, "", c);
      } else if (ext == ".bin" || ext == ".ckpt" || ext == ".pt") {
        r.problems.push_back(StrCat(p.string(), ": a pickle; Kiln reads only .safetensors"));
      }
    }
    std::sort(c.files.begin(), c.files.end());
    if (!c.files.empty()) r.components.push_back(std::move(c));
  }
}

void SingleFileComponents(const fs::path& path, ModelReport& r) {
  auto file = sd::SafetensorsFile::Open(path);
  if (!file.ok()) return;  // the description's error already says why
  const std::pair<const char*, const char*> prefixes[] = {
      {"text_encoder", "cond_stage_model."},
      {"unet", "model.diffusion_model."},
      {"vae", "first_stage_model."},
  };
  int64_t known = 0;
  for (const auto& [name, prefix] : prefixes) {
    ComponentReport c;
    c.name = name;
    c.files.push_back(path.filename().string());
    Count(**file, prefix, c);
    known += c.tensors;
    if (c.tensors > 0) r.components.push_back(std::move(c));
  }
  const int64_t other = static_cast<int64_t>((*file)->tensors().size()) - known;
  if (other > 0) {
    r.problems.push_back(StrCat(other,
                                " tensors outside the UNet, VAE and text encoder "
                                "(EMA weights, other heads) are not used"));
  }
}

void TorchScriptComponents(const ModelSpec& spec, ModelReport& r) {
  for (const auto& [name, path] :
       std::vector<std::pair<std::string, fs::path>>{{"text_encoder", spec.text_encoder},
                                                     {"denoiser", spec.denoiser},
                                                     {"decoder", spec.decoder},
                                                     {"encoder", spec.encoder}}) {
    if (path.empty()) continue;
    ComponentReport c;
    c.name = name;
    c.files.push_back(path.filename().string());
    std::error_code ec;
    c.bytes = static_cast<int64_t>(fs::file_size(path, ec));
    r.components.push_back(std::move(c));
  }
}

}  // namespace

ModelReport InspectModel(const fs::path& path, bool load) {
  ModelReport r;
  r.path = path;
  r.name = fs::is_directory(path) ? path.filename().string() : path.stem().string();
  auto spec = LoadModelSpecAt(path);
  if (!spec.ok()) {
    r.status = spec.status();
    if (fs::is_directory(path) && sd::IsDiffusersFolder(path)) DiffusersComponents(path, r);
    return r;
  }
  r.spec = *spec;
  switch (spec->format) {
    case ModelFormat::kDiffusers:
      DiffusersComponents(path, r);
      break;
    case ModelFormat::kSingleFile:
      SingleFileComponents(path, r);
      break;
    case ModelFormat::kTorchScript:
      TorchScriptComponents(*spec, r);
      break;
  }
  if (!load) return r;
  const auto start = std::chrono::steady_clock::now();
  if (spec->format == ModelFormat::kTorchScript) {
    auto pipeline = Pipeline::Load(*spec);
    r.status = pipeline.status();
  } else {
    r.status = sd::LoadStableDiffusionParts(*spec, torch::kCPU, &r.problems).status();
  }
  r.loaded = r.status.ok();
  r.load_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

}  // namespace kiln::engine
