// The subcommands of the `kiln` binary. Each returns the process exit code.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace kiln::cli {

struct ServeOptions {
  std::string host = "127.0.0.1";
  int port = 8080;
  std::string models = "models";
  std::string data = "data";
  std::string queue;         // sqlite:///..., amqp://...  (serving core / distributed mode)
  std::string store;         // file:///..., s3://...
  std::string role = "all";  // all | gateway | worker
  std::string worker_id;     // default: host-pid-random
  int prefetch = 0;          // amqp: unacked jobs per model; 0 = the model's max batch
  int delivery_limit = 20;   // amqp: x-delivery-limit
  std::string config;
  std::string device = "cpu";
  int threads = 0;  // torch intra-op threads; 0 = all cores
  bool log_text = false;
  std::string log_level = "info";  // debug | info | warn | error
  int replicas = 1;                // per model
  std::string batching = "step";   // step | request (the baseline, for benchmarks)
  int max_attempts = 3;
  int lease_seconds = 30;
  int grace_seconds = 30;
  int max_queued_jobs = 10000;
  int max_queued_sync = 64;
  int idle_spin_us = 200;  // an idle replica polls its queue this long before sleeping
  // HTTPS on the API listener: PEM certificate chain and key (both, or neither).
  std::string tls_cert;
  std::string tls_key;
  // A separate listener for /metrics and /v1/autoscale (and probes), without keys; -1: none
  // (they stay on the API port behind an admin key); 0: a free port.
  int admin_port = -1;
  std::string admin_host = "127.0.0.1";
  int read_timeout_seconds = 60;         // to receive one whole request head, and then its body
  int idle_timeout_seconds = 75;         // a keep-alive connection between requests
  double autoscale_target_seconds = 60;  // backlog one replica may carry (GET /v1/autoscale)
  int autoscale_min_replicas = 0;
  int autoscale_max_replicas = 16;
  std::string webhook_secret;  // default: $KILN_WEBHOOK_SECRET, else generated into --data
  std::string api_keys;        // YAML file of API keys (read again on SIGHUP); else $KILN_API_KEYS
  // HMAC key of signed result URLs (with API keys): default $KILN_FILE_URL_SECRET, else generated
  // into --data. Never the webhook key: webhook receivers hold that one.
  std::string file_url_secret;
  bool insecure_no_auth = false;  // serve the API beyond loopback without API keys
  // CIDR blocks webhooks may reach although they are loopback, private, link-local, ...
  std::vector<std::string> webhook_allow;
  std::string web_dir;        // empty: the UI files embedded in the binary
  std::string otlp_endpoint;  // OTLP/HTTP base URL; default $OTEL_EXPORTER_OTLP_ENDPOINT
  // Workers on Spot VMs: poll this URL (GCE: .../instance/preempted) and stop, checkpointing,
  // when it answers TRUE, within at most preemption_grace_seconds.
  std::string preemption_url;
  int preemption_grace_seconds = 20;
  int exit_when_idle = 0;          // workers: stop after this many seconds with no job (0 = never)
  double retention_hours = 168;    // finished jobs and their files are deleted after; 0 = never
  double idempotency_hours = 24;   // an Idempotency-Key names one job for this long
  int max_concurrent_decodes = 2;  // uploaded images decoded at once (each up to 4096x4096)
  // Config file only (API keys stay off command lines): bearer token (or "anonymous") ->
  // fair-sharing weight.
  std::map<std::string, double> tenant_weights;
};

struct GenerateOptions {
  std::string prompt;
  std::string model;
  std::string models = "models";
  std::string negative_prompt;
  std::optional<int> steps;
  std::optional<double> guidance;
  std::optional<uint64_t> seed;
  std::string sampler;
  std::string size;
  int n = 1;
  std::string image;
  std::optional<double> strength;
  bool edit = false;
  std::optional<double> image_guidance;
  std::string output;
  std::string device = "cpu";
  int threads = 0;
};

struct LoadtestOptions {
  std::string server = "http://127.0.0.1:8080";
  int concurrency = 0;
  double rate = 0;
  int64_t requests = 0;
  double duration = 0;
  std::string mix;
  std::string mode = "sync";
  std::string prompt = "a red circle on a white background";
  std::string model;
  int steps = 0;
  std::string size;
  int max_in_flight = 10000;
  int timeout = 300;
  int threads = 1;
  uint64_t seed = 1;
  std::string save;
  bool json = false;
  bool quiet = false;
};

struct ModelsInspectOptions {
  std::string path;
  bool no_load = false;  // read the descriptions and headers only
  bool json = false;
};

int RunServe(ServeOptions options);
int RunModelsInspect(const ModelsInspectOptions& options);
int RunLoadtest(const LoadtestOptions& options);
int RunGenerate(const GenerateOptions& options);

// Applies a YAML config file's keys to `options`, except those the command line gave:
// `given_on_command_line("max_queued_jobs")` says whether --max-queued-jobs was given (a flag
// given with its default value still wins over the file). Returns an error message, or empty.
std::string ApplyServeConfig(
    const std::string& path, ServeOptions& options,
    const std::function<bool(const std::string& key)>& given_on_command_line);

}  // namespace kiln::cli
