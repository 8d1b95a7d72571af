// ConfigReader: typed reads of a diffusers/transformers config.json with defaults for absent
// keys; the first wrong type is kept as an error naming the file and the key.
// Not thread-safe: one reader per file.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace kiln::engine::sd {

class ConfigReader {
 public:
  ConfigReader(const nlohmann::json& config, std::filesystem::path file)
      : config_(config), file_(std::move(file)) {}

  // Absent or null keys give the default.
  int64_t Int(const std::string& key, int64_t def);
  double Double(const std::string& key, double def);
  bool Bool(const std::string& key, bool def);
  std::string String(const std::string& key, const std::string& def);
  std::vector<std::string> Strings(const std::string& key);
  // An int or a list of ints; an int repeats `n` times.
  std::vector<int64_t> IntOrList(const std::string& key, int64_t def, size_t n);
  bool Has(const std::string& key) const;

  void Fail(const std::string& key, const std::string& why);
  absl::Status status() const { return status_; }

 private:
  const nlohmann::json* Find(const std::string& key) const;
  const nlohmann::json& config_;
  std::filesystem::path file_;
  absl::Status status_;
};

// Reads and parses a JSON file (size-limited); errors name the file.
absl::StatusOr<nlohmann::json> ReadJsonFile(const std::filesystem::path& file);

}  // namespace kiln::engine::sd
