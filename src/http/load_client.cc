#include "http/load_client.h"

// Boost 1.74's awaitable.hpp uses std::exchange without including <utility>.
#include <utility>
//
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <deque>
#include <optional>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "core/strings.h"

namespace kiln::http {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;

// One keep-alive connection, used by one request at a time.
class Connection {
 public:
  Connection(asio::io_context& io, const tcp::resolver::results_type& endpoints,
             std::chrono::seconds timeout)
      : stream_(io), endpoints_(endpoints), timeout_(timeout) {}

  asio::awaitable<LoadResponse> RoundTrip(const bhttp::request<bhttp::string_body>& request) {
    beast::error_code ec;
    auto token = asio::redirect_error(asio::use_awaitable, ec);
    LoadResponse out;
    if (!connected_) {
      stream_.expires_after(timeout_);
      co_await stream_.async_connect(endpoints_, token);
      if (ec) co_return Broken("connect", ec);
      stream_.socket().set_option(tcp::no_delay(true));
      connected_ = true;
    }
    stream_.expires_after(timeout_);
    co_await bhttp::async_write(stream_, request, token);
    if (ec) co_return Broken("write", ec);
    bhttp::response_parser<bhttp::string_body> parser;
    parser.body_limit(64u << 20);
    co_await bhttp::async_read(stream_, buffer_, parser, token);
    if (ec) co_return Broken("read", ec);
    bhttp::response<bhttp::string_body> response = parser.release();
    if (!response.keep_alive()) Close();
    out.status = static_cast<int>(response.result_int());
    out.body = std::move(response.body());
    co_return out;
  }

 private:
  LoadResponse Broken(const char* what, const beast::error_code& ec) {
    Close();
    LoadResponse r;
    r.error = StrCat(what, ": ", ec == beast::error::timeout ? "timeout" : ec.message());
    return r;
  }
  void Close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.close();
    buffer_.clear();
    connected_ = false;
  }

  beast::tcp_stream stream_;
  tcp::resolver::results_type endpoints_;
  std::chrono::seconds timeout_;
  beast::flat_buffer buffer_;
  bool connected_ = false;
};

}  // namespace

struct LoadClient::Impl {
  LoadClientOptions options;
  asio::io_context io;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
  std::vector<std::thread> threads;
  tcp::resolver::results_type endpoints;
  std::string host_header;

  struct Pending {
    LoadRequest request;
    std::function<void(LoadResponse)> done;
  };
  mutable absl::Mutex mu;
  std::vector<std::unique_ptr<Connection>> idle ABSL_GUARDED_BY(mu);
  std::deque<Pending> waiting ABSL_GUARDED_BY(mu);
  int open ABSL_GUARDED_BY(mu) = 0;
  bool stopped ABSL_GUARDED_BY(mu) = false;

  explicit Impl(const LoadClientOptions& o) : options(o) {}

  bhttp::request<bhttp::string_body> Build(const LoadRequest& r) const {
    bhttp::request<bhttp::string_body> req(bhttp::string_to_verb(r.method), r.target, 11);
    req.set(bhttp::field::host, host_header);
    req.set(bhttp::field::user_agent, "kiln-loadtest");
    for (const auto& [k, v] : r.headers) req.set(k, v);
    if (!r.body.empty()) {
      req.set(bhttp::field::content_type, r.content_type);
      req.body() = r.body;
    }
    req.keep_alive(true);
    req.prepare_payload();
    return req;
  }

  void Start(std::unique_ptr<Connection> conn, Pending p) {
    asio::co_spawn(
        io,
        [this, conn = std::move(conn), p = std::move(p)]() mutable -> asio::awaitable<void> {
          const auto request = Build(p.request);
          LoadResponse response = co_await conn->RoundTrip(request);
          Release(std::move(conn));
          p.done(std::move(response));
        },
        asio::detached);
  }

  // A connection is free again: give it to the next waiting request, or keep it idle.
  void Release(std::unique_ptr<Connection> conn) {
    std::optional<Pending> next;
    {
      absl::MutexLock lock(&mu);
      if (!waiting.empty()) {
        next = std::move(waiting.front());
        waiting.pop_front();
      } else {
        idle.push_back(std::move(conn));
        return;
      }
    }
    Start(std::move(conn), std::move(*next));
  }
};

LoadClient::LoadClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

LoadClient::~LoadClient() { Shutdown(); }

absl::StatusOr<std::unique_ptr<LoadClient>> LoadClient::Create(const LoadClientOptions& options) {
  auto impl = std::make_unique<Impl>(options);
  beast::error_code ec;
  impl->endpoints = tcp::resolver(impl->io).resolve(options.host, options.port, ec);
  if (ec) {
    return absl::UnavailableError(
        StrCat("cannot resolve ", options.host, ":", options.port, ": ", ec.message()));
  }
  const bool v6 = options.host.find(':') != std::string::npos;
  impl->host_header = StrCat(v6 ? "[" + options.host + "]" : options.host, ":", options.port);
  impl->work.emplace(impl->io.get_executor());
  for (int i = 0; i < std::max(1, options.threads); ++i) {
    impl->threads.emplace_back([io = &impl->io] { io->run(); });
  }
  return std::unique_ptr<LoadClient>(new LoadClient(std::move(impl)));
}

void LoadClient::Send(LoadRequest request, std::function<void(LoadResponse)> done) {
  std::unique_ptr<Connection> conn;
  {
    absl::MutexLock lock(&impl_->mu);
    if (impl_->stopped) return;
    if (!impl_->idle.empty()) {
      conn = std::move(impl_->idle.back());
      impl_->idle.pop_back();
    } else if (impl_->open < impl_->options.max_connections) {
      ++impl_->open;
      conn = std::make_unique<Connection>(impl_->io, impl_->endpoints, impl_->options.timeout);
    } else {
      impl_->waiting.push_back({std::move(request), std::move(done)});
      return;
    }
  }
  impl_->Start(std::move(conn), {std::move(request), std::move(done)});
}

void LoadClient::After(std::chrono::nanoseconds delay, std::function<void()> f) {
  auto timer = std::make_shared<asio::steady_timer>(impl_->io, delay);
  timer->async_wait([timer, f = std::move(f)](const beast::error_code& ec) {
    if (!ec) f();
  });
}

int LoadClient::connections() const {
  absl::MutexLock lock(&impl_->mu);
  return impl_->open;
}

void LoadClient::Shutdown() {
  {
    absl::MutexLock lock(&impl_->mu);
    if (impl_->stopped) return;
    impl_->stopped = true;
  }
  impl_->work.reset();
  impl_->io.stop();
  for (auto& t : impl_->threads) t.join();
}

}  // namespace kiln::http
