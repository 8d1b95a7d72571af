// The CLIP BPE tokenizer on any text (prompts are user input): every id it gives is in the
// vocabulary, and Encode always gives max_length ids.
#include "engine/tokenizer/tokenizer.h"
#include "fuzz/fuzz_target.h"

namespace {
const kiln::engine::Tokenizer* Clip() {
  static auto tokenizer = [] {
    kiln::engine::TokenizerSpec spec;
    spec.type = kiln::engine::TokenizerType::kClipBpe;
    spec.vocab = kiln::fuzz::TokenizerDir() + "/vocab.json";
    spec.merges = kiln::fuzz::TokenizerDir() + "/merges.txt";
    return kiln::engine::Tokenizer::Create(spec);
  }();
  if (!tokenizer.ok()) std::abort();
  return tokenizer->get();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const kiln::engine::Tokenizer* clip = Clip();
  const std::vector<int64_t> ids = clip->Encode(kiln::fuzz::AsText(data, size));
  if (static_cast<int>(ids.size()) != clip->max_length()) std::abort();
  for (int64_t id : ids) {
    if (id < 0 || id >= clip->vocab_size()) std::abort();
  }
  return 0;
}
