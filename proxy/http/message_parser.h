// HTTP/1.1 message framing on top of Node's http_parser (Debian's libhttp-parser-dev).
//
// Why http_parser and not evhttp: a proxy needs the head and the body separately and incrementally
// (decide on the head, stream the body with backpressure, move response bytes without copying), and
// evhttp buffers whole bodies and accepts several things this proxy must refuse (obs-fold, bare
// LF). http_parser is a proven, widely fuzzed incremental parser with no allocation of its own.
//
// What this file adds on top, deliberately stricter than RFC 9112 (the contract's "HTTP
// strictness"): the head is located by its CRLFCRLF boundary and checked lexically before it is
// parsed (bare LF, bare CR, NUL and other control characters, obs-fold, whitespace before a colon,
// non-token header names), and after parsing, framing is checked (Content-Length with
// Transfer-Encoding, several Content-Length headers, a Transfer-Encoding other than exactly
// "chunked", CONNECT, upgrades, Content_Length / Transfer_Encoding look-alikes and method-override
// headers such as X-HTTP-Method-Override), and a chunk that alone would exceed the body limit is
// refused (413) as soon as its size line is read.
#pragma once

#include <event2/buffer.h>
#include <http_parser.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace fmp::proxy::http {

/// One header field. Both views point into the MessageParser that produced it (see MessageHead for
/// how long they stay valid).
struct Header {
  std::string_view name;   ///< as received (case preserved)
  std::string_view value;  ///< as received, leading/trailing whitespace trimmed
};

/// Case-insensitive ASCII comparison for header names.
bool iequals(std::string_view a, std::string_view b);

/// A parsed message head (request or response).
///
/// Lifetime: `target`, `reason` and every header's `name` and `value` are views into the parser's
/// own copy of the head bytes, so a kept-alive connection parses message after message without
/// allocating. They stay valid until that parser's next reset() or read_head(), or its
/// destruction; a copy of a MessageHead shares them. Copy into a std::string whatever must outlive
/// the message (an audit event, a log line written later). `method` is an owned string (method
/// names are at most 11 bytes, so it never leaves the small-string buffer).
struct MessageHead {
  std::string method;       ///< requests
  std::string_view target;  ///< requests: the request target as received
  int status = 0;           ///< responses
  std::string_view reason;  ///< responses
  int http_major = 1;
  int http_minor = 1;
  std::vector<Header> headers;
  bool keep_alive = true;  ///< http_should_keep_alive()
  bool chunked = false;
  std::optional<std::uint64_t> content_length;
  bool expect_continue = false;  ///< requests: "Expect: 100-continue"
  std::size_t head_bytes = 0;    ///< size of the head on the wire

  /// True when a request carries a body (chunked or Content-Length > 0).
  bool has_request_body() const { return chunked || (content_length && *content_length > 0); }
  /// First value of a header, or empty.
  std::string_view header(std::string_view name) const;
};

class HeadStorage;

/// Why a message was refused; maps onto the rejection table.
enum class ParseError { kNone, kMalformed, kHeadersTooLarge, kBodyTooLarge, kPrematureEof };

/// One direction of one connection. Not thread-safe; reused across keep-alive messages via reset().
class MessageParser {
 public:
  enum class Kind { kRequest, kResponse };
  enum class Status { kNeedMore, kDone, kError };

  /// `storage`: where the head bytes and the header list are borrowed from and given back to by
  /// release() (see head_storage.h); null: the parser keeps its own across messages.
  MessageParser(Kind kind, std::size_t max_header_bytes, std::size_t max_body_bytes,
                HeadStorage* storage = nullptr);
  MessageParser(const MessageParser&) = delete;
  MessageParser& operator=(const MessageParser&) = delete;

  /// Prepares for the next message. `head_request`: the response answers a HEAD (no body follows).
  /// Ends the previous head's views (see MessageHead). Keeps the storage for the head bytes and the
  /// header list, so the next message of a kept-alive connection reuses it; storage grown past
  /// kRetainedHeadBytes / kRetainedHeaders by an unusually large head is released instead, so an
  /// idle connection does not keep it.
  void reset(bool head_request = false);

  /// Changes the limits for the next message (a parser reused for another connection).
  void set_limits(std::size_t max_header_bytes, std::size_t max_body_bytes) {
    max_header_bytes_ = max_header_bytes;
    max_body_bytes_ = max_body_bytes;
  }

  /// Gives the head bytes and the header list back to the HeadStorage (no-op without one), so
  /// that the parser holds none until its next complete head. Ends the last head's views: call
  /// it between messages only.
  void release();
  /// Bytes of heap storage this parser holds for heads (capacity), for tests.
  std::size_t held_bytes() const;

  /// Reads a complete head from the front of `in` and drains it. kDone: head() is valid (its views
  /// until the next reset()/read_head()) and the parser is positioned at the body; kNeedMore: not
  /// all of the head has arrived (nothing drained); kError: error()/error_message() say why.
  Status read_head(evbuffer* in);

  /// Sink for body bytes: `raw` are the bytes exactly as they were on the wire (framing included),
  /// `data` the decoded body bytes of this piece (for requests; empty for responses).
  class BodySink {
   public:
    virtual ~BodySink() = default;
    virtual void on_body_data(const char* data, std::size_t len) = 0;
  };

  /// Consumes body bytes from the front of `in`. For a request, every decoded body byte is given to
  /// `sink` and the consumed input is drained. For a response, the consumed raw bytes (framing
  /// included) are moved to `out` without copying (evbuffer_remove_buffer). kDone at the end of the
  /// message (pipelined bytes after it stay in `in`), kNeedMore otherwise.
  Status read_body(evbuffer* in, BodySink* sink, evbuffer* out);

  /// Signals EOF on the connection: completes an EOF-delimited response body (kDone) or fails.
  Status finish_eof();

  /// True when no body follows the head (already complete after read_head).
  bool message_complete() const { return complete_; }
  /// The current message's head; its views are valid until the next reset()/read_head().
  const MessageHead& head() const { return head_; }
  ParseError error() const { return error_; }
  const std::string& error_message() const { return error_message_; }
  std::uint64_t body_bytes() const { return body_bytes_; }

  /// Head bytes and header slots kept across reset() (see reset()).
  static constexpr std::size_t kRetainedHeadBytes = 8192;
  static constexpr std::size_t kRetainedHeaders = 64;

 private:
  static const http_parser_settings& settings();
  static int on_message_begin(http_parser* p);
  static int on_url(http_parser* p, const char* at, std::size_t len);
  static int on_status(http_parser* p, const char* at, std::size_t len);
  static int on_header_field(http_parser* p, const char* at, std::size_t len);
  static int on_header_value(http_parser* p, const char* at, std::size_t len);
  static int on_headers_complete(http_parser* p);
  static int on_chunk_header(http_parser* p);
  static int on_body(http_parser* p, const char* at, std::size_t len);
  static int on_message_complete(http_parser* p);

  Status fail(ParseError e, std::string message);
  bool check_head_bytes(const unsigned char* p, std::size_t len);
  bool check_framing();
  /// Adds the piece [at, at + len) of head_buf_ to `field`; fails when it does not follow it.
  bool extend(std::string_view& field, const char* at, std::size_t len);

  Kind kind_;
  std::size_t max_header_bytes_;
  std::size_t max_body_bytes_;
  HeadStorage* storage_;
  http_parser parser_{};
  MessageHead head_;
  /// The current head's bytes as received; head_'s views point here. Its size only grows (to the
  /// largest head seen), so a kept-alive connection copies each head in without allocating;
  /// reset() releases it once it is past kRetainedHeadBytes.
  std::string head_buf_;
  bool in_value_ = false;
  bool headers_done_ = false;
  bool complete_ = false;
  bool head_request_ = false;
  BodySink* sink_ = nullptr;
  std::uint64_t body_bytes_ = 0;
  ParseError error_ = ParseError::kNone;
  std::string error_message_;
};

}  // namespace fmp::proxy::http
