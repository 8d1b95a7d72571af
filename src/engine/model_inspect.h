// InspectModel: what Kiln sees in a model folder or checkpoint file (`kiln models inspect`): its
// description, each component's weight files, tensor and parameter counts and dtypes, and the
// problems a load finds. Stateless; thread-safe.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "engine/model_spec.h"

namespace kiln::engine {

struct ComponentReport {
  std::string name;  // text_encoder, unet, vae, ... (TorchScript: the .pt file)
  std::vector<std::string> files;
  int64_t tensors = 0;
  int64_t parameters = 0;
  int64_t bytes = 0;
  std::map<std::string, int64_t> dtypes;  // stored dtype -> tensors
};

struct ModelReport {
  std::string name;
  std::filesystem::path path;
  absl::Status status;  // reading the description (and loading, when asked)
  ModelSpec spec;       // valid when the description was read
  std::vector<ComponentReport> components;
  bool loaded = false;  // the networks were built and every tensor checked
  double load_seconds = 0;
  std::vector<std::string> problems;  // e.g. tensors the architecture does not use
};

// Reads `path` (a model folder or checkpoint file); with `load`, also builds the networks on the
// CPU, which checks every tensor's presence and shape.
ModelReport InspectModel(const std::filesystem::path& path, bool load);

}  // namespace kiln::engine
