// Whole generations of the native SD engine against diffusers' pipelines (the pipeline cases of
// ../shared/testdata/sd-reference/manifest.json), through the same Pipeline::Start / Step /
// Finish path the scheduler and `kiln generate` use. Every step's latents and the final picture
// are compared as float tensors within the manifest's tolerances.
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include "engine/generation.h"
#include "engine/pipeline.h"
#include "engine/samplers/schedule.h"
#include "engine/sd/ldm_checkpoint.h"
#include "engine/sd/sd_parts.h"
#include "engine/sd/sd_reference.h"

namespace kiln::engine::sd {
namespace {

namespace fs = std::filesystem;
using testing::ExpectClose;
using testing::ReferenceCase;

// Pipelines are loaded once per model for the whole test program.
Pipeline& PipelineFor(const fs::path& dir) {
  static auto* cache = new std::map<std::string, std::unique_ptr<Pipeline>>();
  auto& slot = (*cache)[dir.string()];
  if (!slot) {
    auto spec = LoadDiffusersSpec(dir);
    if (!spec.ok()) throw std::runtime_error(std::string(spec.status().message()));
    auto pipeline = Pipeline::Load(*spec);
    if (!pipeline.ok()) throw std::runtime_error(std::string(pipeline.status().message()));
    slot = std::move(*pipeline);
  }
  return *slot;
}

std::string SamplerOf(const std::string& scheduler_key) {
  // "sd15-tiny/dpmpp_2m_karras/8" -> "dpmpp_2m_karras"
  const size_t a = scheduler_key.find('/'), b = scheduler_key.rfind('/');
  return scheduler_key.substr(a + 1, b - a - 1);
}

Image ImageFromU8(const torch::Tensor& nhwc) {
  torch::Tensor t = nhwc[0].contiguous();
  Image img{static_cast<int>(t.size(1)), static_cast<int>(t.size(0)), {}};
  img.rgb.assign(t.data_ptr<uint8_t>(), t.data_ptr<uint8_t>() + t.numel());
  return img;
}

// `pipeline`: the model to run instead of the case's diffusers folder.
void CheckPipelineCase(const std::string& id, Pipeline* other = nullptr) {
  c10::InferenceMode inference;
  ReferenceCase c(id);
  const nlohmann::json& p = c.json()["params"];
  Pipeline& pipeline = other ? *other : PipelineFor(c.model_dir());
  const ModelSpec& spec = pipeline.spec();

  GenerationRequest r;
  r.prompt = p["prompt"].get<std::string>();
  r.negative_prompt = p.value("negative_prompt", "");
  r.steps = p["num_inference_steps"].get<int>();
  r.guidance_scale = p["guidance_scale"].get<double>();
  auto sampler = ParseSamplerName(SamplerOf(c.json()["scheduler"].get<std::string>()));
  ASSERT_TRUE(sampler.ok()) << sampler.status();
  r.sampler = *sampler;
  r.size = spec.sizes.front();
  const bool has_latents = !p["latents_seed"].is_null();
  const bool has_generator = !p["generator_seed"].is_null();
  r.seed = has_generator ? p["generator_seed"].get<uint64_t>() : p["latents_seed"].get<uint64_t>();
  if (p.contains("strength")) {
    r.conditioning = ImageToImage{ImageFromU8(c.Get("image_u8")), p["strength"].get<double>()};
  } else if (p.contains("image_guidance_scale")) {
    r.conditioning =
        InstructEdit{ImageFromU8(c.Get("image_u8")), p["image_guidance_scale"].get<double>()};
  }

  auto started = pipeline.Start(r);
  ASSERT_TRUE(started.ok()) << started.status();
  auto& gen = static_cast<TorchGeneration&>(**started);
  const SigmaPlan& plan = gen.sampler.plan();
  if (has_latents) {
    // Seed S draws the initial latents as diffusers' CPU torch.Generator seeded S does.
    if (!has_generator) {
      ExpectClose(gen.x / plan.init_noise_sigma, c.Get("latents_init"), 1e-6, "latents_init");
    }
    // Where diffusers drew the latents from one seed and the step noise from another, use its
    // latents and a fresh generator of the second seed.
    gen.x = c.Get("latents_init") * plan.init_noise_sigma;
    gen.generators[0] = at::make_generator<at::CPUGeneratorImpl>(r.seed);
  }

  // Conditioning: the reference batch is [negative; positive] ([positive; negative; negative]
  // for InstructPix2Pix).
  torch::Tensor embeds = c.Get("prompt_embeds");
  const bool ip2p = std::holds_alternative<InstructEdit>(r.conditioning);
  const double text_atol = 6e-5;
  ExpectClose(gen.hidden[0], embeds[ip2p ? 0 : 1], text_atol, "prompt_embeds (positive)");
  ExpectClose(gen.hidden_neg[0], embeds[ip2p ? 1 : 0], text_atol, "prompt_embeds (negative)");
  if (c.Has("add_text_embeds")) {
    torch::Tensor pooled = c.Get("add_text_embeds"), ids = c.Get("add_time_ids");
    ExpectClose(gen.pooled[0], pooled[1], text_atol, "add_text_embeds (positive)");
    ExpectClose(gen.pooled_neg[0], pooled[0], text_atol, "add_text_embeds (negative)");
    ExpectClose(gen.time_ids[0], ids[1], 0, "add_time_ids");
  }
  if (c.Has("image_latents")) {
    ExpectClose(gen.image_cond[0], c.Get("image_latents")[0], c.Atol("final_latents"),
                "image_latents");
  }

  // Each step's latents; DDIM and DPM-Solver keep theirs in variance-preserving form.
  const bool vp = r.sampler.kind == SamplerKind::kDdim || r.sampler.kind == SamplerKind::kDpmpp2m;
  torch::Tensor steps = c.Get("latents_steps");
  const double latent_atol = c.Atol("final_latents");
  Generation* batch[] = {&gen};
  for (int64_t i = 0; i < steps.size(0); ++i) {
    ASSERT_FALSE(gen.done());
    ASSERT_TRUE(pipeline.Step(batch).ok());
    const double sigma = plan.sigmas[gen.step()];
    torch::Tensor latents = vp ? gen.x / std::sqrt(1.0 + sigma * sigma) : gen.x;
    ExpectClose(latents, steps[i], latent_atol, "latents after step " + std::to_string(i));
  }
  ASSERT_TRUE(gen.done());
  auto image = pipeline.FinishFloat(gen);
  ASSERT_TRUE(image.ok()) << image.status();
  torch::Tensor got = torch::tensor(image->values).view({image->n, image->height, image->width, 3});
  ExpectClose(got, c.Get("image"), c.Atol("image"), "image");
}

TEST(SdPipelines, Sd15EulerMatchesDiffusers) {
  KILN_REQUIRE_SD_REFERENCE();
  CheckPipelineCase("sd15-txt2img-euler");
}
TEST(SdPipelines, Sd15EulerWithNegativePromptMatchesDiffusers) {
  KILN_REQUIRE_SD_REFERENCE();
  CheckPipelineCase("sd15-txt2img-euler-negative");
}
TEST(SdPipelines, Sd15EulerAncestralMatchesDiffusers) {
  KILN_REQUIRE_SD_REFERENCE();
  CheckPipelineCase("sd15-txt2img-euler-ancestral");
}
TEST(SdPipelines, Sd15DdimMatchesDiffusers) {
  KILN_REQUIRE_SD_REFERENCE();
  CheckPipelineCase("sd15-txt2img-ddim");
}
TEST(SdPipelines, Sd15DpmSolverKarrasMatchesDiffusers) {
  KILN_REQUIRE_SD_REFERENCE();
  CheckPipelineCase("sd15-txt2img-dpmpp2m-karras");
}
TEST(SdPipelines, Sd15Img2ImgMatchesDiffusers) {
  KILN_REQUIRE_SD_REFERENCE();
  CheckPipelineCase("sd15-img2img-euler");
}
TEST(SdPipelines, SdxlEulerMatchesDiffusers) {
  KILN_REQUIRE_SD_REFERENCE();
  CheckPipelineCase("sdxl-txt2img-euler");
}
TEST(SdPipelines, InstructPix2PixMatchesDiffusers) {
  KILN_REQUIRE_SD_REFERENCE();
  CheckPipelineCase("ip2p-euler");
}

// The single-file LDM checkpoint beside sd15-tiny in a models folder of its own, with CLIP's
// tokenizer and the tiny text encoder's head count (a real SD 1.x file needs neither override).
class SingleFile : public ::testing::Test {
 protected:
  void SetUp() override {
    KILN_REQUIRE_SD_REFERENCE();
    dir_ = fs::temp_directory_path() / ("kiln-single-file-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    const fs::path ref = testing::ReferenceDir();
    fs::create_symlink(ref / "sd15-tiny-ldm.safetensors", dir_ / "sd15-tiny-ldm.safetensors");
    fs::create_symlink(ref / "sd15-tiny-ldm.yaml", dir_ / "sd15-tiny-ldm.yaml");
    fs::create_directory_symlink(ref / "sd15-tiny" / "tokenizer", dir_ / "clip-tokenizer");
    std::ofstream(dir_ / "sd15-tiny-ldm.kiln.yaml") << "text_encoder_heads: 4\n";
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }
  fs::path dir_;
};

TEST_F(SingleFile, EveryTensorMapsOntoTheDiffusersWeights) {
  auto layout = ReadSingleFile(dir_ / "sd15-tiny-ldm.safetensors");
  ASSERT_TRUE(layout.ok()) << layout.status();
  struct Component {
    std::string file;
    void (*add)(const SingleFileLayout&, Weights&);
  };
  const fs::path ref = testing::ReferenceDir() / "sd15-tiny";
  for (const Component& c : {Component{"text_encoder/model.safetensors", AddTextEncoderWeights},
                             Component{"unet/diffusion_pytorch_model.safetensors", AddUNetWeights},
                             Component{"vae/diffusion_pytorch_model.safetensors", AddVaeWeights}}) {
    SCOPED_TRACE(c.file);
    auto diffusers = SafetensorsFile::Open(ref / c.file);
    ASSERT_TRUE(diffusers.ok());
    Weights single(Placement{});
    c.add(*layout, single);
    size_t compared = 0;
    for (const auto& [name, info] : (*diffusers)->tensors()) {
      if (name.find("position_ids") != std::string::npos) continue;
      torch::Tensor got = single.Take(name, info.shape);
      ASSERT_TRUE(single.status().ok()) << single.status();
      EXPECT_TRUE(torch::equal(got, (*diffusers)->Get(name)->to(torch::kFloat32))) << name;
      ++compared;
    }
    EXPECT_GT(compared, 10u);
    EXPECT_TRUE(single.Unused().empty()) << single.Unused().front();
  }
  // The architecture read from the keys and the yaml is diffusers' configuration.
  auto folder = LoadDiffusersSpec(ref);
  auto file = LoadSingleFileSpec(dir_ / "sd15-tiny-ldm.safetensors");
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->architecture, "sd1");
  EXPECT_EQ(file->sizes, folder->sizes);
  EXPECT_EQ(file->latent_scale, folder->latent_scale);
  EXPECT_EQ(file->downsample, folder->downsample);
}

TEST_F(SingleFile, GeneratesWhatDiffusersDoes) {
  auto spec = LoadSingleFileSpec(dir_ / "sd15-tiny-ldm.safetensors");
  ASSERT_TRUE(spec.ok()) << spec.status();
  auto pipeline = Pipeline::Load(*spec);
  ASSERT_TRUE(pipeline.ok()) << pipeline.status();
  CheckPipelineCase("sd15-txt2img-euler", pipeline->get());
  CheckPipelineCase("sd15-img2img-euler", pipeline->get());
}

TEST_F(SingleFile, OtherLayoutsAndPicklesAreRefusedWithWhatToDo) {
  const fs::path xl = dir_ / "xl.safetensors";
  {
    std::ofstream out(xl, std::ios::binary);
    out << SerializeSafetensors(
        {{"conditioner.embedders.1.model.ln_final.weight", torch::ones({4})},
         {"model.diffusion_model.input_blocks.0.0.weight", torch::ones({4, 4, 3, 3})}});
  }
  auto refused = LoadSingleFileSpec(xl);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("SDXL"), std::string::npos) << refused.status();
  EXPECT_NE(refused.status().message().find("diffusers folder"), std::string::npos);
  const fs::path other = dir_ / "other.safetensors";
  std::ofstream(other, std::ios::binary) << SerializeSafetensors({{"w", torch::ones({2})}});
  auto unknown = LoadSingleFileSpec(other);
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("not a Stable Diffusion checkpoint"),
            std::string::npos);
  std::ofstream(dir_ / "model.ckpt") << "PK";
  EXPECT_NE(SafetensorsFile::Open(dir_ / "model.ckpt").status().message().find("arbitrary code"),
            std::string::npos);
}

// The sigma plans against the scheduler tables diffusers resolved for each model.
TEST(SdPipelines, SchedulerTablesMatchDiffusers) {
  KILN_REQUIRE_SD_REFERENCE();
  std::ifstream in(testing::ReferenceDir() / "manifest.json");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (size_t at; (at = text.find("-Infinity")) != std::string::npos;) text.replace(at, 9, "-1");
  const nlohmann::json manifest = nlohmann::json::parse(text);
  for (const auto& [key, table] : manifest["schedulers"].items()) {
    SCOPED_TRACE(key);
    auto spec = LoadDiffusersSpec(testing::ReferenceDir() / key.substr(0, key.find('/')));
    ASSERT_TRUE(spec.ok()) << spec.status();
    auto schedule = NoiseSchedule::Create(spec->schedule);
    ASSERT_TRUE(schedule.ok());
    auto sampler = ParseSamplerName(SamplerOf(key));
    ASSERT_TRUE(sampler.ok());
    SigmaPlan plan = PlanSigmas(*schedule, *sampler, table["num_inference_steps"].get<int>());
    const auto timesteps = table["timesteps"].get<std::vector<double>>();
    ASSERT_EQ(plan.timesteps.size(), timesteps.size());
    for (size_t i = 0; i < timesteps.size(); ++i) {
      EXPECT_NEAR(plan.timesteps[i], timesteps[i], 1e-3) << "timestep " << i;
    }
    if (table.contains("sigmas")) {
      const auto sigmas = table["sigmas"].get<std::vector<double>>();
      ASSERT_EQ(plan.sigmas.size(), sigmas.size());
      for (size_t i = 0; i < sigmas.size(); ++i) {
        EXPECT_NEAR(plan.sigmas[i], sigmas[i], 1e-5 * sigmas[i] + 1e-7) << "sigma " << i;
      }
    }
    if (sampler->kind == SamplerKind::kEuler) {
      EXPECT_NEAR(plan.init_noise_sigma, table["init_noise_sigma"].get<double>(), 1e-5);
    }
  }
}

}  // namespace
}  // namespace kiln::engine::sd
