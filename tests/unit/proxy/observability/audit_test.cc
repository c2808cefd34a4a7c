#include "proxy/observability/audit.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "proxy/observability/metrics.h"

namespace obs = fmp::proxy::observability;
using nlohmann::json;

namespace {

obs::AuditEvent sample_event() {
  obs::AuditEvent e;
  // 2026-11-23T14:37:17.123Z
  e.time = std::chrono::system_clock::time_point(std::chrono::milliseconds(1795444637123LL));
  e.connection_id = 7;
  e.request_id = 42;
  e.subject = "CN=ehr-client,O=Example Hospital,C=US";
  e.san_uri = {"https://apps.example.org/ehr", "urn:oid:1.2.3"};
  e.fingerprint = "ab12cd";
  e.trust = "directtrust";
  e.hipaa = {"covered-entity"};
  e.method = "GET";
  e.path = "/fhir/Patient/123";
  e.fhir_resource = "Patient";
  e.fhir_interaction = "read";
  e.decision = "allow";
  e.rule = "read-clinical";
  e.mode = "enforce";
  e.status = 200;
  e.bytes_in = 0;
  e.bytes_out = 512;
  e.duration_ms = 12.5;
  e.client_address = "127.0.0.1:50000";
  return e;
}

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// A fresh directory under /tmp, removed with everything in it at scope exit.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    char tmpl[] = "/tmp/fmp-audit-XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~TempDir() { std::filesystem::remove_all(path); }
};

}  // namespace

TEST_CASE("RFC 3339 UTC with milliseconds") {
  using std::chrono::milliseconds;
  using std::chrono::system_clock;
  CHECK(obs::format_rfc3339_ms(system_clock::time_point(milliseconds(1795444637123LL))) ==
        "2026-11-23T14:37:17.123Z");
  CHECK(obs::format_rfc3339_ms(system_clock::time_point(milliseconds(0))) ==
        "1970-01-01T00:00:00.000Z");
  CHECK(obs::format_rfc3339_ms(system_clock::time_point(milliseconds(5))) ==
        "1970-01-01T00:00:00.005Z");
  CHECK(obs::format_rfc3339_ms(system_clock::time_point(milliseconds(-1))) ==
        "1969-12-31T23:59:59.999Z");
}

TEST_CASE("to_json_line: exact fields and values") {
  const std::string line = obs::to_json_line(sample_event());
  CHECK(line.find('\n') == std::string::npos);
  const json j = json::parse(line);
  const std::vector<std::string> expected_keys = {"bytes_in",
                                                  "bytes_out",
                                                  "client",
                                                  "connection_id",
                                                  "decision",
                                                  "duration_ms",
                                                  "fhir_interaction",
                                                  "fhir_operation",
                                                  "fhir_resource",
                                                  "fingerprint",
                                                  "hipaa",
                                                  "method",
                                                  "mode",
                                                  "path",
                                                  "reason",
                                                  "request_id",
                                                  "rule",
                                                  "san_uri",
                                                  "status",
                                                  "subject",
                                                  "time",
                                                  "trust"};
  std::vector<std::string> keys;
  for (const auto& [k, v] : j.items()) keys.push_back(k);
  CHECK(keys == expected_keys);  // nlohmann::json iterates keys sorted
  CHECK(j["time"] == "2026-11-23T14:37:17.123Z");
  CHECK(j["connection_id"] == 7);
  CHECK(j["request_id"] == 42);
  CHECK(j["client"] == "127.0.0.1:50000");
  CHECK(j["subject"] == "CN=ehr-client,O=Example Hospital,C=US");
  CHECK(j["san_uri"] == json::array({"https://apps.example.org/ehr", "urn:oid:1.2.3"}));
  CHECK(j["fingerprint"] == "ab12cd");
  CHECK(j["trust"] == "directtrust");
  CHECK(j["hipaa"] == json::array({"covered-entity"}));
  CHECK(j["method"] == "GET");
  CHECK(j["path"] == "/fhir/Patient/123");
  CHECK(j["fhir_resource"] == "Patient");
  CHECK(j["fhir_interaction"] == "read");
  CHECK(j["fhir_operation"] == "");
  CHECK(j["decision"] == "allow");
  CHECK(j["rule"] == "read-clinical");
  CHECK(j["mode"] == "enforce");
  CHECK(j["status"] == 200);
  CHECK(j["bytes_out"] == 512);
  CHECK(j["duration_ms"] == 12.5);
}

TEST_CASE("to_json_line: never the query string, and bad UTF-8 does not throw") {
  auto e = sample_event();
  e.path = "/fhir/Patient?name=Smith&birthdate=1970-01-01";
  e.subject = std::string("CN=\xff\xfe bad");
  std::string line;
  REQUIRE_NOTHROW(line = obs::to_json_line(e));
  CHECK(line.find("Smith") == std::string::npos);
  CHECK(line.find('?') == std::string::npos);
  const json j = json::parse(line);
  CHECK(j["path"] == "/fhir/Patient");
  CHECK(j["subject"].get<std::string>().rfind("CN=", 0) == 0);

  const std::string fhir = obs::to_fhir_audit_event(e);
  CHECK(fhir.find("Smith") == std::string::npos);
}

TEST_CASE("to_fhir_audit_event: R4 AuditEvent shape") {
  auto e = sample_event();
  const json j = json::parse(obs::to_fhir_audit_event(e));
  CHECK(j["resourceType"] == "AuditEvent");
  CHECK(j["type"]["system"] == "http://terminology.hl7.org/CodeSystem/audit-event-type");
  CHECK(j["type"]["code"] == "rest");
  CHECK(j["subtype"][0]["system"] == "http://hl7.org/fhir/restful-interaction");
  CHECK(j["subtype"][0]["code"] == "read");
  CHECK(j["action"] == "R");
  CHECK(j["recorded"] == "2026-11-23T14:37:17.123Z");
  CHECK(j["outcome"] == "0");
  REQUIRE(j["agent"].size() == 1);
  CHECK(j["agent"][0]["requestor"] == true);
  CHECK(j["agent"][0]["who"]["display"] == "CN=ehr-client,O=Example Hospital,C=US");
  CHECK(j["agent"][0]["who"]["identifier"]["value"] == "ab12cd");
  CHECK(j["agent"][0]["network"]["address"] == "127.0.0.1:50000");
  CHECK(j["agent"][0]["network"]["type"] == "2");
  CHECK(j["source"]["observer"]["display"] == "fhir-mtls-proxy");
  REQUIRE(j["entity"].size() == 1);
  CHECK(j["entity"][0]["what"]["display"] == "/fhir/Patient/123");
  bool has_rule = false;
  for (const auto& d : j["entity"][0]["detail"]) {
    if (d["type"] == "rule") has_rule = d["valueString"] == "read-clinical";
  }
  CHECK(has_rule);

  SUBCASE("deny is a minor failure") {
    e.decision = "deny";
    e.status = 403;
    CHECK(json::parse(obs::to_fhir_audit_event(e))["outcome"] == "4");
  }
  SUBCASE("an allowed request the upstream failed is a serious failure") {
    e.status = 502;
    CHECK(json::parse(obs::to_fhir_audit_event(e))["outcome"] == "8");
  }
  SUBCASE("actions follow the interaction") {
    const std::pair<const char*, const char*> cases[] = {
        {"create", "C"}, {"update", "U"}, {"patch", "U"},       {"delete", "D"},
        {"search", "E"}, {"vread", "R"},  {"transaction", "E"}, {"operation", "E"}};
    for (const auto& [interaction, action] : cases) {
      e.fhir_interaction = interaction;
      CAPTURE(interaction);
      CHECK(json::parse(obs::to_fhir_audit_event(e))["action"] == action);
    }
  }
  SUBCASE("anonymous and outside FHIR") {
    e.subject.clear();
    e.fingerprint.clear();
    e.fhir_interaction = "none";
    e.method = "DELETE";
    const json a = json::parse(obs::to_fhir_audit_event(e));
    CHECK(a["agent"][0]["who"]["display"] == "anonymous");
    CHECK_FALSE(a["agent"][0]["who"].contains("identifier"));
    CHECK_FALSE(a.contains("subtype"));
    CHECK(a["action"] == "D");
  }
}

TEST_CASE("AuditLog writes events in order, one line each") {
  TempDir dir;
  const std::string path = (dir.path / "audit.log").string();
  obs::Metrics metrics;
  auto log = obs::AuditLog::open(path, obs::AuditFormat::kJson, &metrics);
  constexpr int kEvents = 500;
  for (int i = 0; i < kEvents; ++i) {
    auto e = sample_event();
    e.request_id = static_cast<std::uint64_t>(i);
    REQUIRE(log->write(std::move(e)));
  }
  log->flush();
  CHECK(log->healthy());
  const auto lines = read_lines(path);
  REQUIRE(lines.size() == kEvents);
  for (int i = 0; i < kEvents; ++i) {
    CHECK(json::parse(lines[static_cast<std::size_t>(i)])["request_id"] == i);
  }
  CHECK(std::filesystem::status(path).permissions() ==
        (std::filesystem::perms::owner_read | std::filesystem::perms::owner_write |
         std::filesystem::perms::group_read));
}

TEST_CASE("AuditLog in FHIR format writes AuditEvent resources") {
  TempDir dir;
  const std::string path = (dir.path / "audit.ndjson").string();
  {
    auto log = obs::AuditLog::open(path, obs::AuditFormat::kFhir);
    REQUIRE(log->write(sample_event()));
  }  // the destructor flushes
  const auto lines = read_lines(path);
  REQUIRE(lines.size() == 1);
  CHECK(json::parse(lines[0])["resourceType"] == "AuditEvent");
}

TEST_CASE("AuditLog reopen after logrotate's rename writes to the new file") {
  TempDir dir;
  const std::string path = (dir.path / "audit.log").string();
  const std::string rotated = path + ".1";
  auto log = obs::AuditLog::open(path, obs::AuditFormat::kJson);
  auto e = sample_event();
  e.request_id = 1;
  REQUIRE(log->write(e));
  log->flush();
  std::filesystem::rename(path, rotated);
  e.request_id = 2;
  REQUIRE(log->write(e));  // still the old file: no reopen requested yet
  log->flush();
  log->reopen();
  e.request_id = 3;
  REQUIRE(log->write(e));
  log->flush();
  CHECK(log->healthy());

  const auto old_lines = read_lines(rotated);
  REQUIRE(old_lines.size() == 2);
  CHECK(json::parse(old_lines[0])["request_id"] == 1);
  CHECK(json::parse(old_lines[1])["request_id"] == 2);
  const auto new_lines = read_lines(path);
  REQUIRE(new_lines.size() == 1);
  CHECK(json::parse(new_lines[0])["request_id"] == 3);
}

TEST_CASE("AuditLog: a failed reopen keeps the old file, reports unhealthy, and is retried") {
  TempDir dir;
  std::filesystem::create_directory(dir.path / "logs");
  const std::string path = (dir.path / "logs" / "audit.log").string();
  auto log = obs::AuditLog::open(path, obs::AuditFormat::kJson);
  auto e = sample_event();
  e.request_id = 1;
  REQUIRE(log->write(e));
  log->flush();
  std::filesystem::rename(dir.path / "logs", dir.path / "moved");
  log->reopen();
  e.request_id = 2;
  REQUIRE(log->write(e));
  log->flush();
  CHECK_FALSE(log->healthy());  // the path cannot be opened: still appending to the moved file
  CHECK(read_lines((dir.path / "moved" / "audit.log").string()).size() == 2);

  std::filesystem::create_directory(dir.path / "logs");
  e.request_id = 3;
  REQUIRE(log->write(e));
  log->flush();
  CHECK(log->healthy());
  const auto lines = read_lines(path);
  REQUIRE(lines.size() == 1);
  CHECK(json::parse(lines[0])["request_id"] == 3);
}

TEST_CASE("AuditLog: unopenable path throws; a failing disk makes it unhealthy and counts") {
  TempDir dir;
  CHECK_THROWS_WITH_AS(
      obs::AuditLog::open((dir.path / "missing" / "audit.log").string(), obs::AuditFormat::kJson),
      doctest::Contains("missing/audit.log"), std::runtime_error);

  if (access("/dev/full", W_OK) != 0) {
    MESSAGE("/dev/full not available: disk-full case skipped");
    return;
  }
  obs::Metrics metrics;
  auto log = obs::AuditLog::open("/dev/full", obs::AuditFormat::kJson, &metrics);
  CHECK(log->healthy());
  REQUIRE(log->write(sample_event()));
  REQUIRE(log->write(sample_event()));
  log->flush();
  CHECK_FALSE(log->healthy());
  CHECK(log->write_errors() == 2);
  CHECK(metrics.render().find("fhir_mtls_proxy_audit_write_errors_total 2") != std::string::npos);
}

TEST_CASE("AuditLog: a full queue drops, counts, and never blocks the caller") {
  // The writer blocks on a pipe nobody reads yet, so the bounded queue must fill up.
  int fds[2];
  REQUIRE(pipe2(fds, O_CLOEXEC) == 0);
  const int flags = fcntl(fds[1], F_GETFL);
  REQUIRE(fcntl(fds[1], F_SETFL, flags | O_NONBLOCK) == 0);
  const std::string filler(4096, 'x');
  while (write(fds[1], filler.data(), filler.size()) > 0) {
  }
  obs::Metrics metrics;
  auto log = obs::AuditLog::open("/proc/self/fd/" + std::to_string(fds[1]), obs::AuditFormat::kJson,
                                 &metrics, 4);
  close(fds[1]);  // the log holds its own descriptor of the pipe

  int accepted = 0;
  int refused = 0;
  for (int i = 0; i < 64; ++i) {
    if (log->write(sample_event())) {
      ++accepted;
    } else {
      ++refused;
    }
  }
  // At most one batch in the writer's hands plus a full queue.
  CHECK(refused > 0);
  CHECK(accepted <= 8);
  CHECK(log->dropped() == static_cast<std::uint64_t>(refused));
  CHECK(metrics.render().find("fhir_mtls_proxy_audit_dropped_total " + std::to_string(refused)) !=
        std::string::npos);

  // Drain the pipe until the log closes it; every accepted event arrives.
  std::string received;
  std::thread reader([&] {
    char buf[65536];
    ssize_t n;
    while ((n = read(fds[0], buf, sizeof buf)) > 0)
      received.append(buf, static_cast<std::size_t>(n));
  });
  log.reset();
  reader.join();
  close(fds[0]);
  std::size_t lines = 0;
  for (char c : received) lines += c == '\n' ? 1 : 0;
  CHECK(lines == static_cast<std::size_t>(accepted));
}
