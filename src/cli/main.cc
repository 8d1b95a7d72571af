// kiln: one binary for serving, generating and load testing. See README.md.
#include <torch/torch.h>

#include <algorithm>

#include "CLI/CLI.hpp"
#include "cli/commands.h"
#include "core/allocator.h"
#include "core/logging.h"
#include "core/process_limits.h"

int main(int argc, char** argv) {
  kiln::TuneAllocatorForTensors();
  CLI::App app{"Kiln: image generation serving"};
  app.set_version_flag("--version", "kiln " KILN_VERSION " (LibTorch " TORCH_VERSION ")");
  app.require_subcommand(1);

  kiln::cli::ServeOptions serve;
  // `kiln worker` is `kiln serve --role worker`: the same options.
  auto add_serve_options = [&](CLI::App* cmd) {
    cmd->add_option("--host", serve.host, "Address to listen on")->capture_default_str();
    cmd->add_option("--port", serve.port, "Port (0 picks a free one)")->check(CLI::Range(0, 65535));
    cmd->add_option("--models", serve.models, "Model repository directory");
    cmd->add_option("--data", serve.data, "Data directory (queue and results)");
    cmd->add_option("--queue", serve.queue, "Job queue URL (sqlite:///path, amqp://...)");
    cmd->add_option("--store", serve.store, "Result store URL (file:///dir, s3://bucket/prefix)");
    cmd->add_option("--role", serve.role, "all | gateway | worker")
        ->check(CLI::IsMember({"all", "gateway", "worker"}));
    cmd->add_option("--config", serve.config, "YAML config file");
    cmd->add_option("--worker-id", serve.worker_id,
                    "This process's name in job records (default: host-pid-random)");
    cmd->add_option("--prefetch", serve.prefetch,
                    "amqp: unacked jobs per model a worker holds (default: the model's max batch)")
        ->check(CLI::Range(0, 65535));
    cmd->add_option("--delivery-limit", serve.delivery_limit,
                    "amqp: deliveries of one job before the broker dead-letters it")
        ->check(CLI::Range(1, 1000));
    cmd->add_option("--device", serve.device, "Torch device (cpu, cuda:0)");
    cmd->add_option("--threads", serve.threads, "Torch intra-op threads (0 = all cores)")
        ->check(CLI::Range(0, 1024));
    cmd->add_flag("--log-text", serve.log_text, "Plain-text logs instead of JSON lines");
    cmd->add_option("--log-level", serve.log_level, "debug | info | warn | error")
        ->check(CLI::IsMember({"debug", "info", "warn", "error"}));
    cmd->add_option("--replicas", serve.replicas, "Engine replicas per model")
        ->check(CLI::Range(1, 64));
    cmd->add_option("--batching", serve.batching, "step (continuous) | request (baseline)")
        ->check(CLI::IsMember({"step", "request"}));
    cmd->add_option("--max-attempts", serve.max_attempts, "Attempts per job before it fails")
        ->check(CLI::Range(1, 100));
    cmd->add_option("--lease-seconds", serve.lease_seconds, "Job lease without a heartbeat")
        ->check(CLI::Range(2, 86400));
    cmd->add_option("--grace-seconds", serve.grace_seconds, "Time to finish running work on stop")
        ->check(CLI::Range(0, 86400));
    cmd->add_option("--max-queued-jobs", serve.max_queued_jobs, "Queued jobs per model before 429")
        ->check(CLI::Range(1, 10000000));
    cmd->add_option("--autoscale-target-seconds", serve.autoscale_target_seconds,
                    "Autoscaling: device-seconds of backlog one replica may carry")
        ->check(CLI::Range(0.001, 1e6));
    cmd->add_option("--autoscale-min-replicas", serve.autoscale_min_replicas,
                    "Autoscaling: fewest replicas per model (0 = scale to zero)")
        ->check(CLI::Range(0, 10000));
    cmd->add_option("--autoscale-max-replicas", serve.autoscale_max_replicas,
                    "Autoscaling: most replicas per model")
        ->check(CLI::Range(1, 10000));
    cmd->add_option("--max-queued-sync", serve.max_queued_sync,
                    "Waiting sync requests per model before 429")
        ->check(CLI::Range(1, 100000));
    cmd->add_option("--tls-cert", serve.tls_cert,
                    "Serve HTTPS: PEM certificate chain (leaf first); needs --tls-key");
    cmd->add_option("--tls-key", serve.tls_key, "Serve HTTPS: PEM private key of --tls-cert");
    cmd->add_option("--admin-port", serve.admin_port,
                    "Serve /metrics and /v1/autoscale (and probes) on this port, without keys, "
                    "instead of on the API port (-1 = off, 0 = a free port)")
        ->check(CLI::Range(-1, 65535));
    cmd->add_option("--admin-host", serve.admin_host, "Address of the --admin-port listener")
        ->capture_default_str();
    cmd->add_option("--read-timeout-seconds", serve.read_timeout_seconds,
                    "A request's head, and then its body, must arrive within this (slow clients "
                    "are cut off)")
        ->check(CLI::Range(1, 3600));
    cmd->add_option("--idle-timeout-seconds", serve.idle_timeout_seconds,
                    "A keep-alive connection without a request is closed after this")
        ->check(CLI::Range(1, 3600));
    cmd->add_option("--idle-spin-us", serve.idle_spin_us,
                    "An idle replica polls for work this long before it sleeps (0 = never)")
        ->check(CLI::Range(0, 100000));
    cmd->add_option("--webhook-secret", serve.webhook_secret,
                    "HMAC key for webhook signatures (default $KILN_WEBHOOK_SECRET)");
    cmd->add_option("--api-keys", serve.api_keys,
                    "YAML file of API keys (tenant, role), read again on SIGHUP "
                    "(default $KILN_API_KEYS, the same YAML)");
    cmd->add_option("--file-url-secret", serve.file_url_secret,
                    "HMAC key of signed result URLs (default $KILN_FILE_URL_SECRET, else one "
                    "generated into --data); gateways that honour each other's URLs share it");
    cmd->add_flag("--insecure-no-auth", serve.insecure_no_auth,
                  "Serve the API on a non-loopback address without API keys");
    cmd->add_option("--webhook-allow", serve.webhook_allow,
                    "CIDR blocks webhooks may reach although loopback, private or link-local "
                    "(e.g. 10.0.0.0/8,127.0.0.1/32); others are refused")
        ->delimiter(',');
    cmd->add_option(
        "--otlp-endpoint", serve.otlp_endpoint,
        "Export traces over OTLP/HTTP to this base URL (default $OTEL_EXPORTER_OTLP_ENDPOINT)");
    cmd->add_option("--preemption-url", serve.preemption_url,
                    "Worker: poll this URL (GCE metadata instance/preempted) and stop, "
                    "checkpointing, when it answers TRUE");
    cmd->add_option("--preemption-grace-seconds", serve.preemption_grace_seconds,
                    "Worker: time to finish running work once preempted (at most --grace-seconds)")
        ->check(CLI::Range(0, 3600));
    cmd->add_option("--exit-when-idle", serve.exit_when_idle,
                    "Worker: stop after this many seconds with no job queued or held (0 = never)")
        ->check(CLI::Range(0, 86400));
    cmd->add_option("--retention-hours", serve.retention_hours,
                    "Delete finished jobs and their files this long after they end (0 = keep)")
        ->check(CLI::Range(0.0, 1e6));
    cmd->add_option("--idempotency-hours", serve.idempotency_hours,
                    "How long an Idempotency-Key keeps returning its job")
        ->check(CLI::Range(0.0, 1e6));
    cmd->add_option("--max-concurrent-decodes", serve.max_concurrent_decodes,
                    "Uploaded images decoded at once; the rest wait (each holds up to ~117 MB)")
        ->check(CLI::Range(1, 64));
    cmd->add_option("--web-dir", serve.web_dir,
                    "Serve the UI from this folder instead of the embedded files (for UI work)")
        ->check(CLI::ExistingDirectory);
  };
  auto* s = app.add_subcommand("serve", "Serve the HTTP API");
  add_serve_options(s);
  auto* w = app.add_subcommand(
      "worker", "Run jobs from the broker (kiln serve --role worker; serves probes and /metrics)");
  add_serve_options(w);

  kiln::cli::GenerateOptions gen;
  auto* g = app.add_subcommand("generate", "Generate images from a prompt into PNG files");
  g->add_option("--prompt", gen.prompt, "Prompt (the instruction, with --edit)")->required();
  g->add_option("--model", gen.model, "Model name (default: the first in --models)");
  g->add_option("--models", gen.models, "Model repository directory");
  g->add_option("--negative-prompt", gen.negative_prompt, "Negative prompt");
  g->add_option("--steps", gen.steps, "Denoising steps (1..150)");
  g->add_option("--guidance", gen.guidance, "Classifier-free guidance scale (0..30)");
  g->add_option("--image-guidance", gen.image_guidance, "Image guidance scale for --edit");
  g->add_option("--seed", gen.seed, "Seed (random when absent)");
  g->add_option("--sampler", gen.sampler, "euler, euler_a, ddim, dpmpp_2m (+_karras)");
  g->add_option("--size", gen.size, "WxH");
  g->add_option("--n", gen.n, "Images (1..10); OUT gets an index suffix when > 1");
  g->add_option("--image", gen.image, "Input image (PNG/JPEG) for img2img or --edit");
  g->add_option("--strength", gen.strength, "img2img strength in (0, 1]");
  g->add_flag("--edit", gen.edit, "Instruction edit of --image (InstructPix2Pix style)");
  g->add_option("--output", gen.output, "Output PNG path")->required();
  g->add_option("--device", gen.device, "Torch device (cpu, cuda:0)");
  g->add_option("--threads", gen.threads, "Torch intra-op threads (0 = all cores)");

  kiln::cli::LoadtestOptions lt;
  auto* l = app.add_subcommand("loadtest", "Load-test a server and report latency and throughput");
  l->add_option("--server", lt.server, "Server URL (http://host:port)");
  l->add_option("--concurrency", lt.concurrency, "Closed loop: requests in flight")
      ->check(CLI::Range(1, 100000));
  l->add_option("--rate", lt.rate, "Open loop: mean requests per second (Poisson arrivals)")
      ->check(CLI::Range(0.001, 1e6));
  l->add_option("--requests", lt.requests, "Stop after this many requests")
      ->check(CLI::Range(int64_t{1}, int64_t{100000000}));
  l->add_option("--duration", lt.duration, "Stop issuing after this many seconds")
      ->check(CLI::Range(0.1, 86400.0));
  l->add_option(
      "--mix", lt.mix,
      "JSONL request templates: {\"weight\": 2, \"mode\": \"sync\"|\"job\", \"request\": {...}}");
  l->add_option("--mode", lt.mode, "sync (/v1/images/generations) or job (/v1/jobs, polled)")
      ->check(CLI::IsMember({"sync", "job"}));
  l->add_option("--prompt", lt.prompt, "Prompt, without --mix");
  l->add_option("--model", lt.model, "Model, without --mix");
  l->add_option("--steps", lt.steps, "Steps, without --mix")->check(CLI::Range(1, 1000));
  l->add_option("--size", lt.size, "WxH, without --mix");
  l->add_option("--max-in-flight", lt.max_in_flight, "Open loop: arrivals beyond this are skipped")
      ->check(CLI::Range(1, 100000));
  l->add_option("--timeout", lt.timeout, "Seconds per request (jobs: until they end)")
      ->check(CLI::Range(1, 86400));
  l->add_option("--threads", lt.threads, "Client I/O threads")->check(CLI::Range(1, 64));
  l->add_option("--seed", lt.seed, "Seed for picking templates");
  l->add_option("--save", lt.save, "Write every image into this folder");
  l->add_flag("--json", lt.json, "Print the report as JSON");
  l->add_flag("--quiet", lt.quiet, "No progress line");

  kiln::cli::ModelsInspectOptions inspect;
  auto* models = app.add_subcommand("models", "Inspect models");
  models->require_subcommand(1);
  auto* mi = models->add_subcommand(
      "inspect",
      "What Kiln sees in a model folder or checkpoint file: architecture, components, "
      "dtypes, parameter counts, problems");
  mi->add_option("path", inspect.path, "Model folder or .safetensors checkpoint")->required();
  mi->add_flag("--no-load", inspect.no_load, "Read descriptions and headers only");
  mi->add_flag("--json", inspect.json, "Print the report as JSON");

  CLI11_PARSE(app, argc, argv);
  if (l->parsed()) return kiln::cli::RunLoadtest(lt);
  if (mi->parsed()) {
    kiln::log::Init(kiln::log::Level::kError, false);
    return kiln::cli::RunModelsInspect(inspect);
  }

  if (s->parsed() || w->parsed()) {
    CLI::App* cmd = w->parsed() ? w : s;
    // Whether a config key's flag (max_queued_jobs: --max-queued-jobs) was on the command line.
    auto given = [cmd, w](const std::string& key) {
      if (key == "role" && w->parsed()) return true;  // `kiln worker` is the role
      std::string flag = "--" + key;
      std::replace(flag.begin(), flag.end(), '_', '-');
      const CLI::Option* option = cmd->get_option_no_throw(flag);
      return option != nullptr && option->count() > 0;
    };
    if (w->parsed()) serve.role = "worker";
    // Several workers share a host (one per GPU), beside a gateway on 8080: a worker takes a
    // free port unless told one (the "listening" log line says which; deployments pass --port).
    if (w->parsed() && !given("port")) serve.port = 0;
    if (!serve.config.empty()) {
      std::string err = kiln::cli::ApplyServeConfig(serve.config, serve, given);
      if (!err.empty()) {
        fprintf(stderr, "kiln serve: %s\n", err.c_str());
        return 2;
      }
    }
    const kiln::log::Level level = serve.log_level == "debug"   ? kiln::log::Level::kDebug
                                   : serve.log_level == "warn"  ? kiln::log::Level::kWarn
                                   : serve.log_level == "error" ? kiln::log::Level::kError
                                                                : kiln::log::Level::kInfo;
    kiln::log::Init(level, !serve.log_text);
    // Every connection is a descriptor: take what the hard limit allows (the soft limit is
    // often 1024), so that the limit is the operator's choice, not the shell's default.
    if (auto raised = kiln::RaiseOpenFileLimit(); !raised.ok()) {
      kiln::log::Warn("cannot raise the open-file limit", {{"error", raised.status().ToString()}});
    } else {
      kiln::log::Info("open-file limit", {{"limit", *raised}});
    }
    return kiln::cli::RunServe(serve);
  }
  kiln::log::Init(kiln::log::Level::kWarn, false);
  return kiln::cli::RunGenerate(gen);
}
