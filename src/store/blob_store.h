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

// A value and the version it was read at, for a conditional write (PutIf).
struct Versioned {
  std::string bytes;
  std::string version;  // S3: the ETag; the file and memory stores: the SHA-256 of the bytes
};

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
  // Get, with the version a conditional write names. NotFound when absent.
  virtual absl::StatusOr<Versioned> GetVersioned(std::string_view key) = 0;
  // Writes `bytes` only if the stored value is still at `version` (S3: If-Match), or, with an
  // empty `version`, only if `key` does not exist (If-None-Match: *). FailedPrecondition when
  // another writer came first (or the key is gone). Returns the new version. Atomic against the
  // other conditional writers of the store (S3: the service; the file store: a lock on the
  // key's folder, across processes; memory: a mutex); a plain Put does not wait for them.
  virtual absl::StatusOr<std::string> PutIf(std::string_view key, std::string_view bytes,
                                            std::string_view version) = 0;
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

// A Get's value with its SHA-256 as the version (for stores without versions of their own).
absl::StatusOr<Versioned> VersionedByHash(absl::StatusOr<std::string> bytes);

// The FailedPrecondition of a PutIf that found another writer's value.
absl::Status ChangedByAnotherWriter(std::string_view key);

// The filesystem store rooted at `root` (created if missing).
absl::StatusOr<std::unique_ptr<BlobStore>> OpenFileStore(const std::string& root);
// "s3://bucket[/prefix][?endpoint=http://host:port][&region=R][&addressing=path|virtual]":
// credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (/ AWS_SESSION_TOKEN), region from
// the URL, else AWS_REGION / AWS_DEFAULT_REGION, else us-east-1. With an endpoint, path-style.
absl::StatusOr<std::unique_ptr<BlobStore>> OpenS3Store(std::string_view url);
// An in-memory store for unit tests.
std::unique_ptr<BlobStore> NewMemoryStore();

}  // namespace kiln::store
