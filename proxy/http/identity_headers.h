// What the FHIR server is told about the client: the identity headers, computed once per connection
// from the verified certificate, and the set of header names a client may never send upstream.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "policy/identity.h"
#include "proxy/config/proxy_config.h"

namespace fmp::proxy::http {

/// Header names (lowercase) that the proxy owns: every configured identity header name,
/// X-Forwarded-Client-Cert, Client-Cert, Client-Cert-Chain, X-Forwarded-For/-Proto/-Host and
/// Forwarded. Every incoming copy of these, in any letter case and with '_' for '-', is removed
/// before forwarding.
class ReservedHeaders {
 public:
  explicit ReservedHeaders(const IdentityHeaderNames& names);
  bool contains(std::string_view name) const;

 private:
  std::vector<std::string> lower_;
};

/// Makes a value safe for a header: control characters and non-ASCII bytes become %XX, and in
/// list items (`list_item`) ',' becomes %2C, so a certificate can never inject a header or list
/// item.
std::string header_safe(std::string_view value, bool list_item);

/// The identity header lines ("Name: value\r\n" ...) for a verified identity; empty for an
/// anonymous one. The rule header is not part of it (it changes per request). A header whose value
/// would be empty is not sent. With `xfcc`/`rfc9440`, X-Forwarded-Client-Cert (Envoy's format) and
/// Client-Cert/Client-Cert-Chain (RFC 9440) are added.
std::string identity_header_block(const policy::Identity& id, const IdentityHeaderNames& names);

}  // namespace fmp::proxy::http
