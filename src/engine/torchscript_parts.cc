// ModelParts for Kiln's TorchScript model folders (docs/model-repository.md).
#include <torch/script.h>

#include <optional>

#include "core/status_util.h"
#include "core/strings.h"
#include "engine/model_parts.h"
#include "engine/tokenizer/tokenizer.h"

namespace kiln::engine {
namespace {

std::string ShapeString(const torch::Tensor& t) {
  std::string s = "[";
  for (int64_t i = 0; i < t.dim(); ++i) StrAppend(&s, i ? "," : "", t.size(i));
  return s + "]";
}

class TorchScriptParts final : public ModelParts {
 public:
  absl::StatusOr<TextEmbedding> EncodeText(const std::vector<std::string>& prompts) override;
  absl::StatusOr<torch::Tensor> Denoise(const DenoiseBatch& batch) override;
  bool has_encoder() const override {
    return spec_.kind == ModelKind::kPixel || encoder_.has_value();
  }
  absl::StatusOr<EncodedImage> EncodeImage(const torch::Tensor& pixels) override;
  absl::StatusOr<torch::Tensor> Decode(const torch::Tensor& latents) override;
  int64_t parameter_bytes() const override {
    int64_t bytes = 0;
    for (const torch::jit::Module* m : {&text_encoder_, &denoiser_}) {
      for (const auto& p : m->parameters()) bytes += static_cast<int64_t>(p.nbytes());
    }
    for (const auto* m : {&decoder_, &encoder_}) {
      if (!m->has_value()) continue;
      for (const auto& p : (*m)->parameters()) bytes += static_cast<int64_t>(p.nbytes());
    }
    return bytes;
  }

  ModelSpec spec_;
  torch::Device device_{torch::kCPU};
  std::unique_ptr<Tokenizer> tokenizer_;
  torch::jit::Module text_encoder_;
  torch::jit::Module denoiser_;
  std::optional<torch::jit::Module> decoder_;
  std::optional<torch::jit::Module> encoder_;
};

absl::StatusOr<TextEmbedding> TorchScriptParts::EncodeText(
    const std::vector<std::string>& prompts) {
  const int64_t len = tokenizer_->max_length();
  std::vector<int64_t> ids;
  for (const auto& p : prompts) {
    std::vector<int64_t> row = tokenizer_->Encode(p);
    ids.insert(ids.end(), row.begin(), row.end());
  }
  torch::Tensor input =
      torch::from_blob(ids.data(), {static_cast<int64_t>(prompts.size()), len}, torch::kInt64)
          .clone()
          .to(device_);
  try {
    torch::Tensor hidden = text_encoder_.forward({input}).toTensor().to(torch::kFloat32);
    if (hidden.dim() != 3 || hidden.size(0) != input.size(0) || hidden.size(1) != len) {
      return absl::InternalError(StrCat("model '", spec_.name, "': text_encoder returned ",
                                        ShapeString(hidden), ", expected [", input.size(0), ",",
                                        len, ",D]"));
    }
    return TextEmbedding{hidden, {}};
  } catch (const std::exception& e) {
    return absl::InternalError(StrCat("model '", spec_.name, "': text_encoder failed: ", e.what()));
  }
}

absl::StatusOr<torch::Tensor> TorchScriptParts::Denoise(const DenoiseBatch& b) {
  try {
    torch::Tensor out =
        denoiser_.forward({b.x, b.t, b.hidden, b.image_cond}).toTensor().to(torch::kFloat32);
    if (out.sizes() != b.x.sizes()) {
      return absl::InternalError(StrCat("model '", spec_.name, "': denoiser returned ",
                                        ShapeString(out), ", expected ", ShapeString(b.x)));
    }
    return out;
  } catch (const std::exception& e) {
    return absl::InternalError(StrCat("model '", spec_.name, "': denoiser failed: ", e.what()));
  }
}

absl::StatusOr<EncodedImage> TorchScriptParts::EncodeImage(const torch::Tensor& pixels) {
  if (spec_.kind == ModelKind::kPixel) return EncodedImage{pixels, {}};
  try {
    torch::Tensor latent = encoder_->forward({pixels}).toTensor().to(torch::kFloat32);
    const int64_t h = pixels.size(2) / spec_.downsample, w = pixels.size(3) / spec_.downsample;
    if (latent.dim() != 4 || latent.size(1) != spec_.channels || latent.size(2) != h ||
        latent.size(3) != w) {
      return absl::InternalError(StrCat("model '", spec_.name, "': encoder returned ",
                                        ShapeString(latent), ", expected [1,", spec_.channels, ",",
                                        h, ",", w, "]"));
    }
    return EncodedImage{latent, {}};
  } catch (const std::exception& e) {
    return absl::InternalError(StrCat("model '", spec_.name, "': encoder failed: ", e.what()));
  }
}

absl::StatusOr<torch::Tensor> TorchScriptParts::Decode(const torch::Tensor& latents) {
  if (spec_.kind == ModelKind::kPixel) return latents;
  torch::Tensor pixels;
  try {
    pixels = decoder_->forward({latents}).toTensor().to(torch::kFloat32);
  } catch (const std::exception& e) {
    return absl::InternalError(StrCat("model '", spec_.name, "': decoder failed: ", e.what()));
  }
  const int64_t hh = latents.size(2) * spec_.downsample, ww = latents.size(3) * spec_.downsample;
  if (pixels.dim() != 4 || pixels.size(1) != 3 || pixels.size(2) != hh || pixels.size(3) != ww) {
    return absl::InternalError(StrCat("model '", spec_.name, "': decoder returned ",
                                      ShapeString(pixels), ", expected [", latents.size(0), ",3,",
                                      hh, ",", ww, "]"));
  }
  return pixels;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ModelParts>> LoadTorchScriptParts(const ModelSpec& spec,
                                                                 const torch::Device& device) {
  auto parts = std::make_unique<TorchScriptParts>();
  parts->spec_ = spec;
  parts->device_ = device;
  KILN_ASSIGN_OR_RETURN(parts->tokenizer_, Tokenizer::Create(spec.tokenizer));
  auto load = [&](const std::filesystem::path& path) -> absl::StatusOr<torch::jit::Module> {
    try {
      torch::jit::Module m = torch::jit::load(path.string(), device);
      m.eval();
      return m;
    } catch (const std::exception& e) {
      return absl::InvalidArgumentError(
          StrCat(path.string(), ": not a loadable TorchScript module: ", e.what()));
    }
  };
  KILN_ASSIGN_OR_RETURN(parts->text_encoder_, load(spec.text_encoder));
  KILN_ASSIGN_OR_RETURN(parts->denoiser_, load(spec.denoiser));
  if (!spec.decoder.empty()) {
    KILN_ASSIGN_OR_RETURN(auto m, load(spec.decoder));
    parts->decoder_ = std::move(m);
  }
  if (!spec.encoder.empty()) {
    KILN_ASSIGN_OR_RETURN(auto m, load(spec.encoder));
    parts->encoder_ = std::move(m);
  }
  return std::unique_ptr<ModelParts>(std::move(parts));
}

}  // namespace kiln::engine
