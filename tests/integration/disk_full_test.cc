// A full disk under the embedded server's data directory (a small tmpfs mounted in a private
// mount namespace that only the server sees, filled by the test through /proc/<pid>/root):
// /readyz says not ready and why, new jobs get a clear 507, the process keeps running, and it
// all recovers by itself once space is freed.
#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "core/ids.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/server_process.h"

namespace kiln::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// Writes zeros to `path` until the file system is full. Returns the bytes written.
size_t FillUp(const fs::path& path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return 0;
  const std::string chunk(1 << 16, '\0');
  size_t total = 0;
  while (true) {
    const ssize_t n = ::write(fd, chunk.data(), chunk.size());
    if (n <= 0) break;  // ENOSPC
    total += static_cast<size_t>(n);
  }
  ::close(fd);
  return total;
}

TEST(DiskFull, NotReadyAndClearErrorsThenRecovers) {
  const fs::path data = fs::temp_directory_path() / ("kiln-disk-full-" + NewUlid());
  fs::create_directories(data);
  // An unprivileged user namespace may mount a tmpfs; the server execs inside it (same pid).
  ServerProcess server({"--data", data.string(), "--models", TestModelsDir()},
                       {"/usr/bin/unshare", "--user", "--map-root-user", "--mount", "/bin/sh", "-c",
                        "mount -t tmpfs -o size=16m tmpfs \"$0\" && exec \"$@\"", data.string()});
  ASSERT_TRUE(server.started()) << server.log();
  const fs::path seen_data =
      fs::path("/proc") / std::to_string(server.pid()) / "root" / data.relative_path();
  const json request = {{"model", "test-pixel"}, {"prompt", "a red square"}, {"steps", 2}};
  auto post = [&] {
    return HttpRequest("POST", server.url() + "/v1/jobs", request.dump(),
                       {"Content-Type: application/json"});
  };
  auto succeeds = [&](const std::string& id) {
    return WaitUntil(std::chrono::seconds(60), [&] {
      return Body(HttpGet(server.url() + "/v1/jobs/" + id)).value("state", "") == "succeeded";
    });
  };
  ASSERT_EQ(HttpGet(server.url() + "/readyz").status, 200);
  HttpResult first = post();
  ASSERT_EQ(first.status, 202) << first.body;
  ASSERT_TRUE(succeeds(Body(first)["id"]));

  ASSERT_GT(FillUp(seen_data / "filler"), 0u) << "cannot reach the server's data directory";
  ASSERT_TRUE(WaitUntil(std::chrono::seconds(60), [&] {
    return HttpGet(server.url() + "/readyz").status == 503;
  })) << HttpGet(server.url() + "/readyz").body;
  const HttpResult ready = HttpGet(server.url() + "/readyz");
  EXPECT_NE(ready.body.find("the disk is full"), std::string::npos) << ready.body;
  const HttpResult refused = post();
  EXPECT_EQ(refused.status, 507) << refused.body;
  EXPECT_NE(Body(refused)["error"].value("message", "").find("the disk is full"), std::string::npos)
      << refused.body;
  EXPECT_EQ(HttpGet(server.url() + "/healthz").status, 200) << "the process must keep serving";
  EXPECT_EQ(HttpGet(server.url() + "/v1/jobs/" + Body(first)["id"].get<std::string>()).status, 200);

  fs::remove(seen_data / "filler");
  ASSERT_TRUE(WaitUntil(std::chrono::seconds(60), [&] {
    return HttpGet(server.url() + "/readyz").status == 200;
  })) << HttpGet(server.url() + "/readyz").body;
  HttpResult again = post();
  ASSERT_EQ(again.status, 202) << again.body;
  EXPECT_TRUE(succeeds(Body(again)["id"]));
  server.Signal(SIGTERM);
  EXPECT_EQ(server.Wait(std::chrono::seconds(30)), 0) << server.log();
  std::error_code ec;
  fs::remove_all(data, ec);
}

}  // namespace
}  // namespace kiln::testing
