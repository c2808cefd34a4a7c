// Internal to fmp_policy: one streaming pass over a Bundle body that validates the whole JSON text
// and keeps only the few fields the Bundle classification reads.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace fmp::policy {

/// Deepest JSON nesting accepted (objects and arrays together, the root counts as 1). FHIR
/// resources stay far below it; the bound keeps hostile input ("[[[[...") from costing memory per
/// level.
inline constexpr std::size_t kMaxBundleJsonDepth = 128;

/// What an object member holds, for the members whose shape the classification checks.
enum class JsonShape { kAbsent, kObject, kArray, kOther };

/// The fields of one element of Bundle.entry. A string field is set only when the member is present
/// and a JSON string (any other type reads as absent, as it would through a DOM lookup).
struct BundleEntryScan {
  bool is_object = false;                    ///< false: the element is not a JSON object
  JsonShape request = JsonShape::kAbsent;    ///< entry.request
  std::optional<std::string> method;         ///< entry.request.method
  std::optional<std::string> url;            ///< entry.request.url
  JsonShape resource = JsonShape::kAbsent;   ///< entry.resource
  std::optional<std::string> resource_type;  ///< entry.resource.resourceType
};

/// The fields of a Bundle the classification reads; everything else was only validated.
struct BundleScan {
  bool root_is_object = false;
  std::optional<std::string> resource_type;  ///< Bundle.resourceType, when a string
  std::optional<std::string> type;           ///< Bundle.type, when a string
  JsonShape entry = JsonShape::kAbsent;      ///< Bundle.entry
  /// Number of elements of Bundle.entry (when it is an array), also those not kept in `entries`.
  std::size_t entry_count = 0;
  /// The first `max_entries` elements of Bundle.entry (see scan_bundle).
  std::vector<BundleEntryScan> entries;
};

/// Reads `body` as one JSON text in a single pass without building a document. Returns "" and fills
/// `out` when the whole text is valid JSON (RFC 8259, UTF-8, nothing after the value), no object
/// repeats a key (at any depth: parsers disagree on which copy wins, so "type":"batch",
/// "type":"transaction" could mean one thing here and another upstream) and nothing nests deeper
/// than kMaxBundleJsonDepth. Otherwise returns why, as "not valid JSON (at byte N)", "duplicate key
/// \"K\"" or "JSON nested too deeply", and `out` must not be used. Only the first `max_entries`
/// elements of Bundle.entry are kept (memory stays bounded); `entry_count` counts all of them.
/// Never throws on any input.
std::string scan_bundle(std::string_view body, std::size_t max_entries, BundleScan& out);

}  // namespace fmp::policy
