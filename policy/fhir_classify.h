// FHIR classification of an HTTP request.
#pragma once

#include <string>
#include <string_view>

#include "policy/fhir_request.h"

namespace fmp::policy {

/// Why a request target was refused before classification. Anything but kOk is a 400 `structure`.
enum class PathError {
  kOk,
  kDotSegment,     ///< "." or ".." segment, also percent-encoded
  kEncodedSlash,   ///< %2F or %5C
  kNul,            ///< %00 or a raw NUL
  kEmptySegment,   ///< "//"
  kBadEncoding,    ///< a '%' not followed by two hex digits
  kNotOriginForm,  ///< target does not start with '/' (absolute-form, asterisk-form, ...)
  kBadCharacter,   ///< '#', control characters, space or any byte outside RFC 3986 in the target
};
std::string_view to_string(PathError e);

/// Splits and checks a request target. On kOk, `path` is the normalised path (unreserved %XX and
/// %24 decoded; other escapes kept as they are) and `query` the raw query without '?'.
///
/// The target splits at the first '?'; only the path is checked. It must start with '/' and hold
/// only RFC 3986 path bytes (unreserved, sub-delims, ':', '@', '/', '%' + two hex digits): '#',
/// '\\', space, controls, DEL, non-ASCII and the other excluded bytes give kBadCharacter. A decoded
/// segment "." or ".." (also %2e, .%2E, ...) gives kDotSegment, "//" anywhere kEmptySegment,
/// %2F/%5C kEncodedSlash, %00 or a raw NUL kNul. Escapes that stay get uppercase hex.
/// ';' is an ordinary character, not a path-parameter separator: "/fhir/Patient;x/1" keeps the
/// segment "Patient;x", which is no resource type, so it classifies as kUnknown.
/// The query is returned raw, not validated. On any error both outputs are empty.
PathError split_target(std::string_view target, std::string& path, std::string& query);

/// Classifies a request relative to `fhir_base` (e.g. "/fhir"; "" or "/" means the root).
/// `path` must come from split_target. `body` is only read for a POST to the base
/// (batch/transaction); `content_type` decides whether it is inspected (application/fhir+json or
/// application/json, with parameters); anything else gives a bundle_error.
///
/// - `fhir_base` starts with '/'; trailing '/' are ignored; the comparison is case-sensitive. A
///   path that is neither the base nor below it ("/fhirx", "/FHIR/...") is kNone: only path and
///   method keys of a rule can match it.
/// - One trailing '/' of the path is ignored: "/fhir/" is the base, "/fhir/Patient/1/" a read.
/// - Methods are compared as given (uppercase). HEAD classifies like GET and `method` keeps "HEAD".
///   Other methods (OPTIONS, TRACE, "get", ...) are kUnknown.
/// - A resource type is [A-Z][A-Za-z]*, an id or version id [A-Za-z0-9.-]{1,64}, an operation
///   '$' followed by [A-Za-z0-9_-]+. Anything else in their place is kUnknown.
/// - The base: GET system search, POST batch/transaction (from the Bundle). metadata (GET)
///   capabilities, _history (GET) history, _search (GET/POST) search, $op (GET/POST) operation.
/// - [type]: GET search, POST create, PUT/PATCH/DELETE conditional update/patch/delete (id empty);
///   [type]/_search (GET/POST) search, [type]/_history (GET) history, [type]/$op (GET/POST)
///   operation.
/// - [type]/[id]: GET read, PUT update, PATCH patch, DELETE delete (POST is kUnknown);
///   [type]/[id]/_history (GET) history, .../_history/[vid] (GET) vread, [type]/[id]/$op
///   (GET/POST) operation.
/// - Compartment search, [type]/[id]/[type2] (GET) and [type]/[id]/[type2]/_search (GET/POST), is
///   kSearch with `resource` = [type2] (what is returned) and `id` empty; the compartment shows
///   only in `path`, so restrict it with a path rule. The "*" compartment form is kUnknown.
/// - kUnknown and kNone carry no resource, id, version or operation: a rule denying by resource
///   should also deny `interaction: [unknown]` (a default-deny policy does so already).
///
/// Bundles: `resourceType` must be "Bundle" and `type` "batch" (kBatch) or "transaction"
/// (kTransaction). Otherwise, and when the body is not JSON, repeats an object key or nests deeper
/// than 128 levels, `bundle_error` is set (interaction kUnknown while the type is not known).
/// At most 10,000 entries; each needs request.method (GET HEAD POST PUT PATCH DELETE) and a
/// request.url relative to the base ("Patient/1", "Patient?name=x"). Refused: an absolute url
/// ("https://...", "urn:..."; the proxy can't know every name the server answers to), a url
/// starting with '/', a url breaking the path rules, a POST to the base (nested batch), and a
/// create/update whose resource.resourceType is not the url's type. Errors name the entry by its
/// 0-based index ("entry 3: ..."); on error `entries` is empty. Entries are classified by the rules
/// above; their `path` includes the base.
FhirRequest classify(std::string_view method, std::string_view path, std::string_view query,
                     std::string_view fhir_base, std::string_view content_type,
                     std::string_view body);

/// classify() written into `out`: every field is replaced, and a FhirRequest kept from one
/// request to the next reuses its strings' storage. The views must not point into `out`.
void classify_into(std::string_view method, std::string_view path, std::string_view query,
                   std::string_view fhir_base, std::string_view content_type, std::string_view body,
                   FhirRequest& out);

/// True when `method` + `path` is a POST at the FHIR base (also "/fhir/"): the body must be read
/// before deciding.
bool needs_body(std::string_view method, std::string_view path, std::string_view fhir_base);

}  // namespace fmp::policy
