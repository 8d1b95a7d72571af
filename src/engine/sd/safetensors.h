// SafetensorsFile: a memory-mapped .safetensors file (Hugging Face's weight format: an 8-byte
// little-endian header length, a JSON header naming each tensor's dtype, shape and byte range,
// then the raw data). The header is validated as a whole when the file opens, so a truncated,
// oversized, overlapping or lying file is an error naming the file and the tensor, never a crash.
// Tensors are views of the mapping where the dtype and alignment allow (zero-copy), and keep the
// mapping alive. Immutable after Open; thread-safe.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "torch/torch.h"

namespace kiln::engine::sd {

struct TensorInfo {
  torch::ScalarType dtype;
  std::string dtype_name;  // as the file spells it: "F16", "BF16", "F32", ...
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte offsets within the data section
  uint64_t end = 0;
};

class SafetensorsFile : public std::enable_shared_from_this<SafetensorsFile> {
 public:
  // The largest header accepted (the format's own readers stop at 100 MB).
  static constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

  // Maps and validates `path`. InvalidArgument naming the file (and the tensor) for anything
  // malformed; a pickle file (.ckpt/.pt/.bin) is refused with how to convert it.
  static absl::StatusOr<std::shared_ptr<const SafetensorsFile>> Open(
      const std::filesystem::path& path);

  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::filesystem::path& path() const { return path_; }
  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool contains(std::string_view name) const { return tensors_.count(std::string(name)) > 0; }
  uint64_t file_bytes() const { return size_; }

  // The tensor `name` on the CPU in its stored dtype: a view of the mapping (writes go to private
  // copy-on-write pages, never to the file), or a copy when the data is not aligned for its dtype.
  // NotFound naming the file when absent.
  absl::StatusOr<torch::Tensor> Get(std::string_view name) const;

  // Tells the kernel that the pages holding `name` are not needed now (after the tensor was
  // converted to another dtype), so that loading does not hold both copies in memory at once.
  // Views of those bytes stay valid: the pages are read again from the file if touched.
  void Release(std::string_view name) const;

 private:
  SafetensorsFile() = default;
  std::filesystem::path path_;
  void* map_ = nullptr;
  uint64_t size_ = 0;
  uint64_t data_offset_ = 0;
  std::map<std::string, TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

// Refuses files that would run code when loaded (PyTorch pickles), with a message that says why
// and how to convert; OK for anything else.
absl::Status CheckNotPickle(const std::filesystem::path& path);

// The bytes of a safetensors file holding `tensors` (float32/float16/bfloat16/int64 CPU tensors),
// for tests and tools that make model files.
std::string SerializeSafetensors(const std::vector<std::pair<std::string, torch::Tensor>>& tensors);

}  // namespace kiln::engine::sd
