#include "http/server.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <thread>
#include <type_traits>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "core/allocator.h"
#include "core/logging.h"
#include "core/strings.h"

namespace kiln::http {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using TlsStream = beast::ssl_stream<beast::tcp_stream>;

// Request bodies at least this large are given back to the OS after the request (see OnRead).
constexpr size_t kReleaseBodyBytes = 4 << 20;

}  // namespace

struct Server::Impl {
  ServerOptions options;
  const Router* router = nullptr;
  asio::io_context ioc;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
  // The acceptor, its pause timer and Shutdown's close run on one strand.
  asio::strand<asio::io_context::executor_type> accept_strand{ioc.get_executor()};
  tcp::acceptor acceptor{accept_strand};
  asio::thread_pool handlers;
  std::vector<std::thread> io_threads;
  std::atomic<int> in_flight{0};
  std::atomic<bool> stopping{false};
  absl::Mutex mu;
  bool shut_down ABSL_GUARDED_BY(mu) = false;
  uint16_t port = 0;
  std::optional<ssl::context> tls;  // set: every connection is TLS
  // When accept fails, accepting pauses before it tries again, and the failure is logged at
  // most every 10 s. Out of descriptors, a spare one (on /dev/null) is given up to accept and
  // close the connections waiting in the backlog, so their clients are told at once instead of
  // hanging. All of this is touched only on accept_strand.
  int reserve_fd = -1;
  asio::steady_timer accept_pause{accept_strand};
  std::chrono::steady_clock::time_point last_accept_warning{};
  int64_t shed_since_warning = 0;
  int64_t failures_since_warning = 0;

  explicit Impl(const ServerOptions& o) : options(o), handlers(o.handler_threads) {}
  ~Impl() {
    if (reserve_fd >= 0) ::close(reserve_fd);
  }

  void Accept();
  // After accept failed: sheds the backlog when out of descriptors (EMFILE/ENFILE), warns at
  // most every 10 s, and resumes accepting after a pause.
  void AcceptFailed(const beast::error_code& ec);
  // Runs the I/O loop until the server stops; an exception that escapes a handler (a parser
  // throwing on hostile input) is logged and costs only its own connection.
  void RunIo();
};

namespace {

// One connection: read a request, run its handler on the pool, write the response, repeat.
// `Stream`: beast::tcp_stream, or TlsStream over it (a handshake first, and every write
// asynchronous).
template <class Stream>
class Session : public std::enable_shared_from_this<Session<Stream>> {
  static constexpr bool kTls = std::is_same_v<Stream, TlsStream>;
  using std::enable_shared_from_this<Session<Stream>>::shared_from_this;

 public:
  // The read buffer is bounded by the header limit: the header, each chunk-size line (with its
  // extensions) and the trailer section must each fit in it at once, so none can exceed the
  // limit; the body streams through it.
  Session(tcp::socket socket, Server::Impl* server)
      : stream_(MakeStream(std::move(socket), server)),
        server_(server),
        buffer_(server->options.max_header_bytes) {
    chunk_header_ = [this](uint64_t, beast::string_view extensions, beast::error_code& ec) {
      extension_bytes_ += extensions.size();
      if (extension_bytes_ > server_->options.max_header_bytes) {
        extensions_over_ = true;
        ec = bhttp::error::bad_chunk_extension;
      }
    };
  }

  void Run() {
    // Synchronous writes (Respond) must never wait for a slow client; asynchronous operations
    // are unaffected by this flag.
    beast::error_code ec;
    Lowest().socket().non_blocking(true, ec);
    if constexpr (kTls) {
      // The handshake is held to the time of a request's head: a client that connects and
      // says nothing is cut off as one that sends no request.
      asio::dispatch(stream_.get_executor(), [self = shared_from_this()] {
        self->Lowest().expires_after(self->server_->options.read_timeout);
        self->stream_.async_handshake(ssl::stream_base::server,
                                      [self](beast::error_code handshake_ec) {
                                        if (handshake_ec) return self->Close();
                                        self->Read();
                                      });
      });
    } else {
      asio::dispatch(stream_.get_executor(),
                     beast::bind_front_handler(&Session::Read, shared_from_this()));
    }
  }

 private:
  static Stream MakeStream(tcp::socket socket, Server::Impl* server) {
    if constexpr (kTls) {
      return Stream(std::move(socket), *server->tls);
    } else {
      return Stream(std::move(socket));
    }
  }
  beast::tcp_stream& Lowest() { return beast::get_lowest_layer(stream_); }

  void Read() {
    if (server_->stopping) return Close();
    parser_.emplace();
    parser_->body_limit(server_->options.max_body_bytes);
    parser_->header_limit(static_cast<uint32_t>(server_->options.max_header_bytes));
    // Chunk extensions of all chunks together count against the header limit too.
    extension_bytes_ = 0;
    extensions_over_ = false;
    parser_->on_chunk_header(chunk_header_);
    Lowest().expires_after(first_request_ ? server_->options.read_timeout
                                          : server_->options.idle_timeout);
    bhttp::async_read_header(stream_, buffer_, *parser_,
                             beast::bind_front_handler(&Session::OnHeader, shared_from_this()));
  }

  // The header is in (or the read failed). A client that waits to be told before it sends its
  // body (`Expect: 100-continue`: curl, for bodies over 1 MiB, waits a whole second when no
  // answer comes) hears "100 Continue" now; a body over the limit was refused already (Beast
  // checks Content-Length against body_limit with the header).
  void OnHeader(beast::error_code ec, size_t) {
    if (ec || parser_->is_done()) return OnRead(ec, 0);
    const auto& header = parser_->get();
    if (header.version() >= 11 && beast::iequals(header[bhttp::field::expect], "100-continue")) {
      static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      return asio::async_write(stream_, asio::buffer(kContinue.data(), kContinue.size()),
                               [self = shared_from_this()](beast::error_code write_ec, size_t) {
                                 if (write_ec) return self->Close();
                                 self->ReadBody();
                               });
    }
    ReadBody();
  }

  // Most bodies arrive with their header: what is buffered is parsed here, and the connection
  // waits for more only when the body is not complete.
  void ReadBody() {
    beast::error_code ec;
    parser_->eager(true);
    while (!parser_->is_done() && buffer_.size() > 0) {
      const size_t used = parser_->put(buffer_.data(), ec);
      buffer_.consume(used);
      if (ec == bhttp::error::need_more) {
        ec = {};
        break;
      }
      if (ec || used == 0) break;
    }
    if (ec || parser_->is_done()) return OnRead(ec, 0);
    Lowest().expires_after(server_->options.read_timeout);  // the body's own time
    bhttp::async_read(stream_, buffer_, *parser_,
                      beast::bind_front_handler(&Session::OnRead, shared_from_this()));
  }

  void OnRead(beast::error_code ec, size_t) {
    first_request_ = false;
    if (ec == bhttp::error::end_of_stream || ec == asio::error::operation_aborted ||
        ec == beast::error::timeout || ec == asio::error::connection_reset ||
        ec == asio::error::eof || ec == ssl::error::stream_truncated) {
      return Close();
    }
    if (ec == bhttp::error::body_limit) {
      return WriteError(413, StrCat("request body exceeds the limit of ",
                                    server_->options.max_body_bytes, " bytes"));
    }
    if (ec == bhttp::error::header_limit) return WriteError(431, "request headers are too large");
    if (extensions_over_) {
      return WriteError(431, StrCat("chunk extensions exceed the limit of ",
                                    server_->options.max_header_bytes, " bytes"));
    }
    if (ec == bhttp::error::buffer_overflow) {
      return WriteError(431, StrCat("a header section, chunk header or trailer section exceeds ",
                                    "the limit of ", server_->options.max_header_bytes, " bytes"));
    }
    if (ec) return WriteError(400, StrCat("malformed HTTP request: ", ec.message()));

    auto req = parser_->release();
    keep_alive_ = req.keep_alive();
    // A large body goes back to the OS once the last holder of the request lets go: the
    // allocator keeps freed blocks for tensors, and a stream of large bodies (uploads, or
    // refused junk) would otherwise pile up in its arenas.
    const bool large_body = req.body().size() >= kReleaseBodyBytes;
    std::shared_ptr<Request> request(new Request, [large_body](Request* r) {
      delete r;
      if (large_body) ReleaseFreedMemory();
    });
    request->method = std::string(req.method_string());
    request->target = std::string(req.target());
    for (const auto& field : req) {
      request->headers[ToLowerAscii(std::string(field.name_string()))] = std::string(field.value());
    }
    request->body = std::move(req.body());
    if (!remote_) {  // once per connection: getpeername is a system call
      beast::error_code ep_ec;
      auto ep = Lowest().socket().remote_endpoint(ep_ec);
      remote_ = ep_ec ? std::string() : ep.address().to_string();
    }
    request->remote = *remote_;
    // Nothing reads the socket while a deferred answer is prepared, and the socket stays open
    // until it is sent, so a peek from another thread is safe then (no Asio state is touched).
    // Bytes already buffered are a pipelined request: its client may half-close and still wait.
    // Over TLS the peek would see records (a close_notify looks like data), so it is not
    // asked: a TLS client that left is found only when its answer cannot be written.
    request->client_left = [fd = Lowest().socket().native_handle(),
                            pipelined = buffer_.size() > 0 || kTls] {
      if (pipelined) return false;
      char byte;
      const ssize_t n = ::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
      return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
    };
    if (auto header = request->Header("traceparent"); header) {
      if (auto incoming = ParseTraceparent(*header)) {
        request->parent_span_id = incoming->span_id;
        request->trace = incoming->Child();
      }
    }
    if (!request->trace.valid()) request->trace = TraceContext::NewRoot();
    if (!ParseTarget(request->target, request->path, request->query)) {
      return WriteError(400, "malformed request target");
    }
    version_ = req.version();
    Lowest().expires_never();
    ++server_->in_flight;
    current_ = request;
    start_ = std::chrono::system_clock::now();
    start_steady_ = std::chrono::steady_clock::now();
    auto match = std::make_shared<Router::Match>(server_->router->Resolve(*request));
    route_ = server_->router->Pattern(*match);
    // A handler may block (a database write, a large upload to decode): run it off the I/O
    // threads, unless its route is marked quick (it parses a small body and defers the rest).
    if (server_->router->RunsInline(*match)) return Handle(request, *match);
    asio::post(server_->handlers,
               [self = shared_from_this(), request, match] { self->Handle(request, *match); });
  }

  void Handle(const std::shared_ptr<Request>& request, const Router::Match& match) {
    Response response;
    try {
      response = server_->router->Dispatch(*request, match);
    } catch (const std::exception& e) {
      log::Error("handler threw", {{"path", request->path}, {"error", e.what()}});
      response = server_->router->render_error()(500, "internal error");
    }
    if (response.deferred) {
      auto deferred = std::move(response.deferred);
      auto once = std::make_shared<std::atomic<bool>>(false);
      deferred([self = shared_from_this(), once](Response later) {
        if (once->exchange(true)) return;
        self->Respond(std::move(later));
      });
      return;
    }
    Respond(std::move(response));
  }

  // Answers the request (from any thread). A plain response is written right here, on the thread
  // that produced it, as far as the socket takes it without blocking: a request answered by a
  // replica or a handler thread would otherwise wake an I/O thread just to copy a few KiB, a
  // context switch that costs more than the write. What the socket does not take is finished
  // asynchronously on the connection's executor.
  void Respond(Response response) {
    if (response.stream) {
      asio::post(stream_.get_executor(),
                 [self = shared_from_this(), response = std::move(response)]() mutable {
                   self->WriteStream(std::move(response));
                 });
      return;
    }
    Observe(response.status);
    auto out = std::make_shared<Outgoing>(std::move(response), version_,
                                          keep_alive_ && !server_->stopping);
    beast::error_code ec = asio::error::would_block;
    if constexpr (!kTls) {
      // The socket is in non-blocking mode for synchronous calls (see Run), so write_some stops
      // with would_block when the kernel's buffer is full instead of waiting for the client.
      // (TLS records are written only by the connection's own asynchronous operations.)
      ec = {};
      while (!out->serializer.is_done()) {
        bhttp::write_some(Lowest().socket(), out->serializer, ec);
        if (ec) break;
      }
    }
    if (ec == asio::error::would_block) {
      return asio::post(stream_.get_executor(), [self = shared_from_this(), out] {
        self->Lowest().expires_after(self->server_->options.read_timeout);
        bhttp::async_write(self->stream_, out->serializer,
                           [self, out](beast::error_code ec, size_t) { self->Written(ec, *out); });
      });
    }
    // Even off the connection's executor, the next read can start right here: nothing else
    // touches this connection between a request and its answer (no operation is pending, and
    // the read's completion will run on the executor). Posting it instead would wake an I/O
    // thread once more per request.
    Written(ec, *out);
  }

  // A response and its serializer, alive until the write finishes.
  struct Outgoing {
    Outgoing(Response response, unsigned version, bool keep) : keep(keep) {
      message.version(version);
      message.result(static_cast<unsigned>(response.status));
      message.set(bhttp::field::server, "kiln");
      if (!response.content_type.empty()) {
        message.set(bhttp::field::content_type, response.content_type);
      }
      for (auto& [k, v] : response.headers) message.set(k, v);
      message.body() = std::move(response.body);
      message.keep_alive(keep);
      message.prepare_payload();
    }
    bhttp::response<bhttp::string_body> message;
    bhttp::response_serializer<bhttp::string_body> serializer{message};
    bool keep;
  };

  // After a counted response went out: the next request, or close.
  // The request leaves in_flight last: Server::Shutdown waits for that count, and this may run
  // off the I/O threads, so nothing here may touch the server after it.
  void Written(beast::error_code ec, const Outgoing& out) {
    if (ec || !out.keep) {
      Close();
    } else {
      Read();
    }
    --server_->in_flight;
  }

  // Tells the observer about the request being answered.
  void Observe(int status) {
    if (!server_->options.observer) return;
    RequestRecord record;
    record.request = current_.get();
    record.method = current_ ? std::string_view(current_->method) : std::string_view();
    record.route = route_;
    record.status = status;
    if (current_) {
      record.start = start_;
      record.elapsed = std::chrono::steady_clock::now() - start_steady_;
    } else {
      record.start = std::chrono::system_clock::now();
    }
    server_->options.observer(record);
    current_.reset();
  }

  // Streams a chunked body from response.stream; the connection closes after it.
  void WriteStream(Response response) {
    Observe(response.status);
    auto res = std::make_shared<bhttp::response<bhttp::empty_body>>();
    res->version(version_);
    res->result(static_cast<unsigned>(response.status));
    res->set(bhttp::field::server, "kiln");
    if (!response.content_type.empty()) res->set(bhttp::field::content_type, response.content_type);
    for (auto& [k, v] : response.headers) res->set(k, v);
    res->keep_alive(false);
    res->chunked(true);
    auto sr = std::make_shared<bhttp::response_serializer<bhttp::empty_body>>(*res);
    std::shared_ptr<ChunkSource> source = std::move(response.stream);
    Lowest().expires_never();
    bhttp::async_write_header(
        stream_, *sr, [self = shared_from_this(), res, sr, source](beast::error_code ec, size_t) {
          if (ec) return self->EndStream(source, /*cancel=*/true);
          self->PullChunk(source);
        });
  }

  void PullChunk(std::shared_ptr<ChunkSource> source) {
    source->Next([self = shared_from_this(), source](std::optional<std::string> chunk) {
      asio::post(self->stream_.get_executor(), [self, source, chunk = std::move(chunk)] {
        if (!chunk) {
          asio::async_write(self->stream_, bhttp::make_chunk_last(),
                            [self, source](beast::error_code, size_t) {
                              self->EndStream(source, /*cancel=*/false);
                            });
          return;
        }
        auto data = std::make_shared<std::string>(std::move(*chunk));
        asio::async_write(self->stream_, bhttp::make_chunk(asio::buffer(*data)),
                          [self, source, data](beast::error_code ec, size_t) {
                            if (ec) return self->EndStream(source, /*cancel=*/true);
                            self->PullChunk(source);
                          });
      });
    });
  }

  void EndStream(const std::shared_ptr<ChunkSource>& source, bool cancel) {
    if (cancel) source->Cancel();
    --server_->in_flight;
    Close();
  }

  // An error found before any handler ran (not counted in in_flight); the connection closes.
  void WriteError(int status, const std::string& message) {
    keep_alive_ = false;
    current_.reset();
    route_.clear();
    Observe(status);
    auto out = std::make_shared<Outgoing>(server_->router->render_error()(status, message),
                                          version_, /*keep=*/false);
    Lowest().expires_after(server_->options.read_timeout);
    bhttp::async_write(
        stream_, out->serializer,
        [self = shared_from_this(), out](beast::error_code, size_t) { self->Close(); });
  }

  // Over TLS too the socket just closes (no close_notify): every response carries its length
  // or ends with the last chunk, so a client cannot mistake a cut for the end of one.
  void Close() {
    beast::error_code ec;
    Lowest().socket().shutdown(tcp::socket::shutdown_send, ec);
    Lowest().socket().close(ec);
  }

  Stream stream_;
  Server::Impl* server_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  // Counts chunk-extension bytes (the parser keeps a reference to it).
  std::function<void(uint64_t, beast::string_view, beast::error_code&)> chunk_header_;
  size_t extension_bytes_ = 0;
  bool extensions_over_ = false;
  std::optional<std::string> remote_;  // the peer's address
  bool keep_alive_ = true;
  bool first_request_ = true;
  unsigned version_ = 11;
  // The request being answered, for the observer.
  std::shared_ptr<Request> current_;
  std::string route_;
  std::chrono::system_clock::time_point start_;
  std::chrono::steady_clock::time_point start_steady_;
};

}  // namespace

void Server::Impl::Accept() {
  acceptor.async_accept(asio::make_strand(ioc), [this](beast::error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted || stopping) return;
    if (ec) return AcceptFailed(ec);
    try {
      if (tls) {
        std::make_shared<Session<TlsStream>>(std::move(socket), this)->Run();
      } else {
        std::make_shared<Session<beast::tcp_stream>>(std::move(socket), this)->Run();
      }
    } catch (const std::exception& e) {  // bad_alloc: drop this connection, keep accepting
      log::Error("cannot start a connection", {{"error", e.what()}});
    }
    if (reserve_fd < 0) reserve_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    Accept();
  });
}

void Server::Impl::AcceptFailed(const beast::error_code& ec) {
  ++failures_since_warning;
  const bool out_of_descriptors = ec == asio::error::no_descriptors ||
                                  ec == beast::error_code(ENFILE, boost::system::system_category());
  if (out_of_descriptors && reserve_fd >= 0) {
    ::close(reserve_fd);
    reserve_fd = -1;
    // The freed descriptor takes one waiting connection at a time; each is closed at once.
    for (int i = 0; i < 4096; ++i) {
      const int fd = ::accept4(acceptor.native_handle(), nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) break;
      ::close(fd);
      ++shed_since_warning;
    }
    reserve_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);  // else again after an accept
  }
  const auto now = std::chrono::steady_clock::now();
  if (now - last_accept_warning >= std::chrono::seconds(10)) {
    log::Warn(out_of_descriptors ? "out of file descriptors: connections are being refused"
                                 : "accept failed",
              {{"error", ec.message()},
               {"failed_accepts", failures_since_warning},
               {"connections_shed", shed_since_warning},
               {"in_flight", in_flight.load()}});
    last_accept_warning = now;
    failures_since_warning = 0;
    shed_since_warning = 0;
  }
  // Accepting again at once would most likely fail again at once (descriptors and memory come
  // back only as connections end).
  accept_pause.expires_after(std::chrono::milliseconds(100));
  accept_pause.async_wait([this](beast::error_code wait_ec) {
    if (!wait_ec && !stopping) Accept();
  });
}

void Server::Impl::RunIo() {
  for (;;) {
    try {
      ioc.run();
      return;
    } catch (const std::exception& e) {
      log::Error("an I/O handler threw; its connection is closed", {{"error", e.what()}});
    }
  }
}

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Server::~Server() { Shutdown(std::chrono::seconds(5)); }

namespace {

// A TLS server context from PEM files: TLS 1.2 and 1.3, the key checked against the certificate.
absl::StatusOr<ssl::context> MakeTlsContext(const std::string& cert, const std::string& key) {
  if (cert.empty() || key.empty()) {
    return absl::InvalidArgumentError(
        "TLS needs both a certificate (tls_cert) and a key (tls_key)");
  }
  ssl::context ctx(ssl::context::tls_server);
  ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                  ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 |
                  ssl::context::single_dh_use);
  // Client-initiated renegotiation costs the server a handshake per request of it.
  SSL_CTX_set_options(ctx.native_handle(), SSL_OP_NO_RENEGOTIATION);
  beast::error_code ec;
  ctx.use_certificate_chain_file(cert, ec);
  if (ec) {
    return absl::InvalidArgumentError(
        StrCat("tls_cert: cannot use '", cert, "' as a PEM certificate chain: ", ec.message()));
  }
  ctx.use_private_key_file(key, ssl::context::pem, ec);
  if (ec) {
    return absl::InvalidArgumentError(
        StrCat("tls_key: cannot use '", key, "' as a PEM private key: ", ec.message()));
  }
  if (SSL_CTX_check_private_key(ctx.native_handle()) != 1) {
    return absl::InvalidArgumentError(
        StrCat("tls_key: '", key, "' is not the key of the certificate in '", cert, "'"));
  }
  return ctx;
}

}  // namespace

bool Server::tls() const { return impl_->tls.has_value(); }

absl::StatusOr<std::unique_ptr<Server>> Server::Start(const ServerOptions& options,
                                                      const Router& router) {
  auto server = Listen(options, router);
  if (server.ok()) (*server)->Serve();
  return server;
}

absl::StatusOr<std::unique_ptr<Server>> Server::Listen(const ServerOptions& options,
                                                       const Router& router) {
  // Beast stores a field in at most 64 KiB; a header limit under that keeps every header and
  // trailer field a parse error instead of an exception.
  if (options.max_header_bytes < 1024 || options.max_header_bytes > (60 << 10)) {
    return absl::InvalidArgumentError(StrCat("max_header_bytes must be 1024..", 60 << 10));
  }
  auto impl = std::make_unique<Impl>(options);
  impl->router = &router;
  if (!options.tls_cert_file.empty() || !options.tls_key_file.empty()) {
    auto tls = MakeTlsContext(options.tls_cert_file, options.tls_key_file);
    if (!tls.ok()) return tls.status();
    impl->tls.emplace(std::move(*tls));
  }
  impl->reserve_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  beast::error_code ec;
  auto address = asio::ip::make_address(options.host, ec);
  if (ec) return absl::InvalidArgumentError(StrCat("bad host '", options.host, "'"));
  tcp::endpoint endpoint(address, options.port);
  impl->acceptor.open(endpoint.protocol(), ec);
  if (!ec) impl->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) impl->acceptor.bind(endpoint, ec);
  if (!ec) impl->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return absl::UnavailableError(
        StrCat("cannot listen on ", options.host, ":", options.port, ": ", ec.message()));
  }
  impl->port = impl->acceptor.local_endpoint().port();
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

void Server::Serve() {
  Impl* impl = impl_.get();
  impl->work.emplace(impl->ioc.get_executor());
  impl->Accept();
  for (int i = 0; i < std::max(1, impl->options.io_threads); ++i) {
    impl->io_threads.emplace_back([impl] { impl->RunIo(); });
  }
}

uint16_t Server::port() const { return impl_->port; }

int Server::in_flight() const { return impl_->in_flight.load(); }

void Server::Shutdown(std::chrono::milliseconds drain) {
  {
    absl::MutexLock lock(&impl_->mu);
    if (impl_->shut_down) return;
    impl_->shut_down = true;
  }
  impl_->stopping = true;
  asio::post(impl_->accept_strand, [impl = impl_.get()] {
    beast::error_code ec;
    impl->acceptor.close(ec);
    impl->accept_pause.cancel();
  });
  // Let requests already being handled finish and their responses go out.
  const auto deadline = std::chrono::steady_clock::now() + drain;
  absl::Mutex wait_mu;
  absl::MutexLock lock(&wait_mu);
  while (impl_->in_flight.load() > 0 && std::chrono::steady_clock::now() < deadline) {
    wait_mu.AwaitWithTimeout(
        absl::Condition(
            +[](std::atomic<int>* n) { return n->load() == 0; }, &impl_->in_flight),
        absl::Milliseconds(20));
  }
  impl_->work.reset();
  impl_->ioc.stop();
  for (auto& t : impl_->io_threads) t.join();
  impl_->handlers.join();
}

}  // namespace kiln::http
