// LoadClient: an asynchronous HTTP/1.1 client to one server, for load generation. Requests run
// on a few I/O threads over keep-alive connections, opened as needed up to a maximum, so one
// process can hold thousands in flight. Thread-safe. Beast stays inside load_client.cc.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace kiln::http {

struct LoadRequest {
  std::string method = "GET";
  std::string target = "/";  // path and query
  std::string body;
  std::string content_type;  // set when body is not empty
  std::vector<std::pair<std::string, std::string>> headers;
};

struct LoadResponse {
  int status = 0;     // 0 when the request failed in transport
  std::string body;   // at most 64 MiB
  std::string error;  // transport failure: "connect: Connection refused", "read: timeout"
};

struct LoadClientOptions {
  std::string host;  // IP address or name
  std::string port;
  int threads = 1;
  int max_connections = 1024;
  std::chrono::seconds timeout{120};  // per request (connect, write, read)
};

class LoadClient {
 public:
  static absl::StatusOr<std::unique_ptr<LoadClient>> Create(const LoadClientOptions& options);
  ~LoadClient();  // Shutdown()

  // Sends `request`; `done` runs once, on an I/O thread, with the answer or the failure. When
  // every connection is busy and the maximum is reached, the request waits for a free one.
  void Send(LoadRequest request, std::function<void(LoadResponse)> done);
  // Runs `f` on an I/O thread after `delay` (open-loop arrivals, polling).
  void After(std::chrono::nanoseconds delay, std::function<void()> f);

  // Connections open now.
  int connections() const;
  // Stops the I/O threads; requests in flight get no answer. Idempotent.
  void Shutdown();

  struct Impl;

 private:
  explicit LoadClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kiln::http
