// Endpoint handlers, one file per resource. Each takes the request and returns the response;
// thread-safe as long as the context is.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "api/routes.h"
#include "http/message.h"
#include "http/multipart.h"
#include "http/router.h"
#include "http/server.h"

namespace kiln::api {

http::Response HandleImageGenerations(const ApiContext& ctx, const http::Request& req);
http::Response HandleImageEdits(const ApiContext& ctx, const http::Request& req);
http::Response HandleListModels(const ApiContext& ctx, const http::Request& req);
http::Response HandleGetModel(const ApiContext& ctx, const std::string& id);
http::Response HandleHealthz(const ApiContext& ctx, const http::Request& req);
http::Response HandleReadyz(const ApiContext& ctx, const http::Request& req);
// One model's load as this process and the durable queue see it, and the autoscaling answer:
// read once per scrape or /v1/autoscale call.
struct ModelScale {
  sched::ModelLoad load;
  absl::StatusOr<queue::ModelBacklog> backlog = queue::ModelBacklog{};  // error: queue unreadable
  scale::ModelWork work;
  int desired = 0;
};
std::vector<ModelScale> ComputeScale(const ApiContext& ctx);
http::Response HandleAutoscale(const ApiContext& ctx, const http::Request& req);
http::Response HandleMetrics(const ApiContext& ctx, const http::Request& req);
// Counts every answered request in kiln_http_requests_total and its latency histogram, and
// records its server span when tracing is on.
http::RequestObserver HttpObserver(obs::KilnMetrics& metrics, obs::Tracer& tracer);
// Sets the scrape-time gauges (queues, replicas, models); a collector of ctx.metrics->registry.
void CollectServingMetrics(const ApiContext& ctx);
// `file`: a flat name under web/ ("index.html", "app.js").
http::Response HandleUi(const ApiContext& ctx, const http::Request& req, const std::string& file);

http::Response HandleCreateJob(const ApiContext& ctx, const http::Request& req);
http::Response HandleGetJob(const ApiContext& ctx, const http::Request& req, const std::string& id);
http::Response HandleListJobs(const ApiContext& ctx, const http::Request& req);
http::Response HandleCancelJob(const ApiContext& ctx, const http::Request& req,
                               const std::string& id);
http::Response HandleJobEvents(const ApiContext& ctx, const http::Request& req,
                               const std::string& id);
http::Response HandleCreateBatch(const ApiContext& ctx, const http::Request& req);
http::Response HandleGetBatch(const ApiContext& ctx, const http::Request& req,
                              const std::string& id);
http::Response HandleBatchResults(const ApiContext& ctx, const http::Request& req,
                                  const std::string& id);
http::Response HandleGetFile(const ApiContext& ctx, const http::Request& req,
                             const std::string& key);

// Shared request helpers.
// 415 unless the media type is one of `media_types`; 413 past `limit` bytes.
absl::Status CheckBody(const http::Request& req,
                       std::initializer_list<std::string_view> media_types, size_t limit);
// The parts of a multipart/form-data body (the boundary from its Content-Type).
absl::StatusOr<std::vector<http::FormPart>> FormParts(const http::Request& req);
// The caller of `req` (ApiKeys::Authenticate, or an admin when the server has no keys).
absl::StatusOr<Caller> Authenticate(const ApiContext& ctx, const http::Request& req);
// The 401 for a failed Authenticate, with `WWW-Authenticate: Bearer`.
http::Response Unauthorized(const absl::Status& status);
// Who is calling (the routes let a request through only once it authenticated): with API keys,
// the key's tenant and role; without, an admin whose tenant is a hash of its bearer token.
Caller CallerOf(const ApiContext& ctx, const http::Request& req);
// CallerOf(...).tenant: whose work a request is, for fair sharing and isolation.
std::string TenantOf(const ApiContext& ctx, const http::Request& req);
// Admits the work a request asks for (`jobs` jobs or sync generations, `images` images,
// `cost_seconds` estimated device-seconds) under the quotas of its key: 429 over a limit.
// Without keys or quotas the ticket holds nothing.
absl::StatusOr<quota::QuotaTicket> AdmitWork(const ApiContext& ctx, const http::Request& req,
                                             int jobs, int64_t images, double cost_seconds);
// Who may call a route: anyone (probes, the page, the API description), a key holder, an admin,
// or (operator routes: metrics, autoscaling) an admin or a process on this machine, so that
// local scrapers and exporters need no key. Without API keys every caller is an admin.
enum class Access { kPublic, kUser, kAdmin, kOperator };
// `handler` behind the route's rule: 401 (with WWW-Authenticate) without a valid key, 403 for a
// user key on an admin route.
http::Handler Guarded(const ApiContext& ctx, Access access, http::Handler handler);
// The store key of image `index` of sync request `id` (response_format url, A1111 save_images):
// images/{id}/{i}.png, under a folder of the tenant's own when keys are on, so that only it
// (and admins) can read it back.
std::string SyncImageKey(const ApiContext& ctx, const std::string& tenant, const std::string& id,
                         size_t index);
// Whether `caller` may read images/... (the sync images of SyncImageKey).
bool MayReadImage(const Caller& caller, std::string_view key);
// Whether `caller` may see work of `tenant`: its own, or any for an admin.
inline bool CanSee(const Caller& caller, const std::string& tenant) {
  return caller.admin || caller.tenant == tenant;
}
// "http://host:port" as the client addressed us (from Host), for result URLs.
std::string BaseUrl(const http::Request& req);
// 400 naming the query parameter unless every query parameter is in `allowed`.
absl::Status CheckQuery(const http::Request& req, std::initializer_list<std::string_view> allowed);

}  // namespace kiln::api
