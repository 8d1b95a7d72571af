// Server: an HTTP/1.1 server (Boost.Beast) that reads requests on a few I/O threads and runs
// handlers on a separate pool, so a handler that waits for a model never stalls the sockets.
// Optionally over TLS (OpenSSL through Asio). Thread-safe. Beast stays inside server.cc.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "http/router.h"

namespace kiln::http {

// What the server reports for every answered request: metrics, traces and access logs hang on
// it. `request` is null when the request could not be parsed.
struct RequestRecord {
  const Request* request = nullptr;
  std::string_view method;
  std::string_view route;  // the matched pattern ("/v1/jobs/{id}"); "" when none matched
  int status = 0;
  std::chrono::system_clock::time_point start;  // when the whole request had been read
  std::chrono::nanoseconds elapsed{0};          // from start until the response was ready
};
// Called on the thread that answers the request (an I/O thread, a handler thread, or whichever
// thread ran a deferred response: for a small sync generation, a replica's step loop); must
// not block, and should be cheap.
using RequestObserver = std::function<void(const RequestRecord&)>;

struct ServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 8080;  // 0 picks a free port; see Server::port()
  int io_threads = 2;
  int handler_threads = 16;
  size_t max_body_bytes = 32 << 20;
  size_t max_header_bytes = 16 << 10;
  std::chrono::seconds read_timeout{60};  // to receive one whole request
  std::chrono::seconds idle_timeout{75};  // keep-alive connections with no request
  RequestObserver observer;               // optional
  // TLS (HTTPS) on this listener when both are set: PEM files, the certificate chain (leaf first)
  // and its private key; read once, at Listen. TLS 1.2 and 1.3 only.
  std::string tls_cert_file;
  std::string tls_key_file;
};

class Server {
 public:
  ~Server();  // Shutdown() if still running

  // Binds and starts serving `router` (which must outlive the server): Listen, then Serve.
  static absl::StatusOr<std::unique_ptr<Server>> Start(const ServerOptions& options,
                                                       const Router& router);
  // Binds and listens, but accepts nothing until Serve(): connections wait in the backlog. A
  // process takes its port before it takes work (a worker that cannot listen must not have
  // claimed jobs first).
  static absl::StatusOr<std::unique_ptr<Server>> Listen(const ServerOptions& options,
                                                        const Router& router);
  // Starts accepting and the I/O threads. Once; REQUIRES: made by Listen.
  void Serve();

  uint16_t port() const;
  bool tls() const;  // whether connections are HTTPS

  // Stops accepting, lets in-flight requests finish (up to `drain`), closes idle connections,
  // and joins every thread. Idempotent.
  void Shutdown(std::chrono::milliseconds drain = std::chrono::seconds(30));

  // Requests being handled right now.
  int in_flight() const;

  struct Impl;  // internal to server.cc

 private:
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kiln::http
