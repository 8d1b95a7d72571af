// `kiln serve` and `kiln worker`. The embedded mode (default) loads the models, opens the SQLite
// queue and the local store under --data, starts the scheduler and serves the API. With
// --queue amqp://, --role picks the part this process plays: all (API and models), gateway
// (API; model.yaml files only) or worker (runs jobs; serves probes and /metrics). Every role
// stops cleanly on SIGINT/SIGTERM, handing back the jobs it cannot finish in --grace-seconds.
#include <fcntl.h>
#include <sys/file.h>
#include <torch/torch.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>
#include <tuple>

#include "absl/cleanup/cleanup.h"
#include "absl/synchronization/mutex.h"
#include "api/api_keys.h"
#include "api/handlers.h"
#include "api/routes.h"
#include "cli/commands.h"
#include "core/crypto.h"
#include "core/ids.h"
#include "core/logging.h"
#include "core/strings.h"
#include "core/url_signer.h"
#include "engine/image_codec.h"
#include "engine/model_repository.h"
#include "http/address_policy.h"
#include "http/client.h"
#include "http/server.h"
#include "queue/job_queue.h"
#include "quota/quotas.h"
#include "quota/usage_ledger.h"
#include "sched/job_events.h"
#include "sched/job_service.h"
#include "sched/preemption_watch.h"
#include "sched/scheduler.h"
#include "sched/webhooks.h"
#include "store/blob_store.h"
#include "yaml-cpp/yaml.h"

namespace kiln::cli {
namespace {

namespace fs = std::filesystem;

std::string Message(const absl::Status& s) { return std::string(s.message()); }

// A signing key: the flag, the environment variable `env`, or a key generated once into
// DATA/`file` (mode 0600). `what` names it in the log.
absl::StatusOr<std::string> SigningKey(const std::string& flag, const char* env,
                                       const fs::path& data, const char* file, const char* what) {
  if (!flag.empty()) return flag;
  if (const char* value = std::getenv(env); value && *value) return std::string(value);
  const fs::path path = data / file;
  std::ifstream in(path);
  std::string secret;
  if (in && std::getline(in, secret) && !secret.empty()) return secret;
  secret = RandomHex(32);
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return absl::UnavailableError("cannot write " + path.string());
  const std::string line = secret + "\n";
  const bool ok = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
  ::close(fd);
  if (!ok) return absl::UnavailableError("cannot write " + path.string());
  log::Info(StrCat("generated a ", what), {{"path", path.string()}});
  return secret;
}

// Re-checks the store and the queue every 2 s and records the results for /readyz; stops and
// joins when destroyed.
class DependencyChecker {
 public:
  DependencyChecker(store::BlobStore* store, queue::JobQueue* queue, api::Dependencies* deps)
      : store_(store), queue_(queue), deps_(deps) {
    thread_ = std::thread([this] { Loop(); });
  }
  ~DependencyChecker() {
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
    }
    thread_.join();
  }

 private:
  void Loop() {
    absl::MutexLock lock(&mu_);
    while (!mu_.AwaitWithTimeout(absl::Condition(&stop_), absl::Seconds(2))) {
      mu_.Unlock();
      absl::Status s = store_->Check();
      if (s.ok() != deps_->store().ok()) {
        if (s.ok()) {
          log::Info("the store is usable again", {{"store", store_->Describe()}});
        } else {
          log::Error("the store is not usable", {{"error", Message(s)}});
        }
      }
      deps_->SetStore(std::move(s));
      deps_->SetQueue(queue_->Check());  // the broker logs its own changes
      mu_.Lock();
    }
  }

  store::BlobStore* const store_;
  queue::JobQueue* const queue_;
  api::Dependencies* const deps_;
  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

// Nothing for this worker to do: no job held, none waiting in its models' queues.
bool WorkerIdle(const sched::Scheduler& scheduler, queue::JobQueue& queue) {
  for (const sched::ModelLoad& load : scheduler.Loads()) {
    if (load.held > 0 || load.waiting_sync > 0) return false;
    auto backlog = queue.Backlog(load.model);
    if (!backlog.ok() || backlog->queued > 0) return false;  // unknown counts as busy
  }
  return true;
}

std::string DefaultWorkerId() {
  char host[256] = {0};
  if (::gethostname(host, sizeof(host) - 1) != 0 || host[0] == 0) std::strcpy(host, "kiln");
  return StrCat(host, "-", ::getpid(), "-", RandomHex(3));
}

}  // namespace

std::string ApplyServeConfig(const std::string& path, ServeOptions& o,
                             const std::function<bool(const std::string& key)>& given) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::Exception& e) {
    return path + ": " + e.what();
  }
  if (!root.IsMap()) return path + ": must be a YAML map";
  for (const auto& kv : root) {
    const std::string key = kv.first.as<std::string>();
    try {
      auto set_str = [&](std::string& field) {
        if (!given(key)) field = kv.second.as<std::string>();
      };
      auto set_int = [&](int& field) {
        if (!given(key)) field = kv.second.as<int>();
      };
      auto set_double = [&](double& field) {
        if (!given(key)) field = kv.second.as<double>();
      };
      if (key == "host")
        set_str(o.host);
      else if (key == "port")
        set_int(o.port);
      else if (key == "models")
        set_str(o.models);
      else if (key == "data")
        set_str(o.data);
      else if (key == "queue")
        set_str(o.queue);
      else if (key == "store")
        set_str(o.store);
      else if (key == "role")
        set_str(o.role);
      else if (key == "worker_id")
        set_str(o.worker_id);
      else if (key == "prefetch")
        set_int(o.prefetch);
      else if (key == "delivery_limit")
        set_int(o.delivery_limit);
      else if (key == "device")
        set_str(o.device);
      else if (key == "threads")
        set_int(o.threads);
      else if (key == "replicas")
        set_int(o.replicas);
      else if (key == "max_attempts")
        set_int(o.max_attempts);
      else if (key == "lease_seconds")
        set_int(o.lease_seconds);
      else if (key == "grace_seconds")
        set_int(o.grace_seconds);
      else if (key == "max_queued_jobs")
        set_int(o.max_queued_jobs);
      else if (key == "max_queued_sync")
        set_int(o.max_queued_sync);
      else if (key == "idle_spin_us")
        set_int(o.idle_spin_us);
      else if (key == "tls_cert")
        set_str(o.tls_cert);
      else if (key == "tls_key")
        set_str(o.tls_key);
      else if (key == "admin_port")
        set_int(o.admin_port);
      else if (key == "admin_host")
        set_str(o.admin_host);
      else if (key == "read_timeout_seconds")
        set_int(o.read_timeout_seconds);
      else if (key == "idle_timeout_seconds")
        set_int(o.idle_timeout_seconds);
      else if (key == "log_level")
        set_str(o.log_level);
      else if (key == "api_keys")
        set_str(o.api_keys);
      else if (key == "file_url_secret")
        set_str(o.file_url_secret);
      else if (key == "insecure_no_auth") {
        if (!given(key)) o.insecure_no_auth = kv.second.as<bool>();
      } else if (key == "preemption_url")
        set_str(o.preemption_url);
      else if (key == "preemption_grace_seconds")
        set_int(o.preemption_grace_seconds);
      else if (key == "exit_when_idle")
        set_int(o.exit_when_idle);
      else if (key == "max_concurrent_decodes")
        set_int(o.max_concurrent_decodes);
      else if (key == "retention_hours")
        set_double(o.retention_hours);
      else if (key == "idempotency_hours")
        set_double(o.idempotency_hours);
      else if (key == "webhook_allow") {
        if (!given(key)) {
          o.webhook_allow.clear();
          if (kv.second.IsSequence()) {
            for (const auto& block : kv.second) o.webhook_allow.push_back(block.as<std::string>());
          } else {
            o.webhook_allow.push_back(kv.second.as<std::string>());
          }
        }
      } else if (key == "tenant_weights") {
        if (!kv.second.IsMap()) return path + ": key 'tenant_weights': must be a map";
        if (kv.second.size() > 10000) {
          return path + ": key 'tenant_weights': at most 10000 tenants";
        }
        for (const auto& t : kv.second) {
          const std::string token = t.first.as<std::string>();
          const double w = t.second.as<double>();
          if (!(w > 0) || w > 1e6) {
            return path + ": key 'tenant_weights': each weight must be in (0, 1000000]";
          }
          o.tenant_weights[token] = w;
        }
      } else
        return path + ": unknown key '" + key + "'";
    } catch (const YAML::Exception& e) {
      return path + ": key '" + key + "': " + e.what();
    }
  }
  // The same ranges as the command-line flags (main.cc).
  const std::vector<std::tuple<const char*, int, int, int>> ints = {
      {"port", o.port, 0, 65535},
      {"admin_port", o.admin_port, -1, 65535},
      {"replicas", o.replicas, 1, 64},
      {"prefetch", o.prefetch, 0, 65535},
      {"delivery_limit", o.delivery_limit, 1, 1000},
      {"threads", o.threads, 0, 1024},
      {"max_attempts", o.max_attempts, 1, 100},
      {"lease_seconds", o.lease_seconds, 2, 86400},
      {"grace_seconds", o.grace_seconds, 0, 86400},
      {"max_queued_jobs", o.max_queued_jobs, 1, 10000000},
      {"max_queued_sync", o.max_queued_sync, 1, 100000},
      {"idle_spin_us", o.idle_spin_us, 0, 100000},
      {"read_timeout_seconds", o.read_timeout_seconds, 1, 3600},
      {"idle_timeout_seconds", o.idle_timeout_seconds, 1, 3600},
      {"preemption_grace_seconds", o.preemption_grace_seconds, 0, 3600},
      {"exit_when_idle", o.exit_when_idle, 0, 86400},
      {"max_concurrent_decodes", o.max_concurrent_decodes, 1, 64}};
  for (const auto& [key, value, lo, hi] : ints) {
    if (value < lo || value > hi) {
      return StrCat(path, ": key '", key, "': must be in ", lo, "..", hi);
    }
  }
  for (const auto& [key, value] :
       {std::pair<const char*, double>{"retention_hours", o.retention_hours},
        {"idempotency_hours", o.idempotency_hours}}) {
    if (!(value >= 0 && value <= 1e6))
      return StrCat(path, ": key '", key, "': must be in 0..1000000");
  }
  if (o.role != "all" && o.role != "gateway" && o.role != "worker") {
    return path + ": key 'role': must be all, gateway or worker";
  }
  return "";
}

int RunServe(ServeOptions o) {
  engine::SetMaxConcurrentDecodes(o.max_concurrent_decodes);
  const bool distributed = o.queue.rfind("amqp://", 0) == 0;
  if (o.role != "all" && !distributed) {
    log::Error("--role gateway and --role worker need a shared queue: --queue amqp://...",
               {{"role", o.role}});
    return 2;
  }
  const bool gateway = o.role == "gateway";
  const bool worker = o.role == "worker";
  if ((!o.preemption_url.empty() || o.exit_when_idle > 0) && !worker) {
    log::Error("--preemption-url and --exit-when-idle are for workers (kiln worker)",
               {{"role", o.role}});
    return 2;
  }
  if (!o.preemption_url.empty()) {
    if (absl::Status s = http::CheckHttpUrl(o.preemption_url, "preemption_url"); !s.ok()) {
      log::Error("bad --preemption-url", {{"error", Message(s)}});
      return 2;
    }
  }
  // Who may call: API keys, or nobody beyond this machine unless the operator says so.
  // The distributed queue does not count a tenant's jobs: keys there may not set the limits
  // that need the count.
  auto keys = api::ApiKeys::Load(o.api_keys, api::KeyRules{.job_limits = !distributed});
  if (!keys.ok()) {
    log::Error("cannot read the API keys", {{"error", Message(keys.status())}});
    return 2;
  }
  if ((*keys)->enabled()) {
    log::Info("API keys loaded", {{"keys", (*keys)->size()}});
  } else if (!worker && !http::IsLoopbackHost(o.host)) {
    if (!o.insecure_no_auth) {
      log::Error(
          "without API keys Kiln serves only loopback: give --api-keys FILE (or $KILN_API_KEYS), "
          "or --insecure-no-auth to let anyone who reaches this address use it",
          {{"host", o.host}});
      return 2;
    }
    log::Warn("serving without authentication beyond loopback (--insecure-no-auth)",
              {{"host", o.host}});
  }
  // LibTorch from Debian starts with one intra-op thread; 0 means use every core.
  at::set_num_threads(o.threads > 0
                          ? o.threads
                          : static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  std::error_code ec;
  fs::create_directories(o.data, ec);
  if (ec) {
    log::Error("cannot create the data directory", {{"data", o.data}, {"error", ec.message()}});
    return 1;
  }
  const fs::path data = fs::absolute(o.data).lexically_normal();
  // One embedded server per data directory: it owns every running job in the queue.
  int lock_fd = -1;
  if (!distributed) {
    lock_fd = ::open((data / "kiln.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lock_fd < 0 || ::flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
      log::Error("another kiln server uses this data directory", {{"data", data.string()}});
      return 1;
    }
  }
  const std::string worker_id = !o.worker_id.empty() ? o.worker_id
                                : distributed        ? DefaultWorkerId()
                                                     : "embedded";

  obs::Registry registry;
  obs::KilnMetrics metrics(registry);
  obs::AddProcessMetrics(registry);
  obs::Tracer tracer(obs::TracerOptionsFromEnv(o.otlp_endpoint));
  // The port is taken before any work is: a process that cannot listen (another worker on this
  // host has the port) exits before it opens the queue, so it has claimed no job. The routes are
  // added once the services behind them exist, and accepting starts after that (Serve).
  http::Router router = api::MakeRouter();
  http::ServerOptions options;
  options.host = o.host;
  options.port = static_cast<uint16_t>(o.port);
  options.read_timeout = std::chrono::seconds(o.read_timeout_seconds);
  options.idle_timeout = std::chrono::seconds(o.idle_timeout_seconds);
  options.observer = api::HttpObserver(metrics, tracer);
  options.tls_cert_file = o.tls_cert;
  options.tls_key_file = o.tls_key;
  auto server = http::Server::Listen(options, router);
  if (!server.ok()) {
    log::Error("cannot start the server", {{"error", Message(server.status())}});
    return 1;
  }
  // The operator's listener, when asked for: plain HTTP, no keys, its own address.
  http::Router admin_router = api::MakeRouter();
  std::unique_ptr<http::Server> admin;
  if (o.admin_port >= 0) {
    http::ServerOptions ao;
    ao.host = o.admin_host;
    ao.port = static_cast<uint16_t>(o.admin_port);
    ao.io_threads = 1;
    ao.handler_threads = 2;
    ao.read_timeout = options.read_timeout;
    ao.idle_timeout = options.idle_timeout;
    ao.observer = options.observer;
    auto listening = http::Server::Listen(ao, admin_router);
    if (!listening.ok()) {
      log::Error("cannot start the admin listener", {{"error", Message(listening.status())}});
      return 1;
    }
    admin = std::move(*listening);
  }

  const std::string store_url = o.store.empty() ? "file://" + (data / "store").string() : o.store;
  auto store = store::BlobStore::Open(store_url);
  if (!store.ok()) {
    log::Error("cannot open the store", {{"store", store_url}, {"error", Message(store.status())}});
    return 1;
  }
  // A gateway reads model.yaml files only: it validates and prices requests, workers run them.
  auto models = engine::ModelRepository::Load(o.models, o.device, /*pipelines=*/!gateway);
  if (!models.ok()) {
    log::Error("cannot load models", {{"error", Message(models.status())}});
    return 1;
  }

  // The broker's thread calls into these once the scheduler and job service exist. The mutex
  // makes clearing them at shutdown wait for a call in progress, so that none outlives them.
  struct BrokerTargets {
    absl::Mutex mu;
    sched::Scheduler* scheduler ABSL_GUARDED_BY(mu) = nullptr;
    sched::JobService* jobs ABSL_GUARDED_BY(mu) = nullptr;
  } targets;
  const std::string queue_url =
      o.queue.empty() ? "sqlite://" + (data / "queue.db").string() : o.queue;
  queue::QueueOptions qo;
  qo.idempotency_ttl_ms = static_cast<int64_t>(o.idempotency_hours * 3600 * 1000);
  if (distributed) {
    qo.records = store->get();
    int max_batch = 1;
    for (const engine::ModelEntry& e : (*models)->entries()) {
      if (!e.status.ok()) continue;
      qo.models.push_back(e.name);
      max_batch = std::max(max_batch, e.spec.max_batch);
    }
    if (!gateway) qo.consume = qo.models;
    qo.prefetch = o.prefetch > 0 ? o.prefetch : max_batch;
    qo.delivery_limit = o.delivery_limit;
    qo.handle_dead_letters = !worker;
    qo.on_available = [&targets](const std::string& model) {
      absl::MutexLock lock(&targets.mu);
      if (targets.scheduler) targets.scheduler->NotifyQueued(model);
    };
    if (!worker) {
      qo.on_event = [&targets](const std::string& id, const std::string& event) {
        absl::MutexLock lock(&targets.mu);
        if (targets.jobs) targets.jobs->Received(id, event);
      };
    }
  }
  auto queue = queue::JobQueue::Open(queue_url, qo);
  if (!queue.ok()) {
    log::Error("cannot open the job queue",
               {{"queue", queue_url}, {"error", Message(queue.status())}});
    return 1;
  }
  // A store or broker that does not answer (wrong bucket or credentials, endpoint down) makes
  // the server not ready instead of stopping it: both are checked again every few seconds.
  api::Dependencies dependencies;
  dependencies.SetStore((*store)->Check());
  if (!dependencies.store().ok()) {
    log::Error("the store is not usable; /readyz answers 503 until it is",
               {{"store", (*store)->Describe()}, {"error", Message(dependencies.store())}});
  }
  dependencies.SetQueue((*queue)->Check());
  DependencyChecker dependency_checker(store->get(), queue->get(), &dependencies);
  // Jobs left running by a previous process (killed, or the machine died) go back to the queue.
  auto orphans = (*queue)->ExpireLeases(/*all=*/true);
  if (!orphans.ok()) {
    log::Error("cannot recover jobs", {{"error", Message(orphans.status())}});
    return 1;
  }
  if (!orphans->empty()) log::Info("recovered interrupted jobs", {{"count", orphans->size()}});

  // Webhook receivers hold the webhook key, so result URLs are signed with another one.
  auto secret = SigningKey(o.webhook_secret, "KILN_WEBHOOK_SECRET", data, "webhook-secret",
                           "webhook signing key");
  if (!secret.ok()) {
    log::Error("no webhook signing key", {{"error", Message(secret.status())}});
    return 1;
  }

  auto webhook_policy = http::AddressPolicy::Make(o.webhook_allow, "webhook_allow");
  if (!webhook_policy.ok()) {
    log::Error("bad --webhook-allow", {{"error", Message(webhook_policy.status())}});
    return 1;
  }

  sched::JobEvents events;
  sched::WebhookOptions wo;
  wo.secret = *secret;
  wo.policy = *webhook_policy;
  wo.deliveries = &metrics.webhook_deliveries;
  queue::JobQueue* q = queue->get();
  sched::WebhookSender webhooks(wo, [q](const std::string& id, const nlohmann::json& status) {
    (void)q->SetWebhookStatus(id, status.dump());
  });
  // With API keys, the result URLs handed out are signed for a day, so that a browser can
  // load them without the key (gateways that honour each other's URLs share the key).
  UrlSigner file_urls;
  if ((*keys)->enabled()) {
    auto url_key = SigningKey(o.file_url_secret, "KILN_FILE_URL_SECRET", data, "file-url-secret",
                              "file URL signing key");
    if (!url_key.ok()) {
      log::Error("no file URL signing key", {{"error", Message(url_key.status())}});
      return 1;
    }
    file_urls = UrlSigner(*url_key, 24 * 3600);
  }
  // Per-key quotas; the daily image counts outlive restarts in the data directory. Declared
  // before the scheduler: the work it holds keeps quota tickets.
  std::unique_ptr<quota::UsageLedger> ledger;
  if ((*keys)->enabled() && !worker) {
    auto opened = quota::UsageLedger::Open((data / "usage.db").string());
    if (!opened.ok()) {
      log::Error("cannot open the usage ledger", {{"error", Message(opened.status())}});
      return 1;
    }
    ledger = std::move(*opened);
  }
  quota::Quotas quotas(q, ledger.get(), [] { return UnixMillis(); });
  sched::JobServiceOptions jo;
  jo.file_urls = file_urls;
  jo.max_attempts = o.max_attempts;
  jo.tracer = &tracer;
  jo.worker_id = worker_id;
  sched::JobService jobs(q, store->get(), models->get(), &events, &webhooks, jo);
  sched::SchedulerOptions so;
  so.replicas = o.replicas;
  so.worker_id = worker_id;
  so.device = o.device;
  so.lease = std::chrono::seconds(o.lease_seconds);
  so.max_queued_jobs = o.max_queued_jobs;
  so.max_queued_sync = o.max_queued_sync;
  so.idle_spin = std::chrono::microseconds(o.idle_spin_us);
  so.request_level = o.batching == "request";
  so.metrics = &metrics;
  so.tracer = &tracer;
  sched::Scheduler scheduler(models->get(), q, &jobs, so);
  jobs.set_scheduler(&scheduler);
  api::ApiContext context;
  context.models = models->get();
  context.scheduler = &scheduler;
  context.jobs = &jobs;
  context.queue = q;
  context.store = store->get();
  context.events = &events;
  context.web_dir = o.web_dir;
  context.webhook_policy = *webhook_policy;
  context.keys = keys->get();
  context.quotas = &quotas;
  context.file_urls = file_urls;
  context.dependencies = &dependencies;
  context.autoscale = {o.autoscale_target_seconds, o.autoscale_min_replicas,
                       o.autoscale_max_replicas};
  context.metrics = &metrics;
  context.tracer = &tracer;
  registry.AddCollector([&context] { api::CollectServingMetrics(context); });
  if (worker) {
    api::AddWorkerRoutes(router, context, /*operator_routes=*/!admin);
  } else {
    api::AddRoutes(router, context, /*operator_routes=*/!admin);
  }
  if (admin) api::AddAdminRoutes(admin_router, context, /*autoscale=*/!worker);

  if (absl::Status s = scheduler.Start(); !s.ok()) {
    log::Error("cannot start the scheduler", {{"error", Message(s)}});
    return 1;
  }
  // The config file is the whole truth: tenants it no longer lists go back to weight 1.
  std::map<std::string, double> weights;
  // With API keys, tenants have names; without, a tenant is a hash of its bearer token.
  for (const auto& [token, weight] : o.tenant_weights) {
    weights[(*keys)->enabled() ? token : api::TenantOfToken(token)] = weight;
  }
  if (absl::Status s = scheduler.SetTenantWeights(weights); !s.ok()) {
    log::Error("cannot set the tenant weights", {{"error", Message(s)}});
    return 1;
  }
  if (!o.tenant_weights.empty()) {
    log::Info("tenant weights set", {{"tenants", o.tenant_weights.size()}});
  }
  jobs.ResendPendingWebhooks();
  {
    absl::MutexLock lock(&targets.mu);
    targets.scheduler = &scheduler;
    targets.jobs = &jobs;
  }
  // On every way out, before the scheduler and the job service are destroyed.
  absl::Cleanup clear_targets = [&targets] {
    absl::MutexLock lock(&targets.mu);
    targets.scheduler = nullptr;
    targets.jobs = nullptr;
  };

  (*server)->Serve();
  // Whatever way this function leaves from here, the server stops before the services its
  // handlers call are destroyed (the normal path below shuts it down first, with the grace).
  if (admin) admin->Serve();
  absl::Cleanup stop_server = [&server, &admin] {
    (*server)->Shutdown(std::chrono::seconds(0));
    if (admin) admin->Shutdown(std::chrono::seconds(0));
  };
  // The signal handlers exist before "listening" tells anyone that the server is up: a SIGTERM
  // that comes right after it waits for io.run() instead of killing the process.
  boost::asio::io_context io;
  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  boost::asio::signal_set hangups(io, SIGHUP);
  const auto url_of = [](const std::string& host, const http::Server& s) {
    const bool v6 = host.find(':') != std::string::npos;
    return StrCat(s.tls() ? "https://" : "http://", v6 ? "[" : "", host, v6 ? "]" : "", ":",
                  s.port());
  };
  log::Info("listening", {{"url", url_of(o.host, **server)},
                          {"admin_url", admin ? url_of(o.admin_host, *admin) : "off"},
                          {"port", (*server)->port()},
                          {"models", (*models)->entries().size()},
                          {"role", o.role},
                          {"worker_id", worker_id},
                          {"queue", distributed ? "amqp://" : queue_url},
                          {"store", (*store)->Describe()},
                          {"batching", o.batching},
                          {"traces", tracer.enabled() ? o.otlp_endpoint.empty() ? "from OTEL_* env"
                                                                                : o.otlp_endpoint
                                                      : "off"},
                          {"replicas", o.replicas}});

  // Wait for a signal (nothing runs inside a signal handler); keep SSE streams alive meanwhile.
  boost::asio::steady_timer keepalive(io);
  // Why the process stops: a signal, preemption, or (--exit-when-idle) nothing left to do.
  // Every timer's handler checks it: cancel() cannot stop a handler already queued to run, and
  // one that re-armed its timer after the stop would keep io.run() from returning.
  std::string reason;
  std::function<void()> tick = [&] {
    keepalive.expires_after(std::chrono::seconds(15));
    keepalive.async_wait([&](const boost::system::error_code& e) {
      if (e || !reason.empty()) return;
      events.Keepalive();
      tick();
    });
  };
  tick();
  boost::asio::steady_timer idle_timer(io);
  boost::asio::steady_timer retention_timer(io);
  auto stop = [&](std::string why) {
    if (!reason.empty()) return;
    reason = std::move(why);
    signals.cancel();
    hangups.cancel();
    keepalive.cancel();
    idle_timer.cancel();
    retention_timer.cancel();
  };
  signals.async_wait([&](const boost::system::error_code& e, int sig) {
    if (!e) stop(StrCat("signal ", sig));
  });
  // SIGHUP reads the API keys file again; a file that does not parse leaves the keys in use.
  std::function<void()> on_hangup = [&] {
    hangups.async_wait([&](const boost::system::error_code& e, int) {
      if (e || !reason.empty()) return;
      if (absl::Status s = (*keys)->Reload(); !s.ok()) {
        log::Error("API keys not reloaded; the previous keys stay", {{"error", Message(s)}});
      } else if ((*keys)->enabled()) {
        log::Info("API keys reloaded", {{"keys", (*keys)->size()}});
      }
      on_hangup();
    });
  };
  on_hangup();
  std::unique_ptr<sched::PreemptionWatch> preemption;
  if (!o.preemption_url.empty()) {
    sched::PreemptionWatchOptions po;
    po.url = o.preemption_url;
    po.on_preempted = [&io, &stop] { boost::asio::post(io, [&stop] { stop("preempted"); }); };
    preemption = std::make_unique<sched::PreemptionWatch>(po);
  }
  // --exit-when-idle: stop once no job was queued for, or held by, this worker for that long.
  auto idle_since = std::chrono::steady_clock::now();
  std::function<void()> idle_tick = [&] {
    idle_timer.expires_after(std::chrono::seconds(1));
    idle_timer.async_wait([&](const boost::system::error_code& e) {
      if (e || !reason.empty()) return;
      if (!WorkerIdle(scheduler, *q)) idle_since = std::chrono::steady_clock::now();
      if (std::chrono::steady_clock::now() - idle_since >= std::chrono::seconds(o.exit_when_idle)) {
        stop("idle");
        return;
      }
      idle_tick();
    });
  };
  if (o.exit_when_idle > 0) idle_tick();
  // Retention (embedded mode; a bucket's lifecycle rule does it in the distributed mode).
  const auto retention = std::chrono::milliseconds(static_cast<int64_t>(o.retention_hours * 3.6e6));
  const auto retention_every =
      std::clamp(retention / 4, std::chrono::milliseconds(1000), std::chrono::milliseconds(60000));
  std::function<void()> retention_tick = [&] {
    retention_timer.expires_after(retention_every);
    retention_timer.async_wait([&](const boost::system::error_code& e) {
      if (e || !reason.empty()) return;
      auto purged = jobs.PurgeFinished(retention);
      if (!purged.ok()) log::Warn("retention failed", {{"error", Message(purged.status())}});
      retention_tick();
    });
  };
  if (retention.count() > 0 && !distributed && !worker) retention_tick();
  if (retention.count() > 0 && distributed && !worker) {
    log::Info(
        "retention is left to the bucket: give it a lifecycle rule on jobs/, batches/ and "
        "idempotency/",
        {{"retention_hours", o.retention_hours}});
  }
  io.run();

  // Preempted: the machine goes away soon (GCE: 30 s), whatever --grace-seconds says.
  const int grace = reason == "preempted" ? std::min(o.grace_seconds, o.preemption_grace_seconds)
                                          : o.grace_seconds;
  log::Info("shutting down",
            {{"reason", reason}, {"grace_seconds", grace}, {"in_flight", (*server)->in_flight()}});
  if (preemption) preemption->Stop();
  events.Shutdown();  // event streams end; clients reconnect elsewhere
  (*server)->Shutdown(std::chrono::seconds(grace));
  if (admin) admin->Shutdown(std::chrono::seconds(1));  // scrapes are short
  scheduler.Stop(std::chrono::seconds(grace));
  webhooks.Stop();
  log::Info("stopped");
  if (lock_fd >= 0) ::close(lock_fd);
  return 0;
}

}  // namespace kiln::cli
