// The step loop (step-level continuous batching) against a fake engine: no model files, every
// denoiser call recorded. Everything the tests change mid-run happens inside the fake's Step, on
// the replica thread, so each run is deterministic.
#include "sched/replica.h"

#include <gtest/gtest.h>

#include <deque>
#include <functional>
#include <map>

#include "absl/synchronization/mutex.h"

namespace kiln::sched {
namespace {

// A generation that only counts its steps.
class FakeGeneration final : public engine::Generation {
 public:
  FakeGeneration(std::string id, int steps, int rows)
      : id(std::move(id)), steps(steps), rows_(rows) {}
  int step() const override { return taken; }
  int num_steps() const override { return steps; }
  bool done() const override { return taken >= steps; }
  int rows() const override { return rows_; }
  std::string id;
  int steps;
  int taken = 0;

 private:
  int rows_;
};

// Records every denoiser call as the ids of the generations in it; `on_step(call)` runs inside
// the call (to add work or cancel, deterministically between two steps).
class FakeEngine final : public engine::Engine {
 public:
  FakeEngine() { spec_.name = "fake"; }
  const engine::ModelSpec& spec() const override { return spec_; }
  absl::StatusOr<std::unique_ptr<engine::Generation>> Start(
      const engine::GenerationRequest& r) override {
    const int rows = r.n * (r.guidance_scale == 1.0 ? 1 : 2);
    return std::make_unique<FakeGeneration>(r.prompt, r.steps, rows);
  }
  absl::Status Step(std::span<engine::Generation* const> batch) override {
    std::vector<std::string> ids;
    int rows = 0;
    for (engine::Generation* g : batch) {
      auto* f = static_cast<FakeGeneration*>(g);
      if (f->done()) return absl::InternalError("stepped a finished generation");
      ++f->taken;
      ids.push_back(f->id);
      rows += f->rows();
    }
    calls.push_back(ids);
    call_rows.push_back(rows);
    if (on_step) on_step(static_cast<int>(calls.size()));
    return absl::OkStatus();
  }
  absl::StatusOr<std::vector<engine::Image>> Finish(engine::Generation& g) override {
    if (!g.done()) return absl::InternalError("finished early");
    return std::vector<engine::Image>{engine::Image{1, 1, {0, 0, 0}}};
  }
  absl::StatusOr<engine::Image> Preview(const engine::Generation&, int) override {
    return absl::UnimplementedError("no previews");
  }
  absl::StatusOr<std::string> Checkpoint(const engine::Generation& g) override {
    return std::to_string(g.step());
  }
  absl::StatusOr<std::unique_ptr<engine::Generation>> Resume(const engine::GenerationRequest& r,
                                                             std::string_view checkpoint) override {
    auto g = std::make_unique<FakeGeneration>(r.prompt, r.steps, 1);
    g->taken = std::stoi(std::string(checkpoint));
    return g;
  }

  std::vector<std::vector<std::string>> calls;  // replica thread only, read after Stop
  std::vector<int> call_rows;
  std::function<void(int)> on_step;

 private:
  engine::ModelSpec spec_;
};

// Items in FIFO order; Next blocks while idle until work arrives or Close().
class FakeSource final : public WorkSource {
 public:
  WorkItemPtr Add(const std::string& id, int steps, double guidance = 7.5) {
    auto item = std::make_shared<WorkItem>();
    item->id = id;
    item->request.prompt = id;
    item->request.steps = steps;
    item->request.guidance_scale = guidance;
    item->rows = guidance == 1.0 ? 1 : 2;
    absl::MutexLock lock(&mu_);
    waiting_.push_back(item);
    return item;
  }
  WorkItemPtr Next(int free_rows, bool idle) override {
    absl::MutexLock lock(&mu_);
    if (idle) mu_.Await(absl::Condition(this, &FakeSource::HasWorkOrClosed));
    for (auto it = waiting_.begin(); it != waiting_.end(); ++it) {
      if ((*it)->rows <= free_rows || idle) {
        WorkItemPtr item = *it;
        waiting_.erase(it);
        return item;
      }
      break;  // only the head may start
    }
    return nullptr;
  }
  void Finished(WorkItemPtr item, absl::StatusOr<std::vector<engine::Image>> result) override {
    absl::MutexLock lock(&mu_);
    finished_.push_back(item->id);
    outcomes_[item->id] = result.status();
  }
  void Progress(WorkItem&, const engine::Generation&, engine::Engine&) override {}

  void Close() {
    absl::MutexLock lock(&mu_);
    closed_ = true;
  }
  // Waits until `n` items have finished (bounded), then returns their ids in finishing order.
  std::vector<std::string> WaitFinished(size_t n) {
    absl::MutexLock lock(&mu_);
    want_ = n;
    mu_.AwaitWithTimeout(absl::Condition(this, &FakeSource::EnoughFinished), absl::Seconds(30));
    return finished_;
  }
  absl::Status Outcome(const std::string& id) {
    absl::MutexLock lock(&mu_);
    return outcomes_[id];
  }

 private:
  bool HasWorkOrClosed() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return closed_ || !waiting_.empty();
  }
  bool EnoughFinished() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return finished_.size() >= want_;
  }
  absl::Mutex mu_;
  size_t want_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<WorkItemPtr> waiting_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> finished_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, absl::Status> outcomes_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

class ReplicaTest : public ::testing::Test {
 protected:
  void Run(int max_rows, size_t expect_finished) {
    ReplicaOptions options;
    options.max_rows = max_rows;
    Replica replica(0, &engine_, &source_, &cost_, options);
    replica.Start();
    finished_ = source_.WaitFinished(expect_finished);
    source_.Close();
    replica.Stop(std::chrono::milliseconds(0));
  }
  FakeEngine engine_;
  FakeSource source_;
  StepCostModel cost_;
  std::vector<std::string> finished_;
};

TEST_F(ReplicaTest, RequestsWithDifferentStepCountsShareStepsAndTheShortOneLeavesFirst) {
  source_.Add("long", 6);
  source_.Add("short", 2);
  Run(/*max_rows=*/8, 2);
  ASSERT_EQ(engine_.calls.size(), 6u);
  EXPECT_EQ(engine_.calls[0], (std::vector<std::string>{"long", "short"}));
  EXPECT_EQ(engine_.calls[1], (std::vector<std::string>{"long", "short"}));
  for (size_t i = 2; i < 6; ++i) EXPECT_EQ(engine_.calls[i], std::vector<std::string>{"long"});
  EXPECT_EQ(finished_, (std::vector<std::string>{"short", "long"}));
}

TEST_F(ReplicaTest, ArrivalsJoinTheRunningBatchAtTheNextStepBoundary) {
  source_.Add("first", 4);
  engine_.on_step = [&](int call) {
    if (call == 2) source_.Add("late", 3);
  };
  Run(8, 2);
  ASSERT_EQ(engine_.calls.size(), 5u);
  EXPECT_EQ(engine_.calls[1], std::vector<std::string>{"first"});
  EXPECT_EQ(engine_.calls[2], (std::vector<std::string>{"first", "late"}));
  EXPECT_EQ(engine_.calls[3], (std::vector<std::string>{"first", "late"}));
  EXPECT_EQ(engine_.calls[4], std::vector<std::string>{"late"});
}

TEST_F(ReplicaTest, RowsNeverExceedTheBatchAndWaitersStartAsRowsFreeUp) {
  // Guidance: 2 rows each; room for two at a time.
  for (int i = 0; i < 5; ++i) source_.Add("r" + std::to_string(i), 2 + i % 2);
  Run(/*max_rows=*/4, 5);
  EXPECT_EQ(finished_.size(), 5u);
  for (int rows : engine_.call_rows) EXPECT_LE(rows, 4);
  // The second pair started when the first pair left, not after everything ran.
  EXPECT_LT(engine_.calls.size(), 2u + 3 + 2 + 3 + 2);
}

TEST_F(ReplicaTest, ARequestLargerThanTheBatchRunsAloneWhenTheReplicaIsIdle) {
  auto big = source_.Add("big", 2);
  big->rows = 10;  // more rows than the batch holds
  Run(/*max_rows=*/4, 1);
  EXPECT_EQ(finished_, std::vector<std::string>{"big"});
  EXPECT_EQ(engine_.calls.size(), 2u);
}

TEST_F(ReplicaTest, ACancelledRequestLeavesAtTheNextStepBoundary) {
  auto doomed = source_.Add("doomed", 10);
  source_.Add("kept", 3);
  engine_.on_step = [&](int call) {
    if (call == 1) doomed->cancel = true;
  };
  Run(8, 2);
  EXPECT_EQ(source_.Outcome("doomed").code(), absl::StatusCode::kCancelled);
  EXPECT_TRUE(source_.Outcome("kept").ok());
  ASSERT_EQ(engine_.calls.size(), 3u);
  EXPECT_EQ(engine_.calls[1], std::vector<std::string>{"kept"});
}

}  // namespace
}  // namespace kiln::sched
