#include "proxy/http/rejection.h"

#include <nlohmann/json.hpp>

namespace fmp::proxy::http {

RejectionStatus status_of(Rejection r) {
  switch (r) {
    case Rejection::kForbidden:
      return {403, "Forbidden", "forbidden"};
    case Rejection::kLogin:
      return {401, "Unauthorized", "login"};
    case Rejection::kSecurity:
      return {401, "Unauthorized", "security"};
    case Rejection::kExpired:
      return {401, "Unauthorized", "expired"};
    case Rejection::kStructure:
      return {400, "Bad Request", "structure"};
    case Rejection::kHeadersTooLarge:
      return {431, "Request Header Fields Too Large", "too-long"};
    case Rejection::kBodyTooLarge:
      return {413, "Content Too Large", "too-long"};
    case Rejection::kTransient:
      return {502, "Bad Gateway", "transient"};
    case Rejection::kTimeout:
      return {504, "Gateway Timeout", "timeout"};
    case Rejection::kRequestTimeout:
      return {408, "Request Timeout", "timeout"};
    case Rejection::kUnavailable:
      return {503, "Service Unavailable", "transient"};
  }
  return {500, "Internal Server Error", "exception"};
}

std::string operation_outcome_json(std::string_view issue_code, std::string_view diagnostics) {
  nlohmann::ordered_json issue;
  issue["severity"] = "error";
  issue["code"] = issue_code;
  issue["diagnostics"] = diagnostics;
  nlohmann::ordered_json oo;
  oo["resourceType"] = "OperationOutcome";
  oo["issue"] = nlohmann::ordered_json::array({issue});
  return oo.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string rejection_response(Rejection r, std::string_view diagnostics, bool close,
                               bool head_only) {
  const RejectionStatus s = status_of(r);
  const std::string body = operation_outcome_json(s.issue_code, diagnostics);
  std::string out;
  out.reserve(body.size() + 256);
  out += "HTTP/1.1 ";
  out += std::to_string(s.status);
  out += ' ';
  out += s.reason_phrase;
  out += "\r\nContent-Type: application/fhir+json\r\nContent-Length: ";
  out += std::to_string(body.size());
  out += "\r\nCache-Control: no-store\r\n";
  if (r == Rejection::kLogin || r == Rejection::kSecurity || r == Rejection::kExpired)
    out += "WWW-Authenticate: Mutual-TLS\r\n";
  if (close) out += "Connection: close\r\n";
  out += "\r\n";
  if (!head_only) out += body;
  return out;
}

}  // namespace fmp::proxy::http
