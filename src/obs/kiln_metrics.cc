#include "obs/kiln_metrics.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace kiln::obs {
namespace {

// 0.5 ms .. ~33 s.
std::vector<double> LatencyBuckets() { return ExponentialBuckets(0.0005, 2, 17); }

}  // namespace

KilnMetrics::KilnMetrics(Registry& r)
    : registry(r),
      http_requests(r.AddCounter("kiln_http_requests_total", "HTTP requests answered.",
                                 {"method", "route", "code"})),
      http_duration(r.AddHistogram("kiln_http_request_duration_seconds",
                                   "Time from a whole request read to its response ready.",
                                   {"method", "route"}, LatencyBuckets())),
      request_duration(r.AddHistogram(
          "kiln_request_duration_seconds",
          "Generation requests from admission (sync) or submission (job) to their images.",
          {"model", "kind"}, ExponentialBuckets(0.001, 2, 20))),
      images(r.AddCounter("kiln_images_total", "Images generated.", {"model"})),
      requests_finished(r.AddCounter("kiln_requests_finished_total",
                                     "Generation requests that ended, by outcome.",
                                     {"model", "kind", "outcome"})),
      batch_rows(r.AddHistogram("kiln_batch_rows", "Denoiser rows run together in one step.",
                                {"model"}, {1, 2, 4, 8, 16, 32, 64, 128})),
      step_duration(r.AddHistogram("kiln_step_duration_seconds",
                                   "One denoising step of a whole batch.", {"model"},
                                   ExponentialBuckets(0.0001, 2, 18))),
      webhook_deliveries(r.AddCounter("kiln_webhook_deliveries_total",
                                      "Webhook deliveries that ended, by outcome.", {"outcome"})),
      queue_depth(r.AddGauge("kiln_queue_depth", "Requests and jobs waiting to start.",
                             {"model", "priority"})),
      queue_backlog(r.AddGauge("kiln_queue_backlog_seconds",
                               "Predicted device-seconds of the waiting requests and jobs.",
                               {"model", "priority"})),
      requests_running(r.AddGauge("kiln_requests_running",
                                  "Requests and jobs held by this process's replicas.", {"model"})),
      jobs(r.AddGauge("kiln_jobs", "Jobs in the durable queue, by state.", {"model", "state"})),
      replicas(r.AddGauge("kiln_replicas", "Engine replicas serving the model.", {"model"})),
      model_load_seconds(
          r.AddGauge("kiln_model_load_seconds", "Seconds the model took to load.", {"model"})),
      model_ready(r.AddGauge("kiln_model_ready", "1 when the model loaded, else 0.", {"model"})),
      autoscale_desired(r.AddGauge("kiln_autoscale_desired_replicas",
                                   "Replicas the autoscaling policy asks for.", {"model"})),
      autoscale_backlog(r.AddGauge("kiln_autoscale_backlog_seconds",
                                   "Queued and running work in device-seconds.", {"model"})),
      event_streams(r.AddGauge("kiln_event_streams", "Job event streams (SSE) open.", {})) {}

void AddProcessMetrics(Registry& r) {
  auto& cpu = r.AddCounter("kiln_process_cpu_seconds_total", "User and system CPU time.");
  auto& rss = r.AddGauge("kiln_process_resident_memory_bytes", "Resident memory size.");
  auto& vsz = r.AddGauge("kiln_process_virtual_memory_bytes", "Virtual memory size.");
  auto& fds = r.AddGauge("kiln_process_open_fds", "Open file descriptors.");
  auto& max_fds = r.AddGauge("kiln_process_max_fds", "The limit on open file descriptors.");
  auto& threads = r.AddGauge("kiln_process_threads", "Threads in the process.");
  auto& start = r.AddGauge("kiln_process_start_time_seconds",
                           "Start time of the process since the Unix epoch.");
  const double ticks = static_cast<double>(::sysconf(_SC_CLK_TCK));
  const double page = static_cast<double>(::sysconf(_SC_PAGESIZE));
  r.AddCollector([&cpu, &rss, &vsz, &fds, &max_fds, &threads, &start, ticks, page] {
    try {
      // /proc/self/stat: fields after the parenthesised command name, see proc(5).
      std::ifstream stat_file("/proc/self/stat");
      std::string stat((std::istreambuf_iterator<char>(stat_file)), {});
      const size_t close = stat.rfind(')');
      if (close != std::string::npos) {
        std::istringstream in(stat.substr(close + 2));
        std::vector<std::string> f((std::istream_iterator<std::string>(in)), {});
        // f[0] is field 3 (state): utime = 14, stime = 15, num_threads = 20, starttime = 22,
        // vsize = 23, rss = 24.
        if (f.size() > 21) {
          cpu.With({}).MirrorTo((std::stod(f[11]) + std::stod(f[12])) / ticks);
          threads.With({}).Set(std::stod(f[17]));
          vsz.With({}).Set(std::stod(f[20]));
          rss.With({}).Set(std::stod(f[21]) * page);
          std::ifstream uptime_file("/proc/uptime");
          double uptime = 0;
          if (uptime_file >> uptime) {
            const double boot = static_cast<double>(::time(nullptr)) - uptime;
            start.With({}).Set(boot + std::stod(f[19]) / ticks);
          }
        }
      }
    } catch (const std::exception&) {
      // A /proc format this code does not know: leave the last values.
    }
    std::error_code ec;
    double open = 0;
    for (auto it = std::filesystem::directory_iterator("/proc/self/fd", ec);
         !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
      ++open;
    }
    fds.With({}).Set(open);
    const long max = ::sysconf(_SC_OPEN_MAX);
    if (max > 0) max_fds.With({}).Set(static_cast<double>(max));
  });
}

}  // namespace kiln::obs
