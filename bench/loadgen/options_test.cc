#include "bench/loadgen/options.h"

#include <doctest/doctest.h>

#include <stdexcept>
#include <string>
#include <vector>

using fmp::bench::ConnectionMode;
using fmp::bench::Options;
using fmp::bench::parse_options;

namespace {

Options parse(std::vector<std::string> args) {
  args.insert(args.begin(), "fmp-loadgen");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  Options o;
  parse_options(static_cast<int>(argv.size()), argv.data(), o);
  return o;
}

}  // namespace

TEST_CASE("an https URL with port, path and mTLS files") {
  const Options o = parse({"--url", "https://127.0.0.1:8443/fhir/Patient/1?x=y", "--cert", "c.pem",
                           "--key", "k.pem", "--mode", "resume", "--connections", "50",
                           "--proxy-pids", "12,34", "--json"});
  CHECK(o.tls);
  CHECK(o.host == "127.0.0.1");
  CHECK(o.port == 8443);
  CHECK(o.path == "/fhir/Patient/1?x=y");
  CHECK(o.host_header == "127.0.0.1:8443");
  CHECK(o.server_name == "127.0.0.1");
  CHECK(o.mode == ConnectionMode::kResumed);
  CHECK(o.connections == 50);
  CHECK(o.proxy_pids == std::vector<int>{12, 34});
  CHECK(o.json);
}

TEST_CASE("plain http defaults") {
  const Options o = parse({"--url", "http://[::1]:8080"});
  CHECK_FALSE(o.tls);
  CHECK(o.host == "::1");
  CHECK(o.port == 8080);
  CHECK(o.path == "/");
  CHECK(o.mode == ConnectionMode::kKeepAlive);
}

TEST_CASE("bad options are refused") {
  CHECK_THROWS_AS(parse({}), std::invalid_argument);
  CHECK_THROWS_AS(parse({"--url", "ftp://x"}), std::invalid_argument);
  CHECK_THROWS_AS(parse({"--url", "http://127.0.0.1:1/", "--mode", "resume"}),
                  std::invalid_argument);
  CHECK_THROWS_AS(parse({"--url", "https://127.0.0.1:1/", "--cert", "c.pem"}),
                  std::invalid_argument);
  CHECK_THROWS_AS(parse({"--url", "https://127.0.0.1:1/", "--connections", "0"}),
                  std::invalid_argument);
  CHECK_THROWS_AS(parse({"--url", "https://127.0.0.1:1/", "--duration", "abc"}),
                  std::invalid_argument);
  CHECK_THROWS_AS(parse({"--url", "https://127.0.0.1:99999/"}), std::invalid_argument);
  CHECK_THROWS_AS(parse({"--url", "https://127.0.0.1:1/", "--bogus"}), std::invalid_argument);
}
