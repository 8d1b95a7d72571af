// safetensors files: the header is validated as the file opens; every tensor it then lists must
// be readable within the file.
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "engine/sd/safetensors.h"
#include "fuzz/fuzz_target.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::filesystem::path path =
      std::filesystem::temp_directory_path() /
      ("kiln-fuzz-" + std::to_string(::getpid()) + ".safetensors");
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  auto file = kiln::engine::sd::SafetensorsFile::Open(path);
  if (!file.ok()) return 0;
  for (const auto& [name, info] : (*file)->tensors()) {
    auto tensor = (*file)->Get(name);
    if (tensor.ok() && tensor->numel() > 0) (void)tensor->sum();
  }
  return 0;
}
