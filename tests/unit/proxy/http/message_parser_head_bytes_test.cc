// The lexical check of a complete head (MessageParser::check_head_bytes): which bytes are refused
// where, and which problem is reported when a head has several (the first one on the wire).
#include <doctest/doctest.h>

#include <string>

#include "proxy/http/message_parser.h"
#include "tests/unit/proxy/http/test_buffer.h"

namespace fmp::proxy::http {
namespace {

using testing::buffer_of;

struct Case {
  std::string head;
  const char* error;  ///< nullptr: accepted
};

void check_case(MessageParser::Kind kind, const Case& c) {
  CAPTURE(c.head);
  MessageParser p(kind, 16384, 1000);
  auto in = buffer_of(c.head);
  const auto st = p.read_head(in.get());
  if (c.error == nullptr) {
    CHECK(st == MessageParser::Status::kDone);
    CHECK(p.error_message() == "");
  } else {
    CHECK(st == MessageParser::Status::kError);
    CHECK(p.error() == ParseError::kMalformed);
    CHECK(p.error_message() == c.error);
  }
}

const std::string kStart = "GET /fhir/Patient HTTP/1.1\r\n";
const std::string kHost = "Host: h\r\n";

TEST_CASE("request heads: accepted bytes") {
  for (const Case& c : std::initializer_list<Case>{
           {kStart + kHost + "\r\n", nullptr},
           {kStart + kHost + "X-Tab: a\tb\t\r\n\r\n", nullptr},  // HTAB inside a value
           {kStart + kHost + "X-Obs: caf\xc3\xa9 \x80\xff\r\n\r\n", nullptr},  // obs-text
           {kStart + kHost + "X-Empty:\r\n\r\n", nullptr},
           {kStart + kHost + "!#$%&'*+-.^_`|~09azAZ: tchars\r\n\r\n", nullptr},
           {kStart + kHost + "X-Colon: a:b::\r\n\r\n", nullptr},
           {"GET /fhir/Patient?q=\x80\xfe HTTP/1.1\r\n" + kHost + "\r\n", nullptr},
       })
    check_case(MessageParser::Kind::kRequest, c);
}

TEST_CASE("request heads: refused bytes, one problem each") {
  for (const Case& c : std::initializer_list<Case>{
           {"GET /a\tb HTTP/1.1\r\n" + kHost + "\r\n", "control character in start line"},
           {"GET /a\x7f HTTP/1.1\r\n" + kHost + "\r\n", "control character in start line"},
           {std::string("GET /a\0 HTTP/1.1\r\n", 18) + kHost + "\r\n",
            "control character in start line"},
           {"GET /a HTTP/1.1\n" + kHost + "\r\n", "bare LF in message head"},
           {kStart + "Host: h\nX: y\r\n\r\n", "bare LF in message head"},
           {kStart + kHost + "X-A\n: y\r\n\r\n", "bare LF in message head"},
           {"GET /a HTTP/1.1\r" + kHost + "\r\n", "bare CR in message head"},
           {kStart + "Host: h\rX: y\r\n\r\n", "bare CR in message head"},
           {kStart + kHost + " folded\r\n\r\n", "obsolete line folding in header"},
           {kStart + kHost + "\tfolded: x\r\n\r\n", "obsolete line folding in header"},
           {kStart + kHost + "X-A : y\r\n\r\n", "whitespace before colon in header"},
           {kStart + kHost + "X-A\t: y\r\n\r\n", "whitespace before colon in header"},
           {kStart + kHost + "X@A: y\r\n\r\n", "invalid character in header name"},
           {kStart + kHost + "X\x80: y\r\n\r\n", "invalid character in header name"},
           {kStart + kHost + "X(A): y\r\n\r\n", "invalid character in header name"},
           {kStart + kHost + ": y\r\n\r\n", "header line without a field name and colon"},
           {kStart + kHost + "NoColon\r\n\r\n", "header line without a field name and colon"},
           {kStart + kHost + "No Colon here\r\n\r\n", "header line without a field name and colon"},
           {kStart + kHost + "X-A: a\x01" + "b\r\n\r\n", "control character in header value"},
           {kStart + kHost + "X-A: abcdefghijklmnop\x7fq\r\n\r\n",
            "control character in header value"},
           {kStart + kHost + std::string("X-A: abcdefgh\0ijklmnop\r\n\r\n", 26),
            "control character in header value"},
       })
    check_case(MessageParser::Kind::kRequest, c);
}

TEST_CASE("a head with several problems reports the first one on the wire") {
  for (const Case& c : std::initializer_list<Case>{
           // Within a line: a bare LF comes before the line's own content problems and its CR.
           {kStart + kHost + "Bad Name\n: x\r\n\r\n", "bare LF in message head"},
           {kStart + kHost + "X-A: \x01\nx\r\n\r\n", "bare LF in message head"},
           {"GET /\t HTTP/1.1\n" + kHost + "\r\n", "bare LF in message head"},
           // A bare CR ends the line's scan before its content is judged.
           {kStart + kHost + "Bad Name: x\rY\r\n\r\n", "bare CR in message head"},
           // An earlier line's problem wins over a later line's bare LF or CR.
           {kStart + kHost + "Bad Name: x\r\nY: a\nb\r\n\r\n", "whitespace before colon in header"},
           {"GET /\x01 HTTP/1.1\r\nHost: h\rx\r\n\r\n", "control character in start line"},
           {kStart + kHost + "X-A: \x02\r\nB@d: x\r\n\r\n", "control character in header value"},
           // Within a header line: folding, then the missing colon, then the name, then the value.
           {kStart + kHost + " Bad@: \x01\r\n\r\n", "obsolete line folding in header"},
           {kStart + kHost + "B@d \x01\r\n\r\n", "header line without a field name and colon"},
           {kStart + kHost + "B@d : \x01\r\n\r\n", "invalid character in header name"},
           {kStart + kHost + "Bad @: \x01\r\n\r\n", "whitespace before colon in header"},
       })
    check_case(MessageParser::Kind::kRequest, c);
}

TEST_CASE("response heads get the same check") {
  for (const Case& c : std::initializer_list<Case>{
           {"HTTP/1.1 200 OK\r\nServer: s\r\nContent-Length: 0\r\n\r\n", nullptr},
           {"HTTP/1.1 200 O\x01K\r\nContent-Length: 0\r\n\r\n", "control character in start line"},
           {"HTTP/1.1 200 OK\r\nServer : s\r\nContent-Length: 0\r\n\r\n",
            "whitespace before colon in header"},
           {"HTTP/1.1 200 OK\r\nServer: s\nContent-Length: 0\r\n\r\n", "bare LF in message head"},
       })
    check_case(MessageParser::Kind::kResponse, c);
}

TEST_CASE("an incomplete head is refused early for a bare LF or a NUL, whichever comes first") {
  for (const Case& c : std::initializer_list<Case>{
           {"GET / HTTP/1.1\nHost: h", "bare LF in message head"},
           {"\nGET", "bare LF in message head"},
           {std::string("GET /\0 HTTP/1.1\nHost", 20), "NUL in message head"},
           {std::string("GET / HTTP/1.1\nHost\0", 20), "bare LF in message head"},
       })
    check_case(MessageParser::Kind::kRequest, c);
  MessageParser p(MessageParser::Kind::kRequest, 16384, 1000);
  auto partial = buffer_of("GET / HTTP/1.1\r\nHost: h\r\nX-A: \x01");  // judged once complete
  CHECK(p.read_head(partial.get()) == MessageParser::Status::kNeedMore);
}

}  // namespace
}  // namespace fmp::proxy::http
