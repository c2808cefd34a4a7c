// Inspection of batch/transaction Bundles: every entry is classified so the policy can check it.
#include "policy/fhir_bundle.h"

#include <algorithm>
#include <cstddef>
#include <string>
#include <string_view>
#include <utility>

#include "policy/fhir_bundle_scan.h"
#include "policy/fhir_classify.h"

namespace fmp::policy {
namespace {

char ascii_lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return ascii_lower(x) == ascii_lower(y);
         });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

/// application/fhir+json or application/json, any letter case, parameters (charset, fhirVersion)
/// ignored.
bool is_json_media_type(std::string_view content_type) {
  const std::string_view media = trim(content_type.substr(0, content_type.find(';')));
  return iequals(media, "application/fhir+json") || iequals(media, "application/json");
}

bool is_bundle_method(std::string_view m) {
  return m == "GET" || m == "HEAD" || m == "POST" || m == "PUT" || m == "PATCH" || m == "DELETE";
}

/// True when `url` starts with a URI scheme ("http:", "urn:"): a ':' before any '/', '?' or '#'.
bool has_scheme(std::string_view url) {
  const std::size_t colon = url.find(':');
  return colon != std::string_view::npos && colon < url.find_first_of("/?#");
}

/// Classifies one entry; returns an error text (without the entry prefix) or "".
std::string classify_entry(const BundleEntryScan& entry, std::string_view base, FhirRequest& out) {
  if (!entry.is_object) return "not an object";
  if (entry.request != JsonShape::kObject) return "missing request";
  if (!entry.method) return "missing request.method";
  const std::string& method = *entry.method;
  if (!is_bundle_method(method)) return "request.method \"" + method + "\" is not allowed";
  if (!entry.url || entry.url->empty()) return "missing request.url";
  const std::string& url = *entry.url;
  // request.url is relative to the base. An absolute URL can't be checked against the base (the
  // proxy does not know every name the server answers to) and a leading '/' is read differently by
  // different servers, so both are refused.
  if (has_scheme(url)) return "absolute request.url is not allowed";
  if (url.front() == '/') return "request.url must be relative to the FHIR base";

  std::string target;
  target.reserve(base.size() + 1 + url.size());
  target.append(base).append("/").append(url);
  std::string path;
  std::string query;
  const PathError err = split_target(target, path, query);
  if (err != PathError::kOk) return "request.url: " + std::string(to_string(err));
  if (needs_body(method, path, base)) return "a nested batch/transaction is not allowed";
  out = classify(method, path, query, base, {}, {});

  // A create/update whose resource is not of the type in the url would be checked against the wrong
  // resource type: refuse it rather than trust the server to. An entry without a resource is left
  // to the server (it has nothing to store).
  if ((out.interaction == Interaction::kCreate || out.interaction == Interaction::kUpdate) &&
      entry.resource != JsonShape::kAbsent) {
    if (entry.resource != JsonShape::kObject || !entry.resource_type ||
        *entry.resource_type != out.resource) {
      return "resource type does not match request.url";
    }
  }
  return {};
}

}  // namespace

void inspect_bundle(std::string_view fhir_base, std::string_view content_type,
                    std::string_view body, FhirRequest& out) {
  out.interaction = Interaction::kUnknown;
  out.resource.clear();
  out.entries.clear();
  const auto fail = [&out](std::string why) {
    out.entries.clear();
    out.bundle_error = std::move(why);
  };
  if (!is_json_media_type(content_type)) {
    return fail("Bundle content type must be application/fhir+json or application/json");
  }
  // One streaming pass: the whole body is validated (JSON, duplicate keys, depth) before any of
  // its fields is trusted, and only the fields read below are kept.
  BundleScan scan;
  if (std::string error = scan_bundle(body, kMaxBundleEntries, scan); !error.empty()) {
    return fail("Bundle is " + error);
  }
  if (!scan.root_is_object) return fail("Bundle is not a JSON object");
  if (scan.resource_type != "Bundle") return fail("resourceType is not Bundle");
  if (scan.type == "batch") {
    out.interaction = Interaction::kBatch;
  } else if (scan.type == "transaction") {
    out.interaction = Interaction::kTransaction;
  } else {
    return fail("Bundle.type must be batch or transaction");
  }

  if (scan.entry == JsonShape::kAbsent) return;
  if (scan.entry != JsonShape::kArray) return fail("Bundle.entry is not an array");
  if (scan.entry_count > kMaxBundleEntries) {
    return fail("Bundle has more than " + std::to_string(kMaxBundleEntries) + " entries");
  }
  // Entries are classified below the same base as the Bundle itself, without its trailing '/'.
  std::string_view base = fhir_base;
  while (!base.empty() && base.back() == '/') base.remove_suffix(1);
  out.entries.resize(scan.entries.size());
  for (std::size_t i = 0; i < scan.entries.size(); ++i) {
    std::string why = classify_entry(scan.entries[i], base, out.entries[i]);
    if (!why.empty()) return fail("entry " + std::to_string(i) + ": " + why);
  }
}

}  // namespace fmp::policy
