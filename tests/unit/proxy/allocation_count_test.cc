// The counting global operator new/delete of the unit_proxy binary (see allocation_count.h).
#include "tests/unit/proxy/allocation_count.h"

#ifndef FMP_SANITIZED_NEW
#include <doctest/doctest.h>

#include <cstdlib>
#include <new>
#include <string>

namespace {

thread_local bool counting = false;
thread_local std::size_t allocations = 0;

void* allocate(std::size_t n) noexcept {
  if (counting) ++allocations;
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
  counting = true;
}

std::size_t stop_counting_allocations() {
  counting = false;
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

}  // namespace
}  // namespace fmp::proxy::testing

#endif  // FMP_SANITIZED_NEW
