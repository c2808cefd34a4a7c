// The result of evaluating a request against a policy.
#pragma once

#include <string>
#include <vector>

namespace fmp::policy {

enum class Effect { kAllow, kDeny };
enum class Mode { kEnforce, kShadow };

/// What one shadow rule would have done. Shadow rules before the deciding rule are evaluated and
/// reported here; they never change the enforced decision.
struct ShadowResult {
  std::string rule;
  Effect effect = Effect::kDeny;
};

/// The enforced decision. `rule` is the deciding rule's name, or "default" when no enforced rule
/// matched. For a Bundle, a denial names the rule (or "default") that denied the first denied
/// entry, and `reason` says which entry.
struct Decision {
  Effect effect = Effect::kDeny;
  std::string rule = "default";
  Mode mode = Mode::kEnforce;
  std::string reason;  ///< human-readable: "rule X matched", "no rule matched", "entry 3: ..."
  std::vector<ShadowResult> shadow;

  bool allowed() const { return effect == Effect::kAllow; }
};

}  // namespace fmp::policy
