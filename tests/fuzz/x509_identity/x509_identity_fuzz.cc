// Fuzz driver: identity extraction from a client certificate (DER -> d2i_X509 ->
// policy::extract_identity), with a HIPAA configuration that reads private extensions too.
//
// Invariants (the contract of x509_identity.h): never throws; the identity is present; every
// HIPAA category matches [a-z0-9-]{1,64} and appears once; SAN URI/DNS/email entries are non-empty
// printable ASCII without spaces; the fingerprint is 64 lowercase hex digits; the leaf given again
// in the chain is skipped; OpenSSL's error queue is left empty.
#include <openssl/err.h>
#include <openssl/x509.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <set>
#include <string>

#include "policy/hipaa.h"
#include "policy/ssl_ptr.h"
#include "policy/x509_identity.h"

namespace {

using namespace fmp::policy;

void check(bool ok) {
  if (!ok) std::abort();
}

bool printable_no_space(const std::string& s) {
  if (s.empty()) return false;
  for (const char c : s)
    if (c < 0x21 || c > 0x7e) return false;
  return true;
}

bool category_name(const std::string& s) {
  if (s.empty() || s.size() > 64) return false;
  for (const char c : s)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
  return true;
}

HipaaConfig fuzz_hipaa() {
  HipaaConfig h = HipaaConfig::directtrust_defaults();
  h.categories["1.3.6.1.4.1.99999.5"] = "research";
  h.extensions = {"1.3.6.1.4.1.99999.1", "1.3.6.1.4.1.99999.2"};
  return h;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const HipaaConfig hipaa = fuzz_hipaa();
  const unsigned char* p = data;
  fmp::ssl::X509Ptr cert(d2i_X509(nullptr, &p, static_cast<long>(size)));
  ERR_clear_error();
  if (!cert) return 0;

  fmp::ssl::X509StackPtr chain(sk_X509_new_null());
  check(chain != nullptr);
  X509_up_ref(cert.get());
  if (sk_X509_push(chain.get(), cert.get()) <= 0) X509_free(cert.get());

  const Identity id = extract_identity(cert.get(), chain.get(), hipaa, "fuzz");
  check(ERR_peek_error() == 0);
  check(id.present);
  check(id.trust == "fuzz");
  check(id.chain_der_b64.empty());
  check(id.fingerprint_sha256.size() == 64);
  for (const char c : id.fingerprint_sha256)
    check((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'));
  std::set<std::string> seen;
  for (const auto& h : id.hipaa) {
    check(category_name(h));
    check(seen.insert(h).second);
  }
  for (const auto& s : id.san_uri) check(printable_no_space(s));
  for (const auto& s : id.san_dns) check(printable_no_space(s));
  for (const auto& s : id.san_email) check(printable_no_space(s));
  return 0;
}
