// The listeners an operator chooses: HTTPS on the API port (--tls-cert/--tls-key), tested with
// libcurl verifying a certificate made here by the openssl command; and the admin listener
// (--admin-port), which alone serves /metrics and /v1/autoscale, without a key.
#include <curl/curl.h>

#include <filesystem>
#include <fstream>
#include <regex>

#include "gtest/gtest.h"
#include "tests/integration/server_process.h"

namespace kiln::testing {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

size_t Append(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

struct TlsResult {
  long status = 0;
  std::string body;
  std::string error;     // curl's, when the request failed
  long tls_version = 0;  // CURL_SSLVERSION_* of the connection (0: unknown)
};

// One request over HTTPS with libcurl, trusting only `ca_file`.
TlsResult Https(const std::string& url, const std::string& ca_file, const std::string& body = "",
                long max_tls = CURL_SSLVERSION_MAX_DEFAULT) {
  TlsResult r;
  CURL* curl = curl_easy_init();
  curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_CAINFO, ca_file.c_str());
  curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 2L);
  curl_easy_setopt(curl, CURLOPT_SSLVERSION, CURL_SSLVERSION_TLSv1_2 | max_tls);
  curl_easy_setopt(curl, CURLOPT_PROXY, "");
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT, 120L);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, Append);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &r.body);
  if (!body.empty()) {
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.c_str());
  }
  const CURLcode code = curl_easy_perform(curl);
  if (code != CURLE_OK) {
    r.error = curl_easy_strerror(code);
  } else {
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &r.status);
  }
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);
  return r;
}

// A self-signed certificate for 127.0.0.1 and localhost, and its key, under `dir`.
bool MakeCertificate(const fs::path& dir, const std::string& name) {
  const std::string cmd =
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 "
      "-nodes -days 1 -subj /CN=kiln-test -addext "
      "subjectAltName=IP:127.0.0.1,DNS:localhost -keyout '" +
      (dir / (name + ".key")).string() + "' -out '" + (dir / (name + ".pem")).string() +
      "' 2>/dev/null";
  return std::system(cmd.c_str()) == 0;
}

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("kiln-tls-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    ASSERT_TRUE(MakeCertificate(dir_, "server"));
    ASSERT_TRUE(MakeCertificate(dir_, "other"));
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string File(const std::string& name) const { return (dir_ / name).string(); }
  fs::path dir_;
};

TEST_F(TlsTest, HttpsServesTheApiToAClientThatVerifiesTheCertificate) {
  ServerProcess server({"--models", TestModelsDir(), "--tls-cert", File("server.pem"), "--tls-key",
                        File("server.key")});
  ASSERT_TRUE(server.started()) << server.log();
  ASSERT_NE(server.log().find("\"url\":\"https://127.0.0.1:"), std::string::npos) << server.log();
  const std::string plain_base = server.url();  // "http://127.0.0.1:PORT"
  const std::string base = "https://" + plain_base.substr(plain_base.find("://") + 3);

  TlsResult health = Https(base + "/healthz", File("server.pem"));
  EXPECT_EQ(health.status, 200) << health.error;
  // A generation: its answer is written from the replica's thread, through the connection's
  // own asynchronous write (never a synchronous write under TLS).
  const json gen = {{"prompt", "a red circle"},
                    {"model", "test-pixel"},
                    {"steps", 2},
                    {"response_format", "b64_json"}};
  TlsResult image = Https(base + "/v1/images/generations", File("server.pem"), gen.dump());
  ASSERT_EQ(image.status, 200) << image.error << image.body;
  EXPECT_FALSE(json::parse(image.body)["data"][0]["b64_json"].get<std::string>().empty());
  // A job and its event stream (chunked) over TLS.
  TlsResult job = Https(base + "/v1/jobs", File("server.pem"), gen.dump());
  ASSERT_EQ(job.status, 202) << job.error << job.body;
  const std::string id = json::parse(job.body)["id"];
  TlsResult events = Https(base + "/v1/jobs/" + id + "/events", File("server.pem"));
  EXPECT_EQ(events.status, 200) << events.error;
  EXPECT_NE(events.body.find("event: succeeded"), std::string::npos) << events.body;
  // TLS 1.2 too, for older clients.
  TlsResult v12 = Https(base + "/healthz", File("server.pem"), "", CURL_SSLVERSION_MAX_TLSv1_2);
  EXPECT_EQ(v12.status, 200) << v12.error;

  // A client that trusts another certificate refuses this one; plain HTTP gets no answer.
  TlsResult untrusted = Https(base + "/healthz", File("other.pem"));
  EXPECT_EQ(untrusted.status, 0);
  EXPECT_FALSE(untrusted.error.empty());
  HttpResult plain = HttpGet(plain_base + "/healthz");
  EXPECT_NE(plain.status, 200) << plain.body;
  // The server goes on serving after both.
  EXPECT_EQ(Https(base + "/healthz", File("server.pem")).status, 200);
}

TEST_F(TlsTest, ACertificateWithoutItsKeyOrWithAnotherKeyIsRefusedAtStart) {
  const std::string data = File("data");
  CommandResult alone = RunKiln({"serve", "--port", "0", "--models", TestModelsDir(), "--data",
                                 data, "--tls-cert", File("server.pem")});
  EXPECT_NE(alone.exit_code, 0);
  EXPECT_NE(alone.output.find("tls_key"), std::string::npos) << alone.output;
  CommandResult mismatched =
      RunKiln({"serve", "--port", "0", "--models", TestModelsDir(), "--data", data, "--tls-cert",
               File("server.pem"), "--tls-key", File("other.key")});
  EXPECT_NE(mismatched.exit_code, 0);
  // OpenSSL finds the mismatch as it loads the key ("key values mismatch").
  EXPECT_NE(mismatched.output.find("tls_key: cannot use '" + File("other.key")), std::string::npos)
      << mismatched.output;
  CommandResult missing =
      RunKiln({"serve", "--port", "0", "--models", TestModelsDir(), "--data", data, "--tls-cert",
               File("none.pem"), "--tls-key", File("server.key")});
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_NE(missing.output.find("tls_cert"), std::string::npos) << missing.output;
}

TEST_F(TlsTest, TheAdminListenerAloneServesTheOperatorRoutesWithoutAKey) {
  std::ofstream(dir_ / "keys.yaml") << "keys: [{key: \"user-key-0123456789\", tenant: u}]\n";
  ServerProcess server(
      {"--models", TestModelsDir(), "--api-keys", File("keys.yaml"), "--admin-port", "0"});
  ASSERT_TRUE(server.started()) << server.log();
  std::smatch m;
  const std::string log = server.log();
  ASSERT_TRUE(
      std::regex_search(log, m, std::regex("\"admin_url\":\"(http://127\\.0\\.0\\.1:[0-9]+)")))
      << log;
  const std::string admin = m[1];
  HttpResult metrics = HttpGet(admin + "/metrics");
  EXPECT_EQ(metrics.status, 200);
  EXPECT_NE(metrics.body.find("kiln_http_requests_total"), std::string::npos);
  EXPECT_EQ(HttpGet(admin + "/v1/autoscale").status, 200);
  EXPECT_EQ(HttpGet(admin + "/readyz").status, 200);
  // Only the operator's routes: the API is not on the admin listener...
  EXPECT_EQ(HttpGet(admin + "/v1/jobs").status, 404);
  EXPECT_EQ(HttpGet(admin + "/v1/models").status, 404);
  // ...and the operator's routes are no longer on the API port, even from loopback or with a key.
  EXPECT_EQ(HttpGet(server.url() + "/metrics").status, 404);
  EXPECT_EQ(HttpRequest("GET", server.url() + "/v1/autoscale", "",
                        {"Authorization: Bearer user-key-0123456789"})
                .status,
            404);
  EXPECT_EQ(HttpRequest("GET", server.url() + "/v1/models", "",
                        {"Authorization: Bearer user-key-0123456789"})
                .status,
            200);
}

}  // namespace
}  // namespace kiln::testing
