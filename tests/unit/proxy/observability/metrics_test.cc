#include "proxy/observability/metrics.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

namespace obs = fmp::proxy::observability;
using fmp::policy::Interaction;
using fmp::proxy::tls::VerifyReason;

namespace {

bool contains(const std::string& text, const std::string& needle) {
  return text.find(needle) != std::string::npos;
}

// The value of the sample line that starts with `series` followed by a space; "" when absent.
std::string sample(const std::string& text, const std::string& series) {
  std::size_t pos = 0;
  while ((pos = text.find(series + " ", pos)) != std::string::npos) {
    if (pos == 0 || text[pos - 1] == '\n') {
      const auto start = pos + series.size() + 1;
      return text.substr(start, text.find('\n', start) - start);
    }
    pos += series.size();
  }
  return "";
}

std::string find_promtool() {
  for (const char* dir : {"/usr/bin", "/usr/local/bin", "/bin"}) {
    std::string p = std::string(dir) + "/promtool";
    if (access(p.c_str(), X_OK) == 0) return p;
  }
  return "";
}

}  // namespace

TEST_CASE("every family is present before anything is counted, bounded series as zeros") {
  obs::Metrics m;
  const std::string text = m.render();
  for (const char* name :
       {"fhir_mtls_proxy_requests_total", "fhir_mtls_proxy_request_duration_seconds",
        "fhir_mtls_proxy_upstream_duration_seconds", "fhir_mtls_proxy_tls_handshakes_total",
        "fhir_mtls_proxy_upstream_errors_total", "fhir_mtls_proxy_active_connections",
        "fhir_mtls_proxy_policy_reloads_total", "fhir_mtls_proxy_policy_rules",
        "fhir_mtls_proxy_responses_total", "fhir_mtls_proxy_upstream_idle_connections",
        "fhir_mtls_proxy_policy_last_reload_timestamp_seconds",
        "fhir_mtls_proxy_audit_dropped_total", "fhir_mtls_proxy_audit_write_errors_total"}) {
    INFO("family ", name);
    CHECK(contains(text, std::string("# TYPE ") + name + " "));
  }
  CHECK(sample(text, R"(fhir_mtls_proxy_requests_total{decision="allow",rule="default"})") == "0");
  CHECK(sample(text, R"(fhir_mtls_proxy_requests_total{decision="shadow_deny",rule="default"})") ==
        "0");
  CHECK(sample(text, R"(fhir_mtls_proxy_tls_handshakes_total{reason="none",result="success"})") ==
        "0");
  for (const char* reason : {"no_certificate", "untrusted", "expired", "not_yet_valid", "revoked",
                             "protocol", "other"}) {
    CAPTURE(reason);
    CHECK(sample(text, std::string(R"(fhir_mtls_proxy_tls_handshakes_total{reason=")") + reason +
                           R"(",result="failure"})") == "0");
  }
  // No success series with a failure reason.
  CHECK_FALSE(contains(text, R"(reason="expired",result="success")"));
  for (const char* kind : {"connect", "reset", "timeout"}) {
    CHECK(sample(text, std::string(R"(fhir_mtls_proxy_upstream_errors_total{kind=")") + kind +
                           "\"}") == "0");
  }
  for (const char* cls : {"2xx", "3xx", "4xx", "5xx"}) {
    CHECK(sample(text, std::string(R"(fhir_mtls_proxy_responses_total{code_class=")") + cls +
                           "\"}") == "0");
  }
  CHECK(sample(text, R"(fhir_mtls_proxy_policy_reloads_total{result="success"})") == "0");
  CHECK(sample(text, R"(fhir_mtls_proxy_policy_reloads_total{result="failure"})") == "0");
  CHECK(sample(text, "fhir_mtls_proxy_active_connections") == "0");
  // Families whose label values are only known later (first use, configuration) have no series yet,
  // and prometheus-cpp exposes a family only once it has one.
  CHECK_FALSE(contains(text, "fhir_mtls_proxy_fhir_requests_total"));
  CHECK_FALSE(contains(text, "fhir_mtls_proxy_certificate_expiry_timestamp_seconds"));
}

TEST_CASE("decisions are counted per bound rule; unbound names count as default") {
  obs::Metrics m;
  auto rules = m.bind_rules({"read-clinical", "deny-admin"});
  m.count_decision(*rules, obs::DecisionLabel::kAllow, "read-clinical");
  m.count_decision(*rules, obs::DecisionLabel::kAllow, "read-clinical");
  m.count_decision(*rules, obs::DecisionLabel::kDeny, "deny-admin");
  m.count_decision(*rules, obs::DecisionLabel::kShadowDeny, "read-clinical");
  m.count_decision(*rules, obs::DecisionLabel::kDeny, "");
  // A client-controlled string (e.g. echoed from a header) must never become a label value.
  m.count_decision(*rules, obs::DecisionLabel::kDeny, "evil\"} 1\nfake_metric{x=\"");
  m.count_decision(*rules, obs::DecisionLabel::kDeny, "not-a-rule");

  const std::string text = m.render();
  CHECK(sample(text, R"(fhir_mtls_proxy_requests_total{decision="allow",rule="read-clinical"})") ==
        "2");
  CHECK(sample(text, R"(fhir_mtls_proxy_requests_total{decision="deny",rule="deny-admin"})") ==
        "1");
  CHECK(sample(text,
               R"(fhir_mtls_proxy_requests_total{decision="shadow_deny",rule="read-clinical"})") ==
        "1");
  CHECK(sample(text, R"(fhir_mtls_proxy_requests_total{decision="deny",rule="default"})") == "3");
  CHECK(sample(text, R"(fhir_mtls_proxy_requests_total{decision="deny",rule="read-clinical"})") ==
        "0");
  CHECK_FALSE(contains(text, "evil"));
  CHECK_FALSE(contains(text, "fake_metric"));
  CHECK_FALSE(contains(text, "not-a-rule"));
}

TEST_CASE("rebinding after a reload keeps counting into the same series") {
  obs::Metrics m;
  auto first = m.bind_rules({"r1"});
  m.count_decision(*first, obs::DecisionLabel::kAllow, "r1");
  auto second = m.bind_rules({"r1", "r2"});
  m.count_decision(*second, obs::DecisionLabel::kAllow, "r1");
  m.count_decision(*second, obs::DecisionLabel::kAllow, "r2");
  // A request that started on the old snapshot still counts correctly.
  m.count_decision(*first, obs::DecisionLabel::kAllow, "r2");
  const std::string text = m.render();
  CHECK(sample(text, R"(fhir_mtls_proxy_requests_total{decision="allow",rule="r1"})") == "2");
  CHECK(sample(text, R"(fhir_mtls_proxy_requests_total{decision="allow",rule="r2"})") == "1");
  CHECK(sample(text, R"(fhir_mtls_proxy_requests_total{decision="allow",rule="default"})") == "1");
}

TEST_CASE("fhir requests: R4 names kept, anything else is other, empty is system") {
  CHECK(obs::fhir_r4_resource_types().size() >= 145);
  CHECK(obs::fhir_resource_label("Patient") == "Patient");
  CHECK(obs::fhir_resource_label("VisionPrescription") == "VisionPrescription");
  CHECK(obs::fhir_resource_label("Account") == "Account");
  CHECK(obs::fhir_resource_label("patient") == "other");  // case matters in FHIR
  CHECK(obs::fhir_resource_label("Patient2") == "other");
  CHECK(obs::fhir_resource_label("") == "system");

  obs::Metrics m;
  m.count_fhir(Interaction::kRead, "Patient", obs::DecisionLabel::kAllow);
  m.count_fhir(Interaction::kRead, "Patient", obs::DecisionLabel::kAllow);
  m.count_fhir(Interaction::kSearch, "Observation", obs::DecisionLabel::kDeny);
  m.count_fhir(Interaction::kRead, "EvilResource<script>", obs::DecisionLabel::kDeny);
  m.count_fhir(Interaction::kRead, "AnotherMadeUpType", obs::DecisionLabel::kDeny);
  m.count_fhir(Interaction::kCapabilities, "", obs::DecisionLabel::kAllow);
  const std::string text = m.render();
  CHECK(
      sample(
          text,
          R"(fhir_mtls_proxy_fhir_requests_total{decision="allow",interaction="read",resource="Patient"})") ==
      "2");
  CHECK(
      sample(
          text,
          R"(fhir_mtls_proxy_fhir_requests_total{decision="deny",interaction="search",resource="Observation"})") ==
      "1");
  CHECK(
      sample(
          text,
          R"(fhir_mtls_proxy_fhir_requests_total{decision="deny",interaction="read",resource="other"})") ==
      "2");
  CHECK(
      sample(
          text,
          R"(fhir_mtls_proxy_fhir_requests_total{decision="allow",interaction="capabilities",resource="system"})") ==
      "1");
  CHECK_FALSE(contains(text, "EvilResource"));
  CHECK_FALSE(contains(text, "AnotherMadeUpType"));
}

TEST_CASE("handshakes, upstream errors, responses, gauges, reloads, expiry") {
  obs::Metrics m;
  m.count_handshake(true, VerifyReason::kNone);
  m.count_handshake(true, VerifyReason::kExpired);  // ok wins: success/none
  m.count_handshake(false, VerifyReason::kExpired);
  m.count_handshake(false, VerifyReason::kNone);  // a failure without a reason is "other"
  const std::string before = m.render();
  m.count_resumed();
  m.count_upstream_error(obs::UpstreamError::kTimeout);
  m.count_response(200);
  m.count_response(204);
  m.count_response(403);
  m.count_response(502);
  m.count_response(101);  // interim: not a final response class
  m.count_response(700);
  m.connection_opened();
  m.connection_opened();
  m.connection_closed();
  m.add_upstream_idle(3);
  m.set_upstream_idle(-1);
  m.reload(false, 1000);
  m.reload(true, 1234.5);
  m.set_policy_rules(7);
  m.set_expiry("server", 1.8e9);
  m.set_expiries(obs::Metrics::expiries_of(
      {{"trust:directtrust", 1900000000, 1800000000}, {"trust:other", 1700000000, 0}}));
  m.observe_request(0.0002);
  m.observe_request(45);  // beyond the last bucket: only +Inf
  m.observe_upstream(0.3);

  const std::string text = m.render();
  CHECK(sample(text, R"(fhir_mtls_proxy_tls_handshakes_total{reason="none",result="success"})") ==
        "2");
  CHECK(
      sample(text, R"(fhir_mtls_proxy_tls_handshakes_total{reason="expired",result="failure"})") ==
      "1");
  CHECK(sample(text, R"(fhir_mtls_proxy_tls_handshakes_total{reason="other",result="failure"})") ==
        "1");
  CHECK(sample(before, "fhir_mtls_proxy_tls_sessions_resumed_total") ==
        "0");  // there from the start
  CHECK(sample(text, "fhir_mtls_proxy_tls_sessions_resumed_total") == "1");
  CHECK(sample(text, R"(fhir_mtls_proxy_upstream_errors_total{kind="timeout"})") == "1");
  CHECK(sample(text, R"(fhir_mtls_proxy_upstream_errors_total{kind="connect"})") == "0");
  CHECK(sample(text, R"(fhir_mtls_proxy_responses_total{code_class="2xx"})") == "2");
  CHECK(sample(text, R"(fhir_mtls_proxy_responses_total{code_class="4xx"})") == "1");
  CHECK(sample(text, R"(fhir_mtls_proxy_responses_total{code_class="5xx"})") == "1");
  CHECK(sample(text, R"(fhir_mtls_proxy_responses_total{code_class="3xx"})") == "0");
  CHECK(sample(text, "fhir_mtls_proxy_active_connections") == "1");
  CHECK(sample(text, "fhir_mtls_proxy_upstream_idle_connections") == "2");
  CHECK(sample(text, R"(fhir_mtls_proxy_policy_reloads_total{result="failure"})") == "1");
  CHECK(sample(text, R"(fhir_mtls_proxy_policy_reloads_total{result="success"})") == "1");
  CHECK(sample(text, "fhir_mtls_proxy_policy_last_reload_timestamp_seconds") == "1234.5");
  CHECK(sample(text, "fhir_mtls_proxy_policy_rules") == "7");
  // set_expiries replaced the set: "server" is gone because it was not in the new list.
  CHECK_FALSE(contains(text, R"(cert="server")"));
  CHECK(
      sample(text,
             R"(fhir_mtls_proxy_certificate_expiry_timestamp_seconds{cert="trust:directtrust"})") ==
      "1900000000");
  CHECK(sample(text,
               R"(fhir_mtls_proxy_certificate_expiry_timestamp_seconds{cert="crl:directtrust"})") ==
        "1800000000");
  CHECK(
      sample(text, R"(fhir_mtls_proxy_certificate_expiry_timestamp_seconds{cert="trust:other"})") ==
      "1700000000");
  CHECK_FALSE(contains(text, R"(cert="crl:other")"));
  CHECK(sample(text, R"(fhir_mtls_proxy_request_duration_seconds_bucket{le="0.0001"})") == "0");
  CHECK(sample(text, R"(fhir_mtls_proxy_request_duration_seconds_bucket{le="0.00025"})") == "1");
  CHECK(sample(text, R"(fhir_mtls_proxy_request_duration_seconds_bucket{le="30"})") == "1");
  CHECK(sample(text, R"(fhir_mtls_proxy_request_duration_seconds_bucket{le="+Inf"})") == "2");
  CHECK(sample(text, "fhir_mtls_proxy_upstream_duration_seconds_count") == "1");

  m.set_expiry("server", 1.8e9);
  CHECK(sample(m.render(),
               R"(fhir_mtls_proxy_certificate_expiry_timestamp_seconds{cert="server"})") ==
        "1800000000");
}

TEST_CASE("the exposition passes promtool check metrics") {
  const std::string promtool = find_promtool();
  if (promtool.empty()) {
    MESSAGE("promtool not found (apt package prometheus): skipped");
    return;
  }
  obs::Metrics m;
  auto rules = m.bind_rules({"r1"});
  m.count_decision(*rules, obs::DecisionLabel::kAllow, "r1");
  m.count_fhir(Interaction::kRead, "Patient", obs::DecisionLabel::kAllow);
  m.set_expiry("server", 1.8e9);
  m.observe_request(0.01);

  char tmpl[] = "/tmp/fmp-metrics-XXXXXX";
  const int fd = mkstemp(tmpl);
  REQUIRE(fd >= 0);
  close(fd);
  {
    std::ofstream out(tmpl);
    out << m.render();
  }
  const std::string cmd = promtool + " check metrics < " + tmpl + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  std::string output;
  char buf[512];
  while (std::fgets(buf, sizeof buf, p) != nullptr) output += buf;
  const int status = pclose(p);
  unlink(tmpl);
  INFO(output);
  CHECK(status == 0);
}
