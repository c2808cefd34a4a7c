// A MessageParser kept for a whole keep-alive connection: message after message (pipelined or
// not, of every size) it returns the right head, and its views are not left pointing at bytes that
// the next message has overwritten.
#include <doctest/doctest.h>
#include <event2/buffer.h>

#include <cstddef>
#include <string>
#include <vector>

#include "proxy/http/forward_head.h"
#include "proxy/http/message_parser.h"
#include "tests/unit/proxy/http/test_buffer.h"

namespace fmp::proxy::http {
namespace {

using testing::Buffer;
using testing::buffer_of;

class Collect : public MessageParser::BodySink {
 public:
  void on_body_data(const char* data, std::size_t len) override { body.append(data, len); }
  std::string body;
};

/// What message `i` of the sequence is expected to parse into, and its bytes on the wire.
struct Expected {
  std::string method;
  std::string target;
  std::vector<std::pair<std::string, std::string>> headers;  ///< value as trimmed
  std::string body;
  std::string wire;
};

/// Message i: a rotating method, a target and header count and sizes that vary with i (0 to 40
/// extra headers, values up to ~600 bytes, padded with whitespace that must be trimmed), a body for
/// the methods that have one, and every 97th message one 9,000-byte header (more than the parser
/// keeps across reset()).
Expected message(int i) {
  static constexpr const char* kMethods[] = {"GET", "POST", "PUT", "DELETE", "HEAD", "PATCH"};
  Expected e;
  e.method = kMethods[i % 6];
  e.target = "/fhir/Patient/" + std::to_string(i) + "?q=" +
             std::string(static_cast<std::size_t>(i * 37 % 300), static_cast<char>('a' + i % 26));
  e.headers.emplace_back("Host", "fhir.example.org");
  const int extra = i * 7 % 41;
  for (int k = 0; k < extra; ++k) {
    std::string name =
        "X-H" + std::to_string(k) + std::string(static_cast<std::size_t>(k % 5), 'n');
    std::string value(static_cast<std::size_t>((i * 13 + k * 31) % 600 / 8),
                      static_cast<char>('A' + (i + k) % 26));
    e.headers.emplace_back(std::move(name), std::move(value));
  }
  if (i % 97 == 0) e.headers.emplace_back("X-Big", std::string(9000, 'b'));
  if (e.method == "POST" || e.method == "PUT" || e.method == "PATCH") {
    e.body = std::string(static_cast<std::size_t>(i % 50), static_cast<char>('0' + i % 10));
    e.headers.emplace_back("Content-Length", std::to_string(e.body.size()));
  }
  e.wire = e.method + " " + e.target + " HTTP/1.1\r\n";
  for (std::size_t k = 0; k < e.headers.size(); ++k) {
    const auto& [name, value] = e.headers[k];
    // Whitespace around the value (http_parser takes none after a Content-Length).
    const char* pad =
        name == "Content-Length" ? "" : (k % 3 == 0 ? " " : (k % 3 == 1 ? "  \t" : ""));
    e.wire += name + ":" + pad + value + pad + "\r\n";
  }
  e.wire += "\r\n" + e.body;
  return e;
}

void check_head(const MessageHead& head, const Expected& e) {
  CHECK(head.method == e.method);
  CHECK(head.target == e.target);
  REQUIRE(head.headers.size() == e.headers.size());
  for (std::size_t k = 0; k < e.headers.size(); ++k) {
    CAPTURE(k);
    CHECK(head.headers[k].name == e.headers[k].first);
    CHECK(head.headers[k].value == e.headers[k].second);
  }
  CHECK(head.head_bytes == e.wire.size() - e.body.size());
  CHECK(head.header("host") == "fhir.example.org");
}

TEST_CASE("one parser reused for 1,000 kept-alive requests returns each head exactly") {
  MessageParser p(MessageParser::Kind::kRequest, 16384, 1000);
  Buffer in(evbuffer_new());
  int queued = 0;  // messages added to `in` so far
  const auto queue_next = [&] {
    const std::string wire = message(queued++).wire;
    evbuffer_add(in.get(), wire.data(), wire.size());
  };
  for (int i = 0; i < 1000; ++i) {
    CAPTURE(i);
    const Expected e = message(i);
    if (queued == i) queue_next();
    if (i % 5 == 4 && queued == i + 1) queue_next();  // two messages in one read
    p.reset();
    const auto st = p.read_head(in.get());
    CAPTURE(p.error_message());
    REQUIRE(st == MessageParser::Status::kDone);
    // On even turns the next message lands in the input buffer while this head is in use: a view
    // into the input (rather than the parser's own copy) would now see other bytes.
    if (i % 2 == 0 && queued == i + 1) queue_next();
    check_head(p.head(), e);
    if (!e.body.empty()) {
      Collect sink;
      REQUIRE(p.read_body(in.get(), &sink, nullptr) == MessageParser::Status::kDone);
      CHECK(sink.body == e.body);
    } else {
      CHECK(p.message_complete());
    }
    check_head(p.head(), e);  // still valid after the body
  }
}

TEST_CASE("a reused response parser: interim responses, HEAD answers, varying reasons") {
  MessageParser p(MessageParser::Kind::kResponse, 16384, 1000);
  for (int i = 0; i < 300; ++i) {
    CAPTURE(i);
    const std::string reason = "Reason " + std::string(static_cast<std::size_t>(i % 40), 'r');
    const std::string body(static_cast<std::size_t>(i % 20), 'x');
    const bool head_request = i % 4 == 0;
    std::string wire = i % 3 == 0 ? "HTTP/1.1 100 Continue\r\n\r\n" : "";
    wire += "HTTP/1.1 " + std::to_string(200 + i % 7) + " " + reason + "\r\nServer: s" +
            std::to_string(i) + "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n";
    if (!head_request) wire += body;
    Buffer in = buffer_of(wire);
    p.reset(head_request);
    REQUIRE(p.read_head(in.get()) == MessageParser::Status::kDone);
    if (i % 3 == 0) {
      CHECK(p.head().status == 100);
      CHECK(p.head().reason == "Continue");
      p.reset(head_request);
      REQUIRE(p.read_head(in.get()) == MessageParser::Status::kDone);
    }
    CHECK(p.head().status == 200 + i % 7);
    CHECK(p.head().reason == reason);
    CHECK(p.head().header("server") == "s" + std::to_string(i));
    Buffer out(evbuffer_new());
    if (!p.message_complete())
      REQUIRE(p.read_body(in.get(), nullptr, out.get()) == MessageParser::Status::kDone);
    CHECK(testing::contents(out.get()) == (head_request ? "" : body));
    CHECK(p.head().reason == reason);
  }
}

TEST_CASE("a head with 100 headers keeps all of them, in order") {
  std::string wire = "GET /fhir/Observation HTTP/1.1\r\nHost: h\r\n";
  for (int k = 0; k < 100; ++k)
    wire += "X-N" + std::to_string(k) + ": value-" + std::to_string(k) + "\r\n";
  wire += "X-N57: second\r\n\r\n";
  MessageParser p(MessageParser::Kind::kRequest, 16384, 1000);
  for (int round = 0; round < 3; ++round) {  // and again on the same parser
    CAPTURE(round);
    Buffer in = buffer_of(wire);
    p.reset();
    REQUIRE(p.read_head(in.get()) == MessageParser::Status::kDone);
    const MessageHead& head = p.head();
    REQUIRE(head.headers.size() == 102);
    for (int k = 0; k < 100; ++k) {
      CHECK(head.headers[static_cast<std::size_t>(k + 1)].name == "X-N" + std::to_string(k));
      CHECK(head.headers[static_cast<std::size_t>(k + 1)].value == "value-" + std::to_string(k));
    }
    CHECK(head.header("x-n57") == "value-57");  // the first of two
    CHECK(head.headers.back().value == "second");
    const std::string fwd =
        forward_request_head(head, ReservedHeaders(IdentityHeaderNames{}),
                             ForwardAdditions{"", "X-Policy-Rule", "", "ip"}, BodyFraming{});
    CHECK(fwd.find("X-N0: value-0\r\nX-N1: value-1\r\n") != std::string::npos);
    CHECK(fwd.find("X-N99: value-99\r\nX-N57: second\r\n") != std::string::npos);
  }
}

TEST_CASE("a refused head after good ones does not disturb the next message") {
  MessageParser p(MessageParser::Kind::kRequest, 16384, 1000);
  Buffer good =
      buffer_of("GET /a HTTP/1.1\r\nHost: h\r\nX-Long: " + std::string(3000, 'l') + "\r\n\r\n");
  REQUIRE(p.read_head(good.get()) == MessageParser::Status::kDone);
  p.reset();
  Buffer bad = buffer_of("GET /b HTTP/1.1\r\nHost: h\r\nBad Name: x\r\n\r\n");
  REQUIRE(p.read_head(bad.get()) == MessageParser::Status::kError);
  CHECK(p.error_message() == "whitespace before colon in header");
  p.reset();
  CHECK(p.error() == ParseError::kNone);
  Buffer next = buffer_of("PUT /c HTTP/1.1\r\nHost: h2\r\n\r\n");
  REQUIRE(p.read_head(next.get()) == MessageParser::Status::kDone);
  CHECK(p.head().method == "PUT");
  CHECK(p.head().target == "/c");
  REQUIRE(p.head().headers.size() == 1);
  CHECK(p.head().header("host") == "h2");
}

}  // namespace
}  // namespace fmp::proxy::http
