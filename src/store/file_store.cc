// The filesystem BlobStore: one file per key under a root directory. Writes go to a temporary
// file in the same directory, are fsync'ed, then renamed over the key, so readers never see a
// partial value and a crash leaves either the old value or the new one.
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <utility>

#include "core/crypto.h"
#include "core/status_util.h"
#include "core/strings.h"
#include "store/blob_store.h"

namespace kiln::store {
namespace {

namespace fs = std::filesystem;

absl::Status ErrnoError(std::string_view what, const fs::path& path, int err) {
  const std::string msg = StrCat(what, " ", path.string(), ": ", std::strerror(err));
  // 507 Insufficient Storage: not the client's fault, and not a rate limit (429).
  if (err == ENOSPC || err == EDQUOT) {
    return WithHttpStatus(absl::ResourceExhaustedError(StrCat("the disk is full: ", msg)), 507);
  }
  if (err == ENOENT) return absl::NotFoundError(msg);
  return absl::UnavailableError(msg);
}

class FileStore final : public BlobStore {
 public:
  explicit FileStore(fs::path root) : root_(std::move(root)) {}

  absl::Status Put(std::string_view key, std::string_view bytes) override {
    KILN_RETURN_IF_ERROR(CheckKey(key));
    const fs::path target = root_ / std::string(key);
    const fs::path tmp = target.parent_path() / StrCat(".tmp-", target.filename().string(), "-",
                                                       ::getpid(), "-", counter_.fetch_add(1));
    int fd = -1;
    // A Delete that empties the folder removes it; one that does so between our mkdir and our
    // open makes the open fail with ENOENT: make the folder again (a few times at most).
    for (int attempt = 0; fd < 0; ++attempt) {
      std::error_code ec;
      fs::create_directories(target.parent_path(), ec);
      if (ec) {
        return absl::UnavailableError(
            StrCat("mkdir ", target.parent_path().string(), ": ", ec.message()));
      }
      fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      if (fd < 0 && (errno != ENOENT || attempt == 4)) return ErrnoError("open", tmp, errno);
    }
    size_t written = 0;
    while (written < bytes.size()) {
      const ssize_t n = ::write(fd, bytes.data() + written, bytes.size() - written);
      if (n < 0) {
        if (errno == EINTR) continue;
        const int err = errno;
        ::close(fd);
        ::unlink(tmp.c_str());
        return ErrnoError("write", tmp, err);
      }
      written += static_cast<size_t>(n);
    }
    if (::fsync(fd) != 0 || ::close(fd) != 0) {
      const int err = errno;
      ::unlink(tmp.c_str());
      return ErrnoError("fsync", tmp, err);
    }
    if (::rename(tmp.c_str(), target.c_str()) != 0) {
      const int err = errno;
      ::unlink(tmp.c_str());
      return ErrnoError("rename", target, err);
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::string> Get(std::string_view key) override {
    KILN_RETURN_IF_ERROR(CheckKey(key));
    const fs::path path = root_ / std::string(key);
    std::error_code ec;
    if (!fs::is_regular_file(path, ec)) {
      return absl::NotFoundError(StrCat("no object at key '", key, "'"));
    }
    std::ifstream in(path, std::ios::binary);
    if (!in) return ErrnoError("open", path, errno);
    std::string out((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (in.bad()) return absl::UnavailableError(StrCat("read ", path.string(), " failed"));
    return out;
  }

  absl::StatusOr<Versioned> GetVersioned(std::string_view key) override {
    return VersionedByHash(Get(key));
  }

  // The check and the write happen under an exclusive flock on the root's lock file (never
  // deleted), which every conditional writer of this root takes, in any process, and Delete too
  // (it removes emptied folders a writer could be about to use).
  absl::StatusOr<std::string> PutIf(std::string_view key, std::string_view bytes,
                                    std::string_view version) override {
    KILN_RETURN_IF_ERROR(CheckKey(key));
    KILN_ASSIGN_OR_RETURN(RootLock lock, LockRoot());
    auto current = GetVersioned(key);
    if (!current.ok() && !absl::IsNotFound(current.status())) return current.status();
    const bool matches =
        version.empty() ? !current.ok() : current.ok() && current->version == version;
    if (!matches) return ChangedByAnotherWriter(key);
    KILN_RETURN_IF_ERROR(Put(key, bytes));
    return Sha256Hex(bytes);
  }

  absl::StatusOr<bool> Exists(std::string_view key) override {
    KILN_RETURN_IF_ERROR(CheckKey(key));
    std::error_code ec;
    return fs::is_regular_file(root_ / std::string(key), ec);
  }

  // A real write and delete of a small file: a full disk, a read-only mount or lost
  // permissions make the server not ready instead of failing each request.
  absl::Status Check() override {
    constexpr std::string_view kProbe = ".kiln-ready-check";
    KILN_RETURN_IF_ERROR(Put(kProbe, std::string(4096, 'k')));
    return Delete(kProbe);
  }

  absl::Status Delete(std::string_view key) override {
    KILN_RETURN_IF_ERROR(CheckKey(key));
    KILN_ASSIGN_OR_RETURN(RootLock lock, LockRoot());
    std::error_code ec;
    const fs::path path = root_ / std::string(key);
    fs::remove(path, ec);
    if (ec) return absl::UnavailableError(StrCat("delete '", key, "': ", ec.message()));
    // Folders the key leaves empty go too (a key's folders exist only for its files), but not
    // the top-level ones (jobs/, batches/); remove() refuses a folder that still holds
    // something, which ends the walk.
    for (fs::path dir = path.parent_path();
         dir.parent_path().string().size() > root_.string().size() && dir.parent_path() != root_;
         dir = dir.parent_path()) {
      if (!fs::remove(dir, ec) || ec) break;
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<std::string>> List(std::string_view prefix, size_t limit) override {
    std::vector<std::string> keys;
    std::error_code ec;
    // Walk only the deepest directory the prefix names in full.
    std::string dir(
        prefix.substr(0, prefix.rfind('/') == std::string_view::npos ? 0 : prefix.rfind('/')));
    if (!dir.empty()) KILN_RETURN_IF_ERROR(CheckKey(dir));
    const fs::path start = dir.empty() ? root_ : root_ / dir;
    if (!fs::is_directory(start, ec)) return keys;
    for (auto it = fs::recursive_directory_iterator(start, ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
      if (!it->is_regular_file(ec)) continue;
      const std::string name = it->path().filename().string();
      if (name.rfind(".tmp-", 0) == 0 || name == ".kiln-lock") continue;
      std::string key = fs::relative(it->path(), root_, ec).generic_string();
      if (key.compare(0, prefix.size(), prefix) == 0) keys.push_back(std::move(key));
    }
    if (ec) return absl::UnavailableError(StrCat("list '", prefix, "': ", ec.message()));
    std::sort(keys.begin(), keys.end());
    if (keys.size() > limit) keys.resize(limit);
    return keys;
  }

  absl::Status RemoveLeftovers(std::string_view dir) override {
    KILN_RETURN_IF_ERROR(CheckKey(dir));
    std::error_code ec;
    for (auto it = fs::directory_iterator(root_ / std::string(dir), ec);
         !ec && it != fs::directory_iterator(); it.increment(ec)) {
      if (it->path().filename().string().rfind(".tmp-", 0) == 0) fs::remove(it->path(), ec);
    }
    if (ec && ec != std::errc::no_such_file_or_directory) {
      return absl::UnavailableError(StrCat("cleaning ", dir, ": ", ec.message()));
    }
    return absl::OkStatus();
  }

  std::string Describe() const override { return "file://" + root_.string(); }

 private:
  // An exclusive flock on root/.kiln-lock, released when it goes out of scope.
  class RootLock {
   public:
    explicit RootLock(int fd) : fd_(fd) {}
    RootLock(RootLock&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
    RootLock& operator=(RootLock&&) = delete;
    ~RootLock() {
      if (fd_ >= 0) ::close(fd_);  // closing releases the lock
    }

   private:
    int fd_;
  };
  absl::StatusOr<RootLock> LockRoot() {
    const fs::path path = root_ / ".kiln-lock";
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return ErrnoError("open", path, errno);
    RootLock lock(fd);
    while (::flock(fd, LOCK_EX) != 0) {
      if (errno != EINTR) return ErrnoError("flock", path, errno);
    }
    return lock;
  }

  const fs::path root_;
  std::atomic<uint64_t> counter_{0};
};

}  // namespace

absl::StatusOr<std::unique_ptr<BlobStore>> OpenFileStore(const std::string& root) {
  std::error_code ec;
  fs::create_directories(root, ec);
  if (ec)
    return absl::UnavailableError(StrCat("cannot create store root ", root, ": ", ec.message()));
  if (::access(root.c_str(), W_OK) != 0) {
    return absl::PermissionDeniedError(StrCat("store root ", root, " is not writable"));
  }
  return std::unique_ptr<BlobStore>(new FileStore(fs::absolute(root).lexically_normal()));
}

}  // namespace kiln::store
