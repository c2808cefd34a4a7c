// Spellings of FHIR interactions in the policy language.
#include "policy/fhir_request.h"

#include <array>
#include <utility>

namespace fmp::policy {
namespace {

// One table for both directions, so to_string and parse_interaction cannot drift apart.
constexpr std::array<std::pair<Interaction, std::string_view>, 14> kSpellings{{
    {Interaction::kNone, "none"},
    {Interaction::kUnknown, "unknown"},
    {Interaction::kCapabilities, "capabilities"},
    {Interaction::kRead, "read"},
    {Interaction::kVread, "vread"},
    {Interaction::kSearch, "search"},
    {Interaction::kHistory, "history"},
    {Interaction::kCreate, "create"},
    {Interaction::kUpdate, "update"},
    {Interaction::kPatch, "patch"},
    {Interaction::kDelete, "delete"},
    {Interaction::kBatch, "batch"},
    {Interaction::kTransaction, "transaction"},
    {Interaction::kOperation, "operation"},
}};

}  // namespace

std::string_view to_string(Interaction i) {
  for (const auto& [value, name] : kSpellings) {
    if (value == i) return name;
  }
  return "unknown";
}

bool parse_interaction(std::string_view s, Interaction& out) {
  for (const auto& [value, name] : kSpellings) {
    if (name == s) {
      out = value;
      return true;
    }
  }
  return false;
}

}  // namespace fmp::policy
