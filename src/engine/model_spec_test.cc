#include "engine/model_spec.h"

#include <filesystem>
#include <fstream>

#include "gtest/gtest.h"

namespace kiln::engine {
namespace {

namespace fs = std::filesystem;

class ModelSpecTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("kiln_spec_" + std::to_string(::getpid())) / "mymodel";
    fs::create_directories(dir_);
    for (const char* f : {"words.txt", "te.pt", "dn.pt"}) std::ofstream(dir_ / f) << "x";
  }
  void TearDown() override { fs::remove_all(dir_.parent_path()); }
  std::string Valid() const {
    return R"(kind: pixel
tasks: [generate, edit]
sizes: ["32x32", "64x64"]
channels: 3
image_cond_channels: 3
schedule: {num_train_timesteps: 1000, beta_schedule: linear, beta_start: 0.0001, beta_end: 0.02}
defaults: {steps: 25, sampler: "DPM++ 2M Karras"}
tokenizer: {type: words, max_length: 16, vocab: words.txt}
files: {text_encoder: te.pt, denoiser: dn.pt}
)";
  }
  // Replaces the first occurrence of `from` in the valid spec.
  absl::StatusOr<ModelSpec> ParseWith(const std::string& from, const std::string& to) {
    std::string y = Valid();
    size_t p = y.find(from);
    EXPECT_NE(p, std::string::npos) << from;
    y.replace(p, from.size(), to);
    return ParseModelSpec(y, dir_);
  }
  fs::path dir_;
};

TEST_F(ModelSpecTest, ParsesValidSpec) {
  auto spec = ParseModelSpec(Valid(), dir_);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->name, "mymodel");
  EXPECT_TRUE(spec->supports_edit);
  ASSERT_EQ(spec->sizes.size(), 2u);
  EXPECT_EQ(spec->sizes[1].width, 64);
  EXPECT_EQ(spec->defaults.steps, 25);
  EXPECT_EQ(spec->schedule.beta_schedule, BetaSchedule::kLinear);
  EXPECT_EQ(spec->denoiser, dir_ / "dn.pt");
  EXPECT_TRUE(spec->SupportsSize({32, 32}));
  EXPECT_FALSE(spec->SupportsSize({48, 48}));
}

void ExpectError(const absl::StatusOr<ModelSpec>& spec, const std::string& field) {
  ASSERT_FALSE(spec.ok());
  const std::string msg(spec.status().message());
  EXPECT_NE(msg.find("model.yaml"), std::string::npos) << msg;
  EXPECT_NE(msg.find(field), std::string::npos) << "expected field " << field << " in: " << msg;
}

TEST_F(ModelSpecTest, ErrorsNameFileAndField) {
  ExpectError(ParseWith("kind: pixel", "kind: voxel"), "'kind'");
  ExpectError(ParseWith("kind: pixel\n", ""), "'kind'");
  ExpectError(ParseWith("beta_schedule: linear", "beta_schedule: cubic"),
              "'schedule.beta_schedule'");
  ExpectError(ParseWith("\"64x64\"", "\"64y64\""), "'sizes'");
  ExpectError(ParseWith("dn.pt", "missing.pt"), "'files.denoiser'");
  ExpectError(ParseWith("dn.pt", "../dn.pt"), "'files.denoiser'");
  ExpectError(ParseWith("image_cond_channels: 3", "image_cond_channels: 0"), "'tasks'");
  ExpectError(ParseWith("steps: 25", "steps: 500"), "'defaults.steps'");
  ExpectError(ParseWith("\"DPM++ 2M Karras\"", "heun"), "'defaults.sampler'");
  ExpectError(ParseWith("channels: 3\n", "channels: many\n"), "'channels'");
  ExpectError(ParseWith("type: words", "type: sentencepiece"), "'tokenizer.type'");
  ExpectError(ParseWith("kind: pixel", "kind: latent"), "'files.decoder'");
  ExpectError(ParseModelSpec("kind: [unclosed", dir_), "invalid YAML");
  ExpectError(ParseModelSpec("- a list", dir_), "YAML map");
}

TEST_F(ModelSpecTest, LoadReadsTheFolder) {
  std::ofstream(dir_ / "model.yaml") << Valid();
  auto spec = LoadModelSpec(dir_.string() + "/");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->name, "mymodel");
  EXPECT_FALSE(LoadModelSpec(dir_ / "nope").ok());
}

}  // namespace
}  // namespace kiln::engine
