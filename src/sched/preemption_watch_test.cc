#include "sched/preemption_watch.h"

#include <atomic>

#include "gtest/gtest.h"
#include "http/router.h"
#include "http/server.h"

namespace kiln::sched {
namespace {

http::Response Text(int status, std::string body) {
  http::Response r;
  r.status = status;
  r.content_type = "text/plain";
  r.body = std::move(body);
  return r;
}

// A stand-in for the GCE metadata server on loopback: answers FALSE until told otherwise,
// and only to requests that carry "Metadata-Flavor: Google", as the real one does.
class FakeMetadata {
 public:
  FakeMetadata() {
    router_.Add("GET", "/computeMetadata/v1/instance/preempted",
                [this](const http::Request& r, const http::PathParams&) {
                  {
                    absl::MutexLock lock(&mu_);
                    ++polls_;
                  }
                  auto flavor = r.headers.find("metadata-flavor");
                  if (flavor == r.headers.end() || flavor->second != "Google") {
                    return Text(403, "missing Metadata-Flavor");
                  }
                  if (failing_) return Text(503, "down");
                  return Text(200, preempted_ ? "TRUE" : "FALSE");
                });
    http::ServerOptions options;
    options.port = 0;
    server_ = std::move(*http::Server::Start(options, router_));
  }
  std::string url() const {
    return "http://127.0.0.1:" + std::to_string(server_->port()) +
           "/computeMetadata/v1/instance/preempted";
  }
  int polls() {
    absl::MutexLock lock(&mu_);
    return polls_;
  }
  // Waits until it has answered `n` polls in all.
  bool AwaitPolls(int n) {
    absl::MutexLock lock(&mu_);
    auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return polls_ >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), absl::Seconds(30));
  }

  absl::Mutex mu_;
  int polls_ ABSL_GUARDED_BY(mu_) = 0;
  std::atomic<bool> preempted_{false};
  std::atomic<bool> failing_{false};

 private:
  http::Router router_{Text};
  std::unique_ptr<http::Server> server_;
};

TEST(PreemptionWatch, CallsBackOnceWhenTheMetadataServerSaysTrue) {
  FakeMetadata metadata;
  absl::Mutex mu;
  int calls = 0;
  PreemptionWatchOptions options;
  options.url = metadata.url();
  options.interval = std::chrono::milliseconds(20);
  options.on_preempted = [&] {
    absl::MutexLock lock(&mu);
    ++calls;
  };
  metadata.failing_ = true;
  PreemptionWatch watch(options);
  // A failing server first (retried, not taken as TRUE), then FALSE answers.
  ASSERT_TRUE(metadata.AwaitPolls(3));
  metadata.failing_ = false;
  ASSERT_TRUE(metadata.AwaitPolls(5));
  EXPECT_FALSE(watch.preempted());
  metadata.preempted_ = true;
  {
    absl::MutexLock lock(&mu);
    ASSERT_TRUE(mu.AwaitWithTimeout(absl::Condition(
                                        +[](int* c) { return *c > 0; }, &calls),
                                    absl::Seconds(30)));
  }
  EXPECT_TRUE(watch.preempted());
  const int polls = metadata.polls();
  watch.Stop();
  absl::MutexLock lock(&mu);
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(metadata.polls(), polls) << "it went on polling after it was preempted";
}

TEST(PreemptionWatch, AnUnreachableUrlNeverCountsAsPreempted) {
  PreemptionWatchOptions options;
  options.url = "http://127.0.0.1:1/computeMetadata/v1/instance/preempted";
  options.interval = std::chrono::milliseconds(10);
  bool called = false;
  options.on_preempted = [&] { called = true; };
  PreemptionWatch watch(options);
  watch.Stop();  // stops promptly even while polling a dead URL
  EXPECT_FALSE(watch.preempted());
  EXPECT_FALSE(called);
}

}  // namespace
}  // namespace kiln::sched
