#include "proxy/http/head_storage.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "tests/unit/proxy/http/test_buffer.h"

namespace fmp::proxy::http {
namespace {

TEST_CASE("HeadStorage lends back what it was given, empty and with its capacity") {
  HeadStorage storage;
  CHECK(storage.take_bytes().capacity() <= std::string().capacity());  // nothing spare yet
  std::string s(1000, 'x');
  const char* data = s.data();
  storage.give(std::move(s));
  CHECK(s.empty());
  CHECK(storage.spare_bytes() == 1);
  std::string again = storage.take_bytes();
  CHECK(again.empty());
  CHECK(again.capacity() >= 1000);
  CHECK(again.data() == data);  // the same buffer
  CHECK(storage.spare_bytes() == 0);

  std::vector<Header> headers(10);
  storage.give(std::move(headers));
  CHECK(storage.spare_header_lists() == 1);
  const std::vector<Header> list = storage.take_headers();
  CHECK(list.empty());
  CHECK(list.capacity() >= 10);
}

TEST_CASE("HeadStorage keeps neither oversized buffers nor more than kMaxSpares") {
  HeadStorage storage;
  storage.give(std::string(HeadStorage::kMaxBufferBytes + 1, 'x'));
  storage.give(std::vector<Header>(MessageParser::kRetainedHeaders + 1));
  storage.give(std::string());  // no capacity: nothing to keep
  CHECK(storage.spare_bytes() == 0);
  CHECK(storage.spare_header_lists() == 0);
  for (std::size_t i = 0; i < HeadStorage::kMaxSpares + 5; ++i) storage.give(std::string(100, 'x'));
  CHECK(storage.spare_bytes() == HeadStorage::kMaxSpares);
}

TEST_CASE("a parser borrows head storage only for a complete head and gives it back") {
  HeadStorage storage;
  MessageParser a(MessageParser::Kind::kRequest, 16384, 1000, &storage);
  MessageParser b(MessageParser::Kind::kRequest, 16384, 1000, &storage);
  const auto partial = testing::buffer_of("GET /fhir/Patient/1 HTTP/1.1\r\nHost: x\r\n");
  CHECK(a.read_head(partial.get()) == MessageParser::Status::kNeedMore);
  CHECK(a.held_bytes() == 0);  // waiting for the rest of a head holds nothing

  const auto first = testing::buffer_of("GET /fhir/Patient/1 HTTP/1.1\r\nHost: one\r\n\r\n");
  REQUIRE(a.read_head(first.get()) == MessageParser::Status::kDone);
  CHECK(a.held_bytes() > 0);
  CHECK(a.head().header("host") == "one");
  a.release();
  CHECK(a.held_bytes() == 0);
  CHECK(a.head().headers.empty());
  CHECK(a.head().target.empty());
  CHECK(storage.spare_bytes() == 1);
  CHECK(storage.spare_header_lists() == 1);

  // Another connection's parser takes the same storage and parses its own head into it.
  const auto second = testing::buffer_of(
      "POST /fhir/Observation HTTP/1.1\r\nHost: two\r\nContent-Length: 0\r\n\r\n");
  REQUIRE(b.read_head(second.get()) == MessageParser::Status::kDone);
  CHECK(storage.spare_bytes() == 0);
  CHECK(storage.spare_header_lists() == 0);
  CHECK(b.head().method == "POST");
  CHECK(b.head().target == "/fhir/Observation");
  CHECK(b.head().header("host") == "two");
  CHECK(b.head().headers.size() == 2);

  // Without a HeadStorage, release() changes nothing: the parser keeps its own.
  MessageParser own(MessageParser::Kind::kRequest, 16384, 1000);
  const auto third = testing::buffer_of("GET / HTTP/1.1\r\nHost: three\r\n\r\n");
  REQUIRE(own.read_head(third.get()) == MessageParser::Status::kDone);
  const std::size_t held = own.held_bytes();
  own.release();
  CHECK(own.held_bytes() == held);
  CHECK(own.head().header("host") == "three");
}

}  // namespace
}  // namespace fmp::proxy::http
