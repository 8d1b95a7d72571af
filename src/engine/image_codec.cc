#include "engine/image_codec.h"

#include <png.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "absl/cleanup/cleanup.h"
#include "absl/synchronization/mutex.h"
#include "core/status_util.h"
#include "core/strings.h"
#include "stb_image.h"

namespace kiln::engine {
namespace {

struct PngWriteState {
  std::string out;
};

void PngWrite(png_structp png, png_bytep data, png_size_t len) {
  auto* st = static_cast<PngWriteState*>(png_get_io_ptr(png));
  st->out.append(reinterpret_cast<const char*>(data), len);
}

void PngFlush(png_structp) {}

struct PngReadState {
  std::string_view in;
  size_t pos = 0;
};

void PngRead(png_structp png, png_bytep data, png_size_t len) {
  auto* st = static_cast<PngReadState*>(png_get_io_ptr(png));
  if (st->pos + len > st->in.size()) png_error(png, "truncated PNG");
  std::memcpy(data, st->in.data() + st->pos, len);
  st->pos += len;
}

// RGBA8 -> img.rgb (sized already), composited over white: transparent regions become white,
// as in most editors.
void CompositeOverWhite(const uint8_t* rgba, Image& img) {
  for (size_t i = 0; i < static_cast<size_t>(img.width) * img.height; ++i) {
    const int a = rgba[i * 4 + 3];
    for (int c = 0; c < 3; ++c) {
      img.rgb[i * 3 + c] =
          static_cast<uint8_t>((rgba[i * 4 + c] * a + 255 * (255 - a) + 127) / 255);
    }
  }
}

// At most `limit` images are decoded at once; the rest wait their turn.
struct DecodeGate {
  absl::Mutex mu;
  int running ABSL_GUARDED_BY(mu) = 0;
  int waiting ABSL_GUARDED_BY(mu) = 0;
  int limit ABSL_GUARDED_BY(mu) = 2;
  bool Free() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return running < limit; }
};

DecodeGate& Gate() {
  static DecodeGate* gate = new DecodeGate;
  return *gate;
}

// Takes a decoding slot (see DecodeLimits::max_wait_ms); Release() gives it back.
absl::Status AcquireDecodeSlot(int64_t max_wait_ms) {
  DecodeGate& g = Gate();
  absl::MutexLock lock(&g.mu);
  const auto busy = [] {
    return WithRetryAfter(
        absl::UnavailableError("too many images are being decoded; retry shortly"), 1);
  };
  // Each waiter holds a handler thread: a bounded wait also bounds how many wait.
  if (max_wait_ms >= 0 && !g.Free() && g.waiting >= 4 * g.limit) return busy();
  ++g.waiting;
  bool free = true;
  if (max_wait_ms < 0) {
    g.mu.Await(absl::Condition(&g, &DecodeGate::Free));
  } else {
    free = g.mu.AwaitWithTimeout(absl::Condition(&g, &DecodeGate::Free),
                                 absl::Milliseconds(max_wait_ms));
  }
  --g.waiting;
  if (!free) return busy();
  ++g.running;
  return absl::OkStatus();
}

void ReleaseDecodeSlot() {
  DecodeGate& g = Gate();
  absl::MutexLock lock(&g.mu);
  --g.running;
}

bool IsPng(std::string_view b) { return b.size() >= 8 && b.substr(0, 8) == "\x89PNG\r\n\x1a\n"; }

// A PNG decoded by libpng's progressive reader into RGBA8. The data is fed in small pieces and
// inflated only into row buffers, so the output can never exceed the declared size: compressed
// data beyond the last row is skipped, not inflated (a 1x1 image that inflates to gigabytes
// costs one row). Text, profile and other ancillary chunks are skipped.
struct PngDecodeState {
  int64_t max_pixels = 0;
  int width = 0;
  int height = 0;
  std::vector<uint8_t> rgba;
  bool ended = false;    // IEND was reached
  char error[160] = {};  // set before a longjmp
};

[[noreturn]] void PngDecodeError(png_structp png, png_const_charp message) {
  auto* st = static_cast<PngDecodeState*>(png_get_error_ptr(png));
  std::snprintf(st->error, sizeof(st->error), "%s", message);
  png_longjmp(png, 1);
}

void PngDecodeWarning(png_structp, png_const_charp) {}

void PngDecodeInfo(png_structp png, png_infop info) {
  auto* st = static_cast<PngDecodeState*>(png_get_progressive_ptr(png));
  png_uint_32 w = 0, h = 0;
  int depth = 0, color = 0, interlace = 0;
  png_get_IHDR(png, info, &w, &h, &depth, &color, &interlace, nullptr, nullptr);
  if (w == 0 || h == 0 || static_cast<int64_t>(w) * h > st->max_pixels) {
    std::snprintf(st->error, sizeof(st->error), "the image is %ux%u; the limit is %lld pixels", w,
                  h, static_cast<long long>(st->max_pixels));
    png_longjmp(png, 1);
  }
  png_set_expand(png);  // palette -> RGB, low bit depths -> 8, tRNS -> alpha
  png_set_strip_16(png);
  png_set_gray_to_rgb(png);
  png_set_add_alpha(png, 0xFF, PNG_FILLER_AFTER);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  if (png_get_rowbytes(png, info) != static_cast<size_t>(w) * 4) {
    png_error(png, "unsupported pixel layout");
  }
  st->width = static_cast<int>(w);
  st->height = static_cast<int>(h);
  st->rgba.assign(static_cast<size_t>(w) * h * 4, 0);
}

void PngDecodeRow(png_structp png, png_bytep row, png_uint_32 row_num, int) {
  auto* st = static_cast<PngDecodeState*>(png_get_progressive_ptr(png));
  if (row == nullptr || row_num >= static_cast<png_uint_32>(st->height)) return;
  png_progressive_combine_row(png, st->rgba.data() + static_cast<size_t>(row_num) * st->width * 4,
                              row);
}

void PngDecodeEnd(png_structp png, png_infop) {
  static_cast<PngDecodeState*>(png_get_progressive_ptr(png))->ended = true;
}

// REQUIRES: IsPng(bytes).
absl::StatusOr<Image> DecodePng(std::string_view bytes, int64_t max_pixels, size_t max_bytes) {
  PngDecodeState st;
  st.max_pixels = max_pixels;
  png_structp png =
      png_create_read_struct(PNG_LIBPNG_VER_STRING, &st, PngDecodeError, PngDecodeWarning);
  if (!png) return absl::InternalError("png_create_read_struct failed");
  png_infop info = png_create_info_struct(png);
  // libpng reports errors by longjmp; nothing with a destructor is made between here and there.
  if (!info || setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    return absl::InvalidArgumentError(StrCat("the image cannot be decoded: ", st.error));
  }
  // Ancillary chunks are never needed for the pixels, and some are compressed (zTXt, iTXt,
  // iCCP): skip them all, never inflated. tRNS and the IHDR/PLTE/IDAT chunks are still handled.
  static const png_byte kSkipped[] = "tEXt\0zTXt\0iTXt\0iCCP\0sPLT\0eXIf\0tIME\0hIST\0pCAL\0sCAL\0";
  png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, nullptr, 0);
  png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, kSkipped,
                              static_cast<int>((sizeof(kSkipped) - 1) / 5));
  // libpng checks every chunk's length against this, skipped ones included (a large XMP or
  // profile chunk is legitimate); the input itself is already bounded by max_bytes.
  png_set_chunk_malloc_max(png, max_bytes);
  png_set_benign_errors(png, 1);  // e.g. compressed data past the image: skipped, not an error
  png_set_progressive_read_fn(png, &st, PngDecodeInfo, PngDecodeRow, PngDecodeEnd);
  constexpr size_t kPiece = 16 << 10;
  for (size_t pos = 0; pos < bytes.size() && !st.ended; pos += kPiece) {
    const size_t n = std::min(kPiece, bytes.size() - pos);
    png_process_data(png, info, reinterpret_cast<png_bytep>(const_cast<char*>(bytes.data() + pos)),
                     n);
  }
  png_destroy_read_struct(&png, &info, nullptr);
  if (!st.ended) return absl::InvalidArgumentError("the image cannot be decoded: truncated PNG");
  Image img{st.width, st.height,
            std::vector<uint8_t>(static_cast<size_t>(st.width) * st.height * 3)};
  CompositeOverWhite(st.rgba.data(), img);
  return img;
}

bool IsJpeg(std::string_view b) {
  return b.size() >= 3 && static_cast<unsigned char>(b[0]) == 0xFF &&
         static_cast<unsigned char>(b[1]) == 0xD8 && static_cast<unsigned char>(b[2]) == 0xFF;
}

}  // namespace

absl::StatusOr<std::string> EncodePng(
    const Image& image, const std::vector<std::pair<std::string, std::string>>& text) {
  if (image.width <= 0 || image.height <= 0 ||
      image.rgb.size() != static_cast<size_t>(image.width) * image.height * 3) {
    return absl::InvalidArgumentError("EncodePng: pixel buffer does not match the size");
  }
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  if (!png) return absl::InternalError("png_create_write_struct failed");
  png_infop info = png_create_info_struct(png);
  PngWriteState st;
  // libpng reports errors by longjmp; nothing with a destructor lives between here and there.
  std::vector<png_text> chunks(text.size());
  std::vector<png_bytep> rows(image.height);
  if (!info || setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    return absl::InternalError("PNG encoding failed");
  }
  png_set_write_fn(png, &st, PngWrite, PngFlush);
  png_set_IHDR(png, info, image.width, image.height, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  // Speed over the last bytes (measured, docs/benchmarks.md "PNG encoding"): zlib's fastest
  // level with the Sub filter encodes a 512x512 image in 1/12 of the default's time for 15% more
  // bytes, and a small zlib memory level removes most of the fixed cost of a 32x32 image.
  const size_t raw_bytes = image.rgb.size();
  png_set_compression_level(png, 1);
  png_set_filter(png, PNG_FILTER_TYPE_BASE, PNG_FILTER_SUB);
  png_set_compression_mem_level(png, raw_bytes <= (256 << 10) ? 4 : 8);
  for (size_t i = 0; i < text.size(); ++i) {
    std::memset(&chunks[i], 0, sizeof(png_text));
    chunks[i].compression = PNG_ITXT_COMPRESSION_NONE;
    chunks[i].key = const_cast<char*>(text[i].first.c_str());
    chunks[i].text = const_cast<char*>(text[i].second.c_str());
    chunks[i].itxt_length = text[i].second.size();
  }
  if (!chunks.empty()) png_set_text(png, info, chunks.data(), static_cast<int>(chunks.size()));
  png_write_info(png, info);
  for (int y = 0; y < image.height; ++y) {
    rows[y] = const_cast<png_bytep>(image.rgb.data() + static_cast<size_t>(y) * image.width * 3);
  }
  png_write_image(png, rows.data());
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return std::move(st.out);
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ReadPngText(
    std::string_view bytes) {
  if (!IsPng(bytes)) return absl::InvalidArgumentError("not a PNG");
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  if (!png) return absl::InternalError("png_create_read_struct failed");
  png_infop info = png_create_info_struct(png);
  PngReadState st{bytes, 0};
  std::vector<std::pair<std::string, std::string>> out;
  if (!info || setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    return absl::InvalidArgumentError("malformed PNG");
  }
  png_set_read_fn(png, &st, PngRead);
  png_read_info(png, info);
  png_textp chunks = nullptr;
  int count = 0;
  png_get_text(png, info, &chunks, &count);
  for (int i = 0; i < count; ++i) {
    const size_t len = chunks[i].compression >= PNG_ITXT_COMPRESSION_NONE ? chunks[i].itxt_length
                                                                          : chunks[i].text_length;
    out.emplace_back(chunks[i].key, std::string(chunks[i].text, len));
  }
  png_destroy_read_struct(&png, &info, nullptr);
  return out;
}

void SetMaxConcurrentDecodes(int n) {
  DecodeGate& g = Gate();
  absl::MutexLock lock(&g.mu);
  g.limit = std::max(1, n);
}

int DecodesRunning() {
  DecodeGate& g = Gate();
  absl::MutexLock lock(&g.mu);
  return g.running;
}

absl::StatusOr<Image> DecodeImage(std::string_view bytes, const DecodeLimits& limits) {
  if (bytes.empty()) return absl::InvalidArgumentError("the image is empty");
  if (bytes.size() > limits.max_bytes) {
    return absl::InvalidArgumentError(
        StrCat("the image is ", bytes.size(), " bytes; the limit is ", limits.max_bytes));
  }
  if (!IsPng(bytes) && !IsJpeg(bytes)) {
    return absl::InvalidArgumentError("the image is not a PNG or JPEG file");
  }
  // N requests decoding at once must not multiply the peak: each decode holds up to the
  // declared size (RGBA and RGB) until it ends.
  KILN_RETURN_IF_ERROR(AcquireDecodeSlot(limits.max_wait_ms));
  absl::Cleanup release = [] { ReleaseDecodeSlot(); };
  if (IsPng(bytes)) return DecodePng(bytes, limits.max_pixels, limits.max_bytes);
  const auto* data = reinterpret_cast<const stbi_uc*>(bytes.data());
  const int len = static_cast<int>(bytes.size());
  int w = 0, h = 0, comp = 0;
  if (!stbi_info_from_memory(data, len, &w, &h, &comp)) {
    return absl::InvalidArgumentError(
        StrCat("the image cannot be decoded: ", stbi_failure_reason()));
  }
  if (w <= 0 || h <= 0 || static_cast<int64_t>(w) * h > limits.max_pixels) {
    return absl::InvalidArgumentError(
        StrCat("the image is ", w, "x", h, "; the limit is ", limits.max_pixels, " pixels"));
  }
  stbi_uc* px = stbi_load_from_memory(data, len, &w, &h, &comp, 4);
  if (!px) {
    return absl::InvalidArgumentError(
        StrCat("the image cannot be decoded: ", stbi_failure_reason()));
  }
  Image img{w, h, std::vector<uint8_t>(static_cast<size_t>(w) * h * 3)};
  CompositeOverWhite(px, img);
  stbi_image_free(px);
  return img;
}

Image ResizeBilinear(const Image& src, int width, int height) {
  if (src.width == width && src.height == height) return src;
  Image out{width, height, std::vector<uint8_t>(static_cast<size_t>(width) * height * 3)};
  const double sx = static_cast<double>(src.width) / width;
  const double sy = static_cast<double>(src.height) / height;
  for (int y = 0; y < height; ++y) {
    const double fy = std::clamp((y + 0.5) * sy - 0.5, 0.0, src.height - 1.0);
    const int y0 = static_cast<int>(fy), y1 = std::min(y0 + 1, src.height - 1);
    const double wy = fy - y0;
    for (int x = 0; x < width; ++x) {
      const double fx = std::clamp((x + 0.5) * sx - 0.5, 0.0, src.width - 1.0);
      const int x0 = static_cast<int>(fx), x1 = std::min(x0 + 1, src.width - 1);
      const double wx = fx - x0;
      for (int c = 0; c < 3; ++c) {
        auto at = [&](int xx, int yy) {
          return static_cast<double>(src.rgb[(static_cast<size_t>(yy) * src.width + xx) * 3 + c]);
        };
        const double v = (at(x0, y0) * (1 - wx) + at(x1, y0) * wx) * (1 - wy) +
                         (at(x0, y1) * (1 - wx) + at(x1, y1) * wx) * wy;
        out.rgb[(static_cast<size_t>(y) * width + x) * 3 + c] =
            static_cast<uint8_t>(std::lround(std::clamp(v, 0.0, 255.0)));
      }
    }
  }
  return out;
}

}  // namespace kiln::engine
