#include "loadtest/loadtest.h"

#include "gtest/gtest.h"

namespace kiln::loadtest {
namespace {

TEST(ParseMix, ReadsWeightsModesAndSkipsCommentsAndBlankLines) {
  auto mix = ParseMix(
      "# a comment\n"
      "{\"weight\": 3, \"request\": {\"prompt\": \"a\"}}\n"
      "\n"
      "{\"mode\": \"job\", \"request\": {\"prompt\": \"b\", \"steps\": 4}}\r\n",
      Mode::kSync);
  ASSERT_TRUE(mix.ok()) << mix.status();
  ASSERT_EQ(mix->size(), 2u);
  EXPECT_EQ((*mix)[0].weight, 3);
  EXPECT_EQ((*mix)[0].mode, Mode::kSync);
  EXPECT_EQ((*mix)[1].weight, 1);
  EXPECT_EQ((*mix)[1].mode, Mode::kJob);
  EXPECT_EQ((*mix)[1].request["steps"], 4);
}

TEST(ParseMix, ErrorsNameTheLine) {
  struct Case {
    std::string text, message;
  } cases[] = {
      {"{\"request\": {}}\nnot json", "mix line 2: not a JSON object"},
      {"{\"weight\": 0, \"request\": {}}", "mix line 1: weight must be"},
      {"{\"weight\": \"2\", \"request\": {}}", "mix line 1: weight must be"},
      {"{\"mode\": \"async\", \"request\": {}}", "mix line 1: mode must be"},
      {"{\"request\": \"a\"}", "mix line 1: request must be an object"},
      {"{\"reqest\": {}}", "mix line 1: unknown field 'reqest'"},
      {"# only a comment\n", "the mix has no templates"},
  };
  for (const Case& c : cases) {
    auto mix = ParseMix(c.text, Mode::kSync);
    ASSERT_FALSE(mix.ok()) << c.text;
    EXPECT_EQ(std::string(mix.status().message()).rfind(c.message, 0), 0u)
        << c.text << " -> " << mix.status();
  }
}

TEST(Report, PercentilesJsonAndText) {
  Report r;
  r.sent = 5;
  r.ok = 4;
  r.seconds = 2;
  r.images = 4;
  r.latencies = {0.1, 0.2, 0.3, 0.4};
  r.errors["HTTP 429 rate_limit_exceeded"] = 1;
  EXPECT_DOUBLE_EQ(r.Percentile(50), 0.2);
  EXPECT_DOUBLE_EQ(r.Percentile(99), 0.4);
  EXPECT_DOUBLE_EQ(r.Throughput(), 2);
  const nlohmann::json j = r.ToJson();
  EXPECT_EQ(j["failed"], 1);
  EXPECT_EQ(j["errors"]["HTTP 429 rate_limit_exceeded"], 1);
  EXPECT_DOUBLE_EQ(j["latency_seconds"]["mean"].get<double>(), 0.25);
  const std::string text = r.ToText();
  EXPECT_NE(text.find("requests  sent 5, ok 4, failed 1"), std::string::npos) << text;
  EXPECT_NE(text.find("1  HTTP 429 rate_limit_exceeded"), std::string::npos) << text;
  EXPECT_NE(text.find("histogram"), std::string::npos) << text;
}

TEST(LoadtestRun, RejectsContradictoryOptions) {
  Options o;
  o.mix.push_back({});
  o.requests = 1;
  EXPECT_EQ(loadtest::Run(o).status().message(),
            "give one of --concurrency (closed loop) or --rate (open loop)");
  o.concurrency = 1;
  o.duration_seconds = 1;
  EXPECT_EQ(loadtest::Run(o).status().message(), "give one of --requests or --duration");
  o.duration_seconds = 0;
  o.server = "https://example.com";
  EXPECT_TRUE(absl::IsInvalidArgument(loadtest::Run(o).status()));
}

}  // namespace
}  // namespace kiln::loadtest
