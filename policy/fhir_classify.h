// FHIR classification of an HTTP request.
#pragma once

#include <string>
#include <string_view>

#include "policy/fhir_request.h"

namespace fmp::policy {

/// Why a request target was refused before classification. Anything but kOk is a 400 `structure`.
enum class PathError {
  kOk,
  kDotSegment,    ///< "." or ".." segment, also percent-encoded
  kEncodedSlash,  ///< %2F or %5C
  kNul,           ///< %00 or a raw NUL
  kEmptySegment,  ///< "//"
  kBadEncoding,   ///< a '%' not followed by two hex digits
  kNotOriginForm, ///< target does not start with '/' (absolute-form, asterisk-form, ...)
  kBadCharacter,  ///< '#', control characters, space or any byte outside RFC 3986 in the target
};
std::string_view to_string(PathError e);

/// Splits and checks a request target. On kOk, `path` is the normalised path (unreserved %XX and %24
/// decoded; other escapes kept as they are) and `query` the raw query without '?'.
PathError split_target(std::string_view target, std::string& path, std::string& query);

/// Classifies a request relative to `fhir_base` (e.g. "/fhir"; "" or "/" means the root).
/// `path` must come from split_target. `body` is only read for a POST to the base (batch/transaction);
/// `content_type` decides whether it is inspected (application/fhir+json or application/json, with
/// parameters); anything else gives a bundle_error.
FhirRequest classify(std::string_view method, std::string_view path, std::string_view query,
                     std::string_view fhir_base, std::string_view content_type,
                     std::string_view body);

/// True when `method` + `path` is a POST at the FHIR base: the body must be read before deciding.
bool needs_body(std::string_view method, std::string_view path, std::string_view fhir_base);

}  // namespace fmp::policy
