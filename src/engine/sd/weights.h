// Weights: the named tensors of one model component, gathered from safetensors files (a diffusers
// component file, or the part of a single-file checkpoint under a key prefix, renamed to the
// diffusers names). Modules take their parameters from it by name with the shape they expect;
// the first missing tensor or wrong shape is kept as the error (naming the file and the tensor),
// so a module's loader reads as a plain list of its parameters and checks status() once.
// Not thread-safe: used by one loader at a time.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "engine/sd/safetensors.h"
#include "torch/torch.h"

namespace kiln::engine::sd {

// Where the parameters go: the dtype they are computed in and the device.
struct Placement {
  torch::ScalarType dtype = torch::kFloat32;
  torch::Device device = torch::kCPU;
};

class Weights {
 public:
  explicit Weights(Placement placement) : placement_(placement) {}

  // Adds every tensor of `file` whose name starts with `prefix`, under its name without the
  // prefix.
  void AddFile(std::shared_ptr<const SafetensorsFile> file, std::string_view prefix = "");
  // Adds one tensor under `name` (e.g. an LDM key under its diffusers name).
  void Add(std::string name, std::shared_ptr<const SafetensorsFile> file, std::string key);

  bool Has(const std::string& name) const { return sources_.count(name) > 0; }

  // The tensor `name` with `shape`, converted to the placement. A stored [O, I, 1, 1] serves an
  // expected [O, I] and vice versa (1x1 convolutions and linear layers hold the same numbers).
  // On a missing name or a wrong shape, records the error (the first one is kept) and returns an
  // undefined tensor.
  torch::Tensor Take(const std::string& name, std::vector<int64_t> shape);

  absl::Status status() const { return status_; }
  void Fail(absl::Status status) {
    if (status_.ok()) status_ = std::move(status);
  }
  // Names never taken: a checkpoint with parts the architecture does not use.
  std::vector<std::string> Unused() const;
  const Placement& placement() const { return placement_; }
  // Sum of the stored bytes of the tensors taken, and of the tensors handed out (in the
  // placement's dtype).
  int64_t bytes_taken() const { return bytes_taken_; }
  int64_t bytes_placed() const { return bytes_placed_; }

 private:
  struct Source {
    std::shared_ptr<const SafetensorsFile> file;
    std::string key;
    bool taken = false;
  };
  Placement placement_;
  std::map<std::string, Source> sources_;
  absl::Status status_;
  int64_t bytes_taken_ = 0;
  int64_t bytes_placed_ = 0;
};

// The common layers, as plain parameter holders with a forward call. Thread-safe once loaded
// (the forward calls only read).
struct Linear {
  torch::Tensor weight, bias;  // bias undefined when the layer has none
  torch::Tensor operator()(const torch::Tensor& x) const { return torch::linear(x, weight, bias); }
};
struct Conv2d {
  torch::Tensor weight, bias;
  int64_t stride = 1;
  int64_t padding = 0;
  torch::Tensor operator()(const torch::Tensor& x) const {
    return torch::conv2d(x, weight, bias, stride, padding);
  }
};
struct GroupNorm {
  torch::Tensor weight, bias;
  int64_t groups = 32;
  double eps = 1e-5;
  torch::Tensor operator()(const torch::Tensor& x) const {
    return torch::group_norm(x, groups, weight, bias, eps);
  }
};
struct LayerNorm {
  torch::Tensor weight, bias;
  double eps = 1e-5;
  torch::Tensor operator()(const torch::Tensor& x) const {
    return torch::layer_norm(x, {weight.size(0)}, weight, bias, eps);
  }
};

Linear LoadLinear(Weights& w, const std::string& name, int64_t in, int64_t out, bool bias = true);
Conv2d LoadConv(Weights& w, const std::string& name, int64_t in, int64_t out, int64_t kernel,
                int64_t stride = 1, int64_t padding = -1);  // padding -1: kernel / 2
GroupNorm LoadGroupNorm(Weights& w, const std::string& name, int64_t channels, int64_t groups,
                        double eps);
LayerNorm LoadLayerNorm(Weights& w, const std::string& name, int64_t channels, double eps);

// Sinusoidal timestep embedding as diffusers' get_timestep_embedding, in float32: half = dim/2,
// freq_i = exp(-ln(10000) i / (half - shift)), [sin, cos] (or [cos, sin] when flip_sin_to_cos).
torch::Tensor TimestepEmbedding(const torch::Tensor& t, int64_t dim, bool flip_sin_to_cos,
                                double freq_shift);

// Multi-head attention over [B, T, H*D] tensors, q already projected (no scaling applied yet).
torch::Tensor Attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                        int64_t heads, bool causal = false);

}  // namespace kiln::engine::sd
