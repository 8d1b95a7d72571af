// Tokenizer: prompt text -> fixed-length token ids for the text encoder. Implementations are
// immutable after creation and thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model_spec.h"

namespace kiln::engine {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Begin token, the text's tokens, end token: no truncation, no padding.
  virtual std::vector<int64_t> Tokenize(std::string_view text) const = 0;

  // Tokenize(), truncated to max_length (keeping the end token) and padded to max_length.
  std::vector<int64_t> Encode(std::string_view text) const;

  int max_length() const { return max_length_; }
  int64_t vocab_size() const { return vocab_size_; }

  static absl::StatusOr<std::unique_ptr<Tokenizer>> Create(const TokenizerSpec& spec);

 protected:
  Tokenizer(int max_length, int64_t eos_id, int64_t pad_id, int64_t vocab_size)
      : max_length_(max_length), eos_id_(eos_id), pad_id_(pad_id), vocab_size_(vocab_size) {}

 private:
  int max_length_;
  int64_t eos_id_;
  int64_t pad_id_;
  int64_t vocab_size_;
};

// A word-list tokenizer for small models (docs/model-repository.md, "The words tokenizer").
absl::StatusOr<std::unique_ptr<Tokenizer>> CreateWordsTokenizer(const TokenizerSpec& spec);

// CLIP's byte-level BPE over vocab.json + merges.txt.
absl::StatusOr<std::unique_ptr<Tokenizer>> CreateClipTokenizer(const TokenizerSpec& spec);

}  // namespace kiln::engine
