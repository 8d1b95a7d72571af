// Latency of one generation in process: loads a model once, runs the same request RUNS times
// (different seeds), and prints the median and spread. Also times a 1-step request so the
// fixed cost (text encoding, decode) and the per-step cost can be told apart.
// Usage: kiln_bench_latency MODELS_DIR MODEL [STEPS=20] [RUNS=9] [THREADS=0]
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "core/allocator.h"
#include "engine/model_repository.h"

namespace {

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

std::vector<double> Time(kiln::engine::Pipeline* p, int steps, int runs) {
  kiln::engine::GenerationRequest r;
  r.prompt = "a red circle on a blue background";
  r.steps = steps;
  r.guidance_scale = p->spec().defaults.guidance_scale;
  r.sampler = *kiln::engine::ParseSamplerName(p->spec().defaults.sampler);
  r.size = p->spec().sizes.front();
  std::vector<double> ms;
  for (int i = 0; i < runs + 1; ++i) {
    r.seed = static_cast<uint64_t>(i);
    const auto start = std::chrono::steady_clock::now();
    auto images = p->Generate(r);
    const double t =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    if (!images.ok()) {
      fprintf(stderr, "generation failed: %s\n", std::string(images.status().message()).c_str());
      exit(1);
    }
    if (i > 0) ms.push_back(t);  // the first run warms up
  }
  return ms;
}

}  // namespace

int main(int argc, char** argv) {
  kiln::TuneAllocatorForTensors();
  if (argc < 3) {
    fprintf(stderr, "usage: %s MODELS_DIR MODEL [STEPS] [RUNS] [THREADS]\n", argv[0]);
    return 2;
  }
  const int steps = argc > 3 ? std::stoi(argv[3]) : 20;
  const int runs = argc > 4 ? std::stoi(argv[4]) : 9;
  const int threads = argc > 5 ? std::stoi(argv[5]) : 0;
  at::set_num_threads(threads > 0 ? threads
                                  : static_cast<int>(std::thread::hardware_concurrency()));
  auto repo = kiln::engine::ModelRepository::Load(argv[1]);
  if (!repo.ok()) return 1;
  auto p = (*repo)->FindPipeline(argv[2]);
  if (!p.ok()) {
    fprintf(stderr, "%s\n", std::string(p.status().message()).c_str());
    return 1;
  }
  std::vector<double> full = Time(*p, steps, runs);
  std::vector<double> one = Time(*p, 1, runs);
  const auto [lo, hi] = std::minmax_element(full.begin(), full.end());
  const auto size = (*p)->spec().sizes.front();
  printf("model=%s size=%s sampler=%s guidance=%g steps=%d runs=%d torch_threads=%d\n", argv[2],
         size.ToString().c_str(), (*p)->spec().defaults.sampler.c_str(),
         (*p)->spec().defaults.guidance_scale, steps, runs, at::get_num_threads());
  printf("generation, %d steps: median %.2f ms (min %.2f, max %.2f)\n", steps, Median(full), *lo,
         *hi);
  printf("generation, 1 step:  median %.2f ms\n", Median(one));
  printf("per step:            %.3f ms\n", (Median(full) - Median(one)) / (steps - 1));
  return 0;
}
