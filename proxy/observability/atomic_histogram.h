// A Prometheus histogram whose observe() is lock-free (relaxed atomic adds), for the per-request
// duration histograms: prometheus-cpp's Histogram takes a mutex on every Observe().
#pragma once

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace fmp::proxy::observability {

class AtomicHistogram : public prometheus::Collectable {
 public:
  /// `bounds`: upper bounds in increasing order; a +Inf bucket is added.
  AtomicHistogram(std::string name, std::string help, std::vector<double> bounds);

  /// Counts one value: three relaxed atomic adds, no lock, no allocation.
  void observe(double value) noexcept;

  /// One histogram family. `sample_count` is the +Inf bucket, so it always equals the bucket sum;
  /// `sample_sum` may trail by the observations in flight.
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  std::string name_;
  std::string help_;
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> buckets_;  ///< bounds_.size() + 1, not cumulative
  std::atomic<double> sum_{0.0};
};

}  // namespace fmp::proxy::observability
