// The concrete Generation used inside engine/: tensors and sampler state of one request.
// Not thread-safe: the pipeline serialises the calls that touch it.
#pragma once

#include <vector>

#include "engine/pipeline.h"
#include "engine/samplers/sampler.h"
#include "torch/torch.h"

namespace kiln::engine {

enum class GuidanceMode {
  kNone,            // 1 row per image: prompt only
  kClassifierFree,  // 2 rows: prompt, negative prompt
  kInstructEdit,    // 3 rows: prompt + image, negative + image, negative + no image
};

class TorchGeneration final : public Generation {
 public:
  TorchGeneration(Sampler sampler, int n) : sampler(std::move(sampler)), n(n) {}

  int step() const override { return sampler.step(); }
  int num_steps() const override { return sampler.num_steps(); }
  bool done() const override { return sampler.done(); }
  int rows() const override {
    return n * (mode == GuidanceMode::kNone ? 1 : mode == GuidanceMode::kClassifierFree ? 2 : 3);
  }

  Sampler sampler;
  int n;
  GuidanceMode mode = GuidanceMode::kNone;
  double guidance_scale = 1.0;
  double image_guidance_scale = 1.0;
  torch::Tensor x;                        // [n, C, h, w] in sigma space
  torch::Tensor hidden;                   // [1, T, D] prompt
  torch::Tensor hidden_neg;               // [1, T, D] negative (or empty) prompt; undefined
                                          // without guidance (GuidanceMode::kNone)
  torch::Tensor pooled, pooled_neg;       // [1, P]: SDXL's pooled text embeddings
  torch::Tensor time_ids;                 // [1, 6]: SDXL's size and crop conditions
  torch::Tensor image_cond;               // [1, C', h, w]; zeros for text-to-image
  std::vector<at::Generator> generators;  // one per image, seeded seed + i
  torch::Tensor denoised;                 // the last step's estimate of x0, for previews
};

}  // namespace kiln::engine
