#include "proxy/observability/audit.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "proxy/observability/metrics.h"
#include "tests/unit/proxy/allocation_count.h"

namespace obs = fmp::proxy::observability;
using nlohmann::json;

namespace {

obs::AuditEvent sample_event() {
  obs::AuditEvent e;
  // 2026-11-23T14:37:17.123Z
  e.time = std::chrono::system_clock::time_point(std::chrono::milliseconds(1795444637123LL));
  e.connection_id = 7;
  e.request_id = 42;
  auto peer = std::make_shared<obs::AuditPeer>();
  peer->subject = "CN=ehr-client,O=Example Hospital,C=US";
  peer->san_uri = {"https://apps.example.org/ehr", "urn:oid:1.2.3"};
  peer->fingerprint = "ab12cd";
  peer->trust = "directtrust";
  peer->hipaa = {"covered-entity"};
  e.peer = peer;
  e.client_address = std::make_shared<const std::string>("127.0.0.1:50000");
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
  auto peer = std::make_shared<obs::AuditPeer>(*e.peer);
  peer->subject = std::string("CN=\xff\xfe bad");
  e.peer = peer;
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
    auto peer = std::make_shared<obs::AuditPeer>(*e.peer);
    peer->subject.clear();
    peer->fingerprint.clear();
    e.peer = peer;
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

TEST_CASE("AuditLog slots: a reused slot carries nothing of its last event, bursts keep order") {
  TempDir dir;
  const std::string path = (dir.path / "audit.log").string();
  auto log = obs::AuditLog::open(path, obs::AuditFormat::kJson);
  // Two full events fill one slot on each side (the queue's and the writer's swap every batch)...
  auto e = sample_event();
  e.reason = "a reason long enough to leave the inline buffer of a std::string";
  e.fhir_operation = "$everything";
  for (int i = 0; i < 2; ++i) {
    REQUIRE(log->write(e));
    log->flush();
  }
  // ... and the next two reuse those slots: shorter and empty fields, no peer, no address.
  e.reason.clear();
  e.fhir_operation.clear();
  e.rule = "r";
  e.peer.reset();
  e.client_address.reset();
  for (int i = 0; i < 2; ++i) {
    REQUIRE(log->write(e));
    log->flush();
  }
  // A burst larger than the slots kept afterwards, then one more event: all in order.
  constexpr std::size_t kBurst = obs::AuditLog::kKeptSlots + 500;
  for (std::size_t i = 0; i < kBurst; ++i) {
    e.request_id = 1000 + i;
    REQUIRE(log->write(e));
  }
  log->flush();
  e.request_id = 99;
  REQUIRE(log->write(e));
  log->flush();
  const auto lines = read_lines(path);
  REQUIRE(lines.size() == kBurst + 5);
  for (std::size_t i = 0; i < 2; ++i) {
    const json full = json::parse(lines[i]);
    CHECK(full["reason"] == "a reason long enough to leave the inline buffer of a std::string");
    CHECK(full["subject"] == "CN=ehr-client,O=Example Hospital,C=US");
    CHECK(full["client"] == "127.0.0.1:50000");
  }
  for (std::size_t i = 2; i < 4; ++i) {
    const json reused = json::parse(lines[i]);
    CHECK(reused["reason"] == "");
    CHECK(reused["fhir_operation"] == "");
    CHECK(reused["rule"] == "r");
    CHECK(reused["subject"] == "");  // the slot's earlier peer is gone
    CHECK(reused["client"] == "");
  }
  for (std::size_t i = 0; i < kBurst; ++i) {
    const json line = json::parse(lines[4 + i]);
    CHECK(line["request_id"] == 1000 + i);
    CHECK(line["reason"] == "");
  }
  CHECK(json::parse(lines.back())["request_id"] == 99);
}

TEST_CASE("release_held_parts: references dropped, large strings freed, small ones kept") {
  auto e = sample_event();
  e.reason.assign(obs::kKeptAuditFieldBytes + 1, 'r');
  e.path.assign(obs::kKeptAuditFieldBytes * 3, 'p');
  obs::release_held_parts(e);
  CHECK(e.peer == nullptr);
  CHECK(e.client_address == nullptr);
  CHECK(e.reason.capacity() <= obs::kKeptAuditFieldBytes);
  CHECK(e.path.capacity() <= obs::kKeptAuditFieldBytes);
  CHECK(e.rule == "read-clinical");  // a small string is left as it is (its storage reused)
}

#ifndef FMP_SANITIZED_NEW
TEST_CASE("AuditLog: a steady stream of events allocates nothing on the writing thread") {
  TempDir dir;
  const std::string path = (dir.path / "audit.log").string();
  auto log = obs::AuditLog::open(path, obs::AuditFormat::kJson);
  auto e = sample_event();
  e.reason = "rule \"a-rule-name-of-some-length\" matched";
  // Both sets of slots (the queue's and the writer's, which swap at every batch) grow once.
  for (int i = 0; i < 2; ++i) {
    REQUIRE(log->write(e));
    log->flush();
  }
  int written = 0;
  std::size_t allocated = 0;
  {
    fmp::proxy::testing::AllocationCount count;
    for (int i = 0; i < 50; ++i) {
      e.request_id = static_cast<std::uint64_t>(i);
      if (!log->write(e)) break;
      log->flush();
      ++written;
    }
    allocated = count.stop();
  }
  CHECK(written == 50);
  CHECK(allocated == 0);
  const auto lines = read_lines(path);
  REQUIRE(lines.size() == 52);
  CHECK(json::parse(lines.back())["request_id"] == 49);
}
#endif

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

namespace {

// An anonymous, denied request before 1970 with quotes, control characters and UTF-8 in it.
obs::AuditEvent odd_event() {
  obs::AuditEvent c;
  c.time = std::chrono::system_clock::time_point(std::chrono::milliseconds(-1));
  c.connection_id = 18446744073709551615ULL;
  c.request_id = 1;
  c.method = "POST";
  c.path = "/fhir/$export?_type=Patient";
  c.fhir_interaction = "operation";
  c.fhir_operation = "$export";
  c.decision = "deny";
  c.rule = "default";
  c.mode = "enforce";
  c.reason = "no rule matched: \"quoted\"\t\x01\\";
  c.status = 401;
  c.bytes_in = 17;
  c.duration_ms = 0.0;
  auto peer = std::make_shared<obs::AuditPeer>();
  peer->hipaa = {"caf\xC3\xA9", "\xE2\x82\xAC\xF0\x9F\x98\x80"};
  c.peer = peer;
  c.client_address = std::make_shared<const std::string>("[::1]:4433");
  return c;
}

// The lines the nlohmann-based serialisers wrote for these events (before the JSON writer).
const std::string kSampleJson =
    R"j({"time":"2026-11-23T14:37:17.123Z","connection_id":7,"request_id":42,)j"
    R"j("client":"127.0.0.1:50000","subject":"CN=ehr-client,O=Example Hospital,C=US",)j"
    R"j("san_uri":["https://apps.example.org/ehr","urn:oid:1.2.3"],"fingerprint":"ab12cd",)j"
    R"j("trust":"directtrust","hipaa":["covered-entity"],"method":"GET",)j"
    R"j("path":"/fhir/Patient/123","fhir_resource":"Patient","fhir_interaction":"read",)j"
    R"j("fhir_operation":"","decision":"allow","rule":"read-clinical","mode":"enforce",)j"
    R"j("reason":"","status":200,"bytes_in":0,"bytes_out":512,"duration_ms":12.5})j";

const std::string kOddJson =
    R"j({"time":"1969-12-31T23:59:59.999Z","connection_id":18446744073709551615,)j"
    R"j("request_id":1,"client":"[::1]:4433","subject":"","san_uri":[],"fingerprint":"",)j"
    "\"trust\":\"\",\"hipaa\":[\"caf\xC3\xA9\",\"\xE2\x82\xAC\xF0\x9F\x98\x80\"],"
    R"j("method":"POST","path":"/fhir/$export","fhir_resource":"",)j"
    R"j("fhir_interaction":"operation","fhir_operation":"$export","decision":"deny",)j"
    R"j("rule":"default","mode":"enforce","reason":"no rule matched: \"quoted\"\t\u0001\\",)j"
    R"j("status":401,"bytes_in":17,"bytes_out":0,"duration_ms":0.0})j";

const std::string kSampleFhir =
    R"j({"resourceType":"AuditEvent","type":{"system":)j"
    R"j("http://terminology.hl7.org/CodeSystem/audit-event-type","code":"rest",)j"
    R"j("display":"RESTful Operation"},"subtype":[{"system":)j"
    R"j("http://hl7.org/fhir/restful-interaction","code":"read"}],"action":"R",)j"
    R"j("recorded":"2026-11-23T14:37:17.123Z","outcome":"0",)j"
    R"j("outcomeDesc":"allow (rule read-clinical, enforce)","agent":[{"requestor":true,)j"
    R"j("who":{"identifier":{"type":{"text":"X.509 certificate SHA-256 fingerprint"},)j"
    R"j("value":"ab12cd"},"display":"CN=ehr-client,O=Example Hospital,C=US"},)j"
    R"j("role":[{"text":"covered-entity"}],"network":{"address":"127.0.0.1:50000",)j"
    R"j("type":"2"}}],"source":{"observer":{"display":"fhir-mtls-proxy"},"type":[{"system":)j"
    R"j("http://terminology.hl7.org/CodeSystem/security-source-type","code":"4",)j"
    R"j("display":"Application Server"}]},"entity":[{"what":{"display":"/fhir/Patient/123"},)j"
    R"j("type":{"system":"http://terminology.hl7.org/CodeSystem/audit-entity-type",)j"
    R"j("code":"2","display":"System Object"},"detail":[)j"
    R"j({"type":"method","valueString":"GET"},{"type":"fhir-resource","valueString":"Patient"},)j"
    R"j({"type":"decision","valueString":"allow"},)j"
    R"j({"type":"rule","valueString":"read-clinical"},{"type":"mode","valueString":"enforce"},)j"
    R"j({"type":"status","valueString":"200"},{"type":"trust","valueString":"directtrust"},)j"
    R"j({"type":"san-uri","valueString":"https://apps.example.org/ehr"},)j"
    R"j({"type":"san-uri","valueString":"urn:oid:1.2.3"},)j"
    R"j({"type":"connection-id","valueString":"7"},{"type":"request-id","valueString":"42"},)j"
    R"j({"type":"bytes-in","valueString":"0"},{"type":"bytes-out","valueString":"512"},)j"
    R"j({"type":"duration-ms","valueString":"12.500"}]}]})j";

const std::string kOddFhir =
    R"j({"resourceType":"AuditEvent","type":{"system":)j"
    R"j("http://terminology.hl7.org/CodeSystem/audit-event-type","code":"rest",)j"
    R"j("display":"RESTful Operation"},"subtype":[{"system":)j"
    R"j("http://hl7.org/fhir/restful-interaction","code":"operation"}],"action":"E",)j"
    R"j("recorded":"1969-12-31T23:59:59.999Z","outcome":"4",)j"
    R"j("outcomeDesc":"deny (rule default, enforce): no rule matched: \"quoted\"\t\u0001\\",)j"
    R"j("agent":[{"requestor":true,"who":{"display":"anonymous"},)j"
    "\"role\":[{\"text\":\"caf\xC3\xA9\"},{\"text\":\"\xE2\x82\xAC\xF0\x9F\x98\x80\"}],"
    R"j("network":{"address":"[::1]:4433","type":"2"}}],)j"
    R"j("source":{"observer":{"display":"fhir-mtls-proxy"},"type":[{"system":)j"
    R"j("http://terminology.hl7.org/CodeSystem/security-source-type","code":"4",)j"
    R"j("display":"Application Server"}]},"entity":[{"what":{"display":"/fhir/$export"},)j"
    R"j("type":{"system":"http://terminology.hl7.org/CodeSystem/audit-entity-type",)j"
    R"j("code":"2","display":"System Object"},"detail":[)j"
    R"j({"type":"method","valueString":"POST"},)j"
    R"j({"type":"fhir-operation","valueString":"$export"},)j"
    R"j({"type":"decision","valueString":"deny"},{"type":"rule","valueString":"default"},)j"
    R"j({"type":"mode","valueString":"enforce"},{"type":"status","valueString":"401"},)j"
    R"j({"type":"connection-id","valueString":"18446744073709551615"},)j"
    R"j({"type":"request-id","valueString":"1"},{"type":"bytes-in","valueString":"17"},)j"
    R"j({"type":"bytes-out","valueString":"0"},{"type":"duration-ms","valueString":"0.000"}]}]})j";

}  // namespace

TEST_CASE("to_json_line: the same line, byte for byte, as the nlohmann serialiser wrote") {
  CHECK(obs::to_json_line(sample_event()) == kSampleJson);
  CHECK(obs::to_json_line(odd_event()) == kOddJson);
  CHECK(json::parse(obs::to_json_line(sample_event())) == json::parse(kSampleJson));
  CHECK(json::parse(obs::to_json_line(odd_event())) == json::parse(kOddJson));

  auto bad = sample_event();
  auto bad_peer = std::make_shared<obs::AuditPeer>(*bad.peer);
  bad_peer->subject = std::string("CN=\xff\xfe bad");
  bad.peer = bad_peer;
  bad.path = "/fhir/Patient?name=Smith";
  std::string expected = kSampleJson;
  const std::string subject = "CN=ehr-client,O=Example Hospital,C=US";
  expected.replace(expected.find(subject), subject.size(), "CN=\xEF\xBF\xBD\xEF\xBF\xBD bad");
  expected.replace(expected.find("/fhir/Patient/123"), 17, "/fhir/Patient");
  CHECK(obs::to_json_line(bad) == expected);
}

TEST_CASE("a prepared peer writes the same bytes as one written field by field") {
  for (obs::AuditEvent e : {sample_event(), odd_event()}) {
    const std::string plain = obs::to_json_line(e);
    auto prepared = std::make_shared<obs::AuditPeer>(*e.peer);
    obs::prepare_audit_peer(*prepared);
    CHECK_FALSE(prepared->json_members.empty());
    e.peer = prepared;
    CHECK(obs::to_json_line(e) == plain);
  }
  // Invalid UTF-8, quotes, no SAN URI, no HIPAA category.
  auto e = sample_event();
  auto odd = std::make_shared<obs::AuditPeer>();
  odd->subject = std::string("CN=\"q\"\\ \xff\x01");
  odd->fingerprint = "00";
  e.peer = odd;
  const std::string plain = obs::to_json_line(e);
  obs::prepare_audit_peer(*odd);
  CHECK(obs::to_json_line(e) == plain);
  CHECK(json::parse(plain)["san_uri"] == json::array());
  CHECK(json::parse(plain)["subject"] == "CN=\"q\"\\ \xEF\xBF\xBD\u0001");
}

TEST_CASE("to_json_line: duration_ms stays a finite float") {
  auto e = sample_event();
  e.duration_ms = 3.0;
  CHECK(obs::to_json_line(e).find(R"("duration_ms":3.0})") != std::string::npos);
  e.duration_ms = 1.234567891;  // steady_clock nanoseconds, in ms: not cut to 3 decimals
  CHECK(json::parse(obs::to_json_line(e))["duration_ms"].get<double>() == 1.234567891);
  e.duration_ms = std::numeric_limits<double>::quiet_NaN();
  const json j = json::parse(obs::to_json_line(e));
  CHECK(j["duration_ms"].is_number_float());
  CHECK(j["duration_ms"] == 0.0);
}

TEST_CASE("append_json_line appends one line without a newline") {
  std::string out = "earlier\n";
  obs::append_json_line(out, sample_event());
  CHECK(out == "earlier\n" + kSampleJson);
  obs::Rfc3339MsFormatter time;
  out.clear();
  obs::append_json_line(out, odd_event(), time);
  obs::append_json_line(out, sample_event(), time);
  CHECK(out == kOddJson + kSampleJson);
}

TEST_CASE("to_fhir_audit_event: the same resource, byte for byte, as the nlohmann serialiser") {
  CHECK(obs::to_fhir_audit_event(sample_event()) == kSampleFhir);
  CHECK(obs::to_fhir_audit_event(odd_event()) == kOddFhir);
  obs::Rfc3339MsFormatter time;
  std::string out = "x";
  obs::append_fhir_audit_event(out, sample_event(), time);
  CHECK(out == "x" + kSampleFhir);

  auto e = sample_event();
  e.duration_ms = 0.0625;  // a tie at 3 decimals: printf's "%.3f" rounds to even
  CHECK(obs::to_fhir_audit_event(e).find(R"("valueString":"0.062"})") != std::string::npos);
  e.duration_ms = 1e300;  // longer than the 31 characters the detail ever held: cut the same
  char full[400];
  std::snprintf(full, sizeof full, "%.3f", e.duration_ms);
  const std::string cut = std::string(full).substr(0, 31);
  CHECK(obs::to_fhir_audit_event(e).find(R"("valueString":")" + cut + "\"}") != std::string::npos);
}

TEST_CASE("Rfc3339MsFormatter: a cached second never leaks into another second") {
  using std::chrono::milliseconds;
  using std::chrono::system_clock;
  obs::Rfc3339MsFormatter f;
  const std::pair<long long, const char*> steps[] = {
      {1795444637123LL, "2026-11-23T14:37:17.123Z"},
      {1795444637999LL, "2026-11-23T14:37:17.999Z"},
      {1795444638000LL, "2026-11-23T14:37:18.000Z"},
      {1795444637500LL, "2026-11-23T14:37:17.500Z"},  // backwards: the clock may step
      {1795444637500LL + 86400000LL, "2026-11-24T14:37:17.500Z"},
      {0, "1970-01-01T00:00:00.000Z"},
      {-1, "1969-12-31T23:59:59.999Z"},
      {-1000, "1969-12-31T23:59:59.000Z"},
      {-1001, "1969-12-31T23:59:58.999Z"},
      {999, "1970-01-01T00:00:00.999Z"},
  };
  for (const auto& [ms, text] : steps) {
    CAPTURE(ms);
    CHECK(f.format(system_clock::time_point(milliseconds(ms))) == text);
    CHECK(obs::format_rfc3339_ms(system_clock::time_point(milliseconds(ms))) == text);
  }
}

TEST_CASE("AuditLog: events sharing a second keep their own milliseconds") {
  TempDir dir;
  const std::string path = (dir.path / "audit.log").string();
  {
    auto log = obs::AuditLog::open(path, obs::AuditFormat::kJson);
    for (int ms : {1, 999, 1000, 5}) {
      auto e = sample_event();
      e.time =
          std::chrono::system_clock::time_point(std::chrono::milliseconds(1795444637000LL + ms));
      REQUIRE(log->write(std::move(e)));
    }
  }
  const auto lines = read_lines(path);
  REQUIRE(lines.size() == 4);
  CHECK(json::parse(lines[0])["time"] == "2026-11-23T14:37:17.001Z");
  CHECK(json::parse(lines[1])["time"] == "2026-11-23T14:37:17.999Z");
  CHECK(json::parse(lines[2])["time"] == "2026-11-23T14:37:18.000Z");
  CHECK(json::parse(lines[3])["time"] == "2026-11-23T14:37:17.005Z");
}

TEST_CASE("audit events without a peer are written as anonymous with every field present") {
  auto e = sample_event();
  e.peer.reset();
  {
    // The client's address is the connection's, not the certificate's: still written.
    const json line = json::parse(obs::to_json_line(e));
    CHECK(line["client"] == "127.0.0.1:50000");
    CHECK(line["subject"] == "");
    const json fhir = json::parse(obs::to_fhir_audit_event(e));
    CHECK(fhir["agent"][0]["network"]["address"] == "127.0.0.1:50000");
  }
  e.client_address.reset();
  const json line = json::parse(obs::to_json_line(e));
  CHECK(line["subject"] == "");
  CHECK(line["client"] == "");
  CHECK(line["san_uri"] == json::array());
  CHECK(line["hipaa"] == json::array());
  CHECK(line["fingerprint"] == "");
  const json fhir = json::parse(obs::to_fhir_audit_event(e));
  CHECK(fhir["agent"][0]["who"]["display"] == "anonymous");
  CHECK_FALSE(fhir["agent"][0].contains("network"));
}
