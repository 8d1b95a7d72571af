#include "http/server.h"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <deque>
#include <future>
#include <thread>

#include "gtest/gtest.h"
#include "http/router.h"

namespace kiln::http {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;

Response Text(int status, std::string body) {
  Response r;
  r.status = status;
  r.content_type = "text/plain";
  r.body = std::move(body);
  return r;
}

// A body whose every byte depends on its offset, so that a reordered or lost piece shows.
std::string Pattern(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + (i * 7 + i / 4096) % 26);
  return s;
}

// Answers /defer/{size} from a thread of its own (as a replica answers a generation), and
// reports when that thread's call to the responder returned.
class DeferringServer {
 public:
  DeferringServer() {
    router_.Add("GET", "/defer/{size}", [this](const Request&, const PathParams& p) {
      const size_t size = std::stoul(p.at("size"));
      Response r;
      r.deferred = [this, size](Responder respond) {
        std::lock_guard<std::mutex> lock(mu_);
        std::promise<void>* answered = &answered_.back();
        answerers_.emplace_back([size, respond = std::move(respond), answered]() mutable {
          respond(Text(200, Pattern(size)));
          respond = nullptr;  // it holds the connection
          answered->set_value();
        });
      };
      return r;
    });
    ServerOptions options;
    options.port = 0;
    server_ = std::move(*Server::Start(options, router_));
  }
  ~DeferringServer() {
    for (std::thread& t : answerers_) t.join();  // responders run before the server goes
    server_->Shutdown(std::chrono::seconds(5));
  }

  uint16_t port() const { return server_->port(); }
  // Ready when the responder of the next deferred request has returned.
  std::future<void> NextAnswer() {
    std::lock_guard<std::mutex> lock(mu_);
    answered_.emplace_back();
    return answered_.back().get_future();
  }

 private:
  Router router_{Text};
  std::unique_ptr<Server> server_;
  std::mutex mu_;
  std::deque<std::promise<void>> answered_;  // a deque: the answering threads hold pointers
  std::vector<std::thread> answerers_;
};

class Client {
 public:
  // `receive_buffer`: the socket's SO_RCVBUF (0 = the system's), set before connecting.
  Client(uint16_t port, int receive_buffer = 0) : socket_(ioc_) {
    socket_.open(asio::ip::tcp::v4());
    if (receive_buffer > 0) {
      socket_.set_option(asio::socket_base::receive_buffer_size(receive_buffer));
    }
    socket_.connect({asio::ip::make_address("127.0.0.1"), port});
  }
  void Send(const std::string& target) {
    bhttp::request<bhttp::empty_body> req(bhttp::verb::get, target, 11);
    req.set(bhttp::field::host, "127.0.0.1");
    bhttp::write(socket_, req);
  }
  bhttp::response<bhttp::string_body> Receive() {
    bhttp::response_parser<bhttp::string_body> parser;
    parser.body_limit(64 << 20);
    bhttp::read(socket_, buffer_, parser);
    return parser.release();
  }

 private:
  asio::io_context ioc_;
  asio::ip::tcp::socket socket_;
  beast::flat_buffer buffer_;
};

TEST(ServerTest, AnswersFromAnotherThreadKeepTheConnectionAlive) {
  DeferringServer server;
  Client client(server.port());
  for (size_t size : {0, 10, 5000, 70000}) {
    auto answered = server.NextAnswer();
    client.Send("/defer/" + std::to_string(size));
    auto res = client.Receive();
    EXPECT_EQ(res.result_int(), 200);
    EXPECT_EQ(res.body(), Pattern(size)) << size;
    EXPECT_TRUE(res.keep_alive());
    answered.wait();
  }
}

// The answering thread writes what the socket takes and hands the rest to the I/O threads: a
// client that does not read must not hold it (it would hold a replica's whole batch).
TEST(ServerTest, ALargeAnswerToAClientThatDoesNotReadDoesNotBlockTheAnsweringThread) {
  DeferringServer server;
  Client client(server.port(), /*receive_buffer=*/4096);
  constexpr size_t kSize = 24 << 20;  // far more than the socket buffers hold
  auto answered = server.NextAnswer();
  client.Send("/defer/" + std::to_string(kSize));
  // Nothing has been read yet, so a blocking write could never return.
  ASSERT_EQ(answered.wait_for(std::chrono::seconds(30)), std::future_status::ready);
  auto res = client.Receive();
  EXPECT_EQ(res.result_int(), 200);
  ASSERT_EQ(res.body().size(), kSize);
  EXPECT_TRUE(res.body() == Pattern(kSize));
  // The connection goes on.
  auto again = server.NextAnswer();
  client.Send("/defer/3");
  EXPECT_EQ(client.Receive().body(), Pattern(3));
  again.wait();
}

// A client that sends `Expect: 100-continue` waits for the interim answer before its body (curl
// does so for bodies over 1 MiB, and waits a second when none comes).
TEST(ServerTest, ExpectContinueIsAnsweredBeforeTheBody) {
  Router router(Text);
  router.Add("POST", "/echo", [](const Request& r, const PathParams&) {
    return Text(200, std::to_string(r.body.size()));
  });
  ServerOptions options;
  options.port = 0;
  options.max_body_bytes = 1 << 20;
  auto server = std::move(*Server::Start(options, router));
  asio::io_context ioc;
  asio::ip::tcp::socket socket(ioc);
  socket.connect({asio::ip::make_address("127.0.0.1"), server->port()});
  const std::string body = Pattern(300000);
  asio::write(socket,
              asio::buffer("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: " +
                           std::to_string(body.size()) + "\r\nExpect: 100-continue\r\n\r\n"));
  beast::flat_buffer buffer;
  {
    bhttp::response_parser<bhttp::empty_body> interim;
    bhttp::read_header(socket, buffer, interim);
    EXPECT_EQ(interim.get().result_int(), 100);
  }
  asio::write(socket, asio::buffer(body));
  bhttp::response_parser<bhttp::string_body> final_answer;
  bhttp::read(socket, buffer, final_answer);
  EXPECT_EQ(final_answer.get().result_int(), 200);
  EXPECT_EQ(final_answer.get().body(), std::to_string(body.size()));

  // A body over the limit is refused before it is sent: no 100, a 413 at once.
  asio::ip::tcp::socket second(ioc);
  second.connect({asio::ip::make_address("127.0.0.1"), server->port()});
  asio::write(second, asio::buffer(std::string("POST /echo HTTP/1.1\r\nHost: x\r\n"
                                               "Content-Length: 5000000\r\n"
                                               "Expect: 100-continue\r\n\r\n")));
  beast::flat_buffer second_buffer;
  bhttp::response_parser<bhttp::string_body> refused;
  bhttp::read(second, second_buffer, refused);
  EXPECT_EQ(refused.get().result_int(), 413);
  server->Shutdown(std::chrono::seconds(5));
}

}  // namespace
}  // namespace kiln::http
