// JSON views of the policy's data types, as `explain --json` prints them. Plain data in, JSON out;
// reusable by anything else that needs the same shape (e.g. an admin endpoint).
#pragma once

#include <nlohmann/json.hpp>

#include <ctime>
#include <string>
#include <vector>

#include "policy/decision.h"
#include "policy/fhir_request.h"
#include "policy/identity.h"
#include "proxy/tls/trust_store.h"

namespace fmp::proxy::cli {

/// "2024-05-01T12:00:00Z" for unix seconds `t`.
std::string rfc3339_utc(std::int64_t t);

/// Every field of `id`. DNs as {"dn": RFC 4514 string, "attributes": [{"type","value"}...]};
/// validity both as unix seconds (not_before/not_after) and as RFC 3339
/// (not_before_utc/not_after_utc).
nlohmann::json identity_json(const policy::Identity& id);

/// {method, path, interaction, resource, id, version, operation, entries: [same shape],
/// bundle_error}.
nlohmann::json request_json(const policy::FhirRequest& r);

/// {effect: "allow"|"deny", rule, mode: "enforce"|"shadow", reason}. The shadow list is separate.
nlohmann::json decision_json(const policy::Decision& d);

/// [{rule, effect}...]
nlohmann::json shadow_json(const std::vector<policy::ShadowResult>& shadow);

/// {ok, reason (metric label spelling), community, message}.
nlohmann::json verification_json(const tls::VerifyResult& v);

std::string_view effect_name(policy::Effect e);
std::string_view mode_name(policy::Mode m);

}  // namespace fmp::proxy::cli
