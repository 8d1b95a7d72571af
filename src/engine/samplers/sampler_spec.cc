#include "engine/samplers/sampler_spec.h"

#include <string>

#include "core/strings.h"

namespace kiln::engine {

std::string SamplerSpec::Name() const {
  std::string base;
  switch (kind) {
    case SamplerKind::kEuler:
      base = "euler";
      break;
    case SamplerKind::kEulerAncestral:
      base = "euler_a";
      break;
    case SamplerKind::kDdim:
      base = "ddim";
      break;
    case SamplerKind::kDpmpp2m:
      base = "dpmpp_2m";
      break;
  }
  return karras ? base + "_karras" : base;
}

absl::StatusOr<SamplerSpec> ParseSamplerName(std::string_view name) {
  if (name.size() > 64) return absl::InvalidArgumentError("sampler name is too long");
  // Normalise: lower case, "+" -> "p", spaces and dashes -> "_".
  std::string n = ToLowerAscii(Trim(name));
  n = ReplaceAll(ReplaceAll(ReplaceAll(n, "+", "p"), " ", "_"), "-", "_");
  if (n.starts_with("k_")) n.erase(0, 2);  // A1111's aliases: "k_euler_a", "k_dpmpp_2m"
  SamplerSpec spec;
  constexpr std::string_view kKarras = "_karras";
  if (n.size() > kKarras.size() && n.ends_with(kKarras)) {
    spec.karras = true;
    n.resize(n.size() - kKarras.size());
  }
  if (n == "euler") {
    spec.kind = SamplerKind::kEuler;
  } else if (n == "euler_a" || n == "euler_ancestral") {
    spec.kind = SamplerKind::kEulerAncestral;
  } else if (n == "ddim") {
    spec.kind = SamplerKind::kDdim;
  } else if (n == "dpmpp_2m" || n == "dpm_solver_multistep" || n == "dpmsolver_2m") {
    spec.kind = SamplerKind::kDpmpp2m;
  } else {
    return absl::InvalidArgumentError(StrCat(
        "unknown sampler '", name,
        "'; use euler, euler_a, ddim or dpmpp_2m, optionally with _karras (or A1111 names such "
        "as \"DPM++ 2M Karras\")"));
  }
  return spec;
}

}  // namespace kiln::engine
