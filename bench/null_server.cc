// null_server: the floor under bench/overhead.sh. It answers every HTTP request on a keep-alive
// connection with the same fixed response (read from a file: the bytes Kiln answered), doing no
// other work: one thread per connection, blocking reads and writes, the fewest system calls
// and thread wake-ups an HTTP/1.1 server can have. What the load client measures against it is
// what loopback, the kernel and the client itself cost on this machine; a server's latency
// above it is that server's own.
//
// Usage: null_server --port N --body FILE [--content-type TYPE]   (binds 127.0.0.1 only)
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <utility>

// Boost 1.74's awaitable.hpp uses std::exchange without including <utility>.
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;

namespace {

void Serve(tcp::socket socket, const std::string& content_type, const std::string& body) {
  beast::flat_buffer buffer;
  beast::error_code ec;
  while (true) {
    bhttp::request<bhttp::string_body> req;
    bhttp::read(socket, buffer, req, ec);
    if (ec) return;
    bhttp::response<bhttp::string_body> res(bhttp::status::ok, req.version());
    res.set(bhttp::field::content_type, content_type);
    res.body() = body;
    res.keep_alive(req.keep_alive());
    res.prepare_payload();
    bhttp::write(socket, res, ec);
    if (ec || !req.keep_alive()) return;
  }
}

}  // namespace

int main(int argc, char** argv) {
  int port = 0;
  std::string body_file;
  std::string content_type = "application/json";
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--port")) {
      port = std::atoi(argv[i + 1]);
    } else if (!std::strcmp(argv[i], "--body")) {
      body_file = argv[i + 1];
    } else if (!std::strcmp(argv[i], "--content-type")) {
      content_type = argv[i + 1];
    }
  }
  if (port <= 0 || port > 65535 || body_file.empty()) {
    std::fprintf(stderr, "usage: null_server --port N --body FILE [--content-type TYPE]\n");
    return 2;
  }
  std::ifstream in(body_file, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "null_server: cannot read %s\n", body_file.c_str());
    return 1;
  }
  std::stringstream content;
  content << in.rdbuf();
  const std::string body = content.str();
  try {
    asio::io_context ioc;
    tcp::acceptor acceptor(ioc, {asio::ip::make_address("127.0.0.1"), static_cast<uint16_t>(port)});
    while (true) {
      tcp::socket socket(ioc);
      acceptor.accept(socket);
      std::thread(Serve, std::move(socket), content_type, body).detach();
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "null_server: %s\n", e.what());
    return 1;
  }
}
