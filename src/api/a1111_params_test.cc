// A1111 request bodies: what webuiapi sends is accepted and mapped; every field Kiln cannot
// honour is refused by name; checkpoint names resolve as A1111 writes them.
#include "api/a1111_params.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "api/errors.h"
#include "core/status_util.h"
#include "core/strings.h"
#include "engine/image_codec.h"
#include "gtest/gtest.h"

namespace kiln::api {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

// webuiapi 0.9.17's txt2img payload with its defaults (its WebUIApi() sampler and steps).
json WebuiapiTxt2Img() {
  return json::parse(R"({
    "enable_hr": false, "hr_scale": 2, "hr_upscaler": "Latent", "hr_second_pass_steps": 0,
    "hr_resize_x": 0, "hr_resize_y": 0, "hr_checkpoint_name": null, "hr_sampler_name": null,
    "hr_scheduler": null, "hr_prompt": "", "hr_negative_prompt": "", "denoising_strength": 0.7,
    "firstphase_width": 0, "firstphase_height": 0, "prompt": "a red circle", "styles": [],
    "seed": -1, "subseed": -1, "subseed_strength": 0.0, "seed_resize_from_h": 0,
    "seed_resize_from_w": 0, "batch_size": 1, "n_iter": 1, "steps": 20, "cfg_scale": 7.0,
    "width": 32, "height": 32, "restore_faces": false, "tiling": false,
    "do_not_save_samples": false, "do_not_save_grid": false, "negative_prompt": "", "eta": 1.0,
    "s_churn": 0, "s_tmax": 0, "s_tmin": 0, "s_noise": 1, "override_settings": {},
    "override_settings_restore_afterwards": true, "sampler_name": "Euler a",
    "scheduler": "automatic", "sampler_index": "Euler a", "script_name": null, "script_args": [],
    "send_images": true, "save_images": false, "alwayson_scripts": {}})");
}

std::string PngBase64(int w, int h) {
  engine::Image img{w, h, std::vector<uint8_t>(static_cast<size_t>(w) * h * 3, 90)};
  auto png = engine::EncodePng(img, {});
  return png.ok() ? Base64Encode(*png) : "";
}

class A1111ParamsTest : public ::testing::Test {
 protected:
  // The test models, plus "gen-only": test-pixel without edits, so img2img is plain img2img.
  static void SetUpTestSuite() {
    const char* env = std::getenv("KILN_TEST_MODELS");
    const fs::path models = env ? env : KILN_BINARY_DIR "/test-models";
    dir_ = fs::temp_directory_path() / ("kiln-a1111-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    for (const char* name : {"test-pixel", "test-latent"}) {
      fs::copy(models / name, dir_ / name, fs::copy_options::recursive);
    }
    fs::copy(models / "test-pixel", dir_ / "gen-only", fs::copy_options::recursive);
    std::ifstream in(dir_ / "gen-only" / "model.yaml");
    std::string yaml((std::istreambuf_iterator<char>(in)), {});
    yaml = ReplaceAll(yaml, "tasks: [generate, edit]", "tasks: [generate]");
    std::ofstream(dir_ / "gen-only" / "model.yaml") << yaml;
    auto repo = engine::ModelRepository::Load(dir_);
    ASSERT_TRUE(repo.ok()) << repo.status();
    repo_ = std::move(*repo).release();
    ASSERT_TRUE(repo_->Find("gen-only").ok()) << repo_->Find("gen-only").status();
  }
  static void TearDownTestSuite() {
    delete repo_;
    fs::remove_all(dir_);
  }

  static absl::StatusOr<A1111Request> Parse(A1111Route route, const json& body,
                                            const std::string& default_model = "test-pixel") {
    return ParseA1111Request(route, body.dump(), *repo_, default_model);
  }
  static void ExpectRefused(A1111Route route, const json& body, const std::string& field,
                            int http = 400) {
    auto r = Parse(route, body);
    ASSERT_FALSE(r.ok()) << body.dump();
    EXPECT_EQ(HttpStatusFor(r.status()), http) << r.status();
    EXPECT_EQ(FieldOf(r.status()).value_or("<none>"), field) << r.status();
  }
  static json With(json body, const json& patch) {
    body.merge_patch(patch);
    return body;
  }

  static fs::path dir_;
  static engine::ModelRepository* repo_;
};
fs::path A1111ParamsTest::dir_;
engine::ModelRepository* A1111ParamsTest::repo_ = nullptr;

TEST_F(A1111ParamsTest, WebuiapiDefaultsAreAcceptedAndMapped) {
  auto r = Parse(A1111Route::kTxt2Img, WebuiapiTxt2Img());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->spec->name, "test-pixel");
  EXPECT_EQ(r->generation.sampler.Name(), "euler_a");
  EXPECT_EQ(r->generation.steps, 20);
  EXPECT_EQ(r->generation.guidance_scale, 7.0);
  EXPECT_EQ(r->generation.size.ToString(), "32x32");
  EXPECT_LT(r->generation.seed, uint64_t{1} << 32);  // -1: drawn as A1111 draws
  EXPECT_EQ(r->batch_size, 1);
  EXPECT_EQ(r->n_iter, 1);
  EXPECT_TRUE(r->send_images);
  EXPECT_EQ(r->scheduler_label, "Automatic");
  EXPECT_EQ(r->parameters["seed"], -1);
  EXPECT_EQ(r->parameters["override_settings"]["sd_model_checkpoint"], "test-pixel");

  // Absent fields take the model's defaults; seeds and iterations as given.
  auto minimal = Parse(A1111Route::kTxt2Img,
                       json{{"prompt", ""}, {"seed", 7}, {"batch_size", 2}, {"n_iter", 3}},
                       /*default_model=*/"");
  ASSERT_TRUE(minimal.ok()) << minimal.status();
  EXPECT_EQ(minimal->generation.prompt, "");
  EXPECT_EQ(minimal->generation.seed, 7u);
  EXPECT_EQ(minimal->generation.n, 2);
  EXPECT_EQ(minimal->n_iter, 3);
  const engine::ModelSpec& spec = *minimal->spec;
  EXPECT_EQ(minimal->generation.steps, spec.defaults.steps);
  EXPECT_EQ(minimal->generation.size, spec.sizes.front());
}

TEST_F(A1111ParamsTest, SamplersAndSchedulersMapAsA1111Names) {
  auto sampler = [](json patch) {
    auto r = Parse(A1111Route::kTxt2Img, With(WebuiapiTxt2Img(), patch));
    return r.ok() ? r->generation.sampler.Name() : r.status().ToString();
  };
  EXPECT_EQ(sampler({{"sampler_name", "DPM++ 2M"}, {"eta", nullptr}}), "dpmpp_2m_karras");
  EXPECT_EQ(sampler({{"sampler_name", "DPM++ 2M"}, {"scheduler", "Uniform"}}), "dpmpp_2m");
  EXPECT_EQ(sampler({{"sampler_name", "DPM++ 2M Karras"}, {"scheduler", nullptr}}),
            "dpmpp_2m_karras");
  EXPECT_EQ(sampler({{"sampler_name", "k_euler"}, {"scheduler", "karras"}}), "euler_karras");
  EXPECT_EQ(sampler({{"sampler_name", ""}, {"sampler_index", "Euler"}}), "euler");
  EXPECT_EQ(sampler({{"sampler_name", "DDIM"}, {"eta", 0}}), "ddim");
  EXPECT_EQ(sampler({{"sampler_name", "DDIM"}, {"eta", nullptr}}), "ddim");
  EXPECT_EQ(sampler({{"sampler_name", "Euler"}, {"eta", 0.3}, {"s_noise", 0.5}}), "euler");

  const auto t = A1111Route::kTxt2Img;
  ExpectRefused(t, With(WebuiapiTxt2Img(), {{"sampler_name", "LMS"}}), "sampler_name");
  ExpectRefused(t, With(WebuiapiTxt2Img(), {{"scheduler", "exponential"}}), "scheduler");
  ExpectRefused(t, With(WebuiapiTxt2Img(), {{"eta", 0.5}}), "eta");              // Euler a
  ExpectRefused(t, With(WebuiapiTxt2Img(), {{"sampler_name", "DDIM"}}), "eta");  // eta 1
  ExpectRefused(t, With(WebuiapiTxt2Img(), {{"s_noise", 0.9}}), "s_noise");
  ExpectRefused(t, With(WebuiapiTxt2Img(), {{"sampler_name", "Euler"}, {"s_churn", 1}}), "s_churn");
}

TEST_F(A1111ParamsTest, WhatKilnCannotDoIsRefusedByName) {
  const auto t = A1111Route::kTxt2Img;
  const json base = WebuiapiTxt2Img();
  ExpectRefused(t, With(base, {{"enable_hr", true}}), "enable_hr");
  ExpectRefused(t, With(base, {{"restore_faces", true}}), "restore_faces");
  ExpectRefused(t, With(base, {{"tiling", true}}), "tiling");
  ExpectRefused(t, With(base, {{"styles", {"cinematic"}}}), "styles");
  ExpectRefused(t, With(base, {{"alwayson_scripts", {{"ControlNet", {{"args", json::array()}}}}}}),
                "alwayson_scripts");
  ExpectRefused(t, With(base, {{"script_name", "x/y/z plot"}}), "script_name");
  ExpectRefused(t, With(base, {{"subseed_strength", 0.3}}), "subseed_strength");
  ExpectRefused(t, With(base, {{"seed_resize_from_w", 512}}), "seed_resize_from_w");
  ExpectRefused(t, With(base, {{"s_min_uncond", 0.5}}), "s_min_uncond");
  ExpectRefused(t, With(base, {{"refiner_checkpoint", "refiner"}}), "refiner_checkpoint");
  ExpectRefused(t, With(base, {{"infotext", "a cat\nSteps: 20"}}), "infotext");
  ExpectRefused(t, With(base, {{"init_images", {"x"}}}), "init_images");  // img2img only
  ExpectRefused(t, With(base, {{"what", 1}}), "what");
  ExpectRefused(t, With(base, {{"override_settings", {{"CLIP_stop_at_last_layers", 2}}}}),
                "override_settings.CLIP_stop_at_last_layers");
  // Wrong types and ranges.
  ExpectRefused(t, With(base, {{"steps", "20"}}), "steps");
  ExpectRefused(t, With(base, {{"steps", 0}}), "steps");
  ExpectRefused(t, With(base, {{"cfg_scale", 31}}), "cfg_scale");
  ExpectRefused(t, With(base, {{"width", 33}}), "width");
  ExpectRefused(t, With(base, {{"height", 512}}), "height");
  ExpectRefused(t, With(base, {{"seed", -2}}), "seed");
  ExpectRefused(t, With(base, {{"batch_size", 11}}), "batch_size");
  ExpectRefused(t, With(base, {{"batch_size", 8}, {"n_iter", 5}}), "n_iter");
  ExpectRefused(t, With(base, {{"prompt", std::string(1001, 'a')}}), "prompt");
  ExpectRefused(t, With(base, {{"enable_hr", "yes"}}), "enable_hr");
  ExpectRefused(t, With(base, {{"override_settings", {{"sd_model_checkpoint", "nope"}}}}),
                "override_settings.sd_model_checkpoint", 404);
  auto not_object = ParseA1111Request(t, "[1]", *repo_, "");
  EXPECT_EQ(HttpStatusFor(not_object.status()), 400);
}

TEST_F(A1111ParamsTest, Img2ImgIsAnEditOnEditModelsAndImg2ImgOtherwise) {
  const auto i = A1111Route::kImg2Img;
  json body = With(WebuiapiTxt2Img(), {{"enable_hr", nullptr},
                                       {"hr_scale", nullptr},
                                       {"hr_upscaler", nullptr},
                                       {"hr_second_pass_steps", nullptr},
                                       {"hr_resize_x", nullptr},
                                       {"hr_resize_y", nullptr},
                                       {"hr_checkpoint_name", nullptr},
                                       {"hr_sampler_name", nullptr},
                                       {"hr_scheduler", nullptr},
                                       {"hr_prompt", nullptr},
                                       {"hr_negative_prompt", nullptr},
                                       {"firstphase_width", nullptr},
                                       {"firstphase_height", nullptr}});
  body.merge_patch({{"init_images", {"data:image/png;base64," + PngBase64(40, 24)}},
                    {"resize_mode", 0},
                    {"denoising_strength", 0.6},
                    {"image_cfg_scale", 1.5},
                    {"mask_blur", 4},
                    {"inpainting_fill", 0},
                    {"inpaint_full_res", true},
                    {"inpaint_full_res_padding", 0},
                    {"inpainting_mask_invert", 0},
                    {"initial_noise_multiplier", 1},
                    {"include_init_images", false}});

  // gen-only cannot edit: plain img2img at the given strength; image_cfg_scale is A1111's
  // instruction-edit setting and does nothing here, as in A1111.
  auto plain = Parse(i, With(body, {{"override_settings", {{"sd_model_checkpoint", "gen-only"}}}}));
  ASSERT_TRUE(plain.ok()) << plain.status();
  const auto* i2i = std::get_if<engine::ImageToImage>(&plain->generation.conditioning);
  ASSERT_NE(i2i, nullptr);
  EXPECT_EQ(i2i->strength, 0.6);
  EXPECT_EQ(i2i->image.width, 40);
  EXPECT_TRUE(plain->parameters["init_images"].is_null());

  // test-pixel edits: image_cfg_scale weighs the image; strength must be 1 or absent.
  auto edit = Parse(i, With(body, {{"denoising_strength", 1.0}, {"image_cfg_scale", 2.0}}));
  ASSERT_TRUE(edit.ok()) << edit.status();
  const auto* e = std::get_if<engine::InstructEdit>(&edit->generation.conditioning);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->image_guidance_scale, 2.0);
  EXPECT_TRUE(Parse(i, With(body, {{"denoising_strength", nullptr}})).ok());
  ExpectRefused(i, body, "denoising_strength");

  const json gen_only = With(body, {{"override_settings", {{"sd_model_checkpoint", "gen-only"}}}});
  ExpectRefused(i, With(gen_only, {{"init_images", json::array()}}), "init_images");
  ExpectRefused(i, With(gen_only, {{"init_images", {PngBase64(8, 8), PngBase64(8, 8)}}}),
                "init_images");
  ExpectRefused(i, With(gen_only, {{"init_images", {"not base64!"}}}), "init_images");
  ExpectRefused(i, With(gen_only, {{"init_images", {Base64Encode("not a png")}}}), "init_images");
  ExpectRefused(i, With(gen_only, {{"mask", PngBase64(8, 8)}}), "mask");
  ExpectRefused(i, With(gen_only, {{"resize_mode", 1}}), "resize_mode");
  ExpectRefused(i, With(gen_only, {{"initial_noise_multiplier", 0.9}}), "initial_noise_multiplier");
  ExpectRefused(i, With(gen_only, {{"denoising_strength", 0}}), "denoising_strength");
  ExpectRefused(i, With(gen_only, {{"enable_hr", false}}), "enable_hr");  // txt2img only
}

TEST_F(A1111ParamsTest, CheckpointNamesResolveAsA1111WritesThem) {
  for (const char* name : {"test-latent", "test-latent.safetensors [6ce0161689]",
                           "test-latent.ckpt", " test-latent "}) {
    auto spec = ResolveA1111Checkpoint(name, *repo_, "sd_model_checkpoint");
    ASSERT_TRUE(spec.ok()) << name << ": " << spec.status();
    EXPECT_EQ((*spec)->name, "test-latent");
  }
  auto missing = ResolveA1111Checkpoint("v1-5-pruned.safetensors", *repo_, "sd_model_checkpoint");
  EXPECT_EQ(HttpStatusFor(missing.status()), 404);
  EXPECT_EQ(FieldOf(missing.status()).value_or(""), "sd_model_checkpoint");
}

TEST_F(A1111ParamsTest, InfoNumbersSeedsAcrossIterations) {
  auto r = Parse(A1111Route::kTxt2Img, With(WebuiapiTxt2Img(), {{"seed", 100},
                                                                {"subseed", 5},
                                                                {"batch_size", 2},
                                                                {"n_iter", 2},
                                                                {"negative_prompt", "blurry"}}));
  ASSERT_TRUE(r.ok()) << r.status();
  // Iteration 1 was skipped: images 0, 1 and 3... as if image 2 failed to appear.
  json info = A1111Info(*r, {0, 1, 3}, 1700000000);
  EXPECT_EQ(info["all_seeds"], json({100, 101, 103}));
  EXPECT_EQ(info["all_subseeds"], json({5, 6, 8}));
  EXPECT_EQ(info["job_timestamp"], "20231114221320");
  EXPECT_EQ(info["sampler_name"], "Euler a");
  EXPECT_EQ(info["sd_model_name"], "test-pixel");
  EXPECT_EQ(info["infotexts"][2],
            "a red circle\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, Schedule type: "
            "Automatic, CFG scale: 7, Seed: 103, Size: 32x32, Model: test-pixel, Version: kiln");
  EXPECT_EQ(A1111Samplers().size(), 4u);
  for (const auto& s : A1111Samplers()) {
    EXPECT_TRUE(engine::ParseSamplerName(s["name"].get<std::string>()).ok()) << s;
    for (const auto& alias : s["aliases"]) {
      EXPECT_TRUE(engine::ParseSamplerName(alias.get<std::string>()).ok()) << alias;
    }
  }
}

}  // namespace
}  // namespace kiln::api
