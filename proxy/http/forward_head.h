// Rewriting message heads as they cross the proxy (RFC 9110 7.6.1 hop-by-hop handling).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "proxy/http/identity_headers.h"
#include "proxy/http/message_parser.h"

namespace fmp::proxy::http {

/// How the forwarded request body is framed (the proxy re-frames; it never relays the client's
/// framing).
struct BodyFraming {
  bool chunked = false;                         ///< Transfer-Encoding: chunked
  std::optional<std::uint64_t> content_length;  ///< Content-Length: n
};

/// Everything the proxy adds to a forwarded request.
struct ForwardAdditions {
  std::string_view identity_block;  ///< from identity_header_block(), per connection
  std::string_view rule_header;     ///< configured name of the rule header
  std::string_view rule;            ///< deciding rule
  std::string_view client_address;  ///< for X-Forwarded-For
  /// Host sent when the request has none (an HTTP/1.0 client): the upstream's authority, since the
  /// forwarded request is HTTP/1.1, which requires Host. Empty: none added.
  std::string_view default_host = {};
};

/// The request head sent upstream: method, target and every end-to-end header as received (Host
/// kept, even when Connection lists it), minus hop-by-hop headers (Connection and the names it
/// lists, Keep-Alive, Proxy-Connection, TE, Trailer, Upgrade, Transfer-Encoding, Content-Length,
/// Expect) and every reserved header; plus the identity headers, the rule,
/// X-Forwarded-For/-Proto/-Host and the new framing. Always HTTP/1.1.
///
/// Appended to `out` (nothing in it is cleared or changed), so a connection can build every head
/// into one buffer it keeps: no allocation once that buffer is large enough (a Connection header
/// listing more than 16 names is the exception).
void append_forward_request_head(std::string& out, const MessageHead& req,
                                 const ReservedHeaders& reserved, const ForwardAdditions& add,
                                 const BodyFraming& framing);

/// append_forward_request_head() into a new string.
std::string forward_request_head(const MessageHead& req, const ReservedHeaders& reserved,
                                 const ForwardAdditions& add, const BodyFraming& framing);

/// The response head sent to the client: status line and end-to-end headers as received; hop-by-hop
/// headers removed except the framing (Transfer-Encoding/Content-Length pass as they are, since the
/// body is relayed with its framing). `close` adds Connection: close.
///
/// Appended to `out`, as append_forward_request_head() does.
void append_forward_response_head(std::string& out, const MessageHead& resp, bool close);

/// append_forward_response_head() into a new string.
std::string forward_response_head(const MessageHead& resp, bool close);

}  // namespace fmp::proxy::http
