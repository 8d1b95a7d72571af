// Traces over OTLP/HTTP (JSON) to a small receiver started here: the caller's traceparent is
// continued, sync and job requests produce the documented spans with the right parents (a job's
// trace crosses the durable queue), and a malformed traceparent is ignored.
#include <condition_variable>
#include <mutex>
#include <set>

#include "gtest/gtest.h"
#include "http/server.h"
#include "nlohmann/json.hpp"
#include "tests/integration/server_process.h"

namespace kiln::testing {
namespace {

using nlohmann::json;

// An OTLP/HTTP receiver: POST /v1/traces with JSON bodies; keeps every span.
class OtlpReceiver {
 public:
  OtlpReceiver()
      : router_([](int s, const std::string& m) {
          http::Response r;
          r.status = s;
          r.body = m;
          return r;
        }) {
    router_.Add("POST", "/v1/traces", [this](const http::Request& req, const http::PathParams&) {
      json body = json::parse(req.body, nullptr, false);
      std::lock_guard<std::mutex> lock(mu_);
      ++requests_;
      if (req.MediaType() != "application/json" || !body.is_object()) {
        ++bad_;
        return http::Response::Json(400, "{}");
      }
      for (const json& rs : body["resourceSpans"]) {
        service_ = rs["resource"]["attributes"][0]["value"]["stringValue"];
        for (const json& ss : rs["scopeSpans"]) {
          for (const json& s : ss["spans"]) spans_.push_back(s);
        }
      }
      return http::Response::Json(200, "{}");
    });
    http::ServerOptions o;
    o.port = 0;
    o.handler_threads = 2;
    server_ = std::move(*http::Server::Start(o, router_));
  }
  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(server_->port()); }

  std::vector<json> SpansOf(const std::string& trace_id) {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<json> out;
    for (const json& s : spans_) {
      if (s["traceId"] == trace_id) out.push_back(s);
    }
    return out;
  }
  std::vector<json> All() {
    std::lock_guard<std::mutex> lock(mu_);
    return spans_;
  }
  // Waits until the trace has a span of every name in `names`.
  std::vector<json> WaitForTrace(const std::string& trace_id, const std::set<std::string>& names) {
    std::vector<json> spans;
    WaitUntil(std::chrono::seconds(60), [&] {
      spans = SpansOf(trace_id);
      std::set<std::string> seen;
      for (const json& s : spans) seen.insert(s["name"].get<std::string>());
      return std::includes(seen.begin(), seen.end(), names.begin(), names.end());
    });
    return spans;
  }
  std::string service() {
    std::lock_guard<std::mutex> lock(mu_);
    return service_;
  }
  int bad() {
    std::lock_guard<std::mutex> lock(mu_);
    return bad_;
  }

 private:
  http::Router router_;
  std::mutex mu_;
  std::vector<json> spans_;
  std::string service_;
  int requests_ = 0;
  int bad_ = 0;
  std::unique_ptr<http::Server> server_;
};

const json* Find(const std::vector<json>& spans, const std::string& name) {
  for (const json& s : spans) {
    if (s["name"] == name) return &s;
  }
  return nullptr;
}

json Attribute(const json& span, const std::string& key) {
  for (const json& a : span["attributes"]) {
    if (a["key"] == key) return a["value"];
  }
  return nullptr;
}

class TracingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<ServerProcess>(std::vector<std::string>{
        "--models", TestModelsDir(), "--otlp-endpoint", receiver_.endpoint()});
    ASSERT_TRUE(server_->started()) << server_->log();
  }
  std::string Url(const std::string& path) const { return server_->url() + path; }

  OtlpReceiver receiver_;
  std::unique_ptr<ServerProcess> server_;
};

TEST_F(TracingTest, SyncRequestContinuesTheCallersTrace) {
  const std::string trace = "4bf92f3577b34da6a3ce929d0e0e4736", caller = "00f067aa0ba902b7";
  HttpResult r = HttpRequest(
      "POST", Url("/v1/images/generations"),
      R"({"prompt": "a red circle", "model": "test-pixel", "steps": 3})",
      {"Content-Type: application/json", "traceparent: 00-" + trace + "-" + caller + "-01"});
  ASSERT_EQ(r.status, 200) << r.body;
  const std::set<std::string> names = {"POST /v1/images/generations",
                                       "queue.wait",
                                       "text.encode",
                                       "denoise",
                                       "decode",
                                       "png.encode"};
  std::vector<json> spans = receiver_.WaitForTrace(trace, names);
  const json* root = Find(spans, "POST /v1/images/generations");
  ASSERT_NE(root, nullptr) << json(spans).dump();
  EXPECT_EQ((*root)["parentSpanId"], caller);
  EXPECT_EQ((*root)["kind"], 2);
  EXPECT_EQ(Attribute(*root, "http.response.status_code")["intValue"], "200");
  EXPECT_EQ(Attribute(*root, "http.route")["stringValue"], "/v1/images/generations");
  for (const std::string& name : names) {
    const json* s = Find(spans, name);
    ASSERT_NE(s, nullptr) << name << " missing: " << json(spans).dump();
    EXPECT_EQ((*s)["spanId"].get<std::string>().size(), 16u);
    if (name != root->at("name")) {
      EXPECT_EQ((*s)["parentSpanId"], (*root)["spanId"]) << name;
    }
    EXPECT_LE(std::stoll((*s)["startTimeUnixNano"].get<std::string>()),
              std::stoll((*s)["endTimeUnixNano"].get<std::string>()))
        << name;
  }
  const json* denoise = Find(spans, "denoise");
  EXPECT_EQ(Attribute(*denoise, "kiln.steps")["intValue"], "3");
  EXPECT_EQ(Attribute(*denoise, "kiln.batch_rows.max")["intValue"], "2");  // one CFG pair
  EXPECT_EQ(receiver_.service(), "kiln");
  EXPECT_EQ(receiver_.bad(), 0);
  // The log line of the request carries the trace id.
  EXPECT_TRUE(server_->WaitForLog(trace, std::chrono::seconds(10))) << server_->log();
}

TEST_F(TracingTest, JobTraceCrossesTheQueue) {
  const std::string trace = "0af7651916cd43dd8448eb211c80319c", caller = "b7ad6b7169203331";
  HttpResult r = HttpRequest(
      "POST", Url("/v1/jobs"), R"({"prompt": "a blue square", "model": "test-latent", "steps": 2})",
      {"Content-Type: application/json", "traceparent: 00-" + trace + "-" + caller + "-01"});
  ASSERT_EQ(r.status, 202) << r.body;
  const std::set<std::string> names = {"POST /v1/jobs", "queue.wait", "text.encode", "denoise",
                                       "decode",        "png.encode", "store.write"};
  std::vector<json> spans = receiver_.WaitForTrace(trace, names);
  const json* root = Find(spans, "POST /v1/jobs");
  ASSERT_NE(root, nullptr) << json(spans).dump();
  EXPECT_EQ((*root)["parentSpanId"], caller);
  for (const std::string& name : names) {
    const json* s = Find(spans, name);
    ASSERT_NE(s, nullptr) << name << " missing: " << json(spans).dump();
    if (name != "POST /v1/jobs") {
      EXPECT_EQ((*s)["parentSpanId"], (*root)["spanId"]) << name;
    }
  }
  EXPECT_EQ(
      Attribute(*Find(spans, "store.write"), "kiln.key")["stringValue"].get<std::string>().rfind(
          "jobs/", 0),
      0u);
}

TEST_F(TracingTest, MalformedTraceparentIsIgnored) {
  const std::vector<std::string> bad = {
      "garbage",
      "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  // all-zero trace id
      "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  // upper case
      "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  // version ff
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
  };
  for (const std::string& header : bad) {
    HttpResult r = HttpRequest("GET", Url("/v1/models"), "", {"traceparent: " + header});
    EXPECT_EQ(r.status, 200) << header;
  }
  // Each got a fresh root span: no parent, a trace id of its own.
  std::vector<json> roots;
  ASSERT_TRUE(WaitUntil(std::chrono::seconds(60), [&] {
    roots.clear();
    for (const json& s : receiver_.All()) {
      if (s["name"] == "GET /v1/models") roots.push_back(s);
    }
    return roots.size() >= bad.size();
  }));
  std::set<std::string> traces;
  for (const json& s : roots) {
    EXPECT_FALSE(s.contains("parentSpanId")) << s.dump();
    traces.insert(s["traceId"].get<std::string>());
  }
  EXPECT_EQ(traces.size(), bad.size());
  EXPECT_EQ(traces.count("4bf92f3577b34da6a3ce929d0e0e4736"), 0u);
}

}  // namespace
}  // namespace kiln::testing
