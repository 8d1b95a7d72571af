// Validation of the images endpoints' inputs: every bad field gets an error that names it.
#include "api/openai_params.h"

#include <cstdlib>

#include "api/errors.h"
#include "core/status_util.h"
#include "engine/image_codec.h"
#include "gtest/gtest.h"

namespace kiln::api {
namespace {

class OpenAiParamsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const char* dir = std::getenv("KILN_TEST_MODELS");
    auto repo = engine::ModelRepository::Load(dir ? dir : KILN_BINARY_DIR "/test-models");
    ASSERT_TRUE(repo.ok()) << repo.status();
    repo_ = std::move(*repo).release();
  }
  static void TearDownTestSuite() { delete repo_; }

  void ExpectField(const std::string& body, const std::string& field, int http = 400) {
    auto r = ParseGenerationsRequest(body, *repo_);
    ASSERT_FALSE(r.ok()) << body;
    EXPECT_EQ(HttpStatusFor(r.status()), http) << body << ": " << r.status();
    EXPECT_EQ(FieldOf(r.status()).value_or("<none>"), field) << body << ": " << r.status();
  }
  static engine::ModelRepository* repo_;
};
engine::ModelRepository* OpenAiParamsTest::repo_ = nullptr;

TEST_F(OpenAiParamsTest, ValidRequestGetsModelDefaults) {
  auto r = ParseGenerationsRequest(R"({"prompt": "a red circle", "model": "test-latent"})", *repo_);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->model, "test-latent");
  EXPECT_EQ(r->generation.steps, 6);
  EXPECT_EQ(r->generation.sampler.Name(), "dpmpp_2m_karras");
  EXPECT_EQ(r->generation.size.ToString(), "32x32");
  EXPECT_EQ(r->generation.n, 1);
  EXPECT_LT(r->generation.seed, uint64_t{1} << 53);

  auto full = ParseGenerationsRequest(
      R"({"prompt":"p","model":"test-pixel","n":2,"size":"16x16","steps":4,"guidance_scale":3.5,
          "seed":42,"sampler":"Euler a","negative_prompt":"blurry","response_format":"b64_json",
          "user":"u1","quality":"standard"})",
      *repo_);
  ASSERT_TRUE(full.ok()) << full.status();
  EXPECT_EQ(full->generation.seed, 42u);
  EXPECT_EQ(full->generation.sampler.Name(), "euler_a");
  EXPECT_EQ(full->generation.negative_prompt, "blurry");
}

TEST_F(OpenAiParamsTest, EveryBadFieldIsNamed) {
  ExpectField(R"({"model":"test-pixel"})", "prompt");
  ExpectField(R"({"prompt":""})", "prompt");
  ExpectField(R"({"prompt":7})", "prompt");
  ExpectField(R"({"prompt":")" + std::string(1001, 'a') + R"("})", "prompt");
  ExpectField(R"({"prompt":"p","negative_prompt":")" + std::string(1001, 'a') + R"("})",
              "negative_prompt");
  ExpectField(R"({"prompt":"p","model":"nope"})", "model", 404);
  ExpectField(R"({"prompt":"p","size":"1024x1024"})", "size");
  ExpectField(R"({"prompt":"p","size":"big"})", "size");
  ExpectField(R"({"prompt":"p","n":0})", "n");
  ExpectField(R"({"prompt":"p","n":11})", "n");
  ExpectField(R"({"prompt":"p","n":"2"})", "n");
  ExpectField(R"({"prompt":"p","steps":0})", "steps");
  ExpectField(R"({"prompt":"p","steps":151})", "steps");
  ExpectField(R"({"prompt":"p","steps":2.5})", "steps");
  ExpectField(R"({"prompt":"p","sampler":"heun"})", "sampler");
  ExpectField(R"({"prompt":"p","guidance_scale":31})", "guidance_scale");
  ExpectField(R"({"prompt":"p","guidance_scale":-1})", "guidance_scale");
  ExpectField(R"({"prompt":"p","seed":-3})", "seed");
  ExpectField(R"({"prompt":"p","response_format":"jpeg"})", "response_format");
  ExpectField(R"({"prompt":"p","output_format":"webp"})", "output_format");
  ExpectField(R"({"prompt":"p","stepz":4})", "stepz");
}

TEST_F(OpenAiParamsTest, MalformedBodies) {
  for (const char* body : {"", "{", "[1,2]", "\"prompt\"", "{\"prompt\": \"a\",}"}) {
    auto r = ParseGenerationsRequest(body, *repo_);
    ASSERT_FALSE(r.ok()) << body;
    EXPECT_EQ(HttpStatusFor(r.status()), 400);
  }
}

std::vector<http::FormPart> Form(std::initializer_list<std::pair<std::string, std::string>> fields,
                                 const std::string* image) {
  std::vector<http::FormPart> parts;
  for (const auto& [k, v] : fields) parts.push_back({k, "", "", v});
  if (image) parts.push_back({"image", "in.png", "image/png", *image});
  return parts;
}

TEST_F(OpenAiParamsTest, Edits) {
  const std::string png =
      *engine::EncodePng(engine::Image{8, 8, std::vector<uint8_t>(192, 128)}, {});
  auto ok = ParseEditsRequest(
      Form({{"prompt", "make it blue"}, {"model", "test-pixel"}, {"n", "2"}}, &png), *repo_);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_TRUE(std::holds_alternative<engine::InstructEdit>(ok->generation.conditioning));
  EXPECT_EQ(ok->generation.n, 2);

  auto i2i = ParseEditsRequest(
      Form({{"prompt", "p"}, {"model", "test-pixel"}, {"mode", "img2img"}, {"strength", "0.4"}},
           &png),
      *repo_);
  ASSERT_TRUE(i2i.ok()) << i2i.status();
  EXPECT_DOUBLE_EQ(std::get<engine::ImageToImage>(i2i->generation.conditioning).strength, 0.4);

  // A job form's text ends up in the job record (JSON): bytes that are not UTF-8 are a 400.
  auto job = ParseJobForm(Form({{"prompt", "p"}, {"webhook", "http://127.0.0.1:9/\xff"}}, nullptr),
                          *repo_, http::AddressPolicy());
  EXPECT_EQ(FieldOf(job.status()).value_or("<ok>"), "webhook") << job.status();

  const std::string not_image = "hello";
  struct Case {
    std::vector<http::FormPart> parts;
    std::string field;
  };
  std::vector<Case> cases = {
      {Form({{"prompt", "p"}}, nullptr), "image"},
      {Form({{"prompt", "p"}}, &not_image), "image"},
      {Form({{"model", "test-pixel"}}, &png), "prompt"},
      {Form({{"prompt", "p"}, {"n", "x"}}, &png), "n"},
      {Form({{"prompt", "p"}, {"mask", "m"}}, &png), "mask"},
      {Form({{"prompt", "p"}, {"mode", "inpaint"}}, &png), "mode"},
      {Form({{"prompt", "caf\xc3"}}, &png), "prompt"},  // not UTF-8: 400, not a 500 later
      {Form({{"prompt", "p"}, {"negative_prompt", "\xff"}}, &png), "negative_prompt"},
      {Form({{"prompt", "p"}, {"mode", "img2img"}, {"strength", "0"}}, &png), "strength"},
      {Form({{"prompt", "p"}, {"strength", "0.5"}, {"model", "test-pixel"}}, &png), "strength"},
      {Form({{"prompt", "p"}, {"image_guidance_scale", "99"}}, &png), "image_guidance_scale"},
  };
  for (const auto& c : cases) {
    auto r = ParseEditsRequest(c.parts, *repo_);
    ASSERT_FALSE(r.ok()) << c.field;
    EXPECT_EQ(HttpStatusFor(r.status()), 400) << r.status();
    EXPECT_EQ(FieldOf(r.status()).value_or("<none>"), c.field) << r.status();
  }
}

TEST(Errors, OpenAiShape) {
  http::Response r = ErrorResponse(InvalidField("n", "n must be in 1..10"));
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(
      r.body,
      R"({"error":{"code":"invalid_value","message":"n must be in 1..10","param":"n","type":"invalid_request_error"}})");
  EXPECT_EQ(ErrorResponse(absl::ResourceExhaustedError("busy")).status, 429);
  EXPECT_EQ(ErrorResponse(absl::InternalError("x")).status, 500);
  EXPECT_EQ(RenderHttpError(413, "too big").status, 413);
}

}  // namespace
}  // namespace kiln::api
