#include "core/json_parse.h"

#include "core/strings.h"

namespace kiln {

absl::StatusOr<int> JsonDepth(std::string_view text, int max_depth) {
  int depth = 0;
  int deepest = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;  // the escaped character cannot end the string
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    switch (c) {
      case '"':
        in_string = true;
        break;
      case '[':
      case '{':
        if (++depth > max_depth) {
          return absl::InvalidArgumentError(
              StrCat("nested deeper than ", max_depth, " levels (at byte ", i, ")"));
        }
        deepest = std::max(deepest, depth);
        break;
      case ']':
      case '}':
        --depth;  // unbalanced text is the parser's to refuse
        break;
      default:
        break;
    }
  }
  return deepest;
}

absl::StatusOr<nlohmann::json> ParseJsonWithLimits(std::string_view text, std::string_view what,
                                                   int max_depth) {
  if (auto depth = JsonDepth(text, max_depth); !depth.ok()) {
    return absl::InvalidArgumentError(StrCat(what, " is ", depth.status().message()));
  }
  nlohmann::json value = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) return absl::InvalidArgumentError(StrCat(what, " is not valid JSON"));
  return value;
}

}  // namespace kiln
