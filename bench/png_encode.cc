// PNG encoding cost by zlib settings, on the image kinds Kiln serves: a 32x32 noise image (what
// the identity model of the overhead bench returns), a 32x32 flat picture (tiny-shapes), and a
// 512x512 noisy gradient (the size of a Stable Diffusion 1.x image). Each setting is timed in the
// same process, so the ratios hold on a noisy machine. Usage: kiln_bench_png_encode
#include <png.h>
#include <zlib.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace {

struct Setting {
  const char* name;
  int level;          // -1: libpng's default (zlib level 6)
  int filter;         // 0: libpng's default (adaptive)
  int mem_level;      // 0: default (8)
  int strategy = -1;  // -1: default (Z_FILTERED with a filter, else Z_DEFAULT_STRATEGY)
};

void Write(png_structp p, png_bytep d, png_size_t n) {
  static_cast<std::string*>(png_get_io_ptr(p))->append(reinterpret_cast<char*>(d), n);
}
void Flush(png_structp) {}

size_t Encode(const std::vector<unsigned char>& rgb, int w, int h, const Setting& s) {
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  std::string out;
  png_set_write_fn(png, &out, Write, Flush);
  png_set_IHDR(png, info, w, h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  if (s.level >= 0) png_set_compression_level(png, s.level);
  if (s.filter) png_set_filter(png, PNG_FILTER_TYPE_BASE, s.filter);
  if (s.mem_level) png_set_compression_mem_level(png, s.mem_level);
  if (s.strategy >= 0) png_set_compression_strategy(png, s.strategy);
  png_write_info(png, info);
  std::vector<png_bytep> rows(static_cast<size_t>(h));
  for (int y = 0; y < h; ++y) {
    rows[static_cast<size_t>(y)] =
        const_cast<png_bytep>(rgb.data()) + static_cast<size_t>(y) * w * 3;
  }
  png_write_image(png, rows.data());
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return out.size();
}

}  // namespace

int main() {
  const Setting settings[] = {
      {"libpng default (level 6, adaptive filter)", -1, 0, 0},
      {"level 1, adaptive filter", 1, 0, 0},
      {"level 1, Sub filter", 1, PNG_FILTER_SUB, 0},
      {"level 1, Sub filter, memLevel 4", 1, PNG_FILTER_SUB, 4},
      {"level 1, Sub filter, memLevel 4, RLE", 1, PNG_FILTER_SUB, 4, Z_RLE},
      {"level 1, Sub filter, memLevel 4, Huffman only", 1, PNG_FILTER_SUB, 4, Z_HUFFMAN_ONLY},
  };
  std::mt19937 rng(1);
  printf(
      "| image | setting | us per image | bytes | time vs default |\n|---|---|---:|---:|---:|\n");
  for (int kind = 0; kind < 3; ++kind) {
    const int w = kind == 2 ? 512 : 32, h = w;
    std::vector<unsigned char> rgb(static_cast<size_t>(w) * h * 3);
    for (int y = 0; y < h; ++y) {
      for (int x = 0; x < w * 3; ++x) {
        const int px = x / 3;
        unsigned char v;
        if (kind == 0) {
          v = static_cast<unsigned char>(rng() & 255);
        } else if (kind == 1) {
          v = (px - 16) * (px - 16) + (y - 16) * (y - 16) < 64 ? 200 : 255;
        } else {
          v = static_cast<unsigned char>(((x + y) / 4 + (rng() & 3)) & 255);
        }
        rgb[static_cast<size_t>(y) * w * 3 + x] = v;
      }
    }
    const char* name = kind == 0   ? "32x32 noise"
                       : kind == 1 ? "32x32 flat circle"
                                   : "512x512 noisy gradient";
    const int n = kind == 2 ? 10 : 2000;
    double baseline = 0;
    for (const Setting& s : settings) {
      size_t bytes = 0;
      const auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < n; ++i) bytes = Encode(rgb, w, h, s);
      const double us =
          std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() /
          n;
      if (baseline == 0) baseline = us;
      printf("| %s | %s | %.1f | %zu | %.2fx |\n", name, s.name, us, bytes, us / baseline);
    }
  }
  return 0;
}
