// SamplerSpec names a sampling method the way users know it ("euler_a", "DPM++ 2M Karras").
// Plain data; thread-compatible.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace kiln::engine {

enum class SamplerKind { kEuler, kEulerAncestral, kDdim, kDpmpp2m };

struct SamplerSpec {
  SamplerKind kind = SamplerKind::kEuler;
  bool karras = false;  // Karras et al. (2022) sigma spacing instead of the schedule's own

  // Canonical name: "euler", "euler_a", "ddim", "dpmpp_2m", with "_karras" appended when set.
  std::string Name() const;
  friend bool operator==(const SamplerSpec&, const SamplerSpec&) = default;
};

// Accepts canonical names, "<name>_karras", "<name> karras" and A1111 display names
// ("Euler a", "DPM++ 2M Karras", "DDIM") and aliases ("k_euler_a"), case-insensitively.
absl::StatusOr<SamplerSpec> ParseSamplerName(std::string_view name);

}  // namespace kiln::engine
