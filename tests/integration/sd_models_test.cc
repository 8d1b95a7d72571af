// Stable Diffusion models served natively by a running `kiln serve`: diffusers folders and a
// single-file checkpoint beside broken ones, through the HTTP API and `kiln generate`. The models
// are the tiny random-weight ones in ../shared/testdata/sd-reference (their numerics are checked
// against diffusers by the engine's unit tests); here the point is serving.
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include "core/strings.h"
#include "engine/image_codec.h"
#include "gtest/gtest.h"
#include "tests/integration/server_process.h"

namespace kiln::testing {
namespace {

namespace fs = std::filesystem;

fs::path ReferenceDir() {
  return fs::path(KILN_SOURCE_DIR) / ".." / "shared" / "testdata" / "sd-reference";
}

// A models folder with the reference models (as links), a single-file checkpoint and three
// broken models.
class SdModels : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!fs::exists(ReferenceDir() / "manifest.json")) return;
    dir_ = new fs::path(fs::temp_directory_path() / ("kiln-sd-models-" + std::to_string(getpid())));
    const fs::path& d = *dir_;
    const fs::path ref = ReferenceDir();
    fs::create_directories(d);
    for (const char* m : {"sd15-tiny", "sdxl-tiny", "ip2p-tiny"}) {
      fs::create_directory_symlink(ref / m, d / m);
    }
    fs::create_symlink(ref / "sd15-tiny-ldm.safetensors", d / "sd15-tiny-ldm.safetensors");
    fs::create_symlink(ref / "sd15-tiny-ldm.yaml", d / "sd15-tiny-ldm.yaml");
    std::ofstream(d / "sd15-tiny-ldm.kiln.yaml") << "text_encoder_heads: 4\n";
    fs::create_directory_symlink(ref / "sd15-tiny" / "tokenizer", d / "clip-tokenizer");
    // A diffusers folder without its UNet.
    const fs::path no_unet = d / "broken-no-unet";
    fs::create_directories(no_unet);
    for (const char* part : {"model_index.json", "vae", "text_encoder", "tokenizer", "scheduler"}) {
      fs::create_symlink(ref / "sd15-tiny" / part, no_unet / part);
    }
    // A diffusers folder whose UNet weights were cut short (an interrupted download).
    const fs::path cut = d / "broken-truncated";
    fs::create_directories(cut / "unet");
    for (const char* part : {"model_index.json", "vae", "text_encoder", "tokenizer", "scheduler"}) {
      fs::create_symlink(ref / "sd15-tiny" / part, cut / part);
    }
    fs::create_symlink(ref / "sd15-tiny" / "unet" / "config.json", cut / "unet" / "config.json");
    const std::string weights =
        ReadFile((ref / "sd15-tiny" / "unet" / "diffusion_pytorch_model.safetensors").string());
    std::ofstream(cut / "unet" / "diffusion_pytorch_model.safetensors", std::ios::binary)
        << weights.substr(0, weights.size() / 2);
    // A pickle checkpoint.
    std::ofstream(d / "old-model.ckpt", std::ios::binary) << "PK\x03\x04 not really";
    server_ = new ServerProcess({"--models", d.string()});
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
    if (dir_) fs::remove_all(*dir_);
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override {
    if (!dir_) {
      GTEST_SKIP() << "../shared/testdata/sd-reference is absent (it is not part of the "
                      "repository)";
    }
    ASSERT_TRUE(server_->started()) << server_->log();
  }

  static HttpResult Generate(const nlohmann::json& body) {
    return HttpPost(server_->url() + "/v1/images/generations", body.dump(), "application/json");
  }
  static engine::Image FirstImage(const HttpResult& r) {
    auto b64 = Body(r)["data"][0]["b64_json"].get<std::string>();
    auto png = Base64Decode(b64);
    EXPECT_TRUE(png.ok());
    auto img = engine::DecodeImage(png.ok() ? *png : "", {});
    EXPECT_TRUE(img.ok()) << img.status();
    return img.ok() ? *img : engine::Image{};
  }

  static fs::path* dir_;
  static ServerProcess* server_;
};
fs::path* SdModels::dir_ = nullptr;
ServerProcess* SdModels::server_ = nullptr;

TEST_F(SdModels, ModelsListShowsArchitectureFormatAndSizes) {
  nlohmann::json models = Body(HttpGet(server_->url() + "/v1/models"))["data"];
  std::map<std::string, nlohmann::json> by_id;
  for (const auto& m : models) by_id[m["id"].get<std::string>()] = m;
  ASSERT_TRUE(by_id.count("sd15-tiny")) << models.dump();
  EXPECT_EQ(by_id["sd15-tiny"]["architecture"], "sd1");
  EXPECT_EQ(by_id["sd15-tiny"]["format"], "diffusers");
  EXPECT_EQ(by_id["sd15-tiny"]["sizes"][0], "128x128");
  EXPECT_EQ(by_id["sd15-tiny"]["any_size"]["multiple_of"], 8);
  EXPECT_EQ(by_id["sd15-tiny"]["defaults"]["sampler"], "euler");  // PNDM has no Kiln sampler
  // float32 parameters of the tiny model: (1.60 + 1.67 + 0.52) M parameters x 4 bytes.
  const int64_t memory = by_id["sd15-tiny"]["memory_bytes"].get<int64_t>();
  EXPECT_GT(memory, 14'000'000);
  EXPECT_LT(memory, 16'000'000);
  EXPECT_EQ(by_id["sdxl-tiny"]["architecture"], "sdxl");
  EXPECT_EQ(by_id["sdxl-tiny"]["defaults"]["guidance_scale"], 5.0);
  EXPECT_EQ(by_id["ip2p-tiny"]["architecture"], "instruct-pix2pix");
  EXPECT_EQ(by_id["ip2p-tiny"]["tasks"], nlohmann::json::array({"edit"}));
  EXPECT_EQ(by_id["ip2p-tiny"]["defaults"]["sampler"], "euler_a");
  EXPECT_EQ(by_id["sd15-tiny-ldm"]["format"], "single-file");
  EXPECT_EQ(by_id["sd15-tiny-ldm"]["architecture"], "sd1");
  EXPECT_FALSE(by_id.count("broken-no-unet"));
}

TEST_F(SdModels, ReadyzNamesEachBrokenModelAndItsFile) {
  HttpResult r = HttpGet(server_->url() + "/readyz");
  EXPECT_EQ(r.status, 503);
  nlohmann::json models = Body(r)["models"];
  EXPECT_EQ(models["sd15-tiny"], "ready");
  EXPECT_EQ(models["sd15-tiny-ldm"], "ready");
  const std::string no_unet = models["broken-no-unet"]["error"].get<std::string>();
  EXPECT_NE(no_unet.find("no unet/"), std::string::npos) << no_unet;
  const std::string cut = models["broken-truncated"]["error"].get<std::string>();
  EXPECT_NE(cut.find("diffusion_pytorch_model.safetensors"), std::string::npos) << cut;
  EXPECT_NE(cut.find("truncated"), std::string::npos) << cut;
  const std::string pickle = models["old-model"]["error"].get<std::string>();
  EXPECT_NE(pickle.find("arbitrary code"), std::string::npos) << pickle;
}

TEST_F(SdModels, GeneratesAtTheNativeSizeAndAnyMultipleOfEight) {
  HttpResult r = Generate({{"model", "sd15-tiny"},
                           {"prompt", "a photo of a cat"},
                           {"steps", 3},
                           {"seed", 5},
                           {"response_format", "b64_json"}});
  ASSERT_EQ(r.status, 200) << r.body;
  engine::Image img = FirstImage(r);
  EXPECT_EQ(img.width, 128);
  EXPECT_EQ(img.height, 128);
  r = Generate({{"model", "sd15-tiny"},
                {"prompt", "a photo of a cat"},
                {"size", "192x96"},
                {"steps", 2},
                {"response_format", "b64_json"}});
  ASSERT_EQ(r.status, 200) << r.body;
  img = FirstImage(r);
  EXPECT_EQ(img.width, 192);
  EXPECT_EQ(img.height, 96);
  r = Generate({{"model", "sd15-tiny"}, {"prompt", "x"}, {"size", "100x100"}});
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(Body(r)["error"]["param"], "size") << r.body;
  // An instruction-edit model does not do text-to-image.
  r = Generate({{"model", "ip2p-tiny"}, {"prompt", "x"}});
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(Body(r)["error"]["param"], "model") << r.body;
}

TEST_F(SdModels, SdxlAndInstructPix2PixServe) {
  HttpResult r = Generate({{"model", "sdxl-tiny"},
                           {"prompt", "a photo of a cat"},
                           {"steps", 2},
                           {"response_format", "b64_json"}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(FirstImage(r).width, 128);
  engine::Image src = FirstImage(r);
  auto png = engine::EncodePng(src, {});
  ASSERT_TRUE(png.ok());
  HttpResult edit =
      HttpPostForm(server_->url() + "/v1/images/edits", {{"model", "ip2p-tiny"},
                                                         {"prompt", "turn the circle blue"},
                                                         {"steps", "2"},
                                                         {"response_format", "b64_json"},
                                                         {"image", *png, "src.png", "image/png"}});
  ASSERT_EQ(edit.status, 200) << edit.body;
  EXPECT_EQ(FirstImage(edit).width, 128);
}

TEST_F(SdModels, ConcurrentRequestsWithDifferentStepsAndSamplersAllFinishAndSeedsRepeat) {
  const std::vector<std::pair<int, std::string>> mix = {
      {2, "euler"}, {5, "dpmpp_2m_karras"}, {3, "euler_a"}, {4, "ddim"}};
  std::vector<HttpResult> results(mix.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < mix.size(); ++i) {
    threads.emplace_back([&, i] {
      results[i] = Generate({{"model", "sd15-tiny"},
                             {"prompt", "a red circle"},
                             {"steps", mix[i].first},
                             {"sampler", mix[i].second},
                             {"seed", 11},
                             {"response_format", "b64_json"}});
    });
  }
  for (auto& t : threads) t.join();
  for (size_t i = 0; i < mix.size(); ++i) ASSERT_EQ(results[i].status, 200) << results[i].body;
  // The euler_a request again, alone: the same picture (same seed, its own generator), up to the
  // rounding noise of having shared denoiser calls with other requests.
  HttpResult again = Generate({{"model", "sd15-tiny"},
                               {"prompt", "a red circle"},
                               {"steps", 3},
                               {"sampler", "euler_a"},
                               {"seed", 11},
                               {"response_format", "b64_json"}});
  ASSERT_EQ(again.status, 200);
  const engine::Image a = FirstImage(again), b = FirstImage(results[2]);
  ASSERT_EQ(a.rgb.size(), b.rgb.size());
  int worst = 0;
  for (size_t i = 0; i < a.rgb.size(); ++i) worst = std::max(worst, std::abs(a.rgb[i] - b.rgb[i]));
  EXPECT_LE(worst, 2);
}

TEST_F(SdModels, TheSingleFileCheckpointDrawsTheDiffusersFoldersPicture) {
  // The two hold the same weights: `kiln generate` gives the same pixels from either.
  const fs::path out = *dir_ / "out";
  fs::create_directories(out);
  std::vector<engine::Image> images;
  for (const char* model : {"sd15-tiny", "sd15-tiny-ldm"}) {
    const std::string file = (out / (std::string(model) + ".png")).string();
    CommandResult r =
        RunKiln({"generate", "--models", dir_->string(), "--model", model, "--prompt",
                 "a photo of a cat", "--steps", "3", "--seed", "9", "--output", file});
    ASSERT_EQ(r.exit_code, 0) << r.output;
    auto img = engine::DecodeImage(ReadFile(file), {});
    ASSERT_TRUE(img.ok()) << img.status();
    images.push_back(*img);
  }
  EXPECT_EQ(images[0].rgb, images[1].rgb);
}

TEST_F(SdModels, ModelsInspectReportsComponentsAndProblems) {
  CommandResult ok = RunKiln({"models", "inspect", (*dir_ / "sd15-tiny-ldm.safetensors").string()});
  ASSERT_EQ(ok.exit_code, 0) << ok.output;
  EXPECT_NE(ok.output.find("single-file"), std::string::npos) << ok.output;
  EXPECT_NE(ok.output.find("every tensor present"), std::string::npos) << ok.output;
  CommandResult json = RunKiln({"models", "inspect", "--json", (*dir_ / "sdxl-tiny").string()});
  ASSERT_EQ(json.exit_code, 0) << json.output;
  nlohmann::json report = nlohmann::json::parse(json.output);
  EXPECT_EQ(report["architecture"], "sdxl");
  std::set<std::string> parts;
  for (const auto& c : report["components"]) {
    parts.insert(c["name"].get<std::string>());
    EXPECT_GT(c["parameters"].get<int64_t>(), 0);
    EXPECT_EQ(c["dtypes"].begin().key(), "F16");
  }
  EXPECT_EQ(parts, (std::set<std::string>{"text_encoder", "text_encoder_2", "unet", "vae"}));
  CommandResult broken = RunKiln({"models", "inspect", (*dir_ / "broken-truncated").string()});
  EXPECT_EQ(broken.exit_code, 1);
  EXPECT_NE(broken.output.find("truncated or damaged"), std::string::npos) << broken.output;
}

}  // namespace
}  // namespace kiln::testing
