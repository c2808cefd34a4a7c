// Syntax of the addresses and URLs written in proxy.yaml. Pure string functions, no lookups.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace fmp::proxy {

/// Parses a listen address: "IPv4:port" or "[IPv6]:port", port 1-65535. Host names (even
/// "localhost") are refused on purpose: a listener binds exactly one address, chosen by the
/// operator, not by a resolver. `host` receives the address without brackets. On failure `why` says
/// what is wrong.
bool parse_listen_address(std::string_view s, std::string& host, std::uint16_t& port,
                          std::string& why);

/// An upstream URL split into its parts.
struct UpstreamUrl {
  bool https = false;
  std::string host;        ///< DNS name, IPv4, or IPv6 without brackets
  std::uint16_t port = 0;  ///< explicit, or 80 / 443 by scheme
  std::string base_path;   ///< "" or "/a/b" (never a trailing slash)
};

/// Parses "http[s]://host[:port][/path]". The scheme is case-insensitive; userinfo, query and
/// fragment are refused, as are empty segments ("//") and dot segments in the path.
bool parse_upstream_url(std::string_view s, UpstreamUrl& out, std::string& why);

/// A FHIR base path: starts with '/', no trailing '/' except the root "/" itself, no empty or dot
/// segments, only RFC 3986 path characters and no percent-escapes.
bool valid_fhir_base(std::string_view s, std::string& why);

}  // namespace fmp::proxy
