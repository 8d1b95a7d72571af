// Nothing is lost: kill the embedded server with SIGKILL at random moments while seeded async
// jobs are queued and running, restart it on the same data directory, and check that every
// accepted job succeeds exactly once, with exactly one set of results, and that each image
// matches an uninterrupted run of the same request.
#include <signal.h>

#include <filesystem>
#include <random>
#include <set>
#include <thread>

#include "core/ids.h"
#include "core/strings.h"
#include "engine/image_codec.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/server_process.h"

namespace kiln::testing {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

TEST(FaultTest, SigkillAtRandomMomentsLosesNoJob) {
  const fs::path data = fs::temp_directory_path() / ("kiln-fault-" + NewUlid());
  const std::vector<std::string> args = {"--models",    TestModelsDir(),  "--data",
                                         data.string(), "--max-attempts", "100"};
  std::mt19937 rng(20261122);
  const char* samplers[] = {"euler", "euler_a", "dpmpp_2m", "ddim"};
  std::vector<std::pair<std::string, json>> jobs;  // id, request
  auto submit = [&](ServerProcess& server, int count) {
    for (int i = 0; i < count; ++i) {
      const int k = static_cast<int>(jobs.size());
      json req = {{"prompt", "a shape " + std::to_string(k)},
                  {"model", "test-pixel"},
                  {"steps", std::uniform_int_distribution<int>(20, 150)(rng)},
                  {"n", std::uniform_int_distribution<int>(1, 3)(rng)},
                  {"seed", 1000 + k},
                  {"sampler", samplers[k % 4]}};
      HttpResult r = HttpRequest("POST", server.url() + "/v1/jobs", req.dump(),
                                 {"Content-Type: application/json"});
      ASSERT_EQ(r.status, 202) << r.body;
      jobs.emplace_back(Body(r)["id"], req);
    }
  };

  auto server = std::make_unique<ServerProcess>(args);
  ASSERT_TRUE(server->started()) << server->log();
  submit(*server, 30);
  int kills = 0;
  for (int round = 0; round < 6; ++round) {
    // A random moment: 30..500 ms after the server came up (or after the last submissions).
    std::this_thread::sleep_for(
        std::chrono::milliseconds(std::uniform_int_distribution<int>(30, 500)(rng)));
    server->Signal(SIGKILL);
    ASSERT_EQ(server->Wait(std::chrono::seconds(30)), 128 + SIGKILL);
    ++kills;
    server = std::make_unique<ServerProcess>(args);
    ASSERT_TRUE(server->started()) << server->log();
    submit(*server, 5);
  }

  // Every job reaches a final state: follow each one's event stream to its end.
  int succeeded = 0, failed = 0, retried = 0;
  std::map<std::string, json> final_state;
  for (const auto& [id, req] : jobs) {
    HttpGet(server->url() + "/v1/jobs/" + id + "/events");
    json job = Body(HttpGet(server->url() + "/v1/jobs/" + id));
    final_state[id] = job;
    if (job["state"] == "succeeded") {
      ++succeeded;
    } else {
      ++failed;
      ADD_FAILURE() << "job " << id << " ended " << job.dump();
    }
    if (job["attempts"].get<int>() > 1) ++retried;
  }
  std::printf(
      "fault test: submitted %zu, kills %d, succeeded %d, failed %d, lost %zu, "
      "re-run after a kill %d\n",
      jobs.size(), kills, succeeded, failed, jobs.size() - succeeded - failed, retried);
  EXPECT_EQ(succeeded, static_cast<int>(jobs.size()));
  EXPECT_GT(retried, 0) << "no kill interrupted a running job; the test proved nothing";

  // Exactly one set of results per job: the deterministic keys and nothing else.
  for (const auto& [id, req] : jobs) {
    std::set<std::string> files;
    for (const auto& e : fs::directory_iterator(data / "store" / "jobs" / id)) {
      files.insert(e.path().filename().string());
    }
    std::set<std::string> want = {"result.json"};
    for (int i = 0; i < req["n"].get<int>(); ++i) want.insert(std::to_string(i) + ".png");
    EXPECT_EQ(files, want) << id;
    EXPECT_EQ(final_state[id]["data"].size(), req["n"].get<size_t>());
  }

  // The same requests, uninterrupted and one at a time, on a fresh server: the images match.
  ServerProcess reference({"--models", TestModelsDir()});
  ASSERT_TRUE(reference.started());
  int identical = 0, compared = 0;
  double max_diff = 0, sum_diff = 0;
  size_t pixels = 0;
  for (const auto& [id, req] : jobs) {
    json body =
        Body(HttpPost(reference.url() + "/v1/images/generations", req.dump(), "application/json"));
    ASSERT_EQ(body["data"].size(), req["n"].get<size_t>());
    for (size_t i = 0; i < body["data"].size(); ++i) {
      const std::string want = Base64Decode(body["data"][i]["b64_json"].get<std::string>()).value();
      const std::string got =
          ReadFile((data / "store" / "jobs" / id / (std::to_string(i) + ".png")).string());
      auto a = engine::DecodeImage(want, {});
      auto b = engine::DecodeImage(got, {});
      ASSERT_TRUE(a.ok() && b.ok());
      ASSERT_EQ(a->rgb.size(), b->rgb.size());
      for (size_t p = 0; p < a->rgb.size(); ++p) {
        const double d = std::abs(double(a->rgb[p]) - double(b->rgb[p]));
        max_diff = std::max(max_diff, d);
        sum_diff += d;
      }
      pixels += a->rgb.size();
      identical += a->rgb == b->rgb;
      ++compared;
    }
  }
  const double mean_diff = sum_diff / static_cast<double>(pixels);
  std::printf(
      "fault test: %d/%d images pixel-identical to the uninterrupted run; max diff "
      "%.0f/255, mean %.5f/255\n",
      identical, compared, max_diff, mean_diff);
  // The tolerance measured for batching with different neighbours (scheduler_test): on the
  // CPU test model that noise is zero, so interrupted and resumed runs must match exactly.
  EXPECT_LE(max_diff, 2.0);
  EXPECT_LE(mean_diff, 0.05);
  server.reset();
  fs::remove_all(data);
}

}  // namespace
}  // namespace kiln::testing
