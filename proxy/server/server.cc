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

#include "proxy/config/proxy_config.h"
#include "proxy/observability/audit.h"
#include "proxy/observability/metrics.h"
#include "proxy/observability/metrics_server.h"
#include "proxy/server/file_watcher.h"
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

/// How long the file watcher waits after the last change of a burst before it asks for a reload.
constexpr std::chrono::milliseconds kWatchDebounce{200};

/// Every file a configuration is read from: proxy.yaml and each file (or policy directory) it
/// names.
std::vector<std::string> config_files(const std::string& config_path, const ProxyConfig& c) {
  std::vector<std::string> files{config_path, c.policy.path, c.tls.cert.path, c.tls.key.path};
  for (const auto& t : c.tls.trust) {
    files.push_back(t.ca.path);
    for (const auto& crl : t.crl) files.push_back(crl.path);
  }
  if (!c.upstream.ca.path.empty()) files.push_back(c.upstream.ca.path);
  return files;
}

/// The digest of what a reload is about to read, taken BEFORE it reads: a change made while it
/// reads makes the next watcher event differ, so no change is ever missed.
std::string digest_before_load(const std::string& config_path) {
  try {
    return content_digest(config_files(config_path, load_proxy_config(config_path)));
  } catch (const policy::ConfigError&) {
    return content_digest({config_path});  // the load reports the error
  }
}

/// Why a reload runs: SIGHUP always reloads; the watcher's request only when the files' content
/// differs from what the last reload read (an event that changed nothing counts nothing).
enum class ReloadTrigger { kSignal, kWatcher };

/// The file watcher's wake-up for the main thread: a real-time signal of its own, so it never
/// merges with (and so never swallows) an operator's SIGHUP.
int watch_signal() {
  return SIGRTMIN + 1;
}

/// Starts or stops the watcher to match `config.watch`, and points it at the files `config` names.
void update_watcher(std::unique_ptr<FileWatcher>& watcher, const std::string& config_path,
                    const ProxyConfig& config, Logger& log) {
  if (!config.watch) {
    if (watcher) log.info("no longer watching the configuration files (watch: false)");
    watcher.reset();
    return;
  }
  std::vector<std::string> files = config_files(config_path, config);
  if (watcher) {
    watcher->set_paths(std::move(files));
    return;
  }
  try {
    const pid_t self = getpid();
    const int sig = watch_signal();
    watcher = std::make_unique<FileWatcher>(
        std::move(files), kWatchDebounce, [self, sig] { kill(self, sig); }, log);
    log.info("watching the configuration files; a change reloads like SIGHUP");
    // A change between the last load and the first watch would go unseen: one digest-checked
    // look now (it reloads nothing when the files are as loaded).
    kill(self, sig);
  } catch (const std::exception& e) {
    log.warn("cannot watch the configuration files; reload with SIGHUP", {{"error", e.what()}});
  }
}

void reload(const std::string& path, StateHolder& holder, observability::Metrics& metrics,
            Logger& log, ReloadTrigger trigger, std::string& last_digest) {
  const std::string digest = digest_before_load(path);
  if (trigger == ReloadTrigger::kWatcher && digest == last_digest && !digest.empty()) return;
  last_digest = digest;
  if (trigger == ReloadTrigger::kWatcher) log.info("configuration files changed; reloading");
  notify_systemd("RELOADING=1");
  const StatePtr old = holder.get();
  try {
    StatePtr fresh = build_runtime_state(path, metrics);
    const auto& oc = old->config;
    const auto& nc = fresh->config;
    if (nc.listen != oc.listen || nc.workers != oc.workers)
      log.warn("listen and workers cannot change while running; keeping the old values",
               {{"listen", oc.listen}, {"workers", std::to_string(oc.workers)}});
    if (nc.audit.path != oc.audit.path || nc.audit.format != oc.audit.format ||
        nc.metrics.listen != oc.metrics.listen)
      log.warn("audit.path, audit.format and metrics.listen apply at the next restart");
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
  for (int s : {SIGHUP, SIGTERM, SIGINT, SIGUSR1, watch_signal()}) sigaddset(&signals, s);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  observability::Metrics metrics;
  std::string last_digest = digest_before_load(config_path);
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
    audit = observability::AuditLog::open(config.audit.path,
                                          config.audit.format == AuditFormatSetting::kFhir
                                              ? observability::AuditFormat::kFhir
                                              : observability::AuditFormat::kJson,
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
  std::unique_ptr<FileWatcher> watcher;  // after the workers: its thread inherits the signal mask
  update_watcher(watcher, config_path, config, log);
  ready = true;
  notify_systemd("READY=1");
  log.info("listening", {{"listen", config.listen},
                         {"workers", std::to_string(config.workers)},
                         {"rules", std::to_string(initial->policy->rule_names().size())}});

  for (;;) {
    int sig = 0;
    if (sigwait(&signals, &sig) != 0) continue;
    if (sig == SIGHUP || sig == watch_signal()) {
      const auto trigger = sig == SIGHUP ? ReloadTrigger::kSignal : ReloadTrigger::kWatcher;
      reload(config_path, holder, metrics, log, trigger, last_digest);
      if (trigger == ReloadTrigger::kSignal) audit->reopen();  // logrotate's postrotate hook
      update_watcher(watcher, config_path, holder.get()->config, log);
    } else if (sig == SIGUSR1) {
      audit->reopen();
      log.info("audit log reopened");
    } else {
      break;
    }
  }

  notify_systemd("STOPPING=1");
  watcher.reset();
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
