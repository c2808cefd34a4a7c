// Fuzz driver: the Bundle classifier (POST to the FHIR base with a JSON body, policy::classify).
//
// Input: byte 0 chooses the Content-Type; the rest is the body.
// Invariants: classify never throws; the result is a batch or transaction with no bundle_error,
// or carries a bundle_error and no entries (the engine then denies it); a Bundle that passes has at
// most kMaxBundleEntries entries, each a classified request at or below the base with no error, no
// nested batch/transaction and no entries of its own.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "policy/fhir_bundle.h"
#include "policy/fhir_classify.h"

namespace {

using namespace fmp::policy;

void check(bool ok) {
  if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  constexpr std::string_view kTypes[] = {"application/fhir+json", "application/json; charset=utf-8",
                                         "application/fhir+json;fhirVersion=4.0", "text/plain"};
  const std::string_view content_type = kTypes[data[0] & 3];
  const std::string_view body(reinterpret_cast<const char*>(data + 1), size - 1);

  const FhirRequest r = classify("POST", "/fhir", "", "/fhir", content_type, body);
  check(r.method == "POST" && r.path == "/fhir");
  if (!r.bundle_error.empty()) {
    check(r.entries.empty());
    return 0;
  }
  check(r.interaction == Interaction::kBatch || r.interaction == Interaction::kTransaction);
  check(r.entries.size() <= kMaxBundleEntries);
  for (const auto& e : r.entries) {
    check(e.bundle_error.empty() && e.entries.empty());
    check(e.interaction != Interaction::kBatch && e.interaction != Interaction::kTransaction);
    check(e.path == "/fhir" || e.path.compare(0, 6, "/fhir/") == 0);
    check(e.path.find("//") == std::string_view::npos);
    check(e.path.find("/../") == std::string_view::npos);
    check(!e.method.empty());
  }
  return 0;
}
