// The head path of a kept-alive connection allocates nothing per message once its buffers have
// grown: MessageParser::reset()/read_head() and append_forward_*_head() into a reused string.
// Counted with AllocationCount (tests/unit/proxy/allocation_count.h).
#include "tests/unit/proxy/allocation_count.h"

#ifndef FMP_SANITIZED_NEW
#include <doctest/doctest.h>
#include <event2/buffer.h>

#include <cstddef>
#include <string>

#include "proxy/http/forward_head.h"
#include "proxy/http/head_storage.h"
#include "proxy/http/message_parser.h"
#include "tests/unit/proxy/http/test_buffer.h"

namespace fmp::proxy::http {
namespace {

using fmp::proxy::testing::AllocationCount;

/// Request i: 30 headers for i == 0 (the largest, which sizes the buffers), fewer and shorter
/// after it.
std::string request(int i) {
  const int headers = i == 0 ? 30 : i % 30;
  std::string wire = "GET /fhir/Patient/" + std::to_string(i) + "?_count=10 HTTP/1.1\r\n";
  wire += "Host: fhir.example.org\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n";
  for (int k = 0; k < headers; ++k)
    wire += "X-Header-" + std::to_string(k) + ": " +
            std::string(static_cast<std::size_t>(i == 0 ? 40 : (i + k) % 40), 'v') + "\r\n";
  return wire + "\r\n";
}

std::string response(int i) {
  return "HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\nContent-Length: 0\r\n"
         "ETag: W/\"" +
         std::to_string(i) + "\"\r\n" + (i == 0 ? "X-Pad: " + std::string(200, 'p') + "\r\n" : "") +
         "\r\n";
}

/// 100 requests and their responses on the wire, and what the forwarded heads add.
struct Wire {
  const ReservedHeaders reserved{IdentityHeaderNames{}};
  const std::string block = "X-Client-Subject-DN: CN=client\r\n";
  const ForwardAdditions add{block, "X-Policy-Rule", "rule-1", "10.0.0.1", "up:8080"};
  testing::Buffer requests{evbuffer_new()};
  testing::Buffer responses{evbuffer_new()};
  Wire() {
    for (int i = 0; i < 100; ++i) {
      const std::string q = request(i);
      const std::string r = response(i);
      evbuffer_add(requests.get(), q.data(), q.size());
      evbuffer_add(responses.get(), r.data(), r.size());
    }
  }
};

TEST_CASE("no allocation per message on a kept-alive connection's head path") {
  MessageParser req(MessageParser::Kind::kRequest, 16384, 1000);
  MessageParser resp(MessageParser::Kind::kResponse, 16384, 1000);
  const Wire wire;
  const ReservedHeaders& reserved = wire.reserved;
  const ForwardAdditions& add = wire.add;
  evbuffer* req_in = wire.requests.get();
  evbuffer* resp_in = wire.responses.get();
  std::string up_head;
  std::string down_head;
  // No doctest assertion inside the counted scope (a failing one allocates its message).
  const auto one_exchange = [&] {
    req.reset();
    if (req.read_head(req_in) != MessageParser::Status::kDone) return false;
    up_head.clear();
    append_forward_request_head(up_head, req.head(), reserved, add, BodyFraming{});
    resp.reset();
    if (resp.read_head(resp_in) != MessageParser::Status::kDone) return false;
    down_head.clear();
    append_forward_response_head(down_head, resp.head(), false);
    return true;
  };
  REQUIRE(one_exchange());  // the largest message grows every buffer once
  std::size_t allocated = 0;
  int parsed = 0;
  {
    AllocationCount count;
    for (int i = 1; i < 100 && one_exchange(); ++i) ++parsed;
    allocated = count.stop();
  }
  CHECK(parsed == 99);
  CHECK(allocated == 0);
  CHECK(up_head.find("GET /fhir/Patient/99?_count=10 HTTP/1.1\r\n") == 0);
  CHECK(up_head.find("X-Hop") == std::string::npos);
  CHECK(down_head.find("ETag: W/\"99\"\r\n") != std::string::npos);
}

TEST_CASE("no allocation per message either when idle connections give their heads back") {
  // As the proxy runs: two connections of one worker take turns, and each gives its head storage
  // back to the worker's HeadStorage after every exchange (so it holds none while idle).
  HeadStorage storage;
  MessageParser req_a(MessageParser::Kind::kRequest, 16384, 1000, &storage);
  MessageParser req_b(MessageParser::Kind::kRequest, 16384, 1000, &storage);
  MessageParser resp(MessageParser::Kind::kResponse, 16384, 1000, &storage);
  const Wire wire;
  const ReservedHeaders& reserved = wire.reserved;
  const ForwardAdditions& add = wire.add;
  evbuffer* req_in = wire.requests.get();
  evbuffer* resp_in = wire.responses.get();
  std::string kept;  // the last forwarded head, copied out before its buffer goes back
  bool idle_holds_nothing = true;
  const auto one_exchange = [&](int i) {
    MessageParser& req = i % 2 == 0 ? req_a : req_b;
    req.reset();
    if (req.read_head(req_in) != MessageParser::Status::kDone) return false;
    std::string up_head = storage.take_bytes();
    append_forward_request_head(up_head, req.head(), reserved, add, BodyFraming{});
    resp.reset();
    if (resp.read_head(resp_in) != MessageParser::Status::kDone) return false;
    std::string down_head = storage.take_bytes();
    append_forward_response_head(down_head, resp.head(), false);
    if (i == 99) kept.assign(up_head);
    storage.give(std::move(down_head));
    storage.give(std::move(up_head));
    req.release();
    resp.release();
    idle_holds_nothing = idle_holds_nothing && req.held_bytes() == 0 && resp.held_bytes() == 0;
    return true;
  };
  // Warm-up: the buffers take turns in different roles (a request head's buffer next serves a
  // response head), so each grows to the largest head it meets within a cycle of messages.
  for (int i = 0; i < 40; ++i) REQUIRE(one_exchange(i));
  kept.reserve(4096);
  std::size_t allocated = 0;
  int parsed = 0;
  {
    AllocationCount count;
    for (int i = 40; i < 100 && one_exchange(i); ++i) ++parsed;
    allocated = count.stop();
  }
  CHECK(parsed == 60);
  CHECK(idle_holds_nothing);
  CHECK(allocated == 0);
  CHECK(kept.find("GET /fhir/Patient/99?_count=10 HTTP/1.1\r\n") == 0);
}

}  // namespace
}  // namespace fmp::proxy::http

#endif  // FMP_SANITIZED_NEW
