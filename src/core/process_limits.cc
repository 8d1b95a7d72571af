#include "core/process_limits.h"

#include <sys/resource.h>

#include <cerrno>
#include <cstring>

#include "core/strings.h"

namespace kiln {

absl::StatusOr<uint64_t> RaiseOpenFileLimit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) {
    return absl::InternalError(StrCat("getrlimit: ", std::strerror(errno)));
  }
  if (limit.rlim_cur == limit.rlim_max) return static_cast<uint64_t>(limit.rlim_cur);
  limit.rlim_cur = limit.rlim_max;
  if (setrlimit(RLIMIT_NOFILE, &limit) != 0) {
    return absl::InternalError(StrCat("setrlimit: ", std::strerror(errno)));
  }
  return static_cast<uint64_t>(limit.rlim_cur);
}

}  // namespace kiln
