// The heads the proxy forwards: exact bytes (hop-by-hop and reserved headers removed, additions in
// their order), and the append_* forms append to a buffer without touching what it holds.
#include <doctest/doctest.h>

#include <string>

#include "proxy/http/forward_head.h"
#include "proxy/http/message_parser.h"
#include "tests/unit/proxy/http/test_buffer.h"

namespace fmp::proxy::http {
namespace {

using testing::buffer_of;

/// Parses `wire` with `p` (which owns the head's bytes) and returns the head.
const MessageHead& parse(MessageParser& p, const std::string& wire) {
  auto in = buffer_of(wire);
  p.reset();
  REQUIRE(p.read_head(in.get()) == MessageParser::Status::kDone);
  return p.head();
}

const std::string kRequest =
    "GET /fhir/Patient?name=x HTTP/1.1\r\n"
    "Host: fhir.example.org\r\n"
    "Connection: keep-alive, X-Drop , host\r\n"
    "X-Drop: gone\r\n"
    "Keep-Alive: timeout=5\r\n"
    "Proxy-Connection: keep-alive\r\n"
    "TE: trailers\r\n"
    "Trailer: X-T\r\n"
    "Accept: application/fhir+json\r\n"
    "X-Client-Subject-DN: CN=forged\r\n"
    "x_client_san_uri: forged\r\n"
    "X-Forwarded-For: 6.6.6.6\r\n"
    "Forwarded: for=6.6.6.6\r\n"
    "Prefer: return=minimal\r\n"
    "\r\n";

const std::string kIdentityBlock = "X-Client-Subject-DN: CN=client\r\n";

ForwardAdditions additions() {
  return ForwardAdditions{kIdentityBlock, "X-Policy-Rule", "read-all", "10.1.2.3", "up:8080"};
}

TEST_CASE("request head: exact bytes") {
  MessageParser p(MessageParser::Kind::kRequest, 16384, 1000);
  const ReservedHeaders reserved{IdentityHeaderNames{}};
  const MessageHead& req = parse(p, kRequest);
  CHECK(forward_request_head(req, reserved, additions(), BodyFraming{}) ==
        "GET /fhir/Patient?name=x HTTP/1.1\r\n"
        "Host: fhir.example.org\r\n"
        "Accept: application/fhir+json\r\n"
        "Prefer: return=minimal\r\n"
        "X-Client-Subject-DN: CN=client\r\n"
        "X-Policy-Rule: read-all\r\n"
        "X-Forwarded-For: 10.1.2.3\r\n"
        "X-Forwarded-Proto: https\r\n"
        "X-Forwarded-Host: fhir.example.org\r\n"
        "\r\n");
}

TEST_CASE("request head: framing, HTTP/1.0 default Host, no rule") {
  MessageParser p(MessageParser::Kind::kRequest, 16384, 1000);
  const ReservedHeaders reserved{IdentityHeaderNames{}};
  const MessageHead& post = parse(p,
                                  "POST /fhir/Patient HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n"
                                  "Expect: 100-continue\r\n\r\n");
  ForwardAdditions add = additions();
  add.rule = "";
  CHECK(forward_request_head(post, reserved, add, BodyFraming{false, 18446744073709551615ULL}) ==
        "POST /fhir/Patient HTTP/1.1\r\nHost: h\r\n" + kIdentityBlock +
            "X-Forwarded-For: 10.1.2.3\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: h\r\n"
            "Content-Length: 18446744073709551615\r\n\r\n");
  CHECK(forward_request_head(post, reserved, add, BodyFraming{true, std::nullopt}) ==
        "POST /fhir/Patient HTTP/1.1\r\nHost: h\r\n" + kIdentityBlock +
            "X-Forwarded-For: 10.1.2.3\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: h\r\n"
            "Transfer-Encoding: chunked\r\n\r\n");

  const MessageHead& old = parse(p, "GET /fhir/metadata HTTP/1.0\r\nAccept: */*\r\n\r\n");
  CHECK(forward_request_head(old, reserved, additions(), BodyFraming{}) ==
        "GET /fhir/metadata HTTP/1.1\r\nAccept: */*\r\nHost: up:8080\r\n" + kIdentityBlock +
            "X-Policy-Rule: read-all\r\nX-Forwarded-For: 10.1.2.3\r\nX-Forwarded-Proto: https\r\n"
            "\r\n");
}

TEST_CASE("a Connection header listing more names than are kept inline strips all of them") {
  std::string wire = "GET / HTTP/1.1\r\nHost: h\r\nConnection: ";
  for (int k = 0; k < 40; ++k) wire += (k ? ", x-" : "x-") + std::to_string(k);
  wire += "\r\n";
  for (int k = 0; k < 40; ++k) wire += "X-" + std::to_string(k) + ": v\r\n";
  wire += "X-40: kept\r\n\r\n";
  MessageParser p(MessageParser::Kind::kRequest, 16384, 1000);
  const std::string out = forward_request_head(
      parse(p, wire), ReservedHeaders{IdentityHeaderNames{}}, additions(), BodyFraming{});
  CHECK(out.find("X-0:") == std::string::npos);
  CHECK(out.find("X-16:") == std::string::npos);
  CHECK(out.find("X-39:") == std::string::npos);
  CHECK(out.find("X-40: kept\r\n") != std::string::npos);
}

TEST_CASE("response head: exact bytes") {
  MessageParser p(MessageParser::Kind::kResponse, 16384, 1000);
  const MessageHead& resp = parse(p,
                                  "HTTP/1.1 201 Created Here\r\n"
                                  "Content-Length: 0\r\n"
                                  "Connection: keep-alive, X-Hop\r\n"
                                  "X-Hop: 1\r\n"
                                  "Keep-Alive: timeout=5\r\n"
                                  "Upgrade: h2c\r\n"
                                  "Location: Patient/1\r\n"
                                  "\r\n");
  const std::string kept =
      "HTTP/1.1 201 Created Here\r\nContent-Length: 0\r\nLocation: Patient/1\r\n";
  CHECK(forward_response_head(resp, false) == kept + "\r\n");
  CHECK(forward_response_head(resp, true) == kept + "Connection: close\r\n\r\n");
}

TEST_CASE("append_* append to the buffer and leave its contents alone") {
  MessageParser q(MessageParser::Kind::kRequest, 16384, 1000);
  MessageParser r(MessageParser::Kind::kResponse, 16384, 1000);
  const ReservedHeaders reserved{IdentityHeaderNames{}};
  const MessageHead& req = parse(q, kRequest);
  const MessageHead& resp = parse(r, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n");
  const std::string req_head = forward_request_head(req, reserved, additions(), BodyFraming{});
  const std::string resp_head = forward_response_head(resp, true);

  std::string out = "prefix";
  append_forward_request_head(out, req, reserved, additions(), BodyFraming{});
  CHECK(out == "prefix" + req_head);
  append_forward_response_head(out, resp, true);
  CHECK(out == "prefix" + req_head + resp_head);
  append_forward_request_head(out, req, reserved, additions(), BodyFraming{});
  CHECK(out == "prefix" + req_head + resp_head + req_head);

  // A reused buffer: cleared by its owner, refilled with the same bytes.
  out.clear();
  append_forward_response_head(out, resp, true);
  CHECK(out == resp_head);
}

}  // namespace
}  // namespace fmp::proxy::http
