#include "proxy/config/address.h"

#include <arpa/inet.h>

#include <cstring>

namespace fmp::proxy {
namespace {

bool parse_port(std::string_view s, std::uint16_t& port, std::string& why) {
  if (s.empty() || s.size() > 5) {
    why = "the port must be a number from 1 to 65535";
    return false;
  }
  unsigned v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') {
      why = "the port must be a number from 1 to 65535";
      return false;
    }
    v = v * 10 + static_cast<unsigned>(c - '0');
  }
  if (v == 0 || v > 65535) {
    why = "the port must be a number from 1 to 65535";
    return false;
  }
  port = static_cast<std::uint16_t>(v);
  return true;
}

bool is_ipv4(const std::string& s) {
  in_addr a{};
  return inet_pton(AF_INET, s.c_str(), &a) == 1;
}

bool is_ipv6(const std::string& s) {
  in6_addr a{};
  return inet_pton(AF_INET6, s.c_str(), &a) == 1;
}

/// RFC 1123 host name: dot-separated labels of letters, digits and '-', not starting or ending in
/// '-'.
bool is_dns_name(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  std::size_t start = 0;
  while (start <= s.size()) {
    std::size_t end = s.find('.', start);
    if (end == std::string_view::npos) end = s.size();
    const std::string_view label = s.substr(start, end - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-')
      return false;
    for (char c : label)
      if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-'))
        return false;
    start = end + 1;
    if (end == s.size()) break;
  }
  return true;
}

/// Splits "host:port" / "[v6]:port" / "host" (when the port is optional).
bool split_host_port(std::string_view s, std::string& host, std::string_view& port, bool& bracketed,
                     std::string& why) {
  bracketed = false;
  port = {};
  if (!s.empty() && s.front() == '[') {
    const std::size_t close = s.find(']');
    if (close == std::string_view::npos) {
      why = "missing ']' after the IPv6 address";
      return false;
    }
    host = std::string(s.substr(1, close - 1));
    bracketed = true;
    const std::string_view rest = s.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') {
        why = "expected ':' and a port after ']'";
        return false;
      }
      port = rest.substr(1);
      if (port.empty()) {
        why = "the port must be a number from 1 to 65535";
        return false;
      }
    }
    if (!is_ipv6(host)) {
      why = "not an IPv6 address inside the brackets";
      return false;
    }
    return true;
  }
  const std::size_t colon = s.rfind(':');
  if (colon != std::string_view::npos && s.find(':') != colon) {
    why = "an IPv6 address must be written in brackets, e.g. \"[::1]:8443\"";
    return false;
  }
  host = std::string(s.substr(0, colon));
  if (colon != std::string_view::npos) {
    port = s.substr(colon + 1);
    if (port.empty()) {
      why = "the port must be a number from 1 to 65535";
      return false;
    }
  }
  return true;
}

bool is_pchar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         (c != '\0' && std::strchr("-._~!$&'()*+,;=:@", c) != nullptr);
}

/// Checks "/seg/seg" (non-empty): no empty or dot segments, only pchar (no escapes).
bool valid_path_segments(std::string_view p, std::string& why) {
  std::size_t start = 1;
  while (start <= p.size()) {
    std::size_t end = p.find('/', start);
    if (end == std::string_view::npos) end = p.size();
    const std::string_view seg = p.substr(start, end - start);
    if (seg.empty()) {
      why = "empty path segment (\"//\")";
      return false;
    }
    if (seg == "." || seg == "..") {
      why = "dot segment in the path";
      return false;
    }
    for (char c : seg)
      if (!is_pchar(c)) {
        why = std::string("character '") + c + "' is not allowed in the path";
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
          why = "control character in the path";
        return false;
      }
    if (end == p.size()) break;
    start = end + 1;
  }
  return true;
}

}  // namespace

bool parse_listen_address(std::string_view s, std::string& host, std::uint16_t& port,
                          std::string& why) {
  std::string h;
  std::string_view p;
  bool bracketed = false;
  if (!split_host_port(s, h, p, bracketed, why)) return false;
  if (p.data() == nullptr || p.empty()) {
    why = "expected host:port (IPv6 as \"[::1]:8443\")";
    return false;
  }
  if (!bracketed && !is_ipv4(h)) {
    why = h.empty() ? "missing the address before ':' (use 0.0.0.0 for every IPv4 address)"
                    : "the host must be an IPv4 address or a bracketed IPv6 address, not a name";
    return false;
  }
  if (!parse_port(p, port, why)) return false;
  host = h;
  return true;
}

bool parse_upstream_url(std::string_view s, UpstreamUrl& out, std::string& why) {
  const std::size_t sep = s.find("://");
  if (sep == std::string_view::npos) {
    why = "expected http://host[:port][/path] or https://...";
    return false;
  }
  std::string scheme(s.substr(0, sep));
  for (char& c : scheme)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  if (scheme != "http" && scheme != "https") {
    why = "the scheme must be http or https";
    return false;
  }
  UpstreamUrl u;
  u.https = scheme == "https";
  const std::string_view rest = s.substr(sep + 3);
  if (rest.find_first_of("?#") != std::string_view::npos) {
    why = "a query or fragment is not allowed";
    return false;
  }
  const std::size_t slash = rest.find('/');
  const std::string_view authority = rest.substr(0, slash);
  const std::string_view path = slash == std::string_view::npos ? "" : rest.substr(slash);
  if (authority.find('@') != std::string_view::npos) {
    why = "user information (user@host) is not allowed";
    return false;
  }
  if (authority.empty()) {
    why = "missing the host";
    return false;
  }
  std::string_view port;
  bool bracketed = false;
  if (!split_host_port(authority, u.host, port, bracketed, why)) return false;
  if (!bracketed && !is_ipv4(u.host) && !is_dns_name(u.host)) {
    why = u.host.empty() ? "missing the host" : "invalid host name";
    return false;
  }
  if (port.data() != nullptr && !port.empty()) {
    if (!parse_port(port, u.port, why)) return false;
  } else {
    u.port = u.https ? 443 : 80;
  }
  std::string_view p = path;
  while (p.size() > 1 && p.back() == '/') p.remove_suffix(1);
  if (p == "/") p = "";
  if (!p.empty() && !valid_path_segments(p, why)) return false;
  u.base_path = std::string(p);
  out = u;
  return true;
}

bool valid_fhir_base(std::string_view s, std::string& why) {
  if (s.empty() || s.front() != '/') {
    why = "must start with '/'";
    return false;
  }
  if (s == "/") return true;
  if (s.back() == '/') {
    why = "must not end with '/' (write \"/fhir\", or \"/\" for the root)";
    return false;
  }
  return valid_path_segments(s, why);
}

}  // namespace fmp::proxy
