// The in-memory BlobStore twin, for unit tests.
#include <map>

#include "absl/synchronization/mutex.h"
#include "core/crypto.h"
#include "core/status_util.h"
#include "core/strings.h"
#include "store/blob_store.h"

namespace kiln::store {
namespace {

class MemoryStore final : public BlobStore {
 public:
  absl::Status Put(std::string_view key, std::string_view bytes) override {
    KILN_RETURN_IF_ERROR(CheckKey(key));
    absl::MutexLock lock(&mu_);
    blobs_[std::string(key)] = std::string(bytes);
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> Get(std::string_view key) override {
    KILN_RETURN_IF_ERROR(CheckKey(key));
    absl::MutexLock lock(&mu_);
    auto it = blobs_.find(std::string(key));
    if (it == blobs_.end()) return absl::NotFoundError(StrCat("no object at key '", key, "'"));
    return it->second;
  }
  absl::StatusOr<bool> Exists(std::string_view key) override {
    KILN_RETURN_IF_ERROR(CheckKey(key));
    absl::MutexLock lock(&mu_);
    return blobs_.count(std::string(key)) > 0;
  }
  absl::StatusOr<Versioned> GetVersioned(std::string_view key) override {
    return VersionedByHash(Get(key));
  }
  absl::StatusOr<std::string> PutIf(std::string_view key, std::string_view bytes,
                                    std::string_view version) override {
    KILN_RETURN_IF_ERROR(CheckKey(key));
    absl::MutexLock lock(&mu_);
    auto it = blobs_.find(std::string(key));
    const bool matches = version.empty() ? it == blobs_.end()
                                         : it != blobs_.end() && Sha256Hex(it->second) == version;
    if (!matches) return ChangedByAnotherWriter(key);
    blobs_[std::string(key)] = std::string(bytes);
    return Sha256Hex(bytes);
  }
  absl::Status Delete(std::string_view key) override {
    KILN_RETURN_IF_ERROR(CheckKey(key));
    absl::MutexLock lock(&mu_);
    blobs_.erase(std::string(key));
    return absl::OkStatus();
  }
  absl::StatusOr<std::vector<std::string>> List(std::string_view prefix, size_t limit) override {
    absl::MutexLock lock(&mu_);
    std::vector<std::string> keys;
    for (auto it = blobs_.lower_bound(std::string(prefix));
         it != blobs_.end() && it->first.compare(0, prefix.size(), prefix) == 0 &&
         keys.size() < limit;
         ++it) {
      keys.push_back(it->first);
    }
    return keys;
  }
  std::string Describe() const override { return "memory:"; }

 private:
  absl::Mutex mu_;
  std::map<std::string, std::string> blobs_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

std::unique_ptr<BlobStore> NewMemoryStore() { return std::make_unique<MemoryStore>(); }

}  // namespace kiln::store
