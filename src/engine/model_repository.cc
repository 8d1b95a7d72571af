#include "engine/model_repository.h"

#include <algorithm>
#include <chrono>

#include "core/logging.h"
#include "core/status_util.h"
#include "core/strings.h"
#include "engine/sd/ldm_checkpoint.h"
#include "engine/sd/sd_parts.h"

namespace kiln::engine {

absl::StatusOr<std::unique_ptr<ModelRepository>> ModelRepository::Load(
    const std::filesystem::path& dir, const std::string& device, bool pipelines) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    return absl::NotFoundError(StrCat("models directory '", dir.string(), "' does not exist"));
  }
  std::vector<std::filesystem::path> folders;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    if (e.is_directory() &&
        (std::filesystem::exists(e.path() / "model.yaml") || sd::IsDiffusersFolder(e.path()))) {
      folders.push_back(e.path());
    }
  }
  if (ec) return absl::UnavailableError(StrCat("cannot list '", dir.string(), "': ", ec.message()));
  std::sort(folders.begin(), folders.end());
  auto repo = std::unique_ptr<ModelRepository>(new ModelRepository());
  for (const auto& folder : folders) {
    ModelEntry entry;
    entry.name =
        sd::IsSingleFileCheckpoint(folder) ? folder.stem().string() : folder.filename().string();
    const auto start = std::chrono::steady_clock::now();
    auto spec = sd::IsSingleFileCheckpoint(folder)               ? sd::LoadSingleFileSpec(folder)
                : std::filesystem::exists(folder / "model.yaml") ? LoadModelSpec(folder)
                                                                 : sd::LoadDiffusersSpec(folder);
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
