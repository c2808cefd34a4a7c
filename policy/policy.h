// A compiled, immutable policy: rules in order, a default, HIPAA extraction settings.
//
// Semantics (the contract): rules are evaluated in order (files in lexical order); the first
// enforced rule whose `when` holds decides; `default` decides when none does. Every key present in
// `when` must hold (AND); a list means any-of (OR). An anonymous identity matches no identity key.
// A Bundle is allowed only if the Bundle request itself and every entry are allowed. A request with
// a bundle_error is denied. Shadow rules before the deciding rule are evaluated and reported, never
// enforced.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "policy/decision.h"
#include "policy/fhir_request.h"
#include "policy/hipaa.h"
#include "policy/identity.h"

namespace fmp::policy {

/// The identity-dependent work of an evaluation, done once for an identity that does not change (a
/// connection's). Opaque: made by Policy::prepare(), used by the same policy only.
class PreparedIdentity {
 public:
  virtual ~PreparedIdentity() = default;
};

class Policy {
 public:
  virtual ~Policy() = default;

  /// Pure function of its inputs; thread-safe; never throws on valid inputs.
  virtual Decision evaluate(const Identity& identity, const FhirRequest& request) const = 0;

  /// Prepares `identity` for repeated evaluation by this policy. Null when there is nothing to
  /// prepare. Thread-safe; the result is immutable and must not outlive this policy.
  virtual std::shared_ptr<const PreparedIdentity> prepare(const Identity& /*identity*/) const {
    return nullptr;
  }

  /// Exactly evaluate(identity, request). `prepared` should come from prepare(identity) of this
  /// policy; anything else (null, another policy's, another identity's) is detected and ignored,
  /// never trusted.
  virtual Decision evaluate(const Identity& identity, const FhirRequest& request,
                            const PreparedIdentity* /*prepared*/) const {
    return evaluate(identity, request);
  }
  /// Exactly evaluate(identity, request, prepared), written into `out`: every field is replaced.
  /// A caller that keeps `out` from one request to the next reuses its strings' storage, so a
  /// steady stream of decisions allocates nothing. When it throws, `out` denies (its other fields
  /// are unspecified).
  virtual void evaluate_into(const Identity& identity, const FhirRequest& request,
                             const PreparedIdentity* prepared, Decision& out) const {
    out.effect = Effect::kDeny;
    out = evaluate(identity, request, prepared);
  }

  /// Every rule, shadow ones included, in evaluation order.
  virtual const std::vector<std::string>& rule_names() const = 0;
  virtual Effect default_effect() const = 0;
  /// The HIPAA settings the identity extraction must use with this policy.
  virtual const HipaaConfig& hipaa() const = 0;
};

using PolicyPtr = std::shared_ptr<const Policy>;

}  // namespace fmp::policy
