// /metrics through a real scrape: the exposition passes `promtool check metrics`, counts what
// the test did, and a real Prometheus (Debian's) scrapes Kiln and answers a query for it.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "core/strings.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/server_process.h"

namespace kiln::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// Series ("name{labels}") to value, from the text exposition format.
std::map<std::string, double> ParseExposition(const std::string& text) {
  std::map<std::string, double> out;
  for (std::string_view line : Split(text, "\n", /*skip_empty=*/true)) {
    if (line.front() == '#') continue;
    const size_t space = line.rfind(' ');
    if (space == std::string_view::npos) continue;
    out[std::string(line.substr(0, space))] = std::stod(std::string(line.substr(space + 1)));
  }
  return out;
}

class ObservabilityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("kiln_obs_" + std::to_string(getpid()));
    fs::create_directories(dir_);
    server_ =
        std::make_unique<ServerProcess>(std::vector<std::string>{"--models", TestModelsDir()});
    ASSERT_TRUE(server_->started()) << server_->log();
  }
  void TearDown() override {
    server_.reset();
    fs::remove_all(dir_);
  }
  std::string Url(const std::string& path) const { return server_->url() + path; }

  // One sync generation, one job to its end, and one unknown path.
  void MakeTraffic() {
    const std::string request = R"({"prompt": "a red circle", "model": "test-pixel", "steps": 3})";
    ASSERT_EQ(HttpPost(Url("/v1/images/generations"), request, "application/json").status, 200);
    HttpResult created = HttpPost(Url("/v1/jobs"), request, "application/json");
    ASSERT_EQ(created.status, 202) << created.body;
    const std::string id = json::parse(created.body)["id"];
    ASSERT_TRUE(WaitUntil(std::chrono::seconds(60), [&] {
      return json::parse(HttpGet(Url("/v1/jobs/" + id)).body)["state"] == "succeeded";
    }));
    ASSERT_EQ(HttpGet(Url("/no/such/path")).status, 404);
  }

  fs::path dir_;
  std::unique_ptr<ServerProcess> server_;
};

TEST_F(ObservabilityTest, MetricsPassPromtoolAndCountTheTraffic) {
  MakeTraffic();
  HttpResult metrics = HttpGet(Url("/metrics"));
  ASSERT_EQ(metrics.status, 200);
  EXPECT_EQ(metrics.headers["content-type"], "text/plain; version=0.0.4; charset=utf-8");

  const fs::path file = dir_ / "metrics.txt";
  std::ofstream(file) << metrics.body;
  CommandResult check = RunShell("promtool check metrics < '" + file.string() + "'");
  EXPECT_EQ(check.exit_code, 0) << check.output;
  EXPECT_EQ(check.output, "") << "promtool found problems";

  auto m = ParseExposition(metrics.body);
  const std::string gen = R"({method="POST",route="/v1/images/generations",code="200"})";
  EXPECT_EQ(m["kiln_http_requests_total" + gen], 1);
  EXPECT_EQ(m[R"(kiln_http_requests_total{method="POST",route="/v1/jobs",code="202"})"], 1);
  EXPECT_EQ(m[R"(kiln_http_requests_total{method="GET",route="unmatched",code="404"})"], 1);
  EXPECT_GE(m[R"(kiln_http_requests_total{method="GET",route="/v1/jobs/{id}",code="200"})"], 1);
  EXPECT_EQ(m[R"(kiln_images_total{model="test-pixel"})"], 2);
  EXPECT_EQ(m[R"(kiln_request_duration_seconds_count{model="test-pixel",kind="sync"})"], 1);
  EXPECT_EQ(m[R"(kiln_request_duration_seconds_count{model="test-pixel",kind="job"})"], 1);
  EXPECT_EQ(m[R"(kiln_requests_finished_total{model="test-pixel",kind="job",outcome="succeeded"})"],
            1);
  EXPECT_EQ(m[R"(kiln_jobs{model="test-pixel",state="succeeded"})"], 1);
  EXPECT_EQ(m[R"(kiln_jobs{model="test-pixel",state="queued"})"], 0);
  EXPECT_EQ(m[R"(kiln_queue_depth{model="test-pixel",priority="async"})"], 0);
  EXPECT_EQ(m[R"(kiln_replicas{model="test-pixel"})"], 1);
  EXPECT_EQ(m[R"(kiln_model_ready{model="test-pixel"})"], 1);
  EXPECT_GT(m[R"(kiln_model_load_seconds{model="test-pixel"})"], 0);
  // Two requests of 3 steps each, whether or not they shared a step.
  EXPECT_EQ(m[R"(kiln_batch_rows_sum{model="test-pixel"})"], 2 * 3 * 2);  // CFG: 2 rows each
  EXPECT_GE(m[R"(kiln_step_duration_seconds_count{model="test-pixel"})"], 3);
  EXPECT_GT(m["kiln_process_resident_memory_bytes"], 1e6);
  EXPECT_GT(m["kiln_process_open_fds"], 3);
  EXPECT_GT(m["kiln_process_start_time_seconds"], 1.7e9);
  // Histogram buckets are cumulative and end with the count.
  EXPECT_EQ(
      m[R"(kiln_http_request_duration_seconds_bucket{method="POST",route="/v1/jobs",le="+Inf"})"],
      m[R"(kiln_http_request_duration_seconds_count{method="POST",route="/v1/jobs"})"]);
}

TEST_F(ObservabilityTest, PrometheusScrapesKilnAndAnswersAQuery) {
  MakeTraffic();
  const int port = FreePort();
  ASSERT_GT(port, 0);
  const std::string target = server_->url().substr(std::string("http://").size());
  std::ofstream(dir_ / "prometheus.yml")
      << "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
      << "scrape_configs:\n  - job_name: kiln\n    static_configs:\n"
      << "      - targets: ['" << target << "']\n";
  ChildProcess prometheus({"prometheus", "--config.file=" + (dir_ / "prometheus.yml").string(),
                           "--storage.tsdb.path=" + (dir_ / "tsdb").string(),
                           "--web.listen-address=127.0.0.1:" + std::to_string(port)},
                          (dir_ / "prometheus.log").string());
  ASSERT_TRUE(prometheus.started());
  const std::string query = "http://127.0.0.1:" + std::to_string(port) +
                            "/api/v1/query?query=kiln_images_total%7Bmodel%3D%22test-pixel%22%7D";
  json answer;
  const bool scraped = WaitUntil(std::chrono::seconds(60), [&] {
    if (!prometheus.Running()) return true;  // reported below with its log
    HttpResult r = HttpGet(query);
    if (r.status != 200) return false;
    answer = json::parse(r.body, nullptr, false);
    return answer.is_object() && answer["status"] == "success" && !answer["data"]["result"].empty();
  });
  ASSERT_TRUE(prometheus.Running()) << ReadFile((dir_ / "prometheus.log").string());
  ASSERT_TRUE(scraped) << "no sample after 60 s; last answer: " << answer.dump() << "\n"
                       << ReadFile((dir_ / "prometheus.log").string());
  const json& sample = answer["data"]["result"][0];
  EXPECT_EQ(sample["metric"]["job"], "kiln");
  EXPECT_EQ(sample["value"][1], "2");
}

TEST_F(ObservabilityTest, AutoscaleFollowsTheBacklogAndScalesToZero) {
  // Restart with a tiny per-replica target so that any backlog asks for the maximum.
  server_ = std::make_unique<ServerProcess>(
      std::vector<std::string>{"--models", TestModelsDir(), "--autoscale-target-seconds", "0.001",
                               "--autoscale-max-replicas", "5"});
  ASSERT_TRUE(server_->started()) << server_->log();
  auto model_of = [](const json& body, const std::string& name) {
    for (const json& m : body["models"]) {
      if (m["model"] == name) return m;
    }
    return json();
  };
  json idle = json::parse(HttpGet(Url("/v1/autoscale")).body);
  EXPECT_EQ(idle["object"], "autoscale");
  EXPECT_EQ(idle["desired_replicas"], 0) << idle.dump();
  EXPECT_EQ(model_of(idle, "test-pixel")["desired_replicas"], 0);
  EXPECT_EQ(idle["policy"]["max_replicas"], 5);

  std::vector<std::string> ids;
  for (int i = 0; i < 4; ++i) {
    HttpResult r = HttpPost(Url("/v1/jobs"),
                            R"({"prompt": "slow", "model": "test-pixel", "steps": 150, "n": 4})",
                            "application/json");
    ASSERT_EQ(r.status, 202) << r.body;
    ids.push_back(json::parse(r.body)["id"]);
  }
  json busy = json::parse(HttpGet(Url("/v1/autoscale")).body);
  const json pixel = model_of(busy, "test-pixel");
  EXPECT_EQ(pixel["desired_replicas"], 5) << busy.dump();  // capped by the maximum
  EXPECT_GT(pixel["backlog_seconds"].get<double>(), 0) << busy.dump();
  EXPECT_GE(pixel["queued"].get<int>() + pixel["running"].get<int>(), 1) << busy.dump();
  EXPECT_EQ(model_of(busy, "test-latent")["desired_replicas"], 0);
  auto m = ParseExposition(HttpGet(Url("/metrics")).body);
  EXPECT_GE(m[R"(kiln_autoscale_desired_replicas{model="test-pixel"})"], 1);

  for (const std::string& id : ids) HttpRequest("DELETE", Url("/v1/jobs/" + id), "", {});
  ASSERT_TRUE(WaitUntil(std::chrono::seconds(60), [&] {
    return json::parse(HttpGet(Url("/v1/autoscale")).body)["desired_replicas"] == 0;
  }));
  EXPECT_EQ(HttpGet(Url("/v1/autoscale?model=x")).status, 400);
}

}  // namespace
}  // namespace kiln::testing
