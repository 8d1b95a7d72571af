// The API description (web/openapi.json, served at GET /openapi.json) and the router agree:
// every route is documented, every documented operation is served, and every documented error
// has the one error shape.
#include <cctype>
#include <set>
#include <string>
#include <utility>

#include "api/routes.h"
#include "api/web_assets.h"
#include "core/strings.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace kiln::api {
namespace {

using Operation = std::pair<std::string, std::string>;  // (METHOD, /path/{param})

nlohmann::json Spec() {
  for (const WebAsset& a : WebAssets()) {
    if (a.name == "openapi.json") return nlohmann::json::parse(a.data);
  }
  ADD_FAILURE() << "web/openapi.json is not embedded";
  return nlohmann::json::object();
}

std::set<Operation> Served() {
  ApiContext ctx;
  // AddRoutes adds the job, batch and file routes only when a job service exists. The handlers
  // never run here, so any non-null address stands in for one.
  alignas(std::max_align_t) static char stand_in[1];
  ctx.jobs = reinterpret_cast<sched::JobService*>(stand_in);
  http::Router router = MakeRouter();
  AddRoutes(router, ctx);
  std::set<Operation> out;
  for (auto [method, pattern] : router.Routes()) {
    // "{key*}" (the rest of the path) is "{key}" in OpenAPI, which has no such parameter kind.
    out.emplace(method, ReplaceAll(pattern, "*}", "}"));
  }
  return out;
}

TEST(OpenApi, EveryRouteIsDocumentedAndEveryDocumentedRouteIsServed) {
  const nlohmann::json spec = Spec();
  ASSERT_EQ(spec.value("openapi", ""), "3.1.0");
  std::set<Operation> documented;
  for (const auto& [path, item] : spec.at("paths").items()) {
    for (const auto& [method, op] : item.items()) {
      if (method == "parameters" || method == "summary" || method == "description") continue;
      std::string upper = method;
      for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      documented.emplace(upper, path);
    }
  }
  const std::set<Operation> served = Served();
  for (const auto& op : served) {
    EXPECT_TRUE(documented.contains(op)) << op.first << " " << op.second << " is not documented";
  }
  for (const auto& op : documented) {
    EXPECT_TRUE(served.contains(op))
        << op.first << " " << op.second << " is documented, not served";
  }
  EXPECT_GT(served.size(), 30u);
}

TEST(OpenApi, EveryDocumentedErrorHasTheErrorShape) {
  const nlohmann::json spec = Spec();
  ASSERT_TRUE(spec.at("components").at("schemas").contains("Error"));
  for (const auto& [path, item] : spec.at("paths").items()) {
    for (const auto& [method, op] : item.items()) {
      if (!op.is_object() || !op.contains("responses")) continue;
      EXPECT_TRUE(op.contains("operationId")) << method << " " << path;
      for (const auto& [code, entry] : op.at("responses").items()) {
        if (code.empty() || (code[0] != '4' && code[0] != '5')) continue;
        // The one exception: a 503 from /readyz is the readiness report (each part's state).
        if (path == "/readyz" && code == "503") continue;
        // A shared response ("#/components/responses/NotFound") is looked up.
        nlohmann::json response = entry;
        if (response.contains("$ref")) {
          const std::string ref = response["$ref"].get<std::string>();
          ASSERT_TRUE(ref.starts_with("#/")) << ref;
          response = spec.at(nlohmann::json::json_pointer(ref.substr(1)));
        }
        const auto schema = response.value("/content/application~1json/schema"_json_pointer,
                                           nlohmann::json::object());
        EXPECT_EQ(schema.value("$ref", ""), "#/components/schemas/Error")
            << method << " " << path << " " << code;
      }
    }
  }
}

}  // namespace
}  // namespace kiln::api
