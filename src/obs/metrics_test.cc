#include "obs/metrics.h"

#include "gtest/gtest.h"

namespace kiln::obs {
namespace {

TEST(Metrics, RendersCountersGaugesAndHistogramsInTheTextFormat) {
  Registry r;
  auto& requests = r.AddCounter("t_requests_total", "Requests.", {"route", "code"});
  auto& depth = r.AddGauge("t_depth", "Depth.");
  auto& latency = r.AddHistogram("t_latency_seconds", "Latency.", {"route"}, {0.1, 1});
  requests.With({"/a", "200"}).Inc();
  requests.With({"/a", "200"}).Inc(2);
  requests.With({"/b", "404"}).Inc();
  depth.With({}).Set(7.5);
  latency.With({"/a"}).Observe(0.05);
  latency.With({"/a"}).Observe(0.5);
  latency.With({"/a"}).Observe(5);
  r.AddCollector([&] { depth.With({}).Add(1); });
  EXPECT_EQ(r.Render(),
            "# HELP t_requests_total Requests.\n"
            "# TYPE t_requests_total counter\n"
            "t_requests_total{route=\"/a\",code=\"200\"} 3\n"
            "t_requests_total{route=\"/b\",code=\"404\"} 1\n"
            "# HELP t_depth Depth.\n"
            "# TYPE t_depth gauge\n"
            "t_depth 8.5\n"
            "# HELP t_latency_seconds Latency.\n"
            "# TYPE t_latency_seconds histogram\n"
            "t_latency_seconds_bucket{route=\"/a\",le=\"0.1\"} 1\n"
            "t_latency_seconds_bucket{route=\"/a\",le=\"1\"} 2\n"
            "t_latency_seconds_bucket{route=\"/a\",le=\"+Inf\"} 3\n"
            "t_latency_seconds_sum{route=\"/a\"} 5.55\n"
            "t_latency_seconds_count{route=\"/a\"} 3\n");
}

TEST(Metrics, EscapesLabelValuesAndHelp) {
  Registry r;
  r.AddGauge("t_g", "Line one\nback\\slash", {"v"}).With({"a\"b\\c\nd"}).Set(1);
  EXPECT_EQ(r.Render(),
            "# HELP t_g Line one\\nback\\\\slash\n# TYPE t_g gauge\n"
            "t_g{v=\"a\\\"b\\\\c\\nd\"} 1\n");
}

TEST(Metrics, FormatsValues) {
  EXPECT_EQ(FormatValue(3), "3");
  EXPECT_EQ(FormatValue(-2), "-2");
  EXPECT_EQ(FormatValue(0.005), "0.005");
  EXPECT_EQ(FormatValue(1.0 / 0.0), "+Inf");
  EXPECT_EQ(FormatValue(0.0 / 0.0), "NaN");
  EXPECT_EQ(FormatValue(1e20), "1e+20");
}

TEST(Metrics, BucketBoundsAreInclusive) {
  Histogram h({1, 2});
  h.Observe(1);
  h.Observe(2);
  h.Observe(2.5);
  EXPECT_EQ(h.Read().cumulative, (std::vector<uint64_t>{1, 2, 3}));
}

}  // namespace
}  // namespace kiln::obs
