// Regression tests for policy-loader inputs found by tests/fuzz/policy_yaml. Each one used to hang.
#include <doctest/doctest.h>

#include <string>

#include "policy/config_error.h"
#include "policy/policy_loader.h"

using namespace fmp::policy;

namespace {

std::string first_error(const std::string& text) {
  try {
    load_policy_text(text, "p.yaml");
  } catch (const ConfigError& e) {
    return e.diagnostics().empty() ? std::string("(no diagnostic)") : e.diagnostics().front().str();
  }
  return "(loaded)";
}

}  // namespace

// yaml-cpp 0.7's YAML::LoadAll loops forever, allocating, on a ',' at the top level of a
// document; the loader used it, so `check`, start-up or a reload never returned on such a file.
TEST_CASE("fuzz regression: a stray ',' at the top level of a policy file is a syntax error") {
  CHECK(first_error(" ,sh\n") == "p.yaml:1:2: YAML syntax error: unexpected ','");
  CHECK(first_error(",") == "p.yaml:1:1: YAML syntax error: unexpected ','");
  CHECK(first_error("default: deny\n---\n,x\n") == "p.yaml:3:1: YAML syntax error: unexpected ','");
  CHECK(first_error("- a\n,\n") == "p.yaml:2:1: YAML syntax error: unexpected ','");
  CHECK(first_error("{default: deny, rules: []},\n") ==
        "p.yaml:1:27: YAML syntax error: unexpected ','");
}

TEST_CASE("fuzz regression: single and multiple documents still load as before") {
  CHECK(first_error("default: deny\n") == "(loaded)");
  CHECK(first_error("---\ndefault: deny\n...\n") == "(loaded)");
  CHECK(first_error("default: deny\n---\ndefault: allow\n") ==
        "p.yaml:3:1: more than one YAML document in a policy file");
  CHECK(first_error("# nothing\n") ==
        "p.yaml:1:1: empty policy file (expected a mapping with rules)");
  CHECK(first_error("default: [\n").find("YAML syntax error") != std::string::npos);
}
