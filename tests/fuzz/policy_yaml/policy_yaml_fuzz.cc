// Fuzz driver: the policy YAML loader (policy::load_policy_text), then the compiled policy.
//
// Invariants: loading either returns a policy or throws policy::ConfigError (any other exception
// escaping, a crash or a sanitizer report is a finding); a policy that loads evaluates a few fixed
// requests, for an anonymous and a certificate identity, without throwing, and the engine's
// indexed evaluation agrees with the reference linear walk.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "policy/config_error.h"
#include "policy/engine.h"
#include "policy/fhir_classify.h"
#include "policy/policy_loader.h"

namespace {

using namespace fmp::policy;

void check(bool ok) {
  if (!ok) std::abort();
}

bool same(const Decision& a, const Decision& b) {
  if (a.effect != b.effect || a.rule != b.rule || a.reason != b.reason ||
      a.shadow.size() != b.shadow.size())
    return false;
  for (std::size_t i = 0; i < a.shadow.size(); ++i)
    if (a.shadow[i].rule != b.shadow[i].rule || a.shadow[i].effect != b.shadow[i].effect)
      return false;
  return true;
}

Identity sample_identity() {
  Identity id;
  id.present = true;
  id.subject.rfc4514 = "CN=app,OU=IT,O=Example Hospital,C=US";
  id.subject.attributes = {{"C", "US"}, {"O", "Example Hospital"}, {"OU", "IT"}, {"CN", "app"}};
  id.issuer.rfc4514 = "CN=Example DirectTrust CA";
  id.issuer.attributes = {{"CN", "Example DirectTrust CA"}};
  id.san_uri = {"https://apps.example.org/app"};
  id.san_dns = {"app.example.org"};
  id.san_email = {"app@example.org"};
  id.cert_policies = {"1.3.6.1.4.1.41179.2.1"};
  id.hipaa = {"covered-entity"};
  id.fingerprint_sha256 = std::string(64, 'a');
  id.trust = "directtrust";
  return id;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  PolicyPtr policy;
  try {
    policy = load_policy_text(text, "fuzz.yaml");
  } catch (const ConfigError&) {
    return 0;
  }
  check(policy != nullptr);
  const auto* engine = dynamic_cast<const Engine*>(policy.get());
  const Identity identities[] = {Identity{}, sample_identity()};
  const FhirRequest requests[] = {
      classify("GET", "/fhir/Patient/1", "", "/fhir", "", ""),
      classify("DELETE", "/fhir/Observation/7", "", "/fhir", "", ""),
      classify("GET", "/fhir/metadata", "", "/fhir", "", ""),
      classify("POST", "/fhir", "", "/fhir", "application/fhir+json",
               R"({"resourceType":"Bundle","type":"batch","entry":[)"
               R"({"request":{"method":"GET","url":"Patient/1"}},)"
               R"({"request":{"method":"DELETE","url":"Patient/2"}}]})"),
  };
  for (const auto& identity : identities)
    for (const auto& request : requests) {
      const Decision d = policy->evaluate(identity, request);
      if (engine != nullptr) check(same(d, engine->evaluate_linear(identity, request)));
    }
  return 0;
}
