// PNG encoding (libpng) with text chunks, and PNG (libpng) / JPEG (stb_image) decoding with
// limits on bytes and pixels checked before any pixel memory is allocated; a PNG is never
// inflated past its declared size, and few decodes run at once. Thread-safe.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/image.h"

namespace kiln::engine {

struct DecodeLimits {
  size_t max_bytes = 16 << 20;
  int64_t max_pixels = 4096 * 4096;
  // How long to wait for one of the SetMaxConcurrentDecodes() slots: -1 waits as long as it
  // takes (jobs, the CLI); otherwise Unavailable (with a Retry-After) after this long, or at once
  // when four times as many decodes already wait (HTTP handlers, whose threads are shared).
  int64_t max_wait_ms = -1;
};

// Encodes RGB8 as PNG; each (key, value) becomes an iTXt chunk (UTF-8 text).
absl::StatusOr<std::string> EncodePng(const Image& image,
                                      const std::vector<std::pair<std::string, std::string>>& text);

// Decodes a PNG or JPEG into RGB8 (alpha is composited over white). Errors: InvalidArgument
// for data that is not a supported image or exceeds the limits; Unavailable when no decoding
// slot came free in time (see DecodeLimits::max_wait_ms).
absl::StatusOr<Image> DecodeImage(std::string_view bytes, const DecodeLimits& limits);

// How many DecodeImage calls may run at once in this process (default 2; at least 1).
void SetMaxConcurrentDecodes(int n);
// DecodeImage calls running now (for tests and metrics).
int DecodesRunning();

// Reads the iTXt/tEXt chunks of a PNG (for tests and tools).
absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ReadPngText(std::string_view png);

// Bilinear resize (used to fit input images to the requested size).
Image ResizeBilinear(const Image& src, int width, int height);

}  // namespace kiln::engine
