// The streaming Bundle scan: the whole text is validated (JSON, duplicate keys at any depth,
// nesting) while only the fields the classification reads are kept, each from its exact place.
#include <doctest/doctest.h>

#include <string>
#include <string_view>

#include "policy/fhir_bundle.h"
#include "policy/fhir_bundle_scan.h"
#include "policy/fhir_classify.h"

namespace fmp::policy {
namespace {

FhirRequest post(std::string_view body) {
  return classify("POST", "/fhir", "", "/fhir", "application/fhir+json", body);
}

std::string with_entries(std::string_view entries, std::string_view type = "transaction") {
  return R"({"resourceType":"Bundle","type":")" + std::string(type) + R"(","entry":[)" +
         std::string(entries) + "]}";
}

/// A create of `resource` (a JSON object text) at `url`.
std::string create(std::string_view resource, std::string_view url = "Patient") {
  return R"({"resource":)" + std::string(resource) + R"(,"request":{"method":"POST","url":")" +
         std::string(url) + R"("}})";
}

/// A Patient whose contact[0].telecom[0] (six levels below the entry) holds `telecom_members`.
std::string deep_patient(std::string_view telecom_members) {
  return R"({"resourceType":"Patient","contact":[{"name":{"family":"x"},"telecom":[{)" +
         std::string(telecom_members) + "}]}]}";
}

void check_error(const FhirRequest& r, std::string_view what) {
  CAPTURE(r.bundle_error);
  CHECK(r.bundle_error.find(what) != std::string::npos);
  CHECK(r.entries.empty());
}

/// `n` levels of arrays around `inner`.
std::string arrays(std::size_t n, std::string_view inner = "") {
  return std::string(n, '[') + std::string(inner) + std::string(n, ']');
}

}  // namespace

TEST_CASE("scan keeps the classified fields, each from its exact place") {
  const std::string body = with_entries(
      R"({"fullUrl":"urn:uuid:1","resource":{"resourceType":"Patient","meta":{"resourceType":"X"},)"
      R"("request":{"method":"DELETE","url":"Nope"}},"request":{"method":"PUT","url":"Patient/1",)"
      R"("ifMatch":"W/\"1\""},"response":{"status":"201"}},)"
      R"({"request":{"method":"GET","url":"Observation?code=x"}},)"
      R"("text",{"request":[]},{"request":{"method":7,"url":null},"resource":[]})");
  BundleScan scan;
  REQUIRE(scan_bundle(body, kMaxBundleEntries, scan).empty());
  CHECK(scan.root_is_object);
  CHECK(scan.resource_type == "Bundle");
  CHECK(scan.type == "transaction");
  CHECK(scan.entry == JsonShape::kArray);
  CHECK(scan.entry_count == 5);
  REQUIRE(scan.entries.size() == 5);

  const BundleEntryScan& put = scan.entries[0];
  CHECK(put.is_object);
  CHECK(put.request == JsonShape::kObject);
  CHECK(put.method == "PUT");  // not the "request" member inside the resource
  CHECK(put.url == "Patient/1");
  CHECK(put.resource == JsonShape::kObject);
  CHECK(put.resource_type == "Patient");  // not meta.resourceType

  CHECK(scan.entries[1].resource == JsonShape::kAbsent);
  CHECK(scan.entries[1].url == "Observation?code=x");

  CHECK_FALSE(scan.entries[2].is_object);
  CHECK(scan.entries[3].request == JsonShape::kArray);
  const BundleEntryScan& odd = scan.entries[4];
  CHECK(odd.request == JsonShape::kObject);
  CHECK_FALSE(odd.method.has_value());  // a number is no method
  CHECK_FALSE(odd.url.has_value());
  CHECK(odd.resource == JsonShape::kArray);
}

TEST_CASE("scan: members with the Bundle's names elsewhere are not the Bundle's") {
  BundleScan scan;
  REQUIRE(scan_bundle(
              R"({"meta":{"resourceType":"Bundle","type":"batch","entry":[{}]},"resourceType":1,)"
              R"("Type":"batch","signature":{"entry":[]}})",
              kMaxBundleEntries, scan)
              .empty());
  CHECK(scan.root_is_object);
  CHECK_FALSE(scan.resource_type.has_value());
  CHECK_FALSE(scan.type.has_value());  // keys are case-sensitive
  CHECK(scan.entry == JsonShape::kAbsent);
  CHECK(scan.entry_count == 0);

  REQUIRE(scan_bundle(R"([{"resourceType":"Bundle"}])", kMaxBundleEntries, scan).empty());
  CHECK_FALSE(scan.root_is_object);
  CHECK_FALSE(scan.resource_type.has_value());

  REQUIRE(scan_bundle(R"({"entry":"x"})", kMaxBundleEntries, scan).empty());
  CHECK(scan.entry == JsonShape::kOther);
  REQUIRE(scan_bundle(R"({"entry":{"request":{}}})", kMaxBundleEntries, scan).empty());
  CHECK(scan.entry == JsonShape::kObject);
  CHECK(scan.entries.empty());
}

TEST_CASE("scan: escaped keys are compared and matched after unescaping") {
  BundleScan scan;
  REQUIRE(
      scan_bundle(R"({"resourc\u0065Type":"Bundle","typ\u0065":"batch"})", kMaxBundleEntries, scan)
          .empty());
  CHECK(scan.resource_type == "Bundle");
  CHECK(scan.type == "batch");
  CHECK(scan_bundle(R"({"type":"batch","t\u0079pe":"transaction"})", kMaxBundleEntries, scan) ==
        R"(duplicate key "type")");
}

TEST_CASE("scan keeps at most max_entries entries but counts and validates them all") {
  const std::string three = R"({"request":{"method":"GET","url":"A"}},1,{"request":{}})";
  BundleScan scan;
  REQUIRE(scan_bundle(with_entries(three), 2, scan).empty());
  CHECK(scan.entry_count == 3);
  REQUIRE(scan.entries.size() == 2);
  CHECK(scan.entries[0].url == "A");
  CHECK_FALSE(scan.entries[1].is_object);
  // The entries past the limit are still parsed: invalid JSON or a duplicate key there is found.
  CHECK(scan_bundle(with_entries(three + R"(,{"a":1,"a":2})"), 2, scan) == R"(duplicate key "a")");
  CHECK(scan_bundle(with_entries(three + ",{x}"), 2, scan).find("not valid JSON") == 0);
}

TEST_CASE("scan errors") {
  BundleScan scan;
  SUBCASE("invalid JSON names the byte (1-based) where the parser stopped") {
    CHECK(scan_bundle(R"({"a":tru})", kMaxBundleEntries, scan) == "not valid JSON (at byte 9)");
    CHECK(scan_bundle("", kMaxBundleEntries, scan).find("not valid JSON") == 0);
    CHECK(scan_bundle("{} {}", kMaxBundleEntries, scan).find("not valid JSON") == 0);
    CHECK(scan_bundle("{\"a\":\"\xff\"}", kMaxBundleEntries, scan).find("not valid JSON") == 0);
    CHECK(scan_bundle("{\"a\":\"\xc3\"}", kMaxBundleEntries, scan).find("not valid JSON") == 0);
    CHECK(scan_bundle(R"({"a":"\ud800"})", kMaxBundleEntries, scan).find("not valid JSON") == 0);
    CHECK(scan_bundle("{\"a\":1} x", kMaxBundleEntries, scan).find("not valid JSON") == 0);
  }
  SUBCASE("depth: 128 levels are fine, 129 are not") {
    CHECK(scan_bundle(arrays(128), kMaxBundleEntries, scan).empty());
    CHECK(scan_bundle(arrays(129), kMaxBundleEntries, scan) == "JSON nested too deeply");
    CHECK(scan_bundle("{\"a\":" + arrays(127, "{}") + "}", kMaxBundleEntries, scan) ==
          "JSON nested too deeply");
    CHECK(scan_bundle("{\"a\":" + arrays(126, "{}") + "}", kMaxBundleEntries, scan).empty());
    // Depth counts what is open, not how many containers were seen.
    std::string wide = "[";
    for (int i = 0; i < 1000; ++i) wide += arrays(100) + ",";
    wide += "1]";
    CHECK(scan_bundle(wide, kMaxBundleEntries, scan).empty());
  }
  SUBCASE("duplicate keys: the smallest repeated key is named") {
    CHECK(scan_bundle(R"({"b":1,"a":2,"b":3,"a":4})", kMaxBundleEntries, scan) ==
          R"(duplicate key "a")");
    CHECK(scan_bundle(R"({"":1,"":2})", kMaxBundleEntries, scan) == R"(duplicate key "")");
    CHECK(scan_bundle(R"({"":1,"a":{"":2}})", kMaxBundleEntries, scan).empty());
  }
}

TEST_CASE("duplicate keys anywhere in an entry refuse the Bundle") {
  SUBCASE("deep inside a resource") {
    const FhirRequest r = post(
        with_entries(create(deep_patient(R"("system":"phone","value":"1","system":"email")"))));
    check_error(r, R"(Bundle is duplicate key "system")");
    CHECK(r.interaction == Interaction::kUnknown);
  }
  SUBCASE("in entry.request, entry.resource, the entry and the Bundle") {
    check_error(
        post(with_entries(R"({"request":{"method":"GET","method":"DELETE","url":"Patient/1"}})")),
        R"(duplicate key "method")");
    check_error(
        post(with_entries(create(R"({"resourceType":"Patient","resourceType":"Observation"})"))),
        R"(duplicate key "resourceType")");
    check_error(post(with_entries(R"({"request":{"method":"GET","url":"Patient/1"},)"
                                  R"("request":{"method":"DELETE","url":"Patient/1"}})")),
                R"(duplicate key "request")");
    check_error(post(R"({"resourceType":"Bundle","type":"batch","entry":[],"entry":[]})"),
                R"(duplicate key "entry")");
  }
  SUBCASE("in an entry after entries that are fine, and after an entry that is not") {
    const std::string ok = create(deep_patient(R"("system":"phone")")) + ",";
    check_error(post(with_entries(ok + ok + R"({"request":{"method":"OPTIONS","url":"x"}},)" +
                                  create(deep_patient(R"("use":"home","use":"work")")))),
                R"(duplicate key "use")");
  }
  SUBCASE("in a big object (past the pairwise check)") {
    std::string members;
    for (int i = 0; i < 300; ++i) members += "\"k" + std::to_string(i) + "\":" + "1,";
    const std::string big = deep_patient(members + R"("k150":2)");
    check_error(post(with_entries(create(big))), R"(duplicate key "k150")");
    members.pop_back();
    const FhirRequest fine = post(with_entries(create(deep_patient(members))));
    CHECK(fine.bundle_error.empty());
    CHECK(fine.entries.size() == 1);
  }
}

TEST_CASE("the same key in different objects is fine") {
  // "system", "use", "value", "resourceType", "request", "url" and "type" repeat across siblings,
  // parents and children, and inside objects that close and reopen.
  const std::string resource =
      R"({"resourceType":"Patient","type":{"type":"a"},"extension":[{"url":"u","extension":)"
      R"([{"url":"u","valueString":"v"},{"url":"u"}]}],"contact":[{"telecom":[{"system":"phone",)"
      R"("use":"home","value":"1"},{"system":"email","use":"home","value":"2"}],"use":"x"}],)"
      R"("contained":[{"resourceType":"Organization","request":{"method":"DELETE"}}]})";
  const FhirRequest r =
      post(with_entries(create(resource) + "," + create(resource) + "," +
                        R"({"request":{"method":"GET","url":"Patient?type=x"},"type":"x"})"));
  CAPTURE(r.bundle_error);
  REQUIRE(r.bundle_error.empty());
  CHECK(r.interaction == Interaction::kTransaction);
  REQUIRE(r.entries.size() == 3);
  CHECK(r.entries[0].interaction == Interaction::kCreate);
  CHECK(r.entries[0].resource == "Patient");
  CHECK(r.entries[2].interaction == Interaction::kSearch);
}

TEST_CASE("entry.resource that is not an object") {
  for (std::string_view resource :
       {R"("Patient")", "[]", R"([{"resourceType":"Patient"}])", "null", "1", "true"}) {
    CAPTURE(resource);
    check_error(post(with_entries(create(resource))), "entry 0: resource type does not match");
    const std::string update = R"({"resource":)" + std::string(resource) +
                               R"(,"request":{"method":"PUT","url":"Patient/1"}})";
    check_error(post(with_entries(update)), "entry 0: resource type does not match");
    // Only a create or an update stores the resource: other interactions don't look at it.
    const std::string read = R"({"resource":)" + std::string(resource) +
                             R"(,"request":{"method":"GET","url":"Patient/1"}})";
    CHECK(post(with_entries(read)).bundle_error.empty());
  }
  // A resourceType that is not a string, or only nested deeper, is no resource type.
  check_error(post(with_entries(create(R"({"resourceType":["Patient"]})"))), "resource type");
  check_error(post(with_entries(create(R"({"meta":{"resourceType":"Patient"}})"))),
              "resource type");
  // An entry without a resource is left to the server.
  CHECK(
      post(with_entries(R"({"request":{"method":"POST","url":"Patient"}})")).bundle_error.empty());
}

TEST_CASE("entries of the wrong shape") {
  for (std::string_view e : {"1", "null", R"("GET Patient/1")", "[]", R"([{"request":{}}])"}) {
    CAPTURE(e);
    check_error(post(with_entries(e)), "entry 0: not an object");
  }
  for (std::string_view request : {"[]", "null", R"("GET")", "1"}) {
    CAPTURE(request);
    const std::string e = R"({"request":)" + std::string(request) + "}";
    CHECK(post(with_entries(e)).bundle_error == "entry 0: missing request");
  }
  check_error(post(with_entries(R"({"request":{"method":["GET"],"url":"Patient/1"}})")),
              "entry 0: missing request.method");
  check_error(post(with_entries(R"({"request":{"method":"GET","url":{"x":"Patient/1"}}})")),
              "entry 0: missing request.url");
  // The request of a resource inside the entry is not the entry's request.
  CHECK(post(with_entries(R"({"resource":{"request":{"method":"GET","url":"Patient/1"}}})"))
            .bundle_error == "entry 0: missing request");
}

TEST_CASE("the whole body is validated before any entry is trusted") {
  // An entry error and invalid JSON later: the body is refused as JSON, not for the entry.
  check_error(post(R"({"resourceType":"Bundle","type":"batch","entry":[{"request":1}],"x":})"),
              "Bundle is not valid JSON");
  check_error(post(R"({"resourceType":"Patient","entry":[],"a":1,"a":1})"), "duplicate key");
  check_error(post(R"({"resourceType":"Bundle","type":"batch","x":)" + arrays(200) + "}"),
              "Bundle is JSON nested too deeply");
}

TEST_CASE("huge strings and keys") {
  const std::string huge(4 * 1024 * 1024, 'x');
  SUBCASE("a huge value inside a resource") {
    const FhirRequest r =
        post(with_entries(create(R"({"resourceType":"Patient","text":{"div":")" + huge + R"("}})") +
                          "," + create(R"({"resourceType":"Observation"})", "Observation")));
    REQUIRE(r.bundle_error.empty());
    REQUIRE(r.entries.size() == 2);
    CHECK(r.entries[1].resource == "Observation");
  }
  SUBCASE("a huge key, once and twice") {
    CHECK(post(with_entries(create(R"({"resourceType":"Patient",")" + huge + R"(":1})")))
              .bundle_error.empty());
    const FhirRequest dup = post(with_entries(
        create(R"({"resourceType":"Patient",")" + huge + R"(":1,"a":2,")" + huge + R"(":3})")));
    CHECK(dup.bundle_error.size() > huge.size());
    check_error(dup, "duplicate key");
  }
  SUBCASE("a huge query in request.url") {
    const FhirRequest r =
        post(with_entries(R"({"request":{"method":"GET","url":"Patient?name=)" + huge + R"("}})"));
    REQUIRE(r.bundle_error.empty());
    REQUIRE(r.entries.size() == 1);
    CHECK(r.entries[0].interaction == Interaction::kSearch);
    CHECK(r.entries[0].path == "/fhir/Patient");
  }
  SUBCASE("a huge method and a huge resource type are refused") {
    check_error(post(with_entries(R"({"request":{"method":")" + huge + R"(","url":"Patient"}})")),
                "entry 0: request.method");
    check_error(post(with_entries(create(R"({"resourceType":")" + huge + R"("})"))),
                "entry 0: resource type");
  }
}

TEST_CASE("the entry limit counts every element, whatever its shape") {
  std::string entries = R"({"request":{"method":"GET","url":"Patient/1"}})";
  for (std::size_t i = 1; i < kMaxBundleEntries; ++i) entries += ",1";
  BundleScan scan;
  REQUIRE(scan_bundle(with_entries(entries), kMaxBundleEntries, scan).empty());
  CHECK(scan.entry_count == kMaxBundleEntries);
  check_error(post(with_entries(entries)), "entry 1: not an object");
  check_error(post(with_entries(entries + ",1")), "more than 10000 entries");
}

}  // namespace fmp::policy
