#include "policy/glob.h"

#include <doctest/doctest.h>

#include <string>

using fmp::policy::Glob;

namespace {
bool m(const std::string& pattern, const std::string& subject) {
  return Glob(pattern).matches(subject);
}
}  // namespace

TEST_CASE("a pattern without wildcards is literal and case-sensitive") {
  CHECK(Glob("Patient").is_literal());
  CHECK(m("Patient", "Patient"));
  CHECK_FALSE(m("Patient", "patient"));
  CHECK_FALSE(m("Patient", "Patient1"));
  CHECK_FALSE(m("Patient", "Patien"));
  CHECK_FALSE(m("Patient", ""));
}

TEST_CASE("star matches any run, including slashes and the empty run") {
  CHECK_FALSE(Glob("*").is_literal());
  CHECK(m("*", ""));
  CHECK(m("*", "/fhir/Patient/1"));
  CHECK(m("/fhir/Patient/*", "/fhir/Patient/1"));
  CHECK(m("/fhir/Patient/*", "/fhir/Patient/1/_history/2"));
  CHECK(m("/fhir/Patient/*", "/fhir/Patient/"));
  CHECK_FALSE(m("/fhir/Patient/*", "/fhir/Patient"));
  CHECK(m("*.example.org", "api.example.org"));
  CHECK(m("*.example.org", "a.b.example.org"));
  CHECK_FALSE(m("*.example.org", "example.org"));
  CHECK_FALSE(m("*.example.org", "api.example.org.evil"));
  CHECK(m("*@example.org", "alice@example.org"));
  CHECK(m("*Hospital*", "Example Hospital West"));
  CHECK_FALSE(m("*Hospital*", "Example Clinic"));
  CHECK(m("**", "x"));
}

TEST_CASE("question mark matches exactly one character") {
  CHECK(m("app?", "app1"));
  CHECK_FALSE(m("app?", "app"));
  CHECK_FALSE(m("app?", "app12"));
  CHECK(m("??", "/x"));
  CHECK(m("a?c", "a/c"));
  // One UTF-8 code point, not one byte.
  CHECK(m("Z?rich", "Z\xC3\xBCrich"));
  CHECK_FALSE(m("Z??rich", "Z\xC3\xBCrich"));
}

TEST_CASE("mixed patterns backtrack correctly") {
  CHECK(m("a*b*c", "abc"));
  CHECK(m("a*b*c", "aXbYbZc"));
  CHECK_FALSE(m("a*b*c", "aXbYbZ"));
  CHECK(m("*a*a*b", "aaaaaab"));
  CHECK_FALSE(m("*a*a*b", "aaaaaa"));
  CHECK(m("https://*.example.org/app?/*", "https://x.example.org/app1/fhir"));
  CHECK_FALSE(m("https://*.example.org/app?/*", "https://x.example.org/app12/fhir"));
  CHECK(m("*?", "x"));
  CHECK_FALSE(m("*?", ""));
  CHECK(m("?*?", "ab"));
  CHECK(m("*ab", "aab"));
  CHECK(m("ab*", "ab"));
  CHECK_FALSE(m("ab*", "a"));
  CHECK(m("*a*", "a"));
  CHECK_FALSE(m("x*a*b*y", "xaby-"));
}

TEST_CASE("regex and shell metacharacters other than * and ? are literal") {
  CHECK(m("a.c", "a.c"));
  CHECK_FALSE(m("a.c", "abc"));
  CHECK(m("[ab]", "[ab]"));
  CHECK_FALSE(m("[ab]", "a"));
  CHECK(m("$everything", "$everything"));
  CHECK(m("a\\*", "a\\x"));  // backslash does not escape
}
