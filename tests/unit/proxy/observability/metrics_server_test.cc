#include "proxy/observability/metrics_server.h"

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <stdexcept>
#include <string>

namespace obs = fmp::proxy::observability;

namespace {

struct Response {
  int status = 0;
  std::string headers;
  std::string body;
};

// A blocking HTTP/1.0 exchange with 127.0.0.1:port: the server closes the connection after the
// reply.
Response http(std::uint16_t port, const std::string& method, const std::string& target) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  timeval tv{5, 0};  // a hung server fails the test instead of hanging it
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  const std::string req = method + " " + target + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  REQUIRE(send(fd, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size()));
  std::string raw;
  char buf[4096];
  for (;;) {
    const ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    raw.append(buf, static_cast<std::size_t>(n));
  }
  close(fd);
  Response r;
  const auto head_end = raw.find("\r\n\r\n");
  REQUIRE(head_end != std::string::npos);
  r.headers = raw.substr(0, head_end);
  r.body = raw.substr(head_end + 4);
  REQUIRE(raw.rfind("HTTP/1.", 0) == 0);
  r.status = std::stoi(raw.substr(9, 3));
  return r;
}

}  // namespace

TEST_CASE("metrics server: /metrics, /healthz, /readyz and 404 on an ephemeral port") {
  obs::Metrics metrics;
  auto rules = metrics.bind_rules({"r1"});
  metrics.count_decision(*rules, obs::DecisionLabel::kAllow, "r1");
  std::atomic<bool> ready{false};
  obs::MetricsServer server(metrics, [&ready] { return ready.load(); });
  server.start("127.0.0.1:0");
  REQUIRE(server.port() != 0);

  const Response m = http(server.port(), "GET", "/metrics");
  CHECK(m.status == 200);
  CHECK(m.headers.find("Content-Type: text/plain; version=0.0.4") != std::string::npos);
  CHECK(m.body.find(R"(fhir_mtls_proxy_requests_total{decision="allow",rule="r1"} 1)") !=
        std::string::npos);

  const Response h = http(server.port(), "GET", "/healthz");
  CHECK(h.status == 200);
  CHECK(h.body == "ok");

  CHECK(http(server.port(), "GET", "/readyz").status == 503);
  ready = true;
  const Response r = http(server.port(), "GET", "/readyz");
  CHECK(r.status == 200);
  CHECK(r.body == "ready");

  CHECK(http(server.port(), "GET", "/").status == 404);
  CHECK(http(server.port(), "GET", "/metricsx").status == 404);
  CHECK(http(server.port(), "POST", "/metrics").status == 405);

  // Counting after start shows up in the next scrape.
  metrics.count_decision(*rules, obs::DecisionLabel::kAllow, "r1");
  CHECK(http(server.port(), "GET", "/metrics?x=1")
            .body.find(R"(fhir_mtls_proxy_requests_total{decision="allow",rule="r1"} 2)") !=
        std::string::npos);

  server.stop();
  server.stop();  // idempotent
  CHECK(server.port() == 0);
}

TEST_CASE("metrics server: bind errors throw with the address, and start twice throws") {
  obs::Metrics metrics;
  obs::MetricsServer first(metrics, nullptr);
  first.start("127.0.0.1:0");
  const std::string busy = "127.0.0.1:" + std::to_string(first.port());

  obs::MetricsServer second(metrics, nullptr);
  CHECK_THROWS_WITH_AS(second.start(busy), doctest::Contains(busy.c_str()), std::runtime_error);
  CHECK_THROWS_AS(second.start("127.0.0.1"), std::runtime_error);
  CHECK_THROWS_AS(second.start("127.0.0.1:99999"), std::runtime_error);
  CHECK_THROWS_AS(second.start("127.0.0.1:http"), std::runtime_error);
  CHECK_THROWS_AS(first.start("127.0.0.1:0"), std::runtime_error);

  // A probe-less server is always ready.
  CHECK(http(first.port(), "GET", "/readyz").status == 200);
}

TEST_CASE("metrics server: IPv6 literal syntax is accepted") {
  obs::Metrics metrics;
  obs::MetricsServer server(metrics, nullptr);
  try {
    server.start("[::1]:0");
  } catch (const std::runtime_error& e) {
    MESSAGE("no IPv6 loopback here: " << e.what());
    return;
  }
  CHECK(server.port() != 0);
  server.stop();
}
