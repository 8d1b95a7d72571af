// `kiln loadtest`: drives a Kiln (or any OpenAI-images-compatible) server with a weighted mix of
// requests, closed loop (--concurrency) or open loop (--rate, Poisson arrivals), sync or as
// async jobs, and reports throughput, latency percentiles, a histogram and errors by code.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace kiln::loadtest {

enum class Mode { kSync, kJob };

// One line of a mix file: {"weight": 3, "mode": "sync"|"job", "request": {...}}.
struct Template {
  double weight = 1;
  Mode mode = Mode::kSync;
  nlohmann::json request;  // the body of /v1/images/generations or /v1/jobs
};

// Parses a JSONL mix; errors name the line ("line 3: weight must be > 0"). Blank lines and lines
// starting with '#' are skipped. At most 1000 templates.
absl::StatusOr<std::vector<Template>> ParseMix(std::string_view text, Mode default_mode);

struct Options {
  std::string server = "http://127.0.0.1:8080";
  int concurrency = 0;  // closed loop: requests in flight
  double rate = 0;      // open loop: mean arrivals per second
  int64_t requests = 0;
  double duration_seconds = 0;
  std::vector<Template> mix;
  int max_in_flight = 10000;  // open loop: arrivals beyond this are counted as skipped
  int timeout_seconds = 300;  // per request, and per job from submission to its end
  int threads = 1;
  uint64_t seed = 1;      // picks templates; requests keep their own seeds
  std::string save_dir;   // when set, every image is written here
  bool progress = false;  // a progress line on stderr
};

struct Report {
  int64_t sent = 0;
  int64_t ok = 0;
  int64_t skipped = 0;  // open loop, over --max-in-flight
  double seconds = 0;
  int64_t images = 0;
  std::map<std::string, int64_t> errors;  // "HTTP 429", "connect: Connection refused", ...
  std::vector<double> latencies;          // seconds, of the successful requests, sorted

  double Throughput() const { return seconds > 0 ? static_cast<double>(ok) / seconds : 0; }
  // Nearest-rank percentile (0 when there is no sample).
  double Percentile(double p) const;
  nlohmann::json ToJson() const;
  // The human report: totals, percentiles, errors and a latency histogram.
  std::string ToText() const;
};

// Validates the options (one of --concurrency/--rate, one of --requests/--duration, the URL),
// checks that the server answers, runs, and returns the report. Errors are InvalidArgument
// (bad options) or Unavailable (the server cannot be reached).
absl::StatusOr<Report> Run(const Options& options);

}  // namespace kiln::loadtest
