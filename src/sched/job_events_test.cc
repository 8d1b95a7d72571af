#include "sched/job_events.h"

#include "gtest/gtest.h"

namespace kiln::sched {
namespace {

std::vector<std::string> Collect(EventStream& s, int max) {
  std::vector<std::string> names;
  for (int i = 0; i < max; ++i) {
    bool ended = false;
    s.Next([&](std::optional<JobEvent> e) {
      if (!e) {
        ended = true;
      } else {
        names.push_back(e->name);
      }
    });
    if (ended) {
      names.push_back("<end>");
      break;
    }
  }
  return names;
}

TEST(JobEvents, DeliversInOrderAndEndsAfterTheFinalEvent) {
  JobEvents hub;
  auto s = hub.Subscribe("j", false);
  hub.Publish("j", {"running", "{}", false});
  hub.Publish("j", {"progress", "{}", false});
  hub.Publish("other", {"progress", "{}", false});
  hub.Publish("j", {"succeeded", "{}", true});
  hub.Publish("j", {"progress", "{}", false});  // after the end: nobody listens
  EXPECT_EQ(Collect(*s, 10),
            (std::vector<std::string>{"running", "progress", "succeeded", "<end>"}));
  EXPECT_EQ(hub.streams(), 0u);
}

TEST(JobEvents, AWaitingReaderIsCalledByThePublisher) {
  JobEvents hub;
  auto s = hub.Subscribe("j", true);
  EXPECT_TRUE(hub.WantsPreviews("j"));
  std::string got;
  s->Next([&](std::optional<JobEvent> e) { got = e ? e->name : "<end>"; });
  EXPECT_EQ(got, "");
  hub.Publish("j", {"progress", "{}", false});
  EXPECT_EQ(got, "progress");
  hub.Keepalive();
  EXPECT_EQ(Collect(*s, 1), std::vector<std::string>{""});
  s->Close();
  EXPECT_FALSE(hub.HasSubscribers("j"));
}

TEST(JobEvents, SlowReadersLoseOldProgressNotStateChanges) {
  JobEvents hub;
  auto s = hub.Subscribe("j", false);
  hub.Publish("j", {"running", "{}", false});
  for (int i = 0; i < 1000; ++i) hub.Publish("j", {"progress", "{}", false});
  hub.Publish("j", {"succeeded", "{}", true});
  auto names = Collect(*s, 2000);
  EXPECT_LE(names.size(), 258u);
  EXPECT_EQ(names.front(), "running");
  EXPECT_EQ(names[names.size() - 2], "succeeded");
}

TEST(JobEvents, ShutdownEndsStreamsAndLimitsHold) {
  JobEvents hub(2);
  auto a = hub.Subscribe("a", false);
  auto b = hub.Subscribe("b", false);
  EXPECT_EQ(hub.Subscribe("c", false), nullptr);
  hub.Shutdown();
  EXPECT_EQ(Collect(*a, 5), (std::vector<std::string>{"end", "<end>"}));
  auto late = hub.Subscribe("d", false);
  ASSERT_NE(late, nullptr);
  EXPECT_EQ(Collect(*late, 5), std::vector<std::string>{"<end>"});
}

}  // namespace
}  // namespace kiln::sched
