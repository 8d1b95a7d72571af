// The native SD modules against what diffusers computed from the same weights (component cases of
// ../shared/testdata/sd-reference/manifest.json), within the manifest's tolerances.
#include <gtest/gtest.h>

#include "engine/sd/autoencoder_kl.h"
#include "engine/sd/clip_text_model.h"
#include "engine/sd/sd_reference.h"
#include "engine/sd/unet.h"
#include "engine/tokenizer/tokenizer.h"

namespace kiln::engine::sd {
namespace {

namespace fs = std::filesystem;
using testing::ExpectClose;
using testing::ReferenceCase;

Weights WeightsOf(const fs::path& file) {
  Weights w(Placement{});
  auto f = SafetensorsFile::Open(file);
  if (!f.ok()) throw std::runtime_error(std::string(f.status().message()));
  w.AddFile(*f);
  return w;
}

ClipTextModel LoadClip(const fs::path& dir, bool projection) {
  auto json = ReadJsonFile(dir / "config.json");
  EXPECT_TRUE(json.ok()) << json.status();
  auto config = ParseClipTextConfig(*json, dir / "config.json", projection);
  EXPECT_TRUE(config.ok()) << config.status();
  Weights w = WeightsOf(dir / "model.safetensors");
  ClipTextModel m = ClipTextModel::Load(*config, w);
  EXPECT_TRUE(w.status().ok()) << w.status();
  EXPECT_TRUE(w.Unused().empty()) << w.Unused().front();
  return m;
}

UNet LoadUNet(const fs::path& dir) {
  auto json = ReadJsonFile(dir / "unet" / "config.json");
  EXPECT_TRUE(json.ok()) << json.status();
  auto config = ParseUNetConfig(*json, dir / "unet" / "config.json");
  EXPECT_TRUE(config.ok()) << config.status();
  Weights w = WeightsOf(dir / "unet" / "diffusion_pytorch_model.safetensors");
  UNet m = UNet::Load(*config, w);
  EXPECT_TRUE(w.status().ok()) << w.status();
  EXPECT_TRUE(w.Unused().empty()) << w.Unused().front();
  return m;
}

AutoencoderKL LoadVae(const fs::path& dir) {
  auto json = ReadJsonFile(dir / "vae" / "config.json");
  EXPECT_TRUE(json.ok()) << json.status();
  auto config = ParseVaeConfig(*json, dir / "vae" / "config.json");
  EXPECT_TRUE(config.ok()) << config.status();
  Weights w = WeightsOf(dir / "vae" / "diffusion_pytorch_model.safetensors");
  AutoencoderKL m = AutoencoderKL::Load(*config, w, /*with_encoder=*/true);
  EXPECT_TRUE(w.status().ok()) << w.status();
  EXPECT_TRUE(w.Unused().empty()) << w.Unused().front();
  return m;
}

std::vector<std::string> Prompts(const ReferenceCase& c) {
  return c.json()["inputs"]["prompts"].get<std::vector<std::string>>();
}

torch::Tensor Tokenize(const fs::path& tokenizer_dir, const std::vector<std::string>& prompts,
                       bool pad_with_eos) {
  TokenizerSpec spec;
  spec.type = TokenizerType::kClipBpe;
  spec.vocab = tokenizer_dir / "vocab.json";
  spec.merges = tokenizer_dir / "merges.txt";
  spec.pad_with_eos = pad_with_eos;
  auto tok = Tokenizer::Create(spec);
  if (!tok.ok()) throw std::runtime_error(std::string(tok.status().message()));
  std::vector<int64_t> ids;
  for (const auto& p : prompts) {
    auto row = (*tok)->Encode(p);
    ids.insert(ids.end(), row.begin(), row.end());
  }
  return torch::tensor(ids, torch::kInt64).view({static_cast<int64_t>(prompts.size()), -1});
}

TEST(SdComponents, Sd15TextEncoderMatchesDiffusers) {
  KILN_REQUIRE_SD_REFERENCE();
  c10::InferenceMode inference;
  ReferenceCase c("sd15-text-encoder");
  torch::Tensor ids = c.Get("input_ids");
  EXPECT_TRUE(torch::equal(Tokenize(c.model_dir() / "tokenizer", Prompts(c), true), ids));
  ClipTextModel te = LoadClip(c.model_dir() / "text_encoder", false);
  ClipTextOutput out = te.Forward(ids);
  const double atol = c.Atol("last_hidden_state");
  ExpectClose(out.last_hidden_state, c.Get("last_hidden_state"), atol, "last_hidden_state");
  ExpectClose(out.pooled, c.Get("pooler_output"), atol, "pooler_output");
  ExpectClose(out.hidden_states[out.hidden_states.size() - 2], c.Get("hidden_states_penultimate"),
              atol, "hidden_states_penultimate");
}

TEST(SdComponents, SdxlTextEncodersMatchDiffusers) {
  KILN_REQUIRE_SD_REFERENCE();
  c10::InferenceMode inference;
  ReferenceCase c("sdxl-text-encoders");
  torch::Tensor ids = c.Get("input_ids"), ids2 = c.Get("input_ids_2");
  EXPECT_TRUE(torch::equal(Tokenize(c.model_dir() / "tokenizer", Prompts(c), true), ids));
  EXPECT_TRUE(torch::equal(Tokenize(c.model_dir() / "tokenizer_2", Prompts(c), false), ids2));
  ClipTextOutput o1 = LoadClip(c.model_dir() / "text_encoder", false).Forward(ids);
  ClipTextOutput o2 = LoadClip(c.model_dir() / "text_encoder_2", true).Forward(ids2);
  const double atol = c.Atol("prompt_embeds");
  auto penultimate = [](const ClipTextOutput& o) {
    return o.hidden_states[o.hidden_states.size() - 2];
  };
  ExpectClose(o1.last_hidden_state, c.Get("te1_last_hidden_state"), atol, "te1_last_hidden_state");
  ExpectClose(penultimate(o1), c.Get("te1_penultimate"), atol, "te1_penultimate");
  ExpectClose(o2.last_hidden_state, c.Get("te2_last_hidden_state"), atol, "te2_last_hidden_state");
  ExpectClose(penultimate(o2), c.Get("te2_penultimate"), atol, "te2_penultimate");
  ExpectClose(o2.text_embeds, c.Get("te2_text_embeds"), c.Atol("te2_text_embeds"), "text_embeds");
  ExpectClose(torch::cat({penultimate(o1), penultimate(o2)}, -1), c.Get("prompt_embeds"), atol,
              "prompt_embeds");
}

void CheckUNetCase(const std::string& id) {
  c10::InferenceMode inference;
  ReferenceCase c(id);
  UNet unet = LoadUNet(c.model_dir());
  torch::Tensor sample = c.Get("sample"), context = c.Get("encoder_hidden_states");
  AddedConditions added;
  if (c.Has("text_embeds")) added = {c.Get("text_embeds"), c.Get("time_ids")};
  for (const auto& t : c.json()["inputs"]["timesteps"]) {
    const float tv = t.get<float>();
    std::string name = "noise_pred_t" + std::to_string(static_cast<int>(tv));
    if (tv != static_cast<int>(tv)) name = "noise_pred_t856p2857";
    torch::Tensor out =
        unet.Forward(sample, torch::tensor({tv}), context, c.Has("text_embeds") ? &added : nullptr);
    ExpectClose(out, c.Get(name), c.Atol(name), name);
  }
}

TEST(SdComponents, Sd15UNetMatchesDiffusers) {
  KILN_REQUIRE_SD_REFERENCE();
  CheckUNetCase("sd15-unet");
}
TEST(SdComponents, SdxlUNetMatchesDiffusers) {
  KILN_REQUIRE_SD_REFERENCE();
  CheckUNetCase("sdxl-unet");
}
TEST(SdComponents, InstructPix2PixUNetMatchesDiffusers) {
  KILN_REQUIRE_SD_REFERENCE();
  CheckUNetCase("ip2p-unet");
}

void CheckVaeCase(const std::string& id) {
  c10::InferenceMode inference;
  ReferenceCase c(id);
  AutoencoderKL vae = LoadVae(c.model_dir());
  EXPECT_NEAR(vae.config().scaling_factor, c.json()["inputs"]["scaling_factor"].get<double>(),
              1e-9);
  ExpectClose(vae.Decode(c.Get("decoder_input")), c.Get("decoded"), c.Atol("decoded"), "decoded");
  torch::Tensor x =
      c.Get("image_u8").to(torch::kFloat32).permute({0, 3, 1, 2}).contiguous() / 255.0 * 2.0 - 1.0;
  LatentDistribution dist = vae.Encode(x);
  ExpectClose(dist.mean, c.Get("latent_mean"), c.Atol("latent_mean"), "latent_mean");
  ExpectClose(dist.std(), c.Get("latent_std"), c.Atol("latent_mean"), "latent_std");
  // The tiled decode of a picture that fits one tile is the plain decode.
  EXPECT_TRUE(
      torch::equal(vae.DecodeTiled(c.Get("decoder_input")), vae.Decode(c.Get("decoder_input"))));
  // Small tiles stay close to the full decode away from the seams' attention effects.
  torch::Tensor tiled = vae.DecodeTiled(c.Get("decoder_input"), 8, 4);
  EXPECT_EQ(tiled.sizes(), c.Get("decoded").sizes());
}

TEST(SdComponents, Sd15VaeMatchesDiffusers) {
  KILN_REQUIRE_SD_REFERENCE();
  CheckVaeCase("sd15-vae");
}
TEST(SdComponents, SdxlVaeMatchesDiffusers) {
  KILN_REQUIRE_SD_REFERENCE();
  CheckVaeCase("sdxl-vae");
}

}  // namespace
}  // namespace kiln::engine::sd
