// The verified identity of a TLS client, as plain data.
//
// Produced once per connection by x509_identity.h from a chain that OpenSSL already verified, and
// then only read: by the policy engine (rules match on it) and by the proxy (identity headers,
// audit). Nothing here touches OpenSSL, so rules are tested with hand-built identities.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace fmp::policy {

/// One attribute value of a distinguished name. Multi-valued RDNs are flattened: each AVA is one
/// entry.
struct DnAttribute {
  std::string type;  ///< short name as OpenSSL knows it ("CN", "O", "OU", "C", ...) or a dotted OID
  std::string value;  ///< the value as UTF-8
};

/// A distinguished name: the RFC 4514 string (OpenSSL XN_FLAG_RFC2253: most specific RDN first, ","
/// with no spaces) plus every attribute value in certificate order.
struct DistinguishedName {
  std::string rfc4514;
  std::vector<DnAttribute> attributes;

  /// Every value of attribute `type` (exact, case-sensitive short name), in certificate order.
  std::vector<std::string_view> values(std::string_view type) const {
    std::vector<std::string_view> out;
    for (const auto& a : attributes)
      if (a.type == type) out.emplace_back(a.value);
    return out;
  }
};

/// Everything a rule or an identity header can use about a client certificate.
/// `present == false` is the anonymous client (`client_cert: request` without a certificate): no
/// identity key of any rule matches it.
struct Identity {
  bool present = false;
  DistinguishedName subject;
  DistinguishedName issuer;
  std::vector<std::string> san_uri;
  std::vector<std::string> san_dns;
  std::vector<std::string> san_email;
  std::vector<std::string> san_ip;         ///< textual (IPv4 dotted, IPv6 RFC 5952)
  std::vector<std::string> cert_policies;  ///< certificatePolicies OIDs, dotted
  std::vector<std::string> hipaa;  ///< HIPAA category names, deduplicated, in discovery order
  std::vector<std::string>
      notes;               ///< why something was ignored (malformed extension, ...); never grants
  std::string serial_hex;  ///< uppercase hex, as OpenSSL prints it
  std::string fingerprint_sha256;  ///< lowercase hex of SHA-256 over the DER leaf, no colons
  std::int64_t not_before = 0;     ///< unix seconds
  std::int64_t not_after = 0;      ///< unix seconds
  std::string trust;               ///< the trust community whose bundle verified the chain
  std::string leaf_pem;            ///< the leaf certificate, PEM (for XFCC / RFC 9440 headers)
  std::vector<std::string>
      chain_der_b64;  ///< intermediates (not the leaf), base64 DER, leaf-most first
};

}  // namespace fmp::policy
