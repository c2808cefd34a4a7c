// Internal to fmp_policy: inspection of a batch/transaction Bundle posted to the FHIR base.
#pragma once

#include <cstddef>
#include <string_view>

#include "policy/fhir_request.h"

namespace fmp::policy {

/// Most entries a Bundle may carry; more is a bundle_error (each entry is evaluated by the policy).
inline constexpr std::size_t kMaxBundleEntries = 10000;

/// Fills `out` (already holding method and path) from a Bundle body: interaction kBatch or
/// kTransaction and every entry classified, or a non-empty `bundle_error` (interaction kUnknown
/// when Bundle.type could not be read). Never throws on any input.
void inspect_bundle(std::string_view fhir_base, std::string_view content_type,
                    std::string_view body, FhirRequest& out);

}  // namespace fmp::policy
