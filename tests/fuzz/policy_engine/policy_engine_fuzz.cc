// Fuzz driver: the decision engine with fuzzed identities and requests against a fixed policy.
//
// The identity (present or anonymous, names, SANs, HIPAA, fingerprint, trust) and the request
// (classified from a fuzzed method and target, or a batch of such entries) are built with
// FuzzedDataProvider, drawing often from the values the policy names so rules actually match.
// Invariants:
// - the same inputs give the same decision twice, and the indexed evaluation equals the reference
//   linear walk (Engine::evaluate_linear), and so does the evaluation with the identity prepared
//   once (Policy::prepare, as the proxy does per connection);
// - a request the deny-all rules cover (any DELETE; any path under /fhir/AuditEvent), alone or as
//   a Bundle entry, is denied; a request with a bundle_error is denied;
// - an anonymous identity never matches a rule with identity keys (named "id-..." here), neither
//   as the deciding rule nor as a reported shadow rule, whatever its other fields hold;
// - with `default: deny`, an allow always names the rule that allowed.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "policy/engine.h"
#include "policy/fhir_classify.h"
#include "policy/policy_loader.h"

namespace {

using namespace fmp::policy;

void check(bool ok) {
  if (!ok) std::abort();
}

const char* const kFingerprint = "3f2a9c1b7d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8";

constexpr std::string_view kPolicy = R"(
default: deny
hipaa_categories:
  "1.3.6.1.4.1.99999.5": research
rules:
  - name: deny-all-deletes
    effect: deny
    when:
      method: [DELETE]
  - name: deny-all-audit
    effect: deny
    when:
      path: ["/fhir/AuditEvent*"]
  - name: id-shadow-any-subject
    effect: allow
    mode: shadow
    when:
      subject: { CN: ["*"] }
  - name: anon-metadata
    effect: allow
    when:
      method: [GET, HEAD]
      path: ["/fhir/metadata"]
  - name: id-fingerprint
    effect: allow
    when:
      fingerprint_sha256: ["3f2a9c1b7d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8"]
  - name: id-blocked-community
    effect: deny
    when:
      trust: [blocked]
  - name: id-apps-read
    effect: allow
    when:
      trust: [directtrust, carequality]
      san_uri: ["https://apps.example.org/*"]
      fhir:
        resource: [Patient, Observation]
        interaction: [read, vread, search]
  - name: id-covered-entities
    effect: allow
    when:
      hipaa: [covered-entity]
      cert_policy: ["1.3.6.1.4.1.41179.1.3"]
      method: [GET, POST, PUT]
  - name: id-hospital-staff
    effect: allow
    mode: shadow
    when:
      subject: { O: ["Example Hospital"], OU: ["Cardio*"] }
      issuer: { CN: ["Example * CA"] }
  - name: id-dns-email
    effect: allow
    when:
      san_dns: ["*.example.org"]
      san_email: ["*@example.org"]
      fhir:
        interaction: [batch, transaction, create]
  - name: id-operations
    effect: allow
    when:
      subject: { CN: ["ops-*"] }
      fhir:
        operation: ["$everything", "$export"]
  - name: anon-public
    effect: allow
    when:
      path: ["/public/*"]
)";

std::string pick(FuzzedDataProvider& in, const std::vector<std::string_view>& known) {
  if (in.ConsumeBool()) return in.ConsumeRandomLengthString(80);
  return std::string(known[in.ConsumeIntegralInRange<std::size_t>(0, known.size() - 1)]);
}

std::vector<std::string> picks(FuzzedDataProvider& in, const std::vector<std::string_view>& known) {
  std::vector<std::string> out(in.ConsumeIntegralInRange<std::size_t>(0, 3));
  for (auto& s : out) s = pick(in, known);
  return out;
}

DistinguishedName dn(FuzzedDataProvider& in) {
  DistinguishedName d;
  const std::size_t n = in.ConsumeIntegralInRange<std::size_t>(0, 4);
  for (std::size_t i = 0; i < n; ++i) {
    DnAttribute a;
    a.type = pick(in, {"CN", "O", "OU", "C"});
    a.value = pick(in, {"Example Hospital", "Cardiology", "Example DirectTrust CA", "ops-1", ""});
    d.rfc4514 += (i ? "," : "") + a.type + "=" + a.value;
    d.attributes.push_back(std::move(a));
  }
  return d;
}

Identity identity(FuzzedDataProvider& in) {
  Identity id;
  id.present = in.ConsumeBool();
  id.subject = dn(in);
  id.issuer = dn(in);
  id.san_uri = picks(in, {"https://apps.example.org/viewer", "https://apps.example.org/", "urn:x"});
  id.san_dns = picks(in, {"app.example.org", "example.org"});
  id.san_email = picks(in, {"ops@example.org", "a@b"});
  id.san_ip = picks(in, {"127.0.0.1", "::1"});
  id.cert_policies = picks(in, {"1.3.6.1.4.1.41179.1.3", "1.3.6.1.4.1.41179.2.1"});
  id.hipaa = picks(in, {"covered-entity", "research", "patient"});
  id.fingerprint_sha256 = pick(in, {kFingerprint, ""});
  id.trust = pick(in, {"directtrust", "carequality", "blocked", ""});
  return id;
}

FhirRequest request(FuzzedDataProvider& in) {
  const std::string method = pick(in, {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"});
  const std::string target =
      pick(in, {"/fhir/Patient/1", "/fhir/Observation?code=x", "/fhir/metadata",
                "/fhir/AuditEvent/2", "/public/a", "/fhir/Patient/1/$everything", "/fhir"});
  std::string path;
  std::string query;
  // The proxy answers 400 to a target split_target refuses; the engine never sees it.
  if (split_target(target, path, query) != PathError::kOk) path = "/rejected";
  return classify(method, path, query, "/fhir", "", "");
}

bool covered_by_deny_all(const FhirRequest& r) {
  return r.method == "DELETE" || r.path.rfind("/fhir/AuditEvent", 0) == 0;
}

bool same(const Decision& a, const Decision& b) {
  if (a.effect != b.effect || a.rule != b.rule || a.reason != b.reason || a.mode != b.mode ||
      a.shadow.size() != b.shadow.size())
    return false;
  for (std::size_t i = 0; i < a.shadow.size(); ++i)
    if (a.shadow[i].rule != b.shadow[i].rule || a.shadow[i].effect != b.shadow[i].effect)
      return false;
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const PolicyPtr policy = load_policy_text(std::string(kPolicy), "fuzz-policy.yaml");
  static const auto* engine = dynamic_cast<const Engine*>(policy.get());
  check(engine != nullptr);

  FuzzedDataProvider in(data, size);
  const Identity id = identity(in);
  FhirRequest req;
  const bool bundle = in.ConsumeBool();
  if (bundle) {
    req.method = "POST";
    req.path = "/fhir";
    req.interaction = in.ConsumeBool() ? Interaction::kBatch : Interaction::kTransaction;
    const std::size_t n = in.ConsumeIntegralInRange<std::size_t>(0, 5);
    for (std::size_t i = 0; i < n; ++i) req.entries.push_back(request(in));
    if (in.ConsumeBool()) req.bundle_error = in.ConsumeRandomLengthString(20);
  } else {
    req = request(in);
  }

  const Decision d = policy->evaluate(id, req);
  check(same(d, policy->evaluate(id, req)));
  check(same(d, engine->evaluate_linear(id, req)));
  // The identity prepared once (as the proxy does per connection) decides the same.
  const auto prepared = policy->prepare(id);
  check(same(d, policy->evaluate(id, req, prepared.get())));

  bool deny_all = covered_by_deny_all(req);
  for (const auto& e : req.entries) deny_all = deny_all || covered_by_deny_all(e);
  if (deny_all || !req.bundle_error.empty()) check(!d.allowed());
  if (!id.present) {
    check(d.rule.rfind("id-", 0) != 0);
    for (const auto& s : d.shadow) check(s.rule.rfind("id-", 0) != 0);
  }
  if (d.allowed()) check(d.rule != "default");
  return 0;
}
