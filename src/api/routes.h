// The HTTP API: wires every endpoint into a Router. The context must outlive the router.
#pragma once

#include "absl/synchronization/mutex.h"
#include "api/api_keys.h"
#include "core/url_signer.h"
#include "engine/model_repository.h"
#include "http/address_policy.h"
#include "http/router.h"
#include "obs/kiln_metrics.h"
#include "obs/tracer.h"
#include "queue/job_queue.h"
#include "scale/autoscale_policy.h"
#include "sched/job_events.h"
#include "sched/job_service.h"
#include "sched/scheduler.h"
#include "store/blob_store.h"

namespace kiln::api {

// The last known health of what the server depends on beyond its models (the result store, the
// broker).
// Updated by a background check; read by /readyz. Thread-safe.
class Dependencies {
 public:
  void SetStore(absl::Status s) {
    absl::MutexLock lock(&mu_);
    store_ = std::move(s);
  }
  absl::Status store() const {
    absl::MutexLock lock(&mu_);
    return store_;
  }
  void SetQueue(absl::Status s) {
    absl::MutexLock lock(&mu_);
    queue_ = std::move(s);
  }
  absl::Status queue() const {
    absl::MutexLock lock(&mu_);
    return queue_;
  }

 private:
  mutable absl::Mutex mu_;
  absl::Status store_ ABSL_GUARDED_BY(mu_);
  absl::Status queue_ ABSL_GUARDED_BY(mu_);
};

struct ApiContext {
  const engine::ModelRepository* models = nullptr;
  sched::Scheduler* scheduler = nullptr;
  sched::JobService* jobs = nullptr;
  queue::JobQueue* queue = nullptr;
  store::BlobStore* store = nullptr;
  sched::JobEvents* events = nullptr;
  obs::KilnMetrics* metrics = nullptr;         // null: no /metrics
  obs::Tracer* tracer = nullptr;               // null or disabled: no spans
  scale::AutoscalePolicy autoscale;            // GET /v1/autoscale
  const Dependencies* dependencies = nullptr;  // null: only the models decide readiness
  const ApiKeys* keys = nullptr;               // null or disabled: no authentication
  quota::Quotas* quotas = nullptr;             // null: the keys' work quotas are not checked
  UrlSigner file_urls;                         // with keys: signs the file URLs handed out
  size_t max_json_bytes = 1 << 20;             // /v1/images/generations bodies
  size_t max_multipart_bytes = 24 << 20;       // /v1/images/edits and /v1/jobs bodies
  size_t max_batch_bytes = 16 << 20;           // /v1/batches bodies
  int max_batch_lines = 10000;
  std::string web_dir;  // serve the UI from here instead of the embedded files (development)
  // Where webhooks may point: a webhook at a refused address literal is a 400 at submission.
  http::AddressPolicy webhook_policy;
};

// A router whose errors use the OpenAI error shape.
http::Router MakeRouter();

// Every route. `operator_routes` false: /metrics and /v1/autoscale are on an admin listener
// instead (AddAdminRoutes), and this one answers them 404.
void AddRoutes(http::Router& router, const ApiContext& context, bool operator_routes = true);
// A worker's port: /healthz, /readyz and /metrics only (probes and scrapes; no API).
void AddWorkerRoutes(http::Router& router, const ApiContext& context, bool operator_routes = true);
// The admin listener (--admin-port): probes, /metrics and (gateways) /v1/autoscale, open to
// whoever reaches it: the operator keeps it on a private address or network.
void AddAdminRoutes(http::Router& router, const ApiContext& context, bool autoscale);

}  // namespace kiln::api
