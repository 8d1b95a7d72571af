// Uploaded images: PNG and JPEG decoding (libpng, stb_image) under a 1 MiB / 1 Mpixel limit,
// and the PNG text chunks Kiln reads back.
#include "engine/image_codec.h"
#include "fuzz/fuzz_target.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes = kiln::fuzz::AsText(data, size);
  kiln::engine::DecodeLimits limits;
  limits.max_bytes = 1 << 20;
  limits.max_pixels = 1 << 20;
  auto image = kiln::engine::DecodeImage(bytes, limits);
  if (image.ok() && image->rgb.size() != static_cast<size_t>(image->width) * image->height * 3) {
    std::abort();
  }
  (void)kiln::engine::ReadPngText(bytes);
  return 0;
}
