// Test helper: a PNG whose compressed image data inflates far past its declared size (a
// decompression bomb), written chunk by chunk with zlib. Header-only; used by the image codec's
// unit tests and the hostile-client integration tests.
#pragma once

#include <zlib.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

namespace kiln::testing {

inline std::string BigEndian32(uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
          static_cast<char>(v)};
}

// One PNG chunk: length, type, data, CRC of type and data.
inline std::string PngChunk(const std::string& type, const std::string& data) {
  const std::string type_and_data = type + data;
  const uLong crc = crc32(0, reinterpret_cast<const Bytef*>(type_and_data.data()),
                          static_cast<uInt>(type_and_data.size()));
  return BigEndian32(static_cast<uint32_t>(data.size())) + type_and_data +
         BigEndian32(static_cast<uint32_t>(crc));
}

// An 8-bit RGB PNG declaring `width` x `height` whose data stream is `inflated_bytes` of zeros,
// split into IDAT chunks of 64 KiB as encoders write them (zeros are also a valid 1x1 image: a
// filter byte and one black pixel, then data past the last row).
inline std::string PngBomb(size_t inflated_bytes, uint32_t width = 1, uint32_t height = 1) {
  z_stream z{};
  deflateInit(&z, 9);
  std::string compressed;
  std::vector<unsigned char> zeros(1 << 20, 0);
  std::vector<unsigned char> out(1 << 16);
  size_t fed = 0;
  int flush = Z_NO_FLUSH;
  do {
    const size_t piece = std::min(zeros.size(), inflated_bytes - fed);
    z.next_in = zeros.data();
    z.avail_in = static_cast<uInt>(piece);
    fed += piece;
    flush = fed == inflated_bytes ? Z_FINISH : Z_NO_FLUSH;
    do {
      z.next_out = out.data();
      z.avail_out = static_cast<uInt>(out.size());
      deflate(&z, flush);
      compressed.append(reinterpret_cast<char*>(out.data()), out.size() - z.avail_out);
    } while (z.avail_out == 0);
  } while (flush != Z_FINISH);
  deflateEnd(&z);
  const std::string ihdr =
      BigEndian32(width) + BigEndian32(height) + std::string("\x08\x02\x00\x00\x00", 5);
  std::string png = std::string("\x89PNG\r\n\x1a\n", 8) + PngChunk("IHDR", ihdr);
  for (size_t pos = 0; pos < compressed.size(); pos += 64 << 10) {
    png += PngChunk("IDAT", compressed.substr(pos, 64 << 10));
  }
  return png + PngChunk("IEND", "");
}

}  // namespace kiln::testing
