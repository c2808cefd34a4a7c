#include "proxy/observability/atomic_histogram.h"

#include <doctest/doctest.h>

#include <cmath>
#include <thread>
#include <vector>

namespace fmp::proxy::observability {
namespace {

TEST_CASE("AtomicHistogram counts values into cumulative 'le' buckets with +Inf") {
  AtomicHistogram h("x_seconds", "help", {0.1, 1.0});
  h.observe(0.05);  // <= 0.1
  h.observe(0.1);   // le is inclusive
  h.observe(0.5);   // <= 1
  h.observe(7.0);   // +Inf
  const auto families = h.Collect();
  REQUIRE(families.size() == 1);
  CHECK(families[0].name == "x_seconds");
  CHECK(families[0].type == prometheus::MetricType::Histogram);
  const auto& hist = families[0].metric.at(0).histogram;
  REQUIRE(hist.bucket.size() == 3);
  CHECK(hist.bucket[0].cumulative_count == 2);
  CHECK(hist.bucket[1].cumulative_count == 3);
  CHECK(hist.bucket[2].cumulative_count == 4);
  CHECK(std::isinf(hist.bucket[2].upper_bound));
  CHECK(hist.sample_count == 4);
  CHECK(hist.sample_sum == doctest::Approx(7.65));
}

TEST_CASE("AtomicHistogram loses no observation under concurrent writers") {
  AtomicHistogram h("y", "help", {0.001, 0.01});
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&h] {
      for (int i = 0; i < 10000; ++i) h.observe(0.005);
    });
  for (auto& t : threads) t.join();
  const auto families = h.Collect();
  const auto& hist = families[0].metric[0].histogram;
  CHECK(hist.sample_count == 40000);
  CHECK(hist.bucket[0].cumulative_count == 0);
  CHECK(hist.bucket[1].cumulative_count == 40000);
  CHECK(hist.sample_sum == doctest::Approx(200.0));
}

}  // namespace
}  // namespace fmp::proxy::observability
