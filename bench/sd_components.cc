// Times the native SD engine's parts on one model: load, one UNet call (classifier-free guidance:
// batch 2) and one VAE decode, with the peak resident memory after loading. bench/sd_cpu.py runs
// it beside diffusers on the same model, threads and dtype, and writes the ratios.
//
// usage: kiln_bench_sd MODEL_DIR [--dtype float32|bfloat16|float16] [--size WxH] [--iters N]
//        [--threads N]
// Prints one JSON object.
#include <sys/resource.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "core/strings.h"
#include "engine/model_parts.h"
#include "engine/sd/sd_parts.h"
#include "nlohmann/json.hpp"

namespace {

double PeakRssBytes() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) * 1024.0;
}

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s MODEL_DIR [--dtype D] [--size WxH] [--iters N] [--threads N]\n",
                 argv[0]);
    return 2;
  }
  std::string dir = argv[1], dtype = "float32", size = "";
  int iters = 3, threads = 0;
  for (int i = 2; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--dtype")) dtype = argv[i + 1];
    if (!std::strcmp(argv[i], "--size")) size = argv[i + 1];
    if (!std::strcmp(argv[i], "--iters")) iters = std::max(1, std::atoi(argv[i + 1]));
    if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[i + 1]);
  }
  if (threads > 0) at::set_num_threads(threads);
  c10::InferenceMode inference;
  auto spec = kiln::engine::sd::LoadDiffusersSpec(dir);
  if (!spec.ok()) {
    std::fprintf(stderr, "%s\n", std::string(spec.status().message()).c_str());
    return 1;
  }
  spec->dtype = dtype;
  const double rss_before = PeakRssBytes();
  auto t0 = std::chrono::steady_clock::now();
  auto parts = kiln::engine::sd::LoadStableDiffusionParts(*spec, torch::kCPU);
  if (!parts.ok()) {
    std::fprintf(stderr, "%s\n", std::string(parts.status().message()).c_str());
    return 1;
  }
  const double load_seconds = Seconds(t0);
  const double rss_after_load = PeakRssBytes();

  kiln::ImageSize image = spec->sizes.front();
  if (!size.empty()) image = *kiln::ParseImageSize(size);
  const int64_t h = image.height / spec->downsample, w = image.width / spec->downsample;
  torch::manual_seed(0);
  // One CFG step: two rows.
  auto text = (*parts)->EncodeText({"a photo of a cat", ""});
  if (!text.ok()) {
    std::fprintf(stderr, "%s\n", std::string(text.status().message()).c_str());
    return 1;
  }
  kiln::engine::DenoiseBatch batch;
  batch.x = torch::randn({2, spec->channels, h, w});
  batch.t = torch::full({2}, 500.0f);
  batch.hidden = text->hidden;
  batch.image_cond = torch::zeros({2, spec->image_cond_channels, h, w});
  if ((*parts)->uses_added_conditions()) {
    batch.pooled = text->pooled;
    const float hh = static_cast<float>(image.height), ww = static_cast<float>(image.width);
    batch.time_ids = torch::tensor({hh, ww, 0.0f, 0.0f, hh, ww}).repeat({2, 1});
  }
  std::vector<double> unet, vae;
  for (int i = 0; i <= iters; ++i) {  // the first call warms up and is not counted
    auto t = std::chrono::steady_clock::now();
    auto out = (*parts)->Denoise(batch);
    if (!out.ok()) {
      std::fprintf(stderr, "%s\n", std::string(out.status().message()).c_str());
      return 1;
    }
    if (i > 0) unet.push_back(Seconds(t));
  }
  torch::Tensor latents = torch::randn({1, spec->channels, h, w});
  for (int i = 0; i <= iters; ++i) {
    auto t = std::chrono::steady_clock::now();
    auto out = (*parts)->Decode(latents);
    if (!out.ok()) return 1;
    if (i > 0) vae.push_back(Seconds(t));
  }
  nlohmann::json j = {{"model", dir},
                      {"dtype", dtype},
                      {"size", image.ToString()},
                      {"threads", at::get_num_threads()},
                      {"load_seconds", load_seconds},
                      {"unet_cfg_step_seconds", Median(unet)},
                      {"vae_decode_seconds", Median(vae)},
                      {"peak_rss_bytes_before_load", rss_before},
                      {"peak_rss_bytes_after_load", rss_after_load},
                      {"peak_rss_bytes_end", PeakRssBytes()}};
  std::printf("%s\n", j.dump().c_str());
  return 0;
}
