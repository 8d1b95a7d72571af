// The S3 store against a real S3 API (moto_server, started here on loopback): the BlobStore
// contract, pagination, errors that say what is wrong, and `kiln serve --store s3://...` writing
// a job's results there.
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>

#include "gtest/gtest.h"
#include "http/client.h"
#include "nlohmann/json.hpp"
#include "store/blob_store.h"
#include "tests/integration/server_process.h"

namespace kiln::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

class S3StoreTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(fs::temp_directory_path() / ("kiln_s3_" + std::to_string(getpid())));
    fs::create_directories(*dir_);
    port_ = FreePort();
    moto_ = new ChildProcess({MotoServer(), "-H", "127.0.0.1", "-p", std::to_string(port_)},
                             (*dir_ / "moto.log").string());
    const bool up = WaitUntil(std::chrono::seconds(60), [] {
      auto r = http::Fetch({"GET", Endpoint() + "/", "", {}, std::chrono::seconds(2)});
      return r.ok() && r->status == 200;
    });
    ASSERT_TRUE(up) << "moto_server did not answer: " << ReadFile((*dir_ / "moto.log").string());
    auto made = http::Fetch({"PUT", Endpoint() + "/kiln-test", "", {}, std::chrono::seconds(10)});
    ASSERT_TRUE(made.ok() && made->status == 200) << (made.ok() ? made->body : "transport");
    setenv("AWS_ACCESS_KEY_ID", "testing", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "testing", 1);
    setenv("AWS_REGION", "us-east-1", 1);
  }
  static void TearDownTestSuite() {
    delete moto_;
    moto_ = nullptr;
    fs::remove_all(*dir_);
    delete dir_;
  }
  static std::string Endpoint() { return "http://127.0.0.1:" + std::to_string(port_); }
  static std::unique_ptr<store::BlobStore> Open(const std::string& path,
                                                const std::string& extra = "") {
    auto s = store::BlobStore::Open("s3://" + path + "?endpoint=" + Endpoint() + extra);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? std::move(*s) : nullptr;
  }

  static fs::path* dir_;
  static int port_;
  static ChildProcess* moto_;
};
fs::path* S3StoreTest::dir_ = nullptr;
int S3StoreTest::port_ = 0;
ChildProcess* S3StoreTest::moto_ = nullptr;

TEST_F(S3StoreTest, PutGetExistsDeleteAndListWithPages) {
  auto s = Open("kiln-test/contract/run1", "&page_size=2");
  ASSERT_NE(s, nullptr);
  std::string binary("\x89PNG\r\n\x1a\n\0\0\0\rIHDR", 16);
  binary += std::string(1 << 20, 'x');  // 1 MiB and some
  ASSERT_TRUE(s->Put("jobs/a/0.png", binary).ok());
  ASSERT_TRUE(s->Put("jobs/a/result.json", R"({"ok":true})").ok());
  ASSERT_TRUE(s->Put("jobs/b c+d/0.png", "spaces and plus").ok());
  ASSERT_TRUE(s->Put("images/x/0.png", "other prefix").ok());
  ASSERT_TRUE(s->Put("jobs/c/0.png", "c").ok());
  EXPECT_EQ(*s->Get("jobs/a/0.png"), binary);
  EXPECT_EQ(*s->Get("jobs/b c+d/0.png"), "spaces and plus");
  ASSERT_TRUE(s->Put("jobs/c/0.png", "c2").ok());  // overwrite
  EXPECT_EQ(*s->Get("jobs/c/0.png"), "c2");
  EXPECT_TRUE(*s->Exists("jobs/a/result.json"));
  EXPECT_FALSE(*s->Exists("jobs/none"));
  EXPECT_TRUE(absl::IsNotFound(s->Get("jobs/none").status()));

  auto listed = s->List("jobs/");  // three pages of two
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_EQ(*listed, (std::vector<std::string>{"jobs/a/0.png", "jobs/a/result.json",
                                               "jobs/b c+d/0.png", "jobs/c/0.png"}));
  EXPECT_EQ(s->List("jobs/", 3)->size(), 3u);
  EXPECT_EQ(*s->List("images/"), std::vector<std::string>{"images/x/0.png"});
  // Another prefix of the same bucket sees nothing of these.
  EXPECT_TRUE(Open("kiln-test/contract/run2")->List("")->empty());

  ASSERT_TRUE(s->Delete("jobs/a/0.png").ok());
  ASSERT_TRUE(s->Delete("jobs/a/0.png").ok());  // absent: not an error
  EXPECT_FALSE(*s->Exists("jobs/a/0.png"));
  EXPECT_TRUE(absl::IsInvalidArgument(s->Put("../escape", "x")));
  EXPECT_TRUE(absl::IsInvalidArgument(s->Get("a//b").status()));
}

// Two processes' views of one bucket: S3's If-Match / If-None-Match keep the writer that lost
// the race from overwriting the record of the one that won.
TEST_F(S3StoreTest, ConditionalWritesKeepTheWinnersRecord) {
  auto a = Open("kiln-test/conditional");
  auto b = Open("kiln-test/conditional");
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  auto created = a->PutIf("jobs/j/job.json", R"({"state":"queued"})", "");
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_TRUE(absl::IsFailedPrecondition(b->PutIf("jobs/j/job.json", "{}", "").status()));
  auto seen_a = a->GetVersioned("jobs/j/job.json");
  auto seen_b = b->GetVersioned("jobs/j/job.json");
  ASSERT_TRUE(seen_a.ok() && seen_b.ok());
  EXPECT_EQ(seen_a->version, *created);  // the ETag
  auto b_claims =
      b->PutIf("jobs/j/job.json", R"({"state":"running","worker":"B"})", seen_b->version);
  ASSERT_TRUE(b_claims.ok()) << b_claims.status();
  auto a_late =
      a->PutIf("jobs/j/job.json", R"({"state":"succeeded","worker":"A"})", seen_a->version);
  EXPECT_TRUE(absl::IsFailedPrecondition(a_late.status())) << a_late.status();
  EXPECT_EQ(*b->Get("jobs/j/job.json"), R"({"state":"running","worker":"B"})");
  EXPECT_TRUE(b->PutIf("jobs/j/job.json", R"({"state":"succeeded","worker":"B"})", *b_claims).ok());
  ASSERT_TRUE(a->Delete("jobs/j/job.json").ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(a->PutIf("jobs/j/job.json", "{}", *b_claims).status()));
}

TEST_F(S3StoreTest, ErrorsSayWhatIsWrong) {
  auto missing = Open("no-such-bucket");
  absl::Status put = missing->Put("k", "v");
  EXPECT_TRUE(absl::IsNotFound(put)) << put;
  EXPECT_NE(put.message().find("NoSuchBucket"), std::string_view::npos) << put;

  auto down = store::BlobStore::Open("s3://kiln-test?endpoint=http://127.0.0.1:" +
                                     std::to_string(FreePort()));
  ASSERT_TRUE(down.ok());
  absl::Status unreachable = (*down)->Put("k", "v");
  EXPECT_TRUE(absl::IsUnavailable(unreachable)) << unreachable;
  EXPECT_NE(unreachable.message().find("cannot be reached"), std::string_view::npos);

  for (const char* url :
       {"s3://", "s3://Bad_Bucket", "s3://b?endpoint=ftp://x", "s3://b?endpoint=http://h/path",
        "s3://b?colour=red", "s3://b?addressing=sideways", "s3://b/../x"}) {
    auto s = store::BlobStore::Open(url);
    EXPECT_TRUE(absl::IsInvalidArgument(s.status())) << url << " " << s.status();
  }
  const std::string saved = getenv("AWS_SECRET_ACCESS_KEY");
  unsetenv("AWS_SECRET_ACCESS_KEY");
  auto no_creds = store::BlobStore::Open("s3://kiln-test");
  setenv("AWS_SECRET_ACCESS_KEY", saved.c_str(), 1);
  EXPECT_TRUE(absl::IsFailedPrecondition(no_creds.status())) << no_creds.status();
  EXPECT_NE(no_creds.status().message().find("AWS_ACCESS_KEY_ID"), std::string_view::npos);
}

TEST_F(S3StoreTest, ServerWritesJobResultsToS3) {
  const std::string url = "s3://kiln-test/serve?endpoint=" + Endpoint();
  ServerProcess server({"--models", TestModelsDir(), "--store", url});
  ASSERT_TRUE(server.started()) << server.log();
  HttpResult created = HttpPost(server.url() + "/v1/jobs",
                                R"({"prompt": "a red circle", "model": "test-pixel", "steps": 2})",
                                "application/json");
  ASSERT_EQ(created.status, 202) << created.body;
  const std::string id = json::parse(created.body)["id"];
  json job;
  ASSERT_TRUE(WaitUntil(std::chrono::seconds(60), [&] {
    job = json::parse(HttpGet(server.url() + "/v1/jobs/" + id).body);
    return job["state"] == "succeeded";
  })) << job.dump();
  HttpResult png = HttpGet(job["data"][0]["url"]);
  ASSERT_EQ(png.status, 200);
  EXPECT_EQ(png.body.substr(1, 3), "PNG");
  auto s = Open("kiln-test/serve");
  EXPECT_EQ(*s->Get("jobs/" + id + "/0.png"), png.body);
  EXPECT_TRUE(*s->Exists("jobs/" + id + "/result.json"));
}

TEST_F(S3StoreTest, AStoreThatDoesNotAnswerMakesTheServerNotReadyUntilItDoes) {
  // Nothing listens on the store's port yet: the server starts anyway and says why it is not
  // ready, instead of exiting (and being restarted in a loop by its supervisor).
  const int port = FreePort();
  const std::string endpoint = "http://127.0.0.1:" + std::to_string(port);
  ServerProcess server(
      {"--models", TestModelsDir(), "--store", "s3://kiln-late?endpoint=" + endpoint});
  ASSERT_TRUE(server.started()) << server.log();
  EXPECT_EQ(HttpGet(server.url() + "/healthz").status, 200);
  HttpResult down = HttpGet(server.url() + "/readyz");
  EXPECT_EQ(down.status, 503);
  EXPECT_NE(json::parse(down.body)["store"]["error"].get<std::string>().find("cannot be reached"),
            std::string::npos)
      << down.body;

  // The endpoint comes up without the bucket: still not ready, and the reason changes.
  ChildProcess late({MotoServer(), "-H", "127.0.0.1", "-p", std::to_string(port)},
                    (*dir_ / "moto-late.log").string());
  HttpResult missing;
  ASSERT_TRUE(WaitUntil(std::chrono::seconds(60), [&] {
    missing = HttpGet(server.url() + "/readyz");
    return missing.body.find("NoSuchBucket") != std::string::npos;
  })) << missing.body;
  EXPECT_EQ(missing.status, 503);

  // With the bucket made, the server becomes ready by itself.
  auto made = http::Fetch({"PUT", endpoint + "/kiln-late", "", {}, std::chrono::seconds(10)});
  ASSERT_TRUE(made.ok() && made->status == 200);
  ASSERT_TRUE(WaitUntil(std::chrono::seconds(60),
                        [&] { return HttpGet(server.url() + "/readyz").status == 200; }));
  EXPECT_EQ(json::parse(HttpGet(server.url() + "/readyz").body)["store"], "ready");
}

}  // namespace
}  // namespace kiln::testing
