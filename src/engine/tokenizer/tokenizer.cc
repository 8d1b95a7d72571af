#include "engine/tokenizer/tokenizer.h"

namespace kiln::engine {

std::vector<int64_t> Tokenizer::Encode(std::string_view text) const {
  std::vector<int64_t> ids = Tokenize(text);
  if (static_cast<int>(ids.size()) > max_length_) {
    ids.resize(max_length_);
    ids.back() = eos_id_;
  }
  ids.resize(max_length_, pad_id_);
  return ids;
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Create(const TokenizerSpec& spec) {
  switch (spec.type) {
    case TokenizerType::kWords:
      return CreateWordsTokenizer(spec);
    case TokenizerType::kClipBpe:
      return CreateClipTokenizer(spec);
  }
  return absl::InvalidArgumentError("unknown tokenizer type");
}

}  // namespace kiln::engine
