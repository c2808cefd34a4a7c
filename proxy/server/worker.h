// A worker: one thread, one event_base, its own SO_REUSEPORT listener, its own connections and its
// own upstream pool. Workers share only immutable snapshots (StateHolder) and thread-safe
// metrics/audit.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>
#include <unordered_map>
#include <vector>

#include "policy/ssl_ptr.h"
#include "proxy/event_ptr.h"
#include "proxy/http/head_storage.h"
#include "proxy/log/logger.h"
#include "proxy/observability/audit.h"
#include "proxy/observability/metrics.h"
#include "proxy/server/client_identity.h"
#include "proxy/server/exchange.h"
#include "proxy/server/lingering_close.h"
#include "proxy/server/runtime_state.h"
#include "proxy/server/upstream_pool.h"
#include "proxy/socket_fd.h"

namespace fmp::proxy::server {

class Connection;

/// What every worker shares with the others (all thread-safe).
struct Services {
  StateHolder& states;
  observability::Metrics& metrics;
  observability::AuditLog* audit;  ///< may be null (tests)
  Logger& log;
};

class Worker {
 public:
  /// Creates the event loop and binds the listener (throws std::runtime_error when binding fails).
  Worker(Services services, int index, const ProxyConfig& config);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  /// Runs the loop on a new thread.
  void start();
  /// Thread-safe: stop accepting, close idle connections, let in-flight requests finish for up to
  /// `drain_timeout_ms`, then cut what is left (logged) and end the loop.
  void request_stop(int drain_timeout_ms);
  void join();

  // For connections (worker thread only).
  event_base* base() const { return base_.get(); }
  const Services& services() const { return services_; }
  UpstreamPool& pool() { return *pool_; }
  ClientIdentityCache& identities() { return identities_; }
  http::HeadStorage& head_storage() { return head_storage_; }
  ExchangePool& exchanges() { return exchanges_; }
  /// Where a connection fills in its audit event before AuditLog::write copies it: kept, so its
  /// strings' storage serves every request.
  observability::AuditEvent& audit_event() { return audit_event_; }
  /// The current snapshot (re-read from the StateHolder only after a reload).
  const StatePtr& state() { return state_cache_.current(); }
  bool draining() const { return draining_; }
  std::uint64_t next_connection_id() { return (static_cast<std::uint64_t>(index_) << 48) | ++seq_; }
  /// Deletes a closed connection (called when none of its callbacks is on the stack).
  void destroy(Connection* c);
  /// Frees a closed connection's SSL and closes its socket once the event-loop callback running
  /// now has returned: libevent's bufferevent code up the stack may still use both until then
  /// (what BEV_OPT_CLOSE_ON_FREE would defer the same way).
  void retire(ssl::SslPtr ssl, ev::SocketFd socket);
  /// Takes a socket closed after an error response whose request was not read to its end, and
  /// closes it gently (lingering_close.h).
  void linger(ev::SocketFd socket);

 private:
  static void accept_cb(evconnlistener*, evutil_socket_t fd, sockaddr* addr, int len, void* arg);
  static void accept_error_cb(evconnlistener*, void* arg);
  static void stop_cb(evutil_socket_t, short, void* arg);
  static void drain_deadline_cb(evutil_socket_t, short, void* arg);
  static void reap_cb(evutil_socket_t, short, void* arg);
  void on_accept(evutil_socket_t fd, sockaddr* addr);
  void begin_drain();

  Services services_;
  StateCache state_cache_{services_.states};
  int index_;
  ev::EventBasePtr base_;  ///< lock-free: only this worker's thread touches it
  ev::EvConnListenerPtr listener_;
  ev::SocketFd stop_fd_;     ///< eventfd: request_stop() writes it from another thread
  ev::EventPtr stop_event_;  ///< one-shot, on stop_fd_ readable (freed before it: declared after)
  ev::EventPtr drain_timer_;
  struct Retired {
    ssl::SslPtr ssl;
    ev::SocketFd socket;
  };
  std::vector<Retired> retired_;  ///< freed by reap_event_ (or with the worker)
  ev::EventPtr reap_event_;
  LingeringClose lingering_;  ///< after reap_event_: freed before the base, like every event
  std::unique_ptr<UpstreamPool> pool_;
  ClientIdentityCache identities_;
  // Before connections_: they outlive the connections, which give back to them.
  http::HeadStorage head_storage_;
  ExchangePool exchanges_{head_storage_};
  observability::AuditEvent audit_event_;
  std::unordered_map<Connection*, std::unique_ptr<Connection>> connections_;
  std::atomic<int> drain_timeout_ms_{0};
  bool draining_ = false;
  std::uint64_t seq_ = 0;
  std::size_t max_connections_ = 0;
  std::thread thread_;
};

}  // namespace fmp::proxy::server
