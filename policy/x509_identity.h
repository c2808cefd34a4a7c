// Identity extraction from an X.509 certificate (the only OpenSSL user in policy/).
#pragma once

#include <openssl/x509.h>

#include <string>
#include <vector>

#include "policy/hipaa.h"
#include "policy/identity.h"
#include "policy/ssl_ptr.h"

namespace fmp::policy {

/// Builds the Identity of `leaf` (already verified, or shown by `explain` regardless). `chain` holds the
/// intermediates presented by the client (may be null; the leaf itself is skipped if present).
/// `trust` is the community whose bundle verified it ("" if none). Never throws on malformed
/// extensions: they are skipped and a note is added; a malformed value never grants a category.
Identity extract_identity(X509* leaf, STACK_OF(X509) * chain, const HipaaConfig& hipaa,
                          const std::string& trust);

/// Convenience for tools and tests: reads every certificate in a PEM file (leaf first).
/// Throws std::runtime_error with the reason when the file is unreadable or holds no certificate.
std::vector<ssl::X509Ptr> read_pem_certificates(const std::string& path);

}  // namespace fmp::policy
