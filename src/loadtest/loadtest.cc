#include "loadtest/loadtest.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <numeric>
#include <random>

#include "absl/synchronization/mutex.h"
#include "core/status_util.h"
#include "core/strings.h"
#include "http/load_client.h"

namespace kiln::loadtest {
namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

constexpr int kMaxTemplates = 1000;

struct Endpoint {
  std::string host, port;
};

absl::StatusOr<Endpoint> ParseServer(std::string_view url) {
  constexpr std::string_view kScheme = "http://";
  if (!url.starts_with(kScheme)) {
    return WithField(
        absl::InvalidArgumentError(
            StrCat("--server must be an http:// URL (TLS is not supported), not '", url, "'")),
        "server");
  }
  std::string_view authority = url.substr(kScheme.size());
  authority = authority.substr(0, authority.find('/'));
  Endpoint e{"", "80"};
  if (!authority.empty() && authority.front() == '[') {
    const size_t close = authority.find(']');
    if (close == std::string_view::npos) {
      return absl::InvalidArgumentError("--server: unbalanced '[' in the host");
    }
    e.host = std::string(authority.substr(1, close - 1));
    if (authority.size() > close + 1) {
      if (authority[close + 1] != ':') return absl::InvalidArgumentError("--server: bad port");
      e.port = std::string(authority.substr(close + 2));
    }
  } else {
    const size_t colon = authority.rfind(':');
    e.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) e.port = std::string(authority.substr(colon + 1));
  }
  const bool digits =
      !e.port.empty() && e.port.size() <= 5 &&
      std::all_of(e.port.begin(), e.port.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (e.host.empty() || !digits) {
    return absl::InvalidArgumentError(
        StrCat("--server: cannot read host and port from '", url, "'"));
  }
  return e;
}

// The path of a result URL ("http://host:port/v1/files/x" -> "/v1/files/x").
std::string PathOf(const std::string& url) {
  const size_t scheme = url.find("://");
  if (scheme == std::string::npos) return url;
  const size_t slash = url.find('/', scheme + 3);
  return slash == std::string::npos ? "/" : url.substr(slash);
}

bool IsFinalState(const std::string& s) {
  return s == "succeeded" || s == "failed" || s == "cancelled";
}

// The error key for a non-2xx answer: the status and the server's error code when it has one.
std::string HttpErrorKey(const http::LoadResponse& r) {
  json body = json::parse(r.body, nullptr, false);
  std::string key = StrCat("HTTP ", r.status);
  if (body.is_object() && body.contains("error") && body["error"].is_object()) {
    const json& code = body["error"]["code"];
    if (code.is_string()) key += StrCat(" ", code.get<std::string>());
  }
  return key;
}

class Driver {
 public:
  Driver(const Options& o, http::LoadClient* client) : o_(o), client_(client), rng_(o.seed) {
    for (const Template& t : o_.mix) total_weight_ += t.weight;
  }

  Report Run() {
    start_ = Clock::now();
    end_ = o_.duration_seconds > 0
               ? start_ + std::chrono::duration_cast<Clock::duration>(
                              std::chrono::duration<double>(o_.duration_seconds))
               : Clock::time_point::max();
    if (o_.concurrency > 0) {
      std::vector<int> slots;
      {
        absl::MutexLock lock(&mu_);
        for (int i = 0; i < o_.concurrency && TakeSlot(); ++i) slots.push_back(i);
      }
      for (size_t i = 0; i < slots.size(); ++i) IssueOne();
    } else {
      ScheduleArrival();
    }
    // Everything issued has ended, or the time bound has passed.
    const auto bound = (o_.duration_seconds > 0 ? end_ : Clock::time_point::max());
    const auto hard_end = bound == Clock::time_point::max()
                              ? Clock::time_point::max()
                              : bound + std::chrono::seconds(o_.timeout_seconds + 10);
    absl::MutexLock lock(&mu_);
    while (true) {
      mu_.AwaitWithTimeout(absl::Condition(this, &Driver::Done), absl::Milliseconds(200));
      if (o_.progress) PrintProgress();
      if (Done()) break;
      if (Clock::now() > hard_end) {
        report_.errors["still running at the time limit"] += in_flight_;
        break;
      }
    }
    if (o_.progress) fprintf(stderr, "\n");
    report_.seconds = std::chrono::duration<double>(Clock::now() - start_).count();
    std::sort(report_.latencies.begin(), report_.latencies.end());
    stopped_ = true;
    return report_;
  }

 private:
  struct Attempt {
    const Template* t = nullptr;
    Clock::time_point start;
    int64_t seq = 0;
  };

  bool CanIssue() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (stopped_) return false;
    if (o_.requests > 0 && issued_ >= o_.requests) return false;
    return Clock::now() < end_;
  }
  bool TakeSlot() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!CanIssue()) return false;
    ++issued_;
    ++in_flight_;
    return true;
  }
  bool Done() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return in_flight_ == 0 && saving_ == 0 && !CanIssue();
  }

  const Template* Pick() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    double x = std::uniform_real_distribution<double>(0, total_weight_)(rng_);
    for (const Template& t : o_.mix) {
      if ((x -= t.weight) < 0) return &t;
    }
    return &o_.mix.back();
  }

  // REQUIRES: a slot was taken for it.
  void IssueOne() {
    Attempt a;
    {
      absl::MutexLock lock(&mu_);
      a.t = Pick();
      a.seq = report_.sent++;
    }
    a.start = Clock::now();
    http::LoadRequest r;
    r.method = "POST";
    r.target = a.t->mode == Mode::kSync ? "/v1/images/generations" : "/v1/jobs";
    r.body = a.t->request.dump();
    r.content_type = "application/json";
    client_->Send(std::move(r), [this, a](http::LoadResponse resp) {
      if (!resp.error.empty()) return Finish(a, resp.error, {});
      if (a.t->mode == Mode::kSync) {
        if (resp.status != 200) return Finish(a, HttpErrorKey(resp), {});
        json body = json::parse(resp.body, nullptr, false);
        if (!body.is_object() || !body["data"].is_array()) {
          return Finish(a, "malformed answer", {});
        }
        return Finish(a, "", body["data"]);
      }
      if (resp.status != 202 && resp.status != 200) return Finish(a, HttpErrorKey(resp), {});
      json job = json::parse(resp.body, nullptr, false);
      if (!job.is_object() || !job["id"].is_string()) return Finish(a, "malformed answer", {});
      Follow(a, job);
    });
  }

  // Polls a job until it ends; the next poll comes sooner for jobs about to end.
  void Follow(const Attempt& a, const json& job) {
    const std::string state = job.value("state", "");
    if (state == "succeeded") return Finish(a, "", job.value("data", json()));
    if (IsFinalState(state)) {
      std::string code = "job " + state;
      const json error = job.value("error", json());
      if (error.is_object() && error.value("code", json()).is_string()) {
        code += StrCat(" ", error["code"].get<std::string>());
      }
      return Finish(a, code, {});
    }
    if (Clock::now() - a.start > std::chrono::seconds(o_.timeout_seconds)) {
      return Finish(a, "job timeout", {});
    }
    const double eta = job.value("eta_seconds", 0.1);
    const double wait = std::clamp(eta / 2, 0.02, 1.0);
    const std::string id = job.value("id", "");
    client_->After(
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::duration<double>(wait)),
        [this, a, id] {
          http::LoadRequest r;
          r.target = "/v1/jobs/" + id;
          client_->Send(std::move(r), [this, a, id](http::LoadResponse resp) {
            if (!resp.error.empty()) return Finish(a, resp.error, {});
            if (resp.status != 200) return Finish(a, HttpErrorKey(resp), {});
            json job = json::parse(resp.body, nullptr, false);
            if (!job.is_object()) return Finish(a, "malformed answer", {});
            Follow(a, job);
          });
        });
  }

  void Finish(const Attempt& a, const std::string& error, const json& data) {
    const double latency = std::chrono::duration<double>(Clock::now() - a.start).count();
    if (error.empty() && !o_.save_dir.empty()) Save(a.seq, data);
    bool next = false;
    {
      absl::MutexLock lock(&mu_);
      --in_flight_;
      if (error.empty()) {
        ++report_.ok;
        report_.latencies.push_back(latency);
        report_.images += data.is_array() ? static_cast<int64_t>(data.size()) : 0;
      } else {
        ++report_.errors[error];
      }
      if (o_.concurrency > 0) next = TakeSlot();
    }
    if (next) IssueOne();
  }

  void Save(int64_t seq, const json& data) {
    if (!data.is_array()) return;
    for (size_t i = 0; i < data.size(); ++i) {
      const std::string path =
          (std::filesystem::path(o_.save_dir) / StrCat(seq, "-", i, ".png")).string();
      if (!data[i].is_object()) continue;
      const json b64 = data[i].value("b64_json", json()), url = data[i].value("url", json());
      if (b64.is_string()) {
        auto bytes = Base64Decode(b64.get<std::string>());
        if (bytes.ok()) std::ofstream(path, std::ios::binary) << *bytes;
        continue;
      }
      if (!url.is_string()) continue;
      {
        absl::MutexLock lock(&mu_);
        ++saving_;
      }
      http::LoadRequest r;
      r.target = PathOf(url.get<std::string>());
      client_->Send(std::move(r), [this, path](http::LoadResponse resp) {
        if (resp.status == 200) std::ofstream(path, std::ios::binary) << resp.body;
        absl::MutexLock lock(&mu_);
        --saving_;
        if (resp.status != 200) ++report_.errors["image download failed"];
      });
    }
  }

  // Open loop: arrivals are a Poisson process of rate o_.rate.
  void ScheduleArrival() {
    const double gap = std::exponential_distribution<double>(o_.rate)(arrival_rng_);
    client_->After(
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::duration<double>(gap)),
        [this] {
          bool issue = false, more = false;
          {
            absl::MutexLock lock(&mu_);
            if (!CanIssue()) return;
            if (in_flight_ >= o_.max_in_flight) {
              ++issued_;
              ++report_.skipped;
            } else {
              issue = TakeSlot();
            }
            more = CanIssue();
          }
          if (issue) IssueOne();
          if (more) ScheduleArrival();
        });
  }

  void PrintProgress() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const double elapsed = std::chrono::duration<double>(Clock::now() - start_).count();
    int64_t failed = 0;
    for (const auto& [k, n] : report_.errors) failed += n;
    const int64_t done = report_.ok + failed;
    double fraction = 0;
    if (o_.requests > 0) fraction = static_cast<double>(done) / static_cast<double>(o_.requests);
    if (o_.duration_seconds > 0) fraction = std::max(fraction, elapsed / o_.duration_seconds);
    fraction = std::clamp(fraction, 0.0, 1.0);
    const int width = 30, filled = static_cast<int>(fraction * width);
    fprintf(stderr, "\r[%s%s] %3.0f%%  done %lld  in flight %d  %.1f/s  errors %lld   ",
            std::string(static_cast<size_t>(filled), '#').c_str(),
            std::string(static_cast<size_t>(width - filled), '.').c_str(), fraction * 100,
            static_cast<long long>(done), in_flight_,
            elapsed > 0 ? static_cast<double>(report_.ok) / elapsed : 0.0,
            static_cast<long long>(failed));
    fflush(stderr);
  }

  const Options& o_;
  http::LoadClient* const client_;
  double total_weight_ = 0;
  Clock::time_point start_, end_;
  std::mt19937_64 arrival_rng_{12345};  // only the arrival timer uses it (one at a time)

  mutable absl::Mutex mu_;
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu_);
  int64_t issued_ ABSL_GUARDED_BY(mu_) = 0;
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  int saving_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  Report report_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

absl::StatusOr<std::vector<Template>> ParseMix(std::string_view text, Mode default_mode) {
  std::vector<Template> out;
  int line_no = 0;
  for (std::string_view line : Split(text, "\n", /*skip_empty=*/false)) {
    ++line_no;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.remove_suffix(1);
    if (line.empty() || line.front() == '#') continue;
    auto fail = [&](const std::string& why) {
      return absl::InvalidArgumentError(StrCat("mix line ", line_no, ": ", why));
    };
    json j = json::parse(line, nullptr, false);
    if (!j.is_object()) return fail("not a JSON object");
    for (const auto& [key, value] : j.items()) {
      if (key != "weight" && key != "mode" && key != "request") {
        return fail(StrCat("unknown field '", key, "' (weight, mode, request)"));
      }
    }
    Template t;
    t.mode = default_mode;
    if (j.contains("weight")) {
      if (!j["weight"].is_number() || !(j["weight"].get<double>() > 0) ||
          j["weight"].get<double>() > 1e6) {
        return fail("weight must be a number in (0, 1e6]");
      }
      t.weight = j["weight"].get<double>();
    }
    if (j.contains("mode")) {
      if (j["mode"] == "sync") {
        t.mode = Mode::kSync;
      } else if (j["mode"] == "job") {
        t.mode = Mode::kJob;
      } else {
        return fail("mode must be \"sync\" or \"job\"");
      }
    }
    if (!j.contains("request") || !j["request"].is_object()) {
      return fail("request must be an object (the body of /v1/images/generations or /v1/jobs)");
    }
    t.request = j["request"];
    if (out.size() >= kMaxTemplates) return fail(StrCat("more than ", kMaxTemplates, " templates"));
    out.push_back(std::move(t));
  }
  if (out.empty()) return absl::InvalidArgumentError("the mix has no templates");
  return out;
}

double Report::Percentile(double p) const {
  if (latencies.empty()) return 0;
  const auto rank =
      static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(latencies.size())));
  return latencies[std::clamp<size_t>(rank, 1, latencies.size()) - 1];
}

nlohmann::json Report::ToJson() const {
  json errs = json::object();
  int64_t failed = 0;
  for (const auto& [k, n] : errors) {
    errs[k] = n;
    failed += n;
  }
  return {{"sent", sent},
          {"ok", ok},
          {"failed", failed},
          {"skipped", skipped},
          {"images", images},
          {"seconds", seconds},
          {"throughput_rps", Throughput()},
          {"latency_seconds",
           {{"p50", Percentile(50)},
            {"p90", Percentile(90)},
            {"p99", Percentile(99)},
            {"max", latencies.empty() ? 0 : latencies.back()},
            {"mean", latencies.empty() ? 0
                                       : std::accumulate(latencies.begin(), latencies.end(), 0.0) /
                                             static_cast<double>(latencies.size())}}},
          {"errors", errs}};
}

std::string Report::ToText() const {
  const json j = ToJson();
  std::string out =
      StrCat("requests  sent ", sent, ", ok ", ok, ", failed ", j["failed"].get<int64_t>());
  if (skipped > 0) out += StrCat(", skipped ", skipped, " (over --max-in-flight)");
  char line[256];
  std::snprintf(line, sizeof line,
                "\nduration  %.2f s\nthroughput %.2f requests/s, %.2f images/s\n", seconds,
                Throughput(), seconds > 0 ? static_cast<double>(images) / seconds : 0.0);
  out += line;
  std::snprintf(line, sizeof line, "latency   p50 %.4f s  p90 %.4f s  p99 %.4f s  max %.4f s\n",
                Percentile(50), Percentile(90), Percentile(99),
                latencies.empty() ? 0.0 : latencies.back());
  out += line;
  if (!errors.empty()) {
    out += "errors\n";
    for (const auto& [k, n] : errors) out += StrCat("  ", n, "  ", k, "\n");
  }
  if (latencies.size() >= 2 && latencies.back() > latencies.front()) {
    // Ten log-spaced bins from the fastest to the slowest answer.
    const double lo = std::max(latencies.front(), 1e-6), hi = latencies.back();
    const int bins = 10;
    std::vector<int64_t> counts(bins, 0);
    for (double v : latencies) {
      const double x = std::log(std::max(v, lo) / lo) / std::log(hi / lo);
      counts[std::clamp(static_cast<int>(x * bins), 0, bins - 1)]++;
    }
    const int64_t most = *std::max_element(counts.begin(), counts.end());
    out += "histogram (seconds, upper bound)\n";
    for (int b = 0; b < bins; ++b) {
      const double upper = lo * std::pow(hi / lo, static_cast<double>(b + 1) / bins);
      const int bar =
          static_cast<int>(40.0 * static_cast<double>(counts[b]) / static_cast<double>(most));
      std::snprintf(line, sizeof line, "  %9.4f | %-40s %lld\n", upper,
                    std::string(static_cast<size_t>(bar), '#').c_str(),
                    static_cast<long long>(counts[b]));
      out += line;
    }
  }
  return out;
}

absl::StatusOr<Report> Run(const Options& o) {
  if ((o.concurrency > 0) == (o.rate > 0)) {
    return absl::InvalidArgumentError(
        "give one of --concurrency (closed loop) or --rate (open loop)");
  }
  if ((o.requests > 0) == (o.duration_seconds > 0)) {
    return absl::InvalidArgumentError("give one of --requests or --duration");
  }
  if (o.concurrency > 100000) return absl::InvalidArgumentError("--concurrency must be <= 100000");
  if (o.rate > 1e6) return absl::InvalidArgumentError("--rate must be <= 1000000");
  if (o.mix.empty()) return absl::InvalidArgumentError("no request templates");
  if (!o.save_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(o.save_dir, ec);
    if (ec)
      return absl::InvalidArgumentError(
          StrCat("--save: cannot create ", o.save_dir, ": ", ec.message()));
  }
  KILN_ASSIGN_OR_RETURN(Endpoint endpoint, ParseServer(o.server));
  http::LoadClientOptions co;
  co.host = endpoint.host;
  co.port = endpoint.port;
  co.threads = o.threads;
  co.timeout = std::chrono::seconds(o.timeout_seconds);
  co.max_connections = o.concurrency > 0 ? o.concurrency + 16 : o.max_in_flight + 16;
  KILN_ASSIGN_OR_RETURN(auto client, http::LoadClient::Create(co));

  // Fail fast, with the reason, when nothing answers.
  {
    absl::Mutex mu;
    std::optional<http::LoadResponse> probe;
    http::LoadRequest r;
    r.target = "/healthz";
    client->Send(r, [&](http::LoadResponse resp) {
      absl::MutexLock lock(&mu);
      probe = std::move(resp);
    });
    absl::MutexLock lock(&mu);
    mu.AwaitWithTimeout(
        absl::Condition(
            +[](std::optional<http::LoadResponse>* p) { return p->has_value(); }, &probe),
        absl::Seconds(std::min(o.timeout_seconds, 30)));
    if (!probe) return absl::UnavailableError(StrCat("cannot reach ", o.server, ": no answer"));
    if (!probe->error.empty()) {
      return absl::UnavailableError(StrCat("cannot reach ", o.server, ": ", probe->error));
    }
  }
  Driver driver(o, client.get());
  Report report = driver.Run();
  client->Shutdown();
  return report;
}

}  // namespace kiln::loadtest
