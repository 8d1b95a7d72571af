#include "engine/sd/safetensors.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "engine/sd/weights.h"

namespace kiln::engine::sd {
namespace {

namespace fs = std::filesystem;

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("kiln-safetensors-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  fs::path Write(const std::string& name, const std::string& bytes) {
    fs::path p = dir_ / name;
    std::ofstream(p, std::ios::binary) << bytes;
    return p;
  }
  // A file with a hand-written header and `data_bytes` zero bytes of data.
  fs::path WithHeader(const std::string& header, size_t data_bytes) {
    std::string out(8, '\0');
    for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
    return Write("h.safetensors", out + header + std::string(data_bytes, '\0'));
  }
  std::string OpenError(const fs::path& p) {
    auto f = SafetensorsFile::Open(p);
    return f.ok() ? "" : std::string(f.status().message());
  }

  fs::path dir_;
};

TEST_F(SafetensorsTest, RoundTripsEveryWeightDtypeAsViewsOfTheMapping) {
  torch::Tensor f32 = torch::arange(12, torch::kFloat32).reshape({3, 4});
  torch::Tensor f16 = torch::linspace(-2, 2, 6).to(torch::kFloat16).reshape({2, 3});
  torch::Tensor bf16 = torch::linspace(-1, 1, 5).to(torch::kBFloat16);
  torch::Tensor i64 = torch::tensor({49406, 49407}, torch::kInt64);
  fs::path p =
      Write("m.safetensors",
            SerializeSafetensors({{"a.weight", f32}, {"b", f16}, {"c", bf16}, {"ids", i64}}));
  auto file = SafetensorsFile::Open(p);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->tensors().size(), 4u);
  for (const auto& [name, want] : std::vector<std::pair<std::string, torch::Tensor>>{
           {"a.weight", f32}, {"b", f16}, {"c", bf16}, {"ids", i64}}) {
    auto got = (*file)->Get(name);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(got->scalar_type(), want.scalar_type()) << name;
    EXPECT_TRUE(torch::equal(*got, want)) << name;
  }
  // Zero-copy: two reads of a tensor see the same bytes of the mapping.
  EXPECT_EQ((*file)->Get("a.weight")->data_ptr(), (*file)->Get("a.weight")->data_ptr());
  // A view keeps the mapping alive after the file object is dropped.
  torch::Tensor kept = *(*file)->Get("a.weight");
  file->reset();
  EXPECT_TRUE(torch::equal(kept, f32));
  // Writing to a view changes only the process's private copy, never the file.
  kept.fill_(7);
  EXPECT_TRUE(torch::equal(*(*SafetensorsFile::Open(p))->Get("a.weight"), f32));
  auto missing = (*SafetensorsFile::Open(p))->Get("nope");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("nope"), std::string::npos);
}

TEST_F(SafetensorsTest, MetadataIsReadAndNotATensor) {
  const std::string header =
      R"({"__metadata__":{"format":"pt"},"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  auto file = SafetensorsFile::Open(WithHeader(header, 8));
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->metadata().at("format"), "pt");
  EXPECT_EQ((*file)->tensors().count("__metadata__"), 0u);
}

TEST_F(SafetensorsTest, BrokenFilesAreErrorsThatNameTheFileAndTheTensor) {
  struct Case {
    std::string header;
    size_t data;
    std::string expect;
  };
  const Case cases[] = {
      {R"({"x":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 12, "outside the data"},
      {R"({"x":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}})", 16, "need 12 bytes"},
      {R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
       R"("y":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
       12, "overlap"},
      {R"({"x":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}})", 2, "unsupported dtype"},
      {R"({"x":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8, "non-negative"},
      {R"({"x":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", 8,
       "larger than the file"},
      {R"({"x":{"dtype":"F32","shape":[2]}})", 8, "data_offsets"},
      {R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8, "outside the data"},
      {R"([1,2,3])", 0, "not a JSON object"},
      {R"({"x":)", 0, "not valid JSON"},
      {R"({"__metadata__":{"a":1}})", 0, "__metadata__.a"},
  };
  for (const Case& c : cases) {
    const std::string error = OpenError(WithHeader(c.header, c.data));
    EXPECT_NE(error.find(c.expect), std::string::npos) << c.header << " -> " << error;
    EXPECT_NE(error.find("h.safetensors"), std::string::npos) << error;
  }
  EXPECT_NE(OpenError(Write("short.safetensors", "abc")).find("truncated"), std::string::npos);
  // A header length beyond the file (a truncated download) or beyond any sane header.
  std::string huge(8, '\0');
  huge[4] = 1;  // 2^32 bytes
  EXPECT_NE(OpenError(Write("huge.safetensors", huge + "{}")).find("limit"), std::string::npos);
  std::string cut(8, '\0');
  cut[0] = 100;
  EXPECT_NE(OpenError(Write("cut.safetensors", cut + "{}")).find("truncated"), std::string::npos);
  // The error for a tensor names the tensor.
  const std::string named =
      OpenError(WithHeader(R"({"unet.conv_in.weight":{"dtype":"F32","shape":[3],)"
                           R"("data_offsets":[0,8]}})",
                           8));
  EXPECT_NE(named.find("unet.conv_in.weight"), std::string::npos) << named;
}

TEST_F(SafetensorsTest, PicklesAreRefusedWithWhyAndHowToConvert) {
  for (std::string name : {"model.ckpt", "pytorch_model.bin", "weights.pt"}) {
    const std::string error = OpenError(Write(name, "whatever"));
    EXPECT_NE(error.find("arbitrary code"), std::string::npos) << error;
    EXPECT_NE(error.find("safetensors"), std::string::npos) << error;
    EXPECT_NE(error.find(name), std::string::npos) << error;
  }
  // A pickle under a .safetensors name is recognised by its first bytes.
  EXPECT_NE(OpenError(Write("renamed.safetensors", "PK\x03\x04zipdata")).find("arbitrary code"),
            std::string::npos);
  EXPECT_NE(OpenError(Write("p.safetensors", std::string("\x80\x02}q\x00", 5))).find("arbitrary"),
            std::string::npos);
}

TEST_F(SafetensorsTest, WeightsCheckShapesAndKeepTheFirstError) {
  fs::path p = Write("w.safetensors",
                     SerializeSafetensors({{"lin.weight", torch::ones({4, 3}, torch::kFloat16)},
                                           {"lin.bias", torch::zeros({4}, torch::kFloat16)},
                                           {"conv.weight", torch::ones({4, 3, 1, 1})},
                                           {"extra", torch::ones({1})}}));
  Weights w(Placement{});
  w.AddFile(*SafetensorsFile::Open(p));
  Linear lin = LoadLinear(w, "lin", 3, 4);
  ASSERT_TRUE(w.status().ok()) << w.status();
  EXPECT_EQ(lin.weight.scalar_type(), torch::kFloat32);  // upcast to the placement's dtype
  // A 1x1 convolution's weight serves a linear layer of the same numbers.
  EXPECT_TRUE(w.Take("conv.weight", {4, 3}).defined());
  EXPECT_EQ(w.Unused(), std::vector<std::string>{"extra"});

  w.Take("lin.weight", {3, 4});
  w.Take("missing", {1});
  ASSERT_FALSE(w.status().ok());
  EXPECT_NE(w.status().message().find("'lin.weight' has shape [4, 3], expected [3, 4]"),
            std::string::npos)
      << w.status();
  EXPECT_NE(w.status().message().find("w.safetensors"), std::string::npos);
}

}  // namespace
}  // namespace kiln::engine::sd
