// Client-certificate verification against several trust communities, each with its own CA bundle
// and CRLs. Shared by the TLS listener (during the handshake) and by `explain`.
#pragma once

#include <openssl/x509.h>

#include <ctime>
#include <memory>
#include <string>
#include <vector>

#include "policy/ssl_ptr.h"
#include "proxy/config/proxy_config.h"

namespace fmp::proxy::tls {

/// Why a chain was refused. The metric label set of fhir_mtls_proxy_tls_handshakes_total{reason}.
enum class VerifyReason {
  kNone,           ///< verified
  kNoCertificate,  ///< the client sent none
  kUntrusted,      ///< no community's bundle anchors the chain (or bad signature / unusable chain)
  kExpired,
  kNotYetValid,
  kRevoked,
  kProtocol,  ///< TLS protocol failure before certificates were judged (handshake layer only)
  kOther,     ///< anything else, including a missing or stale CRL (fail closed)
};
std::string_view to_string(VerifyReason r);

struct VerifyResult {
  bool ok = false;
  VerifyReason reason = VerifyReason::kOther;
  std::string community;  ///< the community that verified it (ok), or the closest one tried
  std::string message;    ///< OpenSSL's text for the error, with depth
  int openssl_error = 0;  ///< X509_V_ERR_*
  /// When ok: the first moment the same verification could turn out differently with the same trust
  /// (earliest notAfter in the verified chain, earliest nextUpdate of the community's CRLs). A
  /// resumed session past it is not trusted without a new full handshake. 0 when not ok.
  std::time_t valid_until = 0;
};

/// Immutable once built; safe to share between threads. Each community is verified with its own
/// X509_STORE: its CAs, and when it lists CRLs, CRL checking of the whole chain (leaf and
/// intermediates). A community with CRLs where a CA has none, or a CRL past nextUpdate, fails
/// closed (kOther).
class TrustStore {
 public:
  /// Reads every CA and CRL file. Throws policy::ConfigError positioned at the proxy.yaml line
  /// naming the bad file (config_file is that proxy.yaml).
  static std::shared_ptr<const TrustStore> load(const std::vector<TrustCommunity>& communities,
                                                const std::string& config_file);

  /// Verifies `leaf` with the untrusted intermediates `chain` (may be null) at time `now`.
  /// Communities are tried in configuration order; the first that verifies wins. On failure the
  /// reason reported is the most specific one found (revoked > expired > not_yet_valid > other >
  /// untrusted).
  VerifyResult verify(X509* leaf, STACK_OF(X509) * chain, std::time_t now) const;

  /// Every CA certificate of every community (for the CertificateRequest's acceptable CA list).
  std::vector<X509*> all_cas() const;

  struct Expiry {
    std::string label;            ///< "trust:NAME"
    std::time_t not_after;        ///< earliest CA notAfter in the bundle
    std::time_t crl_next_update;  ///< earliest CRL nextUpdate of the community; 0 without CRLs
  };
  std::vector<Expiry> expiries() const;

  ~TrustStore();
  TrustStore(const TrustStore&) = delete;
  TrustStore& operator=(const TrustStore&) = delete;

 private:
  TrustStore();
  struct Community;
  std::vector<std::unique_ptr<Community>> communities_;
};

}  // namespace fmp::proxy::tls
