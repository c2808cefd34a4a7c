// Counts the operator new calls a thread makes inside a scope, for the tests that check a hot path
// allocates nothing once its buffers have grown.
//
// The counting operator new/delete replace the global ones of the unit_proxy binary
// (allocation_count_test.cc; they forward to malloc/free). Only allocations made on a thread
// inside an AllocationCount scope are counted, so other tests are unaffected. In sanitizer builds
// (FMP_SANITIZED_NEW) the sanitizer's own operator new/delete must stay (ASan checks new/delete
// pairing with them): nothing is replaced there and the tests using this are not compiled.
#pragma once

#include <cstddef>

#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define FMP_SANITIZED_NEW 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define FMP_SANITIZED_NEW 1
#endif

namespace fmp::proxy::testing {

/// Starts counting this thread's allocations from zero.
void start_counting_allocations();
/// Starts counting from zero, and makes this thread's allocation number `n` (0 = the next one)
/// fail: operator new throws std::bad_alloc (the nothrow forms return null). Until the count stops.
void fail_allocation(std::size_t n);
/// Stops counting (and failing); returns how many operator new calls this thread made since the
/// start, the failed one included.
std::size_t stop_counting_allocations();

/// Counts operator new calls made on this thread while it lives. No doctest assertion belongs
/// inside the scope: a failing one allocates its message.
class AllocationCount {
 public:
  AllocationCount() { start_counting_allocations(); }
  ~AllocationCount() { stop(); }
  AllocationCount(const AllocationCount&) = delete;
  AllocationCount& operator=(const AllocationCount&) = delete;
  /// Stops counting (at the latest when the scope ends) and returns the count.
  std::size_t stop() {
    if (!stopped_) count_ = stop_counting_allocations();
    stopped_ = true;
    return count_;
  }

 private:
  std::size_t count_ = 0;
  bool stopped_ = false;
};

/// Makes this thread's allocation number `n` within the scope fail (fail_allocation), to check
/// what code leaves behind when an allocation throws at each point in turn. No doctest assertion
/// belongs inside the scope.
class AllocationFailure {
 public:
  explicit AllocationFailure(std::size_t n) : n_(n) { fail_allocation(n); }
  ~AllocationFailure() { stop(); }
  AllocationFailure(const AllocationFailure&) = delete;
  AllocationFailure& operator=(const AllocationFailure&) = delete;
  /// Stops (at the latest when the scope ends); true when the failing allocation was reached.
  bool stop() {
    if (!stopped_) reached_ = stop_counting_allocations() > n_;
    stopped_ = true;
    return reached_;
  }

 private:
  std::size_t n_;
  bool reached_ = false;
  bool stopped_ = false;
};

}  // namespace fmp::proxy::testing
