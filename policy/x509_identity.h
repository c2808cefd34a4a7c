// Identity extraction from an X.509 certificate (the only OpenSSL user in policy/).
#pragma once

#include <openssl/x509.h>

#include <string>
#include <vector>

#include "policy/hipaa.h"
#include "policy/identity.h"
#include "policy/ssl_ptr.h"

namespace fmp::policy {

/// Builds the Identity of `leaf` (already verified, or shown by `explain` regardless). `chain`
/// holds the intermediates presented by the client (may be null; the leaf itself is skipped if
/// present). `trust` is the community whose bundle verified it ("" if none). Never throws on
/// malformed extensions: they are skipped and a note is added; a malformed value never grants a
/// category. A null `leaf` yields an identity with `present == false`.
///
/// What is read, and what counts as malformed (fail closed: malformed parts are dropped, never
/// guessed):
/// - subject/issuer: `rfc4514` is exactly X509_NAME_print_ex(..., XN_FLAG_RFC2253), so the bytes
///   >= 0x80 of non-ASCII values appear escaped as `\XX`; each attribute's `value` is real UTF-8.
///   A value with no UTF-8 form (or holding a NUL) is kept as RFC 4514's `#` + hex of its DER,
///   with a note.
/// - subjectAltName, certificatePolicies and every `hipaa.extensions` OID: an extension present
///   more than once, or whose value is not exactly one DER value of the expected type (trailing
///   bytes included), is ignored entirely, with a note.
/// - SAN URI/DNS/email entries must be non-empty printable ASCII without spaces (0x21-0x7e), IP
///   entries 4 or 16 bytes; others are skipped one by one, with a note. Other SAN kinds: ignored.
/// - HIPAA categories, deduplicated in discovery order: certificatePolicies OIDs mapped through
///   `hipaa.categories`, then each `hipaa.extensions` value: an OID (mapped through
///   `hipaa.categories`; unmapped -> note), a UTF8String/PrintableString/IA5String (the category
///   name itself), or a SEQUENCE of those. Any other element type, or a nested SEQUENCE, makes
///   the whole value malformed (nothing of it granted). A category string carried by a
///   certificate must match `[a-z0-9-]{1,64}`; other strings are ignored one by one, with a note.
/// - Errors OpenSSL raises while decoding are dropped from the thread's error queue on return.
Identity extract_identity(X509* leaf, STACK_OF(X509) * chain, const HipaaConfig& hipaa,
                          const std::string& trust);

/// Convenience for tools and tests: reads every certificate in a PEM file (leaf first, file order).
/// Other PEM blocks (keys, ...) and text between blocks are skipped. Throws std::runtime_error with
/// the path and the reason when the file is unreadable, holds a damaged certificate block, or holds
/// no certificate.
std::vector<ssl::X509Ptr> read_pem_certificates(const std::string& path);

}  // namespace fmp::policy
