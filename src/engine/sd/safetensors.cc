#include "engine/sd/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>

#include "core/json_parse.h"
#include "core/status_util.h"
#include "core/strings.h"

namespace kiln::engine::sd {
namespace {

struct DtypeName {
  std::string_view name;
  torch::ScalarType type;
};
constexpr DtypeName kDtypes[] = {
    {"F64", torch::kFloat64},   {"F32", torch::kFloat32}, {"F16", torch::kFloat16},
    {"BF16", torch::kBFloat16}, {"I64", torch::kInt64},   {"I32", torch::kInt32},
    {"I16", torch::kInt16},     {"I8", torch::kInt8},     {"U8", torch::kUInt8},
    {"BOOL", torch::kBool},
};

std::string_view NameOf(torch::ScalarType type) {
  for (const auto& d : kDtypes) {
    if (d.type == type) return d.name;
  }
  return "";
}

bool LooksLikePickle(const unsigned char* head, size_t n) {
  // torch.save's zip container, or a bare pickle stream (protocol 2..5).
  if (n >= 4 && std::memcmp(head, "PK\x03\x04", 4) == 0) return true;
  return n >= 2 && head[0] == 0x80 && head[1] >= 2 && head[1] <= 5;
}

std::string PickleMessage(const std::filesystem::path& path) {
  return StrCat(path.string(),
                ": a PyTorch pickle (.ckpt/.pt/.bin) can run arbitrary code when it is loaded, so "
                "Kiln does not read it; convert it to .safetensors first, for example with "
                "`python -c \"import torch, safetensors.torch as st; "
                "st.save_file({k: v.contiguous() for k, v in torch.load('IN', "
                "weights_only=True)['state_dict'].items()}, 'OUT.safetensors')\"`");
}

}  // namespace

absl::Status CheckNotPickle(const std::filesystem::path& path) {
  const std::string ext = path.extension().string();
  if (ext == ".ckpt" || ext == ".pt" || ext == ".pth" || ext == ".bin" || ext == ".pkl") {
    return absl::InvalidArgumentError(PickleMessage(path));
  }
  std::ifstream in(path, std::ios::binary);
  unsigned char head[4] = {};
  in.read(reinterpret_cast<char*>(head), sizeof head);
  if (LooksLikePickle(head, static_cast<size_t>(in.gcount()))) {
    return absl::InvalidArgumentError(PickleMessage(path));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<const SafetensorsFile>> SafetensorsFile::Open(
    const std::filesystem::path& path) {
  const std::string file = path.string();
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(StrCat(file, ": not a valid safetensors file: ", why));
  };
  KILN_RETURN_IF_ERROR(CheckNotPickle(path));
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::NotFoundError(StrCat(file, ": cannot open: ", std::strerror(errno)));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return bad("not a regular file");
  }
  std::shared_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;
  f->size_ = static_cast<uint64_t>(st.st_size);
  if (f->size_ < 8) {
    ::close(fd);
    return bad(StrCat("truncated: ", f->size_, " bytes, shorter than the 8-byte header length"));
  }
  void* map = ::mmap(nullptr, f->size_, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (map == MAP_FAILED) return absl::InternalError(StrCat(file, ": mmap failed"));
  f->map_ = map;
  const auto* bytes = static_cast<const unsigned char*>(map);

  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes[i];
  if (header_len > kMaxHeaderBytes) {
    return bad(StrCat("the header claims ", header_len, " bytes, more than the limit of ",
                      kMaxHeaderBytes));
  }
  if (header_len > f->size_ - 8) {
    return bad(StrCat("truncated: the header claims ", header_len, " bytes but the file has ",
                      f->size_ - 8, " after the length"));
  }
  f->data_offset_ = 8 + header_len;
  const uint64_t data_bytes = f->size_ - f->data_offset_;
  std::string_view text(reinterpret_cast<const char*>(bytes + 8), header_len);
  auto parsed = ParseJsonWithLimits(text, "the header", 4);
  if (!parsed.ok()) return bad(parsed.status().message());
  const nlohmann::json& header = *parsed;
  if (!header.is_object()) return bad("the header is not a JSON object");

  for (const auto& kv : header.items()) {
    const std::string& name = kv.key();
    const nlohmann::json& entry = kv.value();
    if (name == "__metadata__") {
      if (!entry.is_object()) return bad("__metadata__ is not an object");
      for (const auto& [k, v] : entry.items()) {
        if (!v.is_string()) return bad(StrCat("__metadata__.", k, " is not a string"));
        f->metadata_[k] = v.get<std::string>();
      }
      continue;
    }
    auto bad_tensor = [&](std::string_view why) {
      return bad(StrCat("tensor '", name, "': ", why));
    };
    if (!entry.is_object()) return bad_tensor("its entry is not an object");
    auto dtype = entry.find("dtype");
    auto shape = entry.find("shape");
    auto offsets = entry.find("data_offsets");
    if (dtype == entry.end() || !dtype->is_string()) return bad_tensor("no dtype");
    if (shape == entry.end() || !shape->is_array()) return bad_tensor("no shape");
    if (offsets == entry.end() || !offsets->is_array() || offsets->size() != 2 ||
        !(*offsets)[0].is_number_unsigned() || !(*offsets)[1].is_number_unsigned()) {
      return bad_tensor("data_offsets is not a pair of byte offsets");
    }
    TensorInfo info;
    info.dtype_name = dtype->get<std::string>();
    const DtypeName* known = nullptr;
    for (const auto& d : kDtypes) {
      if (d.name == info.dtype_name) known = &d;
    }
    if (!known) return bad_tensor(StrCat("unsupported dtype ", info.dtype_name));
    info.dtype = known->type;
    uint64_t numel = 1;
    const uint64_t item = c10::elementSize(info.dtype);
    for (const auto& d : *shape) {
      if (!d.is_number_unsigned()) return bad_tensor("a dimension is not a non-negative integer");
      const uint64_t dim = d.get<uint64_t>();
      if (dim != 0 && numel > (data_bytes / item + 1) / dim) {
        return bad_tensor("its shape is larger than the file");
      }
      numel *= dim;
      info.shape.push_back(static_cast<int64_t>(dim));
    }
    info.begin = (*offsets)[0].get<uint64_t>();
    info.end = (*offsets)[1].get<uint64_t>();
    if (info.begin > info.end || info.end > data_bytes) {
      return bad_tensor(StrCat("data_offsets [", info.begin, ", ", info.end,
                               "] lie outside the data (", data_bytes,
                               " bytes): the file is truncated or damaged"));
    }
    if (info.end - info.begin != numel * item) {
      return bad_tensor(StrCat("its shape and dtype need ", numel * item,
                               " bytes but data_offsets give ", info.end - info.begin));
    }
    f->tensors_.emplace(name, std::move(info));
  }
  // Byte ranges must not overlap (the format also forbids holes; a hole is harmless, so it is
  // tolerated).
  std::vector<std::pair<uint64_t, const std::string*>> order;
  for (const auto& [name, info] : f->tensors_) {
    if (info.end > info.begin) order.emplace_back(info.begin, &name);
  }
  std::sort(order.begin(), order.end());
  for (size_t i = 1; i < order.size(); ++i) {
    const TensorInfo& prev = f->tensors_.at(*order[i - 1].second);
    if (order[i].first < prev.end) {
      return bad(
          StrCat("tensors '", *order[i - 1].second, "' and '", *order[i].second, "' overlap"));
    }
  }
  return std::shared_ptr<const SafetensorsFile>(std::move(f));
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) ::munmap(map_, size_);
}

absl::StatusOr<torch::Tensor> SafetensorsFile::Get(std::string_view name) const {
  auto it = tensors_.find(std::string(name));
  if (it == tensors_.end()) {
    return absl::NotFoundError(StrCat(path_.string(), ": no tensor '", name, "'"));
  }
  const TensorInfo& info = it->second;
  auto* data = static_cast<unsigned char*>(map_) + data_offset_ + info.begin;
  const auto options = torch::TensorOptions().dtype(info.dtype);
  const size_t item = c10::elementSize(info.dtype);
  if (reinterpret_cast<uintptr_t>(data) % item != 0) {
    torch::Tensor copy = torch::empty(info.shape, options);
    std::memcpy(copy.data_ptr(), data, info.end - info.begin);
    return copy;
  }
  std::shared_ptr<const SafetensorsFile> keep = shared_from_this();
  return torch::from_blob(
      data, info.shape, [keep](void*) {}, options);
}

void SafetensorsFile::Release(std::string_view name) const {
  auto it = tensors_.find(std::string(name));
  if (it == tensors_.end()) return;
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  // Whole pages inside the tensor's bytes only: its neighbours may still be in use.
  const uint64_t begin = (data_offset_ + it->second.begin + page - 1) / page * page;
  const uint64_t end = (data_offset_ + it->second.end) / page * page;
  if (end > begin) {
    ::madvise(static_cast<char*>(map_) + begin, end - begin, MADV_DONTNEED);
  }
}

std::string SerializeSafetensors(
    const std::vector<std::pair<std::string, torch::Tensor>>& tensors) {
  nlohmann::json header = nlohmann::json::object();
  std::string data;
  for (const auto& [name, t] : tensors) {
    torch::Tensor c = t.contiguous().cpu();
    const auto* p = static_cast<const char*>(c.data_ptr());
    const size_t n = c.numel() * c.element_size();
    header[name] = {{"dtype", std::string(NameOf(c.scalar_type()))},
                    {"shape", c.sizes().vec()},
                    {"data_offsets", {data.size(), data.size() + n}}};
    data.append(p, n);
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((text.size() >> (8 * i)) & 0xff);
  return out + text + data;
}

}  // namespace kiln::engine::sd
