// Test support: the diffusers reference fixtures in ../shared/testdata/sd-reference (see its
// README): the manifest, each case's stored tensors, and comparison within the manifest's
// tolerances. Not thread-safe; tests only.
#pragma once

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>

#include "engine/sd/config_json.h"
#include "engine/sd/safetensors.h"
#include "nlohmann/json.hpp"

namespace kiln::engine::sd::testing {

inline std::filesystem::path ReferenceDir() {
  return std::filesystem::path(KILN_SOURCE_DIR) / ".." / "shared" / "testdata" / "sd-reference";
}

#define KILN_REQUIRE_SD_REFERENCE()                                                              \
  if (!std::filesystem::exists(::kiln::engine::sd::testing::ReferenceDir() / "manifest.json")) { \
    GTEST_SKIP() << "../shared/testdata/sd-reference is absent (it is not part of the "          \
                    "repository)";                                                               \
  }

// One case of the manifest with its stored tensors.
class ReferenceCase {
 public:
  explicit ReferenceCase(const std::string& id) {
    // Python's json wrote one -Infinity (a scheduler's lambda_min_clipped), which JSON lacks.
    std::ifstream in(ReferenceDir() / "manifest.json");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    for (size_t at; (at = text.find("-Infinity")) != std::string::npos;) {
      text.replace(at, 9, "-1e308");
    }
    const nlohmann::json manifest = nlohmann::json::parse(text);
    for (const auto& c : manifest["cases"]) {
      if (c["id"] == id) json_ = c;
    }
    if (json_.is_null()) throw std::runtime_error("no case " + id);
    auto file = SafetensorsFile::Open(ReferenceDir() / json_["file"].get<std::string>());
    if (!file.ok()) throw std::runtime_error(std::string(file.status().message()));
    file_ = *file;
  }

  const nlohmann::json& json() const { return json_; }
  std::filesystem::path model_dir() const {
    return ReferenceDir() / json_["model"].get<std::string>();
  }
  torch::Tensor Get(const std::string& name) const {
    auto t = file_->Get(name);
    if (!t.ok()) throw std::runtime_error(std::string(t.status().message()));
    return t->clone();
  }
  bool Has(const std::string& name) const { return file_->contains(name); }
  // The manifest's suggested tolerance for `output`, or for the case's first listed output.
  double Atol(const std::string& output) const {
    const auto& tol = json_["tolerance"];
    if (tol.contains(output)) return tol[output]["suggested_atol"].get<double>();
    return tol.begin().value()["suggested_atol"].get<double>();
  }

 private:
  nlohmann::json json_;
  std::shared_ptr<const SafetensorsFile> file_;
};

// Expects |got - want| <= atol everywhere; prints the largest difference.
inline void ExpectClose(const torch::Tensor& got, const torch::Tensor& want, double atol,
                        const std::string& what) {
  ASSERT_EQ(got.sizes(), want.sizes()) << what;
  const double diff =
      (got.to(torch::kFloat64) - want.to(torch::kFloat64)).abs().max().item<double>();
  EXPECT_LE(diff, atol) << what << ": max |kiln - diffusers| = " << diff;
  char text[32];
  std::snprintf(text, sizeof text, "%.3g", diff);
  ::testing::Test::RecordProperty(what, text);
}

}  // namespace kiln::engine::sd::testing
