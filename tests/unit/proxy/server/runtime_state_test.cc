#include "proxy/server/runtime_state.h"

#include <doctest/doctest.h>

#include <memory>
#include <thread>
#include <vector>

namespace srv = fmp::proxy::server;

namespace {

srv::StatePtr snapshot(const std::string& host) {
  auto s = std::make_shared<srv::RuntimeState>();
  s->upstream_host = host;
  return s;
}

}  // namespace

TEST_CASE("StateHolder: version changes with every set") {
  srv::StateHolder holder(snapshot("a"));
  const auto v0 = holder.version();
  holder.set(snapshot("b"));
  CHECK(holder.version() != v0);
  CHECK(holder.get()->upstream_host == "b");
}

TEST_CASE("StateCache: same snapshot until a set, then the new one") {
  srv::StateHolder holder(snapshot("a"));
  srv::StateCache cache(holder);
  const srv::RuntimeState* first = cache.current().get();
  CHECK(first->upstream_host == "a");
  CHECK(cache.current().get() == first);  // no reload: the cached pointer, not a new copy
  holder.set(snapshot("b"));
  CHECK(cache.current()->upstream_host == "b");
  holder.set(snapshot("c"));
  holder.set(snapshot("d"));
  CHECK(cache.current()->upstream_host == "d");
}

TEST_CASE("StateCache: keeps its snapshot alive after the holder moved on") {
  srv::StateHolder holder(snapshot("a"));
  srv::StateCache cache(holder);
  const srv::StatePtr& held = cache.current();
  std::weak_ptr<const srv::RuntimeState> weak = held;
  holder.set(snapshot("b"));
  CHECK_FALSE(weak.expired());  // a request in progress still uses it
  CHECK(cache.current()->upstream_host == "b");
  CHECK(weak.expired());  // released once the cache refreshed
}

TEST_CASE("StateCache: readers on other threads always see a complete snapshot") {
  srv::StateHolder holder(snapshot("h0"));
  std::vector<std::thread> readers;
  std::atomic<bool> stop{false};
  std::atomic<int> bad{0};
  for (int t = 0; t < 2; ++t) {
    readers.emplace_back([&] {
      srv::StateCache cache(holder);
      while (!stop.load()) {
        const auto& s = cache.current();
        if (!s || s->upstream_host.empty() || s->upstream_host[0] != 'h') bad.fetch_add(1);
      }
    });
  }
  for (int i = 1; i <= 2000; ++i) holder.set(snapshot("h" + std::to_string(i)));
  stop = true;
  for (auto& r : readers) r.join();
  CHECK(bad.load() == 0);
  srv::StateCache late(holder);
  CHECK(late.current()->upstream_host == "h2000");
}
