// Small string helpers and parsers for text that arrives from users: sizes, numbers, base64.
// (Debian's Abseil has its own string_view type, so string utilities live here, on
// std::string_view.) Stateless; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kiln {

// ---- Concatenation -------------------------------------------------------------------------

namespace internal {
inline void AppendPiece(std::string& out, std::string_view s) { out.append(s); }
inline void AppendPiece(std::string& out, const char* s) { out.append(s); }
inline void AppendPiece(std::string& out, const std::string& s) { out.append(s); }
inline void AppendPiece(std::string& out, absl::string_view s) { out.append(s.data(), s.size()); }
inline void AppendPiece(std::string& out, char c) { out.push_back(c); }
void AppendPiece(std::string& out, double v);
template <typename T>
requires std::is_integral_v<T> &&
    (!std::is_same_v<T, char>)&&(!std::is_same_v<T, bool>)void AppendPiece(std::string& out, T v) {
  out.append(std::to_string(v));
}
}  // namespace internal

// Concatenates strings, string views (std and absl), characters and numbers.
template <typename... Args>
std::string StrCat(const Args&... args) {
  std::string out;
  (internal::AppendPiece(out, args), ...);
  return out;
}

template <typename... Args>
void StrAppend(std::string* out, const Args&... args) {
  (internal::AppendPiece(*out, args), ...);
}

// ---- Text ----------------------------------------------------------------------------------

inline std::string_view ToStd(absl::string_view s) { return {s.data(), s.size()}; }

std::string_view Trim(std::string_view text);  // ASCII whitespace at both ends
std::string ToLowerAscii(std::string_view text);
bool EqualsIgnoreCase(std::string_view a, std::string_view b);
bool StartsWithIgnoreCase(std::string_view text, std::string_view prefix);
// Splits on every occurrence of `sep` (non-empty); `skip_empty` drops empty pieces.
std::vector<std::string_view> Split(std::string_view text, std::string_view sep,
                                    bool skip_empty = false);
std::string Join(const std::vector<std::string>& parts, std::string_view sep);
std::string ReplaceAll(std::string_view text, std::string_view from, std::string_view to);
std::string Base64Encode(std::string_view bytes);
// Standard alphabet with padding (or none); whitespace is not allowed.
absl::StatusOr<std::string> Base64Decode(std::string_view text);
// Whether `text` is well-formed UTF-8 (no overlong forms, surrogates or code points past
// U+10FFFF), as JSON and PNG text chunks require.
bool IsValidUtf8(std::string_view text);
// The characters of UTF-8 `text` (bytes that are not continuation bytes).
size_t Utf8Chars(std::string_view text);

// ---- Parsing -------------------------------------------------------------------------------

struct ImageSize {
  int width = 0;
  int height = 0;
  friend bool operator==(const ImageSize&, const ImageSize&) = default;
  std::string ToString() const;
};

// Parses "WxH" (e.g. "512x512"); both sides 1..16384.
absl::StatusOr<ImageSize> ParseImageSize(std::string_view text);

// Strict integer and floating-point parsing: the whole string must be the number.
absl::StatusOr<int64_t> ParseInt(std::string_view text);
absl::StatusOr<uint64_t> ParseUint(std::string_view text);
absl::StatusOr<double> ParseDouble(std::string_view text);

}  // namespace kiln
