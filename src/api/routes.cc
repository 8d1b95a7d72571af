#include "api/routes.h"

#include "api/a1111.h"
#include "api/errors.h"
#include "api/handlers.h"

namespace kiln::api {

http::Router MakeRouter() { return http::Router(RenderHttpError); }

namespace {

void AddProbes(http::Router& router, const ApiContext& ctx) {
  const ApiContext* c = &ctx;
  using P = http::PathParams;
  using R = http::Request;
  router.Add("GET", "/healthz", [c](const R& r, const P&) { return HandleHealthz(*c, r); });
  router.Add("GET", "/readyz", [c](const R& r, const P&) { return HandleReadyz(*c, r); });
}

// /metrics, and /v1/autoscale where `autoscale`, behind `access`.
void AddOperatorRoutes(http::Router& router, const ApiContext& ctx, Access access, bool autoscale) {
  const ApiContext* c = &ctx;
  using P = http::PathParams;
  using R = http::Request;
  router.Add("GET", "/metrics",
             Guarded(ctx, access, [c](const R& r, const P&) { return HandleMetrics(*c, r); }));
  if (!autoscale) return;
  router.Add("GET", "/v1/autoscale",
             Guarded(ctx, access, [c](const R& r, const P&) { return HandleAutoscale(*c, r); }));
}

}  // namespace

void AddWorkerRoutes(http::Router& router, const ApiContext& ctx, bool operator_routes) {
  AddProbes(router, ctx);
  if (operator_routes) AddOperatorRoutes(router, ctx, Access::kOperator, /*autoscale=*/false);
}

void AddAdminRoutes(http::Router& router, const ApiContext& ctx, bool autoscale) {
  AddProbes(router, ctx);
  AddOperatorRoutes(router, ctx, Access::kPublic, autoscale);
}

void AddRoutes(http::Router& router, const ApiContext& ctx, bool operator_routes) {
  const ApiContext* c = &ctx;
  using P = http::PathParams;
  using R = http::Request;
  const auto user = [&ctx](http::Handler h) { return Guarded(ctx, Access::kUser, std::move(h)); };
  // Parses at most 1 MiB of JSON, then defers to the scheduler: safe on the I/O thread. With
  // API keys it runs on the handler pool: a key's quotas are counted in SQLite (AdmitWork).
  router.Add("POST", "/v1/images/generations",
             user([c](const R& r, const P&) { return HandleImageGenerations(*c, r); }),
             /*runs_inline=*/!(ctx.keys && ctx.keys->enabled()));
  router.Add("POST", "/v1/images/edits",
             user([c](const R& r, const P&) { return HandleImageEdits(*c, r); }));
  router.Add("GET", "/v1/models",
             user([c](const R& r, const P&) { return HandleListModels(*c, r); }));
  router.Add("GET", "/v1/models/{id}",
             user([c](const R&, const P& p) { return HandleGetModel(*c, p.at("id")); }));
  // Probes, the page and the API description are public; the operator's routes need an admin
  // (or a loopback peer), unless they moved to a listener of their own.
  AddProbes(router, ctx);
  if (operator_routes) AddOperatorRoutes(router, ctx, Access::kOperator, /*autoscale=*/true);
  router.Add("GET", "/", [c](const R& r, const P&) { return HandleUi(*c, r, "index.html"); });
  // The OpenAPI 3.1 description of every route here (web/openapi.json, embedded).
  router.Add("GET", "/openapi.json",
             [c](const R& r, const P&) { return HandleUi(*c, r, "openapi.json"); });
  router.Add("GET", "/ui/{file}",
             [c](const R& r, const P& p) { return HandleUi(*c, r, p.at("file")); });
  AddA1111Routes(router, ctx);
  if (!ctx.jobs) return;
  router.Add("POST", "/v1/jobs",
             user([c](const R& r, const P&) { return HandleCreateJob(*c, r); }));
  router.Add("GET", "/v1/jobs", user([c](const R& r, const P&) { return HandleListJobs(*c, r); }));
  router.Add("GET", "/v1/jobs/{id}",
             user([c](const R& r, const P& p) { return HandleGetJob(*c, r, p.at("id")); }));
  router.Add("DELETE", "/v1/jobs/{id}",
             user([c](const R& r, const P& p) { return HandleCancelJob(*c, r, p.at("id")); }));
  router.Add("GET", "/v1/jobs/{id}/events",
             user([c](const R& r, const P& p) { return HandleJobEvents(*c, r, p.at("id")); }));
  router.Add("POST", "/v1/batches",
             user([c](const R& r, const P&) { return HandleCreateBatch(*c, r); }));
  router.Add("GET", "/v1/batches/{id}",
             user([c](const R& r, const P& p) { return HandleGetBatch(*c, r, p.at("id")); }));
  router.Add("GET", "/v1/batches/{id}/results",
             user([c](const R& r, const P& p) { return HandleBatchResults(*c, r, p.at("id")); }));
  // A key, or a signed URL (which a browser's <img> can load): HandleGetFile checks which.
  router.Add("GET", "/v1/files/{key*}",
             [c](const R& r, const P& p) { return HandleGetFile(*c, r, p.at("key")); });
}

}  // namespace kiln::api
