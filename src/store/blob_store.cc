#include "store/blob_store.h"

#include "core/crypto.h"
#include "core/status_util.h"
#include "core/strings.h"

namespace kiln::store {

absl::Status CheckKey(std::string_view key) {
  if (key.empty()) return InvalidField("key", "the key is empty");
  if (key.size() > kMaxKeyBytes) {
    return InvalidField("key", StrCat("the key is longer than ", kMaxKeyBytes, " bytes"));
  }
  if (key.front() == '/') return InvalidField("key", "the key must be relative");
  for (char c : key) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f || c == '\\') {
      return InvalidField("key", "the key holds a control character or a backslash");
    }
  }
  for (std::string_view segment : Split(key, "/")) {
    if (segment.empty() || segment == "." || segment == "..") {
      return InvalidField("key", StrCat("the key '", key, "' has an empty, '.' or '..' segment"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Versioned> VersionedByHash(absl::StatusOr<std::string> bytes) {
  if (!bytes.ok()) return bytes.status();
  std::string version = Sha256Hex(*bytes);
  return Versioned{std::move(*bytes), std::move(version)};
}

absl::Status ChangedByAnotherWriter(std::string_view key) {
  return absl::FailedPreconditionError(
      StrCat("'", key, "' was changed (or removed) by another writer since it was read"));
}

absl::StatusOr<std::unique_ptr<BlobStore>> BlobStore::Open(std::string_view url) {
  if (url == "memory:") return NewMemoryStore();
  constexpr std::string_view kFile = "file://";
  if (url.substr(0, kFile.size()) == kFile) {
    std::string path(url.substr(kFile.size()));
    if (path.empty() || path.front() != '/') {
      return InvalidField("store", StrCat("'", url, "': a file URL needs an absolute path"));
    }
    return OpenFileStore(path);
  }
  if (url.substr(0, 5) == "s3://") return OpenS3Store(url);
  return InvalidField("store",
                      StrCat("'", url, "' is not a store URL (file:///dir, s3://bucket/prefix)"));
}

}  // namespace kiln::store
