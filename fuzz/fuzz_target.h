// What every fuzz target in fuzz/ shares: the libFuzzer entry point they define, and where they
// find the data some of them need (the test models, a CLIP tokenizer). Each target is built
// twice: with libFuzzer and the sanitizers (`make fuzz`, clang), and as a replay program that
// runs the committed corpus and bounded mutations of it (CTest, every `make test`).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "engine/model_repository.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace kiln::fuzz {

inline std::string_view AsText(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// $KILN_TEST_MODELS, else the build's test-models folder.
inline std::string TestModelsDir() {
  const char* dir = std::getenv("KILN_TEST_MODELS");
  return dir && *dir ? dir : std::string(KILN_BINARY_DIR) + "/test-models";
}

// The test models' descriptions (no pipelines), loaded once.
inline const engine::ModelRepository& TestModels() {
  static auto repo = engine::ModelRepository::Load(TestModelsDir(), "cpu", /*pipelines=*/false);
  if (!repo.ok()) std::abort();
  return **repo;
}

// A folder with a CLIP vocab.json and merges.txt: $KILN_FUZZ_TOKENIZER, else the tiny SD 1.5
// reference model's beside the repository.
inline std::string TokenizerDir() {
  const char* dir = std::getenv("KILN_FUZZ_TOKENIZER");
  return dir && *dir ? dir
                     : std::string(KILN_SOURCE_DIR) +
                           "/../shared/testdata/sd-reference/sd15-tiny/tokenizer";
}

}  // namespace kiln::fuzz
