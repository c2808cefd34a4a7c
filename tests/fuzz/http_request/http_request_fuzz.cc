// Fuzz driver: an HTTP/1.1 request stream (heads, bodies, pipelined requests) as the proxy's
// downstream side consumes it, through the real glue proxy/http/message_parser.{h,cc}.
//
// The input is the bytes a client sends on one connection. They arrive in pieces (split_plan.h)
// into an evbuffer, and the driver calls read_head / read_body exactly as
// proxy/server/connection.cc does: a head first; a body only when the head announces one; then
// reset() and release() of the head storage to the worker's HeadStorage (as an Exchange is given
// back) and the next (pipelined) request, which borrows it again; an error ends the connection.
//
// Invariants (abort = finding):
// - a kDone head has a method and a target;
// - a head without a body is complete at once (else the next request would start inside it);
// - decoded body bytes never exceed max_body_bytes, match body_bytes(), and match Content-Length;
// - a released parser holds no head storage.
#include <event2/buffer.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>

#include "proxy/http/head_storage.h"
#include "proxy/http/message_parser.h"
#include "tests/fuzz/split_plan.h"

namespace {

using fmp::proxy::http::HeadStorage;
using fmp::proxy::http::MessageParser;

struct EvbufferFree {
  void operator()(evbuffer* b) const { evbuffer_free(b); }
};

class CountingSink final : public MessageParser::BodySink {
 public:
  void on_body_data(const char* data, std::size_t len) override {
    if (len > 0 && data == nullptr) std::abort();
    bytes += len;
  }
  std::uint64_t bytes = 0;
};

void check(bool ok) {
  if (!ok) std::abort();
}

/// Between requests, as the proxy gives an exchange back.
void next_message(MessageParser& parser) {
  parser.reset();
  parser.release();
  check(parser.held_bytes() == 0);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fmp::fuzz::SplitPlan plan(data, size);
  // Small limits reach the "too large" paths; the production defaults are among the choices.
  constexpr std::size_t kHeaderLimits[] = {64, 512, 16384};
  constexpr std::size_t kBodyLimits[] = {0, 16, 1024, 10485760};
  const std::size_t max_header = kHeaderLimits[plan.next() % 3];
  const std::size_t max_body = kBodyLimits[plan.next() % 4];

  HeadStorage storage;
  MessageParser parser(MessageParser::Kind::kRequest, max_header, max_body, &storage);
  std::unique_ptr<evbuffer, EvbufferFree> in(evbuffer_new());
  enum class Phase { kHead, kBody } phase = Phase::kHead;
  CountingSink sink;
  int requests = 0;

  std::size_t fed = 0;
  while (fed < size) {
    const std::size_t n = std::min(plan.piece(), size - fed);
    evbuffer_add(in.get(), data + fed, n);
    fed += n;
    for (;;) {
      if (phase == Phase::kHead) {
        const auto st = parser.read_head(in.get());
        if (st == MessageParser::Status::kNeedMore) break;
        if (st == MessageParser::Status::kError) return 0;  // 400/413/431 and close
        const auto& head = parser.head();
        check(!head.method.empty());
        check(!head.target.empty());
        check(head.head_bytes > 0 && head.head_bytes <= max_header);
        if (head.content_length) check(*head.content_length <= max_body);
        if (!head.has_request_body()) {
          check(parser.message_complete());
          if (++requests > 64) return 0;
          next_message(parser);
          continue;
        }
        phase = Phase::kBody;
        sink.bytes = 0;
      }
      const std::size_t before = evbuffer_get_length(in.get());
      const auto st = parser.read_body(in.get(), &sink, nullptr);
      check(evbuffer_get_length(in.get()) <= before);
      check(sink.bytes <= max_body);  // also when the parser refuses: nothing past the limit
      if (st == MessageParser::Status::kError) return 0;
      check(sink.bytes == parser.body_bytes());
      if (st == MessageParser::Status::kNeedMore) break;
      if (parser.head().content_length) check(sink.bytes == *parser.head().content_length);
      if (++requests > 64) return 0;
      next_message(parser);
      phase = Phase::kHead;
    }
  }
  return 0;
}
