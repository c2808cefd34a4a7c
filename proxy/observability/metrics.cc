#include "proxy/observability/metrics.h"

#include <prometheus/text_serializer.h>

#include <algorithm>
#include <sstream>

namespace fmp::proxy::observability {
namespace {

// FHIR R4 (4.0.1) resource types, sorted so a lookup is a binary search with no allocation.
constexpr std::string_view kR4Resources[] = {
    "Account",
    "ActivityDefinition",
    "AdverseEvent",
    "AllergyIntolerance",
    "Appointment",
    "AppointmentResponse",
    "AuditEvent",
    "Basic",
    "Binary",
    "BiologicallyDerivedProduct",
    "BodyStructure",
    "Bundle",
    "CapabilityStatement",
    "CarePlan",
    "CareTeam",
    "CatalogEntry",
    "ChargeItem",
    "ChargeItemDefinition",
    "Claim",
    "ClaimResponse",
    "ClinicalImpression",
    "CodeSystem",
    "Communication",
    "CommunicationRequest",
    "CompartmentDefinition",
    "Composition",
    "ConceptMap",
    "Condition",
    "Consent",
    "Contract",
    "Coverage",
    "CoverageEligibilityRequest",
    "CoverageEligibilityResponse",
    "DetectedIssue",
    "Device",
    "DeviceDefinition",
    "DeviceMetric",
    "DeviceRequest",
    "DeviceUseStatement",
    "DiagnosticReport",
    "DocumentManifest",
    "DocumentReference",
    "EffectEvidenceSynthesis",
    "Encounter",
    "Endpoint",
    "EnrollmentRequest",
    "EnrollmentResponse",
    "EpisodeOfCare",
    "EventDefinition",
    "Evidence",
    "EvidenceVariable",
    "ExampleScenario",
    "ExplanationOfBenefit",
    "FamilyMemberHistory",
    "Flag",
    "Goal",
    "GraphDefinition",
    "Group",
    "GuidanceResponse",
    "HealthcareService",
    "ImagingStudy",
    "Immunization",
    "ImmunizationEvaluation",
    "ImmunizationRecommendation",
    "ImplementationGuide",
    "InsurancePlan",
    "Invoice",
    "Library",
    "Linkage",
    "List",
    "Location",
    "Measure",
    "MeasureReport",
    "Media",
    "Medication",
    "MedicationAdministration",
    "MedicationDispense",
    "MedicationKnowledge",
    "MedicationRequest",
    "MedicationStatement",
    "MedicinalProduct",
    "MedicinalProductAuthorization",
    "MedicinalProductContraindication",
    "MedicinalProductIndication",
    "MedicinalProductIngredient",
    "MedicinalProductInteraction",
    "MedicinalProductManufactured",
    "MedicinalProductPackaged",
    "MedicinalProductPharmaceutical",
    "MedicinalProductUndesirableEffect",
    "MessageDefinition",
    "MessageHeader",
    "MolecularSequence",
    "NamingSystem",
    "NutritionOrder",
    "Observation",
    "ObservationDefinition",
    "OperationDefinition",
    "OperationOutcome",
    "Organization",
    "OrganizationAffiliation",
    "Parameters",
    "Patient",
    "PaymentNotice",
    "PaymentReconciliation",
    "Person",
    "PlanDefinition",
    "Practitioner",
    "PractitionerRole",
    "Procedure",
    "Provenance",
    "Questionnaire",
    "QuestionnaireResponse",
    "RelatedPerson",
    "RequestGroup",
    "ResearchDefinition",
    "ResearchElementDefinition",
    "ResearchStudy",
    "ResearchSubject",
    "RiskAssessment",
    "RiskEvidenceSynthesis",
    "Schedule",
    "SearchParameter",
    "ServiceRequest",
    "Slot",
    "Specimen",
    "SpecimenDefinition",
    "StructureDefinition",
    "StructureMap",
    "Subscription",
    "Substance",
    "SubstanceNucleicAcid",
    "SubstancePolymer",
    "SubstanceProtein",
    "SubstanceReferenceInformation",
    "SubstanceSourceMaterial",
    "SubstanceSpecification",
    "SupplyDelivery",
    "SupplyRequest",
    "Task",
    "TerminologyCapabilities",
    "TestReport",
    "TestScript",
    "ValueSet",
    "VerificationResult",
    "VisionPrescription",
};
constexpr std::size_t kR4Count = std::size(kR4Resources);
static_assert(std::ranges::is_sorted(kR4Resources), "binary search needs the list sorted");
static_assert(std::ranges::adjacent_find(kR4Resources) == std::end(kR4Resources), "no duplicates");

constexpr std::string_view kOtherResource = "other";
constexpr std::string_view kSystemResource = "system";
constexpr std::size_t kOtherSlot = kR4Count;
constexpr std::size_t kSystemSlot = kR4Count + 1;

// Resource label slot: index in kR4Resources, or kOtherSlot / kSystemSlot.
std::size_t resource_slot(std::string_view resource) {
  if (resource.empty()) return kSystemSlot;
  const auto* it = std::lower_bound(std::begin(kR4Resources), std::end(kR4Resources), resource);
  if (it != std::end(kR4Resources) && *it == resource) {
    return static_cast<std::size_t>(it - std::begin(kR4Resources));
  }
  return kOtherSlot;
}

std::string_view resource_slot_label(std::size_t slot) {
  if (slot == kOtherSlot) return kOtherResource;
  if (slot == kSystemSlot) return kSystemResource;
  return kR4Resources[slot];
}

constexpr tls::VerifyReason kAllReasons[] = {
    tls::VerifyReason::kNone,     tls::VerifyReason::kNoCertificate, tls::VerifyReason::kUntrusted,
    tls::VerifyReason::kExpired,  tls::VerifyReason::kNotYetValid,   tls::VerifyReason::kRevoked,
    tls::VerifyReason::kProtocol, tls::VerifyReason::kOther,
};

// Slot 0 is success/none; slot i (1..7) is failure with kAllReasons[i].
std::size_t handshake_slot(bool ok, tls::VerifyReason reason) {
  if (ok) return 0;
  switch (reason) {
    case tls::VerifyReason::kNoCertificate:
      return 1;
    case tls::VerifyReason::kUntrusted:
      return 2;
    case tls::VerifyReason::kExpired:
      return 3;
    case tls::VerifyReason::kNotYetValid:
      return 4;
    case tls::VerifyReason::kRevoked:
      return 5;
    case tls::VerifyReason::kProtocol:
      return 6;
    case tls::VerifyReason::kNone:  // a failure must name a reason: count it as "other"
    case tls::VerifyReason::kOther:
      return 7;
  }
  return 7;
}

// Sub-millisecond (in-memory decisions) up to the 30 s default upstream response timeout.
const prometheus::Histogram::BucketBoundaries& duration_buckets() {
  static const prometheus::Histogram::BucketBoundaries kBuckets = {
      0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
      0.1,    0.25,    0.5,    1.0,   2.5,    5.0,   10.0, 30.0};
  return kBuckets;
}

constexpr DecisionLabel kAllDecisions[] = {DecisionLabel::kAllow, DecisionLabel::kDeny,
                                           DecisionLabel::kShadowAllow, DecisionLabel::kShadowDeny};

std::size_t index_of(DecisionLabel d) {
  return static_cast<std::size_t>(d);
}

prometheus::Labels labels(std::initializer_list<std::pair<const std::string, std::string>> l) {
  return prometheus::Labels(l);
}

}  // namespace

std::string_view to_string(DecisionLabel d) {
  switch (d) {
    case DecisionLabel::kAllow:
      return "allow";
    case DecisionLabel::kDeny:
      return "deny";
    case DecisionLabel::kShadowAllow:
      return "shadow_allow";
    case DecisionLabel::kShadowDeny:
      return "shadow_deny";
  }
  return "deny";
}

std::string_view to_string(UpstreamError e) {
  switch (e) {
    case UpstreamError::kConnect:
      return "connect";
    case UpstreamError::kReset:
      return "reset";
    case UpstreamError::kTimeout:
      return "timeout";
  }
  return "connect";
}

std::string_view handshake_reason_label(tls::VerifyReason r) {
  switch (r) {
    case tls::VerifyReason::kNone:
      return "none";
    case tls::VerifyReason::kNoCertificate:
      return "no_certificate";
    case tls::VerifyReason::kUntrusted:
      return "untrusted";
    case tls::VerifyReason::kExpired:
      return "expired";
    case tls::VerifyReason::kNotYetValid:
      return "not_yet_valid";
    case tls::VerifyReason::kRevoked:
      return "revoked";
    case tls::VerifyReason::kProtocol:
      return "protocol";
    case tls::VerifyReason::kOther:
      return "other";
  }
  return "other";
}

std::span<const std::string_view> fhir_r4_resource_types() {
  return kR4Resources;
}

std::string_view fhir_resource_label(std::string_view resource) {
  return resource_slot_label(resource_slot(resource));
}

const RuleCounters::Row& RuleCounters::row(std::string_view rule) const {
  if (auto it = rows_.find(rule); it != rows_.end()) return it->second;
  return default_row_;
}

Metrics::Metrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      requests_(prometheus::BuildCounter()
                    .Name("fhir_mtls_proxy_requests_total")
                    .Help("Requests decided by the policy, by decision and deciding rule "
                          "(\"default\" when no rule matched).")
                    .Register(*registry_)),
      fhir_requests_(prometheus::BuildCounter()
                         .Name("fhir_mtls_proxy_fhir_requests_total")
                         .Help("Decided requests by FHIR interaction, R4 resource type (\"system\" "
                               "for none, \"other\" for unknown names) and decision.")
                         .Register(*registry_)),
      handshakes_(prometheus::BuildCounter()
                      .Name("fhir_mtls_proxy_tls_handshakes_total")
                      .Help("Downstream TLS handshakes by result and failure reason.")
                      .Register(*registry_)),
      resumed_family_(prometheus::BuildCounter()
                          .Name("fhir_mtls_proxy_tls_sessions_resumed_total")
                          .Help("Successful downstream handshakes that resumed a cached TLS "
                                "session (part of tls_handshakes_total{result=\"success\"}).")
                          .Register(*registry_)),
      upstream_errors_(prometheus::BuildCounter()
                           .Name("fhir_mtls_proxy_upstream_errors_total")
                           .Help("Failed upstream exchanges by kind.")
                           .Register(*registry_)),
      responses_(prometheus::BuildCounter()
                     .Name("fhir_mtls_proxy_responses_total")
                     .Help("Responses sent downstream by status class.")
                     .Register(*registry_)),
      reloads_(prometheus::BuildCounter()
                   .Name("fhir_mtls_proxy_policy_reloads_total")
                   .Help("Configuration reloads (SIGHUP) by result.")
                   .Register(*registry_)),
      audit_dropped_family_(prometheus::BuildCounter()
                                .Name("fhir_mtls_proxy_audit_dropped_total")
                                .Help("Audit events not queued because the audit queue was full.")
                                .Register(*registry_)),
      audit_errors_family_(prometheus::BuildCounter()
                               .Name("fhir_mtls_proxy_audit_write_errors_total")
                               .Help("Audit events lost to write errors (disk full, unwritable).")
                               .Register(*registry_)),
      active_connections_family_(prometheus::BuildGauge()
                                     .Name("fhir_mtls_proxy_active_connections")
                                     .Help("Accepted downstream connections that are open.")
                                     .Register(*registry_)),
      upstream_idle_family_(prometheus::BuildGauge()
                                .Name("fhir_mtls_proxy_upstream_idle_connections")
                                .Help("Idle upstream connections kept for reuse.")
                                .Register(*registry_)),
      policy_rules_family_(prometheus::BuildGauge()
                               .Name("fhir_mtls_proxy_policy_rules")
                               .Help("Rules of the serving policy, shadow rules included.")
                               .Register(*registry_)),
      last_reload_family_(prometheus::BuildGauge()
                              .Name("fhir_mtls_proxy_policy_last_reload_timestamp_seconds")
                              .Help("Unix time of the last successful policy load or reload.")
                              .Register(*registry_)),
      expiry_family_(prometheus::BuildGauge()
                         .Name("fhir_mtls_proxy_certificate_expiry_timestamp_seconds")
                         .Help("Unix time when the server certificate (server), the earliest CA "
                               "of a trust bundle (trust:NAME) or its earliest CRL (crl:NAME, "
                               "nextUpdate) expires.")
                         .Register(*registry_)),
      request_duration_("fhir_mtls_proxy_request_duration_seconds", "End-to-end request duration.",
                        duration_buckets()),
      upstream_duration_("fhir_mtls_proxy_upstream_duration_seconds",
                         "Upstream exchange duration, request sent to response end.",
                         duration_buckets()),
      fhir_counters_(std::make_unique<std::atomic<prometheus::Counter*>[]>(
          kInteractionCount * kResourceSlots * kDecisionLabelCount)) {
  static_assert(kResourceSlots == kR4Count + 2, "R4 names + other + system");
  static_assert(static_cast<std::size_t>(policy::Interaction::kOperation) + 1 == kInteractionCount);

  for (std::size_t i = 0; i < kHandshakeSlots; ++i) {
    const bool ok = i == 0;
    handshake_counters_[i] =
        &handshakes_.Add(labels({{"result", ok ? "success" : "failure"},
                                 {"reason", std::string(handshake_reason_label(kAllReasons[i]))}}));
  }
  for (auto kind : {UpstreamError::kConnect, UpstreamError::kReset, UpstreamError::kTimeout}) {
    upstream_error_counters_[static_cast<std::size_t>(kind)] =
        &upstream_errors_.Add(labels({{"kind", std::string(to_string(kind))}}));
  }
  const char* const classes[] = {"2xx", "3xx", "4xx", "5xx"};
  for (std::size_t i = 0; i < response_counters_.size(); ++i) {
    response_counters_[i] = &responses_.Add(labels({{"code_class", classes[i]}}));
  }
  resumed_ = &resumed_family_.Add({});
  reload_success_ = &reloads_.Add(labels({{"result", "success"}}));
  reload_failure_ = &reloads_.Add(labels({{"result", "failure"}}));
  audit_dropped_ = &audit_dropped_family_.Add({});
  audit_write_errors_ = &audit_errors_family_.Add({});
  active_connections_ = &active_connections_family_.Add({});
  upstream_idle_ = &upstream_idle_family_.Add({});
  policy_rules_ = &policy_rules_family_.Add({});
  last_reload_ = &last_reload_family_.Add({});
  bind_rules({});  // the "default" series exist before any policy is loaded
}

std::shared_ptr<const RuleCounters> Metrics::bind_rules(
    const std::vector<std::string>& rule_names) {
  auto counters = std::make_shared<RuleCounters>();
  auto make_row = [this](const std::string& rule) {
    RuleCounters::Row row{};
    for (auto d : kAllDecisions) {
      row[index_of(d)] =
          &requests_.Add(labels({{"decision", std::string(to_string(d))}, {"rule", rule}}));
    }
    return row;
  };
  counters->default_row_ = make_row("default");
  for (const auto& name : rule_names) {
    counters->rows_.emplace(name, make_row(name));
  }
  return counters;
}

void Metrics::count_decision(const RuleCounters& rules, DecisionLabel decision,
                             std::string_view rule) {
  rules.row(rule)[index_of(decision)]->Increment();
}

void Metrics::count_fhir(policy::Interaction interaction, std::string_view resource,
                         DecisionLabel decision) {
  auto i = static_cast<std::size_t>(interaction);
  if (i >= kInteractionCount) i = static_cast<std::size_t>(policy::Interaction::kUnknown);
  const std::size_t slot = resource_slot(resource);
  const std::size_t index = (i * kResourceSlots + slot) * kDecisionLabelCount + index_of(decision);
  std::atomic<prometheus::Counter*>& cell = fhir_counters_[index];
  prometheus::Counter* counter = cell.load(std::memory_order_acquire);
  if (counter == nullptr) {
    // First use of this series: create it once. Family::Add returns the existing series for equal
    // labels, so a race between two creators still yields one series.
    std::lock_guard lock(fhir_create_mutex_);
    counter = cell.load(std::memory_order_relaxed);
    if (counter == nullptr) {
      counter = &fhir_requests_.Add(labels(
          {{"interaction", std::string(policy::to_string(static_cast<policy::Interaction>(i)))},
           {"resource", std::string(resource_slot_label(slot))},
           {"decision", std::string(to_string(decision))}}));
      cell.store(counter, std::memory_order_release);
    }
  }
  counter->Increment();
}

void Metrics::observe_request(double seconds) {
  request_duration_.observe(seconds);
}
void Metrics::observe_upstream(double seconds) {
  upstream_duration_.observe(seconds);
}

void Metrics::count_handshake(bool ok, tls::VerifyReason reason) {
  handshake_counters_[handshake_slot(ok, reason)]->Increment();
}

void Metrics::count_resumed() {
  resumed_->Increment();
}

void Metrics::count_upstream_error(UpstreamError kind) {
  upstream_error_counters_[static_cast<std::size_t>(kind)]->Increment();
}

void Metrics::count_response(int status) {
  if (status < 200 || status > 599) return;
  response_counters_[static_cast<std::size_t>(status / 100 - 2)]->Increment();
}

void Metrics::connection_opened() {
  active_connections_->Increment();
}
void Metrics::connection_closed() {
  active_connections_->Decrement();
}

void Metrics::add_upstream_idle(int delta) {
  upstream_idle_->Increment(static_cast<double>(delta));
}

void Metrics::reload(bool ok, double now_seconds) {
  if (ok) {
    reload_success_->Increment();
    last_reload_->Set(now_seconds);
  } else {
    reload_failure_->Increment();
  }
}

void Metrics::policy_loaded(double now_seconds) {
  last_reload_->Set(now_seconds);
}

void Metrics::set_policy_rules(std::size_t n) {
  policy_rules_->Set(static_cast<double>(n));
}

void Metrics::set_expiry(const std::string& cert_label, double unix_seconds) {
  std::lock_guard lock(expiry_mutex_);
  auto& gauge = expiry_gauges_[cert_label];
  if (gauge == nullptr) gauge = &expiry_family_.Add(labels({{"cert", cert_label}}));
  gauge->Set(unix_seconds);
}

void Metrics::set_expiries(const std::vector<std::pair<std::string, double>>& expiries) {
  std::lock_guard lock(expiry_mutex_);
  for (auto it = expiry_gauges_.begin(); it != expiry_gauges_.end();) {
    const bool kept = std::any_of(expiries.begin(), expiries.end(),
                                  [&](const auto& e) { return e.first == it->first; });
    if (kept) {
      ++it;
    } else {
      expiry_family_.Remove(it->second);
      it = expiry_gauges_.erase(it);
    }
  }
  for (const auto& [label, when] : expiries) {
    auto& gauge = expiry_gauges_[label];
    if (gauge == nullptr) gauge = &expiry_family_.Add(labels({{"cert", label}}));
    gauge->Set(when);
  }
}

std::vector<std::pair<std::string, double>> Metrics::expiries_of(
    const std::vector<tls::TrustStore::Expiry>& trust) {
  std::vector<std::pair<std::string, double>> out;
  for (const auto& e : trust) {
    out.emplace_back(e.label, static_cast<double>(e.not_after));
    if (e.crl_next_update != 0) {
      constexpr std::string_view kTrustPrefix = "trust:";
      const std::string_view name = std::string_view(e.label).starts_with(kTrustPrefix)
                                        ? std::string_view(e.label).substr(kTrustPrefix.size())
                                        : std::string_view(e.label);
      out.emplace_back("crl:" + std::string(name), static_cast<double>(e.crl_next_update));
    }
  }
  return out;
}

void Metrics::count_audit_dropped() {
  audit_dropped_->Increment();
}
void Metrics::count_audit_write_error() {
  audit_write_errors_->Increment();
}

std::string Metrics::render() const {
  std::vector<prometheus::MetricFamily> families = registry_->Collect();
  for (const AtomicHistogram* h : {&request_duration_, &upstream_duration_})
    for (auto& f : h->Collect()) families.push_back(std::move(f));
  return prometheus::TextSerializer().Serialize(families);
}

}  // namespace fmp::proxy::observability
