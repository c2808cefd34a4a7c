// One immutable snapshot of everything a request needs from configuration: proxy.yaml, the compiled
// policy, the TLS context, the metric handles bound to the policy's rules, the upstream's address.
//
// Loading builds a new snapshot; SIGHUP builds another and swaps it in (StateHolder). A connection
// keeps the TLS context it was accepted with; each request takes the snapshot current when it
// starts and keeps it until it ends. A failed build throws and changes nothing.
#pragma once

#include <sys/socket.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>

#include "policy/policy.h"
#include "proxy/config/proxy_config.h"
#include "proxy/http/identity_headers.h"
#include "proxy/observability/metrics.h"
#include "proxy/tls/server_context.h"

namespace fmp::proxy::server {

struct RuntimeState {
  ProxyConfig config;
  policy::PolicyPtr policy;
  std::shared_ptr<const tls::ServerContext> tls;
  std::shared_ptr<const observability::RuleCounters> rule_counters;
  std::shared_ptr<const http::ReservedHeaders> reserved;
  /// Client context for an https upstream (null for http).
  std::shared_ptr<SSL_CTX> upstream_tls;
  sockaddr_storage upstream_addr{};
  socklen_t upstream_addr_len = 0;
  /// Host header value is the client's; this is only for SNI and certificate name checks.
  std::string upstream_host;
  /// "host:port" ("[v6]:port"): the Host sent for a request that has none (HTTP/1.0 clients).
  std::string upstream_authority;
  /// Scheme and authority: idle pooled connections are reused only for the same key.
  std::string upstream_key;
};

using StatePtr = std::shared_ptr<const RuntimeState>;

/// Loads proxy.yaml and every file it names (as `check` does) into a new snapshot, binding metric
/// series for the policy's rules. Throws policy::ConfigError carrying every diagnostic.
StatePtr build_runtime_state(const std::string& config_path, observability::Metrics& metrics);

/// The current snapshot, swapped atomically by reloads and read by every worker.
///
/// A mutex, not std::atomic<std::shared_ptr>: libstdc++ 12's atomic<shared_ptr>::load() releases
/// its internal lock with memory_order_relaxed, so a reader's copy of the pointer races with a
/// reload's swap (ThreadSanitizer reports it; on weakly ordered CPUs the reader could pair the new
/// pointer with the old control block). The lock is held only to copy one shared_ptr.
class StateHolder {
 public:
  explicit StateHolder(StatePtr initial) : state_(std::move(initial)) {}
  StatePtr get() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return state_;
  }
  void set(StatePtr s) {
    const tls::ServerContext* next_tls = s ? s->tls.get() : nullptr;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      state_.swap(s);
      version_.fetch_add(1, std::memory_order_release);
    }
    // The replaced TLS context's sessions were verified against the old trust bundles and CRLs:
    // none resumes from here on (its connections keep it alive, but not its cache).
    if (s && s->tls && s->tls.get() != next_tls) s->tls->forget_sessions();
  }  // the old snapshot is released here, outside the lock, when `s` goes
  /// Changes with every set(): a reader compares it to decide whether its copy is current.
  std::uint64_t version() const { return version_.load(std::memory_order_acquire); }

 private:
  mutable std::mutex mutex_;
  StatePtr state_;
  std::atomic<std::uint64_t> version_{0};
};

/// One thread's view of a StateHolder: the snapshot is copied (under the holder's lock) only when a
/// reload has changed it, so a request costs one atomic load instead of a lock. Not thread-safe:
/// one per worker.
class StateCache {
 public:
  explicit StateCache(const StateHolder& holder) : holder_(holder) {}
  const StatePtr& current() {
    const std::uint64_t v = holder_.version();
    if (!state_ || v != version_) {
      // Version first, then the pointer: a reload between the two is seen again next time.
      version_ = v;
      state_ = holder_.get();
    }
    return state_;
  }

 private:
  const StateHolder& holder_;
  std::uint64_t version_ = 0;
  StatePtr state_;
};

}  // namespace fmp::proxy::server
