// BlobStore: where results, job records and checkpoints live, behind one interface so that the
// embedded mode (a local directory) and the distributed mode (S3-compatible storage) share code.
// Keys are relative slash-separated paths ("jobs/01J.../0.png"); a key that could escape the
// root (empty segment, "..", absolute, backslash, control bytes) is rejected by every backend.
// Implementations are thread-safe.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kiln::store {

inline constexpr size_t kMaxKeyBytes = 512;

// InvalidArgument (field "key") unless `key` is a safe relative key.
absl::Status CheckKey(std::string_view key);

class BlobStore {
 public:
  virtual ~BlobStore() = default;

  // "file:///abs/dir" (created if missing), "s3://bucket/prefix?..." (OpenS3Store) or "memory:".
  static absl::StatusOr<std::unique_ptr<BlobStore>> Open(std::string_view url);

  // Writes the whole value atomically: a reader sees the old value or the new one, never a part.
  virtual absl::Status Put(std::string_view key, std::string_view bytes) = 0;
  // NotFound when absent.
  virtual absl::StatusOr<std::string> Get(std::string_view key) = 0;
  virtual absl::StatusOr<bool> Exists(std::string_view key) = 0;
  // Deleting an absent key is not an error.
  virtual absl::Status Delete(std::string_view key) = 0;
  // Keys starting with `prefix`, sorted, at most `limit`.
  virtual absl::StatusOr<std::vector<std::string>> List(std::string_view prefix,
                                                        size_t limit = 10000) = 0;
  // Removes what interrupted writes (a crash mid-Put) left in the folder `dir` ("jobs/ID"); the
  // keys themselves are never partial. Call only when no write to that folder is in flight.
  virtual absl::Status RemoveLeftovers(std::string_view dir) { return absl::OkStatus(); }
  // Whether the store can be used now (S3: the bucket answers a listing with these
  // credentials). For readiness; cheap enough to call every few seconds.
  virtual absl::Status Check() { return absl::OkStatus(); }
  // A short description for logs ("file:///data/blobs").
  virtual std::string Describe() const = 0;
};

// The filesystem store rooted at `root` (created if missing).
absl::StatusOr<std::unique_ptr<BlobStore>> OpenFileStore(const std::string& root);
// "s3://bucket[/prefix][?endpoint=http://host:port][&region=R][&addressing=path|virtual]":
// credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (/ AWS_SESSION_TOKEN), region from
// the URL, else AWS_REGION / AWS_DEFAULT_REGION, else us-east-1. With an endpoint, path-style.
absl::StatusOr<std::unique_ptr<BlobStore>> OpenS3Store(std::string_view url);
// An in-memory store for unit tests.
std::unique_ptr<BlobStore> NewMemoryStore();

}  // namespace kiln::store
