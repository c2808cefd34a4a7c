// Where a head ends (MessageParser::read_head): the CRLFCRLF is found wherever the buffer's pieces
// split it, and max_header_bytes holds exactly at its boundary, complete head or not.
#include <doctest/doctest.h>

#include <string>

#include "proxy/http/message_parser.h"
#include "tests/unit/proxy/http/test_buffer.h"

namespace fmp::proxy::http {
namespace {

using testing::Buffer;
using testing::buffer_of;
using testing::contents;

const std::string kHead = "GET /fhir/Patient/1 HTTP/1.1\r\nHost: h\r\nAccept: */*\r\n\r\n";
const std::string kBody = "next bytes";

/// A buffer whose bytes sit in separate pieces (evbuffer chains), split at each of `cuts`.
Buffer pieces_of(const std::string& bytes, std::initializer_list<std::size_t> cuts) {
  Buffer out(evbuffer_new());
  std::size_t from = 0;
  for (std::size_t cut : cuts) {
    Buffer piece = buffer_of(std::string_view(bytes).substr(from, cut - from));
    evbuffer_add_buffer(out.get(), piece.get());  // moves the chain: no merging
    from = cut;
  }
  Buffer rest = buffer_of(std::string_view(bytes).substr(from));
  evbuffer_add_buffer(out.get(), rest.get());
  const std::size_t first_cut = cuts.size() == 0 ? bytes.size() : *cuts.begin();
  REQUIRE(evbuffer_get_contiguous_space(out.get()) == first_cut);  // really separate pieces
  return out;
}

TEST_CASE("the end of a head is found wherever the buffer's pieces split it") {
  const std::string wire = kHead + kBody;
  for (std::size_t cut = 1; cut < wire.size(); ++cut) {
    CAPTURE(cut);
    MessageParser p(MessageParser::Kind::kRequest, 16384, 1000);
    Buffer in = pieces_of(wire, {cut});
    REQUIRE(p.read_head(in.get()) == MessageParser::Status::kDone);
    CHECK(p.head().head_bytes == kHead.size());
    CHECK(p.head().target == "/fhir/Patient/1");
    CHECK(contents(in.get()) == kBody);  // only the head was taken
  }
  MessageParser p(MessageParser::Kind::kRequest, 16384, 1000);
  Buffer in = pieces_of(wire, {3, 20, kHead.size() - 3, kHead.size() - 1});
  REQUIRE(p.read_head(in.get()) == MessageParser::Status::kDone);
  CHECK(contents(in.get()) == kBody);
}

TEST_CASE("max_header_bytes: a head of exactly that size passes, one byte more is refused") {
  const std::size_t n = kHead.size();
  for (std::size_t cut : {std::size_t{0}, std::size_t{10}, n - 6}) {
    CAPTURE(cut);
    const auto in_pieces = [&](const std::string& bytes) {
      return cut == 0 ? buffer_of(bytes) : pieces_of(bytes, {cut});
    };
    MessageParser exact(MessageParser::Kind::kRequest, n, 1000);
    Buffer a = in_pieces(kHead + kBody);
    CHECK(exact.read_head(a.get()) == MessageParser::Status::kDone);

    MessageParser over(MessageParser::Kind::kRequest, n - 1, 1000);
    Buffer b = in_pieces(kHead + kBody);
    CHECK(over.read_head(b.get()) == MessageParser::Status::kError);
    CHECK(over.error() == ParseError::kHeadersTooLarge);

    // Incomplete: waiting while it still fits, refused once it cannot.
    const std::string open = kHead.substr(0, n - 2);  // no CRLFCRLF yet
    MessageParser waiting(MessageParser::Kind::kRequest, open.size(), 1000);
    Buffer c = in_pieces(open);
    CHECK(waiting.read_head(c.get()) == MessageParser::Status::kNeedMore);
    MessageParser full(MessageParser::Kind::kRequest, open.size() - 1, 1000);
    Buffer d = in_pieces(open);
    CHECK(full.read_head(d.get()) == MessageParser::Status::kError);
    CHECK(full.error() == ParseError::kHeadersTooLarge);
  }
}

TEST_CASE("a CR LF CR without its last LF is not an end") {
  MessageParser p(MessageParser::Kind::kRequest, 16384, 1000);
  Buffer in = buffer_of("GET / HTTP/1.1\r\nHost: h\r\n\r");
  CHECK(p.read_head(in.get()) == MessageParser::Status::kNeedMore);
  evbuffer_add(in.get(), "\n", 1);
  CHECK(p.read_head(in.get()) == MessageParser::Status::kDone);
}

}  // namespace
}  // namespace fmp::proxy::http
