// Process-wide resource limits. Call from main(), before threads start.
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"

namespace kiln {

// Raises the soft limit on open files (RLIMIT_NOFILE) to the hard limit and returns the new soft
// limit; every connection and file costs a descriptor, and a soft limit of 1024 is a shell's
// default, not an operator's choice.
absl::StatusOr<uint64_t> RaiseOpenFileLimit();

}  // namespace kiln
