// Parsing JSON that arrives from outside (request bodies, batch lines) with a bound on nesting:
// the depth is checked by a scan of the text before any value is built, so a deeply nested body
// costs one pass over its bytes, not a tree of millions of nodes. Stateless; thread-safe.
#pragma once

#include <string_view>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace kiln {

// Deeper than any request Kiln accepts (a request is an object of scalars, arrays of scalars and
// one level of objects), far below what would cost memory.
inline constexpr int kMaxJsonDepth = 32;

// The deepest nesting of arrays and objects in `text` (strings and escapes are skipped), or
// InvalidArgument as soon as it exceeds `max_depth`. Does not validate the rest of the syntax.
absl::StatusOr<int> JsonDepth(std::string_view text, int max_depth);

// Parses `text` as JSON: InvalidArgument "... nested deeper than N levels" or "... is not valid
// JSON" (`what` names the text, e.g. "the request body").
absl::StatusOr<nlohmann::json> ParseJsonWithLimits(std::string_view text, std::string_view what,
                                                   int max_depth = kMaxJsonDepth);

}  // namespace kiln
