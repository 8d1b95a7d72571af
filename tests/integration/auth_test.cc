// API keys on a real `kiln serve`: no key or a bad one is a 401; tenants see, cancel and download
// only their own jobs, batches and images (another's answers 404, as a missing one does); admins
// see everything and alone change A1111's default; SIGHUP reloads the keys; and without keys the
// server refuses to listen beyond loopback.
#include <csignal>
#include <filesystem>
#include <fstream>

#include "core/crypto.h"
#include "gtest/gtest.h"
#include "tests/integration/server_process.h"

namespace kiln::testing {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

constexpr char kAlice[] = "alice-key-0123456789";
constexpr char kBob[] = "bob-key-0123456789ab";
constexpr char kAdmin[] = "admin-key-0123456789";
constexpr char kCarol[] = "carol-key-0123456789";
constexpr char kSecret[] = "auth-test-webhook-secret";
constexpr char kUrlSecret[] = "auth-test-file-url-secret";
constexpr char kDave[] = "dave-key-0123456789a";  // 2 requests per minute

// The path of a file URL without its query (the signature), and the query alone.
std::string PathOf(const std::string& url) {
  const std::string path = url.substr(url.find("/v1/files/"));
  return path.substr(0, path.find('?'));
}
std::string QueryOf(const std::string& url) {
  return url.find('?') == std::string::npos ? "" : url.substr(url.find('?'));
}

std::string Keys(bool with_carol) {
  std::string yaml = "keys:\n";
  yaml += std::string("  - {key: \"") + kAlice + "\", tenant: alice}\n";
  yaml += std::string("  - {key: \"") + kBob + "\", tenant: bob, role: user}\n";
  // An admin given by its hash, as an operator keeps it out of the file.
  yaml += "  - {key_sha256: \"" + Sha256Hex(kAdmin) + "\", tenant: ops, role: admin}\n";
  yaml +=
      std::string("  - {key: \"") + kDave + "\", tenant: dave, limits: {requests_per_minute: 2}}\n";
  if (with_carol) yaml += std::string("  - {key: \"") + kCarol + "\", tenant: carol}\n";
  return yaml;
}

class AuthTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = fs::temp_directory_path() / ("kiln-auth-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    std::ofstream(dir_ / "keys.yaml") << Keys(false);
    server_ =
        new ServerProcess({"--models", TestModelsDir(), "--api-keys", (dir_ / "keys.yaml").string(),
                           "--webhook-secret", kSecret, "--file-url-secret", kUrlSecret});
    ASSERT_TRUE(server_->started()) << server_->log();
  }
  static void TearDownTestSuite() {
    delete server_;
    fs::remove_all(dir_);
  }
  static std::string Url(const std::string& path) { return server_->url() + path; }
  static std::vector<std::string> As(const char* key, std::vector<std::string> more = {}) {
    if (key) more.push_back(std::string("Authorization: Bearer ") + key);
    return more;
  }
  static HttpResult Get(const std::string& path, const char* key) {
    return HttpRequest("GET", Url(path), "", As(key));
  }
  static HttpResult PostJson(const std::string& path, const json& body, const char* key) {
    return HttpRequest("POST", Url(path), body.dump(), As(key, {"Content-Type: application/json"}));
  }
  static json Job() {
    return {{"prompt", "a red circle"}, {"model", "test-pixel"}, {"steps", 3}, {"seed", 1}};
  }
  // Follows a job's events to its end as `key`, then reads it.
  static json WaitFinal(const std::string& id, const char* key) {
    EXPECT_EQ(Get("/v1/jobs/" + id + "/events", key).status, 200);
    return Body(Get("/v1/jobs/" + id, key));
  }

  static fs::path dir_;
  static ServerProcess* server_;
};
fs::path AuthTest::dir_;
ServerProcess* AuthTest::server_ = nullptr;

TEST_F(AuthTest, WithoutAValidKeyOnlyProbesThePageAndTheDescriptionAnswer) {
  for (const char* key : {static_cast<const char*>(nullptr), "not-a-key-at-all-xx"}) {
    HttpResult r = PostJson("/v1/images/generations", Job(), key);
    EXPECT_EQ(r.status, 401) << r.body;
    EXPECT_EQ(Body(r)["error"]["type"], "authentication_error") << r.body;
    EXPECT_EQ(r.headers["www-authenticate"], "Bearer");
    EXPECT_EQ(Get("/v1/jobs", key).status, 401);
    EXPECT_EQ(Get("/v1/models", key).status, 401);
    EXPECT_EQ(Get("/sdapi/v1/sd-models", key).status, 401);
  }
  for (const char* path : {"/healthz", "/readyz", "/openapi.json", "/"}) {
    EXPECT_EQ(Get(path, nullptr).status, 200) << path;
  }
  EXPECT_EQ(PostJson("/v1/images/generations", Job(), kAlice).status, 200);
}

TEST_F(AuthTest, TenantsSeeCancelAndDownloadOnlyTheirOwnWork) {
  HttpResult created = PostJson("/v1/jobs", Job(), kAlice);
  ASSERT_EQ(created.status, 202) << created.body;
  const std::string id = Body(created)["id"];
  json done = WaitFinal(id, kAlice);
  ASSERT_EQ(done["state"], "succeeded") << done.dump();
  const std::string url = done["data"][0]["url"];
  const std::string file = PathOf(url);

  // Bob gets exactly what a job that does not exist gets.
  const std::string missing = "01J00000000000000000000000";
  for (const std::string& suffix : {std::string(), std::string("/events")}) {
    HttpResult theirs = Get("/v1/jobs/" + id + suffix, kBob);
    HttpResult none = Get("/v1/jobs/" + missing + suffix, kBob);
    EXPECT_EQ(theirs.status, 404) << theirs.body;
    EXPECT_EQ(none.status, 404);
    EXPECT_EQ(Body(theirs)["error"]["param"], Body(none)["error"]["param"]);
  }
  EXPECT_EQ(HttpRequest("DELETE", Url("/v1/jobs/" + id), "", As(kBob)).status, 404);
  EXPECT_EQ(Get(file, kBob).status, 404);
  auto ids = [](const HttpResult& list) {
    std::vector<std::string> out;
    const json page = Body(list);  // kept: a range-for over Body(list)["data"] would dangle
    for (const auto& j : page["data"]) out.push_back(j["id"]);
    return out;
  };
  auto bobs = ids(Get("/v1/jobs?limit=100", kBob));
  EXPECT_EQ(std::count(bobs.begin(), bobs.end(), id), 0);
  auto alices = ids(Get("/v1/jobs?limit=100", kAlice));
  EXPECT_EQ(std::count(alices.begin(), alices.end(), id), 1);

  // The owner and admins see it.
  EXPECT_EQ(Get(file, kAlice).status, 200);
  EXPECT_EQ(Get(file, kAdmin).status, 200);
  EXPECT_EQ(Get("/v1/jobs/" + id, kAdmin).status, 200);
  auto all = ids(Get("/v1/jobs?limit=100", kAdmin));
  EXPECT_EQ(std::count(all.begin(), all.end(), id), 1);

  // Batches are their jobs' tenant's.
  HttpResult batch = HttpRequest("POST", Url("/v1/batches"), Job().dump() + "\n",
                                 As(kAlice, {"Content-Type: application/jsonl"}));
  ASSERT_EQ(batch.status, 202) << batch.body;
  const std::string batch_id = Body(batch)["id"];
  EXPECT_EQ(Get("/v1/batches/" + batch_id, kBob).status, 404);
  EXPECT_EQ(Get("/v1/batches/" + batch_id + "/results", kBob).status, 404);
  EXPECT_EQ(Get("/v1/batches/" + batch_id, kAlice).status, 200);
  EXPECT_EQ(Get("/v1/batches/" + batch_id, kAdmin).status, 200);
}

TEST_F(AuthTest, SyncImageUrlsAreTheirOwnersOnly) {
  json body = Job();
  body["response_format"] = "url";
  HttpResult r = PostJson("/v1/images/generations", body, kAlice);
  ASSERT_EQ(r.status, 200) << r.body;
  const std::string url = Body(r)["data"][0]["url"];
  const std::string file = PathOf(url);
  EXPECT_NE(file.find("/images/t-"), std::string::npos) << file;  // under alice's own folder
  EXPECT_EQ(Get(file, kAlice).status, 200);
  EXPECT_EQ(Get(file, kBob).status, 404);
  EXPECT_EQ(Get(file, kAdmin).status, 200);
  EXPECT_EQ(Get(file, nullptr).status, 401);
}

TEST_F(AuthTest, SignedUrlsLoadWithoutAKeyOnlyForTheirFileAndUntilTheyExpire) {
  json body = Job();
  body["response_format"] = "url";
  const std::string url = Body(PostJson("/v1/images/generations", body, kAlice))["data"][0]["url"];
  const std::string file = PathOf(url), query = QueryOf(url);
  ASSERT_NE(query.find("signature="), std::string::npos) << url;
  EXPECT_EQ(Get(file + query, nullptr).status, 200);  // as a browser's <img> loads it

  std::string tampered = query;
  tampered.back() = tampered.back() == '0' ? '1' : '0';
  EXPECT_EQ(Get(file + tampered, nullptr).status, 403);
  // The same grant does not open another file.
  HttpResult job = PostJson("/v1/jobs", Job(), kAlice);
  ASSERT_EQ(job.status, 202) << job.body;
  json done = WaitFinal(Body(job)["id"], kAlice);
  const std::string other_url = done["data"][0]["url"];
  EXPECT_EQ(Get(PathOf(other_url) + query, nullptr).status, 403);
  EXPECT_EQ(Get(PathOf(other_url) + QueryOf(other_url), nullptr).status, 200);
  // An expired grant, signed with the server's own key, is refused.
  const std::string key = file.substr(std::string("/v1/files/").size());
  const auto grant = [&key](const std::string& signing_key, const std::string& expires) {
    return "?expires=" + expires +
           "&signature=" + HmacSha256Hex(signing_key, "GET /v1/files/" + key + "\n" + expires);
  };
  HttpResult old = Get(file + grant(kUrlSecret, "1000"), nullptr);
  EXPECT_EQ(old.status, 403) << old.body;
  EXPECT_NE(old.body.find("expired"), std::string::npos) << old.body;
  EXPECT_EQ(Get(file + grant(kUrlSecret, "9999999999"), nullptr).status, 200);
  // Webhook receivers hold the webhook key: nothing signed with it, or derived from it, opens a
  // file.
  EXPECT_EQ(Get(file + grant(kSecret, "9999999999"), nullptr).status, 403);
  EXPECT_EQ(Get(file + grant(HmacSha256(kSecret, "kiln file urls"), "9999999999"), nullptr).status,
            403);
}

TEST_F(AuthTest, AKeyOverItsRequestsPerMinuteGetsA429WithWhenToRetry) {
  EXPECT_EQ(Get("/v1/models", kDave).status, 200);
  EXPECT_EQ(Get("/v1/models", kDave).status, 200);
  HttpResult over = Get("/v1/models", kDave);
  EXPECT_EQ(over.status, 429) << over.body;
  EXPECT_EQ(Body(over)["error"]["type"], "rate_limit_error");
  EXPECT_EQ(over.headers["ratelimit-limit"], "2");
  EXPECT_EQ(over.headers["ratelimit-remaining"], "0");
  EXPECT_GE(std::stoi(over.headers["retry-after"]), 1);
  EXPECT_EQ(Get("/v1/models", kAlice).status, 200);  // other keys are not affected
}

TEST_F(AuthTest, OnlyAdminsChangeTheSharedDefaultAndOperatorRoutesAreLocalOrAdmin) {
  const json options = {{"sd_model_checkpoint", "test-latent"}};
  HttpResult user = PostJson("/sdapi/v1/options", options, kAlice);
  EXPECT_EQ(user.status, 403) << user.body;
  EXPECT_EQ(Body(user)["error"]["type"], "permission_error");
  EXPECT_EQ(PostJson("/sdapi/v1/options", options, kAdmin).status, 200);
  EXPECT_EQ(Body(Get("/sdapi/v1/options", kBob))["sd_model_checkpoint"], "test-latent");
  // A scraper on this machine needs no key (the test's requests come from loopback).
  EXPECT_EQ(Get("/metrics", nullptr).status, 200);
  EXPECT_EQ(Get("/v1/autoscale", nullptr).status, 200);
}

TEST_F(AuthTest, SighupReloadsTheKeysAndABrokenFileKeepsTheOldOnes) {
  EXPECT_EQ(Get("/v1/models", kCarol).status, 401);
  std::ofstream(dir_ / "keys.yaml") << Keys(true);
  server_->Signal(SIGHUP);
  ASSERT_TRUE(WaitUntil(std::chrono::seconds(20), [] {
    return Get("/v1/models", kCarol).status == 200;
  })) << server_->log();
  std::ofstream(dir_ / "keys.yaml") << "keys: [{key: short, tenant: x}]\n";
  server_->Signal(SIGHUP);
  ASSERT_TRUE(server_->WaitForLog("API keys not reloaded", std::chrono::seconds(20)));
  EXPECT_EQ(Get("/v1/models", kCarol).status, 200);
  EXPECT_EQ(Get("/v1/models", kAlice).status, 200);
}

// The work quotas of a key on a real server: what can never fit, a day's images that outlast a
// restart, and limits reached through every API family.
TEST(AuthQuotas, DailyImagesOutlastARestartAndWorkOverALimitIsA429) {
  const fs::path dir = fs::temp_directory_path() / ("kiln-quotas-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  constexpr char kErin[] = "erin-key-0123456789a";
  constexpr char kFrank[] = "frank-key-0123456789";
  std::ofstream(dir / "keys.yaml")
      << "keys:\n"
      << "  - {key: \"" << kErin
      << "\", tenant: erin, limits: {concurrent_jobs: 2, images_per_day: 4}}\n"
      << "  - {key: \"" << kFrank << "\", tenant: frank, limits: {queued_seconds: 0.000001}}\n";
  const std::vector<std::string> args = {"--models",   TestModelsDir(),
                                         "--api-keys", (dir / "keys.yaml").string(),
                                         "--data",     (dir / "data").string()};
  auto submit_once = [&](const ServerProcess& server) {
    const json job = {{"prompt", "a red circle"}, {"model", "test-pixel"}, {"steps", 2}};
    return HttpRequest("POST", server.url() + "/v1/jobs", job.dump(),
                       {std::string("Authorization: Bearer ") + kErin,
                        "Content-Type: application/json", "Idempotency-Key: erin-job-1"});
  };
  auto generate = [](const ServerProcess& server, const char* key, int n) {
    const json body = {{"prompt", "a red circle"},
                       {"model", "test-pixel"},
                       {"steps", 2},
                       {"n", n},
                       {"response_format", "b64_json"}};
    return HttpRequest(
        "POST", server.url() + "/v1/images/generations", body.dump(),
        {std::string("Authorization: Bearer ") + key, "Content-Type: application/json"});
  };
  {
    ServerProcess server(args);
    ASSERT_TRUE(server.started()) << server.log();
    // Three A1111 iterations are three jobs at once: more than concurrent_jobs ever allows.
    const json a1111 = {{"prompt", "a red circle"}, {"steps", 2}, {"n_iter", 3}};
    HttpResult wide = HttpRequest(
        "POST", server.url() + "/sdapi/v1/txt2img", a1111.dump(),
        {std::string("Authorization: Bearer ") + kErin, "Content-Type: application/json"});
    EXPECT_EQ(wide.status, 429) << wide.body;
    EXPECT_NE(Body(wide)["error"]["message"].get<std::string>().find("concurrent_jobs"),
              std::string::npos);
    EXPECT_EQ(wide.headers["ratelimit-limit"], "2");
    EXPECT_EQ(wide.headers.count("retry-after"), 0u) << "retrying cannot help";

    // A job with an Idempotency-Key counts once; its retry asks no quota.
    HttpResult first = submit_once(server);
    EXPECT_EQ(first.status, 202) << first.body;
    HttpResult retried = submit_once(server);
    EXPECT_EQ(retried.status, 200) << retried.body;
    EXPECT_EQ(retried.headers["idempotent-replayed"], "true");

    EXPECT_EQ(generate(server, kErin, 2).status, 200);
    HttpResult over = generate(server, kErin, 2);
    EXPECT_EQ(over.status, 429) << over.body;
    EXPECT_NE(over.body.find("images_per_day"), std::string::npos) << over.body;
    EXPECT_EQ(over.headers["ratelimit-limit"], "4");
    EXPECT_EQ(over.headers["ratelimit-remaining"], "1");
    EXPECT_GE(std::stoi(over.headers["retry-after"]), 1);  // at 00:00 UTC
    EXPECT_EQ(over.headers["ratelimit-reset"], over.headers["retry-after"]);

    // A queued-seconds limit below any request's cost refuses jobs too.
    const json job = {{"prompt", "a red circle"}, {"model", "test-pixel"}, {"steps", 2}};
    HttpResult costly = HttpRequest(
        "POST", server.url() + "/v1/jobs", job.dump(),
        {std::string("Authorization: Bearer ") + kFrank, "Content-Type: application/json"});
    EXPECT_EQ(costly.status, 429) << costly.body;
    EXPECT_NE(costly.body.find("queued_seconds"), std::string::npos) << costly.body;
    server.Signal(SIGTERM);
    EXPECT_EQ(server.Wait(std::chrono::seconds(30)), 0) << server.log();
  }
  {
    ServerProcess server(args);  // the same data directory
    ASSERT_TRUE(server.started()) << server.log();
    HttpResult still = generate(server, kErin, 2);
    EXPECT_EQ(still.status, 429) << "the day's count survived the restart: " << still.body;
    EXPECT_EQ(still.headers["ratelimit-remaining"], "1");
    EXPECT_EQ(generate(server, kErin, 1).status, 200);
    // The day is used up, but a retry of the earlier job is still answered.
    EXPECT_EQ(submit_once(server).status, 200);
    // The async API counts against the same day.
    const json job = {{"prompt", "a red circle"}, {"model", "test-pixel"}, {"steps", 2}};
    HttpResult none = HttpRequest(
        "POST", server.url() + "/v1/jobs", job.dump(),
        {std::string("Authorization: Bearer ") + kErin, "Content-Type: application/json"});
    EXPECT_EQ(none.status, 429) << none.body;
    EXPECT_EQ(none.headers["ratelimit-remaining"], "0");
  }
  fs::remove_all(dir);
}

TEST(AuthStartup, WithoutKeysTheServerRefusesToListenBeyondLoopback) {
  // 192.0.2.1 (TEST-NET-1) is never bound: the server refuses before it tries.
  CommandResult r =
      RunKiln({"serve", "--host", "192.0.2.1", "--port", "0", "--models", TestModelsDir(), "--data",
               (fs::temp_directory_path() / "kiln-auth-refused").string()});
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("without API keys Kiln serves only loopback"), std::string::npos)
      << r.output;
  CommandResult bad =
      RunKiln({"serve", "--api-keys", "/nonexistent/keys.yaml", "--models", TestModelsDir(),
               "--data", (fs::temp_directory_path() / "kiln-auth-refused").string()});
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
  fs::remove_all(fs::temp_directory_path() / "kiln-auth-refused");
}

}  // namespace
}  // namespace kiln::testing
