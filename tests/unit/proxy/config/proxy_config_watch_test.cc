// proxy.yaml `watch`: reload on file changes; default true, core-schema booleans only.
#include <doctest/doctest.h>

#include <string>

#include "proxy/config/proxy_config.h"
#include "tests/unit/proxy/config/minimal_config.h"

namespace fmp::proxy {
namespace {

// Line 11 is `watch:` when a value is appended.
const std::string& kBase = testing::kMinimalConfig;

TEST_CASE("watch defaults to true") {
  CHECK(load_proxy_config_text(kBase, "p.yaml").watch);
}

TEST_CASE("watch: true and false are read") {
  CHECK(load_proxy_config_text(kBase + "watch: true\n", "p.yaml").watch);
  CHECK_FALSE(load_proxy_config_text(kBase + "watch: false\n", "p.yaml").watch);
}

TEST_CASE("watch rejects anything but a boolean, at its position") {
  for (const char* bad : {"\"true\"", "yes", "1", "[true]", ""}) {
    CAPTURE(bad);
    try {
      load_proxy_config_text(kBase + "watch: " + bad + "\n", "p.yaml");
      FAIL("accepted");
    } catch (const policy::ConfigError& e) {
      REQUIRE(e.diagnostics().size() == 1);
      const auto& d = e.diagnostics()[0];
      CHECK(d.file == "p.yaml");
      CHECK(d.line == 11);
      CHECK(d.message.find("watch: expected true or false") != std::string::npos);
    }
  }
}

}  // namespace
}  // namespace fmp::proxy
