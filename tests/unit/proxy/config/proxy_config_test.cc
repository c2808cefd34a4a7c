// proxy.yaml loading: defaults, every value kind, and the exact FILE:LINE:COL of each error.
#include "proxy/config/proxy_config.h"

#include <doctest/doctest.h>

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include <thread>
#include <vector>
#include "tests/unit/proxy/config/minimal_config.h"

#include "proxy/config/address.h"

namespace fmp::proxy {
namespace {

using policy::ConfigError;
using policy::Diagnostic;

const std::string& kMinimal = testing::kMinimalConfig;

ProxyConfig load(const std::string& text) {
  return load_proxy_config_text(text, "p.yaml");
}

/// The diagnostics of a text that must fail, as "FILE:LINE:COL: message" strings.
std::vector<std::string> errors(const std::string& text) {
  try {
    load(text);
  } catch (const ConfigError& e) {
    std::vector<std::string> out;
    for (const Diagnostic& d : e.diagnostics()) out.push_back(d.str());
    return out;
  }
  FAIL("expected a ConfigError");
  return {};
}

/// The single error of `text`; fails when there are zero or several.
std::string error(const std::string& text) {
  const auto all = errors(text);
  REQUIRE(all.size() == 1);
  return all.front();
}

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.rfind(prefix, 0) == 0;
}
bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

/// kMinimal with one line replaced (1-based) or, with `line` past the end, one line appended.
std::string with_line(int line, const std::string& replacement) {
  std::vector<std::string> lines;
  std::string cur;
  for (char c : kMinimal) {
    if (c == '\n') {
      lines.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (line <= static_cast<int>(lines.size()))
    lines[static_cast<std::size_t>(line - 1)] = replacement;
  else
    lines.push_back(replacement);
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

TEST_CASE("a minimal config gets the documented defaults") {
  const ProxyConfig c = load(kMinimal);
  CHECK(c.file == "p.yaml");
  CHECK(c.listen == "127.0.0.1:8443");
  CHECK(c.listen_host == "127.0.0.1");
  CHECK(c.listen_port == 8443);
  const unsigned cores = std::thread::hardware_concurrency();
  CHECK(c.workers == (cores == 0 ? 1 : static_cast<int>(cores)));
  CHECK(c.drain_timeout_ms == 10000);
  CHECK(c.tls.cert.path == "server.pem");
  CHECK(c.tls.cert.pos.line == 3);
  CHECK(c.tls.cert.pos.column == 9);
  CHECK(c.tls.key.pos.line == 4);
  CHECK(c.tls.min_version == 0x0303);
  CHECK(c.tls.client_cert == ClientCertMode::kRequire);
  CHECK(c.tls.session_ticket_lifetime_s == 300);
  CHECK(c.tls.session_cache_size == 2000);
  REQUIRE(c.tls.trust.size() == 1);
  CHECK(c.tls.trust[0].name == "dt");
  CHECK(c.tls.trust[0].ca.path == "dt-ca.pem");
  CHECK(c.tls.trust[0].ca.pos.line == 7);
  CHECK(c.tls.trust[0].ca.pos.column == 11);
  CHECK(c.tls.trust[0].crl.empty());
  CHECK(c.upstream.https == false);
  CHECK(c.upstream.host == "127.0.0.1");
  CHECK(c.upstream.port == 8080);
  CHECK(c.upstream.base_path.empty());
  CHECK(c.upstream.ca.path.empty());
  CHECK(c.upstream.connect_timeout_ms == 2000);
  CHECK(c.upstream.response_timeout_ms == 30000);
  CHECK(c.upstream.max_idle_connections == 64);
  CHECK(c.fhir_base == "/fhir");
  CHECK(c.policy.path == "policy.yaml");
  CHECK(c.policy.pos.line == 10);
  CHECK(c.policy.pos.column == 9);
  CHECK(c.identity_headers.subject == "X-Client-Subject-DN");
  CHECK(c.identity_headers.rule == "X-Policy-Rule");
  CHECK_FALSE(c.identity_headers.xfcc);
  CHECK_FALSE(c.identity_headers.rfc9440);
  CHECK(c.limits.max_header_bytes == 16384);
  CHECK(c.limits.max_body_bytes == 10485760);
  CHECK(c.limits.idle_timeout_ms == 60000);
  CHECK(c.limits.header_timeout_ms == 10000);
  CHECK(c.limits.max_connections == 10000);
  CHECK(c.metrics.listen.empty());
  CHECK(c.audit.path == "-");
}

TEST_CASE("every key of the contract is read") {
  const std::string text =
      "listen: \"[::1]:9443\"\n"
      "workers: 3\n"
      "drain_timeout_ms: 0\n"
      "tls:\n"
      "  cert: s.pem\n"
      "  key: s.key\n"
      "  min_version: \"1.3\"\n"
      "  client_cert: request\n"
      "  session_ticket_lifetime_s: 0\n"
      "  trust:\n"
      "    - name: directtrust\n"
      "      ca: dt.pem\n"
      "      crl: [a.crl, b.crl]\n"
      "    - name: care.quality-2_x\n"
      "      ca: cq.pem\n"
      "      crl: c.crl\n"
      "upstream:\n"
      "  url: \"HTTPS://fhir.example.org/api/r4/\"\n"
      "  ca: up-ca.pem\n"
      "  connect_timeout_ms: 5\n"
      "  response_timeout_ms: 6\n"
      "  max_idle_connections: 0\n"
      "fhir_base: /\n"
      "policy: conf/policies\n"
      "identity_headers:\n"
      "  subject: X-Sub\n"
      "  issuer: X-Iss\n"
      "  san_uri: X-Uri\n"
      "  hipaa: X-Hipaa\n"
      "  fingerprint: X-Fp\n"
      "  trust: X-Trust\n"
      "  rule: X-Rule\n"
      "  xfcc: true\n"
      "  rfc9440: True\n"
      "limits:\n"
      "  max_header_bytes: 1000\n"
      "  max_body_bytes: 2000\n"
      "  idle_timeout_ms: 3000\n"
      "  header_timeout_ms: 4000\n"
      "  max_connections: 50\n"
      "metrics:\n"
      "  listen: \"127.0.0.1:9464\"\n"
      "audit:\n"
      "  path: /var/log/fmp/audit.jsonl\n";
  const ProxyConfig c = load(text);
  CHECK(c.listen_host == "::1");
  CHECK(c.listen_port == 9443);
  CHECK(c.workers == 3);
  CHECK(c.drain_timeout_ms == 0);
  CHECK(c.tls.min_version == 0x0304);
  CHECK(c.tls.client_cert == ClientCertMode::kRequest);
  CHECK(c.tls.session_ticket_lifetime_s == 0);
  REQUIRE(c.tls.trust.size() == 2);
  REQUIRE(c.tls.trust[0].crl.size() == 2);
  CHECK(c.tls.trust[0].crl[1].path == "b.crl");
  CHECK(c.tls.trust[0].crl[1].pos.line == 13);
  CHECK(c.tls.trust[0].crl[1].pos.column == 20);
  CHECK(c.tls.trust[1].name == "care.quality-2_x");
  REQUIRE(c.tls.trust[1].crl.size() == 1);
  CHECK(c.tls.trust[1].crl[0].path == "c.crl");
  CHECK(c.upstream.https);
  CHECK(c.upstream.host == "fhir.example.org");
  CHECK(c.upstream.port == 443);
  CHECK(c.upstream.base_path == "/api/r4");
  CHECK(c.upstream.ca.path == "up-ca.pem");
  CHECK(c.upstream.ca.pos.line == 19);
  CHECK(c.upstream.connect_timeout_ms == 5);
  CHECK(c.upstream.response_timeout_ms == 6);
  CHECK(c.upstream.max_idle_connections == 0);
  CHECK(c.fhir_base == "/");
  CHECK(c.policy.path == "conf/policies");
  CHECK(c.identity_headers.subject == "X-Sub");
  CHECK(c.identity_headers.fingerprint == "X-Fp");
  CHECK(c.identity_headers.rule == "X-Rule");
  CHECK(c.identity_headers.xfcc);
  CHECK(c.identity_headers.rfc9440);
  CHECK(c.limits.max_header_bytes == 1000);
  CHECK(c.limits.max_body_bytes == 2000);
  CHECK(c.limits.idle_timeout_ms == 3000);
  CHECK(c.limits.header_timeout_ms == 4000);
  CHECK(c.limits.max_connections == 50);
  CHECK(c.metrics.listen == "127.0.0.1:9464");
  CHECK(c.audit.path == "/var/log/fmp/audit.jsonl");
}

TEST_CASE("listen addresses") {
  CHECK(load(with_line(1, "listen: 0.0.0.0:443")).listen_host == "0.0.0.0");
  CHECK(load(with_line(1, "listen: \"[2001:db8::1]:8443\"")).listen_host == "2001:db8::1");
  CHECK(error(with_line(1, "listen: \"localhost:8443\"")) ==
        "p.yaml:1:9: listen: invalid address \"localhost:8443\": the host must be an IPv4 address "
        "or a bracketed IPv6 address, not a name");
  CHECK(starts_with(error(with_line(1, "listen: \"::1:8443\"")),
                    "p.yaml:1:9: listen: invalid address \"::1:8443\": an IPv6 address must be "
                    "written in brackets"));
  CHECK(starts_with(error(with_line(1, "listen: \"[::1]\"")),
                    "p.yaml:1:9: listen: invalid address \"[::1]\": expected host:port"));
  CHECK(starts_with(error(with_line(1, "listen: \"[::g]:1\"")), "p.yaml:1:9: listen: invalid"));
  CHECK(contains(error(with_line(1, "listen: 127.0.0.1:0")), "from 1 to 65535"));
  CHECK(contains(error(with_line(1, "listen: 127.0.0.1:65536")), "\"127.0.0.1:65536\""));
  CHECK(contains(error(with_line(1, "listen: 127.0.0.1:-1")), "from 1 to 65535"));
  CHECK(contains(error(with_line(1, "listen: 127.0.0.1")), "expected host:port"));
  CHECK(contains(error(with_line(1, "listen: 999.0.0.1:80")), "IPv4"));
  CHECK(contains(error(with_line(11, "metrics: {listen: \"localhost:9464\"}")),
                 "p.yaml:11:19: metrics.listen: invalid address"));
}

TEST_CASE("upstream url parsing") {
  auto url = [](const std::string& u) {
    return load(with_line(9, "  url: \"" + u + "\"")).upstream;
  };
  auto bad = [](const std::string& u) { return error(with_line(9, "  url: \"" + u + "\"")); };
  const auto a = url("http://fhir-server:8080/base");
  CHECK_FALSE(a.https);
  CHECK(a.host == "fhir-server");
  CHECK(a.port == 8080);
  CHECK(a.base_path == "/base");
  const auto b = url("https://[::1]");
  CHECK(b.https);
  CHECK(b.host == "::1");
  CHECK(b.port == 443);
  CHECK(url("http://example.org").port == 80);
  CHECK(url("http://example.org/").base_path.empty());
  CHECK(url("https://example.org:8443/a/b/").base_path == "/a/b");

  CHECK(bad("ftp://example.org") ==
        "p.yaml:9:8: upstream.url: invalid url \"ftp://example.org\": the scheme must be http or "
        "https");
  CHECK(contains(bad("example.org:8080"), "expected http://host"));
  CHECK(contains(bad("http://user:pw@example.org"), "user information"));
  CHECK(contains(bad("http://example.org/a?b=c"), "query or fragment"));
  CHECK(contains(bad("http://example.org/#x"), "query or fragment"));
  CHECK(contains(bad("http://"), "missing the host"));
  CHECK(contains(bad("http://:8080"), "missing the host"));
  CHECK(contains(bad("http://example.org:0"), "from 1 to 65535"));
  CHECK(contains(bad("http://example.org:http"), "from 1 to 65535"));
  CHECK(contains(bad("http://exa_mple.org"), "invalid host name"));
  CHECK(contains(bad("http://example.org/a//b"), "empty path segment"));
  CHECK(contains(bad("http://example.org/a/../b"), "dot segment"));
  CHECK(contains(bad("http://::1:80"), "brackets"));
}

TEST_CASE("upstream.ca with an http upstream is an error") {
  const std::string text = with_line(9, "  url: \"http://h\"\n  ca: up.pem");
  CHECK(error(text) ==
        "p.yaml:10:7: upstream.ca: only used with an https url, but url is "
        "\"http://h\"");
}

TEST_CASE("unknown and duplicate keys") {
  CHECK(error(kMinimal + "listn: x\n") == "p.yaml:11:1: unknown key \"listn\"");
  CHECK(error(with_line(4, "  key: server.key\n  keyy: other.key")) ==
        "p.yaml:5:3: unknown key \"tls.keyy\"");
  CHECK(error(with_line(7, "      ca: dt-ca.pem\n      crls: [x]")) ==
        "p.yaml:8:7: unknown key \"tls.trust[0].crls\"");
  CHECK(error(kMinimal + "policy: other.yaml\n") == "p.yaml:11:1: duplicate key \"policy\"");
}

TEST_CASE("missing required keys") {
  CHECK(error(with_line(1, "workers: 1")) == "p.yaml:1:1: missing required key \"listen\"");
  CHECK(error(with_line(3, "  min_version: \"1.2\"")) ==
        "p.yaml:2:1: missing required key \"tls.cert\"");
  CHECK(error(with_line(9, "  connect_timeout_ms: 5")) ==
        "p.yaml:8:1: missing required key \"upstream.url\"");
  CHECK(error(with_line(7, "      crl: [x.crl]")) ==
        "p.yaml:6:7: missing required key \"tls.trust[0].ca\"");
}

TEST_CASE("trust communities") {
  const std::string empty =
      "listen: \"127.0.0.1:8443\"\ntls:\n  cert: s\n  key: k\n  trust: []\n"
      "upstream:\n  url: \"http://h\"\npolicy: p\n";
  CHECK(error(empty) ==
        "p.yaml:5:10: tls.trust: expected a list of at least one trust community, got an empty "
        "list");
  CHECK(error(with_line(6, "    - name: \"a b\"")) ==
        "p.yaml:6:13: tls.trust[0].name: invalid trust community name \"a b\" (allowed: A-Z a-z "
        "0-9 _ . -)");
  const std::string dup = kMinimal.substr(0, kMinimal.find("upstream:")) +
                          "    - name: dt\n      ca: other.pem\n" +
                          kMinimal.substr(kMinimal.find("upstream:"));
  CHECK(error(dup) ==
        "p.yaml:8:13: tls.trust[1].name: duplicate trust community name \"dt\" (first at line 6)");
  CHECK(error(with_line(7, "      ca: dt-ca.pem\n      crl: {a: b}")) ==
        "p.yaml:8:12: tls.trust[0].crl: expected a file name or a list of file names, got a "
        "mapping");
}

TEST_CASE("wrong types and ranges") {
  CHECK(error(kMinimal + "workers: \"4\"\n") ==
        "p.yaml:11:10: workers: expected an integer in [1, 1024], got \"4\" (a quoted string)");
  CHECK(error(kMinimal + "workers: four\n") ==
        "p.yaml:11:10: workers: expected an integer in [1, 1024], got \"four\"");
  CHECK(error(kMinimal + "workers: 0\n") ==
        "p.yaml:11:10: workers: must be an integer in [1, 1024], got \"0\"");
  CHECK(error(kMinimal + "workers: 1.5\n") ==
        "p.yaml:11:10: workers: expected an integer in [1, 1024], got \"1.5\"");
  CHECK(error(kMinimal + "workers:\n") ==
        "p.yaml:11:1: workers: expected an integer in [1, 1024], got nothing");
  CHECK(error(kMinimal + "limits:\n  max_body_bytes: 0\n") ==
        "p.yaml:12:19: limits.max_body_bytes: must be an integer in [1, 2147483647], got \"0\"");
  CHECK(contains(error(kMinimal + "limits:\n  header_timeout_ms: -5\n"), "\"-5\""));
  CHECK(contains(error(kMinimal + "limits:\n  max_header_bytes: 99999999999999999999\n"),
                 "p.yaml:12:21: limits.max_header_bytes: expected an integer"));
  // Above 64 KiB http_parser would refuse the head itself (400, not 431).
  CHECK(error(kMinimal + "limits:\n  max_header_bytes: 65537\n") ==
        "p.yaml:12:21: limits.max_header_bytes: must be an integer in [1, 65536], got \"65537\"");
  CHECK(error(kMinimal + "drain_timeout_ms: [1]\n") ==
        "p.yaml:11:19: drain_timeout_ms: expected an integer in [0, 86400000], got a list");
  CHECK(error(kMinimal + "identity_headers:\n  xfcc: yes\n") ==
        "p.yaml:12:9: identity_headers.xfcc: expected true or false, got \"yes\"");
  CHECK(error(kMinimal + "identity_headers:\n  rfc9440: \"true\"\n") ==
        "p.yaml:12:12: identity_headers.rfc9440: expected true or false, got \"true\"");
  CHECK(error(with_line(3, "  cert: [a, b]")) ==
        "p.yaml:3:9: tls.cert: expected a string, got a list");
  CHECK(error(with_line(3, "  cert: \"\"")) == "p.yaml:3:9: tls.cert: must not be empty");
  CHECK(error(kMinimal + "tls2: 1\n") == "p.yaml:11:1: unknown key \"tls2\"");
  CHECK(errors("listen: \"127.0.0.1:1\"\ntls: 5\nupstream: {url: \"http://h\"}\npolicy: p\n") ==
        std::vector<std::string>{"p.yaml:2:6: tls: expected a mapping, got \"5\""});
  CHECK(error(kMinimal + "audit:\n  path: {}\n") ==
        "p.yaml:12:9: audit.path: expected a string, got a mapping");
  CHECK(contains(error(kMinimal + "tls_x: 1\n"), "unknown key"));
  CHECK(error(kMinimal + "audit:\n  format: xml\n") ==
        "p.yaml:12:11: audit.format: expected json or fhir, got \"xml\"");
}

TEST_CASE("audit format") {
  CHECK(load(kMinimal).audit.format == fmp::proxy::AuditFormatSetting::kJson);
  CHECK(load(kMinimal + "audit:\n  format: fhir\n").audit.format ==
        fmp::proxy::AuditFormatSetting::kFhir);
  CHECK(load(kMinimal + "audit:\n  format: json\n").audit.format ==
        fmp::proxy::AuditFormatSetting::kJson);
}

TEST_CASE("tls enumerations") {
  CHECK(load(with_line(4, "  key: k\n  min_version: 1.3")).tls.min_version == 0x0304);
  CHECK(error(with_line(4, "  key: k\n  min_version: \"1.1\"")) ==
        "p.yaml:5:16: tls.min_version: expected \"1.2\" or \"1.3\", got \"1.1\"");
  CHECK(error(with_line(4, "  key: k\n  client_cert: optional")) ==
        "p.yaml:5:16: tls.client_cert: expected require or request, got \"optional\"");
  CHECK(contains(error(with_line(4, "  key: k\n  session_ticket_lifetime_s: 604801")),
                 "p.yaml:5:30: tls.session_ticket_lifetime_s: must be an integer in [0, 604800]"));
  CHECK(contains(error(with_line(4, "  key: k\n  session_cache_size: 0")),
                 "p.yaml:5:23: tls.session_cache_size: must be an integer in [1, 100000]"));
}

TEST_CASE("fhir_base") {
  CHECK(load(kMinimal + "fhir_base: /r4/fhir\n").fhir_base == "/r4/fhir");
  CHECK(error(kMinimal + "fhir_base: fhir\n") ==
        "p.yaml:11:12: fhir_base: invalid path \"fhir\": must start with '/'");
  CHECK(contains(error(kMinimal + "fhir_base: /fhir/\n"),
                 "p.yaml:11:12: fhir_base: invalid path \"/fhir/\": must not end with '/'"));
  CHECK(contains(error(kMinimal + "fhir_base: /a//b\n"), "empty path segment"));
  CHECK(contains(error(kMinimal + "fhir_base: /a/./b\n"), "dot segment"));
  CHECK(contains(error(kMinimal + "fhir_base: \"/a%2Fb\"\n"), "'%'"));
  CHECK(contains(error(kMinimal + "fhir_base: \"/a b\"\n"), "' '"));
}

TEST_CASE("identity header names") {
  CHECK(error(kMinimal + "identity_headers:\n  subject: \"X Client\"\n") ==
        "p.yaml:12:12: identity_headers.subject: \"X Client\" is not a valid HTTP header name");
  CHECK(error(kMinimal + "identity_headers:\n  issuer: x-client-subject-dn\n") ==
        "p.yaml:12:11: identity_headers.issuer: header name \"x-client-subject-dn\" is already "
        "used by identity_headers.subject");
  CHECK(error(kMinimal + "identity_headers:\n  rule: x-a\n  trust: X-A\n") ==
        "p.yaml:12:9: identity_headers.rule: header name \"x-a\" is already used by "
        "identity_headers.trust");
  CHECK(contains(error(kMinimal + "identity_headers:\n  hipaa: Host\n"),
                 "p.yaml:12:10: identity_headers.hipaa: \"Host\" is a header the proxy handles"));
  CHECK(contains(error(kMinimal + "identity_headers:\n  hipaa: x-forwarded-client-cert\n"),
                 "handles itself"));
  CHECK(contains(error(kMinimal + "identity_headers:\n  hipaa: \"\"\n"), "must not be empty"));
}

TEST_CASE("every error of the file is reported") {
  const auto all = errors(with_line(1, "listen: nowhere") + "workers: 0\nbogus: 1\n");
  REQUIRE(all.size() == 3);
  CHECK(starts_with(all[0], "p.yaml:1:9: listen: invalid address"));
  CHECK(starts_with(all[1], "p.yaml:11:10: workers:"));
  CHECK(all[2] == "p.yaml:12:1: unknown key \"bogus\"");
}

TEST_CASE("YAML syntax errors and unusable documents") {
  CHECK(error("listen: [1,\ntls: 2\n") ==
        "p.yaml:3:1: invalid YAML: end of sequence flow not found");
  CHECK(error("listen: a\n tls: b: c\n") == "p.yaml:2:5: invalid YAML: illegal map value");
  CHECK(error("") ==
        "p.yaml:1:1: the file is empty: expected a mapping with listen, tls, upstream, policy");
  CHECK(error("- a\n- b\n") == "p.yaml:1:1: the document: expected a mapping, got a list");
}

TEST_CASE("load_proxy_config reads the file and names it") {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("fmp-proxy-config-test-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "proxy.yaml").string();
  {
    std::ofstream out(path);
    out << kMinimal << "workers: 2\n";
  }
  const ProxyConfig c = load_proxy_config(path);
  CHECK(c.file == path);
  CHECK(c.workers == 2);
  {
    std::ofstream out(path);
    out << kMinimal << "workers: x\n";
  }
  try {
    load_proxy_config(path);
    FAIL("expected a ConfigError");
  } catch (const ConfigError& e) {
    REQUIRE(e.diagnostics().size() == 1);
    CHECK(e.diagnostics()[0].file == path);
    CHECK(e.diagnostics()[0].line == 11);
    CHECK(e.diagnostics()[0].column == 10);
  }
  const std::string missing = (dir / "missing.yaml").string();
  try {
    load_proxy_config(missing);
    FAIL("expected a ConfigError");
  } catch (const ConfigError& e) {
    REQUIRE(e.diagnostics().size() == 1);
    CHECK(e.diagnostics()[0].str() ==
          missing + ":1:1: cannot read the file: No such file or directory");
  }
  std::filesystem::remove_all(dir);
}

TEST_CASE("address helpers") {
  std::string host;
  std::uint16_t port = 0;
  std::string why;
  CHECK(parse_listen_address("[::]:1", host, port, why));
  CHECK(host == "::");
  CHECK(port == 1);
  CHECK_FALSE(parse_listen_address("[::1]x", host, port, why));
  CHECK_FALSE(parse_listen_address("[::1", host, port, why));
  CHECK_FALSE(parse_listen_address(":8443", host, port, why));
  CHECK(valid_fhir_base("/", why));
  CHECK_FALSE(valid_fhir_base("", why));
  CHECK_FALSE(valid_fhir_base("//", why));
}

}  // namespace
}  // namespace fmp::proxy
