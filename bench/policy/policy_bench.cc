// Decisions per second of the policy engine at 10, 1,000 and 100,000 rules, and for a 500-entry
// Bundle; classification of a 1 MiB transaction Bundle (the JSON inspection of the body).
//
// The policies look like a large deployment's: per-application rules keyed on subject O + CN, on
// SAN URI and on trust community, a few glob rules that every request must try (metadata, wildcard
// CNs, a shadow rule), and the rule that decides sits near the end. The same requests also run
// through the linear walk (the reference semantics) to show what the index saves.
#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "policy/engine.h"
#include "policy/fhir_classify.h"
#include "policy/policy_loader.h"

namespace {

using fmp::policy::Engine;
using fmp::policy::FhirRequest;
using fmp::policy::Identity;
using fmp::policy::Interaction;
using fmp::policy::PolicyPtr;

std::string org(int i) {
  return "Org " + std::to_string(i % 97);
}
std::string cn(int i) {
  return "app-" + std::to_string(i);
}

/// `n` rules; rule n-3 (near the end) is the one the benchmark identity matches.
std::string policy_yaml(int n) {
  std::string y = "default: deny\nrules:\n";
  y += "  - {name: metadata, effect: allow, when: {method: [GET, HEAD], path: /fhir/metadata}}\n";
  y += "  - {name: shadow-deletes, effect: deny, mode: shadow, when: {method: DELETE}}\n";
  y += "  - {name: test-clients, effect: deny, when: {subject: {CN: \"*.test\"}}}\n";
  for (int i = 3; i < n; ++i) {
    y.append("  - {name: r").append(std::to_string(i)).append(", effect: allow, when: {");
    switch (i % 3) {
      case 0:
        y.append("subject: {O: \"").append(org(i)).append("\", CN: ").append(cn(i));
        y.append(
            "}, fhir: {resource: [Patient, Observation], interaction: [read, search, update]}");
        break;
      case 1:
        y.append("san_uri: \"https://apps.example.org/").append(cn(i));
        y.append("/*\", method: [GET, PUT]");
        break;
      default:
        y.append("trust: community-").append(std::to_string(i));
        y.append(", path: \"/fhir/Patient/*\"");
        break;
    }
    y.append("}}\n");
  }
  return y;
}

/// Policies are expensive to build at 100,000 rules: build each size once.
const Engine& policy(int n) {
  static std::map<int, PolicyPtr> cache;
  auto& p = cache[n];
  if (!p) p = fmp::policy::load_policy_text(policy_yaml(n), "bench.yaml");
  return dynamic_cast<const Engine&>(*p);
}

/// The identity the rule near the end (index n-3, a subject rule when (n-3) % 3 == 0) was written
/// for.
Identity identity_for(int n) {
  int target = n - 3;
  while (target % 3 != 0) --target;
  Identity id;
  id.present = true;
  id.subject.attributes = {
      {"CN", cn(target)}, {"OU", "Clinical Apps"}, {"O", org(target)}, {"C", "US"}};
  id.issuer.attributes = {{"CN", "Example DirectTrust CA"}, {"O", "Example Trust"}};
  id.san_uri = {"https://apps.example.org/" + cn(target + 100000) + "/launch"};
  id.trust = "directtrust";
  id.hipaa = {"covered-entity"};
  id.cert_policies = {"1.3.6.1.4.1.41179.1.3", "1.3.6.1.4.1.41179.2.1"};
  id.fingerprint_sha256 = std::string(64, 'e');
  return id;
}

FhirRequest read_patient() {
  FhirRequest r;
  r.method = "GET";
  r.path = "/fhir/Patient/123";
  r.interaction = Interaction::kRead;
  r.resource = "Patient";
  r.id = "123";
  return r;
}

void run(benchmark::State& state, bool indexed) {
  const int n = static_cast<int>(state.range(0));
  const Engine& engine = policy(n);
  const Identity id = identity_for(n);
  const FhirRequest req = read_patient();
  const auto first = indexed ? engine.evaluate(id, req) : engine.evaluate_linear(id, req);
  if (!first.allowed()) state.SkipWithError(("unexpected decision: " + first.reason).c_str());
  for (auto _ : state) {
    auto d = indexed ? engine.evaluate(id, req) : engine.evaluate_linear(id, req);
    benchmark::DoNotOptimize(d);
  }
  state.SetItemsProcessed(state.iterations());
  state.SetLabel(first.rule + ", " + std::to_string(engine.unindexed_rule_count()) + " unindexed");
}

void BM_Evaluate(benchmark::State& state) {
  run(state, true);
}

/// As the proxy evaluates: the identity prepared once (per connection), then one decision per
/// request.
void BM_EvaluatePrepared(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  const Engine& engine = policy(n);
  const Identity id = identity_for(n);
  const FhirRequest req = read_patient();
  const auto prepared = engine.prepare(id);
  const auto first = engine.evaluate(id, req, prepared.get());
  if (!first.allowed() || first.rule != engine.evaluate(id, req).rule)
    state.SkipWithError(("unexpected decision: " + first.reason).c_str());
  for (auto _ : state) {
    auto d = engine.evaluate(id, req, prepared.get());
    benchmark::DoNotOptimize(d);
  }
  state.SetItemsProcessed(state.iterations());
  state.SetLabel(first.rule + ", " + std::to_string(engine.unindexed_rule_count()) + " unindexed");
}
void BM_EvaluateLinear(benchmark::State& state) {
  run(state, false);
}

/// An anonymous request that only the metadata rule opens: the index skips every identity rule.
void BM_EvaluateAnonymousMetadata(benchmark::State& state) {
  const Engine& engine = policy(static_cast<int>(state.range(0)));
  FhirRequest req;
  req.method = "GET";
  req.path = "/fhir/metadata";
  req.interaction = Interaction::kCapabilities;
  for (auto _ : state) {
    auto d = engine.evaluate(Identity{}, req);
    benchmark::DoNotOptimize(d);
  }
  state.SetItemsProcessed(state.iterations());
}

/// A 500-entry transaction (reads and updates of Patient), every entry allowed: 501 decisions.
void BM_Bundle500(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  const Engine& engine = policy(n);
  const Identity id = identity_for(n);
  FhirRequest bundle;
  bundle.method = "POST";
  bundle.path = "/fhir";
  bundle.interaction = Interaction::kTransaction;
  for (int i = 0; i < 500; ++i) {
    FhirRequest e;
    e.method = i % 2 ? "PUT" : "GET";
    e.interaction = i % 2 ? Interaction::kUpdate : Interaction::kRead;
    e.resource = "Patient";
    e.id = std::to_string(i);
    e.path = "/fhir/Patient/" + e.id;
    bundle.entries.push_back(std::move(e));
  }
  // The Bundle itself needs a rule: extend the policy by one rule at the front.
  const auto first = engine.evaluate(id, bundle);
  if (first.allowed() || first.rule != "default")
    state.SkipWithError("the benchmark policy should deny the Bundle request itself");
  static std::map<int, PolicyPtr> with_bundle_rule;
  auto& p = with_bundle_rule[n];
  if (!p) {
    std::string y = policy_yaml(n);
    y.insert(
        y.find("rules:\n") + 7,
        "  - {name: bundles, effect: allow, when: {method: POST, fhir: {interaction: transaction}, "
        "trust: directtrust}}\n");
    p = fmp::policy::load_policy_text(y, "bench.yaml");
  }
  if (!p->evaluate(id, bundle).allowed()) state.SkipWithError("Bundle should be allowed");
  for (auto _ : state) {
    auto d = p->evaluate(id, bundle);
    benchmark::DoNotOptimize(d);
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["entries/s"] = benchmark::Counter(static_cast<double>(state.iterations()) * 500,
                                                   benchmark::Counter::kIsRate);
}

/// One transaction entry as a client would send it: a US-Core-like Patient of about 1.4 KiB
/// (profile, identifier, names, telecom, address, contact, nested codings) created with POST.
std::string patient_entry(int i) {
  const std::string uuid = std::to_string(i + 1);
  std::string e = R"({"fullUrl":"urn:uuid:00000000-0000-0000-0000-)";
  e.append(12 - uuid.size(), '0').append(uuid);
  e += R"(","resource":{"resourceType":"Patient","meta":{"profile":[)";
  e += R"("http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"]},)";
  e += R"("text":{"status":"generated","div":)";
  e += R"("<div xmlns=\"http://www.w3.org/1999/xhtml\">Peter James Chalmers</div>"},)";
  e += R"("identifier":[{"system":"urn:oid:1.2.36.146.595.217.0.1","value":")";
  e += std::to_string(100000 + i) + R"("}],"active":true,)";
  e += R"("name":[{"use":"official","family":"Chalmers","given":["Peter","James"]},)";
  e += R"({"use":"usual","given":["Jim"]}],)";
  e += R"("telecom":[{"system":"phone","value":"(03) 5555 6473","use":"work","rank":1},)";
  e += R"({"system":"phone","value":"(03) 3410 5613","use":"mobile","rank":2}],)";
  e += R"("gender":"male","birthDate":"1974-12-25","deceasedBoolean":false,)";
  e += R"("address":[{"use":"home","type":"both",)";
  e += R"("text":"534 Erewhon St PeasantVille, Rainbow, Vic  3999","line":["534 Erewhon St"],)";
  e += R"("city":"PleasantVille","district":"Rainbow","state":"Vic","postalCode":"3999",)";
  e += R"("period":{"start":"1974-12-25"}}],)";
  e += R"("contact":[{"relationship":[{"coding":[)";
  e += R"({"system":"http://terminology.hl7.org/CodeSystem/v2-0131","code":"N"}]}],)";
  e += R"("name":{"family":"du Marché","given":["Bénédicte"]},)";
  e += R"("telecom":[{"system":"phone","value":"+33 (237) 998327"}],)";
  e += R"("address":{"use":"home","type":"both","line":["534 Erewhon St"],)";
  e += R"("city":"PleasantVille","district":"Rainbow","state":"Vic","postalCode":"3999",)";
  e += R"("period":{"start":"1974-12-25"}},"gender":"female","period":{"start":"2012"}}],)";
  e += R"("managingOrganization":{"reference":"Organization/1"}},)";
  e += R"("request":{"method":"POST","url":"Patient"}})";
  return e;
}

/// classify() of a POST to the base carrying a 1 MiB transaction Bundle (about 700 entries, each a
/// ~1.4 KiB Patient): the cost of inspecting the body before any rule runs.
void BM_ClassifyBundle1MiB(benchmark::State& state) {
  std::string body = R"({"resourceType":"Bundle","type":"transaction","entry":[)";
  int entries = 0;
  while (body.size() < 1024 * 1024 - 2000) {
    if (entries > 0) body += ',';
    body += patient_entry(entries++);
  }
  body += "]}";
  const auto first =
      fmp::policy::classify("POST", "/fhir", "", "/fhir", "application/fhir+json", body);
  if (!first.bundle_error.empty() || first.entries.size() != static_cast<std::size_t>(entries))
    state.SkipWithError(("unexpected classification: " + first.bundle_error).c_str());
  for (auto _ : state) {
    auto r = fmp::policy::classify("POST", "/fhir", "", "/fhir", "application/fhir+json", body);
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(body.size()));
  state.SetLabel(std::to_string(body.size()) + " bytes, " + std::to_string(entries) + " entries");
}

/// Compile time of a policy (YAML parse, validation, index build).
void BM_Load(benchmark::State& state) {
  const std::string yaml = policy_yaml(static_cast<int>(state.range(0)));
  for (auto _ : state) {
    auto p = fmp::policy::load_policy_text(yaml, "bench.yaml");
    benchmark::DoNotOptimize(p);
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
}

}  // namespace

BENCHMARK(BM_Evaluate)->Arg(10)->Arg(1000)->Arg(100000);
BENCHMARK(BM_EvaluatePrepared)->Arg(10)->Arg(1000)->Arg(100000);
BENCHMARK(BM_EvaluateLinear)->Arg(10)->Arg(1000)->Arg(100000);
BENCHMARK(BM_EvaluateAnonymousMetadata)->Arg(10)->Arg(100000);
BENCHMARK(BM_Bundle500)->Arg(10)->Arg(1000)->Arg(100000);
BENCHMARK(BM_ClassifyBundle1MiB)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Load)->Arg(1000)->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
