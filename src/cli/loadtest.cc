// `kiln loadtest`: reads the flags and the mix file, runs loadtest::Run and prints the report.
#include "loadtest/loadtest.h"

#include <unistd.h>

#include <fstream>
#include <sstream>

#include "cli/commands.h"

namespace kiln::cli {

int RunLoadtest(const LoadtestOptions& in) {
  auto fail = [](const std::string& message) {
    fprintf(stderr, "kiln loadtest: %s\n", message.c_str());
    return 2;
  };
  loadtest::Options o;
  o.server = in.server;
  o.concurrency = in.concurrency;
  o.rate = in.rate;
  o.requests = in.requests;
  o.duration_seconds = in.duration;
  o.max_in_flight = in.max_in_flight;
  o.timeout_seconds = in.timeout;
  o.threads = in.threads;
  o.seed = in.seed;
  o.save_dir = in.save;
  o.progress = !in.json && !in.quiet && ::isatty(STDERR_FILENO);
  const loadtest::Mode mode = in.mode == "job" ? loadtest::Mode::kJob : loadtest::Mode::kSync;
  if (!in.mix.empty()) {
    std::ifstream file(in.mix, std::ios::binary);
    if (!file) return fail("cannot read the mix file " + in.mix);
    std::ostringstream text;
    text << file.rdbuf();
    auto mix = loadtest::ParseMix(text.str(), mode);
    if (!mix.ok()) return fail(in.mix + ": " + std::string(mix.status().message()));
    o.mix = std::move(*mix);
  } else {
    loadtest::Template t;
    t.mode = mode;
    t.request = {{"prompt", in.prompt}};
    if (!in.model.empty()) t.request["model"] = in.model;
    if (in.steps > 0) t.request["steps"] = in.steps;
    if (!in.size.empty()) t.request["size"] = in.size;
    o.mix.push_back(std::move(t));
  }
  auto report = loadtest::Run(o);
  if (!report.ok()) return fail(std::string(report.status().message()));
  if (in.json) {
    printf("%s\n", report->ToJson().dump(2).c_str());
  } else {
    printf("%s", report->ToText().c_str());
  }
  // Non-zero when something failed, so scripts notice.
  return report->ok == report->sent ? 0 : 1;
}

}  // namespace kiln::cli
