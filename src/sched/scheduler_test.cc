// The scheduler on the randomly initialised test models: step-level batching, cancellation,
// admission, and what batching with different neighbours does to a seeded image.
#include "sched/scheduler.h"

#include <cstdlib>
#include <filesystem>

#include "absl/synchronization/notification.h"
#include "core/status_util.h"
#include "gtest/gtest.h"

namespace kiln::sched {
namespace {

std::filesystem::path TestModels() {
  const char* dir = std::getenv("KILN_TEST_MODELS");
  return dir ? dir : std::filesystem::path(KILN_BINARY_DIR) / "test-models";
}

struct Outcome {
  absl::Notification done;
  absl::Notification progressed;
  absl::StatusOr<std::vector<engine::Image>> images = absl::UnknownError("not run");
};

class SchedulerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto repo = engine::ModelRepository::Load(TestModels());
    ASSERT_TRUE(repo.ok()) << repo.status();
    repo_ = std::move(*repo).release();
  }
  static void TearDownTestSuite() {
    delete repo_;
    repo_ = nullptr;
  }

  std::unique_ptr<Scheduler> Make(SchedulerOptions o = {}) {
    auto s = std::make_unique<Scheduler>(repo_, nullptr, nullptr, o);
    EXPECT_TRUE(s->Start().ok());
    return s;
  }

  static engine::GenerationRequest Request(int steps, uint64_t seed,
                                           const char* sampler = "euler") {
    engine::Pipeline* p = *repo_->FindPipeline("test-pixel");
    engine::GenerationRequest r;
    r.prompt = "a red circle";
    r.steps = steps;
    r.guidance_scale = p->spec().defaults.guidance_scale;
    r.sampler = *engine::ParseSamplerName(sampler);
    r.size = p->spec().sizes.front();
    r.seed = seed;
    return r;
  }

  // Submits a sync item; `order` records the ids in completion order. With `hold`, the item's
  // first progress (on the replica, between two steps) waits for it: what the test submits before
  // it notifies `hold` is pending at the next step, however slowly the test thread runs.
  std::shared_ptr<Outcome> Submit(Scheduler& s, const std::string& id, engine::GenerationRequest r,
                                  std::vector<std::string>* order = nullptr,
                                  absl::Status* admission = nullptr, int64_t deadline = 0,
                                  const absl::Notification* hold = nullptr) {
    auto out = std::make_shared<Outcome>();
    auto item = std::make_shared<WorkItem>();
    item->id = id;
    item->model = "test-pixel";
    item->cost = *s.EstimateCost("test-pixel", r);
    item->request = std::move(r);
    // on_done runs on the replica, in completion order: on the two-thread finisher pool two items
    // finishing close together could record their order swapped.
    item->inline_done = true;
    item->on_progress = [out, hold](WorkItem&, const engine::Image*) {
      if (out->progressed.HasBeenNotified()) return;
      out->progressed.Notify();
      if (hold) hold->WaitForNotification();
    };
    item->on_done = [this, out, order](WorkItem& w,
                                       absl::StatusOr<std::vector<engine::Image>> images) {
      {
        absl::MutexLock lock(&mu_);
        if (order) order->push_back(w.id);
      }
      out->images = std::move(images);
      out->done.Notify();
    };
    absl::Status st = s.SubmitSync(item, deadline);
    if (admission) *admission = st;
    if (!st.ok()) out->done.Notify();
    return out;
  }

  static engine::ModelRepository* repo_;
  absl::Mutex mu_;
};
engine::ModelRepository* SchedulerTest::repo_ = nullptr;

TEST_F(SchedulerTest, AShortRequestOvertakesALongOneWithStepLevelBatching) {
  auto s = Make();
  std::vector<std::string> order;
  absl::Notification hold;
  auto long_one = Submit(*s, "long", Request(120, 1), &order, nullptr, 0, &hold);
  long_one->progressed.WaitForNotification();
  auto short_one = Submit(*s, "short", Request(3, 2), &order);
  hold.Notify();
  short_one->done.WaitForNotification();
  long_one->done.WaitForNotification();
  ASSERT_TRUE(long_one->images.ok()) << long_one->images.status();
  ASSERT_TRUE(short_one->images.ok());
  EXPECT_EQ(order, (std::vector<std::string>{"short", "long"}));
}

TEST_F(SchedulerTest, RequestLevelBatchingMakesTheShortRequestWait) {
  SchedulerOptions o;
  o.request_level = true;
  auto s = Make(o);
  std::vector<std::string> order;
  auto long_one = Submit(*s, "long", Request(40, 1), &order);
  long_one->progressed.WaitForNotification();
  auto short_one = Submit(*s, "short", Request(3, 2), &order);
  short_one->done.WaitForNotification();
  long_one->done.WaitForNotification();
  EXPECT_EQ(order, (std::vector<std::string>{"long", "short"}));
}

TEST_F(SchedulerTest, ALargeRequestIsNotStarvedBySmallerOnesBehindIt) {
  SchedulerOptions o;
  o.max_batch_rows = 4;
  auto s = Make(o);
  std::vector<std::string> order;
  absl::Notification hold;
  auto running = Submit(*s, "running", Request(60, 1), &order, nullptr, 0, &hold);  // 2 rows of 4
  running->progressed.WaitForNotification();
  auto big_request = Request(3, 2);
  big_request.n = 3;  // 6 rows: more than the batch holds, runs alone once the replica is idle
  auto big = Submit(*s, "big", big_request, &order);
  auto small = Submit(*s, "small", Request(3, 3), &order);  // 2 rows: would fit beside "running"
  hold.Notify();
  small->done.WaitForNotification();
  big->done.WaitForNotification();
  running->done.WaitForNotification();
  ASSERT_TRUE(big->images.ok()) << big->images.status();
  EXPECT_EQ(order, (std::vector<std::string>{"running", "big", "small"}));
}

TEST_F(SchedulerTest, CancelStopsARunningRequestAtAStepBoundary) {
  auto s = Make();
  auto r = Request(150, 3);
  r.n = 4;
  auto out = Submit(*s, "victim", r);
  out->progressed.WaitForNotification();
  EXPECT_TRUE(s->Cancel("victim"));
  out->done.WaitForNotification();
  EXPECT_TRUE(absl::IsCancelled(out->images.status())) << out->images.status();
  EXPECT_FALSE(s->Cancel("victim-unknown"));
}

TEST_F(SchedulerTest, AdmissionRejectsUnreachableDeadlinesAndFullQueues) {
  SchedulerOptions o;
  o.max_queued_sync = 1;
  auto s = Make(o);
  auto full = Request(150, 1);
  full.n = 4;  // 8 rows: the whole batch, so nothing joins it and what comes next waits
  auto blocker = Submit(*s, "blocker", full);
  blocker->progressed.WaitForNotification();
  absl::Status st;
  // Already past: no wait can meet it.
  Submit(*s, "late", Request(10, 1), nullptr, &st, /*deadline=*/1);
  EXPECT_TRUE(absl::IsResourceExhausted(st)) << st;
  EXPECT_EQ(FieldOf(st), "deadline_ms");
  EXPECT_TRUE(RetryAfterOf(st).has_value());
  auto waiting = Submit(*s, "waiting", Request(150, 2), nullptr, &st);
  EXPECT_TRUE(st.ok()) << st;
  Submit(*s, "overflow", Request(5, 3), nullptr, &st);
  EXPECT_TRUE(absl::IsResourceExhausted(st)) << st;
  s->Cancel("blocker");
  s->Cancel("waiting");
  blocker->done.WaitForNotification();
  waiting->done.WaitForNotification();
}

// An idle replica polls for work before it sleeps. With a poll window far longer than any test,
// new work and the stop must still end the poll (a missed wake-up would hang here).
TEST_F(SchedulerTest, AnIdleReplicaPollingForWorkStillSeesNewWorkAndTheStop) {
  SchedulerOptions o;
  o.idle_spin = std::chrono::hours(1);
  auto s = Make(o);
  for (int i = 0; i < 3; ++i) {
    auto out = Submit(*s, "r" + std::to_string(i), Request(2, i));
    out->done.WaitForNotification();
    EXPECT_TRUE(out->images.ok()) << out->images.status();
  }
  s->Stop(std::chrono::seconds(0));
}

// Batching a seeded request with different neighbours (other seeds, samplers, step counts)
// changes the denoiser's batch shape; on the CPU this can move results by float rounding.
// This measures that noise against the same request run alone, and bounds it.
TEST_F(SchedulerTest, BatchedImagesMatchSoloImagesWithinFloatNoise) {
  engine::Pipeline* p = *repo_->FindPipeline("test-pixel");
  const auto target = Request(20, 42, "euler_a");
  auto solo = p->Generate(target);
  ASSERT_TRUE(solo.ok());
  auto s = Make();
  std::vector<std::shared_ptr<Outcome>> neighbours;
  auto blocker = Submit(*s, "n0", Request(30, 7, "dpmpp_2m"));
  blocker->progressed.WaitForNotification();  // the target joins a running batch
  auto t = Submit(*s, "target", target);
  for (int i = 1; i < 4; ++i) {
    neighbours.push_back(Submit(*s, "n" + std::to_string(i), Request(5 + 7 * i, 100 + i, "ddim")));
  }
  t->done.WaitForNotification();
  ASSERT_TRUE(t->images.ok());
  const auto& a = (*solo)[0].rgb;
  const auto& b = (*t->images)[0].rgb;
  ASSERT_EQ(a.size(), b.size());
  double max_diff = 0, sum = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = std::abs(double(a[i]) - double(b[i]));
    max_diff = std::max(max_diff, d);
    sum += d;
  }
  const double mean = sum / a.size();
  std::printf("batched vs solo: max %.0f/255, mean %.4f/255\n", max_diff, mean);
  EXPECT_LE(max_diff, 2.0);
  EXPECT_LE(mean, 0.05);
  blocker->done.WaitForNotification();
  for (auto& n : neighbours) n->done.WaitForNotification();
}

}  // namespace
}  // namespace kiln::sched
