#include "engine/tokenizer/tokenizer.h"

#include <filesystem>
#include <fstream>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace kiln::engine {
namespace {

namespace fs = std::filesystem;

fs::path TempDir() {
  return fs::temp_directory_path() / ("kiln_tok_" + std::to_string(::getpid()));
}

fs::path TempFile(const std::string& name, const std::string& content) {
  fs::create_directories(TempDir());
  fs::path p = TempDir() / name;
  std::ofstream(p) << content;
  return p;
}

class CleanUp : public ::testing::Environment {
 public:
  void TearDown() override { fs::remove_all(TempDir()); }
};
const auto* const kCleanUp = ::testing::AddGlobalTestEnvironment(new CleanUp);

TEST(WordsTokenizer, EncodesLowercasedWordsWithPadding) {
  TokenizerSpec spec;
  spec.type = TokenizerType::kWords;
  spec.max_length = 6;
  spec.vocab = TempFile("words.txt", "<pad>\n<bos>\n<eos>\n<unk>\na\nred\ncircle\n");
  auto tok = Tokenizer::Create(spec);
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->Encode("A RED, circle!"), (std::vector<int64_t>{1, 4, 5, 6, 2, 0}));
  EXPECT_EQ((*tok)->Encode("a blue circle"), (std::vector<int64_t>{1, 4, 3, 6, 2, 0}));
  EXPECT_EQ((*tok)->Encode(""), (std::vector<int64_t>{1, 2, 0, 0, 0, 0}));
  // Truncation keeps the end token.
  EXPECT_EQ((*tok)->Encode("a a a a a a a"), (std::vector<int64_t>{1, 4, 4, 4, 4, 2}));
}

TEST(WordsTokenizer, RejectsVocabularyWithoutSpecialTokens) {
  TokenizerSpec spec;
  spec.type = TokenizerType::kWords;
  spec.vocab = TempFile("bad_words.txt", "a\nb\n");
  auto tok = Tokenizer::Create(spec);
  ASSERT_FALSE(tok.ok());
  EXPECT_NE(tok.status().message().find("<pad>"), absl::string_view::npos);
}

// The real CLIP vocabulary and the reference tokenizer's ids live outside the repository.
fs::path ClipDir() {
  return fs::path(KILN_SOURCE_DIR) / ".." / "shared" / "testdata" / "clip-tokenizer";
}

TEST(ClipTokenizer, MatchesReferenceIds) {
  if (!fs::exists(ClipDir() / "vectors.json")) {
    GTEST_SKIP()
        << "../shared/testdata/clip-tokenizer is absent (it is not part of the repository)";
  }
  TokenizerSpec spec;
  spec.type = TokenizerType::kClipBpe;
  spec.max_length = 77;
  spec.vocab = ClipDir() / "vocab.json";
  spec.merges = ClipDir() / "merges.txt";
  auto tok = Tokenizer::Create(spec);
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->vocab_size(), 49408);
  nlohmann::json vectors = nlohmann::json::parse(std::ifstream(ClipDir() / "vectors.json"));
  ASSERT_GE(vectors.size(), 10u);
  for (const auto& v : vectors) {
    const std::string text = v["text"];
    EXPECT_EQ((*tok)->Tokenize(text), v["ids"].get<std::vector<int64_t>>()) << text;
  }
  // Padding and truncation to max_length (SD 1.x pads with the end token).
  std::vector<int64_t> ids = (*tok)->Encode("a photo of a cat");
  ASSERT_EQ(ids.size(), 77u);
  EXPECT_EQ(ids[6], 49407);
  EXPECT_EQ(ids[76], 49407);
  std::string longtext;
  for (int i = 0; i < 100; ++i) longtext += "cat ";
  ids = (*tok)->Encode(longtext);
  EXPECT_EQ(ids.size(), 77u);
  EXPECT_EQ(ids[0], 49406);
  EXPECT_EQ(ids[75], 2368);
  EXPECT_EQ(ids[76], 49407);
}

TEST(ClipTokenizer, HtmlEntitiesAreUnescaped) {
  if (!fs::exists(ClipDir() / "vocab.json")) GTEST_SKIP() << "CLIP test data absent";
  TokenizerSpec spec;
  spec.type = TokenizerType::kClipBpe;
  spec.vocab = ClipDir() / "vocab.json";
  spec.merges = ClipDir() / "merges.txt";
  spec.pad_with_eos = false;
  auto tok = Tokenizer::Create(spec);
  ASSERT_TRUE(tok.ok());
  EXPECT_EQ((*tok)->Tokenize("cat &amp; dog"), (*tok)->Tokenize("cat & dog"));
  EXPECT_EQ((*tok)->Tokenize("cat &#38; dog"), (*tok)->Tokenize("cat & dog"));
  EXPECT_EQ((*tok)->Encode("cat").back(), 0);  // SD 2.x pads with 0
}

TEST(ClipTokenizer, RejectsMalformedMerges) {
  TokenizerSpec spec;
  spec.type = TokenizerType::kClipBpe;
  spec.vocab = TempFile("v.json", R"({"<|startoftext|>": 0, "<|endoftext|>": 1})");
  spec.merges = TempFile("m.txt", "#version: 0.2\na b c\n");
  auto tok = Tokenizer::Create(spec);
  ASSERT_FALSE(tok.ok());
  EXPECT_NE(tok.status().message().find("line 2"), absl::string_view::npos);
}

}  // namespace
}  // namespace kiln::engine
