// Starts `kiln serve` and talks to it over a socket with a real HTTP client (libcurl).
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "core/strings.h"
#include "engine/image_codec.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/server_process.h"

namespace kiln::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

class HttpApiTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = new ServerProcess({"--models", TestModelsDir(), "--data", TempDir("data")});
    ASSERT_TRUE(server_->started()) << server_->log();
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
    fs::remove_all(fs::temp_directory_path() / ("kiln_it_" + std::to_string(getpid())));
  }
  static std::string TempDir(const std::string& name) {
    fs::path p = fs::temp_directory_path() / ("kiln_it_" + std::to_string(getpid())) / name;
    fs::create_directories(p);
    return p.string();
  }
  static std::string Url(const std::string& path) { return server_->url() + path; }
  static HttpResult PostJson(const json& body) {
    return HttpPost(Url("/v1/images/generations"), body.dump(), "application/json");
  }
  // Asserts an OpenAI-shaped error with the given status and param.
  static void ExpectError(const HttpResult& r, long status, const json& param) {
    ASSERT_TRUE(r.error.empty()) << r.error;
    EXPECT_EQ(r.status, status) << r.body;
    json body = json::parse(r.body, nullptr, false);
    ASSERT_TRUE(body.is_object()) << r.body;
    ASSERT_TRUE(body.contains("error")) << r.body;
    EXPECT_TRUE(body["error"]["message"].is_string());
    EXPECT_TRUE(body["error"]["type"].is_string());
    EXPECT_EQ(body["error"]["param"], param) << r.body;
  }
  static ServerProcess* server_;
};
ServerProcess* HttpApiTest::server_ = nullptr;

TEST_F(HttpApiTest, ServesTheUiFilesEmbeddedAtBuildTime) {
  // Every file in web/ is served byte for byte at /ui/{name}, and index.html at /.
  int files = 0;
  for (const auto& f : fs::directory_iterator(fs::path(KILN_SOURCE_DIR) / "web")) {
    const std::string name = f.path().filename().string();
    HttpResult r = HttpGet(Url("/ui/" + name));
    EXPECT_EQ(r.status, 200) << name;
    EXPECT_EQ(r.body, ReadFile(f.path().string())) << name;
    ++files;
  }
  ASSERT_GT(files, 0);
  HttpResult index = HttpGet(Url("/"));
  EXPECT_EQ(index.status, 200);
  EXPECT_EQ(index.headers["content-type"], "text/html; charset=utf-8");
  EXPECT_NE(index.headers["content-security-policy"].find("default-src 'self'"), std::string::npos);
  EXPECT_EQ(index.body, ReadFile((fs::path(KILN_SOURCE_DIR) / "web" / "index.html").string()));
  EXPECT_EQ(HttpGet(Url("/ui/no-such-file.js")).status, 404);
  EXPECT_EQ(HttpGet(Url("/ui/.hidden")).status, 404);
  EXPECT_EQ(HttpGet(Url("/ui/%2e%2e%2fCMakeLists.txt")).status, 404);
}

TEST_F(HttpApiTest, HealthReadyAndModels) {
  EXPECT_EQ(HttpGet(Url("/healthz")).status, 200);
  HttpResult ready = HttpGet(Url("/readyz"));
  EXPECT_EQ(ready.status, 200) << ready.body;
  HttpResult models = HttpGet(Url("/v1/models"));
  ASSERT_EQ(models.status, 200);
  json m = json::parse(models.body);
  EXPECT_EQ(m["object"], "list");
  ASSERT_EQ(m["data"].size(), 3u);  // test-identity, test-latent, test-pixel
  EXPECT_EQ(m["data"][0]["id"], "test-identity");
  EXPECT_EQ(m["data"][0]["object"], "model");
  EXPECT_EQ(HttpGet(Url("/v1/models/test-pixel")).status, 200);
  ExpectError(HttpGet(Url("/v1/models/nope")), 404, "model");
  ExpectError(HttpGet(Url("/no/such/route")), 404, nullptr);
  ExpectError(HttpPost(Url("/healthz"), "", "text/plain"), 405, nullptr);
}

TEST_F(HttpApiTest, GenerationReturnsSeededPngs) {
  json req = {{"prompt", "a red circle"}, {"model", "test-pixel"},       {"n", 2}, {"seed", 11},
              {"size", "16x16"},          {"sampler", "DPM++ 2M Karras"}};
  HttpResult a = PostJson(req);
  ASSERT_EQ(a.status, 200) << a.body;
  EXPECT_EQ(a.headers["content-type"], "application/json");
  json body = json::parse(a.body);
  EXPECT_TRUE(body["created"].is_number_integer());
  ASSERT_EQ(body["data"].size(), 2u);
  EXPECT_EQ(body["data"][1]["seed"], 12);
  const std::string png = Base64Decode(body["data"][0]["b64_json"].get<std::string>()).value();
  auto img = engine::DecodeImage(png, {});
  ASSERT_TRUE(img.ok()) << img.status();
  EXPECT_EQ(img->width, 16);
  auto text = engine::ReadPngText(png);
  ASSERT_TRUE(text.ok());
  bool found = false;
  for (const auto& [k, v] : *text) {
    if (k != "kiln") continue;
    json params = json::parse(v);
    EXPECT_EQ(params["prompt"], "a red circle");
    EXPECT_EQ(params["seed"], 11);
    EXPECT_EQ(params["sampler"], "dpmpp_2m_karras");
    EXPECT_EQ(params["model"], "test-pixel");
    found = true;
  }
  EXPECT_TRUE(found);
  // Same request and seed: byte-identical PNGs.
  HttpResult b = PostJson(req);
  ASSERT_EQ(b.status, 200);
  EXPECT_EQ(json::parse(b.body)["data"], body["data"]);
}

TEST_F(HttpApiTest, BadGenerationRequestsGetNamedErrors) {
  ExpectError(PostJson({{"model", "test-pixel"}}), 400, "prompt");
  ExpectError(PostJson({{"prompt", ""}}), 400, "prompt");
  ExpectError(PostJson({{"prompt", std::string(1001, 'x')}}), 400, "prompt");
  ExpectError(PostJson({{"prompt", "p"}, {"model", "nope"}}), 404, "model");
  ExpectError(PostJson({{"prompt", "p"}, {"size", "4096x4096"}}), 400, "size");
  ExpectError(PostJson({{"prompt", "p"}, {"n", 11}}), 400, "n");
  ExpectError(PostJson({{"prompt", "p"}, {"n", 0}}), 400, "n");
  ExpectError(PostJson({{"prompt", "p"}, {"steps", 151}}), 400, "steps");
  ExpectError(PostJson({{"prompt", "p"}, {"sampler", "plms"}}), 400, "sampler");
  ExpectError(PostJson({{"prompt", "p"}, {"guidance_scale", 100}}), 400, "guidance_scale");
  ExpectError(HttpPost(Url("/v1/images/generations"), "{\"prompt\": ", "application/json"), 400,
              nullptr);
  ExpectError(
      HttpPost(Url("/v1/images/generations"), "prompt=p", "application/x-www-form-urlencoded"), 415,
      "content-type");
  // Over the JSON limit (1 MiB) but under the server's body limit: 413 from the endpoint.
  ExpectError(HttpPost(Url("/v1/images/generations"),
                       "{\"prompt\": \"" + std::string(2 << 20, 'a') + "\"}", "application/json"),
              413, nullptr);
  // Over the server's body limit (32 MiB): 413 before the body is read.
  HttpResult huge =
      HttpPost(Url("/v1/images/generations"), std::string(33 << 20, 'a'), "application/json");
  if (huge.error.empty()) ExpectError(huge, 413, nullptr);
  // The server is still fine.
  EXPECT_EQ(HttpGet(Url("/healthz")).status, 200);
}

TEST_F(HttpApiTest, EditsOverMultipart) {
  const std::string png =
      *engine::EncodePng(engine::Image{20, 20, std::vector<uint8_t>(1200, 90)}, {});
  HttpResult ok = HttpPostForm(Url("/v1/images/edits"), {{"image", png, "in.png", "image/png"},
                                                         {"prompt", "make it blue"},
                                                         {"model", "test-pixel"},
                                                         {"seed", "3"},
                                                         {"size", "32x32"}});
  ASSERT_EQ(ok.status, 200) << ok.body;
  auto out = engine::DecodeImage(
      Base64Decode(json::parse(ok.body)["data"][0]["b64_json"].get<std::string>()).value(), {});
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(out->width, 32);

  HttpResult i2i = HttpPostForm(Url("/v1/images/edits"), {{"image", png, "in.png", "image/png"},
                                                          {"prompt", "a blue square"},
                                                          {"mode", "img2img"},
                                                          {"strength", "0.6"},
                                                          {"model", "test-latent"}});
  EXPECT_EQ(i2i.status, 200) << i2i.body;

  ExpectError(HttpPostForm(Url("/v1/images/edits"), {{"prompt", "p"}}), 400, "image");
  ExpectError(
      HttpPostForm(Url("/v1/images/edits"),
                   {{"image", "not an image at all", "x.png", "image/png"}, {"prompt", "p"}}),
      400, "image");
  // An image over the pixel limit (4096 x 4096): rejected from its header, before decoding.
  std::string big = *engine::EncodePng(engine::Image{1, 1, {0, 0, 0}}, {});
  big[16] = 0;
  big[17] = 0;
  big[18] = 0x40;
  big[19] = 0x01;  // width 16385
  ExpectError(HttpPostForm(Url("/v1/images/edits"),
                           {{"image", big, "big.png", "image/png"}, {"prompt", "p"}}),
              400, "image");
  ExpectError(HttpPost(Url("/v1/images/edits"), "{}", "application/json"), 415, "content-type");
  const std::string truncated =
      "--bnd\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\nmake it";
  ExpectError(HttpPost(Url("/v1/images/edits"), truncated, "multipart/form-data; boundary=bnd"),
              400, nullptr);
}

TEST(HttpApiStandalone, BrokenModelFailsReadyzButOthersServe) {
  fs::path dir = fs::temp_directory_path() / ("kiln_broken_" + std::to_string(getpid()));
  fs::create_directories(dir / "broken");
  std::ofstream(dir / "broken" / "model.yaml") << "kind: pixel\ntasks: [generate]\n";
  fs::create_directory_symlink(fs::path(TestModelsDir()) / "test-pixel", dir / "test-pixel");
  ServerProcess server({"--models", dir.string(), "--data", (dir / "data").string()});
  ASSERT_TRUE(server.started()) << server.log();
  HttpResult ready = HttpGet(server.url() + "/readyz");
  EXPECT_EQ(ready.status, 503);
  json body = json::parse(ready.body);
  EXPECT_EQ(body["models"]["test-pixel"], "ready");
  EXPECT_NE(body["models"]["broken"]["error"].get<std::string>().find("sizes"), std::string::npos)
      << ready.body;
  EXPECT_NE(server.log().find("model failed to load"), std::string::npos);
  HttpResult gen = HttpPost(server.url() + "/v1/images/generations",
                            R"({"prompt":"p","model":"test-pixel","steps":2})", "application/json");
  EXPECT_EQ(gen.status, 200) << gen.body;
  HttpResult broken = HttpPost(server.url() + "/v1/images/generations",
                               R"({"prompt":"p","model":"broken"})", "application/json");
  EXPECT_EQ(broken.status, 503) << broken.body;
  fs::remove_all(dir);
}

TEST(HttpApiStandalone, SigtermLetsTheInFlightRequestFinish) {
  ServerProcess server({"--models", TestModelsDir(), "--log-level", "debug"});
  ASSERT_TRUE(server.started()) << server.log();
  HttpResult result;
  std::thread client([&] {
    result = HttpPost(server.url() + "/v1/images/generations",
                      R"({"prompt":"p","model":"test-latent","steps":150,"n":10,"size":"64x32"})",
                      "application/json");
  });
  ASSERT_TRUE(server.WaitForLog("generation started", std::chrono::seconds(60)));
  server.Signal(SIGTERM);
  client.join();
  EXPECT_EQ(result.status, 200) << result.error << result.body;
  EXPECT_EQ(json::parse(result.body)["data"].size(), 10u);
  EXPECT_EQ(server.Wait(std::chrono::seconds(60)), 0) << server.log();
  EXPECT_NE(server.log().find("stopped"), std::string::npos);
}

}  // namespace
}  // namespace kiln::testing
