// The plain-HTTP endpoint of metrics.listen: /metrics, /healthz and /readyz, served by libevent's
// evhttp on its own thread and event_base, so a slow scrape never delays the data path.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <thread>

#include "proxy/event_ptr.h"
#include "proxy/observability/metrics.h"

namespace fmp::proxy::observability {

/// GET (or HEAD) /metrics -> 200, Prometheus text format 0.0.4 of `metrics.render()`;
/// /healthz -> 200 "ok" while the server runs; /readyz -> 200 "ready" when `ready()` returns true,
/// else 503 "not ready"; any other path -> 404; other methods -> 405. Requests with a body or
/// headers over 8 KiB are refused and idle clients are dropped after 10 s.
class MetricsServer {
 public:
  /// `metrics` must outlive the server. `ready` is called on the server's thread: it must be
  /// thread-safe (e.g. read an atomic); an empty function means always ready.
  MetricsServer(const Metrics& metrics, std::function<bool()> ready);
  /// Stops the server if it runs.
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  /// Binds `listen` ("host:port", IPv6 as "[::1]:9464"; port 0 picks a free port) and starts
  /// serving on a new thread. Throws std::runtime_error naming the address when it cannot be parsed
  /// or bound, or when the server already runs.
  void start(const std::string& listen);

  /// Stops the event loop and joins the thread; in-flight scrapes are cut. Idempotent; thread-safe
  /// with respect to the server thread (not to concurrent start/stop calls).
  void stop();

  /// The bound port (useful with port 0); 0 before start.
  std::uint16_t port() const { return port_; }

 private:
  static void on_request(evhttp_request* req, void* self);
  void handle(evhttp_request* req);

  const Metrics& metrics_;
  std::function<bool()> ready_;
  // Declaration order = reverse destruction order: the evhttp is freed before its event_base.
  ev::EventBasePtr base_;
  ev::EvHttpPtr http_;
  std::thread thread_;
  std::uint16_t port_ = 0;
};

}  // namespace fmp::proxy::observability
