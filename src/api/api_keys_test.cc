// The API keys file: what is accepted, what is refused (with where), and who a request is.
#include "api/api_keys.h"

#include <cstdlib>

#include "core/crypto.h"
#include "gtest/gtest.h"

namespace kiln::api {
namespace {

TEST(ApiKeys, ParsesKeysAndHashesAndRefusesWhatItCannotHonour) {
  auto keys = ParseApiKeys(
      "keys:\n"
      "  - {key: \"sk-0123456789abcdef\", tenant: team-a}\n"
      "  - {key_sha256: \"" +
          Sha256Hex("admin-0123456789ab") + "\", tenant: ops, role: admin}\n",
      "keys.yaml");
  ASSERT_TRUE(keys.ok()) << keys.status();
  ASSERT_EQ(keys->size(), 2u);
  EXPECT_EQ((*keys)[0].sha256, Sha256Hex("sk-0123456789abcdef"));
  EXPECT_FALSE((*keys)[0].admin);
  EXPECT_TRUE((*keys)[1].admin);

  const std::vector<std::pair<std::string, std::string>> bad = {
      {"keys: [{key: short, tenant: a}]", "16..256"},
      {"keys: [{key: \"sk-0123456789abcdef\", tenant: \"a b\"}]", "'tenant'"},
      {"keys: [{key: \"sk-0123456789abcdef\"}]", "'tenant'"},
      {"keys: [{tenant: a}]", "needs 'key'"},
      {"keys: [{key_sha256: abc, tenant: a}]", "64 hex"},
      {"keys: [{key: \"sk-0123456789abcdef\", tenant: a, role: root}]", "'role'"},
      {"keys: [{key: \"sk-0123456789abcdef\", tenant: a, limits: {images_per_hour: 5}}]",
       "unknown limit"},
      {"keys: [{key: \"sk-0123456789abcdef\", tenant: a, limits: {concurrent_jobs: -1}}]",
       "'concurrent_jobs' must be in"},
      {"keys: [{key: \"sk-0123456789abcdef\", tenant: a, limits: {queued_seconds: 0}}]",
       "'queued_seconds' must be in"},
      {"keys: [{key: \"sk-0123456789abcdef\", tenant: a, limits: {images_per_day: many}}]",
       "keys[0]"},
      {"keys: [{key: \"sk-0123456789abcdef\", tenant: a, limits: {requests_per_minute: 0}}]",
       "1..1000000"},
      {"keys: [{key: \"sk-0123456789abcdef\", tenant: a, colour: red}]", "unknown key"},
      {"keys:\n  - {key: \"sk-0123456789abcdef\", tenant: a}\n"
       "  - {key: \"sk-0123456789abcdef\", tenant: b}\n",
       "twice"},
      {"users: []", "'keys'"},
      {"keys: [1]", "must be a map"},
      {"keys: [{key: [", "keys.yaml"},
  };
  for (const auto& [yaml, want] : bad) {
    auto r = ParseApiKeys(yaml, "keys.yaml");
    ASSERT_FALSE(r.ok()) << yaml;
    EXPECT_NE(r.status().message().find(want), std::string::npos) << yaml << ": " << r.status();
    EXPECT_NE(r.status().message().find("keys.yaml"), std::string::npos) << r.status();
  }
}

TEST(ApiKeys, LimitsAreReadAndThoseTheQueueCannotCountAreRefusedWhereItCannot) {
  const std::string yaml =
      "keys: [{key: \"sk-0123456789abcdef\", tenant: a, limits: {requests_per_minute: 60, "
      "concurrent_jobs: 4, queued_seconds: 12.5, images_per_day: 1000}}]";
  auto keys = ParseApiKeys(yaml, "keys.yaml");
  ASSERT_TRUE(keys.ok()) << keys.status();
  const quota::KeyLimits& l = (*keys)[0].limits;
  EXPECT_EQ(l.requests_per_minute, 60);
  EXPECT_EQ(l.concurrent_jobs, 4);
  EXPECT_DOUBLE_EQ(l.queued_seconds, 12.5);
  EXPECT_EQ(l.images_per_day, 1000);
  // The distributed queue does not count a tenant's jobs.
  auto distributed = ParseApiKeys(yaml, "keys.yaml", KeyRules{.job_limits = false});
  ASSERT_FALSE(distributed.ok());
  EXPECT_NE(distributed.status().message().find("distributed queue"), std::string::npos);
  EXPECT_TRUE(ParseApiKeys("keys: [{key: \"sk-0123456789abcdef\", tenant: a, limits: "
                           "{images_per_day: 5, requests_per_minute: 5}}]",
                           "keys.yaml", KeyRules{.job_limits = false})
                  .ok());
}

TEST(ApiKeys, WithoutKeysEveryCallerIsAnAdminNamedByItsTokenHash) {
  const ApiKeys none;
  http::Request req;
  auto anonymous = none.Authenticate(req);
  ASSERT_TRUE(anonymous.ok());
  EXPECT_EQ(anonymous->tenant, "anonymous");
  EXPECT_TRUE(anonymous->admin);
  req.headers["authorization"] = "Bearer some-token";
  auto named = none.Authenticate(req);
  ASSERT_TRUE(named.ok());
  EXPECT_EQ(named->tenant, TenantOfToken("some-token"));
  EXPECT_EQ(named->tenant.find("some-token"), std::string::npos);  // never the token itself
}

TEST(ApiKeys, RequestsPerMinuteIsATokenBucketPerKey) {
  setenv("KILN_API_KEYS",
         "keys:\n"
         "  - {key: \"limited-0123456789\", tenant: a, limits: {requests_per_minute: 3}}\n"
         "  - {key: \"unlimited-012345678\", tenant: b}\n",
         1);
  auto keys = ApiKeys::Load("");
  unsetenv("KILN_API_KEYS");
  ASSERT_TRUE(keys.ok()) << keys.status();
  http::Request req;
  req.headers["authorization"] = "Bearer limited-0123456789";
  auto limited = (*keys)->Authenticate(req);
  ASSERT_TRUE(limited.ok());
  req.headers["authorization"] = "Bearer unlimited-012345678";
  auto unlimited = (*keys)->Authenticate(req);
  ASSERT_TRUE(unlimited.ok());

  // A minute's worth at once, then one every 20 s.
  for (int i = 0; i < 3; ++i) EXPECT_TRUE((*keys)->Admit(*limited, 1000).allowed) << i;
  RateDecision refused = (*keys)->Admit(*limited, 1000);
  EXPECT_FALSE(refused.allowed);
  EXPECT_EQ(refused.limit, 3);
  EXPECT_EQ(refused.retry_after_seconds, 20);
  EXPECT_FALSE((*keys)->Admit(*limited, 1000 + 19000).allowed);
  EXPECT_TRUE((*keys)->Admit(*limited, 1000 + 20000 + 19000).allowed);
  // Another key, and a clock that steps back, take nothing from it.
  for (int i = 0; i < 100; ++i) EXPECT_TRUE((*keys)->Admit(*unlimited, 0).allowed);
  EXPECT_FALSE((*keys)->Admit(*limited, 500).allowed);
}

}  // namespace
}  // namespace kiln::api
