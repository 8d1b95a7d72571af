// The engine end to end on the randomly initialised test models (tools/make_test_models.py).
#include "engine/pipeline.h"

#include <cstdlib>
#include <filesystem>

#include "engine/model_repository.h"
#include "gtest/gtest.h"

namespace kiln::engine {
namespace {

std::filesystem::path TestModels() {
  const char* dir = std::getenv("KILN_TEST_MODELS");
  return dir ? dir : std::filesystem::path(KILN_BINARY_DIR) / "test-models";
}

class PipelineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto repo = ModelRepository::Load(TestModels());
    ASSERT_TRUE(repo.ok()) << repo.status() << " (run `make test-models`)";
    repo_ = std::move(*repo).release();
  }
  static void TearDownTestSuite() {
    delete repo_;
    repo_ = nullptr;
  }
  static Pipeline* Model(const std::string& name) {
    auto p = repo_->FindPipeline(name);
    EXPECT_TRUE(p.ok()) << p.status();
    return p.ok() ? *p : nullptr;
  }
  static GenerationRequest Request(Pipeline* p, uint64_t seed) {
    GenerationRequest r;
    r.prompt = "a red circle on a white background";
    r.steps = p->spec().defaults.steps;
    r.guidance_scale = p->spec().defaults.guidance_scale;
    r.sampler = *ParseSamplerName(p->spec().defaults.sampler);
    r.size = p->spec().sizes.front();
    r.seed = seed;
    return r;
  }
  static double MaxDiff(const Image& a, const Image& b) {
    double m = 0;
    for (size_t i = 0; i < a.rgb.size(); ++i)
      m = std::max(m, std::abs(double(a.rgb[i]) - b.rgb[i]));
    return m;
  }
  static ModelRepository* repo_;
};
ModelRepository* PipelineTest::repo_ = nullptr;

TEST_F(PipelineTest, SameSeedSameImagesOtherSeedOtherImages) {
  for (const char* name : {"test-pixel", "test-latent"}) {
    Pipeline* p = Model(name);
    ASSERT_NE(p, nullptr);
    auto a = p->Generate(Request(p, 5));
    auto b = p->Generate(Request(p, 5));
    auto c = p->Generate(Request(p, 6));
    ASSERT_TRUE(a.ok() && b.ok() && c.ok()) << a.status() << b.status() << c.status();
    ASSERT_EQ(a->size(), 1u);
    EXPECT_EQ((*a)[0].width, p->spec().sizes.front().width);
    EXPECT_EQ((*a)[0].rgb, (*b)[0].rgb) << name;
    EXPECT_NE((*a)[0].rgb, (*c)[0].rgb) << name;
  }
}

TEST_F(PipelineTest, EverySamplerRunsAndNImagesUseConsecutiveSeeds) {
  Pipeline* p = Model("test-pixel");
  for (const char* s : {"euler", "euler_a", "ddim", "dpmpp_2m", "euler_a_karras", "ddim_karras"}) {
    GenerationRequest r = Request(p, 100);
    r.sampler = *ParseSamplerName(s);
    r.n = 3;
    auto batch = p->Generate(r);
    ASSERT_TRUE(batch.ok()) << s << ": " << batch.status();
    ASSERT_EQ(batch->size(), 3u);
    GenerationRequest single = r;
    single.n = 1;
    single.seed = 101;
    auto one = p->Generate(single);
    ASSERT_TRUE(one.ok());
    // Image 1 of the batch is seed 101; only floating-point batching noise may differ.
    EXPECT_LE(MaxDiff((*batch)[1], (*one)[0]), 2.0) << s;
    EXPECT_NE((*batch)[0].rgb, (*batch)[1].rgb) << s;
  }
}

TEST_F(PipelineTest, StepBatchesGenerationsWithDifferentStepCountsAndSamplers) {
  Pipeline* p = Model("test-latent");
  GenerationRequest a = Request(p, 1), b = Request(p, 2);
  a.steps = 3;
  b.steps = 7;
  b.sampler = *ParseSamplerName("euler_a");
  b.size = {64, 32};
  b.guidance_scale = 1.0;  // one row per image, no negative branch
  auto ga = p->Start(a);
  auto gb = p->Start(b);
  ASSERT_TRUE(ga.ok() && gb.ok());
  EXPECT_EQ((*ga)->rows(), 2);
  EXPECT_EQ((*gb)->rows(), 1);
  // Different latent shapes cannot share a call; same shape can: batch a with a clone of itself.
  auto ga2 = p->Start(a);
  std::vector<Generation*> both = {ga->get(), ga2->get()};
  while (!(*ga)->done()) ASSERT_TRUE(p->Step(both).ok());
  while (!(*gb)->done()) {
    Generation* one[] = {gb->get()};
    ASSERT_TRUE(p->Step(one).ok());
  }
  auto ia = p->Finish(**ga), ia2 = p->Finish(**ga2), ib = p->Finish(**gb);
  ASSERT_TRUE(ia.ok() && ia2.ok() && ib.ok());
  EXPECT_LE(MaxDiff((*ia)[0], (*ia2)[0]), 0.0);
  EXPECT_EQ((*ib)[0].width, 64);
  auto alone = p->Generate(a);
  ASSERT_TRUE(alone.ok());
  EXPECT_LE(MaxDiff((*ia)[0], (*alone)[0]), 2.0);  // batched vs alone
  Generation* done[] = {ga->get()};
  EXPECT_FALSE(p->Step(done).ok());
}

TEST_F(PipelineTest, EditAndImageToImage) {
  for (const char* name : {"test-pixel", "test-latent"}) {
    Pipeline* p = Model(name);
    GenerationRequest src = Request(p, 9);
    auto base = p->Generate(src);
    ASSERT_TRUE(base.ok());
    GenerationRequest edit = Request(p, 9);
    edit.prompt = "make it blue";
    edit.conditioning = InstructEdit{(*base)[0], 1.5};
    auto e = p->Start(edit);
    ASSERT_TRUE(e.ok()) << e.status();
    EXPECT_EQ((*e)->rows(), 3);
    auto edited = p->Generate(edit);
    ASSERT_TRUE(edited.ok()) << edited.status();

    GenerationRequest i2i = Request(p, 9);
    Image big{64, 64, std::vector<uint8_t>(64 * 64 * 3, 30)};  // resized to the request's size
    i2i.conditioning = ImageToImage{big, 0.5};
    auto g = p->Start(i2i);
    ASSERT_TRUE(g.ok()) << g.status();
    EXPECT_EQ((*g)->step(), i2i.steps - static_cast<int>(i2i.steps * 0.5));
    auto out = p->Generate(i2i);
    ASSERT_TRUE(out.ok()) << out.status();
  }
}

TEST_F(PipelineTest, RejectsRequestsTheModelCannotRun) {
  Pipeline* p = Model("test-pixel");
  GenerationRequest r = Request(p, 1);
  r.size = {48, 48};
  auto g = p->Start(r);
  ASSERT_FALSE(g.ok());
  EXPECT_NE(g.status().message().find("48x48"), absl::string_view::npos);
  EXPECT_FALSE(repo_->Find("no-such-model").ok());
}

}  // namespace
// A generation checkpointed at a step boundary and resumed in a new Generation ends with the
// same bytes as one that ran straight through: every sampler (ancestral ones draw noise from the
// restored RNG states, DPM++ 2M reuses the restored previous estimate), both model kinds.
TEST_F(PipelineTest, CheckpointResumeIsByteIdentical) {
  for (const char* name : {"test-pixel", "test-latent"}) {
    Pipeline* p = Model(name);
    ASSERT_NE(p, nullptr);
    for (const char* sampler : {"euler", "euler_a", "ddim", "dpmpp_2m", "dpmpp_2m_karras"}) {
      GenerationRequest r = Request(p, 11);
      r.sampler = *ParseSamplerName(sampler);
      r.steps = 9;
      r.n = 2;
      auto straight = p->Generate(r);
      ASSERT_TRUE(straight.ok()) << straight.status();

      auto first = p->Start(r);
      ASSERT_TRUE(first.ok()) << first.status();
      Generation* batch[] = {first->get()};
      for (int s = 0; s < 4; ++s) ASSERT_TRUE(p->Step(batch).ok());
      auto checkpoint = p->Checkpoint(**first);
      ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
      first->reset();  // the first worker is gone

      auto resumed = p->Resume(r, *checkpoint);
      ASSERT_TRUE(resumed.ok()) << resumed.status();
      EXPECT_EQ((*resumed)->step(), 4);
      Generation* rest[] = {resumed->get()};
      while (!(*resumed)->done()) ASSERT_TRUE(p->Step(rest).ok());
      auto images = p->Finish(**resumed);
      ASSERT_TRUE(images.ok()) << images.status();
      ASSERT_EQ(images->size(), straight->size());
      for (size_t i = 0; i < images->size(); ++i) {
        EXPECT_EQ((*images)[i].rgb, (*straight)[i].rgb) << name << " " << sampler << " image " << i;
      }
    }
  }
}

TEST_F(PipelineTest, ResumeRejectsDamagedOrForeignCheckpoints) {
  Pipeline* p = Model("test-pixel");
  ASSERT_NE(p, nullptr);
  GenerationRequest r = Request(p, 3);
  r.steps = 6;
  auto gen = p->Start(r);
  ASSERT_TRUE(gen.ok());
  Generation* batch[] = {gen->get()};
  ASSERT_TRUE(p->Step(batch).ok());
  auto checkpoint = p->Checkpoint(**gen);
  ASSERT_TRUE(checkpoint.ok());

  EXPECT_EQ(p->Resume(r, "not a checkpoint").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(p->Resume(r, checkpoint->substr(0, checkpoint->size() / 2)).status().code(),
            absl::StatusCode::kInvalidArgument);
  GenerationRequest other = r;
  other.steps = 7;  // another plan
  EXPECT_EQ(p->Resume(other, *checkpoint).status().code(), absl::StatusCode::kInvalidArgument);
  other = r;
  other.n = 2;  // another batch of images
  EXPECT_EQ(p->Resume(other, *checkpoint).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace kiln::engine
