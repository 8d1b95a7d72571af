#include "engine/sd/weights.h"

#include <cmath>

#include "core/strings.h"

namespace kiln::engine::sd {
namespace {

std::string ShapeText(at::IntArrayRef shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) StrAppend(&s, i ? ", " : "", shape[i]);
  return s + "]";
}

}  // namespace

void Weights::AddFile(std::shared_ptr<const SafetensorsFile> file, std::string_view prefix) {
  for (const auto& [key, info] : file->tensors()) {
    if (key.compare(0, prefix.size(), prefix) != 0) continue;
    sources_[key.substr(prefix.size())] = Source{file, key};
  }
}

void Weights::Add(std::string name, std::shared_ptr<const SafetensorsFile> file, std::string key) {
  sources_[std::move(name)] = Source{std::move(file), std::move(key)};
}

torch::Tensor Weights::Take(const std::string& name, std::vector<int64_t> shape) {
  if (!status_.ok()) return {};
  auto it = sources_.find(name);
  if (it == sources_.end()) {
    // Name a file the tensor should have been in, when there is one.
    std::string where =
        sources_.empty() ? "the model" : sources_.begin()->second.file->path().string();
    Fail(absl::InvalidArgumentError(StrCat(where, ": missing tensor '", name, "'")));
    return {};
  }
  Source& src = it->second;
  const TensorInfo& info = src.file->tensors().at(src.key);
  auto fail = [&](std::string_view why) {
    Fail(absl::InvalidArgumentError(
        StrCat(src.file->path().string(), ": tensor '", src.key, "' ", why)));
    return torch::Tensor();
  };
  if (info.dtype != torch::kFloat32 && info.dtype != torch::kFloat16 &&
      info.dtype != torch::kBFloat16 && info.dtype != torch::kFloat64) {
    return fail(StrCat("has dtype ", info.dtype_name, "; weights must be F32, F16 or BF16"));
  }
  std::vector<int64_t> stored = info.shape;
  auto squeezed = [](std::vector<int64_t> s) {
    while (s.size() > 2 && s.back() == 1) s.pop_back();
    return s;
  };
  if (stored != shape && squeezed(stored) != squeezed(shape)) {
    return fail(StrCat("has shape ", ShapeText(stored), ", expected ", ShapeText(shape)));
  }
  auto got = src.file->Get(src.key);
  if (!got.ok()) {
    Fail(got.status());
    return {};
  }
  src.taken = true;
  bytes_taken_ += static_cast<int64_t>(info.end - info.begin);
  torch::Tensor t = got->reshape(shape);
  bytes_placed_ += t.numel() * static_cast<int64_t>(c10::elementSize(placement_.dtype));
  if (t.scalar_type() == placement_.dtype && placement_.device.is_cpu()) return t;
  torch::Tensor converted = t.to(placement_.device, placement_.dtype);
  // The stored bytes are no longer needed: let the kernel drop them (peak memory while loading
  // stays near the converted weights' size instead of both copies).
  src.file->Release(src.key);
  return converted;
}

std::vector<std::string> Weights::Unused() const {
  std::vector<std::string> out;
  for (const auto& [name, src] : sources_) {
    if (!src.taken) out.push_back(name);
  }
  return out;
}

Linear LoadLinear(Weights& w, const std::string& name, int64_t in, int64_t out, bool bias) {
  Linear l;
  l.weight = w.Take(name + ".weight", {out, in});
  if (bias) l.bias = w.Take(name + ".bias", {out});
  return l;
}

Conv2d LoadConv(Weights& w, const std::string& name, int64_t in, int64_t out, int64_t kernel,
                int64_t stride, int64_t padding) {
  Conv2d c;
  c.weight = w.Take(name + ".weight", {out, in, kernel, kernel});
  c.bias = w.Take(name + ".bias", {out});
  c.stride = stride;
  c.padding = padding < 0 ? kernel / 2 : padding;
  return c;
}

GroupNorm LoadGroupNorm(Weights& w, const std::string& name, int64_t channels, int64_t groups,
                        double eps) {
  if (channels % groups != 0) {
    w.Fail(absl::InvalidArgumentError(
        StrCat(name, ": ", channels, " channels do not split into ", groups, " groups")));
  }
  return GroupNorm{w.Take(name + ".weight", {channels}), w.Take(name + ".bias", {channels}), groups,
                   eps};
}

LayerNorm LoadLayerNorm(Weights& w, const std::string& name, int64_t channels, double eps) {
  return LayerNorm{w.Take(name + ".weight", {channels}), w.Take(name + ".bias", {channels}), eps};
}

torch::Tensor TimestepEmbedding(const torch::Tensor& t, int64_t dim, bool flip_sin_to_cos,
                                double freq_shift) {
  const int64_t half = dim / 2;
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat32).device(t.device());
  torch::Tensor exponent = torch::arange(0, half, f32) * static_cast<float>(-std::log(10000.0)) /
                           static_cast<float>(half - freq_shift);
  torch::Tensor args = t.to(torch::kFloat32).unsqueeze(1) * torch::exp(exponent).unsqueeze(0);
  torch::Tensor emb = flip_sin_to_cos ? torch::cat({torch::cos(args), torch::sin(args)}, 1)
                                      : torch::cat({torch::sin(args), torch::cos(args)}, 1);
  if (dim % 2 == 1) emb = torch::constant_pad_nd(emb, {0, 1});
  return emb;
}

torch::Tensor Attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                        int64_t heads, bool causal) {
  const int64_t b = q.size(0), tq = q.size(1), tk = k.size(1), inner = q.size(2);
  const int64_t d = inner / heads;
  auto split = [&](const torch::Tensor& x, int64_t t) {
    return x.view({b, t, heads, d}).transpose(1, 2);
  };
  torch::Tensor out = at::scaled_dot_product_attention(split(q, tq), split(k, tk), split(v, tk),
                                                       /*attn_mask=*/{}, /*dropout_p=*/0.0, causal);
  return out.transpose(1, 2).reshape({b, tq, inner});
}

}  // namespace kiln::engine::sd
