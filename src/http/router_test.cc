#include "http/router.h"

#include "gtest/gtest.h"

namespace kiln::http {
namespace {

Response Plain(int status, const std::string& message) {
  Response r;
  r.status = status;
  r.body = message;
  return r;
}

TEST(Router, MatchesCapturesAndMethods) {
  Router router(Plain);
  router.Add("GET", "/v1/jobs/{id}",
             [](const Request&, const PathParams& p) { return Plain(200, "job " + p.at("id")); });
  router.Add("DELETE", "/v1/jobs/{id}",
             [](const Request&, const PathParams&) { return Plain(204, ""); });
  Request req;
  req.method = "GET";
  req.path = "/v1/jobs/abc";
  EXPECT_EQ(router.Dispatch(req).body, "job abc");
  req.method = "POST";
  Response r = router.Dispatch(req);
  EXPECT_EQ(r.status, 405);
  ASSERT_EQ(r.headers.size(), 1u);
  EXPECT_EQ(r.headers[0].second, "GET, DELETE");
  req.path = "/v1/jobs/abc/extra";
  EXPECT_EQ(router.Dispatch(req).status, 404);
}

TEST(Router, RestCaptureTakesTheRemainingSegments) {
  Router router(Plain);
  router.Add("GET", "/v1/files/{key*}",
             [](const Request&, const PathParams& p) { return Plain(200, p.at("key")); });
  Request req;
  req.method = "GET";
  req.path = "/v1/files/jobs/01J/0.png";
  EXPECT_EQ(router.Dispatch(req).body, "jobs/01J/0.png");
  req.path = "/v1/files";
  EXPECT_EQ(router.Dispatch(req).status, 404);
}

TEST(Target, DecodesPathAndQuery) {
  std::string path;
  std::map<std::string, std::string> query;
  ASSERT_TRUE(ParseTarget("/v1/files/a%20b?x=1&y=two+words&z", path, query));
  EXPECT_EQ(path, "/v1/files/a b");
  EXPECT_EQ(query["y"], "two words");
  EXPECT_EQ(query["z"], "");
  EXPECT_FALSE(ParseTarget("/bad%zz", path, query));
  EXPECT_FALSE(ParseTarget("no-slash", path, query));
  EXPECT_FALSE(ParseTarget("/a?b=%4", path, query));
}

}  // namespace
}  // namespace kiln::http
