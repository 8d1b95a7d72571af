#include "engine/model_repository.h"

#include <algorithm>
#include <chrono>

#include "core/logging.h"
#include "core/status_util.h"
#include "core/strings.h"
#include "engine/sd/ldm_checkpoint.h"
#include "engine/sd/sd_parts.h"

namespace kiln::engine {

absl::StatusOr<std::vector<ModelLocation>> FindModels(const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    return absl::NotFoundError(StrCat("models directory '", dir.string(), "' does not exist"));
  }
  std::vector<ModelLocation> found;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const fs::path& p = e.path();
    if (e.is_directory() && (fs::exists(p / "model.yaml") || sd::IsDiffusersFolder(p))) {
      found.push_back({p.filename().string(), p});
    } else if (sd::IsSingleFileCheckpoint(p) || (e.is_regular_file() && p.extension() == ".ckpt")) {
      found.push_back({p.stem().string(), p});
    }
  }
  if (ec) return absl::UnavailableError(StrCat("cannot list '", dir.string(), "': ", ec.message()));
  std::sort(found.begin(), found.end(),
            [](const ModelLocation& a, const ModelLocation& b) { return a.name < b.name; });
  return found;
}

absl::StatusOr<ModelSpec> LoadModelSpecAt(const std::filesystem::path& path) {
  if (!std::filesystem::is_directory(path)) return sd::LoadSingleFileSpec(path);
  if (std::filesystem::exists(path / "model.yaml")) return LoadModelSpec(path);
  return sd::LoadDiffusersSpec(path);
}

absl::StatusOr<std::unique_ptr<ModelRepository>> ModelRepository::Load(
    const std::filesystem::path& dir, const std::string& device, bool pipelines) {
  KILN_ASSIGN_OR_RETURN(std::vector<ModelLocation> found, FindModels(dir));
  auto repo = std::unique_ptr<ModelRepository>(new ModelRepository());
  for (const ModelLocation& location : found) {
    ModelEntry entry;
    entry.name = location.name;
    const auto start = std::chrono::steady_clock::now();
    auto spec = LoadModelSpecAt(location.path);
    if (spec.ok()) {
      entry.spec = *spec;
      if (pipelines) {
        auto pipeline = Pipeline::Load(*spec, device);
        if (pipeline.ok()) {
          entry.pipeline = std::move(*pipeline);
        } else {
          entry.status = pipeline.status();
        }
      }
    } else {
      entry.status = spec.status();
    }
    entry.load_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (entry.status.ok()) {
      log::Info("model loaded", {{"model", entry.name}, {"seconds", entry.load_seconds}});
    } else {
      log::Error("model failed to load",
                 {{"model", entry.name}, {"error", std::string(entry.status.message())}});
    }
    repo->entries_.push_back(std::move(entry));
  }
  return repo;
}

absl::StatusOr<const ModelSpec*> ModelRepository::Find(const std::string& name) const {
  for (const auto& e : entries_) {
    if (e.name != name) continue;
    if (!e.status.ok()) {
      return absl::UnavailableError(
          StrCat("model '", name, "' failed to load: ", e.status.message()));
    }
    return &e.spec;
  }
  return WithField(absl::NotFoundError(StrCat("model '", name, "' does not exist")), "model");
}

absl::StatusOr<Pipeline*> ModelRepository::FindPipeline(const std::string& name) const {
  KILN_RETURN_IF_ERROR(Find(name).status());
  for (const auto& e : entries_) {
    if (e.name == name && e.pipeline) return e.pipeline.get();
  }
  return absl::FailedPreconditionError(StrCat("model '", name, "' has no pipeline loaded here"));
}

absl::StatusOr<const ModelSpec*> ModelRepository::Default() const {
  for (const auto& e : entries_) {
    if (e.status.ok()) return &e.spec;
  }
  return absl::UnavailableError("no model is loaded");
}

bool ModelRepository::AllLoaded() const {
  if (entries_.empty()) return false;
  return std::all_of(entries_.begin(), entries_.end(),
                     [](const ModelEntry& e) { return e.status.ok(); });
}

}  // namespace kiln::engine
