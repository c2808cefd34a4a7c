#include "proxy/http/forward_head.h"

#include <array>
#include <charconv>
#include <vector>

namespace fmp::proxy::http {
namespace {

/// The names listed in a head's Connection headers (comma-separated tokens), which are hop-by-hop
/// too. The usual handful is kept inline; only a head listing more than kInline names allocates.
class ConnectionTokens {
 public:
  explicit ConnectionTokens(const MessageHead& head) {
    for (const auto& h : head.headers) {
      if (!iequals(h.name, "connection")) continue;
      std::string_view v = h.value;
      while (!v.empty()) {
        const auto comma = v.find(',');
        std::string_view tok = v.substr(0, comma);
        while (!tok.empty() && (tok.front() == ' ' || tok.front() == '\t')) tok.remove_prefix(1);
        while (!tok.empty() && (tok.back() == ' ' || tok.back() == '\t')) tok.remove_suffix(1);
        if (!tok.empty()) add(tok);
        if (comma == std::string_view::npos) break;
        v.remove_prefix(comma + 1);
      }
    }
  }

  bool listed(std::string_view name) const {
    for (std::size_t i = 0; i < count_ && i < kInline; ++i)
      if (iequals(inline_[i], name)) return true;
    for (auto t : more_)
      if (iequals(t, name)) return true;
    return false;
  }

 private:
  static constexpr std::size_t kInline = 16;

  void add(std::string_view tok) {
    if (count_ < kInline)
      inline_[count_] = tok;
    else
      more_.push_back(tok);
    ++count_;
  }

  std::array<std::string_view, kInline> inline_{};
  std::size_t count_ = 0;
  std::vector<std::string_view> more_;
};

/// Connection, Keep-Alive, Proxy-Connection, TE, Trailer, Upgrade (any case). Dispatches on the
/// length so that most names cost one comparison of sizes.
bool always_hop_by_hop(std::string_view name) {
  switch (name.size()) {
    case 2:
      return iequals(name, "te");
    case 7:
      return iequals(name, "trailer") || iequals(name, "upgrade");
    case 10:
      return iequals(name, "connection") || iequals(name, "keep-alive");
    case 16:
      return iequals(name, "proxy-connection");
    default:
      return false;
  }
}

/// The request's own framing and expectation: the proxy re-frames the body and answers Expect.
bool request_framing(std::string_view name) {
  switch (name.size()) {
    case 6:
      return iequals(name, "expect");
    case 14:
      return iequals(name, "content-length");
    case 17:
      return iequals(name, "transfer-encoding");
    default:
      return false;
  }
}

void append_header(std::string& out, std::string_view name, std::string_view value) {
  out.append(name);
  out.append(": ");
  out.append(value);
  out.append("\r\n");
}

/// Appends the decimal digits of `n`.
template <typename Integer>
void append_number(std::string& out, Integer n) {
  std::array<char, 24> digits{};
  const auto r = std::to_chars(digits.data(), digits.data() + digits.size(), n);
  out.append(digits.data(), r.ptr);
}

}  // namespace

void append_forward_request_head(std::string& out, const MessageHead& req,
                                 const ReservedHeaders& reserved, const ForwardAdditions& add,
                                 const BodyFraming& framing) {
  const ConnectionTokens tokens(req);
  out.reserve(out.size() + req.head_bytes + add.identity_block.size() + 256);
  out.append(req.method);
  out.push_back(' ');
  out.append(req.target);
  out.append(" HTTP/1.1\r\n");
  std::string_view host;
  bool has_host = false;
  for (const auto& h : req.headers) {
    if (always_hop_by_hop(h.name) || request_framing(h.name) || reserved.contains(h.name)) continue;
    const bool is_host = iequals(h.name, "host");
    if (!is_host && tokens.listed(h.name)) continue;  // "Connection: Host" must not strip it
    if (is_host) {
      host = h.value;
      has_host = true;
    }
    append_header(out, h.name, h.value);
  }
  if (!has_host && !add.default_host.empty()) append_header(out, "Host", add.default_host);
  out.append(add.identity_block);
  if (!add.rule.empty()) append_header(out, add.rule_header, add.rule);
  append_header(out, "X-Forwarded-For", add.client_address);
  out.append("X-Forwarded-Proto: https\r\n");
  if (!host.empty()) append_header(out, "X-Forwarded-Host", host);
  if (framing.chunked) {
    out.append("Transfer-Encoding: chunked\r\n");
  } else if (framing.content_length) {
    out.append("Content-Length: ");
    append_number(out, *framing.content_length);
    out.append("\r\n");
  }
  out.append("\r\n");
}

std::string forward_request_head(const MessageHead& req, const ReservedHeaders& reserved,
                                 const ForwardAdditions& add, const BodyFraming& framing) {
  std::string out;
  append_forward_request_head(out, req, reserved, add, framing);
  return out;
}

void append_forward_response_head(std::string& out, const MessageHead& resp, bool close) {
  const ConnectionTokens tokens(resp);
  out.reserve(out.size() + resp.head_bytes + 32);
  out.append("HTTP/1.1 ");
  append_number(out, resp.status);
  out.push_back(' ');
  out.append(resp.reason);
  out.append("\r\n");
  for (const auto& h : resp.headers) {
    if (always_hop_by_hop(h.name) || tokens.listed(h.name)) continue;
    append_header(out, h.name, h.value);
  }
  if (close) out.append("Connection: close\r\n");
  out.append("\r\n");
}

std::string forward_response_head(const MessageHead& resp, bool close) {
  std::string out;
  append_forward_response_head(out, resp, close);
  return out;
}

}  // namespace fmp::proxy::http
