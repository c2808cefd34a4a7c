// Fuzz driver: the FHIR URL classifier (policy::split_target, then policy::classify).
//
// Input: byte 0 chooses the method and the FHIR base; the rest is the request target as received.
// Invariants:
// - a target split_target accepts gives a path that starts with '/' and never contains "/../",
//   "/./", "//", an encoded slash or backslash (%2F, %5C), %00, '?', '#' or a final "/." or "/..";
//   a refused target leaves both outputs empty;
// - normalisation is stable: the accepted path is accepted again unchanged (no second decoding can
//   turn it into something else, so policy globs and the upstream see the same path);
// - classify never throws (an escaping exception is a finding), keeps method and path, and a
//   kNone/kUnknown result carries no resource, id, version or operation.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "policy/fhir_classify.h"

namespace {

using namespace fmp::policy;

void check(bool ok) {
  if (!ok) std::abort();
}

bool contains_ci(std::string_view s, std::string_view needle) {
  for (std::size_t i = 0; i + needle.size() <= s.size(); ++i) {
    bool eq = true;
    for (std::size_t k = 0; k < needle.size() && eq; ++k) {
      char c = s[i + k];
      if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 32);
      eq = c == needle[k];
    }
    if (eq) return true;
  }
  return false;
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  constexpr std::string_view kMethods[] = {"GET",   "HEAD",   "POST",    "PUT",
                                           "PATCH", "DELETE", "OPTIONS", "get"};
  constexpr std::string_view kBases[] = {"/fhir", "/", "/api/fhir/r4/", ""};
  const std::string_view method = kMethods[data[0] & 7];
  const std::string_view base = kBases[(data[0] >> 3) & 3];
  const std::string_view target(reinterpret_cast<const char*>(data + 1), size - 1);

  std::string path = "stale";
  std::string query = "stale";
  const PathError err = split_target(target, path, query);
  (void)to_string(err);
  if (err != PathError::kOk) {
    check(path.empty() && query.empty());
    return 0;
  }
  check(!path.empty() && path.front() == '/');
  check(path.find("/../") == std::string::npos && path.find("/./") == std::string::npos);
  check(path.find("//") == std::string::npos);
  check(!ends_with(path, "/..") && !ends_with(path, "/."));
  check(!contains_ci(path, "%2F") && !contains_ci(path, "%5C") && !contains_ci(path, "%00"));
  check(path.find_first_of(std::string_view("?#\\\0", 4)) == std::string::npos);

  std::string again;
  std::string again_query;
  check(split_target(path, again, again_query) == PathError::kOk);
  check(again == path && again_query.empty());

  const FhirRequest r = classify(method, path, query, base, "", "");
  check(r.method == method && r.path == path);
  if (r.interaction == Interaction::kNone || r.interaction == Interaction::kUnknown)
    check(r.resource.empty() && r.id.empty() && r.version.empty() && r.operation.empty());
  (void)needs_body(method, path, base);
  return 0;
}
