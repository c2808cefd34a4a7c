#include "bench/loadgen/histogram.h"

#include <algorithm>
#include <bit>
#include <cmath>

namespace fmp::bench {

namespace {
constexpr std::uint64_t kHalf = std::uint64_t{1} << LatencyHistogram::kSubBucketBits;  // 64
}  // namespace

std::size_t LatencyHistogram::bucket_of(std::uint64_t value) {
  if (value < kLinearLimit) return static_cast<std::size_t>(value);
  const unsigned msb = 63 - static_cast<unsigned>(std::countl_zero(value));  // >= 7
  const unsigned shift = msb - kSubBucketBits;                               // >= 1
  const std::uint64_t top = value >> shift;                                  // [64, 127]
  return kLinearLimit + (shift - 1) * kHalf + static_cast<std::size_t>(top - kHalf);
}

std::uint64_t LatencyHistogram::bucket_low(std::size_t bucket) {
  if (bucket < kLinearLimit) return bucket;
  const std::size_t rel = bucket - kLinearLimit;
  const unsigned shift = static_cast<unsigned>(rel / kHalf) + 1;
  const std::uint64_t top = kHalf + rel % kHalf;
  return top << shift;
}

std::uint64_t LatencyHistogram::bucket_high(std::size_t bucket) {
  if (bucket < kLinearLimit) return bucket;
  const std::size_t rel = bucket - kLinearLimit;
  const unsigned shift = static_cast<unsigned>(rel / kHalf) + 1;
  const std::uint64_t top = kHalf + rel % kHalf;
  // The last bucket's upper bound is 2^64 - 1: compute without overflowing.
  return (top << shift) + ((std::uint64_t{1} << shift) - 1);
}

void LatencyHistogram::record(std::uint64_t value) {
  ++counts_[bucket_of(value)];
  ++count_;
  min_ = std::min(min_, value);
  max_ = std::max(max_, value);
  sum_ += static_cast<long double>(value);
}

void LatencyHistogram::merge(const LatencyHistogram& other) {
  for (std::size_t i = 0; i < kBucketCount; ++i) counts_[i] += other.counts_[i];
  count_ += other.count_;
  min_ = std::min(min_, other.min_);
  max_ = std::max(max_, other.max_);
  sum_ += other.sum_;
}

std::uint64_t LatencyHistogram::value_at_percentile(double percentile) const {
  if (count_ == 0) return 0;
  percentile = std::clamp(percentile, 0.0, 100.0);
  // The rank of the value asked for, 1-based: at least one value is always covered.
  // (The small epsilon keeps 99.9% of 1000 at rank 999 despite binary floating point.)
  auto rank = static_cast<std::uint64_t>(
      std::ceil(percentile / 100.0 * static_cast<double>(count_) - 1e-9));
  rank = std::clamp<std::uint64_t>(rank, 1, count_);
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < kBucketCount; ++i) {
    seen += counts_[i];
    if (seen >= rank) return std::min(bucket_high(i), max_);
  }
  return max_;
}

double LatencyHistogram::mean() const {
  return count_ == 0 ? 0.0 : static_cast<double>(sum_ / static_cast<long double>(count_));
}

}  // namespace fmp::bench
