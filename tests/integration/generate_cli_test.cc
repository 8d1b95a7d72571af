// `kiln generate` as a user runs it.
#include <filesystem>

#include "engine/image_codec.h"
#include "gtest/gtest.h"
#include "tests/integration/server_process.h"

namespace kiln::testing {
namespace {

namespace fs = std::filesystem;

fs::path OutDir() { return fs::temp_directory_path() / ("kiln_cli_" + std::to_string(getpid())); }

fs::path Out(const std::string& name) {
  fs::create_directories(OutDir());
  return OutDir() / name;
}

// Removes the outputs when the test program ends.
class CleanUp : public ::testing::Environment {
 public:
  void TearDown() override { fs::remove_all(OutDir()); }
};
const auto* const kCleanUp = ::testing::AddGlobalTestEnvironment(new CleanUp);

TEST(GenerateCli, SeededOutputIsByteIdentical) {
  const std::vector<std::string> base = {
      "generate", "--models", TestModelsDir(), "--model", "test-latent", "--prompt", "a red circle",
      "--seed",   "77",       "--steps",       "5",       "--threads",   "1"};
  auto a_args = base, b_args = base;
  a_args.insert(a_args.end(), {"--output", Out("a.png").string()});
  b_args.insert(b_args.end(), {"--output", Out("b.png").string()});
  CommandResult a = RunKiln(a_args), b = RunKiln(b_args);
  ASSERT_EQ(a.exit_code, 0) << a.output;
  ASSERT_EQ(b.exit_code, 0) << b.output;
  const std::string pa = ReadFile(Out("a.png").string());
  EXPECT_FALSE(pa.empty());
  EXPECT_EQ(pa, ReadFile(Out("b.png").string()));
}

TEST(GenerateCli, ManyImagesGetIndexSuffixes) {
  CommandResult r =
      RunKiln({"generate", "--models", TestModelsDir(), "--model", "test-pixel", "--prompt",
               "a blue square", "--n", "3", "--seed", "1", "--output", Out("many.png").string()});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (int i = 0; i < 3; ++i) {
    auto img =
        engine::DecodeImage(ReadFile(Out("many-" + std::to_string(i) + ".png").string()), {});
    EXPECT_TRUE(img.ok()) << i;
  }
}

TEST(GenerateCli, EditAndImg2Img) {
  const std::string src = Out("src.png").string();
  ASSERT_EQ(RunKiln({"generate", "--models", TestModelsDir(), "--model", "test-pixel", "--prompt",
                     "a red circle", "--seed", "4", "--output", src})
                .exit_code,
            0);
  CommandResult edit =
      RunKiln({"generate", "--models", TestModelsDir(), "--model", "test-pixel", "--prompt",
               "make it green", "--image", src, "--edit", "--output", Out("edit.png").string()});
  EXPECT_EQ(edit.exit_code, 0) << edit.output;
  CommandResult i2i = RunKiln({"generate", "--models", TestModelsDir(), "--model", "test-pixel",
                               "--prompt", "a red circle", "--image", src, "--strength", "0.3",
                               "--output", Out("i2i.png").string()});
  EXPECT_EQ(i2i.exit_code, 0) << i2i.output;
}

TEST(GenerateCli, BadArgumentsFailWithAMessage) {
  CommandResult r = RunKiln({"generate", "--models", TestModelsDir(), "--prompt", "p", "--sampler",
                             "plms", "--output", Out("x.png").string()});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("unknown sampler"), std::string::npos) << r.output;
  r = RunKiln({"generate", "--models", TestModelsDir(), "--prompt", "p", "--size", "7x7",
               "--output", Out("x.png").string()});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("7x7"), std::string::npos) << r.output;
  r = RunKiln({"generate", "--models", TestModelsDir(), "--prompt", "p", "--image",
               "/nonexistent.png", "--output", Out("x.png").string()});
  EXPECT_NE(r.exit_code, 0);
  r = RunKiln({"generate", "--models", TestModelsDir(), "--output", Out("x.png").string()});
  EXPECT_NE(r.exit_code, 0);  // --prompt is required
}

}  // namespace
}  // namespace kiln::testing
