// The distributed mode with a real RabbitMQ (started here on loopback): stateless gateways and
// workers share jobs through the broker and the store; events and cancels cross processes; a
// worker stopped with SIGTERM checkpoints its job and another worker resumes it to the same
// bytes; the broker's absence, bad credentials and a broker restart are survived.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <regex>
#include <thread>

#include "core/ids.h"
#include "gtest/gtest.h"
#include "http/router.h"
#include "http/server.h"
#include "nlohmann/json.hpp"
#include "tests/integration/rabbitmq.h"
#include "tests/integration/server_process.h"

namespace kiln::testing {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

class DistributedTest : public RabbitMqSuite {
 protected:
  void SetUp() override {
    ExpectBrokerStarted();
    store_ = "file://" + (root() / ("store-" + NewUlid())).string();
  }

  std::vector<std::string> Args(const std::string& role, const std::string& models) {
    return {"--role", role, "--queue", broker().url(), "--store", store_, "--models", models};
  }

  static json Post(const ServerProcess& s, const json& request) {
    HttpResult r = HttpRequest("POST", s.url() + "/v1/jobs", request.dump(),
                               {"Content-Type: application/json"});
    EXPECT_EQ(r.status, 202) << r.body;
    return Body(r);
  }
  static json Get(const ServerProcess& s, const std::string& id) {
    return Body(HttpGet(s.url() + "/v1/jobs/" + id));
  }
  static bool WaitState(const ServerProcess& s, const std::string& id, const std::string& state,
                        std::chrono::seconds timeout = std::chrono::seconds(60)) {
    return WaitUntil(timeout, [&] { return Get(s, id).value("state", "") == state; });
  }
  static double Metric(const ServerProcess& s, const std::string& series) {
    const std::string text = HttpGet(s.url() + "/metrics").body;
    const size_t at = text.find("\n" + series + " ");
    return at == std::string::npos ? -1 : std::stod(text.substr(at + series.size() + 2));
  }

  std::string store_;
};

TEST_F(DistributedTest, GatewaysAndWorkersShareJobsThroughTheBroker) {
  ServerProcess g1(Args("gateway", TestModelsDir()));
  ServerProcess g2(Args("gateway", TestModelsDir()));
  ASSERT_TRUE(g1.started()) << g1.log();
  ASSERT_TRUE(g2.started()) << g2.log();
  ASSERT_TRUE(WaitUntil(std::chrono::seconds(30), [&] {
    return HttpGet(g1.url() + "/readyz").status == 200;
  })) << HttpGet(g1.url() + "/readyz").body;
  EXPECT_EQ(Body(HttpGet(g1.url() + "/readyz"))["queue"], "ready");

  // No worker yet: jobs wait in the broker.
  const json a = Post(g1, {{"model", "test-pixel"},
                           {"prompt", "a red circle"},
                           {"steps", 30},
                           {"seed", 5},
                           {"sampler", "euler_a"}});
  const std::string id = a["id"];
  EXPECT_EQ(a["state"], "queued");
  EXPECT_EQ(Get(g2, id)["state"], "queued") << "the other gateway answers from the store";

  // Another gateway streams the job's events, which the worker publishes through the broker.
  std::string events;
  std::thread stream([&] { events = HttpGet(g2.url() + "/v1/jobs/" + id + "/events").body; });
  ASSERT_TRUE(
      WaitUntil(std::chrono::seconds(10), [&] { return Metric(g2, "kiln_event_streams") == 1; }));

  // Cancelling a queued job through one gateway is seen by the other, and no worker runs it.
  const json b = Post(g2, {{"model", "test-pixel"}, {"prompt", "a blue square"}, {"seed", 6}});
  const std::string cancelled = b["id"];
  HttpResult del = HttpRequest("DELETE", g1.url() + "/v1/jobs/" + cancelled, "", {});
  ASSERT_EQ(del.status, 200) << del.body;
  EXPECT_EQ(Get(g2, cancelled)["state"], "cancelled");

  // A gateway runs no model: sync requests are refused with a pointer to the jobs API.
  HttpResult sync = HttpRequest("POST", g1.url() + "/v1/images/generations",
                                json{{"model", "test-pixel"}, {"prompt", "x"}}.dump(),
                                {"Content-Type: application/json"});
  EXPECT_EQ(sync.status, 503) << sync.body;
  EXPECT_NE(sync.body.find("/v1/jobs"), std::string::npos) << sync.body;

  ServerProcess worker(Args("worker", TestModelsDir()));
  ASSERT_TRUE(worker.started()) << worker.log();
  stream.join();
  EXPECT_NE(events.find("event: running"), std::string::npos) << events;
  EXPECT_NE(events.find("event: progress"), std::string::npos) << events;
  EXPECT_NE(events.find("event: succeeded"), std::string::npos) << events;

  ASSERT_TRUE(WaitState(g1, id, "succeeded")) << worker.log();
  const json done = Get(g1, id);
  ASSERT_EQ(done["data"].size(), 1u);
  const std::string url = done["data"][0]["url"];
  HttpResult png = HttpGet(g2.url() + url.substr(url.find("/v1/files/")));
  EXPECT_EQ(png.status, 200);
  EXPECT_EQ(png.body.substr(1, 3), "PNG");
  EXPECT_EQ(Get(g2, cancelled)["state"], "cancelled") << "the worker skipped the cancelled job";

  // The worker serves probes and metrics, not the API.
  EXPECT_TRUE(WaitUntil(std::chrono::seconds(10),
                        [&] { return HttpGet(worker.url() + "/readyz").status == 200; }));
  EXPECT_EQ(HttpGet(worker.url() + "/metrics").status, 200);
  EXPECT_EQ(HttpGet(worker.url() + "/v1/jobs").status, 404);

  // Listing pages through the records, newest first, from any gateway.
  const json list = Body(HttpGet(g2.url() + "/v1/jobs?limit=1"));
  ASSERT_EQ(list["data"].size(), 1u);
  EXPECT_EQ(list["data"][0]["id"], cancelled);
  EXPECT_TRUE(list["has_more"].get<bool>());

  // A broker restart: gateways and the worker reconnect by themselves, and work goes on.
  ASSERT_TRUE(broker().Restart()) << broker().log();
  ASSERT_TRUE(WaitUntil(std::chrono::seconds(30), [&] {
    return HttpGet(g1.url() + "/readyz").status == 200 &&
           HttpGet(worker.url() + "/readyz").status == 200;
  }));
  json after;
  ASSERT_TRUE(WaitUntil(std::chrono::seconds(30), [&] {
    HttpResult r =
        HttpRequest("POST", g2.url() + "/v1/jobs",
                    json{{"model", "test-latent"}, {"prompt", "after"}, {"seed", 9}}.dump(),
                    {"Content-Type: application/json"});
    after = Body(r);
    return r.status == 202;
  }));
  EXPECT_TRUE(WaitState(g1, after["id"], "succeeded")) << worker.log();
}

TEST_F(DistributedTest, SigtermCheckpointsTheJobAndAnotherWorkerResumesItToTheSameBytes) {
  const std::string models = std::string(KILN_SOURCE_DIR) + "/models";
  ServerProcess gateway(Args("gateway", models));
  ASSERT_TRUE(gateway.started()) << gateway.log();
  const json request = {{"model", "tiny-shapes"},
                        {"prompt", "a green triangle"},
                        {"steps", 150},
                        {"n", 4},
                        {"seed", 77},
                        {"sampler", "dpmpp_2m"}};

  std::vector<std::string> args = Args("worker", models);
  args.insert(args.end(), {"--grace-seconds", "0"});
  auto first = std::make_unique<ServerProcess>(args);
  ASSERT_TRUE(first->started()) << first->log();
  const std::string id = Post(gateway, request)["id"];
  ASSERT_TRUE(WaitUntil(std::chrono::seconds(60), [&] {
    const json j = Get(gateway, id);
    return j["state"] == "running" && j["progress"]["step"].get<int>() >= 3;
  })) << Get(gateway, id).dump();
  first->Signal(SIGTERM);
  EXPECT_EQ(first->Wait(std::chrono::seconds(30)), 0) << first->log();
  EXPECT_TRUE(first->WaitForLog("job checkpointed", std::chrono::seconds(5))) << first->log();
  const json handed_back = Get(gateway, id);
  EXPECT_EQ(handed_back["state"], "queued") << handed_back.dump();
  EXPECT_EQ(handed_back["attempts"], 0) << "handing back is not an attempt";

  ServerProcess second(Args("worker", models));
  ASSERT_TRUE(second.started()) << second.log();
  ASSERT_TRUE(WaitState(gateway, id, "succeeded", std::chrono::seconds(120))) << second.log();
  EXPECT_TRUE(second.WaitForLog("job resumed from its checkpoint", std::chrono::seconds(10)))
      << second.log();
  const json result =
      json::parse(HttpGet(gateway.url() + "/v1/files/jobs/" + id + "/result.json").body);
  EXPECT_GE(result["resumed_from_step"].get<int>(), 3) << result.dump();

  // The same request, uninterrupted, alone on the same kind of worker: the same bytes.
  const std::string again = Post(gateway, request)["id"];
  ASSERT_TRUE(WaitState(gateway, again, "succeeded", std::chrono::seconds(120)));
  for (int i = 0; i < 4; ++i) {
    const std::string key = "/" + std::to_string(i) + ".png";
    HttpResult resumed = HttpGet(gateway.url() + "/v1/files/jobs/" + id + key);
    HttpResult straight = HttpGet(gateway.url() + "/v1/files/jobs/" + again + key);
    ASSERT_EQ(resumed.status, 200) << key << " " << resumed.body;
    EXPECT_TRUE(resumed.body == straight.body) << "image " << i << " differs after resuming";
  }
}

TEST_F(DistributedTest, APreemptionNoticeCheckpointsAndAnIdleWorkerExitsByItself) {
  // A stand-in for the GCE metadata server: FALSE until the test preempts the machine.
  std::atomic<bool> preempted{false};
  auto text = [](int status, const std::string& body) {
    http::Response r;
    r.status = status;
    r.content_type = "text/plain";
    r.body = body;
    return r;
  };
  http::Router router(text);
  router.Add("GET", "/computeMetadata/v1/instance/preempted",
             [&preempted, &text](const http::Request& r, const http::PathParams&) {
               auto flavor = r.headers.find("metadata-flavor");
               if (flavor == r.headers.end() || flavor->second != "Google") {
                 return text(403, "missing Metadata-Flavor");
               }
               return text(200, preempted ? "TRUE" : "FALSE");
             });
  http::ServerOptions metadata_options;
  metadata_options.port = 0;
  auto metadata = http::Server::Start(metadata_options, router);
  ASSERT_TRUE(metadata.ok()) << metadata.status();
  const std::string preempted_url = "http://127.0.0.1:" + std::to_string((*metadata)->port()) +
                                    "/computeMetadata/v1/instance/preempted";

  const std::string models = std::string(KILN_SOURCE_DIR) + "/models";
  ServerProcess gateway(Args("gateway", models));
  ASSERT_TRUE(gateway.started()) << gateway.log();
  const json request = {
      {"model", "tiny-shapes"}, {"prompt", "a blue circle"}, {"steps", 150}, {"n", 4}, {"seed", 78},
      {"sampler", "euler"}};
  std::vector<std::string> args = Args("worker", models);
  args.insert(args.end(), {"--preemption-url", preempted_url, "--grace-seconds", "600",
                           "--preemption-grace-seconds", "0"});
  ServerProcess spot(args);
  ASSERT_TRUE(spot.started()) << spot.log();
  const std::string id = Post(gateway, request)["id"];
  ASSERT_TRUE(WaitUntil(std::chrono::seconds(60), [&] {
    const json j = Get(gateway, id);
    return j["state"] == "running" && j["progress"]["step"].get<int>() >= 3;
  })) << Get(gateway, id).dump();
  preempted = true;
  // It stops by itself, checkpointing at once (the preemption grace, not --grace-seconds).
  EXPECT_EQ(spot.Wait(std::chrono::seconds(60)), 0) << spot.log();
  EXPECT_TRUE(spot.WaitForLog("the machine is being preempted", std::chrono::seconds(5)))
      << spot.log();
  EXPECT_TRUE(spot.WaitForLog("job checkpointed", std::chrono::seconds(5))) << spot.log();

  // A worker that exits once idle (a KEDA ScaledJob's): resumes the job, then stops itself.
  std::vector<std::string> batch_args = Args("worker", models);
  batch_args.insert(batch_args.end(), {"--exit-when-idle", "2"});
  ServerProcess batch(batch_args);
  ASSERT_TRUE(batch.started()) << batch.log();
  ASSERT_TRUE(WaitState(gateway, id, "succeeded", std::chrono::seconds(120))) << batch.log();
  const json result =
      json::parse(HttpGet(gateway.url() + "/v1/files/jobs/" + id + "/result.json").body);
  EXPECT_GE(result["resumed_from_step"].get<int>(), 3) << result.dump();
  EXPECT_EQ(batch.Wait(std::chrono::seconds(60)), 0) << batch.log();
  EXPECT_TRUE(batch.WaitForLog("\"reason\":\"idle\"", std::chrono::seconds(5))) << batch.log();
}

// The "port" of a server's "listening" line in the log file at `path`, or 0.
int ListeningPort(const fs::path& path) {
  static const std::regex kListening("\"msg\":\"listening\".*\"port\":([0-9]+)");
  std::smatch m;
  const std::string log = ReadFile(path.string());
  return std::regex_search(log, m, kListening) ? std::stoi(m[1]) : 0;
}

TEST_F(DistributedTest, WorkersShareAHostAndOneThatCannotListenClaimsNothing) {
  ServerProcess gateway(Args("gateway", TestModelsDir()));
  ASSERT_TRUE(gateway.started()) << gateway.log();
  ASSERT_TRUE(WaitUntil(std::chrono::seconds(30),
                        [&] { return HttpGet(gateway.url() + "/readyz").status == 200; }));
  const json job = Post(
      gateway, {{"model", "test-pixel"}, {"prompt", "a red circle"}, {"steps", 4}, {"seed", 3}});
  const std::string id = job["id"];

  // A worker whose port is taken exits before it opens the queue: it has claimed nothing. Before,
  // it took the job, then failed to listen and handed it back.
  const int taken = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(taken, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(taken, 1), 0);
  socklen_t len = sizeof(addr);
  ::getsockname(taken, reinterpret_cast<sockaddr*>(&addr), &len);
  const std::string port = std::to_string(ntohs(addr.sin_port));
  const fs::path dir = root() / ("workers-" + NewUlid());
  const CommandResult blocked =
      RunKiln({"worker", "--host", "127.0.0.1", "--port", port, "--queue", broker().url(),
               "--store", store_, "--models", TestModelsDir(), "--data", (dir / "0").string()});
  ::close(taken);
  EXPECT_EQ(blocked.exit_code, 1) << blocked.output;
  EXPECT_NE(blocked.output.find("cannot start the server"), std::string::npos) << blocked.output;
  const json waiting = Get(gateway, id);
  EXPECT_EQ(waiting["state"], "queued") << waiting;
  EXPECT_TRUE(waiting["started_at"].is_null()) << waiting;

  // Two workers on this host with no --port: each takes a free port (before, both took 8080 and
  // the second one exited), and the job runs.
  fs::create_directories(dir);
  // A config file shared with gateways says role: gateway; `kiln worker` stays a worker.
  std::ofstream(dir / "shared.yaml") << "role: gateway\n";
  auto worker = [&](int i) {
    return std::make_unique<ChildProcess>(
        std::vector<std::string>{KilnBinary(), "worker", "--host", "127.0.0.1", "--queue",
                                 broker().url(), "--store", store_, "--models", TestModelsDir(),
                                 "--data", (dir / std::to_string(i)).string(), "--threads", "1",
                                 "--config", (dir / "shared.yaml").string()},
        (dir / ("worker-" + std::to_string(i) + ".log")).string());
  };
  auto w1 = worker(1);
  auto w2 = worker(2);
  int p1 = 0, p2 = 0;
  EXPECT_TRUE(WaitUntil(std::chrono::seconds(60),
                        [&] {
                          p1 = ListeningPort(dir / "worker-1.log");
                          p2 = ListeningPort(dir / "worker-2.log");
                          return p1 > 0 && p2 > 0;
                        }))
      << ReadFile((dir / "worker-1.log").string()) << ReadFile((dir / "worker-2.log").string());
  EXPECT_NE(p1, p2);
  EXPECT_NE(p1, 8080);
  EXPECT_NE(ReadFile((dir / "worker-1.log").string()).find("\"role\":\"worker\""),
            std::string::npos);
  EXPECT_EQ(HttpGet("http://127.0.0.1:" + std::to_string(p1) + "/healthz").status, 200);
  EXPECT_EQ(HttpGet("http://127.0.0.1:" + std::to_string(p2) + "/healthz").status, 200);
  EXPECT_TRUE(WaitState(gateway, id, "succeeded")) << Get(gateway, id);
}

TEST_F(DistributedTest, NoBrokerOrBadCredentialsMeanNotReadyNotACrash) {
  const int closed_port = FreePort();  // nothing listens here
  ServerProcess lonely({"--role", "gateway", "--queue",
                        "amqp://guest:guest@127.0.0.1:" + std::to_string(closed_port) + "/",
                        "--store", store_, "--models", TestModelsDir()});
  ASSERT_TRUE(lonely.started()) << lonely.log();
  EXPECT_TRUE(WaitUntil(std::chrono::seconds(20), [&] {
    HttpResult ready = HttpGet(lonely.url() + "/readyz");
    return ready.status == 503 && Body(ready)["queue"]["error"].get<std::string>().find(
                                      "cannot reach the broker") != std::string::npos;
  })) << HttpGet(lonely.url() + "/readyz").body;
  HttpResult job = HttpRequest("POST", lonely.url() + "/v1/jobs",
                               json{{"model", "test-pixel"}, {"prompt", "x"}}.dump(),
                               {"Content-Type: application/json"});
  EXPECT_EQ(job.status, 503) << job.body;
  EXPECT_EQ(HttpGet(lonely.url() + "/v1/jobs?limit=1").status, 200) << "records still answer";

  std::string url = broker().url();
  url.replace(url.find("guest:guest"), 11, "guest:wrong");
  ServerProcess refused(
      {"--role", "worker", "--queue", url, "--store", store_, "--models", TestModelsDir()});
  ASSERT_TRUE(refused.started()) << refused.log();
  ASSERT_TRUE(WaitUntil(std::chrono::seconds(20), [&] {
    const json r = Body(HttpGet(refused.url() + "/readyz"));
    return r["queue"].is_object() &&
           r["queue"]["error"].get<std::string>().find("refused the login") != std::string::npos;
  })) << HttpGet(refused.url() + "/readyz").body;
  EXPECT_EQ(HttpGet(refused.url() + "/readyz").status, 503);
}

}  // namespace
}  // namespace kiln::testing
