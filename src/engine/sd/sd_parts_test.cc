// Model descriptions from diffusers folders with an operator's kiln.yaml, and half-precision
// compute.
#include "engine/sd/sd_parts.h"

#include <gtest/gtest.h>

#include <fstream>

#include "engine/pipeline.h"
#include "engine/sd/sd_reference.h"

namespace kiln::engine::sd {
namespace {

namespace fs = std::filesystem;

// sd15-tiny's parts (as links) in a folder of its own, with `kiln_yaml` beside them.
class Overrides : public ::testing::Test {
 protected:
  void SetUp() override {
    KILN_REQUIRE_SD_REFERENCE();
    dir_ = fs::temp_directory_path() /
           ("kiln-overrides-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
    const fs::path ref = testing::ReferenceDir() / "sd15-tiny";
    for (const auto& e : fs::directory_iterator(ref)) {
      fs::create_symlink(e.path(), dir_ / e.path().filename());
    }
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }
  void WriteKilnYaml(const std::string& text) { std::ofstream(dir_ / "kiln.yaml") << text; }
  // Loads the folder as it now is and draws `r` (float pixels, NHWC).
  std::vector<float> Draw(const GenerationRequest& r) {
    auto spec = LoadDiffusersSpec(dir_);
    if (!spec.ok()) return Failed(spec.status());
    auto pipeline = Pipeline::Load(*spec);
    if (!pipeline.ok()) return Failed(pipeline.status());
    auto gen = (*pipeline)->Start(r);
    if (!gen.ok()) return Failed(gen.status());
    Generation* batch[] = {gen->get()};
    while (!(*gen)->done()) {
      if (absl::Status s = (*pipeline)->Step(batch); !s.ok()) return Failed(s);
    }
    auto image = (*pipeline)->FinishFloat(**gen);
    if (!image.ok()) return Failed(image.status());
    return image->values;
  }
  static std::vector<float> Failed(const absl::Status& status) {
    ADD_FAILURE() << status;
    return {};
  }
  fs::path dir_;
};

TEST_F(Overrides, KilnYamlSetsSizesDefaultsAndDtype) {
  WriteKilnYaml(
      "description: tiny\ndtype: bfloat16\nsizes: [\"64x64\", \"128x128\"]\nany_size: false\n"
      "max_batch: 4\ndefaults: {steps: 3, guidance_scale: 6, sampler: \"DPM++ 2M Karras\"}\n");
  auto spec = LoadDiffusersSpec(dir_);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->description, "tiny");
  EXPECT_EQ(spec->dtype, "bfloat16");
  EXPECT_EQ(spec->sizes.front(), (ImageSize{64, 64}));
  EXPECT_FALSE(spec->SupportsSize(ImageSize{192, 64}));
  EXPECT_EQ(spec->max_batch, 4);
  EXPECT_EQ(spec->defaults.steps, 3);
  EXPECT_EQ(spec->defaults.guidance_scale, 6);
  EXPECT_EQ(spec->defaults.sampler, "dpmpp_2m_karras");
}

TEST_F(Overrides, ClipSkipConditionsOnAnEarlierLayer) {
  GenerationRequest r;
  r.prompt = "a photo of a cat";
  r.steps = 1;
  r.size = ImageSize{64, 64};
  std::vector<std::vector<float>> images;
  for (const char* yaml : {"clip_skip: 0\n", "clip_skip: 1\n"}) {
    WriteKilnYaml(yaml);
    images.push_back(Draw(r));
  }
  EXPECT_NE(images[0], images[1]);
  WriteKilnYaml("clip_skip: 12\n");
  EXPECT_FALSE(LoadDiffusersSpec(dir_).ok());
}

TEST_F(Overrides, MistakesNameTheFileAndTheKey) {
  for (const auto& [yaml, key] : std::vector<std::pair<std::string, std::string>>{
           {"dtype: int8\n", "dtype"},
           {"sizes: [\"100x100\"]\n", "sizes"},
           {"defaults: {steps: 0}\n", "defaults.steps"},
           {"defaults: {sampler: plms}\n", "defaults.sampler"},
           {"colour: red\n", "colour"},
           {"max_batch: [1]\n", "kiln.yaml"}}) {
    WriteKilnYaml(yaml);
    auto spec = LoadDiffusersSpec(dir_);
    ASSERT_FALSE(spec.ok()) << yaml;
    EXPECT_NE(spec.status().message().find("kiln.yaml"), std::string::npos) << spec.status();
    EXPECT_NE(spec.status().message().find(key), std::string::npos) << spec.status();
  }
}

TEST_F(Overrides, Bfloat16GenerationStaysCloseToFloat32) {
  GenerationRequest r;
  r.prompt = "a photo of a cat";
  r.steps = 3;
  r.seed = 3;
  r.size = ImageSize{64, 64};
  std::vector<std::vector<float>> images;
  for (const char* dtype : {"float32", "bfloat16"}) {
    WriteKilnYaml(std::string("dtype: ") + dtype + "\n");
    images.push_back(Draw(r));
  }
  ASSERT_EQ(images[0].size(), images[1].size());
  double sum = 0;
  for (size_t i = 0; i < images[0].size(); ++i) sum += std::abs(images[0][i] - images[1][i]);
  const double mean = sum / images[0].size();
  EXPECT_GT(mean, 0.0);   // it did compute in another precision
  EXPECT_LT(mean, 0.02);  // and still drew the same picture
}

}  // namespace
}  // namespace kiln::engine::sd
