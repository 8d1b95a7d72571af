// A fuzz target without libFuzzer: runs every file under the folders given, then `--mutations N`
// variants of each (bytes flipped, cut, repeated, spliced with another file) from a fixed seed,
// so a failure here is reproduced by running the same command. A crash or an abort fails the
// run. The coverage-guided search with the sanitizers is `make fuzz` (docs/security.md).
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "fuzz/fuzz_target.h"

namespace {

std::string Mutate(const std::string& input, const std::vector<std::string>& others,
                   std::mt19937_64& rng) {
  std::string out = input;
  auto pick = [&rng](size_t n) { return n == 0 ? size_t{0} : static_cast<size_t>(rng() % n); };
  const int edits = 1 + static_cast<int>(rng() % 4);
  for (int e = 0; e < edits; ++e) {
    switch (rng() % 6) {
      case 0:  // flip a bit
        if (!out.empty()) out[pick(out.size())] ^= static_cast<char>(1u << (rng() % 8));
        break;
      case 1:  // an interesting byte
        if (!out.empty()) {
          static constexpr char kBytes[] = {0, '\xff', '\x7f', '\x80', '"', '\\', '\n', '-', '9'};
          out[pick(out.size())] = kBytes[pick(sizeof(kBytes))];
        }
        break;
      case 2:  // cut
        out.resize(pick(out.size() + 1));
        break;
      case 3: {  // repeat a piece
        if (out.empty()) break;
        const size_t from = pick(out.size());
        const size_t len = 1 + pick(std::min<size_t>(out.size() - from, 64));
        out.insert(pick(out.size() + 1), out.substr(from, len));
        break;
      }
      case 4: {  // splice with another input
        const std::string& other = others[pick(others.size())];
        out = out.substr(0, pick(out.size() + 1)) + other.substr(pick(other.size() + 1));
        break;
      }
      default:  // delete a piece
        if (!out.empty()) {
          const size_t from = pick(out.size());
          out.erase(from, 1 + pick(out.size() - from));
        }
        break;
    }
  }
  return out;
}

void Run(const std::string& input) {
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(input.data()), input.size());
}

}  // namespace

int main(int argc, char** argv) {
  int mutations = 0;
  std::vector<std::filesystem::path> files;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--mutations") == 0 && i + 1 < argc) {
      mutations = std::atoi(argv[++i]);
      continue;
    }
    const std::filesystem::path p(argv[i]);
    if (std::filesystem::is_directory(p)) {
      for (const auto& entry : std::filesystem::recursive_directory_iterator(p)) {
        if (entry.is_regular_file()) files.push_back(entry.path());
      }
    } else {
      files.push_back(p);
    }
  }
  std::sort(files.begin(), files.end());
  if (files.empty()) {
    std::fprintf(stderr, "no inputs: give files or folders of a corpus\n");
    return 2;
  }
  std::vector<std::string> inputs;
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    inputs.push_back(text.str());
  }
  Run("");
  for (const std::string& input : inputs) Run(input);
  std::mt19937_64 rng(20261128);
  for (size_t i = 0; i < inputs.size(); ++i) {
    for (int m = 0; m < mutations; ++m) Run(Mutate(inputs[i], inputs, rng));
  }
  std::printf("%zu inputs and %zu mutations ran\n", inputs.size(),
              inputs.size() * static_cast<size_t>(mutations));
  return 0;
}
