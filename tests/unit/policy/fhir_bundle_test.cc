// Batch/transaction Bundles posted to the FHIR base: every entry is classified, anything that can't
// be checked is a bundle_error.
#include <doctest/doctest.h>

#include <string>
#include <string_view>

#include "policy/fhir_classify.h"

namespace fmp::policy {
namespace {

constexpr std::string_view kJson = "application/fhir+json";

FhirRequest post_base(std::string_view body, std::string_view content_type = kJson,
                      std::string_view base = "/fhir", std::string_view path = "/fhir") {
  return classify("POST", path, "", base, content_type, body);
}

std::string bundle(std::string_view type, std::string_view entries) {
  return R"({"resourceType":"Bundle","type":")" + std::string(type) + R"(","entry":[)" +
         std::string(entries) + "]}";
}

std::string entry(std::string_view method, std::string_view url) {
  return R"({"request":{"method":")" + std::string(method) + R"(","url":")" + std::string(url) +
         R"("}})";
}

// The error must name the entry and contain `what`.
void check_error(const FhirRequest& r, std::string_view what) {
  CAPTURE(r.bundle_error);
  CHECK(r.bundle_error.find(what) != std::string::npos);
  CHECK(r.entries.empty());
}

}  // namespace

TEST_CASE("batch with mixed entries") {
  const std::string body = bundle(
      "batch",
      entry("GET", "Patient/1") + "," + entry("GET", "Patient?name=x") + "," +
          R"({"resource":{"resourceType":"Observation"},"request":{"method":"POST","url":"Observation"}})" +
          "," + entry("DELETE", "Observation/9") + "," + entry("GET", "metadata") + "," +
          entry("HEAD", "Patient/1/_history/2") + "," + entry("POST", "Patient/1/$everything") +
          "," + entry("GET", "Patient/%24everything") + "," + entry("GET", "patient/1"));
  const FhirRequest r = post_base(body);
  REQUIRE(r.bundle_error.empty());
  CHECK(r.interaction == Interaction::kBatch);
  CHECK(r.method == "POST");
  CHECK(r.path == "/fhir");
  CHECK(r.resource.empty());
  REQUIRE(r.entries.size() == 9);

  CHECK(r.entries[0].interaction == Interaction::kRead);
  CHECK(r.entries[0].method == "GET");
  CHECK(r.entries[0].path == "/fhir/Patient/1");
  CHECK(r.entries[0].resource == "Patient");
  CHECK(r.entries[0].id == "1");

  CHECK(r.entries[1].interaction == Interaction::kSearch);
  CHECK(r.entries[1].path == "/fhir/Patient");
  CHECK(r.entries[1].resource == "Patient");

  CHECK(r.entries[2].interaction == Interaction::kCreate);
  CHECK(r.entries[2].resource == "Observation");

  CHECK(r.entries[3].interaction == Interaction::kDelete);
  CHECK(r.entries[3].id == "9");

  CHECK(r.entries[4].interaction == Interaction::kCapabilities);

  CHECK(r.entries[5].interaction == Interaction::kVread);
  CHECK(r.entries[5].method == "HEAD");
  CHECK(r.entries[5].version == "2");

  CHECK(r.entries[6].interaction == Interaction::kOperation);
  CHECK(r.entries[6].operation == "$everything");
  CHECK(r.entries[6].id == "1");

  CHECK(r.entries[7].interaction == Interaction::kOperation);
  CHECK(r.entries[7].path == "/fhir/Patient/$everything");

  CHECK(r.entries[8].interaction == Interaction::kUnknown);  // left to the policy (denied there)
  for (const auto& e : r.entries) {
    CHECK(e.entries.empty());
    CHECK(e.bundle_error.empty());
  }
}

TEST_CASE("transaction, base variants and media types") {
  const std::string body = bundle(
      "transaction",
      R"({"fullUrl":"urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a","resource":{"resourceType":"Patient"},)"
      R"("request":{"method":"PUT","url":"Patient?identifier=x"}},)" +
          entry("PATCH", "Patient/2"));
  SUBCASE("base /fhir") {
    const FhirRequest r = post_base(body);
    REQUIRE(r.bundle_error.empty());
    CHECK(r.interaction == Interaction::kTransaction);
    REQUIRE(r.entries.size() == 2);
    CHECK(r.entries[0].interaction == Interaction::kUpdate);
    CHECK(r.entries[0].resource == "Patient");
    CHECK(r.entries[0].id.empty());
    CHECK(r.entries[1].interaction == Interaction::kPatch);
  }
  SUBCASE("trailing '/' on the request path and the base") {
    const FhirRequest r = post_base(body, kJson, "/fhir/", "/fhir/");
    REQUIRE(r.bundle_error.empty());
    REQUIRE(r.entries.size() == 2);
    CHECK(r.entries[1].path == "/fhir/Patient/2");
  }
  SUBCASE("root base") {
    for (std::string_view base : {"", "/"}) {
      const FhirRequest r = post_base(body, kJson, base, "/");
      REQUIRE(r.bundle_error.empty());
      REQUIRE(r.entries.size() == 2);
      CHECK(r.entries[1].path == "/Patient/2");
      CHECK(r.entries[1].interaction == Interaction::kPatch);
    }
  }
  SUBCASE("deeper base") {
    const FhirRequest r = post_base(body, kJson, "/r4/fhir", "/r4/fhir");
    REQUIRE(r.entries.size() == 2);
    CHECK(r.entries[1].path == "/r4/fhir/Patient/2");
  }
  SUBCASE("application/json with parameters, any case") {
    for (std::string_view ct :
         {"application/json", "Application/FHIR+JSON; charset=utf-8",
          "application/fhir+json;fhirVersion=4.0", " application/json ;x=y"}) {
      CAPTURE(ct);
      const FhirRequest r = post_base(body, ct);
      CHECK(r.bundle_error.empty());
      CHECK(r.interaction == Interaction::kTransaction);
    }
  }
}

TEST_CASE("an empty or absent entry list is fine") {
  const FhirRequest empty = post_base(bundle("batch", ""));
  CHECK(empty.bundle_error.empty());
  CHECK(empty.interaction == Interaction::kBatch);
  CHECK(empty.entries.empty());
  const FhirRequest absent = post_base(R"({"resourceType":"Bundle","type":"transaction"})");
  CHECK(absent.bundle_error.empty());
  CHECK(absent.interaction == Interaction::kTransaction);
}

TEST_CASE("Bundles that can't be inspected") {
  SUBCASE("XML and other content types") {
    for (std::string_view ct : {"application/fhir+xml", "application/xml", "text/plain", "",
                                "application/jsonx", "application/json+fhir"}) {
      CAPTURE(ct);
      const FhirRequest r = post_base(bundle("batch", ""), ct);
      check_error(r, "content type");
      CHECK(r.interaction == Interaction::kUnknown);
    }
  }
  SUBCASE("invalid JSON") {
    for (std::string_view body : {"", "{", "not json", R"({"resourceType":"Bundle",})",
                                  "{\"resourceType\":\"Bundle\"} trailing"}) {
      CAPTURE(body);
      const FhirRequest r = post_base(body);
      check_error(r, "JSON");
      CHECK(r.interaction == Interaction::kUnknown);
    }
  }
  SUBCASE("not a Bundle") {
    check_error(post_base(R"({"resourceType":"Patient","type":"batch"})"), "resourceType");
    check_error(post_base(R"({"type":"batch"})"), "resourceType");
    check_error(post_base(R"(["Bundle"])"), "object");
  }
  SUBCASE("wrong Bundle.type") {
    for (std::string_view type : {"searchset", "Batch", "history", "collection", ""}) {
      CAPTURE(type);
      const FhirRequest r = post_base(bundle(type, entry("GET", "Patient/1")));
      check_error(r, "Bundle.type");
      CHECK(r.interaction == Interaction::kUnknown);
    }
    check_error(post_base(R"({"resourceType":"Bundle","type":1})"), "Bundle.type");
  }
  SUBCASE("Bundle.entry not an array") {
    check_error(post_base(R"({"resourceType":"Bundle","type":"batch","entry":{}})"), "array");
  }
  SUBCASE("duplicate keys are refused (parsers disagree on which one wins)") {
    check_error(post_base(R"({"resourceType":"Bundle","type":"batch","type":"transaction"})"),
                "duplicate");
    check_error(
        post_base(bundle(
            "batch", R"({"request":{"method":"GET","url":"Patient/1","url":"Observation/2"}})")),
        "duplicate");
  }
  SUBCASE("nesting is bounded") {
    std::string deep(1000, '[');
    deep += std::string(1000, ']');
    check_error(post_base(R"({"resourceType":"Bundle","type":"batch","x":)" + deep + "}"), "deep");
  }
}

TEST_CASE("entries that can't be checked make the whole Bundle an error") {
  const std::string ok = entry("GET", "Patient/1") + ",";
  SUBCASE("missing request or fields") {
    check_error(post_base(bundle("batch", ok + R"({"resource":{"resourceType":"Patient"}})")),
                "entry 1: missing request");
    check_error(post_base(bundle("batch", ok + R"({"request":"GET Patient/1"})")),
                "entry 1: missing request");
    check_error(post_base(bundle("batch", ok + R"({"request":{"url":"Patient/1"}})")),
                "entry 1: missing request.method");
    check_error(post_base(bundle("batch", ok + R"({"request":{"method":"GET"}})")),
                "entry 1: missing request.url");
    check_error(post_base(bundle("batch", ok + entry("GET", ""))), "entry 1: missing request.url");
    check_error(post_base(bundle("batch", ok + "42")), "entry 1: not an object");
  }
  SUBCASE("methods") {
    check_error(post_base(bundle("batch", ok + entry("get", "Patient/1"))),
                "entry 1: request.method");
    check_error(post_base(bundle("batch", ok + entry("OPTIONS", "Patient/1"))),
                "entry 1: request.method");
  }
  SUBCASE("path rules apply to entry urls") {
    check_error(post_base(bundle("batch", ok + entry("GET", "Patient/1/../../Observation/2"))),
                "entry 1: request.url: dot segment");
    check_error(post_base(bundle("batch", ok + entry("GET", "../admin"))),
                "entry 1: request.url: dot");
    check_error(post_base(bundle("batch", ok + entry("GET", "Patient/%2e%2e/x"))),
                "entry 1: request.url: dot");
    check_error(post_base(bundle("batch", ok + entry("GET", "Patient%2F1"))),
                "entry 1: request.url: encoded");
    check_error(post_base(bundle("batch", ok + entry("GET", "Patient//1"))),
                "entry 1: request.url: empty");
    check_error(post_base(bundle("batch", ok + entry("GET", "Patient/1\\u0000"))),
                "entry 1: request.url: NUL");
    check_error(post_base(bundle("batch", ok + entry("GET", "Patient/1#x"))),
                "entry 1: request.url: invalid char");
    check_error(post_base(bundle("batch", ok + entry("GET", "Patient/%zz"))),
                "entry 1: request.url: bad percent");
  }
  SUBCASE("absolute and server-relative urls") {
    check_error(post_base(bundle("batch", ok + entry("GET", "http://example.org/fhir/Patient/1"))),
                "entry 1: absolute");
    check_error(post_base(bundle("batch", ok + entry("GET", "https://other.example/Patient/1"))),
                "entry 1: absolute");
    check_error(post_base(bundle("batch", ok + entry("GET", "urn:uuid:1234"))),
                "entry 1: absolute");
    check_error(post_base(bundle("batch", ok + entry("GET", "/Patient/1"))),
                "entry 1: request.url must");
    check_error(post_base(bundle("batch", ok + entry("GET", "/fhir/Patient/1"))),
                "entry 1: request.url must");
  }
  SUBCASE("a nested batch/transaction (POST to the base) is refused") {
    for (std::string_view url : {"?x=1", "./", "?"}) {
      CAPTURE(url);
      const FhirRequest r = post_base(bundle("transaction", ok + entry("POST", url)));
      CHECK_FALSE(r.bundle_error.empty());
      CHECK(r.bundle_error.find("entry 1") != std::string::npos);
    }
    check_error(post_base(bundle("transaction", ok + entry("POST", "?x=1"))), "nested");
    // GET at the base is a system search, not a nested Bundle.
    const FhirRequest search = post_base(bundle("batch", entry("GET", "?_type=Patient")));
    REQUIRE(search.bundle_error.empty());
    CHECK(search.entries.at(0).interaction == Interaction::kSearch);
  }
  SUBCASE("the resource type must match the url for create and update") {
    check_error(
        post_base(bundle(
            "transaction",
            ok +
                R"({"resource":{"resourceType":"Observation"},"request":{"method":"POST","url":"Patient"}})")),
        "entry 1: resource type");
    check_error(
        post_base(
            bundle("transaction",
                   ok + R"({"resource":{"id":"2"},"request":{"method":"PUT","url":"Patient/2"}})")),
        "entry 1: resource type");
    // PATCH bodies are Parameters or Binary, not the target type.
    const FhirRequest patch = post_base(bundle(
        "transaction",
        R"({"resource":{"resourceType":"Parameters"},"request":{"method":"PATCH","url":"Patient/2"}})"));
    CHECK(patch.bundle_error.empty());
  }
}

TEST_CASE("entry limit") {
  std::string entries;
  entries.reserve(30 * 10001);
  for (int i = 0; i < 10000; ++i) {
    if (i > 0) entries += ',';
    entries += entry("GET", "Patient/" + std::to_string(i));
  }
  const FhirRequest at_limit = post_base(bundle("batch", entries));
  CHECK(at_limit.bundle_error.empty());
  CHECK(at_limit.entries.size() == 10000);
  CHECK(at_limit.entries.back().id == "9999");

  entries += ',' + entry("GET", "Patient/10000");
  const FhirRequest over = post_base(bundle("batch", entries));
  check_error(over, "10000");
}

}  // namespace fmp::policy
