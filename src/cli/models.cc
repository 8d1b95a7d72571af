// `kiln models inspect PATH`: what Kiln sees in a model folder or checkpoint file.
#include <cstdio>

#include "cli/commands.h"
#include "core/strings.h"
#include "engine/model_inspect.h"
#include "nlohmann/json.hpp"

namespace kiln::cli {
namespace {

const char* FormatName(engine::ModelFormat f) {
  switch (f) {
    case engine::ModelFormat::kTorchScript:
      return "torchscript";
    case engine::ModelFormat::kDiffusers:
      return "diffusers";
    case engine::ModelFormat::kSingleFile:
      return "single-file";
  }
  return "";
}

std::string Millions(int64_t n) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f M", static_cast<double>(n) / 1e6);
  return buf;
}

nlohmann::json ReportJson(const engine::ModelReport& r) {
  nlohmann::json j = {{"name", r.name}, {"path", r.path.string()}, {"ok", r.status.ok()}};
  if (!r.status.ok()) j["error"] = std::string(r.status.message());
  if (r.status.ok() || r.loaded) {
    const engine::ModelSpec& s = r.spec;
    nlohmann::json sizes = nlohmann::json::array();
    for (const auto& z : s.sizes) sizes.push_back(z.ToString());
    j["format"] = FormatName(s.format);
    j["architecture"] = s.architecture;
    j["description"] = s.description;
    j["dtype"] = s.dtype;
    j["sizes"] = sizes;
    if (s.size_multiple > 0) {
      j["any_size"] = {
          {"multiple_of", s.size_multiple}, {"min_side", s.min_side}, {"max_side", s.max_side}};
    }
    j["defaults"] = {{"steps", s.defaults.steps},
                     {"guidance_scale", s.defaults.guidance_scale},
                     {"sampler", s.defaults.sampler}};
    j["tasks"] = nlohmann::json::array();
    if (s.supports_generate) j["tasks"].push_back("generate");
    if (s.supports_edit) j["tasks"].push_back("edit");
  }
  nlohmann::json components = nlohmann::json::array();
  for (const auto& c : r.components) {
    components.push_back({{"name", c.name},
                          {"files", c.files},
                          {"tensors", c.tensors},
                          {"parameters", c.parameters},
                          {"bytes", c.bytes},
                          {"dtypes", c.dtypes}});
  }
  j["components"] = components;
  j["loaded"] = r.loaded;
  if (r.loaded) j["load_seconds"] = r.load_seconds;
  j["problems"] = r.problems;
  return j;
}

void PrintText(const engine::ModelReport& r) {
  std::printf("%s  (%s)\n", r.name.c_str(), r.path.string().c_str());
  if (r.status.ok() || r.loaded) {
    const engine::ModelSpec& s = r.spec;
    std::printf("  %s, %s, computes in %s\n", s.description.c_str(), FormatName(s.format),
                s.dtype.c_str());
    std::string sizes;
    for (const auto& z : s.sizes) StrAppend(&sizes, sizes.empty() ? "" : ", ", z.ToString());
    if (s.size_multiple > 0) {
      StrAppend(&sizes, "; any WxH in multiples of ", s.size_multiple, " from ", s.min_side, " to ",
                s.max_side);
    }
    std::printf("  sizes: %s\n", sizes.c_str());
    std::printf("  tasks: %s%s; defaults: %d steps, guidance %g, sampler %s\n",
                s.supports_generate ? "generate" : "",
                s.supports_edit ? (s.supports_generate ? ", edit" : "edit") : "", s.defaults.steps,
                s.defaults.guidance_scale, s.defaults.sampler.c_str());
  }
  for (const auto& c : r.components) {
    if (c.tensors == 0) {  // a TorchScript file: its parameters are not listed in a header
      std::printf("  %-15s %s, %.1f MiB\n", c.name.c_str(), c.files.front().c_str(),
                  static_cast<double>(c.bytes) / (1 << 20));
      continue;
    }
    std::string dtypes;
    for (const auto& [d, n] : c.dtypes) StrAppend(&dtypes, dtypes.empty() ? "" : ", ", d, " x", n);
    std::printf("  %-15s %4lld tensors  %12s parameters  %8.1f MiB  %s\n", c.name.c_str(),
                static_cast<long long>(c.tensors), Millions(c.parameters).c_str(),
                static_cast<double>(c.bytes) / (1 << 20), dtypes.c_str());
  }
  if (!r.status.ok()) {
    std::printf("  ERROR: %s\n", std::string(r.status.message()).c_str());
  } else if (r.loaded) {
    std::printf("  loads: every tensor present with the expected shape (%.2f s)\n", r.load_seconds);
  }
  for (const auto& p : r.problems) std::printf("  problem: %s\n", p.c_str());
}

}  // namespace

int RunModelsInspect(const ModelsInspectOptions& o) {
  engine::ModelReport report = engine::InspectModel(o.path, !o.no_load);
  if (o.json) {
    std::printf("%s\n", ReportJson(report).dump(2).c_str());
  } else {
    PrintText(report);
  }
  return report.status.ok() ? 0 : 1;
}

}  // namespace kiln::cli
