#include "policy/engine.h"

#include <doctest/doctest.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "policy/policy_loader.h"

using namespace fmp::policy;

namespace {

PolicyPtr load(const std::string& yaml) {
  return load_policy_text(yaml, "test.yaml");
}

Identity client(const std::string& cn, const std::string& o) {
  Identity id;
  id.present = true;
  id.subject.attributes = {{"CN", cn}, {"O", o}, {"C", "US"}};
  id.subject.rfc4514 = "CN=" + cn + ",O=" + o + ",C=US";
  id.issuer.attributes = {{"CN", "Example DirectTrust CA"}, {"O", "Example Trust"}};
  id.trust = "directtrust";
  id.san_uri = {"https://apps.example.org/" + cn};
  id.fingerprint_sha256 = std::string(64, 'a');
  return id;
}

FhirRequest req(const std::string& method, const std::string& path,
                Interaction i = Interaction::kNone, const std::string& resource = "") {
  FhirRequest r;
  r.method = method;
  r.path = path;
  r.interaction = i;
  r.resource = resource;
  return r;
}

std::vector<std::string> shadow_names(const Decision& d) {
  std::vector<std::string> out;
  for (const auto& s : d.shadow) out.push_back(s.rule);
  return out;
}

}  // namespace

TEST_CASE("rules are evaluated in order and the first enforced match decides") {
  auto p = load(R"(rules:
  - {name: deny-delete, effect: deny, when: {method: DELETE}}
  - {name: allow-hospital, effect: allow, when: {subject: {O: "Example Hospital"}}}
  - {name: deny-all, effect: deny}
)");
  const Identity id = client("ehr", "Example Hospital");
  Decision d = p->evaluate(id, req("GET", "/fhir/Patient/1"));
  CHECK(d.allowed());
  CHECK(d.rule == "allow-hospital");
  CHECK(d.reason == "rule \"allow-hospital\" matched");
  CHECK(d.mode == Mode::kEnforce);
  d = p->evaluate(id, req("DELETE", "/fhir/Patient/1"));
  CHECK_FALSE(d.allowed());
  CHECK(d.rule == "deny-delete");
  d = p->evaluate(client("ehr", "Other Org"), req("GET", "/fhir/Patient/1"));
  CHECK(d.rule == "deny-all");
}

TEST_CASE("the default decides when no rule matches") {
  const std::string rules = "rules:\n  - {name: only-post, effect: allow, when: {method: POST}}\n";
  Decision d = load(rules)->evaluate(client("a", "b"), req("GET", "/x"));
  CHECK_FALSE(d.allowed());
  CHECK(d.rule == "default");
  CHECK(d.reason == "no rule matched");
  d = load("default: allow\n" + rules)->evaluate(client("a", "b"), req("GET", "/x"));
  CHECK(d.allowed());
  CHECK(d.rule == "default");
}

TEST_CASE("shadow rules before the deciding rule are reported; after it they are not") {
  auto p = load(R"(rules:
  - {name: s1, effect: deny, mode: shadow, when: {method: GET}}
  - {name: s2-nomatch, effect: deny, mode: shadow, when: {method: PUT}}
  - {name: s3, effect: allow, mode: shadow}
  - {name: decide, effect: allow, when: {path: "/fhir/*"}}
  - {name: s4-after, effect: deny, mode: shadow}
)");
  Decision d = p->evaluate(client("a", "b"), req("GET", "/fhir/Patient"));
  CHECK(d.rule == "decide");
  CHECK(shadow_names(d) == std::vector<std::string>{"s1", "s3"});
  CHECK(d.shadow[0].effect == Effect::kDeny);
  CHECK(d.shadow[1].effect == Effect::kAllow);
  // No enforced rule matches: every matching shadow rule is reported, the default decides.
  d = p->evaluate(client("a", "b"), req("GET", "/other"));
  CHECK(d.rule == "default");
  CHECK(shadow_names(d) == std::vector<std::string>{"s1", "s3", "s4-after"});
}

TEST_CASE("evaluate_into replaces every field of a reused decision, as evaluate would return") {
  auto p = load(R"(rules:
  - {name: s1, effect: deny, mode: shadow, when: {method: GET}}
  - {name: no-delete, effect: deny, when: {method: DELETE}}
  - {name: bundles, effect: allow, when: {fhir: {interaction: [batch]}}}
  - {name: a-rather-long-rule-name-for-reads, effect: allow, when: {path: "/fhir/*"}}
)");
  const Identity id = client("a", "b");
  const auto prepared = p->prepare(id);
  FhirRequest bundle = req("POST", "/fhir", Interaction::kBatch);
  bundle.entries.push_back(req("DELETE", "/fhir/Patient/1", Interaction::kDelete, "Patient"));
  FhirRequest broken = req("POST", "/fhir", Interaction::kUnknown);
  broken.bundle_error = "Bundle body is not JSON";
  // One decision object through requests whose decisions differ in every field.
  const std::vector<FhirRequest> requests = {
      req("GET", "/fhir/Patient/1"), req("DELETE", "/fhir/Patient/1"), bundle, broken,
      req("PUT", "/other"),          req("GET", "/fhir/Patient/1")};
  Decision reused;
  for (const FhirRequest& r : requests) {
    CAPTURE(r.method);
    CAPTURE(r.path);
    // Whatever the object held before (here: the opposite of every answer), it is replaced.
    reused.effect = Effect::kAllow;
    reused.mode = Mode::kShadow;
    reused.rule = "stale";
    reused.reason = "stale reason";
    reused.shadow.push_back({"stale-shadow", Effect::kAllow});
    p->evaluate_into(id, r, prepared.get(), reused);
    const Decision fresh = p->evaluate(id, r);
    CHECK(reused.effect == fresh.effect);
    CHECK(reused.mode == fresh.mode);
    CHECK(reused.rule == fresh.rule);
    CHECK(reused.reason == fresh.reason);
    CHECK(shadow_names(reused) == shadow_names(fresh));
  }
  // The sequence did go through different answers.
  p->evaluate_into(id, requests[2], prepared.get(), reused);
  CHECK(reused.reason == "entry 0 (DELETE /fhir/Patient/1): denied by rule \"no-delete\"");
  p->evaluate_into(id, requests[5], prepared.get(), reused);
  CHECK(reused.rule == "a-rather-long-rule-name-for-reads");
  CHECK(shadow_names(reused) == std::vector<std::string>{"s1"});
}

TEST_CASE("identity keys never match an anonymous client; a path rule can open metadata") {
  auto p = load(R"(rules:
  - {name: any-subject, effect: allow, when: {subject: {CN: "*"}}}
  - {name: any-trust, effect: allow, when: {trust: "*"}}
  - {name: any-uri, effect: allow, when: {san_uri: "*"}}
  - {name: any-fp, effect: allow, when: {fingerprint_sha256: ["cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"]}}
  - {name: metadata, effect: allow, when: {method: [GET, HEAD], path: /fhir/metadata}}
)");
  const Identity anonymous;
  CHECK(p->evaluate(anonymous, req("GET", "/fhir/metadata")).rule == "metadata");
  CHECK(p->evaluate(anonymous, req("GET", "/fhir/Patient/1")).rule == "default");
  CHECK_FALSE(p->evaluate(anonymous, req("GET", "/fhir/Patient/1")).allowed());
  // A present identity with empty fields still matches "*" on its present attributes.
  Identity id;
  id.present = true;
  id.trust = "x";
  CHECK(p->evaluate(id, req("GET", "/fhir/Patient/1")).rule == "any-trust");
}

TEST_CASE("an anonymous client with all-empty fields does not match identity globs") {
  auto p = load(
      "rules:\n  - {name: t, effect: allow, when: {trust: \"*\"}}\n  - {name: h, effect: allow, "
      "when: {hipaa: patient}}\n");
  Identity anonymous;
  anonymous.hipaa = {"patient"};  // ignored: not present
  CHECK(p->evaluate(anonymous, req("GET", "/")).rule == "default");
}

TEST_CASE("subject: every listed attribute needs some value matching some glob") {
  auto p = load(R"(rules:
  - {name: ou-match, effect: allow, when: {subject: {O: "Example *", OU: [Radiology, Cardiology]}}}
)");
  Identity id = client("ehr", "Example Hospital");
  CHECK(p->evaluate(id, req("GET", "/")).rule == "default");  // no OU at all
  id.subject.attributes.push_back({"OU", "Billing"});
  CHECK(p->evaluate(id, req("GET", "/")).rule == "default");
  id.subject.attributes.push_back({"OU", "Cardiology"});  // multi-valued: the second value matches
  CHECK(p->evaluate(id, req("GET", "/")).rule == "ou-match");
  id.subject.attributes[1].value = "Other Hospital";
  CHECK(p->evaluate(id, req("GET", "/")).rule == "default");
}

TEST_CASE("issuer, san_*, cert_policy and hipaa keys") {
  auto p = load(R"(rules:
  - {name: loa3-ce, effect: allow, when: {hipaa: [covered-entity, business-associate], cert_policy: "1.3.6.1.4.1.41179.1.3"}}
  - {name: issuer, effect: allow, when: {issuer: {CN: "Example * CA"}, san_dns: "*.example.org"}}
  - {name: email, effect: allow, when: {san_email: "*@example.org"}}
)");
  Identity id = client("x", "y");
  id.issuer.attributes = {{"CN", "Other CA"}};
  id.hipaa = {"patient", "business-associate"};
  CHECK(p->evaluate(id, req("GET", "/")).rule == "default");  // no LoA3
  id.cert_policies = {"1.3.6.1.4.1.41179.1.3"};
  CHECK(p->evaluate(id, req("GET", "/")).rule == "loa3-ce");
  id.hipaa = {"patient"};
  CHECK(p->evaluate(id, req("GET", "/")).rule == "default");
  id.issuer.attributes = {{"CN", "Example DirectTrust CA"}};
  id.san_dns = {"example.org", "api.example.org"};
  CHECK(p->evaluate(id, req("GET", "/")).rule == "issuer");
  id.san_dns.clear();
  id.san_email = {"bob@example.org"};
  CHECK(p->evaluate(id, req("GET", "/")).rule == "email");
}

TEST_CASE("fhir keys match the classified request and never a non-FHIR one") {
  auto p = load(R"(rules:
  - {name: everything, effect: allow, when: {fhir: {operation: "$everything", resource: Patient}}}
  - {name: read-clinical, effect: allow, when: {fhir: {resource: [Patient, "Obs*"], interaction: [read, search]}}}
  - {name: any-resource, effect: deny, when: {fhir: {resource: "*"}}}
  - {name: any-fhir, effect: deny, when: {fhir: {interaction: [capabilities, unknown]}}}
)");
  const Identity id = client("a", "b");
  CHECK(
      p->evaluate(id, req("GET", "/fhir/Observation", Interaction::kSearch, "Observation")).rule ==
      "read-clinical");
  CHECK(p->evaluate(id, req("DELETE", "/fhir/Observation/1", Interaction::kDelete, "Observation"))
            .rule == "any-resource");
  FhirRequest op = req("GET", "/fhir/Patient/1/$everything", Interaction::kOperation, "Patient");
  op.operation = "$everything";
  CHECK(p->evaluate(id, op).rule == "everything");
  // System-level request: no resource type, so `resource: "*"` does not match.
  CHECK(p->evaluate(id, req("GET", "/fhir/metadata", Interaction::kCapabilities)).rule ==
        "any-fhir");
  // Outside FHIR: no fhir key matches, even with fields that would.
  CHECK(p->evaluate(id, req("GET", "/healthz", Interaction::kNone, "Patient")).rule == "default");
}

TEST_CASE("a Bundle is allowed only when the Bundle and every entry are allowed") {
  auto p = load(R"(rules:
  - {name: no-delete, effect: deny, when: {method: DELETE}}
  - {name: bundles, effect: allow, when: {fhir: {interaction: [batch, transaction]}}}
  - {name: read-write, effect: allow, when: {fhir: {resource: Patient, interaction: [read, create, update]}}}
)");
  const Identity id = client("a", "b");
  FhirRequest bundle = req("POST", "/fhir", Interaction::kTransaction);
  bundle.entries.push_back(req("POST", "/fhir/Patient", Interaction::kCreate, "Patient"));
  bundle.entries.push_back(req("PUT", "/fhir/Patient/2", Interaction::kUpdate, "Patient"));
  Decision d = p->evaluate(id, bundle);
  CHECK(d.allowed());
  CHECK(d.rule == "bundles");

  bundle.entries.push_back(req("DELETE", "/fhir/Patient/1", Interaction::kDelete, "Patient"));
  bundle.entries.push_back(req("GET", "/fhir/Observation/1", Interaction::kRead, "Observation"));
  d = p->evaluate(id, bundle);
  CHECK_FALSE(d.allowed());
  CHECK(d.rule == "no-delete");
  CHECK(d.reason == "entry 2 (DELETE /fhir/Patient/1): denied by rule \"no-delete\"");

  bundle.entries.erase(bundle.entries.begin() + 2);  // the unmatched Observation read remains
  d = p->evaluate(id, bundle);
  CHECK_FALSE(d.allowed());
  CHECK(d.rule == "default");
  CHECK(d.reason == "entry 2 (GET /fhir/Observation/1): denied by default (no rule matched)");

  // The Bundle request itself must be allowed first.
  FhirRequest batch = req("POST", "/fhir", Interaction::kBatch);
  batch.entries.push_back(req("DELETE", "/fhir/Patient/1", Interaction::kDelete, "Patient"));
  auto strict = load("rules:\n  - {name: reads, effect: allow, when: {method: GET}}\n");
  d = strict->evaluate(id, batch);
  CHECK(d.rule == "default");
  CHECK(d.reason == "no rule matched");
}

TEST_CASE("a request with a bundle_error is denied, whatever the rules say") {
  auto p = load("default: allow\nrules:\n  - {name: all, effect: allow}\n");
  FhirRequest r = req("POST", "/fhir", Interaction::kBatch);
  r.bundle_error = "Bundle.entry[0] has no request";
  const Decision d = p->evaluate(client("a", "b"), r);
  CHECK_FALSE(d.allowed());
  CHECK(d.rule == "default");
  CHECK(d.reason == "Bundle cannot be checked: Bundle.entry[0] has no request");
}

TEST_CASE("thousands of exact-value and prefix rules are indexed, not walked") {
  std::string yaml = "rules:\n";
  for (int i = 0; i < 2000; ++i) {
    yaml += "  - {name: cn-" + std::to_string(i) + ", effect: allow, when: {subject: {CN: app" +
            std::to_string(i) + "}}}\n";
    yaml += "  - {name: uri-" + std::to_string(i) + ", effect: deny, when: {san_uri: \"https://u/" +
            std::to_string(i) + "\", method: GET}}\n";
  }
  yaml += "  - {name: prefix, effect: deny, when: {subject: {CN: \"app-*\"}}}\n";
  yaml += "  - {name: glob, effect: deny, when: {subject: {CN: \"*app*\"}}}\n";
  auto p = load(yaml);
  const auto& e = dynamic_cast<const Engine&>(*p);
  CHECK(e.unindexed_rule_count() == 1);
  Identity id = client("app1999", "o");
  CHECK(p->evaluate(id, req("GET", "/")).rule == "cn-1999");
  id = client("app-none", "o");
  id.san_uri = {"https://u/7", "https://u/1500"};
  CHECK(p->evaluate(id, req("GET", "/")).rule == "uri-7");
  CHECK(p->evaluate(id, req("PUT", "/")).rule == "prefix");  // indexed by its prefix "app-"
  id = client("myapp", "o");
  CHECK(p->evaluate(id, req("PUT", "/")).rule == "glob");
}

// Property: the indexed engine decides exactly like the linear walk, on random policies and
// requests.
TEST_CASE("indexed evaluation equals the linear walk on randomised rules (fixed seed)") {
  std::mt19937 rng(20240611);
  auto pick = [&](const std::vector<std::string>& v) { return v[rng() % v.size()]; };
  auto chance = [&](unsigned percent) { return rng() % 100 < percent; };
  const std::vector<std::string> cns = {"app0", "app1", "app2", "app3", "app?", "app*", "*", "app"};
  const std::vector<std::string> orgs = {"Org A", "Org B", "Org C", "Org *"};
  const std::vector<std::string> uris = {"https://a/1", "https://a/2", "https://b/1", "https://a/*",
                                         "https://b*",  "*/1",         "https://b"};
  const std::vector<std::string> trusts = {"dt", "cq", "*"};
  const std::vector<std::string> fps = {std::string(64, 'a'), std::string(64, 'b')};
  const std::vector<std::string> hipaas = {"covered-entity", "patient"};
  const std::vector<std::string> policies = {"1.2.3", "1.2.4"};
  const std::vector<std::string> methods = {"GET", "POST", "DELETE"};
  const std::vector<std::string> paths = {"/fhir/Patient/1", "/fhir/Patient/*", "/fhir/metadata",
                                          "/x"};
  const std::vector<std::string> resources = {"Patient", "Observation", "*"};

  auto list = [&](const std::vector<std::string>& v) {
    std::string out = "[";
    const unsigned n = 1 + rng() % 2;
    for (unsigned i = 0; i < n; ++i) out += (i ? ", \"" : "\"") + pick(v) + "\"";
    return out + "]";
  };
  int cases = 0;
  int allowed = 0;
  int shadows = 0;
  std::size_t total_rules = 0;
  std::size_t unindexed_rules = 0;
  for (int policy = 0; policy < 40; ++policy) {
    std::string yaml = std::string("default: ") + (chance(50) ? "allow" : "deny") + "\nrules:\n";
    const int nrules = 5 + static_cast<int>(rng() % 60);
    for (int i = 0; i < nrules; ++i) {
      yaml += "  - name: r" + std::to_string(i) +
              "\n    effect: " + (chance(50) ? "allow" : "deny") +
              "\n    mode: " + (chance(20) ? "shadow" : "enforce") + "\n";
      std::string when;
      if (chance(40))
        when +=
            "      subject: {CN: " + list(cns) + (chance(30) ? ", O: " + list(orgs) : "") + "}\n";
      if (chance(20)) when += "      issuer: {O: " + list(orgs) + "}\n";
      if (chance(25)) when += "      san_uri: " + list(uris) + "\n";
      if (chance(20)) when += "      trust: " + list(trusts) + "\n";
      if (chance(10)) when += "      fingerprint_sha256: " + list(fps) + "\n";
      if (chance(10)) when += "      hipaa: " + list(hipaas) + "\n";
      if (chance(10)) when += "      cert_policy: " + list(policies) + "\n";
      if (chance(25)) when += "      method: " + list(methods) + "\n";
      if (chance(20)) when += "      path: " + list(paths) + "\n";
      if (chance(15)) when += "      fhir: {resource: " + list(resources) + "}\n";
      if (!when.empty()) yaml += "    when:\n" + when;
    }
    auto p = load_policy_text(yaml, "random.yaml");
    const auto& engine = dynamic_cast<const Engine&>(*p);
    total_rules += engine.rules().size();
    unindexed_rules += engine.unindexed_rule_count();

    auto random_identity = [&] {
      Identity id;
      id.present = !chance(15);
      for (unsigned n = rng() % 3; n > 0; --n) id.subject.attributes.push_back({"CN", pick(cns)});
      if (chance(70)) id.subject.attributes.push_back({"O", pick(orgs)});
      id.issuer.attributes.push_back({"O", pick(orgs)});
      for (unsigned n = rng() % 3; n > 0; --n) id.san_uri.push_back(pick(uris));
      id.trust = pick(trusts);
      id.fingerprint_sha256 = pick(fps);
      if (chance(50)) id.hipaa.push_back(pick(hipaas));
      if (chance(50)) id.cert_policies.push_back(pick(policies));
      return id;
    };
    auto random_request = [&] {
      FhirRequest r =
          req(pick(methods), pick(paths), chance(80) ? Interaction::kRead : Interaction::kNone,
              chance(80) ? pick(resources) : "");
      if (chance(10)) {
        r.interaction = Interaction::kBatch;
        for (unsigned n = rng() % 4; n > 0; --n)
          r.entries.push_back(req(pick(methods), pick(paths), Interaction::kRead, pick(resources)));
      }
      return r;
    };
    for (int k = 0; k < 100; ++k, ++cases) {
      const Identity id = random_identity();
      const FhirRequest r = random_request();
      const Decision a = engine.evaluate(id, r);
      const Decision b = engine.evaluate_linear(id, r);
      CAPTURE(yaml);
      REQUIRE(a.effect == b.effect);
      REQUIRE(a.rule == b.rule);
      REQUIRE(a.reason == b.reason);
      REQUIRE(shadow_names(a) == shadow_names(b));
      // The identity prepared once (as per connection) decides exactly the same.
      const auto prepared = engine.prepare(id);
      const Decision c = engine.evaluate(id, r, prepared.get());
      REQUIRE(c.effect == b.effect);
      REQUIRE(c.rule == b.rule);
      REQUIRE(c.reason == b.reason);
      REQUIRE(shadow_names(c) == shadow_names(b));
      allowed += a.allowed() ? 1 : 0;
      shadows += a.shadow.empty() ? 0 : 1;
    }
  }
  CHECK(cases == 4000);
  // The random space must exercise both outcomes and shadows, or the property proves little.
  CHECK(allowed > 400);
  CHECK(allowed < 3600);
  CHECK(shadows > 100);
  // ... and both indexed and always-tried rules must occur.
  CHECK(unindexed_rules > total_rules / 10);
  CHECK(unindexed_rules < total_rules * 9 / 10);
}

TEST_CASE("prepared identities: used only for the identity and engine they were made for") {
  const auto p = load(R"(
default: deny
rules:
  - name: by-fingerprint
    effect: allow
    when: {fingerprint_sha256: ["aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"]}
  - name: by-san
    effect: allow
    when: {san_uri: ["https://apps.example.org/ehr"]}
  - name: by-hipaa
    effect: allow
    when: {hipaa: [covered-entity]}
  - name: by-trust
    effect: allow
    when: {trust: [carequality]}
)");
  const auto& engine = dynamic_cast<const Engine&>(*p);
  const FhirRequest r = req("GET", "/fhir/Patient/1", Interaction::kRead, "Patient");
  auto same = [&](const Identity& id, const PreparedIdentity* prepared) {
    const Decision a = engine.evaluate(id, r, prepared);
    const Decision b = engine.evaluate_linear(id, r);
    return a.effect == b.effect && a.rule == b.rule && a.reason == b.reason;
  };

  Identity fp;  // a certificate identity: recognised by its fingerprint
  fp.present = true;
  fp.fingerprint_sha256 = std::string(64, 'a');
  fp.trust = "directtrust";
  const auto prepared_fp = engine.prepare(fp);
  CHECK(engine.evaluate(fp, r, prepared_fp.get()).rule == "by-fingerprint");

  SUBCASE("another certificate") {
    Identity other = fp;
    other.fingerprint_sha256 = std::string(64, 'b');
    CHECK(same(other, prepared_fp.get()));
    CHECK(engine.evaluate(other, r, prepared_fp.get()).rule == "default");
  }
  SUBCASE("same certificate, other trust community or HIPAA mapping") {
    Identity other = fp;
    other.fingerprint_sha256 = std::string(64, 'b');
    other.trust = "carequality";
    const auto prepared_other = engine.prepare(other);
    Identity moved = other;
    moved.trust = "directtrust";
    moved.hipaa = {"covered-entity"};
    CHECK(engine.evaluate(moved, r, prepared_other.get()).rule == "by-hipaa");
    CHECK(same(moved, prepared_other.get()));
  }
  SUBCASE("identities without a fingerprint are compared field by field") {
    Identity a;
    a.present = true;
    a.san_uri = {"https://apps.example.org/other"};
    Identity b = a;
    b.san_uri = {"https://apps.example.org/ehr"};
    const auto prepared_a = engine.prepare(a);
    CHECK(engine.evaluate(a, r, prepared_a.get()).rule == "default");
    CHECK(engine.evaluate(b, r, prepared_a.get()).rule == "by-san");
    Identity c = a;
    c.subject.attributes = {{"CN", "x"}};
    CHECK(same(c, prepared_a.get()));
  }
  SUBCASE("anonymous") {
    const auto prepared_anon = engine.prepare(Identity{});
    CHECK(engine.evaluate(Identity{}, r, prepared_anon.get()).rule == "default");
    CHECK(engine.evaluate(fp, r, prepared_anon.get()).rule == "by-fingerprint");
  }
  SUBCASE("another engine's preparation, or none") {
    const auto p2 = load(
        "default: deny\nrules:\n  - name: by-trust\n    effect: allow\n    when: {trust: "
        "[directtrust]}\n");
    const auto& engine2 = dynamic_cast<const Engine&>(*p2);
    const auto foreign = engine2.prepare(fp);
    CHECK(engine2.evaluate(fp, r, foreign.get()).rule == "by-trust");
    CHECK(engine.evaluate(fp, r, foreign.get()).rule == "by-fingerprint");
    CHECK(engine.evaluate(fp, r, nullptr).rule == "by-fingerprint");
  }
}
