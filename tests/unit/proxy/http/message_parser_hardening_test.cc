// MessageParser refusals added by the hardening work: framing-header look-alikes, method overrides,
// and a declared chunk larger than the body limit (refused before its data arrives).
#include <doctest/doctest.h>
#include <event2/buffer.h>

#include <memory>
#include <string>

#include "proxy/http/message_parser.h"

namespace fmp::proxy::http {
namespace {

struct BufferDeleter {
  void operator()(evbuffer* b) const { evbuffer_free(b); }
};
using Buffer = std::unique_ptr<evbuffer, BufferDeleter>;

Buffer buffer_of(const std::string& bytes) {
  Buffer b(evbuffer_new());
  evbuffer_add(b.get(), bytes.data(), bytes.size());
  return b;
}

class Collect : public MessageParser::BodySink {
 public:
  void on_body_data(const char* data, std::size_t len) override { body.append(data, len); }
  std::string body;
};

/// Parses a request head; returns the status and leaves the parser for inspection.
MessageParser::Status head_status(MessageParser& p, const std::string& head) {
  Buffer in = buffer_of(head);
  return p.read_head(in.get());
}

const std::string kGet = "GET /fhir/Patient/1 HTTP/1.1\r\nHost: h\r\n";

TEST_CASE("Content_Length and Transfer_Encoding look-alikes are refused") {
  for (const std::string name : {"Content_Length", "content_length", "Transfer_Encoding",
                                 "TRANSFER_ENCODING", "Content-Length_"}) {
    CAPTURE(name);
    MessageParser p(MessageParser::Kind::kRequest, 16384, 1000);
    const auto st =
        head_status(p, "POST /fhir/Patient HTTP/1.1\r\nHost: h\r\n" + name + ": 5\r\n\r\n");
    if (name == "Content-Length_") {
      CHECK(st == MessageParser::Status::kDone);  // not a look-alike: an ordinary header
    } else {
      REQUIRE(st == MessageParser::Status::kError);
      CHECK(p.error() == ParseError::kMalformed);
      CHECK(p.error_message() == "header name looks like a framing header");
    }
  }
}

TEST_CASE("method-override headers are refused, in any case and spelling") {
  for (const std::string h : {"X-HTTP-Method-Override: DELETE", "x-http-method: PUT",
                              "X-Method-Override: PATCH", "X_HTTP_Method_Override: DELETE"}) {
    CAPTURE(h);
    MessageParser p(MessageParser::Kind::kRequest, 16384, 1000);
    REQUIRE(head_status(p, kGet + h + "\r\n\r\n") == MessageParser::Status::kError);
    CHECK(p.error_message() == "method override headers are not supported");
  }
  MessageParser ok(MessageParser::Kind::kRequest, 16384, 1000);
  CHECK(head_status(ok, kGet + "X-HTTP-Method-Overrides: x\r\n\r\n") ==
        MessageParser::Status::kDone);
}

TEST_CASE("responses may carry any of these names") {
  MessageParser p(MessageParser::Kind::kResponse, 16384, 1000);
  CHECK(head_status(p,
                    "HTTP/1.1 200 OK\r\nX-HTTP-Method-Override: x\r\nContent_Length: 1\r\n"
                    "Content-Length: 0\r\n\r\n") == MessageParser::Status::kDone);
}

TEST_CASE("a chunk declaring more than the body limit is refused at its size line") {
  MessageParser p(MessageParser::Kind::kRequest, 16384, 1000);
  REQUIRE(head_status(
              p, "POST /fhir/Patient HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n") ==
          MessageParser::Status::kDone);
  Collect sink;
  Buffer body = buffer_of("3e9\r\nabc");  // 1001 bytes declared, 3 sent
  CHECK(p.read_body(body.get(), &sink, nullptr) == MessageParser::Status::kError);
  CHECK(p.error() == ParseError::kBodyTooLarge);
  CHECK(sink.body.empty());
}

TEST_CASE("chunks adding up to the limit pass; one byte more is refused at the next size line") {
  MessageParser p(MessageParser::Kind::kRequest, 16384, 10);
  REQUIRE(head_status(
              p, "POST /fhir/Patient HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n") ==
          MessageParser::Status::kDone);
  Collect sink;
  Buffer body = buffer_of("6\r\nabcdef\r\n4\r\nghij\r\n0\r\n\r\n");
  CHECK(p.read_body(body.get(), &sink, nullptr) == MessageParser::Status::kDone);
  CHECK(sink.body == "abcdefghij");

  MessageParser q(MessageParser::Kind::kRequest, 16384, 10);
  REQUIRE(head_status(
              q, "POST /fhir/Patient HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n") ==
          MessageParser::Status::kDone);
  Collect sink2;
  Buffer body2 = buffer_of("6\r\nabcdef\r\n5\r\nghijk\r\n0\r\n\r\n");
  CHECK(q.read_body(body2.get(), &sink2, nullptr) == MessageParser::Status::kError);
  CHECK(q.error() == ParseError::kBodyTooLarge);
  CHECK(sink2.body == "abcdef");
}

}  // namespace
}  // namespace fmp::proxy::http
