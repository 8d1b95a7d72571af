// Metrics: counters, gauges and histograms in labelled families, and their Prometheus text
// exposition (format 0.0.4). Updating a metric is lock-free (atomics); looking up a labelled
// child takes the family's lock, so hot paths look children up once and keep the reference.
// Thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace kiln::obs {

// Label values, in the order of the family's label names.
using LabelValues = std::vector<std::string>;

class Counter {
 public:
  void Inc(double by = 1) { value_.fetch_add(by, std::memory_order_relaxed); }
  // For collectors that mirror a counter kept elsewhere (the kernel's CPU time).
  void MirrorTo(double value) { value_.store(value, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class Gauge {
 public:
  void Set(double value) { value_.store(value, std::memory_order_relaxed); }
  void Add(double by) { value_.fetch_add(by, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class Histogram {
 public:
  // `bounds`: the buckets' upper bounds, ascending; +Inf is implied.
  explicit Histogram(const std::vector<double>& bounds);
  void Observe(double value);

  struct Snapshot {
    std::vector<uint64_t> cumulative;  // one per bound, then +Inf
    double sum = 0;
  };
  Snapshot Read() const;
  const std::vector<double>& bounds() const { return bounds_; }

 private:
  const std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;  // bounds_.size() + 1
  std::atomic<double> sum_{0};
};

enum class MetricType { kCounter, kGauge, kHistogram };

// The children of one metric name, one per distinct set of label values.
template <typename M>
class Family {
 public:
  Family(std::string name, std::string help, std::vector<std::string> label_names,
         std::function<std::unique_ptr<M>()> make)
      : name_(std::move(name)),
        help_(std::move(help)),
        label_names_(std::move(label_names)),
        make_(std::move(make)) {}

  // The child for `values` (created on first use). The reference stays valid for the family's
  // life. REQUIRES: values.size() == the number of label names.
  M& With(const LabelValues& values) {
    absl::MutexLock lock(&mu_);
    std::unique_ptr<M>& child = children_[values];
    if (!child) child = make_();
    return *child;
  }

  const std::string& name() const { return name_; }
  const std::string& help() const { return help_; }
  const std::vector<std::string>& label_names() const { return label_names_; }

  // Calls `f(values, child)` for every child, in label order.
  void ForEach(const std::function<void(const LabelValues&, const M&)>& f) const {
    absl::MutexLock lock(&mu_);
    for (const auto& [values, child] : children_) f(values, *child);
  }

 private:
  const std::string name_, help_;
  const std::vector<std::string> label_names_;
  const std::function<std::unique_ptr<M>()> make_;
  mutable absl::Mutex mu_;
  std::map<LabelValues, std::unique_ptr<M>> children_ ABSL_GUARDED_BY(mu_);
};

class Registry {
 public:
  // Names must follow Prometheus naming (counters end in _total, units are base units).
  Family<Counter>& AddCounter(std::string name, std::string help,
                              std::vector<std::string> label_names = {});
  Family<Gauge>& AddGauge(std::string name, std::string help,
                          std::vector<std::string> label_names = {});
  Family<Histogram>& AddHistogram(std::string name, std::string help,
                                  std::vector<std::string> label_names, std::vector<double> bounds);

  // Runs before every Render(), to set values computed at scrape time (queue depth, process
  // metrics). Added before the registry is shared.
  void AddCollector(std::function<void()> collect);

  // Runs the collectors, then renders every family in the text exposition format.
  std::string Render() const;

 private:
  struct Entry {
    MetricType type;
    std::unique_ptr<Family<Counter>> counter;
    std::unique_ptr<Family<Gauge>> gauge;
    std::unique_ptr<Family<Histogram>> histogram;
  };
  // Adds a family of `type` in `slot` of a new entry, making its series with `make`.
  template <typename T, typename Make>
  Family<T>& Add(MetricType type, std::unique_ptr<Family<T>> Entry::*slot, std::string name,
                 std::string help, std::vector<std::string> label_names, Make make) {
    absl::MutexLock lock(&mu_);
    Entry e{type, {}, {}, {}};
    e.*slot = std::make_unique<Family<T>>(std::move(name), std::move(help), std::move(label_names),
                                          std::move(make));
    entries_.push_back(std::move(e));
    return *(entries_.back().*slot);
  }

  mutable absl::Mutex mu_;
  std::vector<Entry> entries_ ABSL_GUARDED_BY(mu_);
  std::vector<std::function<void()>> collectors_ ABSL_GUARDED_BY(mu_);
};

// Exponential bucket bounds: start, start*factor, ... (count bounds).
std::vector<double> ExponentialBuckets(double start, double factor, int count);

// A value as the exposition format writes it: "+Inf", "NaN", integers without a fraction.
std::string FormatValue(double value);
// A label value with \, " and newline escaped.
std::string EscapeLabelValue(const std::string& value);

}  // namespace kiln::obs
