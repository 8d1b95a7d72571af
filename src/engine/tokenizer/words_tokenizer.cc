#include <fstream>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "core/strings.h"
#include "engine/tokenizer/tokenizer.h"

namespace kiln::engine {
namespace {

bool IsWordChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

char LowerAscii(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

class WordsTokenizer final : public Tokenizer {
 public:
  WordsTokenizer(int max_length, absl::flat_hash_map<std::string, int64_t> ids, int64_t bos,
                 int64_t eos, int64_t pad, int64_t unk)
      : Tokenizer(max_length, eos, pad, static_cast<int64_t>(ids.size())),
        ids_(std::move(ids)),
        bos_(bos),
        eos_(eos),
        unk_(unk) {}

  std::vector<int64_t> Tokenize(std::string_view text) const override {
    std::vector<int64_t> out{bos_};
    std::string word;
    auto flush = [&] {
      if (word.empty()) return;
      auto it = ids_.find(word);
      out.push_back(it == ids_.end() ? unk_ : it->second);
      word.clear();
    };
    for (char c : text) {
      if (IsWordChar(c)) {
        word.push_back(LowerAscii(c));
      } else {
        flush();
      }
    }
    flush();
    out.push_back(eos_);
    return out;
  }

 private:
  absl::flat_hash_map<std::string, int64_t> ids_;
  int64_t bos_, eos_, unk_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> CreateWordsTokenizer(const TokenizerSpec& spec) {
  std::ifstream in(spec.vocab);
  if (!in) return absl::NotFoundError(StrCat(spec.vocab.string(), ": cannot be read"));
  absl::flat_hash_map<std::string, int64_t> ids;
  std::string line;
  int64_t id = 0;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) {
      return absl::InvalidArgumentError(
          StrCat(spec.vocab.string(), ": line ", id + 1, " is empty"));
    }
    if (!ids.emplace(line, id).second) {
      return absl::InvalidArgumentError(
          StrCat(spec.vocab.string(), ": token '", line, "' appears twice"));
    }
    ++id;
  }
  int64_t special[4];
  const char* names[4] = {"<pad>", "<bos>", "<eos>", "<unk>"};
  for (int i = 0; i < 4; ++i) {
    auto it = ids.find(names[i]);
    if (it == ids.end()) {
      return absl::InvalidArgumentError(
          StrCat(spec.vocab.string(), ": missing the special token ", names[i]));
    }
    special[i] = it->second;
  }
  return std::unique_ptr<Tokenizer>(new WordsTokenizer(spec.max_length, std::move(ids), special[1],
                                                       special[2], special[0], special[3]));
}

}  // namespace kiln::engine
