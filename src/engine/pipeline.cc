#include "engine/pipeline.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/script.h>

#include <cmath>
#include <sstream>

#include "absl/synchronization/mutex.h"
#include "core/status_util.h"
#include "core/strings.h"
#include "engine/generation.h"
#include "engine/image_codec.h"
#include "engine/model_parts.h"
#include "engine/samplers/schedule.h"
#include "engine/sd/sd_parts.h"

namespace kiln::engine {
namespace {

// Image RGB8 -> float [1, 3, H, W] in [-1, 1], as diffusers maps a picture (u8 / 255 * 2 - 1).
torch::Tensor ImageToTensor(const Image& img) {
  torch::Tensor t = torch::from_blob(const_cast<uint8_t*>(img.rgb.data()),
                                     {img.height, img.width, 3}, torch::kUInt8)
                        .to(torch::kFloat32);
  return (t.permute({2, 0, 1}).unsqueeze(0) / 255.0 * 2.0 - 1.0).contiguous();
}

// float [3, H, W] in [-1, 1] -> Image RGB8.
Image TensorToImage(const torch::Tensor& chw) {
  torch::Tensor u8 = ((chw.clamp(-1.0, 1.0) + 1.0) * 127.5)
                         .round()
                         .to(torch::kUInt8)
                         .permute({1, 2, 0})
                         .contiguous();
  Image img{static_cast<int>(u8.size(1)), static_cast<int>(u8.size(0)), {}};
  img.rgb.assign(u8.data_ptr<uint8_t>(), u8.data_ptr<uint8_t>() + u8.numel());
  return img;
}

}  // namespace

struct Pipeline::Impl {
  ModelSpec spec;
  torch::Device device{torch::kCPU};
  NoiseSchedule schedule;
  // The networks are used by one thread at a time: the replica's step loop.
  absl::Mutex mu;
  std::shared_ptr<ModelParts> parts ABSL_GUARDED_BY(mu);
  // Read once at load: asking the parts would wait behind a running step.
  int64_t parameter_bytes = 0;

  absl::StatusOr<EncodedImage> EncodeImage(const Image& image) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  absl::Status StepLocked(std::span<Generation* const> batch) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  absl::StatusOr<torch::Tensor> DecodeLocked(const TorchGeneration& generation)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  // The decoded pixels [n, 3, H, W] of a finished generation, on the CPU.
  absl::StatusOr<torch::Tensor> DecodeFinished(Generation& generation) ABSL_LOCKS_EXCLUDED(mu);
};

Pipeline::Pipeline(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Pipeline::~Pipeline() = default;

const ModelSpec& Pipeline::spec() const { return impl_->spec; }

int64_t Pipeline::parameter_bytes() const { return impl_->parameter_bytes; }

absl::StatusOr<std::unique_ptr<Pipeline>> Pipeline::Load(const ModelSpec& spec,
                                                         const std::string& device) {
  auto impl = std::make_unique<Impl>();
  impl->spec = spec;
  KILN_ASSIGN_OR_RETURN(impl->schedule, NoiseSchedule::Create(spec.schedule));
  try {
    impl->device = torch::Device(device);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(StrCat("bad device '", device, "': ", e.what()));
  }
  absl::MutexLock lock(&impl->mu);
  if (spec.format == ModelFormat::kTorchScript) {
    KILN_ASSIGN_OR_RETURN(impl->parts, LoadTorchScriptParts(spec, impl->device));
  } else {
    KILN_ASSIGN_OR_RETURN(impl->parts, sd::LoadStableDiffusionParts(spec, impl->device));
  }
  impl->parameter_bytes = impl->parts->parameter_bytes();
  return std::unique_ptr<Pipeline>(new Pipeline(std::move(impl)));
}

absl::StatusOr<std::unique_ptr<Pipeline>> Pipeline::Replicate() const {
  std::shared_ptr<ModelParts> parts;
  {
    absl::MutexLock lock(&impl_->mu);
    if (impl_->parts->concurrent()) parts = impl_->parts;
  }
  if (!parts) return Load(impl_->spec, impl_->device.str());
  auto impl = std::make_unique<Impl>();
  impl->spec = impl_->spec;
  impl->device = impl_->device;
  impl->schedule = impl_->schedule;
  impl->parameter_bytes = impl_->parameter_bytes;
  absl::MutexLock lock(&impl->mu);
  impl->parts = std::move(parts);
  return std::unique_ptr<Pipeline>(new Pipeline(std::move(impl)));
}

absl::StatusOr<EncodedImage> Pipeline::Impl::EncodeImage(const Image& image) {
  if (!parts->has_encoder()) {
    return InvalidField("image", StrCat("model '", spec.name, "' has no encoder"));
  }
  return parts->EncodeImage(ImageToTensor(image).to(device));
}

namespace {
constexpr int64_t kCheckpointMagic = 0x4b494c4e43500001;  // "KILNCP", version 1
}  // namespace

absl::StatusOr<std::string> Pipeline::Checkpoint(const Generation& generation) {
  const auto& tg = static_cast<const TorchGeneration&>(generation);
  try {
    std::vector<torch::Tensor> parts;
    const bool has_old = tg.sampler.old_denoised().defined();
    parts.push_back(torch::tensor({kCheckpointMagic, static_cast<int64_t>(tg.sampler.step()),
                                   static_cast<int64_t>(tg.sampler.num_steps()),
                                   static_cast<int64_t>(tg.n), int64_t{has_old}},
                                  torch::kInt64));
    parts.push_back(tg.x.to(torch::kCPU).clone());
    parts.push_back(has_old ? tg.sampler.old_denoised().to(torch::kCPU).clone()
                            : torch::zeros({0}));
    for (const at::Generator& g : tg.generators) {
      std::lock_guard<std::mutex> lock(const_cast<at::Generator&>(g).mutex());
      parts.push_back(g.get_state());
    }
    std::ostringstream out;
    torch::save(parts, out);
    return out.str();
  } catch (const std::exception& e) {
    return absl::InternalError(StrCat("writing a checkpoint failed: ", e.what()));
  }
}

absl::StatusOr<std::unique_ptr<Generation>> Pipeline::Resume(const GenerationRequest& request,
                                                             std::string_view checkpoint) {
  std::vector<torch::Tensor> parts;
  try {
    std::istringstream in{std::string(checkpoint)};
    torch::load(parts, in);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(StrCat("the checkpoint cannot be read: ", e.what()));
  }
  KILN_ASSIGN_OR_RETURN(std::unique_ptr<Generation> gen, Start(request));
  auto& tg = static_cast<TorchGeneration&>(*gen);
  if (parts.size() < 3 || parts[0].numel() != 5 || parts[0].scalar_type() != torch::kInt64) {
    return absl::InvalidArgumentError("the checkpoint is not a Kiln checkpoint");
  }
  const auto meta = parts[0].accessor<int64_t, 1>();
  const int64_t step = meta[1], num_steps = meta[2], n = meta[3];
  if (meta[0] != kCheckpointMagic) return absl::InvalidArgumentError("unknown checkpoint version");
  if (num_steps != tg.sampler.num_steps() || n != tg.n ||
      static_cast<int64_t>(parts.size()) != 3 + n || step < 0 || step > num_steps ||
      !parts[1].sizes().equals(tg.x.sizes())) {
    return absl::InvalidArgumentError("the checkpoint was taken from a different request");
  }
  try {
    c10::InferenceMode inference;
    tg.x = parts[1].to(tg.x.device());
    torch::Tensor old = meta[4] ? parts[2].to(tg.x.device()) : torch::Tensor();
    tg.sampler.Restore(static_cast<int>(step), old);
    for (int64_t i = 0; i < n; ++i) {
      std::lock_guard<std::mutex> lock(tg.generators[i].mutex());
      tg.generators[i].set_state(parts[3 + i]);
    }
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(StrCat("the checkpoint cannot be applied: ", e.what()));
  }
  return gen;
}

absl::StatusOr<std::unique_ptr<Generation>> Pipeline::Start(const GenerationRequest& request) {
  Impl& m = *impl_;
  KILN_RETURN_IF_ERROR(CheckRequestForModel(request, m.spec));
  c10::InferenceMode inference;
  const int64_t h = request.size.height / m.spec.downsample;
  const int64_t w = request.size.width / m.spec.downsample;
  const int64_t c = m.spec.channels;
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat32).device(m.device);

  SigmaPlan plan = PlanSigmas(m.schedule, request.sampler, request.steps);
  int start_step = 0;
  if (const auto* i2i = std::get_if<ImageToImage>(&request.conditioning)) {
    // As diffusers' img2img: keep the last int(steps * strength) steps, at least one.
    const int kept = std::clamp(static_cast<int>(request.steps * i2i->strength), 1, request.steps);
    start_step = request.steps - kept;
  }
  auto gen =
      std::make_unique<TorchGeneration>(Sampler(request.sampler, plan, start_step), request.n);
  // Image i draws from its own CPU generator seeded seed + i, in diffusers' order, so a seed
  // gives the same image on any device, in any batch, and as diffusers with that seed.
  for (int i = 0; i < request.n; ++i) {
    gen->generators.push_back(
        at::make_generator<at::CPUGeneratorImpl>(request.seed + static_cast<uint64_t>(i)));
  }

  absl::MutexLock lock(&m.mu);
  const auto* instruct = std::get_if<InstructEdit>(&request.conditioning);
  gen->guidance_scale = request.guidance_scale;
  gen->mode = instruct                        ? GuidanceMode::kInstructEdit
              : request.guidance_scale == 1.0 ? GuidanceMode::kNone
                                              : GuidanceMode::kClassifierFree;
  if (gen->mode == GuidanceMode::kNone) {  // the negative prompt would never be used
    KILN_ASSIGN_OR_RETURN(TextEmbedding text, m.parts->EncodeText({request.prompt}));
    gen->hidden = text.hidden;
    gen->pooled = text.pooled;
  } else if (request.negative_prompt.empty() && m.parts->zeros_for_empty_negative()) {
    KILN_ASSIGN_OR_RETURN(TextEmbedding text, m.parts->EncodeText({request.prompt}));
    gen->hidden = text.hidden;
    gen->hidden_neg = torch::zeros_like(text.hidden);
    gen->pooled = text.pooled;
    if (text.pooled.defined()) gen->pooled_neg = torch::zeros_like(text.pooled);
  } else {
    KILN_ASSIGN_OR_RETURN(TextEmbedding text,
                          m.parts->EncodeText({request.prompt, request.negative_prompt}));
    gen->hidden = text.hidden.slice(0, 0, 1);
    gen->hidden_neg = text.hidden.slice(0, 1, 2);
    if (text.pooled.defined()) {
      gen->pooled = text.pooled.slice(0, 0, 1);
      gen->pooled_neg = text.pooled.slice(0, 1, 2);
    }
  }
  if (m.parts->uses_added_conditions()) {
    // SDXL's size and crop conditions: (original h, w, crop top, left, target h, w).
    const float hh = static_cast<float>(request.size.height);
    const float ww = static_cast<float>(request.size.width);
    gen->time_ids = torch::tensor({hh, ww, 0.0f, 0.0f, hh, ww}, f32).view({1, 6});
  }
  gen->image_cond = torch::zeros({1, m.spec.image_cond_channels, h, w}, f32);

  if (instruct) {
    Image src = ResizeBilinear(instruct->image, request.size.width, request.size.height);
    KILN_ASSIGN_OR_RETURN(EncodedImage cond, m.EncodeImage(src));
    if (cond.mean.size(1) != m.spec.image_cond_channels) {
      return absl::InternalError(StrCat("model '", m.spec.name, "': image_cond_channels is ",
                                        m.spec.image_cond_channels, " but the encoded image has ",
                                        cond.mean.size(1)));
    }
    // InstructPix2Pix conditions on the distribution's mode, unscaled.
    gen->image_cond =
        m.spec.kind == ModelKind::kLatent ? cond.mean * m.spec.image_cond_scale : cond.mean;
    gen->image_guidance_scale = instruct->image_guidance_scale;
    gen->x = RowNoise({request.n, c, h, w}, gen->generators).to(m.device) * plan.init_noise_sigma;
  } else if (const auto* i2i = std::get_if<ImageToImage>(&request.conditioning)) {
    Image src = ResizeBilinear(i2i->image, request.size.width, request.size.height);
    KILN_ASSIGN_OR_RETURN(EncodedImage enc, m.EncodeImage(src));
    torch::Tensor init = enc.mean.expand({request.n, c, h, w});
    if (enc.std.defined()) {
      // A sample of the posterior per image (its generator's first draw), as diffusers does.
      init = init + enc.std * RowNoise({request.n, c, h, w}, gen->generators).to(m.device);
    }
    if (m.spec.kind == ModelKind::kLatent) init = init * m.spec.latent_scale;
    torch::Tensor noise = RowNoise({request.n, c, h, w}, gen->generators).to(m.device);
    gen->x = init + noise * plan.sigmas[start_step];
  } else {
    gen->x = RowNoise({request.n, c, h, w}, gen->generators).to(m.device) * plan.init_noise_sigma;
  }
  return std::unique_ptr<Generation>(std::move(gen));
}

absl::Status Pipeline::Step(std::span<Generation* const> batch) {
  absl::MutexLock lock(&impl_->mu);
  return impl_->StepLocked(batch);
}

absl::Status Pipeline::Impl::StepLocked(std::span<Generation* const> batch) {
  c10::InferenceMode inference;
  // Assemble rows: per generation, per branch, the n images.
  const bool added = parts->uses_added_conditions();
  std::vector<torch::Tensor> xs, ts, hs, conds, pooled, time_ids;
  for (Generation* g : batch) {
    auto* tg = static_cast<TorchGeneration*>(g);
    if (tg->done()) return absl::InternalError("Step called on a finished generation");
    const Sampler& s = tg->sampler;
    const int64_t n = tg->n;
    torch::Tensor x_in = tg->x * s.input_scale();
    torch::Tensor t = torch::full({n}, s.timestep(),
                                  torch::TensorOptions().dtype(torch::kFloat32).device(device));
    auto add = [&](bool positive, const torch::Tensor& cond) {
      const torch::Tensor& hidden = positive ? tg->hidden : tg->hidden_neg;
      xs.push_back(x_in);
      ts.push_back(t);
      hs.push_back(hidden.expand({n, hidden.size(1), hidden.size(2)}));
      conds.push_back(cond.expand({n, cond.size(1), cond.size(2), cond.size(3)}));
      if (added) {
        const torch::Tensor& p = positive ? tg->pooled : tg->pooled_neg;
        pooled.push_back(p.expand({n, p.size(1)}));
        time_ids.push_back(tg->time_ids.expand({n, 6}));
      }
    };
    switch (tg->mode) {
      case GuidanceMode::kNone:
        add(true, tg->image_cond);
        break;
      case GuidanceMode::kClassifierFree:
        add(true, tg->image_cond);
        add(false, tg->image_cond);
        break;
      case GuidanceMode::kInstructEdit:
        add(true, tg->image_cond);
        add(false, tg->image_cond);
        add(false, torch::zeros_like(tg->image_cond));
        break;
    }
  }
  // A lone generation without guidance (the common case when one request runs) needs no copy.
  auto join = [](std::vector<torch::Tensor>& parts) {
    return parts.size() == 1 ? parts[0] : torch::cat(parts);
  };
  torch::Tensor x_all = join(xs), t_all = join(ts), h_all = join(hs), c_all = join(conds);
  torch::Tensor p_all = added ? join(pooled) : torch::Tensor();
  torch::Tensor id_all = added ? join(time_ids) : torch::Tensor();
  const int64_t total = x_all.size(0);
  std::vector<torch::Tensor> outs;
  for (int64_t begin = 0; begin < total; begin += spec.max_batch) {
    const int64_t end = std::min<int64_t>(total, begin + spec.max_batch);
    auto rows = [&](const torch::Tensor& all) {
      return all.defined() ? all.slice(0, begin, end).contiguous() : all;
    };
    KILN_ASSIGN_OR_RETURN(torch::Tensor out,
                          parts->Denoise(DenoiseBatch{rows(x_all), rows(t_all), rows(h_all),
                                                      rows(c_all), rows(p_all), rows(id_all)}));
    outs.push_back(out);
  }
  torch::Tensor pred_all = join(outs);

  // Split the predictions back, apply guidance, and advance each sampler.
  int64_t row = 0;
  for (Generation* g : batch) {
    auto* tg = static_cast<TorchGeneration*>(g);
    const int64_t n = tg->n;
    auto take = [&] {
      torch::Tensor p = pred_all.slice(0, row, row + n);
      row += n;
      return p;
    };
    torch::Tensor pred;
    switch (tg->mode) {
      case GuidanceMode::kNone:
        pred = take();
        break;
      case GuidanceMode::kClassifierFree: {
        torch::Tensor cond = take(), uncond = take();
        pred = uncond + (cond - uncond) * tg->guidance_scale;
        break;
      }
      case GuidanceMode::kInstructEdit: {
        torch::Tensor full = take(), img = take(), uncond = take();
        pred =
            uncond + (img - uncond) * tg->image_guidance_scale + (full - img) * tg->guidance_scale;
        break;
      }
    }
    const double sigma = tg->sampler.sigma();
    torch::Tensor denoised;
    if (spec.schedule.prediction_type == PredictionType::kEps) {
      denoised = tg->x - pred * sigma;
    } else {
      const double s2 = sigma * sigma + 1.0;
      denoised = tg->x / s2 - pred * (sigma / std::sqrt(s2));
    }
    tg->sampler.Advance(tg->x, denoised, tg->generators);
    tg->denoised = denoised.slice(0, 0, 1);
  }
  return absl::OkStatus();
}

absl::StatusOr<torch::Tensor> Pipeline::Impl::DecodeLocked(const TorchGeneration& tg) {
  torch::Tensor x = tg.sampler.Output(tg.x);
  if (spec.kind == ModelKind::kLatent) x = x / spec.latent_scale;
  KILN_ASSIGN_OR_RETURN(torch::Tensor pixels, parts->Decode(x));
  return pixels.to(torch::kCPU);
}

absl::StatusOr<torch::Tensor> Pipeline::Impl::DecodeFinished(Generation& generation) {
  auto& tg = static_cast<TorchGeneration&>(generation);
  if (!tg.done()) return absl::InternalError("Finish called before the last step");
  absl::MutexLock lock(&mu);
  return DecodeLocked(tg);
}

absl::StatusOr<std::vector<Image>> Pipeline::Finish(Generation& generation) {
  c10::InferenceMode inference;
  KILN_ASSIGN_OR_RETURN(torch::Tensor pixels, impl_->DecodeFinished(generation));
  std::vector<Image> images;
  for (int64_t i = 0; i < pixels.size(0); ++i) images.push_back(TensorToImage(pixels[i]));
  return images;
}

absl::StatusOr<FloatImages> Pipeline::FinishFloat(Generation& generation) {
  c10::InferenceMode inference;
  KILN_ASSIGN_OR_RETURN(torch::Tensor pixels, impl_->DecodeFinished(generation));
  torch::Tensor nhwc = (pixels / 2.0 + 0.5).clamp(0.0, 1.0).permute({0, 2, 3, 1}).contiguous();
  FloatImages out{static_cast<int>(nhwc.size(0)),
                  static_cast<int>(nhwc.size(1)),
                  static_cast<int>(nhwc.size(2)),
                  {}};
  out.values.assign(nhwc.data_ptr<float>(), nhwc.data_ptr<float>() + nhwc.numel());
  return out;
}

absl::StatusOr<Image> Pipeline::Preview(const Generation& generation, int max_side) {
  const auto& tg = static_cast<const TorchGeneration&>(generation);
  if (!tg.denoised.defined()) return absl::FailedPreconditionError("no step taken yet");
  c10::InferenceMode inference;
  torch::Tensor d = tg.denoised.to(torch::kCPU).to(torch::kFloat32);
  if (impl_->spec.kind == ModelKind::kLatent) {
    d = d.slice(1, 0, std::min<int64_t>(3, d.size(1))) * 0.5;
    if (d.size(1) < 3) d = d.expand({1, 3, d.size(2), d.size(3)}).contiguous();
  }
  const int64_t h = d.size(2), w = d.size(3);
  const int64_t longest = std::max(h, w);
  if (longest > max_side) {
    const int64_t nh = std::max<int64_t>(1, h * max_side / longest);
    const int64_t nw = std::max<int64_t>(1, w * max_side / longest);
    d = torch::nn::functional::interpolate(d, torch::nn::functional::InterpolateFuncOptions()
                                                  .size(std::vector<int64_t>{nh, nw})
                                                  .mode(torch::kArea));
  }
  return TensorToImage(d[0]);
}

absl::StatusOr<std::vector<Image>> Pipeline::Generate(
    const GenerationRequest& request, const std::function<void(int, int)>& on_step) {
  KILN_ASSIGN_OR_RETURN(std::unique_ptr<Generation> gen, Start(request));
  Generation* batch[] = {gen.get()};
  while (!gen->done()) {
    KILN_RETURN_IF_ERROR(Step(batch));
    if (on_step) on_step(gen->step(), gen->num_steps());
  }
  return Finish(*gen);
}

}  // namespace kiln::engine
