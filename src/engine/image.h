// Image: 8-bit RGB pixels, row-major, as the engine produces and consumes them. Plain data.
#pragma once

#include <cstdint>
#include <vector>

namespace kiln::engine {

struct Image {
  int width = 0;
  int height = 0;
  std::vector<uint8_t> rgb;  // width * height * 3 bytes
};

}  // namespace kiln::engine
