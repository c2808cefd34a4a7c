// Table tests for request-target splitting and FHIR classification (contract: "FHIR classification"
// and "Paths").
#include "policy/fhir_classify.h"

#include <doctest/doctest.h>

#include <string>
#include <string_view>

namespace fmp::policy {
namespace {

using I = Interaction;
using E = PathError;

struct Case {
  std::string_view method;
  std::string_view target;
  std::string_view base;
  E error;  // kOk: the request is classified and compared with the fields below
  I interaction = I::kNone;
  std::string_view resource = {};
  std::string_view id = {};
  std::string_view version = {};
  std::string_view operation = {};
};

constexpr std::string_view kFhir = "/fhir";

// clang-format off
const Case kCases[] = {
    // --- instance level
    {"GET", "/fhir/Patient/123", kFhir, E::kOk, I::kRead, "Patient", "123"},
    {"HEAD", "/fhir/Patient/123", kFhir, E::kOk, I::kRead, "Patient", "123"},
    {"PUT", "/fhir/Patient/123", kFhir, E::kOk, I::kUpdate, "Patient", "123"},
    {"PATCH", "/fhir/Patient/123", kFhir, E::kOk, I::kPatch, "Patient", "123"},
    {"DELETE", "/fhir/Patient/123", kFhir, E::kOk, I::kDelete, "Patient", "123"},
    {"POST", "/fhir/Patient/123", kFhir, E::kOk, I::kUnknown},
    {"OPTIONS", "/fhir/Patient/123", kFhir, E::kOk, I::kUnknown},
    {"TRACE", "/fhir/Patient/123", kFhir, E::kOk, I::kUnknown},
    {"get", "/fhir/Patient/123", kFhir, E::kOk, I::kUnknown},  // methods are case-sensitive
    {"GET", "/fhir/Patient/a.b-C9", kFhir, E::kOk, I::kRead, "Patient", "a.b-C9"},
    {"GET", "/fhir/Patient/1_2", kFhir, E::kOk, I::kUnknown},  // '_' is not in a FHIR id
    {"GET", "/fhir/Patient/1234567890123456789012345678901234567890123456789012345678901234",
     kFhir, E::kOk, I::kRead, "Patient",
     "1234567890123456789012345678901234567890123456789012345678901234"},
    {"GET", "/fhir/Patient/12345678901234567890123456789012345678901234567890123456789012345",
     kFhir, E::kOk, I::kUnknown},  // 65 characters
    {"GET", "/fhir/Patient/123?_format=json", kFhir, E::kOk, I::kRead, "Patient", "123"},
    {"GET", "/fhir/Patient/", kFhir, E::kOk, I::kSearch, "Patient"},  // one trailing '/' ignored
    {"GET", "/fhir/Patient/123/", kFhir, E::kOk, I::kRead, "Patient", "123"},
    // --- history / vread
    {"GET", "/fhir/Patient/123/_history", kFhir, E::kOk, I::kHistory, "Patient", "123"},
    {"GET", "/fhir/Patient/123/_history/7", kFhir, E::kOk, I::kVread, "Patient", "123", "7"},
    {"HEAD", "/fhir/Patient/123/_history/7", kFhir, E::kOk, I::kVread, "Patient", "123", "7"},
    {"DELETE", "/fhir/Patient/123/_history/7", kFhir, E::kOk, I::kUnknown},
    {"POST", "/fhir/Patient/123/_history", kFhir, E::kOk, I::kUnknown},
    {"GET", "/fhir/Patient/123/_history/7/x", kFhir, E::kOk, I::kUnknown},
    {"GET", "/fhir/Patient/123/_history/a$b", kFhir, E::kOk, I::kUnknown},
    {"GET", "/fhir/Patient/_history", kFhir, E::kOk, I::kHistory, "Patient"},
    {"GET", "/fhir/_history", kFhir, E::kOk, I::kHistory},
    {"POST", "/fhir/_history", kFhir, E::kOk, I::kUnknown},
    // --- type level
    {"GET", "/fhir/Patient", kFhir, E::kOk, I::kSearch, "Patient"},
    {"GET", "/fhir/Patient?name=smith&_count=10", kFhir, E::kOk, I::kSearch, "Patient"},
    {"POST", "/fhir/Patient", kFhir, E::kOk, I::kCreate, "Patient"},
    {"PUT", "/fhir/Patient?identifier=x", kFhir, E::kOk, I::kUpdate, "Patient"},
    {"PATCH", "/fhir/Patient?identifier=x", kFhir, E::kOk, I::kPatch, "Patient"},
    {"DELETE", "/fhir/Patient?identifier=x", kFhir, E::kOk, I::kDelete, "Patient"},
    {"OPTIONS", "/fhir/Patient", kFhir, E::kOk, I::kUnknown},
    {"POST", "/fhir/Patient/_search", kFhir, E::kOk, I::kSearch, "Patient"},
    {"GET", "/fhir/Patient/_search?name=x", kFhir, E::kOk, I::kSearch, "Patient"},
    {"PUT", "/fhir/Patient/_search", kFhir, E::kOk, I::kUnknown},
    {"GET", "/fhir/patient/1", kFhir, E::kOk, I::kUnknown},  // not a resource type
    {"GET", "/fhir/PATIENT1/1", kFhir, E::kOk, I::kUnknown},
    {"GET", "/fhir/Patient;x/1", kFhir, E::kOk, I::kUnknown},  // ';' is literal, not a parameter
    {"GET", "/fhir/Patient/1;x", kFhir, E::kOk, I::kUnknown},
    // --- operations
    {"GET", "/fhir/Patient/1/$everything", kFhir, E::kOk, I::kOperation, "Patient", "1", {},
     "$everything"},
    {"POST", "/fhir/Patient/1/$everything", kFhir, E::kOk, I::kOperation, "Patient", "1", {},
     "$everything"},
    {"DELETE", "/fhir/Patient/1/$everything", kFhir, E::kOk, I::kUnknown},
    {"GET", "/fhir/Patient/%24everything", kFhir, E::kOk, I::kOperation, "Patient", {}, {},
     "$everything"},
    {"POST", "/fhir/Patient/$validate", kFhir, E::kOk, I::kOperation, "Patient", {}, {},
     "$validate"},
    {"POST", "/fhir/$export", kFhir, E::kOk, I::kOperation, {}, {}, {}, "$export"},
    {"GET", "/fhir/$export?_type=Patient", kFhir, E::kOk, I::kOperation, {}, {}, {}, "$export"},
    {"PUT", "/fhir/$export", kFhir, E::kOk, I::kUnknown},
    {"GET", "/fhir/$", kFhir, E::kOk, I::kUnknown},
    {"GET", "/fhir/$a.b", kFhir, E::kOk, I::kUnknown},
    {"POST", "/fhir/ValueSet/$validate-code", kFhir, E::kOk, I::kOperation, "ValueSet", {}, {},
     "$validate-code"},
    // --- system level
    {"GET", "/fhir/metadata", kFhir, E::kOk, I::kCapabilities},
    {"HEAD", "/fhir/metadata", kFhir, E::kOk, I::kCapabilities},
    {"POST", "/fhir/metadata", kFhir, E::kOk, I::kUnknown},
    {"GET", "/fhir/Metadata", kFhir, E::kOk, I::kSearch, "Metadata"},  // syntactically a type
    {"GET", "/fhir", kFhir, E::kOk, I::kSearch},
    {"GET", "/fhir?_type=Patient", kFhir, E::kOk, I::kSearch},
    {"GET", "/fhir/", kFhir, E::kOk, I::kSearch},
    {"DELETE", "/fhir", kFhir, E::kOk, I::kUnknown},
    {"POST", "/fhir/_search", kFhir, E::kOk, I::kSearch},
    {"GET", "/fhir/_foo", kFhir, E::kOk, I::kUnknown},
    // --- compartments: the resource is the type searched for
    {"GET", "/fhir/Patient/123/Observation", kFhir, E::kOk, I::kSearch, "Observation"},
    {"GET", "/fhir/Patient/123/Observation?code=x", kFhir, E::kOk, I::kSearch, "Observation"},
    {"POST", "/fhir/Patient/123/Observation/_search", kFhir, E::kOk, I::kSearch, "Observation"},
    {"POST", "/fhir/Patient/123/Observation", kFhir, E::kOk, I::kUnknown},
    {"GET", "/fhir/Patient/123/*", kFhir, E::kOk, I::kUnknown},
    {"GET", "/fhir/Patient/123/Observation/456", kFhir, E::kOk, I::kUnknown},
    {"GET", "/fhir/Patient/123/observation", kFhir, E::kOk, I::kUnknown},
    {"GET", "/fhir/Patient/1/2/3/4/5/6", kFhir, E::kOk, I::kUnknown},
    // --- outside the base
    {"GET", "/fhirx/Patient", kFhir, E::kOk, I::kNone},
    {"GET", "/healthz", kFhir, E::kOk, I::kNone},
    {"GET", "/", kFhir, E::kOk, I::kNone},
    {"GET", "/FHIR/Patient/1", kFhir, E::kOk, I::kNone},  // the base is case-sensitive
    {"GET", "/other/fhir/Patient/1", kFhir, E::kOk, I::kNone},
    // --- encodings that normalise to something classifiable
    {"GET", "/fhir/%50atient/1", kFhir, E::kOk, I::kRead, "Patient", "1"},
    {"GET", "/fhir/Pat%69ent/1", kFhir, E::kOk, I::kRead, "Patient", "1"},
    {"GET", "/%66hir/Patient/1", kFhir, E::kOk, I::kRead, "Patient", "1"},
    {"GET", "/fhir/Patient/%31%32", kFhir, E::kOk, I::kRead, "Patient", "12"},
    {"GET", "/fhir/Patient/1/%5fhistory/2", kFhir, E::kOk, I::kVread, "Patient", "1", "2"},
    {"GET", "/fhir/Patient/%3B1", kFhir, E::kOk, I::kUnknown},  // %3B stays encoded: not an id
    {"GET", "/fhir/Patient/%C3%A9", kFhir, E::kOk, I::kUnknown},
    {"GET", "/fhir/Patient/...", kFhir, E::kOk, I::kRead, "Patient", "..."},  // not a dot segment
    // --- refused targets
    {"GET", "/fhir/%2e%2e/admin", kFhir, E::kDotSegment},
    {"GET", "/fhir/Patient/%2E", kFhir, E::kDotSegment},
    {"GET", "/fhir/Patient/.%2e", kFhir, E::kDotSegment},
    {"GET", "/fhir/Patient/%2E%2e/x", kFhir, E::kDotSegment},
    {"GET", "/fhir/Patient/1/../../Observation/2", kFhir, E::kDotSegment},
    {"GET", "/fhir/./Patient", kFhir, E::kDotSegment},
    {"GET", "/fhir/Patient/..", kFhir, E::kDotSegment},
    {"GET", "/fhir/Patient/..?x=1", kFhir, E::kDotSegment},
    // Review finding: "..;" is ".." to Tomcat/Jetty (path parameter dropped), so it is refused too.
    {"GET", "/fhir/metadata/..;/Patient/1", kFhir, E::kDotSegment},
    {"GET", "/fhir/$export/.;x/Patient/1", kFhir, E::kDotSegment},
    {"GET", "/fhir/Patient/..;jsessionid=1/x", kFhir, E::kDotSegment},
    // ... and a system-level name followed by more segments is no system interaction.
    {"GET", "/fhir/metadata/x", kFhir, E::kOk, I::kUnknown},
    {"GET", "/fhir/_history/Patient", kFhir, E::kOk, I::kUnknown},
    {"POST", "/fhir/$export/Patient", kFhir, E::kOk, I::kUnknown},
    {"GET", "/fhir/Patient%2F1", kFhir, E::kEncodedSlash},
    {"GET", "/fhir/Patient%2f1", kFhir, E::kEncodedSlash},
    {"GET", "/fhir/Patient%5c1", kFhir, E::kEncodedSlash},
    {"GET", "/fhir/Patient%5C..%5C1", kFhir, E::kEncodedSlash},
    {"GET", "/fhir/Patient/1%00", kFhir, E::kNul},
    {"GET", std::string_view("/fhir/Patient/1\0x", 17), kFhir, E::kNul},
    {"GET", "/fhir//Patient/1", kFhir, E::kEmptySegment},
    {"GET", "//fhir/Patient/1", kFhir, E::kEmptySegment},
    {"GET", "/fhir/Patient//", kFhir, E::kEmptySegment},
    {"GET", "/fhir/Patient/%zz", kFhir, E::kBadEncoding},
    {"GET", "/fhir/Patient/%4", kFhir, E::kBadEncoding},
    {"GET", "/fhir/Patient/%", kFhir, E::kBadEncoding},
    {"GET", "/fhir/Patient/%4?g", kFhir, E::kBadEncoding},
    {"GET", "*", kFhir, E::kNotOriginForm},
    {"GET", "http://example.org/fhir/Patient/1", kFhir, E::kNotOriginForm},
    {"GET", "", kFhir, E::kNotOriginForm},
    {"GET", "?x", kFhir, E::kNotOriginForm},
    {"GET", "/fhir/Patient/1#frag", kFhir, E::kBadCharacter},
    {"GET", "/fhir/Patient/1 HTTP/1.1", kFhir, E::kBadCharacter},
    {"GET", "/fhir/Patient/1\t", kFhir, E::kBadCharacter},
    {"GET", "/fhir/Patient/1\x7f", kFhir, E::kBadCharacter},
    {"GET", "/fhir/Patient/\xc3\xa9", kFhir, E::kBadCharacter},
    {"GET", "/fhir\\Patient\\1", kFhir, E::kBadCharacter},
    {"GET", "/fhir/Patient/<1>", kFhir, E::kBadCharacter},
    // --- the query is not validated
    {"GET", "/fhir/Patient?name=a b#c%zz", kFhir, E::kOk, I::kSearch, "Patient"},
    // --- other bases
    {"GET", "/Patient/1", "/", E::kOk, I::kRead, "Patient", "1"},
    {"GET", "/Patient/1", "", E::kOk, I::kRead, "Patient", "1"},
    {"GET", "/metadata", "", E::kOk, I::kCapabilities},
    {"GET", "/", "/", E::kOk, I::kSearch},
    {"GET", "/healthz", "", E::kOk, I::kUnknown},
    {"GET", "/r4/fhir/Observation/9/_history/1", "/r4/fhir", E::kOk, I::kVread, "Observation", "9",
     "1"},
    {"GET", "/r4/fhir/metadata", "/r4/fhir/", E::kOk, I::kCapabilities},
    {"GET", "/r4/fhirx/metadata", "/r4/fhir", E::kOk, I::kNone},
    {"GET", "/fhir/metadata", "/r4/fhir", E::kOk, I::kNone},
    {"GET", "/r4/fhir", "/r4/fhir", E::kOk, I::kSearch},
};
// clang-format on

}  // namespace

TEST_CASE("split_target and classify: the table") {
  CHECK(std::size(kCases) >= 70);
  for (const Case& c : kCases) {
    CAPTURE(c.method);
    CAPTURE(c.target);
    CAPTURE(c.base);
    std::string path;
    std::string query;
    const PathError err = split_target(c.target, path, query);
    CHECK(to_string(err) == to_string(c.error));
    if (err != PathError::kOk || c.error != PathError::kOk) {
      CHECK(path.empty());
      continue;
    }
    const FhirRequest r = classify(c.method, path, query, c.base, "", "");
    CHECK(to_string(r.interaction) == to_string(c.interaction));
    CHECK(r.method == c.method);
    CHECK(r.path == path);
    CHECK(r.resource == c.resource);
    CHECK(r.id == c.id);
    CHECK(r.version == c.version);
    CHECK(r.operation == c.operation);
    CHECK(r.entries.empty());
    CHECK(r.bundle_error.empty());
  }
}

TEST_CASE("split_target: normalised path and raw query") {
  std::string path;
  std::string query;
  SUBCASE("unreserved and $ escapes are decoded, others kept with uppercase hex") {
    REQUIRE(split_target("/fhir/%50at%69ent/%7e%2D%5F%2e1/%24x/%3b%3D%20%c3%a9?a=%2F&b=..", path,
                         query) == PathError::kOk);
    CHECK(path == "/fhir/Patient/~-_.1/$x/%3B%3D%20%C3%A9");
    CHECK(query == "a=%2F&b=..");
  }
  SUBCASE("sub-delims, ':' and '@' pass unchanged") {
    REQUIRE(split_target("/a/!$&'()*+,;=:@", path, query) == PathError::kOk);
    CHECK(path == "/a/!$&'()*+,;=:@");
    CHECK(query.empty());
  }
  SUBCASE("empty query after '?'") {
    REQUIRE(split_target("/fhir/Patient?", path, query) == PathError::kOk);
    CHECK(path == "/fhir/Patient");
    CHECK(query.empty());
  }
  SUBCASE("only the first '?' splits") {
    REQUIRE(split_target("/p?a=1?b=2", path, query) == PathError::kOk);
    CHECK(path == "/p");
    CHECK(query == "a=1?b=2");
  }
  SUBCASE("outputs are cleared on error") {
    path = "stale";
    query = "stale";
    CHECK(split_target("/fhir/../x?q", path, query) == PathError::kDotSegment);
    CHECK(path.empty());
    CHECK(query.empty());
  }
}

TEST_CASE("to_string(PathError) is distinct for every error") {
  const PathError all[] = {E::kOk,           E::kDotSegment,  E::kEncodedSlash,  E::kNul,
                           E::kEmptySegment, E::kBadEncoding, E::kNotOriginForm, E::kBadCharacter};
  for (std::size_t i = 0; i < std::size(all); ++i) {
    CHECK_FALSE(to_string(all[i]).empty());
    for (std::size_t j = i + 1; j < std::size(all); ++j) {
      CHECK(to_string(all[i]) != to_string(all[j]));
    }
  }
}

TEST_CASE("needs_body: only POST at the base") {
  CHECK(needs_body("POST", "/fhir", "/fhir"));
  CHECK(needs_body("POST", "/fhir/", "/fhir"));
  CHECK(needs_body("POST", "/fhir", "/fhir/"));
  CHECK(needs_body("POST", "/", "/"));
  CHECK(needs_body("POST", "/", ""));
  CHECK(needs_body("POST", "/r4/fhir", "/r4/fhir"));
  CHECK_FALSE(needs_body("GET", "/fhir", "/fhir"));
  CHECK_FALSE(needs_body("HEAD", "/fhir", "/fhir"));
  CHECK_FALSE(needs_body("PUT", "/fhir", "/fhir"));
  CHECK_FALSE(needs_body("post", "/fhir", "/fhir"));
  CHECK_FALSE(needs_body("POST", "/fhir/Patient", "/fhir"));
  CHECK_FALSE(needs_body("POST", "/fhir/_search", "/fhir"));
  CHECK_FALSE(needs_body("POST", "/fhirx", "/fhir"));
  CHECK_FALSE(needs_body("POST", "/", "/fhir"));
  CHECK_FALSE(needs_body("POST", "/Patient", ""));
}

TEST_CASE("classify ignores the body except for POST at the base") {
  const std::string body = R"({"resourceType":"Bundle","type":"batch","entry":[]})";
  const FhirRequest r =
      classify("POST", "/fhir/Patient", "", "/fhir", "application/fhir+json", body);
  CHECK(r.interaction == I::kCreate);
  CHECK(r.entries.empty());
  CHECK(r.bundle_error.empty());
  const FhirRequest g = classify("GET", "/fhir", "", "/fhir", "application/fhir+json", "not json");
  CHECK(g.interaction == I::kSearch);
  CHECK(g.bundle_error.empty());
}

TEST_CASE("classify_into leaves nothing of the request classified before") {
  const std::string bundle =
      R"({"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET",)"
      R"("url":"Patient/1"}}]})";
  const std::string broken = R"({"resourceType":"Bundle","type":"collection"})";
  struct Input {
    std::string_view method;
    std::string_view path;
    std::string_view body;
  };
  const Input inputs[] = {
      {"POST", "/fhir", bundle}, {"GET", "/fhir/Patient/1/_history/2", ""},
      {"POST", "/fhir", broken}, {"GET", "/fhir/Patient/1/$everything", ""},
      {"GET", "/outside", ""},   {"GET", "/fhir/Patient", ""},
  };
  FhirRequest reused;
  for (const Input& in : inputs) {
    CAPTURE(in.path);
    classify_into(in.method, in.path, "", kFhir, "application/fhir+json", in.body, reused);
    const FhirRequest fresh =
        classify(in.method, in.path, "", kFhir, "application/fhir+json", in.body);
    CHECK(reused.method == fresh.method);
    CHECK(reused.path == fresh.path);
    CHECK(reused.interaction == fresh.interaction);
    CHECK(reused.resource == fresh.resource);
    CHECK(reused.id == fresh.id);
    CHECK(reused.version == fresh.version);
    CHECK(reused.operation == fresh.operation);
    CHECK(reused.entries.size() == fresh.entries.size());
    CHECK(reused.bundle_error == fresh.bundle_error);
  }
  // The inputs did differ in every field.
  classify_into("POST", "/fhir", "", kFhir, "application/fhir+json", bundle, reused);
  CHECK(reused.entries.size() == 1);
  classify_into("POST", "/fhir", "", kFhir, "application/fhir+json", broken, reused);
  CHECK_FALSE(reused.bundle_error.empty());
  classify_into("GET", "/fhir/Patient/1/_history/2", "", kFhir, "", "", reused);
  CHECK(reused.version == "2");
  CHECK(reused.bundle_error.empty());
}

}  // namespace fmp::policy
