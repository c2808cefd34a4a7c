#include "proxy/http/message_parser.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <utility>

#include "proxy/http/head_storage.h"

namespace fmp::proxy::http {
namespace {

constexpr std::string_view kCrlfCrlf = "\r\n\r\n";
/// Response body pieces up to this size are copied rather than moved between buffers.
constexpr std::size_t kCopyBelow = 16 * 1024;

/// RFC 9110 5.6.2 tchar, as a table: header names are checked one lookup per byte.
constexpr std::array<bool, 256> kTchar = [] {
  std::array<bool, 256> t{};
  for (int c = '0'; c <= '9'; ++c) t[static_cast<std::size_t>(c)] = true;
  for (int c = 'a'; c <= 'z'; ++c) t[static_cast<std::size_t>(c)] = true;
  for (int c = 'A'; c <= 'Z'; ++c) t[static_cast<std::size_t>(c)] = true;
  for (char c : std::string_view("!#$%&'*+-.^_`|~")) t[static_cast<unsigned char>(c)] = true;
  return t;
}();

bool is_ctl(unsigned char c) {
  return c < 0x20 || c == 0x7f;
}

/// Index of the first control character (below 0x20, or DEL) in [p, p + n), a tab not counting
/// when `tab_ok`; n when there is none. Scans eight bytes per step: a word is looked at byte by
/// byte only when it holds a byte below 0x20 or a DEL (the usual tests for "a byte less than n" and
/// "a zero byte", which never miss one and report nothing for a word without one).
std::size_t find_ctl(const unsigned char* p, std::size_t n, bool tab_ok) {
  constexpr std::uint64_t kOnes = 0x0101010101010101ULL;
  constexpr std::uint64_t kHighBits = 0x8080808080808080ULL;
  const auto bad = [tab_ok](unsigned char c) { return is_ctl(c) && !(tab_ok && c == '\t'); };
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    std::uint64_t w = 0;
    std::memcpy(&w, p + i, sizeof w);
    const std::uint64_t below_space = (w - kOnes * 0x20) & ~w & kHighBits;
    const std::uint64_t x = w ^ (kOnes * 0x7f);
    const std::uint64_t del = (x - kOnes) & ~x & kHighBits;
    if ((below_space | del) == 0) continue;
    for (std::size_t k = i; k < i + 8; ++k)
      if (bad(p[k])) return k;
  }
  for (; i < n; ++i)
    if (bad(p[i])) return i;
  return n;
}

/// What is wrong with a start line (no CR or LF in it), or nullptr.
const char* start_line_error(const unsigned char* line, std::size_t len) {
  return find_ctl(line, len, false) != len ? "control character in start line" : nullptr;
}

/// What is wrong with a header line (no CR in it; the empty line ending the head included), or
/// nullptr. The messages are those of the first problem met reading the line left to right.
const char* header_line_error(const unsigned char* line, std::size_t len) {
  if (len == 0) return nullptr;
  if (line[0] == ' ' || line[0] == '\t') return "obsolete line folding in header";
  std::size_t k = 0;
  while (k < len && kTchar[line[k]]) ++k;
  if (k == len || line[k] != ':') {
    // A byte that is neither a token character nor the colon: if a colon follows, it is inside
    // the name.
    if (std::memchr(line + k, ':', len - k) == nullptr)
      return "header line without a field name and colon";
    return line[k] == ' ' || line[k] == '\t' ? "whitespace before colon in header"
                                             : "invalid character in header name";
  }
  if (k == 0) return "header line without a field name and colon";
  const std::size_t value_len = len - k - 1;
  if (find_ctl(line + k + 1, value_len, true) != value_len)
    return "control character in header value";
  return nullptr;
}

/// The CRLFCRLF ending a head within [p, p + n), or nullptr: one memchr per line (each line ends
/// with a CR), where a general substring search costs more per byte for heads this short.
const unsigned char* find_head_end(const unsigned char* p, std::size_t n) {
  const unsigned char* const end = p + n;
  while (end - p >= 4) {
    p = static_cast<const unsigned char*>(
        std::memchr(p, '\r', static_cast<std::size_t>(end - p) - 3));
    if (p == nullptr) return nullptr;
    if (p[1] == '\n' && p[2] == '\r' && p[3] == '\n') return p;
    ++p;
  }
  return nullptr;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

MessageParser* self(http_parser* p) {
  return static_cast<MessageParser*>(p->data);
}

/// Case-insensitive comparison where '_' in `name` counts as '-' (CGI-style servers map both to
/// the same variable).
bool iequals_folded(std::string_view name, std::string_view lower_dashed) {
  if (name.size() != lower_dashed.size()) return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(name[i]);
    if (c >= 'A' && c <= 'Z') c = static_cast<unsigned char>(c + 32);
    if (c == '_') c = '-';
    if (c != static_cast<unsigned char>(lower_dashed[i])) return false;
  }
  return true;
}

/// Headers some frameworks read to replace the request method.
bool is_method_override(std::string_view name) {
  return iequals_folded(name, "x-http-method-override") || iequals_folded(name, "x-http-method") ||
         iequals_folded(name, "x-method-override");
}

/// True for Content-Length / Transfer-Encoding spelt with '_' for some '-' (any case).
bool is_framing_lookalike(std::string_view name) {
  return name.find('_') != std::string_view::npos &&
         (iequals_folded(name, "content-length") || iequals_folded(name, "transfer-encoding"));
}

}  // namespace

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    unsigned char x = static_cast<unsigned char>(a[i]);
    unsigned char y = static_cast<unsigned char>(b[i]);
    if (x >= 'A' && x <= 'Z') x = static_cast<unsigned char>(x + 32);
    if (y >= 'A' && y <= 'Z') y = static_cast<unsigned char>(y + 32);
    if (x != y) return false;
  }
  return true;
}

std::string_view MessageHead::header(std::string_view name) const {
  for (const auto& h : headers)
    if (iequals(h.name, name)) return h.value;
  return {};
}

const http_parser_settings& MessageParser::settings() {
  // The same callbacks for every parser: one immutable table rather than 80 bytes per parser.
  static const http_parser_settings table = [] {
    http_parser_settings t;
    http_parser_settings_init(&t);
    t.on_message_begin = &MessageParser::on_message_begin;
    t.on_url = &MessageParser::on_url;
    t.on_status = &MessageParser::on_status;
    t.on_header_field = &MessageParser::on_header_field;
    t.on_header_value = &MessageParser::on_header_value;
    t.on_headers_complete = &MessageParser::on_headers_complete;
    t.on_chunk_header = &MessageParser::on_chunk_header;
    t.on_body = &MessageParser::on_body;
    t.on_message_complete = &MessageParser::on_message_complete;
    return t;
  }();
  return table;
}

MessageParser::MessageParser(Kind kind, std::size_t max_header_bytes, std::size_t max_body_bytes,
                             HeadStorage* storage)
    : kind_(kind),
      max_header_bytes_(max_header_bytes),
      max_body_bytes_(max_body_bytes),
      storage_(storage) {
  reset();
}

void MessageParser::reset(bool head_request) {
  http_parser_init(&parser_, kind_ == Kind::kRequest ? HTTP_REQUEST : HTTP_RESPONSE);
  parser_.data = this;
  // Every field back to its default, but the header list and the method keep their storage.
  std::vector<Header> headers = std::move(head_.headers);
  headers.clear();
  if (headers.capacity() > kRetainedHeaders) headers = std::vector<Header>();
  std::string method = std::move(head_.method);
  method.clear();
  head_ = MessageHead{};
  head_.headers = std::move(headers);
  head_.method = std::move(method);
  if (head_buf_.capacity() > kRetainedHeadBytes) head_buf_ = std::string();
  in_value_ = false;
  headers_done_ = false;
  complete_ = false;
  head_request_ = head_request;
  sink_ = nullptr;
  body_bytes_ = 0;
  error_ = ParseError::kNone;
  error_message_.clear();
}

std::size_t MessageParser::held_bytes() const {
  return (HeadStorage::holds_storage(head_buf_) ? head_buf_.capacity() : 0) +
         head_.headers.capacity() * sizeof(Header);
}

void MessageParser::release() {
  if (storage_ == nullptr) return;
  storage_->give(std::move(head_buf_));
  storage_->give(std::move(head_.headers));
  head_buf_ = std::string();  // moved-from: made certainly empty
  head_.headers = std::vector<Header>();
  head_.target = {};
  head_.reason = {};
}

MessageParser::Status MessageParser::fail(ParseError e, std::string message) {
  error_ = e;
  error_message_ = std::move(message);
  return Status::kError;
}

bool MessageParser::check_head_bytes(const unsigned char* p, std::size_t len) {
  // Line by line (memchr finds each CR); the error reported is the first one met reading the head
  // byte by byte: within a line, a bare LF before the line's CR, then a bare CR, then the content.
  std::size_t pos = 0;
  bool first_line = true;
  while (pos < len) {
    const auto* cr = static_cast<const unsigned char*>(std::memchr(p + pos, '\r', len - pos));
    const std::size_t end = cr != nullptr ? static_cast<std::size_t>(cr - p) : len;
    const unsigned char* line = p + pos;
    const std::size_t line_len = end - pos;
    // An LF inside a line is a control character and never a token character, so it always makes
    // the content check fail: only then is the line searched for one.
    const char* content_error =
        first_line ? start_line_error(line, line_len) : header_line_error(line, line_len);
    if ((content_error != nullptr || cr == nullptr) &&
        std::memchr(line, '\n', line_len) != nullptr) {
      fail(ParseError::kMalformed, "bare LF in message head");
      return false;
    }
    if (cr == nullptr) return true;  // not reached: a head ends with CRLFCRLF
    if (end + 1 >= len || p[end + 1] != '\n') {
      fail(ParseError::kMalformed, "bare CR in message head");
      return false;
    }
    if (content_error != nullptr) {
      fail(ParseError::kMalformed, content_error);
      return false;
    }
    first_line = false;
    pos = end + 2;
  }
  return true;
}

MessageParser::Status MessageParser::read_head(evbuffer* in) {
  // RFC 9112 2.2: empty lines before the request line are ignored.
  if (kind_ == Kind::kRequest) {
    for (int i = 0; i < 4 && evbuffer_get_length(in) >= 2; ++i) {
      std::array<char, 2> two{};
      evbuffer_copyout(in, two.data(), 2);
      if (two[0] != '\r' || two[1] != '\n') break;
      evbuffer_drain(in, 2);
    }
  }
  const std::size_t available = evbuffer_get_length(in);
  if (available == 0) return Status::kNeedMore;
  // A head longer than max_header_bytes is refused whether or not it is complete, so its end is
  // looked for only within that many bytes: first in the buffer's first piece (usually all of
  // it), then, rarely, across the pieces (searched in place: body bytes may follow the head).
  const std::size_t window = std::min(available, max_header_bytes_);
  const std::size_t first = std::min(window, evbuffer_get_contiguous_space(in));
  const unsigned char* bytes = evbuffer_pullup(in, static_cast<ev_ssize_t>(first));  // no copy
  const unsigned char* end = bytes != nullptr ? find_head_end(bytes, first) : nullptr;
  std::size_t head_len =
      end != nullptr ? static_cast<std::size_t>(end - bytes) + kCrlfCrlf.size() : 0;
  if (end == nullptr && first < window) {
    evbuffer_ptr limit;
    const bool limited = evbuffer_ptr_set(in, &limit, window, EVBUFFER_PTR_SET) == 0;
    const evbuffer_ptr found = evbuffer_search_range(in, kCrlfCrlf.data(), kCrlfCrlf.size(),
                                                     nullptr, limited ? &limit : nullptr);
    if (found.pos >= 0 && static_cast<std::size_t>(found.pos) + kCrlfCrlf.size() <= window)
      head_len = static_cast<std::size_t>(found.pos) + kCrlfCrlf.size();
  }
  if (head_len == 0) {
    if (available > max_header_bytes_)
      return fail(ParseError::kHeadersTooLarge, kind_ == Kind::kRequest
                                                    ? "request head exceeds max_header_bytes"
                                                    : "response head exceeds max_header_bytes");
    // Refuse early what can never become a valid head (so a bare-LF client gets 400, not a
    // timeout).
    const std::size_t n = window;
    bytes = evbuffer_pullup(in, static_cast<ev_ssize_t>(n));
    if (bytes == nullptr) return fail(ParseError::kMalformed, "message head unreadable");
    // The first of: a bare LF, a NUL.
    const auto* nul = static_cast<const unsigned char*>(std::memchr(bytes, 0, n));
    const unsigned char* stop = nul != nullptr ? nul : bytes + n;
    for (const unsigned char* lf = bytes;
         (lf = static_cast<const unsigned char*>(
              std::memchr(lf, '\n', static_cast<std::size_t>(stop - lf)))) != nullptr;
         ++lf) {
      if (lf == bytes || lf[-1] != '\r')
        return fail(ParseError::kMalformed, "bare LF in message head");
    }
    if (nul != nullptr) return fail(ParseError::kMalformed, "NUL in message head");
    return Status::kNeedMore;
  }
  // One copy of the head into storage this parser holds: head_'s views point into it. The storage
  // is borrowed from the worker's HeadStorage (when there is one) only now that a whole head is
  // here, so a connection waiting for one holds none; either way it keeps its capacity from
  // message to message, so no allocation after the first ones.
  if (storage_ != nullptr && !HeadStorage::holds_storage(head_buf_))
    head_buf_ = storage_->take_bytes();
  if (storage_ != nullptr && !HeadStorage::holds_storage(head_.headers))
    head_.headers = storage_->take_headers();
  if (head_buf_.size() < head_len) head_buf_.resize(head_len);
  if (end != nullptr) {
    std::memcpy(head_buf_.data(), bytes, head_len);
  } else {
    evbuffer_copyout(in, head_buf_.data(), head_len);
  }
  if (!check_head_bytes(reinterpret_cast<const unsigned char*>(head_buf_.data()), head_len))
    return Status::kError;

  head_.head_bytes = head_len;
  const std::size_t n = http_parser_execute(&parser_, &settings(), head_buf_.data(), head_len);
  const auto err = HTTP_PARSER_ERRNO(&parser_);
  if (err != HPE_OK && err != HPE_PAUSED) {
    if (error_ != ParseError::kNone) return Status::kError;  // set by a callback
    return fail(ParseError::kMalformed, http_errno_description(err));
  }
  if (!headers_done_ || (n != head_len && !parser_.upgrade))
    return fail(ParseError::kMalformed, "incomplete message head");
  if (!check_framing()) return Status::kError;
  evbuffer_drain(in, head_len);
  return Status::kDone;
}

bool MessageParser::check_framing() {
  const bool request = kind_ == Kind::kRequest;
  head_.http_major = parser_.http_major;
  head_.http_minor = parser_.http_minor;
  if (head_.http_major != 1) {
    fail(ParseError::kMalformed, "unsupported HTTP version");
    return false;
  }
  int content_lengths = 0;
  int hosts = 0;
  int transfer_encodings = 0;
  std::string_view transfer_encoding;
  for (const auto& h : head_.headers) {
    if (request && is_framing_lookalike(h.name)) {
      // CGI-style servers map '_' and '-' to the same variable: a Content_Length or
      // Transfer_Encoding the proxy ignores could frame the body differently upstream.
      fail(ParseError::kMalformed, "header name looks like a framing header");
      return false;
    }
    if (request && is_method_override(h.name)) {
      // The policy decided on the request method; an upstream honouring an override would do
      // something else (e.g. GET allowed as a read, executed as DELETE).
      fail(ParseError::kMalformed, "method override headers are not supported");
      return false;
    }
    if (iequals(h.name, "content-length")) {
      ++content_lengths;
    } else if (iequals(h.name, "transfer-encoding")) {
      ++transfer_encodings;
      transfer_encoding = h.value;
    } else if (iequals(h.name, "host")) {
      ++hosts;
    } else if (request && iequals(h.name, "expect")) {
      if (!iequals(h.value, "100-continue")) {
        fail(ParseError::kMalformed, "unsupported expectation");
        return false;
      }
      head_.expect_continue = true;
    }
  }
  const bool has_te = transfer_encodings > 0;
  if (content_lengths > 1) {
    fail(ParseError::kMalformed, "several Content-Length headers");
    return false;
  }
  if (has_te && content_lengths > 0) {
    fail(ParseError::kMalformed, "Content-Length together with Transfer-Encoding");
    return false;
  }
  // Several Transfer-Encoding headers form one list ("a, b"), which is never exactly "chunked".
  if (has_te && (transfer_encodings > 1 || !iequals(transfer_encoding, "chunked"))) {
    fail(ParseError::kMalformed, "Transfer-Encoding other than \"chunked\"");
    return false;
  }
  if (request) {
    if (has_te && head_.http_minor == 0) {
      fail(ParseError::kMalformed, "Transfer-Encoding in an HTTP/1.0 request");
      return false;
    }
    if (hosts > 1 || (hosts == 0 && head_.http_minor >= 1)) {
      fail(ParseError::kMalformed, hosts ? "several Host headers" : "missing Host header");
      return false;
    }
    if (parser_.method == HTTP_CONNECT || parser_.upgrade) {
      fail(ParseError::kMalformed, parser_.method == HTTP_CONNECT
                                       ? "CONNECT is not supported"
                                       : "protocol upgrade is not supported");
      return false;
    }
  }
  head_.chunked = has_te;
  if (content_lengths == 1) head_.content_length = parser_.content_length;
  head_.keep_alive = http_should_keep_alive(&parser_) != 0;
  if (request && head_.content_length && *head_.content_length > max_body_bytes_) {
    fail(ParseError::kBodyTooLarge, "request body exceeds max_body_bytes");
    return false;
  }
  return true;
}

MessageParser::Status MessageParser::read_body(evbuffer* in, BodySink* sink, evbuffer* out) {
  if (complete_) return Status::kDone;
  sink_ = sink;
  while (evbuffer_get_length(in) > 0) {
    evbuffer_iovec vec{};
    if (evbuffer_peek(in, -1, nullptr, &vec, 1) < 1 || vec.iov_len == 0) break;
    const std::size_t n = http_parser_execute(&parser_, &settings(),
                                              static_cast<const char*>(vec.iov_base), vec.iov_len);
    const auto err = HTTP_PARSER_ERRNO(&parser_);
    if (err != HPE_OK && err != HPE_PAUSED) {
      sink_ = nullptr;
      if (error_ != ParseError::kNone) return Status::kError;
      return fail(ParseError::kMalformed, http_errno_description(err));
    }
    if (out == nullptr) {
      evbuffer_drain(in, n);
    } else if (n <= kCopyBelow) {
      // Small pieces are copied so they join the response head in one chain: one TLS record and
      // one write() for a typical FHIR response instead of two.
      evbuffer_add(out, vec.iov_base, n);
      evbuffer_drain(in, n);
    } else {
      evbuffer_remove_buffer(in, out, n);  // large pieces move without copying
    }
    if (complete_) break;
    if (n < vec.iov_len) break;  // defensive: the parser stopped without completing
  }
  sink_ = nullptr;
  return complete_ ? Status::kDone : Status::kNeedMore;
}

MessageParser::Status MessageParser::finish_eof() {
  if (complete_) return Status::kDone;
  http_parser_execute(&parser_, &settings(), nullptr, 0);
  if (complete_) return Status::kDone;
  return fail(ParseError::kPrematureEof, "connection closed before the message ended");
}

int MessageParser::on_message_begin(http_parser*) {
  return 0;
}

bool MessageParser::extend(std::string_view& field, const char* at, std::size_t len) {
  // The whole head is parsed from head_buf_ in one call, so the pieces of one field are adjacent
  // there (http_parser gives each field in one piece then); anything else fails closed.
  if (field.empty()) {
    field = std::string_view(at, len);
    return true;
  }
  if (field.data() + field.size() != at) {
    fail(ParseError::kMalformed, "message head field in pieces");
    return false;
  }
  field = std::string_view(field.data(), field.size() + len);
  return true;
}

int MessageParser::on_url(http_parser* p, const char* at, std::size_t len) {
  MessageParser* s = self(p);
  return s->extend(s->head_.target, at, len) ? 0 : -1;
}

int MessageParser::on_status(http_parser* p, const char* at, std::size_t len) {
  MessageParser* s = self(p);
  return s->extend(s->head_.reason, at, len) ? 0 : -1;
}

int MessageParser::on_header_field(http_parser* p, const char* at, std::size_t len) {
  MessageParser* s = self(p);
  if (s->headers_done_) return 0;  // trailers are dropped
  if (s->in_value_ || s->head_.headers.empty()) {
    s->head_.headers.emplace_back();
    s->in_value_ = false;
  }
  return s->extend(s->head_.headers.back().name, at, len) ? 0 : -1;
}

int MessageParser::on_header_value(http_parser* p, const char* at, std::size_t len) {
  MessageParser* s = self(p);
  if (s->headers_done_) return 0;
  s->in_value_ = true;
  if (s->head_.headers.empty()) return 0;
  return s->extend(s->head_.headers.back().value, at, len) ? 0 : -1;
}

int MessageParser::on_headers_complete(http_parser* p) {
  MessageParser* s = self(p);
  s->headers_done_ = true;
  for (auto& h : s->head_.headers) h.value = trim(h.value);
  if (s->kind_ == Kind::kRequest) {
    s->head_.method = http_method_str(static_cast<http_method>(p->method));
  } else {
    s->head_.status = static_cast<int>(p->status_code);
    if (s->head_request_) return 1;  // a response to HEAD has no body
  }
  return 0;
}

int MessageParser::on_chunk_header(http_parser* p) {
  MessageParser* s = self(p);
  // A chunk that alone would take the body past the limit is refused before any of it arrives.
  if (s->kind_ == Kind::kRequest && p->content_length > s->max_body_bytes_ - s->body_bytes_) {
    s->fail(ParseError::kBodyTooLarge, "request body exceeds max_body_bytes");
    return -1;
  }
  return 0;
}

int MessageParser::on_body(http_parser* p, const char* at, std::size_t len) {
  MessageParser* s = self(p);
  s->body_bytes_ += len;
  if (s->kind_ == Kind::kRequest && s->body_bytes_ > s->max_body_bytes_) {
    s->fail(ParseError::kBodyTooLarge, "request body exceeds max_body_bytes");
    return -1;
  }
  if (s->sink_ != nullptr) s->sink_->on_body_data(at, len);
  return 0;
}

int MessageParser::on_message_complete(http_parser* p) {
  MessageParser* s = self(p);
  s->complete_ = true;
  http_parser_pause(p, 1);  // stop at the message boundary: pipelined bytes stay unread
  return 0;
}

}  // namespace fmp::proxy::http
