// Keep-alive connections to the FHIR server, one pool per worker (so no lock): idle connections
// wait here between requests and are closed when the server closes them, when they sit idle too
// long, or when a reload points the proxy at another upstream.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "proxy/event_ptr.h"
#include "proxy/observability/metrics.h"
#include "proxy/server/runtime_state.h"

namespace fmp::proxy::server {

class UpstreamPool;

/// One connection to the upstream, owned by the request using it or by the pool while idle.
struct UpstreamConnection {
  ev::BufferEventPtr bev;
  std::string key;      ///< which upstream (scheme, address) it belongs to
  bool reused = false;  ///< came from the idle pool (so a failure before any byte may be retried)
  bool connected = false;
  /// Plain TCP (not TLS): the connection may write to its socket directly (Connection's
  /// write-through) once connected.
  bool plain = false;
  UpstreamPool* pool = nullptr;  ///< while idle: the pool holding it (callback argument)
};

class UpstreamPool {
 public:
  UpstreamPool(event_base* base, observability::Metrics& metrics)
      : base_(base), metrics_(metrics) {}
  ~UpstreamPool();
  UpstreamPool(const UpstreamPool&) = delete;
  UpstreamPool& operator=(const UpstreamPool&) = delete;

  /// An idle connection to the snapshot's upstream when one is left (reused=true), else a new one
  /// whose connect has started. nullptr when no socket could be created. Callbacks are the caller's
  /// to set. `fresh`: never an idle one (a retry after a stale pooled connection).
  std::unique_ptr<UpstreamConnection> acquire(const RuntimeState& state, bool fresh = false);

  /// Parks a connection whose last response ended cleanly; closes it when the pool is full.
  void release(std::unique_ptr<UpstreamConnection> conn, const RuntimeState& state);

  /// Closes every idle connection (shutdown).
  void close_idle();
  std::size_t idle_count() const { return idle_.size(); }

 private:
  static void on_idle_read(bufferevent* bev, void* arg);
  static void on_idle_event(bufferevent* bev, short events, void* arg);
  void drop(UpstreamConnection* idle);

  event_base* base_;
  observability::Metrics& metrics_;
  /// Most recently parked last (reused first: its socket is the least likely to be stale).
  std::vector<std::unique_ptr<UpstreamConnection>> idle_;
};

}  // namespace fmp::proxy::server
