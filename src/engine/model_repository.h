// ModelRepository: every model under a directory, loaded once at start-up: Kiln model folders
// (model.yaml), diffusers folders (model_index.json) and single-file .safetensors checkpoints. A
// model that fails to load (a .ckpt pickle among them) is kept as a broken entry with its error
// (reported by /readyz and the log) and does not affect the others. Immutable after Load();
// thread-safe.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/pipeline.h"

namespace kiln::engine {

// A model found in a models folder: its name (a folder's name, a checkpoint file's stem) and
// where it is.
struct ModelLocation {
  std::string name;
  std::filesystem::path path;
};

// Every model in `dir`, sorted by name: folders with a model.yaml or a model_index.json,
// .safetensors checkpoints and .ckpt pickles (listed so that the refusal is reported).
absl::StatusOr<std::vector<ModelLocation>> FindModels(const std::filesystem::path& dir);

// The description of the model at `path` (any kind FindModels lists); errors name the file.
absl::StatusOr<ModelSpec> LoadModelSpecAt(const std::filesystem::path& path);

struct ModelEntry {
  std::string name;
  absl::Status status;                 // OK when loaded
  ModelSpec spec;                      // valid when loaded
  std::unique_ptr<Pipeline> pipeline;  // set when loaded, unless only specs were loaded
  double load_seconds = 0;
};

class ModelRepository {
 public:
  // Loads every model in `dir` (see above). Fails only when `dir` itself
  // cannot be read; broken models are entries with an error. Without `pipelines`, only the
  // model descriptions are read (a gateway validates requests but runs no model).
  static absl::StatusOr<std::unique_ptr<ModelRepository>> Load(const std::filesystem::path& dir,
                                                               const std::string& device = "cpu",
                                                               bool pipelines = true);

  // The loaded model `name`: NotFound (unknown) or Unavailable (broken, with its error).
  absl::StatusOr<const ModelSpec*> Find(const std::string& name) const;

  // The loaded model's pipeline; FailedPrecondition when only specs were loaded.
  absl::StatusOr<Pipeline*> FindPipeline(const std::string& name) const;

  // The first loaded model in name order, used when a request names none.
  absl::StatusOr<const ModelSpec*> Default() const;

  const std::vector<ModelEntry>& entries() const { return entries_; }
  bool AllLoaded() const;

 private:
  std::vector<ModelEntry> entries_;  // sorted by name
};

}  // namespace kiln::engine
