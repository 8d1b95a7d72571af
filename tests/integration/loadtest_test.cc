// `kiln loadtest` against a real `kiln serve`: closed and open loop, sync and job modes, a mix
// file, --save, and clear failures for a bad mix file and an unreachable server.
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/server_process.h"

namespace kiln::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

class LoadtestTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = new ServerProcess({"--models", TestModelsDir()});
    ASSERT_TRUE(server_->started()) << server_->log();
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("kiln_lt_" + std::to_string(getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Runs the load test with --json and returns the report (or fails the test).
  static json RunJson(std::vector<std::string> args) {
    args.insert(args.begin(), {"loadtest", "--server", server_->url(), "--json"});
    CommandResult r = RunKiln(args);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    // The report is the last JSON document printed (stdout and stderr are merged).
    json report = json::parse(r.output.substr(r.output.find('{')), nullptr, false);
    EXPECT_TRUE(report.is_object()) << r.output;
    return report;
  }

  static ServerProcess* server_;
  fs::path dir_;
};
ServerProcess* LoadtestTest::server_ = nullptr;

TEST_F(LoadtestTest, ClosedLoopSyncCountsEveryRequest) {
  json report =
      RunJson({"--concurrency", "4", "--requests", "24", "--model", "test-pixel", "--steps", "2"});
  EXPECT_EQ(report["sent"], 24);
  EXPECT_EQ(report["ok"], 24);
  EXPECT_EQ(report["failed"], 0);
  EXPECT_EQ(report["images"], 24);
  EXPECT_GT(report["latency_seconds"]["p50"].get<double>(), 0);
  EXPECT_LE(report["latency_seconds"]["p50"].get<double>(),
            report["latency_seconds"]["p99"].get<double>());
}

TEST_F(LoadtestTest, OpenLoopJobsFromAMixAreSavedAndSucceed) {
  std::ofstream(dir_ / "mix.jsonl")
      << "# two templates\n"
      << R"({"weight": 3, "request": {"prompt": "a red circle", "model": "test-pixel", "steps": 2}})"
      << "\n"
      << R"({"weight": 1, "request": {"prompt": "a blue square", "model": "test-latent", "steps": 2, "n": 2}})"
      << "\n";
  json report = RunJson({"--rate", "50", "--requests", "12", "--mode", "job", "--mix",
                         (dir_ / "mix.jsonl").string(), "--save", (dir_ / "out").string()});
  EXPECT_EQ(report["ok"], 12);
  EXPECT_EQ(report["failed"], 0);
  const int images = report["images"];
  EXPECT_GE(images, 12);
  int saved = 0;
  for (const auto& f : fs::directory_iterator(dir_ / "out")) {
    std::ifstream in(f.path(), std::ios::binary);
    char magic[4] = {};
    in.read(magic, 4);
    EXPECT_EQ(std::string(magic + 1, 3), "PNG") << f.path();
    ++saved;
  }
  EXPECT_EQ(saved, images);
}

TEST_F(LoadtestTest, ServerErrorsAreCountedByCodeAndTheExitStatusSaysSo) {
  CommandResult r = RunKiln({"loadtest", "--server", server_->url(), "--json", "--concurrency", "2",
                             "--requests", "4", "--model", "no-such-model"});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  json report = json::parse(r.output.substr(r.output.find('{')), nullptr, false);
  ASSERT_TRUE(report.is_object()) << r.output;
  EXPECT_EQ(report["ok"], 0);
  EXPECT_EQ(report["failed"], 4);
  ASSERT_EQ(report["errors"].size(), 1u) << report.dump();
  EXPECT_EQ(report["errors"].begin().key().rfind("HTTP 404", 0), 0u) << report.dump();
}

TEST_F(LoadtestTest, BadMixFileAndUnreachableServerAreClearErrors) {
  std::ofstream(dir_ / "bad.jsonl") << R"({"request": {"prompt": "a"}})"
                                    << "\n"
                                    << R"({"weight": "heavy", "request": {}})"
                                    << "\n";
  CommandResult bad = RunKiln({"loadtest", "--server", server_->url(), "--concurrency", "1",
                               "--requests", "1", "--mix", (dir_ / "bad.jsonl").string()});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.output.find("mix line 2: weight must be"), std::string::npos) << bad.output;

  CommandResult down =
      RunKiln({"loadtest", "--server", "http://127.0.0.1:" + std::to_string(FreePort()),
               "--concurrency", "1", "--requests", "1"});
  EXPECT_EQ(down.exit_code, 2);
  EXPECT_NE(down.output.find("cannot reach http://127.0.0.1:"), std::string::npos) << down.output;
  EXPECT_NE(down.output.find("Connection refused"), std::string::npos) << down.output;

  CommandResult both = RunKiln({"loadtest", "--server", server_->url(), "--concurrency", "1",
                                "--rate", "5", "--requests", "1"});
  EXPECT_EQ(both.exit_code, 2);
  EXPECT_NE(both.output.find("give one of --concurrency"), std::string::npos) << both.output;
}

}  // namespace
}  // namespace kiln::testing
