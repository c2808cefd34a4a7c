// A request as the policy sees it: HTTP method and path plus its FHIR meaning.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace fmp::policy {

/// FHIR RESTful interactions (https://hl7.org/fhir/R4/http.html), plus `kNone` for a path outside
/// the FHIR base (e.g. /healthz on the upstream) and `kUnknown` for a FHIR path that fits no
/// interaction.
enum class Interaction {
  kNone,
  kUnknown,
  kCapabilities,
  kRead,
  kVread,
  kSearch,
  kHistory,
  kCreate,
  kUpdate,
  kPatch,
  kDelete,
  kBatch,
  kTransaction,
  kOperation,
};

/// The policy-language spelling ("read", "vread", ..., "none", "unknown").
std::string_view to_string(Interaction i);
/// Parses the policy-language spelling; false when `s` names no interaction.
bool parse_interaction(std::string_view s, Interaction& out);

/// One classified request (or one entry of a batch/transaction Bundle).
struct FhirRequest {
  std::string method;  ///< uppercase HTTP method; HEAD is classified like GET
  std::string path;    ///< normalised path without query: unreserved %XX and %24 decoded
  Interaction interaction = Interaction::kNone;
  std::string resource;   ///< resource type ("" at system level or outside FHIR)
  std::string id;         ///< logical id, when the path names one
  std::string version;    ///< version id for vread
  std::string operation;  ///< "$everything" etc. for kOperation, including the '$'
  /// For kBatch/kTransaction: every entry, classified from entry.request.method + url.
  std::vector<FhirRequest> entries;
  /// Non-empty when a Bundle could not be inspected (not JSON, wrong shape, entry without
  /// request...). A request with a bundle_error is always denied by the engine: it cannot be
  /// checked, so fail closed.
  std::string bundle_error;
};

}  // namespace fmp::policy
