// Where Kiln may connect on a caller's behalf: every refused range in every spelling, the
// allowlist, the checks at submission, and a delivery to a refused address that sends nothing.
#include "http/address_policy.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "core/status_util.h"
#include "gtest/gtest.h"
#include "http/client.h"

namespace kiln::http {
namespace {

std::string RefusalOf(const AddressPolicy& policy, const std::string& literal) {
  auto ip = ParseIpLiteral(literal);
  if (!ip) return "<not an address>";
  return policy.Refusal(*ip);
}

TEST(AddressPolicy, RefusesEveryNonPublicRangeInEverySpelling) {
  const AddressPolicy policy;
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"127.0.0.1", "loopback"},
      {"127.255.0.9", "loopback"},
      {"127.1", "loopback"},       // shorthand the resolver also reads
      {"2130706433", "loopback"},  // 127.0.0.1 as one number
      {"0x7f000001", "loopback"},  // ... in hex
      {"0177.0.0.1", "loopback"},  // ... in octal
      {"::1", "loopback"},
      {"[::1]", "loopback"},
      {"::ffff:127.0.0.1", "loopback"},  // IPv4-mapped
      {"::ffff:7f00:1", "loopback"},
      {"::127.0.0.1", "loopback"},  // IPv4-compatible
      {"0.0.0.0", "unspecified"},
      {"::", "unspecified"},
      {"10.2.3.4", "private"},
      {"172.16.0.1", "private"},
      {"172.31.255.255", "private"},
      {"192.168.1.1", "private"},
      {"169.254.169.254", "link-local"},  // cloud metadata services
      {"::ffff:169.254.169.254", "link-local"},
      {"64:ff9b::a9fe:a9fe", "link-local"},  // NAT64 of 169.254.169.254
      {"2002:a9fe:a9fe::1", "link-local"},   // 6to4 of it
      {"fe80::1", "link-local"},
      {"fe80::1%25eth0", "link-local"},
      {"100.64.0.1", "shared (carrier-grade NAT)"},
      {"224.0.0.1", "multicast"},
      {"ff02::1", "multicast"},
      {"255.255.255.255", "reserved"},
      {"240.0.0.1", "reserved"},
      {"198.18.0.1", "reserved"},
      {"fc00::1", "unique-local"},
      {"fd12:3456::1", "unique-local"},
      {"2001:db8::1", "reserved"},
      {"2001:0:4136:e378:8000:63bf:3fff:fdd2", "reserved"},  // Teredo
      // Public: allowed (classified only; nothing connects to them).
      {"8.8.8.8", ""},
      {"172.32.0.1", ""},
      {"100.128.0.1", ""},
      {"::ffff:8.8.8.8", ""},
      {"2606:4700:4700::1111", ""},
  };
  for (const auto& [literal, want] : cases) {
    EXPECT_EQ(RefusalOf(policy, literal), want) << literal;
  }
  EXPECT_FALSE(ParseIpLiteral("example.com").has_value());
  EXPECT_FALSE(ParseIpLiteral("1.2.3.4.example").has_value());
}

TEST(AddressPolicy, LoopbackPeersAreJudgedStrictly) {
  for (const char* yes : {"127.0.0.1", "127.0.0.5", "::ffff:127.0.0.1", "::1"}) {
    EXPECT_TRUE(IsLoopback(*ParseIpLiteral(yes))) << yes;
  }
  // A peer can pick these source addresses; the IPv4 they carry does not make them local.
  for (const char* no : {"2002:7f00:1::1", "::127.0.0.1", "64:ff9b::7f00:1", "10.0.0.1", "::"}) {
    EXPECT_FALSE(IsLoopback(*ParseIpLiteral(no))) << no;
  }
}

TEST(AddressPolicy, TheAllowlistOpensOnlyItsBlocks) {
  auto policy = AddressPolicy::Make({"127.0.0.1/32", "10.0.0.0/8", "fd00::/8", "::1"});
  ASSERT_TRUE(policy.ok()) << policy.status();
  EXPECT_EQ(RefusalOf(*policy, "127.0.0.1"), "");
  EXPECT_EQ(RefusalOf(*policy, "::ffff:127.0.0.1"), "");  // the same address
  EXPECT_EQ(RefusalOf(*policy, "127.0.0.2"), "loopback");
  EXPECT_EQ(RefusalOf(*policy, "10.9.9.9"), "");
  EXPECT_EQ(RefusalOf(*policy, "11.0.0.1"), "");  // public anyway
  EXPECT_EQ(RefusalOf(*policy, "192.168.0.1"), "private");
  EXPECT_EQ(RefusalOf(*policy, "fd00::5"), "");
  EXPECT_EQ(RefusalOf(*policy, "fc00::5"), "unique-local");
  EXPECT_EQ(RefusalOf(*policy, "::1"), "");
  EXPECT_EQ(RefusalOf(*policy, "169.254.169.254"), "link-local");
  for (const char* bad : {"10.0.0.0/33", "10.1/8", "nonsense", "::1/129", "10.0.0.0/x"}) {
    auto p = AddressPolicy::Make({bad});
    EXPECT_FALSE(p.ok()) << bad;
    EXPECT_EQ(FieldOf(p.status()).value_or(""), "webhook_allow") << bad;
  }
}

TEST(AddressPolicy, SubmissionRefusesLiteralsAndLocalhostByName) {
  const AddressPolicy policy;
  for (const char* url : {"http://169.254.169.254/latest/meta-data/", "http://127.0.0.1:8080/hook",
                          "http://[::1]:9/x", "http://[::ffff:a9fe:a9fe]/", "http://2130706433/",
                          "http://0x7f.1/", "https://10.0.0.1/", "http://localhost:9/x",
                          "http://a.localhost/", "http://LOCALHOST/", "http://[fe80::1%25eth0]/"}) {
    absl::Status s = policy.CheckUrl(url, "webhook");
    EXPECT_FALSE(s.ok()) << url;
    EXPECT_EQ(FieldOf(s).value_or(""), "webhook") << url;
  }
  // Names are judged at delivery, when they resolve; public literals pass.
  EXPECT_TRUE(policy.CheckUrl("https://hooks.example.com/kiln", "webhook").ok());
  EXPECT_TRUE(policy.CheckUrl("http://8.8.8.8/", "webhook").ok());
  auto allowed = AddressPolicy::Make({"127.0.0.0/8"});
  ASSERT_TRUE(allowed.ok());
  EXPECT_TRUE(allowed->CheckUrl("http://127.0.0.1:8080/hook", "webhook").ok());
  EXPECT_TRUE(allowed->CheckUrl("http://localhost:8080/hook", "webhook").ok());

  auto hp = UrlHostPort("http://[::1]:8080/x");
  ASSERT_TRUE(hp.ok());
  EXPECT_EQ(hp->host, "::1");
  EXPECT_EQ(hp->port, 8080);
  hp = UrlHostPort("https://Example.COM/x");
  ASSERT_TRUE(hp.ok());
  EXPECT_EQ(hp->host, "example.com");
  EXPECT_EQ(hp->port, 443);
}

// A loopback listener that answers 204 to each connection and counts them.
class Receiver {
 public:
  Receiver() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    EXPECT_EQ(listen(fd_, 16), 0);
    socklen_t len = sizeof addr;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] {
      while (true) {
        int c = accept(fd_, nullptr, nullptr);
        if (c < 0 || stop_) {
          if (c >= 0) close(c);
          return;
        }
        ++connections_;
        char buf[4096];
        (void)!read(c, buf, sizeof buf);
        const char reply[] = "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n";
        (void)!write(c, reply, sizeof reply - 1);
        close(c);
      }
    });
  }
  ~Receiver() {
    stop_ = true;
    shutdown(fd_, SHUT_RDWR);
    close(fd_);
    thread_.join();
  }
  int port() const { return port_; }
  int connections() const { return connections_; }

 private:
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> connections_{0};
  std::thread thread_;
};

TEST(AddressPolicy, ARefusedDeliveryConnectsNowhere) {
  Receiver receiver;
  const std::string port = std::to_string(receiver.port());
  const AddressPolicy refuse_all;
  for (const std::string& url :
       {"http://127.0.0.1:" + port + "/hook", "http://localhost:" + port + "/hook",
        "http://2130706433:" + port + "/hook", "http://[::ffff:127.0.0.1]:" + port + "/hook"}) {
    auto r = Post(url, "{}", {}, std::chrono::seconds(5), &refuse_all);
    EXPECT_TRUE(absl::IsPermissionDenied(r.status())) << url << ": " << r.status();
  }
  EXPECT_EQ(receiver.connections(), 0);

  auto allow = AddressPolicy::Make({"127.0.0.1/32"});
  ASSERT_TRUE(allow.ok());
  auto ok = Post("http://127.0.0.1:" + port + "/hook", "{}", {}, std::chrono::seconds(5), &*allow);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->status, 204);
  // localhost resolves to 127.0.0.1 (allowed) and maybe ::1 (not): the allowed one is used.
  auto by_name =
      Post("http://localhost:" + port + "/hook", "{}", {}, std::chrono::seconds(5), &*allow);
  ASSERT_TRUE(by_name.ok()) << by_name.status();
  EXPECT_EQ(receiver.connections(), 2);
}

}  // namespace
}  // namespace kiln::http
