#include "proxy/server/server.h"

#include <event2/thread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "proxy/observability/audit.h"
#include "proxy/observability/metrics.h"
#include "proxy/observability/metrics_server.h"
#include "proxy/server/runtime_state.h"
#include "proxy/server/worker.h"

namespace fmp::proxy::server {
namespace {

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

void print_diagnostics(const policy::ConfigError& e) {
  for (const auto& d : e.diagnostics()) std::fprintf(stderr, "%s\n", d.str().c_str());
}

/// Publishes what a snapshot knows about itself: rule count and certificate expiries.
void publish(const RuntimeState& s, observability::Metrics& metrics) {
  metrics.set_policy_rules(s.policy->rule_names().size());
  auto expiries = observability::Metrics::expiries_of(s.tls->trust().expiries());
  expiries.emplace_back("server", static_cast<double>(s.tls->server_cert_not_after()));
  metrics.set_expiries(expiries);
}

/// systemd's readiness protocol (Type=notify): one datagram to $NOTIFY_SOCKET, when it is set.
void notify_systemd(const char* message) {
  const char* path = std::getenv("NOTIFY_SOCKET");
  if (path == nullptr || path[0] == '\0') return;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::size_t len = std::strlen(path);
  if (len >= sizeof addr.sun_path) return;
  std::memcpy(addr.sun_path, path, len);
  if (addr.sun_path[0] == '@') addr.sun_path[0] = '\0';  // abstract namespace
  const int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  const socklen_t addr_len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len);
  sendto(fd, message, std::strlen(message), 0, reinterpret_cast<sockaddr*>(&addr), addr_len);
  close(fd);
}

void reload(const std::string& path, StateHolder& holder, observability::Metrics& metrics,
            Logger& log) {
  notify_systemd("RELOADING=1");
  const StatePtr old = holder.get();
  try {
    StatePtr fresh = build_runtime_state(path, metrics);
    const auto& oc = old->config;
    const auto& nc = fresh->config;
    if (nc.listen != oc.listen || nc.workers != oc.workers)
      log.warn("listen and workers cannot change while running; keeping the old values",
               {{"listen", oc.listen}, {"workers", std::to_string(oc.workers)}});
    if (nc.audit.path != oc.audit.path || nc.metrics.listen != oc.metrics.listen)
      log.warn("audit.path and metrics.listen apply at the next restart");
    holder.set(fresh);
    metrics.reload(true, now_seconds());
    publish(*fresh, metrics);
    log.info("configuration reloaded",
             {{"rules", std::to_string(fresh->policy->rule_names().size())}});
  } catch (const policy::ConfigError& e) {
    metrics.reload(false, now_seconds());
    for (const auto& d : e.diagnostics())
      log.error("reload failed; the previous configuration keeps serving", {{"error", d.str()}});
  } catch (const std::exception& e) {
    metrics.reload(false, now_seconds());
    log.error("reload failed; the previous configuration keeps serving", {{"error", e.what()}});
  }
  notify_systemd("READY=1");
}

}  // namespace

int serve(const std::string& config_path, Logger& log) {
  evthread_use_pthreads();
  signal(SIGPIPE, SIG_IGN);
  // Signals are taken synchronously by this thread (sigwait); workers inherit the blocked mask.
  sigset_t signals;
  sigemptyset(&signals);
  for (int s : {SIGHUP, SIGTERM, SIGINT, SIGUSR1}) sigaddset(&signals, s);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  observability::Metrics metrics;
  StatePtr initial;
  try {
    initial = build_runtime_state(config_path, metrics);
  } catch (const policy::ConfigError& e) {
    print_diagnostics(e);
    return 1;
  }
  publish(*initial, metrics);
  metrics.policy_loaded(now_seconds());
  const ProxyConfig& config = initial->config;

  std::unique_ptr<observability::AuditLog> audit;
  try {
    audit = observability::AuditLog::open(config.audit.path, observability::AuditFormat::kJson,
                                          &metrics);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: audit: %s\n", config.file.c_str(), e.what());
    return 1;
  }

  StateHolder holder(initial);
  Services services{holder, metrics, audit.get(), log};
  std::atomic<bool> ready{false};
  std::unique_ptr<observability::MetricsServer> metrics_server;
  std::vector<std::unique_ptr<Worker>> workers;
  try {
    if (!config.metrics.listen.empty()) {
      metrics_server = std::make_unique<observability::MetricsServer>(
          metrics, [&ready] { return ready.load(); });
      metrics_server->start(config.metrics.listen);
    }
    for (int i = 0; i < config.workers; ++i)
      workers.push_back(std::make_unique<Worker>(services, i, config));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", config.file.c_str(), e.what());
    return 1;
  }
  for (auto& w : workers) w->start();
  ready = true;
  notify_systemd("READY=1");
  log.info("listening", {{"listen", config.listen},
                         {"workers", std::to_string(config.workers)},
                         {"rules", std::to_string(initial->policy->rule_names().size())}});

  for (;;) {
    int sig = 0;
    if (sigwait(&signals, &sig) != 0) continue;
    if (sig == SIGHUP) {
      reload(config_path, holder, metrics, log);
      audit->reopen();
    } else if (sig == SIGUSR1) {
      audit->reopen();
      log.info("audit log reopened");
    } else {
      break;
    }
  }

  notify_systemd("STOPPING=1");
  ready = false;
  log.info("stopping: draining in-flight requests",
           {{"drain_timeout_ms", std::to_string(holder.get()->config.drain_timeout_ms)}});
  const int drain_ms = holder.get()->config.drain_timeout_ms;
  for (auto& w : workers) w->request_stop(drain_ms);
  for (auto& w : workers) w->join();
  workers.clear();
  if (metrics_server) metrics_server->stop();
  audit->flush();
  log.info("stopped");
  return 0;
}

}  // namespace fmp::proxy::server
