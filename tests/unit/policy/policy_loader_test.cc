#include "policy/policy_loader.h"

#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "policy/engine.h"

namespace fs = std::filesystem;
using namespace fmp::policy;

namespace {

/// Every diagnostic of loading `text` as "p.yaml", as FILE:LINE:COL: message; empty when it loads.
std::vector<std::string> errors(const std::string& text) {
  try {
    load_policy_text(text, "p.yaml");
  } catch (const ConfigError& e) {
    std::vector<std::string> out;
    for (const auto& d : e.diagnostics()) out.push_back(d.str());
    return out;
  }
  return {};
}

std::string first_error(const std::string& text) {
  auto e = errors(text);
  return e.empty() ? std::string("(loaded)") : e.front();
}

std::vector<std::string> dir_errors(const std::string& path) {
  try {
    load_policy(path);
  } catch (const ConfigError& e) {
    std::vector<std::string> out;
    for (const auto& d : e.diagnostics()) out.push_back(d.str());
    return out;
  }
  return {};
}

/// A scratch directory removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "fmp-policy-XXXXXX").string();
    REQUIRE(mkdtemp(tmpl.data()) != nullptr);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const fs::path& path() const { return path_; }
  std::string write(const std::string& name, const std::string& text) const {
    const fs::path p = path_ / name;
    fs::create_directories(p.parent_path());
    std::ofstream(p) << text;
    return p.string();
  }

 private:
  fs::path path_;
};

const Engine& engine(const PolicyPtr& p) {
  return dynamic_cast<const Engine&>(*p);
}

}  // namespace

TEST_CASE("a complete policy loads with the contract's example keys") {
  auto p = load_policy_text(R"(default: allow
hipaa_categories:
  "1.3.6.1.4.1.41179.2.1": covered-entity
  "1.3.6.1.4.1.99999.7": research
hipaa_extensions:
  - "1.3.6.1.4.1.99999.1"
rules:
  - name: hospital-apps-read-clinical
    effect: allow
    mode: enforce
    when:
      trust: [directtrust]
      subject: { O: ["Example Hospital"], OU: ["*"], CN: ["*"] }
      issuer:  { CN: ["Example DirectTrust CA"] }
      san_uri: ["https://apps.example.org/*"]
      san_dns: ["*.example.org"]
      san_email: ["*@example.org"]
      hipaa: [covered-entity, business-associate]
      cert_policy: ["1.3.6.1.4.1.41179.1.3"]
      fingerprint_sha256: ["ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12"]
      method: [GET, HEAD]
      path: ["/fhir/Patient/*"]
      fhir:
        resource: [Patient, Observation]
        interaction: [read, vread, search, history, capabilities, create, update, patch, delete, batch, transaction, operation]
        operation: ["$everything", "$export"]
  - name: shadow.one
    effect: deny
    mode: shadow
  - name: no_when
    effect: deny
    when: {}
)",
                            "p.yaml");
  CHECK(p->default_effect() == Effect::kAllow);
  CHECK(p->rule_names() ==
        std::vector<std::string>{"hospital-apps-read-clinical", "shadow.one", "no_when"});
  CHECK(p->hipaa().categories.at("1.3.6.1.4.1.41179.2.1") == "covered-entity");
  CHECK(p->hipaa().categories.at("1.3.6.1.4.1.41179.2.2") ==
        "business-associate");  // built-in kept
  CHECK(p->hipaa().categories.at("1.3.6.1.4.1.99999.7") == "research");
  CHECK(p->hipaa().extensions == std::vector<std::string>{"1.3.6.1.4.1.99999.1"});
  CHECK(engine(p).rules()[1].mode == Mode::kShadow);
  CHECK(engine(p).rules()[0].source.line == 8);
}

TEST_CASE("default is deny when no file sets it; scalars are one-element lists") {
  auto p = load_policy_text(
      "rules:\n  - {name: a, effect: allow, when: {method: GET, path: /fhir/metadata}}\n",
      "p.yaml");
  CHECK(p->default_effect() == Effect::kDeny);
  FhirRequest r;
  r.method = "GET";
  r.path = "/fhir/metadata";
  CHECK(p->evaluate(Identity{}, r).rule == "a");
  r.method = "HEAD";  // method lists are literal: GET does not cover HEAD
  CHECK(p->evaluate(Identity{}, r).rule == "default");
}

TEST_CASE("fingerprints are normalised from uppercase and colon-separated pairs") {
  const std::string hex(64, 'a');
  std::string colons;
  for (int i = 0; i < 32; ++i) colons += std::string(i ? ":" : "") + "AA";
  auto p = load_policy_text(
      "rules:\n  - name: fp\n    effect: allow\n    when:\n      fingerprint_sha256: [\"" + colons +
          "\"]\n",
      "p.yaml");
  Identity id;
  id.present = true;
  id.fingerprint_sha256 = hex;
  CHECK(p->evaluate(id, FhirRequest{}).rule == "fp");
}

TEST_CASE("loader error: YAML syntax error is positioned") {
  CHECK(first_error("rules:\n  - name: [a\n") ==
        "p.yaml:3:1: YAML syntax error: end of sequence flow not found");
}

TEST_CASE("loader error: empty file and non-mapping top level") {
  CHECK(first_error("# nothing\n") ==
        "p.yaml:1:1: empty policy file (expected a mapping with rules)");
  CHECK(first_error("- a\n") ==
        "p.yaml:1:1: expected a mapping at the top of a policy file, got a list");
  CHECK(first_error("default: deny\n---\ndefault: allow\n") ==
        "p.yaml:3:1: more than one YAML document in a policy file");
}

TEST_CASE("loader error: unknown top-level key") {
  CHECK(first_error("default: deny\nrule: []\n") ==
        "p.yaml:2:1: unknown key \"rule\" (expected one of default, hipaa_categories, "
        "hipaa_extensions, rules)");
}

TEST_CASE("loader error: duplicate key in a mapping") {
  CHECK(first_error("rules:\n  - name: a\n    effect: allow\n    effect: deny\n") ==
        "p.yaml:4:5: duplicate key \"effect\" in a rule");
}

TEST_CASE("loader error: unknown rule key and unknown when key") {
  CHECK(first_error("rules:\n  - name: a\n    effect: allow\n    whn: {}\n") ==
        "p.yaml:4:5: unknown key \"whn\" in a rule (expected one of name, effect, mode, when)");
  CHECK(first_error("rules:\n  - name: a\n    effect: allow\n    when:\n      subjct: {CN: x}\n") ==
        "p.yaml:5:7: unknown key \"subjct\" in when (expected one of trust, subject, issuer, "
        "san_uri, san_dns, san_email, hipaa, cert_policy, fingerprint_sha256, method, path, fhir)");
  CHECK(first_error(
            "rules:\n  - name: a\n    effect: allow\n    when:\n      fhir: {verb: read}\n") ==
        "p.yaml:5:14: unknown key \"verb\" in fhir (expected one of resource, interaction, "
        "operation)");
}

TEST_CASE("loader error: wrong types") {
  CHECK(first_error("rules:\n  name: a\n") ==
        "p.yaml:2:3: expected a list for \"rules\", got a mapping");
  CHECK(first_error("rules:\n  - just-a-name\n") ==
        "p.yaml:2:5: expected a mapping for a rule, got a string");
  CHECK(first_error("rules:\n  - name: [a]\n    effect: allow\n") ==
        "p.yaml:2:11: expected a string for \"name\", got a list");
  CHECK(first_error("rules:\n  - name: a\n    effect: allow\n    when:\n      path: {x: y}\n") ==
        "p.yaml:5:13: expected a string or a list of strings for \"path\", got a mapping");
  CHECK(first_error("rules:\n  - name: a\n    effect: allow\n    when:\n      path: [[/x]]\n") ==
        "p.yaml:5:14: expected a string in \"path\", got a list");
  CHECK(first_error("rules:\n  - name: a\n    effect: allow\n    when: [method]\n") ==
        "p.yaml:4:11: expected a mapping for \"when\", got a list");
  CHECK(first_error("rules:\n  - name: a\n    effect: allow\n    when:\n      method:\n") ==
        "p.yaml:5:7: expected a string or a list of strings for \"method\", got nothing");
}

TEST_CASE("loader error: bad effect, bad mode, bad default") {
  CHECK(first_error("rules:\n  - name: a\n    effect: permit\n") ==
        "p.yaml:3:13: bad effect \"permit\" (expected allow or deny)");
  CHECK(first_error("rules:\n  - name: a\n    effect: allow\n    mode: audit\n") ==
        "p.yaml:4:11: bad mode \"audit\" (expected enforce or shadow)");
  CHECK(first_error("default: permit\n") ==
        "p.yaml:1:10: bad default \"permit\" (expected allow or deny)");
}

TEST_CASE("loader error: missing name or effect") {
  CHECK(first_error("rules:\n  - effect: allow\n") == "p.yaml:2:5: rule without \"name\"");
  CHECK(first_error("rules:\n  - name: a\n") ==
        "p.yaml:2:5: rule \"a\" without \"effect\" (allow or deny)");
}

TEST_CASE("loader error: unknown interaction") {
  CHECK(first_error("rules:\n  - name: a\n    effect: allow\n    when:\n      fhir:\n        "
                    "interaction: [read, raed]\n") ==
        "p.yaml:6:29: unknown interaction \"raed\" (expected one of read, vread, search, history, "
        "capabilities, create, update, patch, delete, batch, transaction, operation, unknown)");
  CHECK(first_error(
            "rules:\n  - name: a\n    effect: allow\n    when: {fhir: {interaction: none}}\n") ==
        "p.yaml:4:32: unknown interaction \"none\" (expected one of read, vread, search, history, "
        "capabilities, create, update, patch, delete, batch, transaction, operation, unknown)");
}

TEST_CASE("loader error: bad rule names") {
  CHECK(first_error("rules:\n  - name: \"a b\"\n    effect: allow\n") ==
        "p.yaml:2:11: bad rule name \"a b\" (allowed: A-Z a-z 0-9 _ . -)");
  CHECK(first_error("rules:\n  - name: default\n    effect: allow\n") ==
        "p.yaml:2:11: rule name \"default\" is reserved (it names the default decision)");
  CHECK(first_error("rules:\n  - name: \"\"\n    effect: allow\n") ==
        "p.yaml:2:11: bad rule name \"\" (allowed: A-Z a-z 0-9 _ . -)");
}

TEST_CASE("loader error: duplicate rule name within a file") {
  CHECK(first_error("rules:\n  - name: a\n    effect: allow\n  - name: a\n    effect: deny\n") ==
        "p.yaml:4:11: duplicate rule name \"a\" (first defined at p.yaml:2:11)");
}

TEST_CASE("loader error: bad globs") {
  CHECK(first_error("rules:\n  - name: a\n    effect: allow\n    when: {san_uri: [\"\"]}\n") ==
        "p.yaml:4:22: empty pattern in \"san_uri\" (it would match only an empty value)");
  CHECK(first_error("rules:\n  - name: a\n    effect: allow\n    when: {subject: {CN: \"\"}}\n") ==
        "p.yaml:4:26: empty pattern in \"subject.CN\" (it would match only an empty value)");
  CHECK(first_error("rules:\n  - name: a\n    effect: allow\n    when: {path: fhir/*}\n") ==
        "p.yaml:4:18: path pattern \"fhir/*\" must start with \"/\" (paths always do)");
  CHECK(
      first_error(
          "rules:\n  - name: a\n    effect: allow\n    when: {fhir: {operation: everything}}\n") ==
      "p.yaml:4:30: bad operation \"everything\" (expected \"$name\", e.g. \"$everything\")");
  CHECK(first_error(
            "rules:\n  - name: a\n    effect: allow\n    when: {fhir: {resource: Patient/1}}\n") ==
        "p.yaml:4:29: bad resource type \"Patient/1\" (expected a FHIR resource type such as "
        "Patient, or a glob)");
  CHECK(first_error("rules:\n  - name: a\n    effect: allow\n    when: {method: get}\n") ==
        "p.yaml:4:20: bad method \"get\" (expected an uppercase HTTP method such as GET)");
  CHECK(
      first_error("rules:\n  - name: a\n    effect: allow\n    when: {subject: {\"C N\": x}}\n") ==
      "p.yaml:4:22: bad DN attribute \"C N\" in subject (expected a short name such as CN, O, OU, "
      "or a dotted OID)");
  CHECK(first_error("rules:\n  - name: a\n    effect: allow\n    when: {hipaa: Covered}\n") ==
        "p.yaml:4:19: bad HIPAA category \"Covered\" (allowed: a-z 0-9 -)");
}

TEST_CASE("loader error: bad OIDs") {
  CHECK(first_error(
            "rules:\n  - name: a\n    effect: allow\n    when: {cert_policy: [\"1.3.x\"]}\n") ==
        "p.yaml:4:26: bad OID \"1.3.x\" in cert_policy (expected dotted numbers such as "
        "1.3.6.1.4.1.41179.1.3)");
  CHECK(first_error("hipaa_categories:\n  \"1.3..6\": covered-entity\n") ==
        "p.yaml:2:3: bad OID \"1.3..6\" in hipaa_categories (expected dotted numbers such as "
        "1.3.6.1.4.1.41179.1.3)");
  CHECK(first_error("hipaa_categories:\n  \"1.3.6\": Covered Entity\n") ==
        "p.yaml:2:12: bad HIPAA category \"Covered Entity\" (allowed: a-z 0-9 -)");
  CHECK(first_error("hipaa_extensions: [\"1.3.6\", \"7.1\"]\n") ==
        "p.yaml:1:29: bad OID \"7.1\" in hipaa_extensions (expected dotted numbers such as "
        "1.3.6.1.4.1.41179.1.3)");
  CHECK(first_error("hipaa_extensions: \"01.2\"\n") ==
        "p.yaml:1:19: bad OID \"01.2\" in hipaa_extensions (expected dotted numbers such as "
        "1.3.6.1.4.1.41179.1.3)");
  CHECK(errors("hipaa_extensions: \"1.3.6.1.4.1.99999.1\"\n").empty());
}

TEST_CASE("loader error: bad fingerprint") {
  CHECK(first_error(
            "rules:\n  - name: a\n    effect: allow\n    when: {fingerprint_sha256: abcd}\n") ==
        "p.yaml:4:32: bad fingerprint_sha256 \"abcd\" (expected 64 hex digits, optionally as "
        "colon-separated pairs)");
  const std::string not_hex = std::string(63, 'a') + "g";
  CHECK(first_error(
            "rules:\n  - name: a\n    effect: allow\n    when: {fingerprint_sha256: " + not_hex +
            "}\n") == "p.yaml:4:32: bad fingerprint_sha256 \"" + not_hex +
                          "\" (expected 64 hex digits, optionally as colon-separated pairs)");
}

TEST_CASE("loader error: empty lists and mappings") {
  CHECK(first_error("rules: []\n") ==
        "p.yaml:1:8: empty list for \"rules\" (omit the key instead)");
  CHECK(first_error("rules:\n  - name: a\n    effect: allow\n    when: {method: []}\n") ==
        "p.yaml:4:20: empty list for \"method\" (it would match nothing)");
  CHECK(first_error("rules:\n  - name: a\n    effect: allow\n    when: {subject: {}}\n") ==
        "p.yaml:4:21: empty mapping for \"subject\" (it would match nothing)");
  CHECK(first_error("rules:\n  - name: a\n    effect: allow\n    when: {subject: {CN: []}}\n") ==
        "p.yaml:4:26: empty list for \"subject.CN\" (it would match nothing)");
}

TEST_CASE("the loader reports every error of a file, and loads nothing") {
  auto e = errors(R"(default: maybe
rules:
  - name: ok
    effect: allow
  - name: bad
    effect: allow
    when: {method: get, path: x}
  - name: ok
    effect: deny
)");
  REQUIRE(e.size() == 4);
  CHECK(e[0] == "p.yaml:1:10: bad default \"maybe\" (expected allow or deny)");
  CHECK(e[1] == "p.yaml:7:20: bad method \"get\" (expected an uppercase HTTP method such as GET)");
  CHECK(e[2] == "p.yaml:7:31: path pattern \"x\" must start with \"/\" (paths always do)");
  CHECK(e[3] == "p.yaml:8:11: duplicate rule name \"ok\" (first defined at p.yaml:3:11)");
}

TEST_CASE("a directory loads *.yaml and *.yml in lexical order, skipping hidden and other files") {
  TempDir d;
  d.write("20-b.yml", "rules:\n  - {name: b, effect: allow}\n");
  d.write("10-a.yaml", "default: allow\nrules:\n  - {name: a, effect: deny}\n");
  d.write("30-c.yaml", "default: allow\nrules:\n  - {name: c, effect: deny, mode: shadow}\n");
  d.write(".hidden.yaml", "rules: [garbage\n");
  d.write("README.md", "not yaml: [\n");
  d.write("notes.yaml.bak", "not yaml: [\n");
  fs::create_directories(d.path() / "sub.yaml");
  auto p = load_policy(d.path().string());
  CHECK(p->rule_names() == std::vector<std::string>{"a", "b", "c"});
  CHECK(p->default_effect() == Effect::kAllow);
}

TEST_CASE("a directory follows symlinked files as Kubernetes ConfigMaps mount them") {
  TempDir d;
  d.write("..2024_01_01/policy.yaml", "rules:\n  - {name: from-configmap, effect: allow}\n");
  fs::create_directory_symlink("..2024_01_01", d.path() / "..data");
  fs::create_symlink("..data/policy.yaml", d.path() / "policy.yaml");
  auto p = load_policy(d.path().string());
  CHECK(p->rule_names() == std::vector<std::string>{"from-configmap"});
}

TEST_CASE("directory errors: duplicate names and default conflicts across files, empty directory") {
  TempDir d;
  const std::string a = d.write("a.yaml", "default: deny\nrules:\n  - {name: x, effect: allow}\n");
  const std::string b = d.write("b.yaml", "default: allow\nrules:\n  - {name: x, effect: deny}\n");
  auto e = dir_errors(d.path().string());
  REQUIRE(e.size() == 2);
  CHECK(e[0] ==
        b + ":1:10: default \"allow\" conflicts with default \"deny\" set at " + a + ":1:10");
  CHECK(e[1] == b + ":3:12: duplicate rule name \"x\" (first defined at " + a + ":3:12)");

  TempDir empty;
  empty.write("notes.txt", "x");
  CHECK(dir_errors(empty.path().string()) ==
        std::vector<std::string>{empty.path().string() +
                                 ":1:1: no policy files (*.yaml, *.yml) in directory"});
  CHECK(dir_errors((empty.path() / "missing.yaml").string())
            .at(0)
            .find(":1:1: cannot read policy: ") != std::string::npos);
}

TEST_CASE("directory: hipaa_categories merge; a conflicting mapping is an error") {
  TempDir d;
  d.write("a.yaml", "hipaa_categories:\n  \"1.2.3\": research\n");
  d.write("b.yaml", "hipaa_categories:\n  \"1.2.3\": research\n  \"1.2.4\": payer\n");
  auto p = load_policy(d.path().string());
  CHECK(p->hipaa().categories.at("1.2.3") == "research");
  CHECK(p->hipaa().categories.at("1.2.4") == "payer");

  const std::string c = d.write("c.yaml", "hipaa_categories:\n  \"1.2.4\": provider\n");
  const std::string b = (d.path() / "b.yaml").string();
  CHECK(dir_errors(d.path().string()) ==
        std::vector<std::string>{c +
                                 ":2:12: hipaa_categories \"1.2.4\" is \"provider\" here but "
                                 "\"payer\" at " +
                                 b + ":3:12"});
}

TEST_CASE("directory: an error in one file rejects the whole directory") {
  TempDir d;
  d.write("a.yaml", "rules:\n  - {name: a, effect: allow}\n");
  const std::string b = d.write(
      "b.yaml", "rules:\n  - {name: b, effect: allow, when: {fhir: {interaction: raed}}}\n");
  auto e = dir_errors(d.path().string());
  REQUIRE(e.size() == 1);
  CHECK(e[0].starts_with(b + ":2:57: unknown interaction \"raed\""));
}

TEST_CASE("a single file path loads, and its diagnostics name that path") {
  TempDir d;
  const std::string f =
      d.write("policy.yaml", "rules:\n  - {name: a, effect: allow, mode: audit}\n");
  CHECK(dir_errors(f) ==
        std::vector<std::string>{f + ":2:36: bad mode \"audit\" (expected enforce or shadow)"});
  d.write("policy.yaml", "rules:\n  - {name: a, effect: allow}\n");
  CHECK(load_policy(f)->rule_names() == std::vector<std::string>{"a"});
}

TEST_CASE("a dangling symlink in a policy directory is an error, not silently skipped") {
  TempDir d;
  d.write("a.yaml", "rules:\n  - {name: a, effect: allow}\n");
  fs::create_symlink("missing-target.yaml", d.path() / "b.yaml");
  const auto e = dir_errors(d.path().string());
  REQUIRE(e.size() == 1);
  CHECK(e[0].starts_with((d.path() / "b.yaml").string() + ":1:1: cannot read policy file: "));
}
