// A closed-loop HTTP/1.1 load generator for servers on this machine: N keep-alive connections
// each send the next request as soon as their previous answer arrives, until a fixed number of
// requests is done. It prints one JSON line with throughput and latency percentiles.
// Only loopback targets are accepted: it is a benchmark tool, not a way to load other hosts.
//
// Usage: kiln_bench_http_load --url http://127.0.0.1:PORT/PATH [--body JSON | --body @FILE]
//          [--concurrency 8] [--requests 1000] [--warmup 0] [--threads 1] [--timeout-s 60]
// With --body the requests are POSTs with Content-Type application/json, otherwise GETs.
// Latency percentiles are over the 200 answers; non-200 answers and transport errors (connect,
// write, read, timeout) are counted apart. Exit status: 0 when every request got a 200, 1 when
// some did not, 2 on bad arguments.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

// Boost 1.74's awaitable.hpp uses std::exchange without including <utility>.
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

struct Options {
  std::string url;
  std::optional<std::string> body;
  int concurrency = 8;
  int64_t requests = 1000;
  int64_t warmup = 0;
  int threads = 1;
  int timeout_s = 60;
};

struct Target {
  std::string host;  // as written in the URL, without IPv6 brackets
  std::string port;
  std::string path;
};

[[noreturn]] void Fail(const std::string& message, int code = 2) {
  fprintf(stderr, "http_load: %s\n", message.c_str());
  exit(code);
}

// Parses http://HOST[:PORT][/PATH] where HOST is 127.0.0.1, localhost, or [::1].
// Returns an error message, or nothing when `out` was filled.
std::optional<std::string> ParseTarget(std::string_view url, Target& out) {
  constexpr std::string_view kScheme = "http://";
  if (url.substr(0, kScheme.size()) != kScheme) {
    return "the URL must start with http:// (TLS is not supported)";
  }
  std::string_view rest = url.substr(kScheme.size());
  const size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  out.path = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
  std::string_view host, port = "80";
  if (!authority.empty() && authority.front() == '[') {
    const size_t close = authority.find(']');
    if (close == std::string_view::npos) return "unbalanced '[' in the URL's host";
    host = authority.substr(1, close - 1);
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return "unexpected text after the URL's host";
      port = after.substr(1);
    }
  } else {
    const size_t colon = authority.rfind(':');
    host = authority.substr(0, colon);
    if (colon != std::string_view::npos) port = authority.substr(colon + 1);
  }
  if (port.empty() || port.size() > 5 ||
      !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return "the URL's port must be a number";
  }
  if (host != "127.0.0.1" && host != "::1" && host != "localhost") {
    return "refusing host '" + std::string(host) +
           "': only loopback targets (127.0.0.1, [::1], localhost) are allowed";
  }
  out.host = std::string(host);
  out.port = std::string(port);
  return std::nullopt;
}

int64_t PositiveNumber(std::string_view flag, const std::string& value, int64_t min) {
  size_t used = 0;
  int64_t v = 0;
  try {
    v = std::stoll(value, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != value.size() || v < min) {
    Fail(std::string(flag) + " must be an integer >= " + std::to_string(min) + ", not '" + value +
         "'");
  }
  return v;
}

Options ParseArgs(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i], value;
    if (const size_t eq = flag.find('='); eq != std::string::npos) {
      value = flag.substr(eq + 1);
      flag.resize(eq);
    } else if (flag == "--help" || flag == "-h") {
      Fail(
          "usage: http_load --url http://127.0.0.1:PORT/PATH [--body JSON|@FILE] "
          "[--concurrency N] [--requests N] [--warmup N] [--threads N] [--timeout-s S]");
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      Fail(flag + " needs a value");
    }
    if (flag == "--url") {
      o.url = value;
    } else if (flag == "--body") {
      if (!value.empty() && value.front() == '@') {
        std::ifstream in(value.substr(1), std::ios::binary);
        if (!in) Fail("cannot read the body file " + value.substr(1));
        o.body = std::string(std::istreambuf_iterator<char>(in), {});
      } else {
        o.body = value;
      }
    } else if (flag == "--concurrency") {
      o.concurrency = static_cast<int>(PositiveNumber(flag, value, 1));
    } else if (flag == "--requests") {
      o.requests = PositiveNumber(flag, value, 1);
    } else if (flag == "--warmup") {
      o.warmup = PositiveNumber(flag, value, 0);
    } else if (flag == "--threads") {
      o.threads = static_cast<int>(PositiveNumber(flag, value, 1));
    } else if (flag == "--timeout-s") {
      o.timeout_s = static_cast<int>(PositiveNumber(flag, value, 1));
    } else {
      Fail("unknown flag " + flag + " (see --help)");
    }
  }
  if (o.url.empty()) Fail("--url is required (see --help)");
  if (o.concurrency > 10000) Fail("--concurrency must be at most 10000");
  return o;
}

// What one connection saw; merged after the run, so connections share nothing but the budget.
struct Tally {
  int64_t ok = 0;
  int64_t non_200 = 0;
  int64_t errors = 0;
  std::vector<int64_t> latency_us;  // of the 200 answers
};

// A fixed number of requests that connections take one at a time.
class RequestBudget {
 public:
  explicit RequestBudget(int64_t total) : left_(total) {}
  bool Take() { return left_.fetch_sub(1, std::memory_order_relaxed) > 0; }

 private:
  std::atomic<int64_t> left_;
};

// One keep-alive connection; it reconnects after an error or a "Connection: close".
// Used by one coroutine at a time.
class Connection {
 public:
  Connection(asio::io_context& io, const tcp::resolver::results_type& endpoints,
             std::chrono::seconds timeout)
      : stream_(io), endpoints_(endpoints), timeout_(timeout) {}

  // Sends `request` and reads the answer; returns the HTTP status, or nothing on a transport
  // error (then `error` says what failed).
  asio::awaitable<std::optional<unsigned>> RoundTrip(
      const http::request<http::string_body>& request, std::string& error) {
    beast::error_code ec;
    auto token = asio::redirect_error(asio::use_awaitable, ec);
    if (!connected_) {
      stream_.expires_after(timeout_);
      co_await stream_.async_connect(endpoints_, token);
      if (ec) co_return Broken("connect", ec, error);
      stream_.socket().set_option(tcp::no_delay(true));
      connected_ = true;
    }
    stream_.expires_after(timeout_);
    co_await http::async_write(stream_, request, token);
    if (ec) co_return Broken("write", ec, error);
    http::response_parser<http::string_body> parser;
    parser.body_limit(64u << 20);
    co_await http::async_read(stream_, buffer_, parser, token);
    if (ec) co_return Broken("read", ec, error);
    const http::response<http::string_body>& response = parser.get();
    if (!response.keep_alive()) Close();
    last_body_ = response.body();
    co_return response.result_int();
  }

  const std::string& last_body() const { return last_body_; }

 private:
  std::optional<unsigned> Broken(const char* what, const beast::error_code& ec,
                                 std::string& error) {
    error = std::string(what) + ": " + ec.message();
    Close();
    return std::nullopt;
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
  std::string last_body_;
};

// Reports the first failed request only, so a misconfigured run says why without flooding.
class FirstFailure {
 public:
  void Report(const std::string& message) {
    if (!reported_.exchange(true))
      fprintf(stderr, "http_load: first failure: %s\n", message.c_str());
  }

 private:
  std::atomic<bool> reported_{false};
};

asio::awaitable<void> Drive(Connection& connection, const http::request<http::string_body>& request,
                            RequestBudget& budget, Tally& tally, FirstFailure& first) {
  std::string error;
  while (budget.Take()) {
    const Clock::time_point start = Clock::now();
    std::optional<unsigned> status = co_await connection.RoundTrip(request, error);
    const auto us =
        std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count();
    if (!status) {
      ++tally.errors;
      first.Report(error);
    } else if (*status != 200) {
      ++tally.non_200;
      first.Report("HTTP " + std::to_string(*status) + ": " +
                   connection.last_body().substr(0, 300));
    } else {
      ++tally.ok;
      tally.latency_us.push_back(us);
    }
  }
}

// Runs `total` requests over every connection and returns one tally per connection.
std::vector<Tally> RunPhase(asio::io_context& io, std::vector<std::unique_ptr<Connection>>& conns,
                            const http::request<http::string_body>& request, int64_t total,
                            int threads, FirstFailure& first) {
  RequestBudget budget(total);
  std::vector<Tally> tallies(conns.size());
  for (size_t i = 0; i < conns.size(); ++i) {
    asio::co_spawn(io, Drive(*conns[i], request, budget, tallies[i], first), asio::detached);
  }
  std::vector<std::thread> extra;
  for (int i = 1; i < threads; ++i) extra.emplace_back([&io] { io.run(); });
  io.run();
  for (auto& t : extra) t.join();
  io.restart();
  return tallies;
}

// Nearest-rank percentile of a sorted, non-empty vector.
int64_t Percentile(const std::vector<int64_t>& sorted, double p) {
  const auto rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size())));
  return sorted[std::clamp<size_t>(rank, 1, sorted.size()) - 1];
}

}  // namespace

int main(int argc, char** argv) {
  const Options options = ParseArgs(argc, argv);
  Target target;
  if (auto error = ParseTarget(options.url, target)) Fail(*error);

  asio::io_context io;
  beast::error_code ec;
  tcp::resolver::results_type endpoints = tcp::resolver(io).resolve(target.host, target.port, ec);
  if (ec) Fail("cannot resolve " + target.host + ": " + ec.message());
  for (const auto& e : endpoints) {
    if (!e.endpoint().address().is_loopback()) {
      Fail(target.host + " resolves to " + e.endpoint().address().to_string() +
           ", which is not a loopback address");
    }
  }

  http::request<http::string_body> request(options.body ? http::verb::post : http::verb::get,
                                           target.path, 11);
  const bool v6 = target.host.find(':') != std::string::npos;
  request.set(http::field::host, (v6 ? "[" + target.host + "]" : target.host) + ":" + target.port);
  request.set(http::field::user_agent, "kiln-http-load");
  request.keep_alive(true);
  if (options.body) {
    request.set(http::field::content_type, "application/json");
    request.body() = *options.body;
  }
  request.prepare_payload();

  std::vector<std::unique_ptr<Connection>> conns;
  for (int i = 0; i < options.concurrency; ++i) {
    conns.push_back(
        std::make_unique<Connection>(io, endpoints, std::chrono::seconds(options.timeout_s)));
  }

  FirstFailure first;
  if (options.warmup > 0) {
    int64_t failed = 0;
    for (const Tally& t : RunPhase(io, conns, request, options.warmup, options.threads, first)) {
      failed += t.non_200 + t.errors;
    }
    if (failed > 0) {
      fprintf(stderr, "http_load: %lld warm-up requests failed\n", static_cast<long long>(failed));
    }
  }

  const Clock::time_point start = Clock::now();
  std::vector<Tally> tallies =
      RunPhase(io, conns, request, options.requests, options.threads, first);
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();

  Tally all;
  for (Tally& t : tallies) {
    all.ok += t.ok;
    all.non_200 += t.non_200;
    all.errors += t.errors;
    all.latency_us.insert(all.latency_us.end(), t.latency_us.begin(), t.latency_us.end());
  }
  std::sort(all.latency_us.begin(), all.latency_us.end());
  auto at = [&](double p) -> long long {
    return all.latency_us.empty() ? 0 : static_cast<long long>(Percentile(all.latency_us, p));
  };
  printf(
      "{\"requests\":%lld,\"ok\":%lld,\"non_200\":%lld,\"errors\":%lld,\"seconds\":%.3f,"
      "\"rps\":%.1f,\"p50_us\":%lld,\"p90_us\":%lld,\"p99_us\":%lld,\"max_us\":%lld}\n",
      static_cast<long long>(options.requests), static_cast<long long>(all.ok),
      static_cast<long long>(all.non_200), static_cast<long long>(all.errors), seconds,
      seconds > 0 ? static_cast<double>(all.ok) / seconds : 0.0, at(50), at(90), at(99), at(100));
  return all.ok == options.requests ? 0 : 1;
}
