// CLIP byte-level BPE, written from the description of the reference tokenizer: clean the text,
// split it by CLIP's pre-tokenisation pattern, map each piece's UTF-8 bytes to printable
// characters, and merge adjacent symbols by the lowest merge rank until none applies.
#include <clocale>
#include <cwctype>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "core/strings.h"
#include "engine/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"

namespace kiln::engine {
namespace {

constexpr std::string_view kStartToken = "<|startoftext|>";
constexpr std::string_view kEndToken = "<|endoftext|>";

// ---- UTF-8 -------------------------------------------------------------------------------

std::u32string DecodeUtf8(std::string_view s) {
  std::u32string out;
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = s[i];
    char32_t cp = 0xFFFD;
    size_t len = 1;
    if (c < 0x80) {
      cp = c;
    } else if ((c >> 5) == 0x6 && i + 1 < s.size()) {
      cp = ((c & 0x1F) << 6) | (s[i + 1] & 0x3F);
      len = 2;
    } else if ((c >> 4) == 0xE && i + 2 < s.size()) {
      cp = ((c & 0x0F) << 12) | ((s[i + 1] & 0x3F) << 6) | (s[i + 2] & 0x3F);
      len = 3;
    } else if ((c >> 3) == 0x1E && i + 3 < s.size()) {
      cp = ((c & 0x07) << 18) | ((s[i + 1] & 0x3F) << 12) | ((s[i + 2] & 0x3F) << 6) |
           (s[i + 3] & 0x3F);
      len = 4;
    }
    out.push_back(cp);
    i += len;
  }
  return out;
}

void AppendUtf8(char32_t cp, std::string& out) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string EncodeUtf8(std::u32string_view s) {
  std::string out;
  for (char32_t cp : s) AppendUtf8(cp, out);
  return out;
}

// ---- Unicode classes, from glibc's C.UTF-8 tables (with an ASCII fallback) ---------------

locale_t Utf8Locale() {
  static locale_t loc = [] {
    locale_t l = newlocale(LC_CTYPE_MASK, "C.UTF-8", static_cast<locale_t>(0));
    if (l == static_cast<locale_t>(0)) l = newlocale(LC_CTYPE_MASK, "C.utf8", l);
    return l;
  }();
  return loc;
}

bool IsSpace(char32_t c) {
  if (c < 0x80) return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1C && c <= 0x1F);
  if (c == 0x85 || c == 0xA0) return true;
  locale_t loc = Utf8Locale();
  return loc != static_cast<locale_t>(0) && iswspace_l(static_cast<wint_t>(c), loc);
}

bool IsNumber(char32_t c) {
  if (c < 0x80) return c >= '0' && c <= '9';
  // Latin-1 superscripts and vulgar fractions (category No), common in prompts.
  if (c == 0xB2 || c == 0xB3 || c == 0xB9 || (c >= 0xBC && c <= 0xBE)) return true;
  locale_t loc = Utf8Locale();
  return loc != static_cast<locale_t>(0) && iswdigit_l(static_cast<wint_t>(c), loc);
}

bool IsLetter(char32_t c) {
  if (c < 0x80) return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
  if (IsNumber(c)) return false;
  locale_t loc = Utf8Locale();
  if (loc == static_cast<locale_t>(0)) return true;  // best effort without the tables
  return iswalpha_l(static_cast<wint_t>(c), loc);
}

char32_t ToLower(char32_t c) {
  if (c < 0x80) return (c >= 'A' && c <= 'Z') ? c - 'A' + 'a' : c;
  locale_t loc = Utf8Locale();
  if (loc == static_cast<locale_t>(0)) return c;
  return static_cast<char32_t>(towlower_l(static_cast<wint_t>(c), loc));
}

// ---- Text cleaning -----------------------------------------------------------------------

// HTML character references: the named ones prompts meet, and numeric ones.
std::u32string UnescapeHtml(std::u32string_view s) {
  static const absl::flat_hash_map<std::u32string, char32_t> kNamed = {
      {U"amp", U'&'},      {U"lt", U'<'},      {U"gt", U'>'},     {U"quot", U'"'},
      {U"apos", U'\''},    {U"nbsp", 0xA0},    {U"copy", 0xA9},   {U"reg", 0xAE},
      {U"hellip", 0x2026}, {U"mdash", 0x2014}, {U"ndash", 0x2013}};
  std::u32string out;
  size_t i = 0;
  while (i < s.size()) {
    if (s[i] == U'&') {
      size_t semi = s.find(U';', i + 1);
      if (semi != std::u32string_view::npos && semi - i <= 12) {
        std::u32string_view name = s.substr(i + 1, semi - i - 1);
        if (name.size() > 1 && name[0] == U'#') {
          const bool hex = name[1] == U'x' || name[1] == U'X';
          char32_t value = 0;
          bool ok = name.size() > (hex ? 2u : 1u);
          for (size_t k = hex ? 2 : 1; ok && k < name.size(); ++k) {
            const char32_t d = name[k];
            int digit = -1;
            if (d >= U'0' && d <= U'9') digit = d - U'0';
            if (hex && d >= U'a' && d <= U'f') digit = d - U'a' + 10;
            if (hex && d >= U'A' && d <= U'F') digit = d - U'A' + 10;
            if (digit < 0 || value > 0x10FFFF) ok = false;
            value = value * (hex ? 16 : 10) + digit;
          }
          if (ok && value > 0 && value <= 0x10FFFF) {
            out.push_back(value);
            i = semi + 1;
            continue;
          }
        } else if (auto it = kNamed.find(std::u32string(name)); it != kNamed.end()) {
          out.push_back(it->second);
          i = semi + 1;
          continue;
        }
      }
    }
    out.push_back(s[i++]);
  }
  return out;
}

std::u32string CleanText(std::string_view text) {
  std::u32string s = UnescapeHtml(UnescapeHtml(DecodeUtf8(text)));
  std::u32string out;
  bool pending_space = false;
  for (char32_t c : s) {
    if (IsSpace(c)) {
      pending_space = !out.empty();
      continue;
    }
    if (pending_space) out.push_back(U' ');
    pending_space = false;
    out.push_back(ToLower(c));
  }
  return out;
}

// ---- Pre-tokenisation: CLIP's pattern, alternatives tried in order at each position -------

std::vector<std::u32string> PreTokenize(const std::u32string& s) {
  static const std::u32string kStart = DecodeUtf8(kStartToken);
  static const std::u32string kEnd = DecodeUtf8(kEndToken);
  static const std::u32string kContractions[] = {U"'s", U"'t",  U"'re", U"'ve",
                                                 U"'m", U"'ll", U"'d"};
  std::vector<std::u32string> out;
  size_t i = 0;
  const size_t n = s.size();
  auto starts_with = [&](const std::u32string& lit) { return s.compare(i, lit.size(), lit) == 0; };
  while (i < n) {
    if (IsSpace(s[i])) {
      ++i;
      continue;
    }
    size_t len = 0;
    if (starts_with(kStart)) {
      len = kStart.size();
    } else if (starts_with(kEnd)) {
      len = kEnd.size();
    } else {
      for (const auto& c : kContractions) {
        if (starts_with(c)) {
          len = c.size();
          break;
        }
      }
    }
    if (len == 0) {
      if (IsLetter(s[i])) {
        while (i + len < n && IsLetter(s[i + len])) ++len;
      } else if (IsNumber(s[i])) {
        len = 1;
      } else {
        while (i + len < n && !IsSpace(s[i + len]) && !IsLetter(s[i + len]) &&
               !IsNumber(s[i + len])) {
          ++len;
        }
      }
    }
    out.push_back(s.substr(i, len));
    i += len;
  }
  return out;
}

// ---- BPE ---------------------------------------------------------------------------------

class ClipTokenizer final : public Tokenizer {
 public:
  ClipTokenizer(int max_length, int64_t bos, int64_t eos, int64_t pad,
                absl::flat_hash_map<std::string, int64_t> vocab,
                absl::flat_hash_map<std::string, int> ranks)
      : Tokenizer(max_length, eos, pad, static_cast<int64_t>(vocab.size())),
        bos_(bos),
        eos_(eos),
        vocab_(std::move(vocab)),
        ranks_(std::move(ranks)) {
    // CLIP's byte -> printable character table: printable Latin-1 bytes map to themselves,
    // the rest to 256 + k in order.
    int extra = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      std::string utf8;
      AppendUtf8(printable ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + extra++), utf8);
      byte_symbols_[b] = utf8;
    }
  }

  std::vector<int64_t> Tokenize(std::string_view text) const override {
    std::vector<int64_t> ids{bos_};
    for (const std::u32string& piece : PreTokenize(CleanText(text))) {
      const std::string utf8 = EncodeUtf8(piece);
      if (utf8 == kStartToken || utf8 == kEndToken) {
        ids.push_back(utf8 == kStartToken ? bos_ : eos_);
        continue;
      }
      for (const std::string& sym : Bpe(utf8)) {
        auto it = vocab_.find(sym);
        if (it != vocab_.end()) ids.push_back(it->second);
      }
    }
    ids.push_back(eos_);
    return ids;
  }

 private:
  std::vector<std::string> Bpe(const std::string& utf8) const {
    std::vector<std::string> word;
    for (unsigned char b : utf8) word.push_back(byte_symbols_[b]);
    if (word.empty()) return word;
    word.back() += "</w>";
    while (word.size() > 1) {
      int best_rank = std::numeric_limits<int>::max();
      size_t best = 0;
      for (size_t k = 0; k + 1 < word.size(); ++k) {
        auto it = ranks_.find(StrCat(word[k], " ", word[k + 1]));
        if (it != ranks_.end() && it->second < best_rank) {
          best_rank = it->second;
          best = k;
        }
      }
      if (best_rank == std::numeric_limits<int>::max()) break;
      // Merge every occurrence of the best pair, left to right.
      const std::string a = word[best], b = word[best + 1];
      std::vector<std::string> merged;
      for (size_t k = 0; k < word.size();) {
        if (k + 1 < word.size() && word[k] == a && word[k + 1] == b) {
          merged.push_back(a + b);
          k += 2;
        } else {
          merged.push_back(word[k++]);
        }
      }
      word = std::move(merged);
    }
    return word;
  }

  int64_t bos_, eos_;
  absl::flat_hash_map<std::string, int64_t> vocab_;
  absl::flat_hash_map<std::string, int> ranks_;
  std::string byte_symbols_[256];
};

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> CreateClipTokenizer(const TokenizerSpec& spec) {
  absl::flat_hash_map<std::string, int64_t> vocab;
  {
    std::ifstream in(spec.vocab, std::ios::binary);
    if (!in) return absl::NotFoundError(StrCat(spec.vocab.string(), ": cannot be read"));
    try {
      nlohmann::json j = nlohmann::json::parse(in);
      if (!j.is_object()) throw std::runtime_error("not a JSON object of token -> id");
      for (const auto& [token, id] : j.items()) {
        if (!id.is_number_integer())
          throw std::runtime_error("id of '" + token + "' is not an integer");
        vocab.emplace(token, id.get<int64_t>());
      }
    } catch (const std::exception& e) {
      return absl::InvalidArgumentError(StrCat(spec.vocab.string(), ": ", e.what()));
    }
  }
  absl::flat_hash_map<std::string, int> ranks;
  {
    std::ifstream in(spec.merges, std::ios::binary);
    if (!in) return absl::NotFoundError(StrCat(spec.merges.string(), ": cannot be read"));
    std::string line;
    int line_no = 0;
    while (std::getline(in, line)) {
      ++line_no;
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.empty() || (line_no == 1 && line.starts_with("#version"))) continue;
      const size_t space = line.find(' ');
      if (space == std::string::npos || space == 0 || space + 1 == line.size() ||
          line.find(' ', space + 1) != std::string::npos) {
        return absl::InvalidArgumentError(
            StrCat(spec.merges.string(), ": line ", line_no, " is not a pair 'a b'"));
      }
      ranks.emplace(line, static_cast<int>(ranks.size()));
    }
  }
  auto bos = vocab.find(std::string(kStartToken));
  auto eos = vocab.find(std::string(kEndToken));
  if (bos == vocab.end() || eos == vocab.end()) {
    return absl::InvalidArgumentError(
        StrCat(spec.vocab.string(), ": missing ", kStartToken, " or ", kEndToken));
  }
  const int64_t pad = spec.pad_with_eos ? eos->second : 0;
  return std::unique_ptr<Tokenizer>(new ClipTokenizer(spec.max_length, bos->second, eos->second,
                                                      pad, std::move(vocab), std::move(ranks)));
}

}  // namespace kiln::engine
