// The counting global operator new/delete of the unit_proxy binary (see allocation_count.h).
#include "tests/unit/proxy/allocation_count.h"

#ifndef FMP_SANITIZED_NEW
#include <doctest/doctest.h>

#include <cstdlib>
#include <new>
#include <string>

namespace {

constexpr std::size_t kNever = static_cast<std::size_t>(-1);
thread_local bool counting = false;
thread_local std::size_t allocations = 0;
thread_local std::size_t fail_at = kNever;

void* allocate(std::size_t n) noexcept {
  if (counting && allocations++ == fail_at) return nullptr;
  return std::malloc(n == 0 ? 1 : n);
}

void* allocate_or_throw(std::size_t n) {
  void* p = allocate(n);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

}  // namespace

void* operator new(std::size_t n) {
  return allocate_or_throw(n);
}
void* operator new[](std::size_t n) {
  return allocate_or_throw(n);
}
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  return allocate(n);
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
  return allocate(n);
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete[](void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
  std::free(p);
}
void operator delete(void* p, const std::nothrow_t&) noexcept {
  std::free(p);
}
void operator delete[](void* p, const std::nothrow_t&) noexcept {
  std::free(p);
}

namespace fmp::proxy::testing {

void start_counting_allocations() {
  allocations = 0;
  fail_at = kNever;
  counting = true;
}

void fail_allocation(std::size_t n) {
  start_counting_allocations();
  fail_at = n;
}

std::size_t stop_counting_allocations() {
  counting = false;
  fail_at = kNever;
  return allocations;
}

namespace {

TEST_CASE("the allocation counter sees allocations (the checks using it can fail)") {
  std::size_t allocated = 0;
  {
    AllocationCount count;
    std::string s(1000, 'x');
    allocated = count.stop();
  }
  CHECK(allocated == 1);
}

TEST_CASE("an injected allocation failure throws at the chosen allocation, and only there") {
  bool threw_at_second = false;
  bool reached = false;
  std::string kept;
  {
    AllocationFailure fail(1);
    std::string first(100, 'a');  // allocation 0 succeeds
    try {
      std::string second(100, 'b');  // allocation 1 fails
    } catch (const std::bad_alloc&) {
      threw_at_second = true;
    }
    std::string third(100, 'c');  // allocation 2 succeeds again
    kept = first + third;         // allocation 3
    reached = fail.stop();
  }
  CHECK(threw_at_second);
  CHECK(reached);
  CHECK(kept.size() == 200);
  AllocationFailure unreached(5);
  std::string only(100, 'x');
  CHECK_FALSE(unreached.stop());
}

}  // namespace
}  // namespace fmp::proxy::testing

#endif  // FMP_SANITIZED_NEW
