// proxy.yaml's audit.on_failure: deny (the default) or continue, and the error for anything else.
#include <doctest/doctest.h>

#include <string>

#include "tests/unit/proxy/config/minimal_config.h"

#include "policy/config_error.h"
#include "proxy/config/proxy_config.h"

namespace fmp::proxy {
namespace {

const std::string& kMinimal = testing::kMinimalConfig;

AuditFailureMode mode_of(const std::string& text) {
  return load_proxy_config_text(text, "p.yaml").audit.on_failure;
}

std::string first_error(const std::string& text) {
  try {
    load_proxy_config_text(text, "p.yaml");
  } catch (const policy::ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST_CASE("audit.on_failure defaults to deny (fail closed)") {
  CHECK(mode_of(kMinimal) == AuditFailureMode::kDeny);
  CHECK(mode_of(kMinimal + "audit:\n  path: a.log\n") == AuditFailureMode::kDeny);
}

TEST_CASE("audit.on_failure accepts deny and continue") {
  CHECK(mode_of(kMinimal + "audit:\n  on_failure: deny\n") == AuditFailureMode::kDeny);
  CHECK(mode_of(kMinimal + "audit:\n  path: a.log\n  on_failure: continue\n") ==
        AuditFailureMode::kContinue);
}

TEST_CASE("audit.on_failure rejects anything else with FILE:LINE:COL") {
  const std::string e = first_error(kMinimal + "audit:\n  on_failure: ignore\n");
  CHECK(e.find("p.yaml:12:15") != std::string::npos);
  CHECK(e.find("audit.on_failure: expected deny or continue") != std::string::npos);
  CHECK(e.find("\"ignore\"") != std::string::npos);
  CHECK(
      first_error(kMinimal + "audit:\n  on_failure: [deny]\n").find("expected deny or continue") !=
      std::string::npos);
  CHECK(first_error(kMinimal + "audit:\n  on_failure: Deny\n") != "");
}

}  // namespace
}  // namespace fmp::proxy
