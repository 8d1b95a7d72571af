// Step-level (continuous) batching against request-level batching, on the same mixed workload
// in one process: Poisson arrivals, steps uniform in 4..50, two image sizes. Request-level is
// what most model servers do: form a batch from the waiting requests, run it to completion,
// then form the next. Both modes use the same Scheduler, replica and cost model; only the
// admission rule differs. Runs the modes alternately (A B A B ...) and prints a markdown table
// with the ratios.
//
// Usage: kiln_bench_batching MODELS_DIR MODEL [REQUESTS=160] [RATE=40] [ROUNDS=2] [THREADS=1]
//                            [MAX_ROWS=model's max_batch]
//   SIZES come from the model's model.yaml (the first two are used, 70% / 30%).
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <thread>

#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/mutex.h"
#include "core/allocator.h"
#include "core/logging.h"
#include "engine/model_repository.h"
#include "sched/scheduler.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Arrival {
  double at_s;
  int steps;
  kiln::ImageSize size;
};

struct Result {
  double throughput = 0;  // requests per second, over the whole run
  double p50 = 0, p95 = 0, mean = 0;
  double short_p50 = 0;  // requests of at most 10 steps
};

double Quantile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(q * (v.size() - 1) + 0.5)];
}

Result Run(kiln::engine::ModelRepository* repo, const std::string& model,
           const std::vector<Arrival>& arrivals, bool request_level, int max_rows) {
  kiln::sched::SchedulerOptions o;
  o.request_level = request_level;
  o.max_queued_sync = 1 << 20;
  o.max_batch_rows = max_rows;  // the bench measures queueing; admission would cut it short
  kiln::sched::Scheduler scheduler(repo, nullptr, nullptr, o);
  if (!scheduler.Start().ok()) std::abort();
  const kiln::engine::ModelSpec& spec = **repo->Find(model);
  const size_t n = arrivals.size();
  std::vector<double> latency(n), finished_at(n);
  absl::BlockingCounter done(static_cast<int>(n));
  const auto t0 = Clock::now();
  for (size_t i = 0; i < n; ++i) {
    std::this_thread::sleep_until(t0 + std::chrono::duration<double>(arrivals[i].at_s));
    auto item = std::make_shared<kiln::sched::WorkItem>();
    item->id = "r" + std::to_string(i);
    item->model = model;
    item->request.prompt = "a red circle on a white background";
    item->request.steps = arrivals[i].steps;
    item->request.guidance_scale = spec.defaults.guidance_scale;
    item->request.sampler = *kiln::engine::ParseSamplerName(spec.defaults.sampler);
    item->request.size = arrivals[i].size;
    item->request.seed = i;
    item->cost = *scheduler.EstimateCost(model, item->request);
    const auto submitted = Clock::now();
    item->on_done = [&, i, submitted](kiln::sched::WorkItem&,
                                      absl::StatusOr<std::vector<kiln::engine::Image>> r) {
      if (!r.ok()) std::abort();
      const auto now = Clock::now();
      latency[i] = std::chrono::duration<double>(now - submitted).count();
      finished_at[i] = std::chrono::duration<double>(now - t0).count();
      done.DecrementCount();
    };
    if (!scheduler.SubmitSync(item, 0).ok()) std::abort();
  }
  done.Wait();
  for (const auto& l : scheduler.Loads()) {
    std::fprintf(stderr, "%s: denoiser calls %d, s/row-pixel at max batch %.3g\n",
                 request_level ? "request" : "step", l.steps_observed, l.seconds_per_row_pixel);
  }
  scheduler.Stop(std::chrono::seconds(1));
  Result r;
  r.throughput = n / *std::max_element(finished_at.begin(), finished_at.end());
  r.p50 = Quantile(latency, 0.5);
  r.p95 = Quantile(latency, 0.95);
  double sum = 0;
  std::vector<double> short_ones;
  for (size_t i = 0; i < n; ++i) {
    sum += latency[i];
    if (arrivals[i].steps <= 10) short_ones.push_back(latency[i]);
  }
  r.mean = sum / n;
  r.short_p50 = short_ones.empty() ? 0 : Quantile(short_ones, 0.5);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr,
                 "usage: %s MODELS_DIR MODEL [REQUESTS=160] [RATE=40] [ROUNDS=2] [THREADS=1]\n",
                 argv[0]);
    return 2;
  }
  kiln::TuneAllocatorForTensors();
  const std::string model = argv[2];
  const int requests = argc > 3 ? std::atoi(argv[3]) : 160;
  const double rate = argc > 4 ? std::atof(argv[4]) : 40;
  const int rounds = argc > 5 ? std::atoi(argv[5]) : 2;
  at::set_num_threads(argc > 6 ? std::atoi(argv[6]) : 1);
  kiln::log::Init(kiln::log::Level::kWarn, false);
  const int max_rows = argc > 7 ? std::atoi(argv[7]) : 0;  // 0: the model's max_batch
  auto repo = kiln::engine::ModelRepository::Load(argv[1]);
  if (!repo.ok() || !(*repo)->Find(model).ok()) {
    std::fprintf(stderr, "cannot load %s from %s\n", model.c_str(), argv[1]);
    return 1;
  }
  const auto& sizes = (**(*repo)->Find(model)).sizes;
  std::mt19937 rng(7);
  std::exponential_distribution<double> gap(rate);
  std::uniform_int_distribution<int> steps(4, 50);
  std::bernoulli_distribution big(0.3);
  std::vector<Arrival> arrivals;
  double t = 0;
  for (int i = 0; i < requests; ++i) {
    t += gap(rng);
    arrivals.push_back({t, steps(rng), sizes.size() > 1 && big(rng) ? sizes[1] : sizes[0]});
  }
  std::vector<Result> step_runs, request_runs;
  for (int round = 0; round < rounds; ++round) {
    // Alternate which mode goes first, so that drift in the machine favours neither.
    if (round % 2 == 0) {
      step_runs.push_back(Run(repo->get(), model, arrivals, false, max_rows));
      request_runs.push_back(Run(repo->get(), model, arrivals, true, max_rows));
    } else {
      request_runs.push_back(Run(repo->get(), model, arrivals, true, max_rows));
      step_runs.push_back(Run(repo->get(), model, arrivals, false, max_rows));
    }
  }
  auto mean = [](const std::vector<Result>& v, double Result::*f) {
    double s = 0;
    for (const auto& r : v) s += r.*f;
    return s / v.size();
  };
  std::printf(
      "| batching | throughput (req/s) | p50 (s) | p95 (s) | mean (s) | p50 of <=10-step (s) |\n");
  std::printf("|---|---|---|---|---|---|\n");
  for (int round = 0; round < rounds; ++round) {
    for (auto [name, r] : {std::pair{"request-level", request_runs[round]},
                           std::pair{"step-level", step_runs[round]}}) {
      std::printf("| %s (round %d) | %.2f | %.3f | %.3f | %.3f | %.3f |\n", name, round + 1,
                  r.throughput, r.p50, r.p95, r.mean, r.short_p50);
    }
  }
  std::printf(
      "\nstep/request ratios (mean of rounds): throughput %.2fx, p50 %.2fx, p95 %.2fx, "
      "p50 of short requests %.2fx (latency ratios < 1 are better)\n",
      mean(step_runs, &Result::throughput) / mean(request_runs, &Result::throughput),
      mean(step_runs, &Result::p50) / mean(request_runs, &Result::p50),
      mean(step_runs, &Result::p95) / mean(request_runs, &Result::p95),
      mean(step_runs, &Result::short_p50) / mean(request_runs, &Result::short_p50));
  std::printf("workload: %d requests, Poisson %.1f req/s, steps uniform 4..50, sizes %s (70%%)",
              requests, rate, sizes[0].ToString().c_str());
  if (sizes.size() > 1) std::printf(" and %s (30%%)", sizes[1].ToString().c_str());
  std::printf(", model %s, max batch %d rows\n", model.c_str(),
              max_rows > 0 ? max_rows : (**(*repo)->Find(model)).max_batch);
  return 0;
}
