#include "bench/loadgen/histogram.h"

#include <doctest/doctest.h>

#include <cstdint>

using fmp::bench::LatencyHistogram;

TEST_CASE("small values have a bucket each") {
  for (std::uint64_t v = 0; v < LatencyHistogram::kLinearLimit; ++v) {
    const auto b = LatencyHistogram::bucket_of(v);
    CHECK(LatencyHistogram::bucket_low(b) == v);
    CHECK(LatencyHistogram::bucket_high(b) == v);
  }
}

TEST_CASE("every value lies in its bucket, buckets are contiguous and within 1/64") {
  std::uint64_t previous_high = LatencyHistogram::kLinearLimit - 1;
  for (std::size_t b = LatencyHistogram::kLinearLimit; b < LatencyHistogram::kBucketCount; ++b) {
    const auto low = LatencyHistogram::bucket_low(b);
    const auto high = LatencyHistogram::bucket_high(b);
    REQUIRE(low == previous_high + 1);
    REQUIRE(high >= low);
    CHECK(LatencyHistogram::bucket_of(low) == b);
    CHECK(LatencyHistogram::bucket_of(high) == b);
    CHECK(static_cast<double>(high - low) <= static_cast<double>(low) / 64.0);
    previous_high = high;
  }
  CHECK(previous_high == ~std::uint64_t{0});
  CHECK(LatencyHistogram::bucket_of(~std::uint64_t{0}) == LatencyHistogram::kBucketCount - 1);
}

TEST_CASE("percentiles of 1..1000") {
  LatencyHistogram h;
  for (std::uint64_t v = 1; v <= 1000; ++v) h.record(v * 1000);  // 1 us .. 1 ms in ns
  CHECK(h.count() == 1000);
  CHECK(h.min() == 1000);
  CHECK(h.max() == 1000000);
  CHECK(h.mean() == doctest::Approx(500500.0));
  for (const double p : {50.0, 90.0, 99.0, 99.9}) {
    const double exact = p * 10.0 * 1000.0;  // the value of rank p% (ns)
    const auto got = static_cast<double>(h.value_at_percentile(p));
    CHECK(got >= exact);
    CHECK(got <= exact * (1.0 + 1.0 / 64.0));
  }
  CHECK(h.value_at_percentile(100) == 1000000);
  CHECK(h.value_at_percentile(0) >= 1000);
  CHECK(h.value_at_percentile(0) <= 1016);
}

TEST_CASE("a single outlier sets p99.9 and max, not p99") {
  LatencyHistogram h;
  for (int i = 0; i < 999; ++i) h.record(100);
  h.record(5000000);
  CHECK(h.value_at_percentile(99) == 100);
  CHECK(h.value_at_percentile(99.9) == 100);
  CHECK(h.value_at_percentile(99.95) >= 5000000 - 5000000 / 64);
  CHECK(h.max() == 5000000);
}

TEST_CASE("empty and merged") {
  LatencyHistogram a;
  CHECK(a.value_at_percentile(50) == 0);
  CHECK(a.max() == 0);
  CHECK(a.min() == 0);
  LatencyHistogram b;
  b.record(10);
  b.record(30);
  a.record(20);
  a.merge(b);
  CHECK(a.count() == 3);
  CHECK(a.min() == 10);
  CHECK(a.max() == 30);
  CHECK(a.value_at_percentile(50) == 20);
}
