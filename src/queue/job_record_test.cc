#include "queue/job_record.h"

#include "gtest/gtest.h"
#include "queue/amqp/broker.h"

namespace kiln::queue {
namespace {

TEST(JobRecord, RoundTripsEveryField) {
  Job j;
  j.spec.id = "01J0000000000000000000000A";
  j.spec.model = "tiny-shapes";
  j.spec.request = R"({"prompt":"a \"red\" circle"})";
  j.spec.klass = PriorityClass::kBatch;
  j.spec.priority = -3;
  j.spec.tenant = "team-a";
  j.spec.cost = 1.25;
  j.spec.deadline_ms = 1700000000123;
  j.spec.webhook = "http://127.0.0.1:9/hook";
  j.spec.idempotency_key = "k1";
  j.spec.batch_id = "01J0000000000000000000000B";
  j.spec.max_attempts = 7;
  j.spec.traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
  j.seq = 42;
  j.state = JobState::kSucceeded;
  j.attempts = 2;
  j.created_ms = 1;
  j.started_ms = 2;
  j.finished_ms = 3;
  j.worker = "w-1";
  j.lease_until_ms = 4;
  j.step = 20;
  j.num_steps = 20;
  j.result_keys = {"jobs/x/0.png", "jobs/x/1.png"};
  j.error = "e";
  j.error_code = "c";
  j.cancel_requested = true;
  j.webhook_status = R"({"state":"delivered"})";
  auto back = DecodeJobRecord(EncodeJobRecord(j));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(EncodeJobRecord(*back), EncodeJobRecord(j));
  EXPECT_EQ(back->spec.request, j.spec.request);
  EXPECT_EQ(back->spec.klass, PriorityClass::kBatch);
  EXPECT_EQ(back->state, JobState::kSucceeded);
  EXPECT_EQ(back->result_keys, j.result_keys);
  EXPECT_EQ(JobRecordKey(j.spec.id), "jobs/01J0000000000000000000000A/job.json");
}

TEST(JobRecord, RejectsWhatIsNotARecord) {
  EXPECT_FALSE(DecodeJobRecord("").ok());
  EXPECT_FALSE(DecodeJobRecord("[]").ok());
  EXPECT_FALSE(DecodeJobRecord(R"({"version":1})").ok());
  Job j;
  j.spec.id = "x";
  std::string text = EncodeJobRecord(j);
  auto bad_state = text;
  bad_state.replace(bad_state.find("\"queued\""), 8, "\"lost\"");
  auto s = DecodeJobRecord(bad_state);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("state"), std::string::npos) << s.status();
  auto v2 = text;
  v2.replace(v2.find("\"version\":1"), 11, "\"version\":2");
  EXPECT_FALSE(DecodeJobRecord(v2).ok());
}

TEST(AmqpUrl, ParsesTheFormsUsersWrite) {
  auto u = amqp::ParseAmqpUrl("amqp://kiln:s%40cret@rabbit.internal:5673/prod");
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->host, "rabbit.internal");
  EXPECT_EQ(u->port, 5673);
  EXPECT_EQ(u->user, "kiln");
  EXPECT_EQ(u->password, "s@cret");
  EXPECT_EQ(u->vhost, "prod");

  u = amqp::ParseAmqpUrl("amqp://localhost");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->port, 5672);
  EXPECT_EQ(u->user, "guest");
  EXPECT_EQ(u->vhost, "/");

  u = amqp::ParseAmqpUrl("amqp://u:p@h/%2F");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->vhost, "/");

  for (const char* bad : {"http://h/", "amqp://", "amqp://h:0/", "amqp://h:99999/", "amqp://h:x/",
                          "amqp://u:p@/v", "amqp://h/%zz"}) {
    auto r = amqp::ParseAmqpUrl(bad);
    EXPECT_TRUE(absl::IsInvalidArgument(r.status())) << bad;
  }
  EXPECT_EQ(amqp::JobQueueName("tiny-shapes"), "kiln.jobs.tiny-shapes");
}

}  // namespace
}  // namespace kiln::queue
