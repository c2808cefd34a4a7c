// Fuzz driver: chunked message bodies (chunk sizes, extensions, trailers, the last chunk) through
// proxy/http/message_parser.{h,cc}, in both directions the proxy handles them.
//
// Input: byte 0 chooses the direction and the body limit; the rest is the body on the wire after
// a fixed "Transfer-Encoding: chunked" head, delivered in pieces (split_plan.h).
// - Request (downstream): decoded bytes go to a sink, as when the proxy buffers a Bundle or
//   re-chunks a body upstream. Invariants: never more than max_body_bytes delivered; delivered ==
//   body_bytes(); delivered <= raw bytes consumed.
// - Response (upstream): raw bytes move to the output buffer. Invariants: no byte is lost or
//   duplicated (moved + left == received); the decoded size never exceeds what was moved.
// Both: at EOF, a message that did not end is never reported complete (a truncated chunked body
// must not pass for a whole one).
#include <event2/buffer.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string_view>

#include "proxy/http/message_parser.h"
#include "tests/fuzz/split_plan.h"

namespace {

using fmp::proxy::http::MessageParser;

struct EvbufferFree {
  void operator()(evbuffer* b) const { evbuffer_free(b); }
};
using EvbufferPtr = std::unique_ptr<evbuffer, EvbufferFree>;

class CountingSink final : public MessageParser::BodySink {
 public:
  void on_body_data(const char*, std::size_t len) override { bytes += len; }
  std::uint64_t bytes = 0;
};

void check(bool ok) {
  if (!ok) std::abort();
}

constexpr std::string_view kRequestHead =
    "POST /fhir HTTP/1.1\r\nHost: fhir.example.org\r\nTransfer-Encoding: chunked\r\n\r\n";
constexpr std::string_view kResponseHead =
    "HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\nTransfer-Encoding: chunked\r\n\r\n";

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const bool request = (data[0] & 1) == 0;
  constexpr std::size_t kBodyLimits[] = {16, 1024, 65536, 10485760};
  const std::size_t max_body = kBodyLimits[(data[0] >> 1) & 3];
  const std::uint8_t* body = data + 1;
  const std::size_t body_size = size - 1;

  MessageParser parser(request ? MessageParser::Kind::kRequest : MessageParser::Kind::kResponse,
                       16384, max_body);
  EvbufferPtr in(evbuffer_new());
  EvbufferPtr out(evbuffer_new());
  const std::string_view head = request ? kRequestHead : kResponseHead;
  evbuffer_add(in.get(), head.data(), head.size());
  check(parser.read_head(in.get()) == MessageParser::Status::kDone);
  check(parser.head().chunked && !parser.message_complete());
  check(evbuffer_get_length(in.get()) == 0);

  fmp::fuzz::SplitPlan plan(data, size);
  CountingSink sink;
  std::size_t fed = 0;
  auto st = MessageParser::Status::kNeedMore;
  while (fed < body_size && st == MessageParser::Status::kNeedMore) {
    const std::size_t n = std::min(plan.piece(), body_size - fed);
    evbuffer_add(in.get(), body + fed, n);
    fed += n;
    st = parser.read_body(in.get(), request ? &sink : nullptr, request ? nullptr : out.get());
    const std::size_t left = evbuffer_get_length(in.get());
    const std::size_t moved = evbuffer_get_length(out.get());
    if (request) {
      check(sink.bytes <= max_body);
    } else {
      check(moved + left == fed);
    }
    if (st == MessageParser::Status::kError) return 0;  // the connection closes; input is dropped
    if (request) check(sink.bytes == parser.body_bytes() && sink.bytes <= fed - left);
    if (!request) check(parser.body_bytes() <= moved);
  }
  if (st == MessageParser::Status::kDone) {
    check(parser.message_complete());
    return 0;
  }
  // EOF in the middle of a chunked body: never a complete message.
  check(parser.finish_eof() == MessageParser::Status::kError);
  return 0;
}
