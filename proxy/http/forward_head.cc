#include "proxy/http/forward_head.h"

#include <vector>

namespace fmp::proxy::http {
namespace {

/// Names listed in Connection headers (comma-separated tokens), which are hop-by-hop too.
std::vector<std::string_view> connection_tokens(const MessageHead& head) {
  std::vector<std::string_view> out;
  for (const auto& h : head.headers) {
    if (!iequals(h.name, "connection")) continue;
    std::string_view v = h.value;
    while (!v.empty()) {
      const auto comma = v.find(',');
      std::string_view tok = v.substr(0, comma);
      while (!tok.empty() && (tok.front() == ' ' || tok.front() == '\t')) tok.remove_prefix(1);
      while (!tok.empty() && (tok.back() == ' ' || tok.back() == '\t')) tok.remove_suffix(1);
      if (!tok.empty()) out.push_back(tok);
      if (comma == std::string_view::npos) break;
      v.remove_prefix(comma + 1);
    }
  }
  return out;
}

bool listed(const std::vector<std::string_view>& tokens, std::string_view name) {
  for (auto t : tokens)
    if (iequals(t, name)) return true;
  return false;
}

bool always_hop_by_hop(std::string_view name) {
  for (std::string_view h :
       {"connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade"})
    if (iequals(h, name)) return true;
  return false;
}

void append_header(std::string& out, std::string_view name, std::string_view value) {
  out.append(name);
  out.append(": ");
  out.append(value);
  out.append("\r\n");
}

}  // namespace

std::string forward_request_head(const MessageHead& req, const ReservedHeaders& reserved,
                                 const ForwardAdditions& add, const BodyFraming& framing) {
  const auto tokens = connection_tokens(req);
  std::string out;
  out.reserve(req.head_bytes + add.identity_block.size() + 256);
  out.append(req.method);
  out.push_back(' ');
  out.append(req.target);
  out.append(" HTTP/1.1\r\n");
  std::string_view host;
  bool has_host = false;
  for (const auto& h : req.headers) {
    if (always_hop_by_hop(h.name) || iequals(h.name, "transfer-encoding") ||
        iequals(h.name, "content-length") || iequals(h.name, "expect") || reserved.contains(h.name))
      continue;
    const bool is_host = iequals(h.name, "host");
    if (!is_host && listed(tokens, h.name)) continue;  // "Connection: Host" must not strip it
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
  append_header(out, "X-Forwarded-Proto", "https");
  if (!host.empty()) append_header(out, "X-Forwarded-Host", host);
  if (framing.chunked)
    out.append("Transfer-Encoding: chunked\r\n");
  else if (framing.content_length)
    append_header(out, "Content-Length", std::to_string(*framing.content_length));
  out.append("\r\n");
  return out;
}

std::string forward_response_head(const MessageHead& resp, bool close) {
  const auto tokens = connection_tokens(resp);
  std::string out;
  out.reserve(resp.head_bytes + 32);
  out.append("HTTP/1.1 ");
  out.append(std::to_string(resp.status));
  out.push_back(' ');
  out.append(resp.reason);
  out.append("\r\n");
  for (const auto& h : resp.headers) {
    if (always_hop_by_hop(h.name) || listed(tokens, h.name)) continue;
    append_header(out, h.name, h.value);
  }
  if (close) out.append("Connection: close\r\n");
  out.append("\r\n");
  return out;
}

}  // namespace fmp::proxy::http
