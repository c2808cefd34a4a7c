// The proxy's Prometheus metrics: one object, created once and passed to whoever counts (no
// globals). Every family is created in the constructor; bounded label series are pre-created so
// dashboards show zeros rather than nothing. No label ever carries a client-controlled or unbounded
// value: rule names come from the loaded policy, resources from the fixed FHIR R4 list, everything
// else from enums.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <array>
#include <atomic>
#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "policy/fhir_request.h"
#include "proxy/observability/atomic_histogram.h"
#include "proxy/tls/trust_store.h"

namespace fmp::proxy::observability {

/// The `decision` label of requests_total and fhir_requests_total.
enum class DecisionLabel { kAllow, kDeny, kShadowAllow, kShadowDeny };
inline constexpr std::size_t kDecisionLabelCount = 4;
/// "allow" | "deny" | "shadow_allow" | "shadow_deny".
std::string_view to_string(DecisionLabel d);

/// The `kind` label of upstream_errors_total.
enum class UpstreamError { kConnect, kReset, kTimeout };
inline constexpr std::size_t kUpstreamErrorCount = 3;
/// "connect" | "reset" | "timeout".
std::string_view to_string(UpstreamError e);

/// The `reason` label of tls_handshakes_total, fixed by the contract: "none", "no_certificate",
/// "untrusted", "expired", "not_yet_valid", "revoked", "protocol", "other". Owned here (not taken
/// from tls::to_string) so the exported label set cannot drift from the contract.
std::string_view handshake_reason_label(tls::VerifyReason r);

/// The FHIR R4 (4.0.1) resource type names, sorted. The only values of the `resource` label.
std::span<const std::string_view> fhir_r4_resource_types();
/// The `resource` label for a request's resource: the R4 name itself, "system" for "" (system-level
/// interactions and paths outside FHIR), "other" for anything else (client-controlled, so never
/// exported).
std::string_view fhir_resource_label(std::string_view resource);

/// Counters of requests_total for the rules of one policy snapshot: rule name -> one counter per
/// decision, plus "default" for requests no rule decided. Immutable once built, so lookups need no
/// lock; share it with the policy snapshot it was built for.
class RuleCounters {
 public:
  using Row = std::array<prometheus::Counter*, kDecisionLabelCount>;

  /// The row for `rule`; the "default" row when `rule` is not a bound name (empty, unknown, or a
  /// client-controlled string: it never becomes a label).
  const Row& row(std::string_view rule) const;

 private:
  friend class Metrics;
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept {
      return std::hash<std::string_view>{}(s);
    }
  };
  std::unordered_map<std::string, Row, Hash, std::equal_to<>> rows_;
  Row default_row_{};
};

/// Owns a prometheus::Registry with every family of the contract. All counting methods are
/// thread-safe. Hot-path methods (count_*, observe_*, connection_*) take no lock and allocate
/// nothing: prometheus-cpp counters and gauges are atomics, and the two duration histograms are
/// AtomicHistogram (prometheus-cpp's Histogram would take a mutex per observation).
class Metrics {
 public:
  Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  /// Creates (or finds) the requests_total series of these rules and of "default". Takes
  /// prometheus-cpp's family lock: call once per policy load/reload, never per request. Series of
  /// rules dropped by a later reload stay exported with their final counts (counters never go
  /// back).
  std::shared_ptr<const RuleCounters> bind_rules(const std::vector<std::string>& rule_names);

  /// requests_total{decision, rule}: `rule` as bound, anything else counts as "default".
  void count_decision(const RuleCounters& rules, DecisionLabel decision, std::string_view rule);

  /// fhir_requests_total{interaction, resource, decision}. The label space (14 x 148 x 4) is too
  /// big to expose empty, so a series is created on its first use (under a mutex, once per series);
  /// every later call is a lock-free atomic load plus an atomic add.
  void count_fhir(policy::Interaction interaction, std::string_view resource,
                  DecisionLabel decision);

  /// request_duration_seconds (end to end) and upstream_duration_seconds.
  void observe_request(double seconds);
  void observe_upstream(double seconds);

  /// tls_handshakes_total{result, reason}: ok -> result="success",reason="none"; otherwise
  /// result="failure" with the reason (kNone on a failure is counted as "other").
  void count_handshake(bool ok, tls::VerifyReason reason);

  /// tls_sessions_resumed_total: successful handshakes that resumed a cached TLS session.
  void count_resumed();

  void count_upstream_error(UpstreamError kind);

  /// responses_total{code_class}: statuses 200..599 sent downstream; others (1xx interim) not
  /// counted.
  void count_response(int status);

  /// active_connections: accepted downstream connections that are open.
  void connection_opened();
  void connection_closed();

  /// upstream_idle_connections: adds `delta` (pools are per worker, so callers report changes).
  void add_upstream_idle(int delta);
  /// Same as add_upstream_idle (the name of the interface sketch).
  void set_upstream_idle(int delta) { add_upstream_idle(delta); }

  /// policy_reloads_total{result}; on success also policy_last_reload_timestamp_seconds =
  /// now_seconds.
  void reload(bool ok, double now_seconds);
  /// The initial load: sets policy_last_reload_timestamp_seconds without counting a reload.
  void policy_loaded(double now_seconds);
  /// policy_rules: every rule of the serving policy, shadow ones included.
  void set_policy_rules(std::size_t n);

  /// certificate_expiry_timestamp_seconds{cert=cert_label}; labels come from configuration
  /// ("server", "trust:NAME", "crl:NAME"). Takes the family lock: load/reload only.
  void set_expiry(const std::string& cert_label, double unix_seconds);
  /// Replaces the whole expiry set (a reload that removed a trust community removes its series).
  void set_expiries(const std::vector<std::pair<std::string, double>>& expiries);
  /// The expiry series of a trust store's TrustStore::expiries(): "trust:NAME" (earliest CA
  /// notAfter) and, for communities with CRLs, "crl:NAME" (earliest nextUpdate). Append ("server",
  /// notAfter).
  static std::vector<std::pair<std::string, double>> expiries_of(
      const std::vector<tls::TrustStore::Expiry>& trust);

  /// audit_dropped_total / audit_write_errors_total: events the audit log could not take or write.
  void count_audit_dropped();
  void count_audit_write_error();

  /// Prometheus text exposition format 0.0.4 of every family.
  std::string render() const;

  /// The registry, for tests and for anyone adding a collectable.
  const std::shared_ptr<prometheus::Registry>& registry() const { return registry_; }

 private:
  static constexpr std::size_t kInteractionCount = 14;  // policy::Interaction kNone..kOperation
  static constexpr std::size_t kResourceSlots = 148;    // R4 names + "other" + "system"
  static constexpr std::size_t kHandshakeSlots = 8;     // success/none + failure x 7 reasons

  std::shared_ptr<prometheus::Registry> registry_;

  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Counter>& fhir_requests_;
  prometheus::Family<prometheus::Counter>& handshakes_;
  prometheus::Family<prometheus::Counter>& resumed_family_;
  prometheus::Family<prometheus::Counter>& upstream_errors_;
  prometheus::Family<prometheus::Counter>& responses_;
  prometheus::Family<prometheus::Counter>& reloads_;
  prometheus::Family<prometheus::Counter>& audit_dropped_family_;
  prometheus::Family<prometheus::Counter>& audit_errors_family_;
  prometheus::Family<prometheus::Gauge>& active_connections_family_;
  prometheus::Family<prometheus::Gauge>& upstream_idle_family_;
  prometheus::Family<prometheus::Gauge>& policy_rules_family_;
  prometheus::Family<prometheus::Gauge>& last_reload_family_;
  prometheus::Family<prometheus::Gauge>& expiry_family_;
  AtomicHistogram request_duration_;  ///< lock-free: observed on every request
  AtomicHistogram upstream_duration_;

  std::array<prometheus::Counter*, kHandshakeSlots> handshake_counters_{};
  std::array<prometheus::Counter*, kUpstreamErrorCount> upstream_error_counters_{};
  std::array<prometheus::Counter*, 4> response_counters_{};  // 2xx..5xx
  prometheus::Counter* resumed_ = nullptr;
  prometheus::Counter* reload_success_ = nullptr;
  prometheus::Counter* reload_failure_ = nullptr;
  prometheus::Counter* audit_dropped_ = nullptr;
  prometheus::Counter* audit_write_errors_ = nullptr;
  prometheus::Gauge* active_connections_ = nullptr;
  prometheus::Gauge* upstream_idle_ = nullptr;
  prometheus::Gauge* policy_rules_ = nullptr;
  prometheus::Gauge* last_reload_ = nullptr;

  /// fhir_requests_total series, created on first use; index (interaction, resource slot,
  /// decision).
  std::unique_ptr<std::atomic<prometheus::Counter*>[]> fhir_counters_;
  std::mutex fhir_create_mutex_;

  std::mutex expiry_mutex_;
  std::map<std::string, prometheus::Gauge*> expiry_gauges_;
};

}  // namespace fmp::proxy::observability
