#include "obs/metrics.h"

#include <charconv>
#include <cmath>

#include "core/strings.h"

namespace kiln::obs {

Histogram::Histogram(const std::vector<double>& bounds)
    : bounds_(bounds), counts_(new std::atomic<uint64_t>[bounds.size() + 1]) {
  for (size_t i = 0; i <= bounds_.size(); ++i) counts_[i].store(0);
}

void Histogram::Observe(double value) {
  size_t i = 0;
  while (i < bounds_.size() && value > bounds_[i]) ++i;
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(value, std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::Read() const {
  Snapshot s;
  uint64_t total = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    total += counts_[i].load(std::memory_order_relaxed);
    s.cumulative.push_back(total);
  }
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

Family<Counter>& Registry::AddCounter(std::string name, std::string help,
                                      std::vector<std::string> label_names) {
  return Add(MetricType::kCounter, &Entry::counter, std::move(name), std::move(help),
             std::move(label_names), [] { return std::make_unique<Counter>(); });
}

Family<Gauge>& Registry::AddGauge(std::string name, std::string help,
                                  std::vector<std::string> label_names) {
  return Add(MetricType::kGauge, &Entry::gauge, std::move(name), std::move(help),
             std::move(label_names), [] { return std::make_unique<Gauge>(); });
}

Family<Histogram>& Registry::AddHistogram(std::string name, std::string help,
                                          std::vector<std::string> label_names,
                                          std::vector<double> bounds) {
  return Add(MetricType::kHistogram, &Entry::histogram, std::move(name), std::move(help),
             std::move(label_names),
             [bounds = std::move(bounds)] { return std::make_unique<Histogram>(bounds); });
}

void Registry::AddCollector(std::function<void()> collect) {
  absl::MutexLock lock(&mu_);
  collectors_.push_back(std::move(collect));
}

std::string FormatValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  if (value == std::floor(value) && std::fabs(value) < 1e15) {
    return std::to_string(static_cast<int64_t>(value));
  }
  char buf[32];
  // The shortest text that reads back as the same double ("0.005", not "0.0050000000000000001").
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value);
  return std::string(buf, end);
}

std::string EscapeLabelValue(const std::string& value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

namespace {

std::string EscapeHelp(const std::string& help) {
  std::string out;
  for (char c : help) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

// {a="x",b="y"} with an optional extra label (le for histogram buckets); "" when no labels.
std::string LabelSet(const std::vector<std::string>& names, const LabelValues& values,
                     const std::string& extra_name = "", const std::string& extra_value = "") {
  std::string out;
  for (size_t i = 0; i < names.size() && i < values.size(); ++i) {
    out += out.empty() ? "{" : ",";
    out += StrCat(names[i], "=\"", EscapeLabelValue(values[i]), "\"");
  }
  if (!extra_name.empty()) {
    out += out.empty() ? "{" : ",";
    out += StrCat(extra_name, "=\"", extra_value, "\"");
  }
  if (!out.empty()) out += "}";
  return out;
}

template <typename M>
void Header(std::string& out, const Family<M>& f, const char* type) {
  out += StrCat("# HELP ", f.name(), " ", EscapeHelp(f.help()), "\n# TYPE ", f.name(), " ", type,
                "\n");
}

}  // namespace

std::string Registry::Render() const {
  std::vector<std::function<void()>> collectors;
  {
    absl::MutexLock lock(&mu_);
    collectors = collectors_;
  }
  for (const auto& collect : collectors) collect();

  absl::MutexLock lock(&mu_);
  std::string out;
  out.reserve(16 << 10);
  for (const Entry& e : entries_) {
    switch (e.type) {
      case MetricType::kCounter:
        Header(out, *e.counter, "counter");
        e.counter->ForEach([&](const LabelValues& v, const Counter& c) {
          out += StrCat(e.counter->name(), LabelSet(e.counter->label_names(), v), " ",
                        FormatValue(c.value()), "\n");
        });
        break;
      case MetricType::kGauge:
        Header(out, *e.gauge, "gauge");
        e.gauge->ForEach([&](const LabelValues& v, const Gauge& g) {
          out += StrCat(e.gauge->name(), LabelSet(e.gauge->label_names(), v), " ",
                        FormatValue(g.value()), "\n");
        });
        break;
      case MetricType::kHistogram: {
        const Family<Histogram>& f = *e.histogram;
        Header(out, f, "histogram");
        f.ForEach([&](const LabelValues& v, const Histogram& h) {
          const Histogram::Snapshot s = h.Read();
          for (size_t i = 0; i <= h.bounds().size(); ++i) {
            const std::string le = i < h.bounds().size() ? FormatValue(h.bounds()[i]) : "+Inf";
            out += StrCat(f.name(), "_bucket", LabelSet(f.label_names(), v, "le", le), " ",
                          s.cumulative[i], "\n");
          }
          const std::string labels = LabelSet(f.label_names(), v);
          out += StrCat(f.name(), "_sum", labels, " ", FormatValue(s.sum), "\n");
          out += StrCat(f.name(), "_count", labels, " ", s.cumulative.back(), "\n");
        });
        break;
      }
    }
  }
  return out;
}

std::vector<double> ExponentialBuckets(double start, double factor, int count) {
  std::vector<double> out;
  double v = start;
  for (int i = 0; i < count; ++i, v *= factor) out.push_back(v);
  return out;
}

}  // namespace kiln::obs
