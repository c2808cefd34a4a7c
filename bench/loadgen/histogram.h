// A small log-linear latency histogram in the spirit of HdrHistogram: values below 128 get one
// bucket each, above that every power of two is split into 64 equal buckets, so any recorded value
// is known to within 1/64 (1.6%) of itself. Fixed memory (about 30 KiB), O(1) record, no allocation
// after construction.
#pragma once

#include <array>
#include <cstdint>

namespace fmp::bench {

class LatencyHistogram {
 public:
  /// Adds one value (any unit; the load generator records nanoseconds).
  void record(std::uint64_t value);

  /// Adds every count of `other` to this histogram.
  void merge(const LatencyHistogram& other);

  /// The smallest bucket upper bound at or below which `percentile` percent of the recorded values
  /// lie (HdrHistogram's "highest equivalent value"), never above max(). 0 when empty.
  /// `percentile` is clamped to [0, 100].
  std::uint64_t value_at_percentile(double percentile) const;

  std::uint64_t count() const { return count_; }
  std::uint64_t min() const { return count_ == 0 ? 0 : min_; }
  std::uint64_t max() const { return max_; }
  /// Arithmetic mean of the recorded values (exact: kept as a running sum). 0 when empty.
  double mean() const;

  /// Index of the bucket holding `value`, and the inclusive range of values a bucket holds. Public
  /// for tests.
  static std::size_t bucket_of(std::uint64_t value);
  static std::uint64_t bucket_low(std::size_t bucket);
  static std::uint64_t bucket_high(std::size_t bucket);

  static constexpr unsigned kSubBucketBits = 6;  ///< 64 buckets per power of two
  static constexpr std::size_t kLinearLimit = std::size_t{2} << kSubBucketBits;  ///< 128
  static constexpr std::size_t kBucketCount =
      kLinearLimit + (64 - kSubBucketBits - 1) * (std::size_t{1} << kSubBucketBits);

 private:
  std::array<std::uint64_t, kBucketCount> counts_{};
  std::uint64_t count_ = 0;
  std::uint64_t min_ = ~std::uint64_t{0};
  std::uint64_t max_ = 0;
  long double sum_ = 0;
};

}  // namespace fmp::bench
