// The jobs, batches, files and events API of a real `kiln serve`, driven over HTTP with libcurl;
// webhooks land on a real HTTP server started by the test.
#include <signal.h>
#include <sqlite3.h>

#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>

#include "core/crypto.h"
#include "core/ids.h"
#include "core/strings.h"
#include "engine/image_codec.h"
#include "gtest/gtest.h"
#include "http/router.h"
#include "http/server.h"
#include "nlohmann/json.hpp"
#include "tests/integration/server_process.h"

namespace kiln::testing {
namespace {

using nlohmann::json;

constexpr const char* kJson = "Content-Type: application/json";

class JobsApiTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // Webhooks may reach 127.0.0.1 (the test's receiver) and nothing else that is not public.
    server_ = new ServerProcess({"--models", TestModelsDir(), "--webhook-secret", "s3cret",
                                 "--webhook-allow", "127.0.0.1/32"});
    ASSERT_TRUE(server_->started()) << server_->log();
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  static std::string Url(const std::string& path) { return server_->url() + path; }

  static HttpResult Submit(const json& body, std::vector<std::string> headers = {}) {
    headers.push_back(kJson);
    return HttpRequest("POST", Url("/v1/jobs"), body.dump(), headers);
  }
  static json Job(int steps, uint64_t seed, json extra = json::object()) {
    json j = {
        {"prompt", "a red circle"}, {"model", "test-pixel"}, {"steps", steps}, {"seed", seed}};
    j.update(extra);
    return j;
  }
  // Follows the job's event stream to its end (no polling), then reads the job.
  static json WaitFinal(const std::string& id, std::string* events = nullptr) {
    HttpResult stream = HttpGet(Url("/v1/jobs/" + id + "/events"));
    EXPECT_EQ(stream.status, 200);
    if (events) *events = stream.body;
    return Body(HttpGet(Url("/v1/jobs/" + id)));
  }
  static int CountJobs() {
    int n = 0;
    std::string cursor;
    while (true) {
      json page =
          Body(HttpGet(Url("/v1/jobs?limit=100" + (cursor.empty() ? "" : "&after=" + cursor))));
      n += static_cast<int>(page["data"].size());
      if (!page["has_more"].get<bool>()) return n;
      cursor = page["next_cursor"].get<std::string>();
    }
  }
  static ServerProcess* server_;
};
ServerProcess* JobsApiTest::server_ = nullptr;

TEST_F(JobsApiTest, AJobRunsStreamsItsEventsAndItsImageIsServed) {
  HttpResult created = Submit(Job(12, 7));
  ASSERT_EQ(created.status, 202) << created.body;
  json job = Body(created);
  const std::string id = job["id"];
  EXPECT_EQ(created.headers["location"], "/v1/jobs/" + id);
  EXPECT_TRUE(job["state"] == "queued" || job["state"] == "running");
  EXPECT_GT(job["estimated_cost_seconds"].get<double>(), 0);
  std::string events;
  json done = WaitFinal(id, &events);
  EXPECT_EQ(done["state"], "succeeded") << done.dump();
  EXPECT_EQ(done["attempts"], 1);
  EXPECT_EQ(done["progress"]["step"], 12);
  EXPECT_NE(events.find("event: succeeded"), std::string::npos) << events;
  ASSERT_EQ(done["data"].size(), 1u);
  const std::string url = done["data"][0]["url"];
  HttpResult png = HttpGet(url);
  EXPECT_EQ(png.status, 200);
  EXPECT_EQ(png.headers["content-type"], "image/png");
  EXPECT_EQ(png.body.substr(1, 3), "PNG");
  // The stream of a finished job is its final state, then the end.
  HttpResult again = HttpGet(Url("/v1/jobs/" + id + "/events"));
  EXPECT_EQ(again.body.find("event: succeeded"), 0u) << again.body;
  // Listing finds it by state and model.
  json list = Body(HttpGet(Url("/v1/jobs?state=succeeded&model=test-pixel&limit=100")));
  bool found = false;
  for (const auto& j : list["data"]) found |= j["id"] == id;
  EXPECT_TRUE(found);
}

TEST_F(JobsApiTest, MultipartJobsTakeAnUploadedImageOrNone) {
  const std::string png =
      *engine::EncodePng(engine::Image{20, 20, std::vector<uint8_t>(1200, 90)}, {});
  // The /v1/images/edits form, as an async job.
  HttpResult edit = HttpPostForm(Url("/v1/jobs"), {{"image", png, "in.png", "image/png"},
                                                   {"prompt", "make it blue"},
                                                   {"model", "test-pixel"},
                                                   {"seed", "3"},
                                                   {"steps", "4"},
                                                   {"priority", "2"}});
  ASSERT_EQ(edit.status, 202) << edit.body;
  json done = WaitFinal(Body(edit)["id"]);
  EXPECT_EQ(done["state"], "succeeded") << done.dump();
  EXPECT_NE(done["request"].value("mode", "generate"), "generate") << done.dump();
  EXPECT_EQ(done["priority"], 2);
  // Without an image: a generation job.
  HttpResult gen = HttpPostForm(
      Url("/v1/jobs"), {{"prompt", "a red circle"}, {"model", "test-pixel"}, {"steps", "3"}});
  ASSERT_EQ(gen.status, 202) << gen.body;
  done = WaitFinal(Body(gen)["id"]);
  EXPECT_EQ(done["state"], "succeeded") << done.dump();
  EXPECT_EQ(done["request"].value("mode", ""), "generate") << done.dump();
  // Bad forms name the field and create nothing.
  const int before = CountJobs();
  struct Case {
    std::vector<FormField> fields;
    const char* field;
  };
  const std::vector<Case> cases = {
      {{{"prompt", "p"}, {"model", "test-pixel"}, {"mode", "img2img"}}, "mode"},
      {{{"prompt", "p"}, {"model", "test-pixel"}, {"colour", "red"}}, "colour"},
      {{{"prompt", "p"}, {"model", "test-pixel"}, {"webhook", "ftp://x"}}, "webhook"},
      {{{"image", "not an image", "x.png", "image/png"}, {"prompt", "p"}, {"model", "test-pixel"}},
       "image"},
      {{{"image", png, "a.png", "image/png"},
        {"image", png, "b.png", "image/png"},
        {"prompt", "p"},
        {"model", "test-pixel"}},
       "image"},
  };
  for (const Case& c : cases) {
    HttpResult r = HttpPostForm(Url("/v1/jobs"), c.fields);
    EXPECT_EQ(r.status, 400) << c.field << ": " << r.body;
    EXPECT_EQ(Body(r)["error"]["param"], c.field) << r.body;
  }
  EXPECT_EQ(CountJobs(), before);
}

TEST_F(JobsApiTest, ProgressEventsCarryPreviewsWhenAsked) {
  json job = Body(Submit(Job(40, 8, {{"n", 2}})));
  HttpResult stream =
      HttpGet(Url("/v1/jobs/" + job["id"].get<std::string>() + "/events?previews=1"));
  EXPECT_NE(stream.body.find("event: succeeded"), std::string::npos);
  // The stream may start after the first steps; a 40-step job still shows progress.
  if (stream.body.find("event: progress") != std::string::npos) {
    EXPECT_NE(stream.body.find("\"preview\":\"data:image/png;base64,"), std::string::npos);
  }
}

TEST_F(JobsApiTest, IdempotencyKeyReplaysTheSameJob) {
  const json body = Job(3, 9);
  HttpResult a = Submit(body, {"Idempotency-Key: order-17"});
  HttpResult b = Submit(body, {"Idempotency-Key: order-17"});
  ASSERT_EQ(a.status, 202) << a.body;
  EXPECT_EQ(b.status, 200) << b.body;
  EXPECT_EQ(Body(a)["id"], Body(b)["id"]);
  EXPECT_EQ(b.headers["idempotent-replayed"], "true");
  HttpResult c = Submit(Job(3, 10), {"Idempotency-Key: order-17"});
  EXPECT_EQ(c.status, 409) << c.body;
  EXPECT_EQ(Body(c)["error"]["param"], "Idempotency-Key");
  // Another API key has its own key space.
  HttpResult d = Submit(body, {"Idempotency-Key: order-17", "Authorization: Bearer other"});
  EXPECT_EQ(d.status, 202);
  WaitFinal(Body(a)["id"]);
  WaitFinal(Body(d)["id"]);
  // Without a seed (the server picks one from the key) and with an input image (each job keeps
  // its own copy): a retry is still the same request.
  json seedless = {{"prompt", "a red circle"}, {"model", "test-pixel"}, {"steps", 3}};
  HttpResult e = Submit(seedless, {"Idempotency-Key: order-18"});
  HttpResult f = Submit(seedless, {"Idempotency-Key: order-18"});
  ASSERT_EQ(e.status, 202) << e.body;
  EXPECT_EQ(f.status, 200) << f.body;
  EXPECT_EQ(Body(e)["id"], Body(f)["id"]);
  const std::string png =
      *engine::EncodePng(engine::Image{8, 8, std::vector<uint8_t>(192, 40)}, {});
  json edit = seedless;
  edit["image"] = Base64Encode(png);
  HttpResult g = Submit(edit, {"Idempotency-Key: order-19"});
  HttpResult h = Submit(edit, {"Idempotency-Key: order-19"});
  ASSERT_EQ(g.status, 202) << g.body;
  EXPECT_EQ(h.status, 200) << h.body;
  EXPECT_EQ(Body(g)["id"], Body(h)["id"]);
  // Another image under the same key is another request.
  edit["image"] =
      Base64Encode(*engine::EncodePng(engine::Image{8, 8, std::vector<uint8_t>(192, 200)}, {}));
  EXPECT_EQ(Submit(edit, {"Idempotency-Key: order-19"}).status, 409);
  WaitFinal(Body(e)["id"]);
  WaitFinal(Body(g)["id"]);
}

TEST_F(JobsApiTest, CancelsAQueuedJobAtOnceAndARunningOneAtAStep) {
  // A long job fills the replica (the test model's max batch) so the next one waits.
  json running = Body(Submit(Job(150, 1, {{"n", 10}, {"priority", 10}})));
  json queued = Body(Submit(Job(150, 2, {{"n", 10}, {"priority", -10}})));
  HttpResult c1 = HttpRequest("DELETE", Url("/v1/jobs/" + queued["id"].get<std::string>()), "", {});
  EXPECT_TRUE(c1.status == 200 || c1.status == 202) << c1.body;
  HttpResult c2 =
      HttpRequest("DELETE", Url("/v1/jobs/" + running["id"].get<std::string>()), "", {});
  EXPECT_TRUE(c2.status == 200 || c2.status == 202) << c2.body;
  EXPECT_EQ(WaitFinal(queued["id"])["state"], "cancelled");
  json r = WaitFinal(running["id"]);
  EXPECT_EQ(r["state"], "cancelled");
  EXPECT_EQ(r["error"]["code"], "cancelled");
  // Cancelling a finished job changes nothing.
  HttpResult again =
      HttpRequest("DELETE", Url("/v1/jobs/" + running["id"].get<std::string>()), "", {});
  EXPECT_EQ(again.status, 409);
}

TEST_F(JobsApiTest, ABatchRunsEveryLineAndServesItsResults) {
  std::string jsonl;
  for (int i = 0; i < 3; ++i) {
    jsonl += Job(4 + i, 100 + i, {{"custom_id", "line-" + std::to_string(i)}}).dump() + "\n";
  }
  HttpResult created =
      HttpRequest("POST", Url("/v1/batches"), jsonl, {"Content-Type: application/jsonl"});
  ASSERT_EQ(created.status, 202) << created.body;
  json batch = Body(created);
  EXPECT_EQ(batch["request_counts"]["total"], 3);
  const std::string id = batch["id"];
  json jobs = Body(HttpGet(Url("/v1/jobs?batch_id=" + id)));
  ASSERT_EQ(jobs["data"].size(), 3u);
  for (const auto& j : jobs["data"]) {
    EXPECT_EQ(j["class"], "batch");
    EXPECT_EQ(WaitFinal(j["id"])["state"], "succeeded");
  }
  json after = Body(HttpGet(Url("/v1/batches/" + id)));
  EXPECT_EQ(after["status"], "completed");
  EXPECT_EQ(after["request_counts"]["succeeded"], 3);
  HttpResult results = HttpGet(Url("/v1/batches/" + id + "/results"));
  EXPECT_EQ(results.headers["content-type"], "application/jsonl");
  int lines = 0;
  for (size_t p = 0; (p = results.body.find('\n', p)) != std::string::npos; ++p) ++lines;
  EXPECT_EQ(lines, 3);
  EXPECT_NE(results.body.find("\"custom_id\":\"line-2\""), std::string::npos);
}

TEST_F(JobsApiTest, BadInputGetsAClear4xxAndChangesNothing) {
  const int before = CountJobs();
  struct Case {
    std::string method, path, body, content_type;
    long status;
    std::string param;
  };
  const std::string unknown = "01ARZ3NDEKTSV4RRFFQ69G5FAV";
  const std::vector<Case> cases = {
      {"GET", "/v1/jobs/" + unknown, "", "", 404, "job_id"},
      {"GET", "/v1/jobs/not-an-id", "", "", 400, "job_id"},
      {"DELETE", "/v1/jobs/" + unknown, "", "", 404, "job_id"},
      {"GET", "/v1/jobs/" + unknown + "/events", "", "", 404, "job_id"},
      {"GET", "/v1/jobs?after=garbage", "", "", 400, "after"},
      {"GET", "/v1/jobs?state=done", "", "", 400, "state"},
      {"GET", "/v1/jobs?limit=1000", "", "", 400, "limit"},
      {"GET", "/v1/jobs?colour=red", "", "", 400, "colour"},
      {"POST", "/v1/jobs", Job(5, 1, {{"webhook", "ftp://example.com/x"}}).dump(),
       "application/json", 400, "webhook"},
      {"POST", "/v1/jobs", Job(5, 1, {{"webhook", "http://"}}).dump(), "application/json", 400,
       "webhook"},
      // Refused ranges, refused at submission: nothing is ever sent to them.
      {"POST", "/v1/jobs", Job(5, 1, {{"webhook", "http://169.254.169.254/latest"}}).dump(),
       "application/json", 400, "webhook"},
      {"POST", "/v1/jobs", Job(5, 1, {{"webhook", "http://[::ffff:10.0.0.1]/x"}}).dump(),
       "application/json", 400, "webhook"},
      {"POST", "/v1/jobs", Job(5, 1, {{"webhook", "http://127.0.0.2:9/x"}}).dump(),
       "application/json", 400, "webhook"},
      {"POST", "/v1/jobs", Job(5, 1, {{"priority", 11}}).dump(), "application/json", 400,
       "priority"},
      {"POST", "/v1/jobs", Job(5, 1, {{"deadline_ms", 0}}).dump(), "application/json", 400,
       "deadline_ms"},
      {"POST", "/v1/jobs", Job(5, 1, {{"image", "%%%"}}).dump(), "application/json", 400, "image"},
      {"POST", "/v1/jobs", Job(5, 1, {{"strength", 0.5}}).dump(), "application/json", 400,
       "strength"},
      {"POST", "/v1/jobs", "{not json", "application/json", 400, ""},
      {"POST", "/v1/jobs", Job(5, 1).dump(), "text/plain", 415, "content-type"},
      {"POST", "/v1/batches", Job(3, 1).dump() + "\n{\"prompt\": \n" + Job(3, 2).dump() + "\n",
       "application/jsonl", 400, "line 2"},
      {"POST", "/v1/batches", Job(3, 1).dump() + "\n" + Job(3, 2, {{"steps", 0}}).dump(),
       "application/jsonl", 400, "line 2: steps"},
      {"POST", "/v1/batches", "\n\n", "application/jsonl", 400, "body"},
      {"GET", "/v1/batches/xyz", "", "", 400, "batch_id"},
      {"GET", "/v1/batches/" + unknown, "", "", 404, "batch_id"},
      {"GET", "/v1/files/jobs/%2E%2E/%2E%2E/etc/passwd", "", "", 400, "key"},
      {"GET", "/v1/files/jobs/" + unknown + "/0.png", "", "", 404, "key"},
      {"GET", "/v1/files/queue.db", "", "", 404, "key"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> headers;
    if (!c.content_type.empty()) headers.push_back("Content-Type: " + c.content_type);
    HttpResult r = HttpRequest(c.method, Url(c.path), c.body, headers);
    EXPECT_EQ(r.status, c.status) << c.method << " " << c.path << ": " << r.body;
    json err = Body(r)["error"];
    EXPECT_FALSE(err["message"].get<std::string>().empty()) << c.path;
    if (!c.param.empty()) {
      EXPECT_EQ(err["param"], c.param) << c.path << ": " << r.body;
    }
  }
  EXPECT_EQ(CountJobs(), before);
}

TEST_F(JobsApiTest, SyncRequestsCanAnswerWithUrlsAndRefuseUnreachableDeadlines) {
  HttpResult r =
      HttpPost(Url("/v1/images/generations"),
               Job(4, 3, {{"response_format", "url"}, {"n", 2}}).dump(), "application/json");
  ASSERT_EQ(r.status, 200) << r.body;
  json body = Body(r);
  ASSERT_EQ(body["data"].size(), 2u);
  HttpResult png = HttpGet(body["data"][1]["url"]);
  EXPECT_EQ(png.status, 200);
  EXPECT_EQ(png.body.substr(1, 3), "PNG");
  // A deadline of 1 ms cannot hold a 150-step request of ten images.
  HttpResult late =
      HttpPost(Url("/v1/images/generations"), Job(150, 3, {{"deadline_ms", 1}, {"n", 10}}).dump(),
               "application/json");
  EXPECT_EQ(late.status, 429) << late.body;
  EXPECT_EQ(Body(late)["error"]["param"], "deadline_ms");
  EXPECT_FALSE(late.headers["retry-after"].empty());
}

// A small HTTP server that records webhook deliveries; the first answer is a 500.
class WebhookReceiver {
 public:
  WebhookReceiver()
      : router_([](int s, const std::string& m) {
          http::Response r;
          r.status = s;
          r.body = m;
          return r;
        }) {
    router_.Add("POST", "/hook", [this](const http::Request& req, const http::PathParams&) {
      std::lock_guard<std::mutex> lock(mu_);
      deliveries_.push_back(req);
      cv_.notify_all();
      http::Response r;
      r.status = deliveries_.size() == 1 ? 500 : 200;
      return r;
    });
    http::ServerOptions o;
    o.port = 0;
    o.handler_threads = 2;
    server_ = std::move(*http::Server::Start(o, router_));
  }
  std::string url() const {
    return "http://127.0.0.1:" + std::to_string(server_->port()) + "/hook";
  }
  std::vector<http::Request> WaitFor(size_t n) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::seconds(60), [&] { return deliveries_.size() >= n; });
    return deliveries_;
  }

 private:
  http::Router router_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<http::Request> deliveries_;
  std::unique_ptr<http::Server> server_;
};

TEST_F(JobsApiTest, WebhooksAreSignedRetriedAndRecordedOnTheJob) {
  WebhookReceiver receiver;
  json job = Body(Submit(Job(3, 11, {{"webhook", receiver.url()}})));
  auto deliveries = receiver.WaitFor(2);
  ASSERT_EQ(deliveries.size(), 2u);
  const http::Request& d = deliveries[1];
  json payload = json::parse(d.body);
  EXPECT_EQ(payload["type"], "job.succeeded");
  EXPECT_EQ(payload["data"]["id"], job["id"]);
  EXPECT_EQ(d.Header("kiln-job-id").value_or(""), job["id"].get<std::string>());
  // Kiln-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>
  const std::string sig(d.Header("kiln-signature").value_or(""));
  const size_t comma = sig.find(',');
  ASSERT_NE(comma, std::string::npos) << sig;
  const std::string t = sig.substr(2, comma - 2);
  EXPECT_EQ(sig.substr(comma + 1), "v1=" + HmacSha256Hex("s3cret", t + "." + d.body));
  EXPECT_NE(sig.substr(comma + 1), "v1=" + HmacSha256Hex("wrong", t + "." + d.body));
  // The outcome is recorded on the job right after the delivery answered.
  json after;
  WaitUntil(std::chrono::seconds(30), [&] {
    after = Body(HttpGet(Url("/v1/jobs/" + job["id"].get<std::string>())));
    return after["webhook"]["state"] == "delivered";
  });
  EXPECT_EQ(after["webhook"]["state"], "delivered") << after.dump();
  EXPECT_EQ(after["webhook"]["attempts"], 2);
}

TEST(JobsAdmission, AFullQueueAnswers429WithRetryAfter) {
  ServerProcess server({"--models", TestModelsDir(), "--max-queued-jobs", "1"});
  ASSERT_TRUE(server.started()) << server.log();
  auto post = [&](int seed) {
    json j = {{"prompt", "x"}, {"model", "test-pixel"}, {"steps", 150}, {"n", 10}, {"seed", seed}};
    return HttpRequest("POST", server.url() + "/v1/jobs", j.dump(), {kJson});
  };
  std::vector<long> codes;
  for (int i = 0; i < 4; ++i) codes.push_back(post(i).status);
  // The first is accepted; with room for one queued job, at least two are refused.
  EXPECT_EQ(codes[0], 202);
  EXPECT_GE(std::count(codes.begin(), codes.end(), 429), 2);
  HttpResult r = post(9);
  EXPECT_EQ(r.status, 429);
  EXPECT_FALSE(r.headers["retry-after"].empty());
  // A batch is admitted as a whole: two lines do not fit a bound of one.
  const std::string two = R"({"prompt":"x","model":"test-pixel"})"
                          "\n"
                          R"({"prompt":"y","model":"test-pixel"})";
  HttpResult b =
      HttpRequest("POST", server.url() + "/v1/batches", two, {"Content-Type: application/jsonl"});
  EXPECT_EQ(b.status, 429) << b.body;
}

TEST(JobsConfig, TenantWeightsFromTheConfigFileReachTheQueue) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("kiln-weights-" + NewUlid());
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "kiln.yaml") << "tenant_weights:\n  heavy-key: 4\n  anonymous: 0.5\n";
  // A config file with a bad value stops the server with an error that names the key.
  auto refused = [&](const std::string& name, const std::string& yaml, const std::string& key) {
    std::ofstream(dir / name) << yaml;
    CommandResult r =
        RunKiln({"serve", "--config", (dir / name).string(), "--models", TestModelsDir(), "--data",
                 (dir / (name + "-data")).string(), "--port", "0"});
    EXPECT_NE(r.exit_code, 0) << name;
    EXPECT_NE(r.output.find(key), std::string::npos) << r.output;
  };
  refused("bad.yaml", "tenant_weights:\n  heavy-key: -1\n", "tenant_weights");
  // The idle poll is bounded from the config file as on the command line.
  refused("spin.yaml", "idle_spin_us: -1\n", "idle_spin_us");
  CommandResult spin_flag =
      RunKiln({"serve", "--idle-spin-us", "100001", "--models", TestModelsDir(), "--port", "0"});
  EXPECT_NE(spin_flag.exit_code, 0);
  EXPECT_NE(spin_flag.output.find("--idle-spin-us"), std::string::npos) << spin_flag.output;

  ServerProcess server({"--config", (dir / "kiln.yaml").string(), "--models", TestModelsDir(),
                        "--data", (dir / "data").string()});
  ASSERT_TRUE(server.started()) << server.log();
  EXPECT_TRUE(server.WaitForLog("tenant weights set", std::chrono::seconds(5))) << server.log();
  auto stored = [&] {
    std::map<std::string, double> weights;
    sqlite3* db = nullptr;
    if (sqlite3_open_v2((dir / "data" / "queue.db").c_str(), &db, SQLITE_OPEN_READONLY, nullptr) !=
        SQLITE_OK) {
      sqlite3_close(db);
      return weights;
    }
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db, "SELECT tenant, weight FROM tenant_weights", -1, &st, nullptr) ==
        SQLITE_OK) {
      while (sqlite3_step(st) == SQLITE_ROW) {
        weights[reinterpret_cast<const char*>(sqlite3_column_text(st, 0))] =
            sqlite3_column_double(st, 1);
      }
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return weights;
  };
  // The tenant is the hash that requests with "Authorization: Bearer heavy-key" get.
  const std::map<std::string, double> want = {{"key-" + Sha256Hex("heavy-key").substr(0, 16), 4.0},
                                              {"anonymous", 0.5}};
  EXPECT_EQ(stored(), want);
  // Restarted without them: every tenant is back to weight 1.
  server.Signal(SIGTERM);
  ASSERT_EQ(server.Wait(std::chrono::seconds(30)), 0) << server.log();
  ServerProcess plain({"--models", TestModelsDir(), "--data", (dir / "data").string()});
  ASSERT_TRUE(plain.started()) << plain.log();
  EXPECT_TRUE(stored().empty());
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

// A flag on the command line wins over the config file even when it names the flag's default
// (before, "given" was guessed by comparing with the default, so the file won).
TEST(JobsConfig, AFlagGivenWithItsDefaultValueWinsOverTheConfigFile) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("kiln-config-" + NewUlid());
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "kiln.yaml") << "log_level: error\nidle_spin_us: 7\n";
  {
    // "listening" is an info line: the server is seen to start only if --log-level info won.
    ServerProcess server({"--config", (dir / "kiln.yaml").string(), "--log-level", "info",
                          "--models", TestModelsDir(), "--data", (dir / "data").string()});
    EXPECT_TRUE(server.started()) << server.log();
  }
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

TEST(JobsRetention, FinishedJobsAndTheirFilesGoAfterTheRetention) {
  const std::filesystem::path data =
      std::filesystem::temp_directory_path() / ("kiln-retention-" + NewUlid());
  // 0.001 h = 3.6 s; the server looks every second.
  ServerProcess server(
      {"--models", TestModelsDir(), "--data", data.string(), "--retention-hours", "0.001"});
  ASSERT_TRUE(server.started()) << server.log();
  json j = {{"prompt", "x"}, {"model", "test-pixel"}, {"steps", 3}, {"seed", 4}};
  HttpResult created = HttpRequest("POST", server.url() + "/v1/jobs", j.dump(), {kJson});
  ASSERT_EQ(created.status, 202) << created.body;
  const std::string id = Body(created)["id"];
  HttpGet(server.url() + "/v1/jobs/" + id + "/events");  // returns when the job ended
  json done = Body(HttpGet(server.url() + "/v1/jobs/" + id));
  ASSERT_EQ(done["state"], "succeeded") << done.dump();
  const std::string png = done["data"][0]["url"];
  EXPECT_EQ(HttpGet(png).status, 200);
  const std::filesystem::path files = data / "store" / "jobs" / id;
  EXPECT_TRUE(std::filesystem::exists(files));
  ASSERT_TRUE(WaitUntil(std::chrono::seconds(60), [&] {
    return HttpGet(server.url() + "/v1/jobs/" + id).status == 404;
  })) << server.log();
  // The record goes first and the files right after it; the log line comes when both are gone.
  EXPECT_TRUE(server.WaitForLog("retention: deleted finished jobs", std::chrono::seconds(5)));
  EXPECT_EQ(HttpGet(png).status, 404);
  EXPECT_FALSE(std::filesystem::exists(files)) << "the job's folder is left behind";
  std::error_code ec;
  std::filesystem::remove_all(data, ec);
}

}  // namespace
}  // namespace kiln::testing
