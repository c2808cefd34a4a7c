// The answers the proxy itself gives: FHIR OperationOutcome bodies with the contract's status and
// issue code for each situation.
#pragma once

#include <string>
#include <string_view>

namespace fmp::proxy::http {

/// Every situation in which the proxy answers instead of the FHIR server (the contract's rejection
/// table).
enum class Rejection {
  kForbidden,        ///< 403 forbidden: the policy denies
  kLogin,            ///< 401 login: anonymous request the policy does not allow
  kSecurity,         ///< 401 security: invalid, revoked or not yet valid client certificate
  kExpired,          ///< 401 expired: expired client certificate
  kStructure,        ///< 400 structure: malformed request, smuggling attempt, bad path
  kHeadersTooLarge,  ///< 431 too-long
  kBodyTooLarge,     ///< 413 too-long
  kTransient,        ///< 502 transient: upstream unreachable or reset
  kTimeout,          ///< 504 timeout: upstream too slow
  kRequestTimeout,   ///< 408 timeout: the client did not send a request head in time
  kUnavailable,      ///< 503 transient: the proxy is shutting down / over its connection cap
};

struct RejectionStatus {
  int status;
  std::string_view reason_phrase;
  std::string_view issue_code;
};

RejectionStatus status_of(Rejection r);

/// {"resourceType":"OperationOutcome","issue":[{"severity":"error","code":CODE,"diagnostics":TEXT}]}
std::string operation_outcome_json(std::string_view issue_code, std::string_view diagnostics);

/// A complete HTTP/1.1 response carrying the OperationOutcome. `close` adds `Connection: close`.
/// `head_only` (answer to HEAD) sends the headers with the body's Content-Length but no body.
std::string rejection_response(Rejection r, std::string_view diagnostics, bool close,
                               bool head_only = false);

}  // namespace fmp::proxy::http
