// Trust communities as separate X509_STOREs.
//
// Trust anchors: only the self-signed certificates of a community's CA bundle go into its
// X509_STORE. OpenSSL treats a store certificate that is not self-signed as a trust anchor only
// with X509_V_FLAG_PARTIAL_CHAIN, which we deliberately do not set: a chain must always reach a
// configured root. The bundle's intermediates are therefore kept in an "untrusted extras" stack
// that is appended to the chain the client presented, so clients that send only their leaf still
// verify, while every intermediate must itself chain (with its signature checked) to a root of the
// same community.
#include "proxy/tls/trust_store.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509_vfy.h>

#include <algorithm>
#include <utility>

#include "policy/config_error.h"
#include "proxy/tls/asn1_time.h"
#include "proxy/tls/file_bytes.h"
#include "proxy/tls/openssl_errors.h"

namespace fmp::proxy::tls {

std::string_view to_string(VerifyReason r) {
  switch (r) {
    case VerifyReason::kNone:
      return "none";
    case VerifyReason::kNoCertificate:
      return "no_certificate";
    case VerifyReason::kUntrusted:
      return "untrusted";
    case VerifyReason::kExpired:
      return "expired";
    case VerifyReason::kNotYetValid:
      return "not_yet_valid";
    case VerifyReason::kRevoked:
      return "revoked";
    case VerifyReason::kProtocol:
      return "protocol";
    case VerifyReason::kOther:
      return "other";
  }
  return "other";
}

struct TrustStore::Community {
  std::string name;
  ssl::X509StorePtr store;          ///< the self-signed roots (+ CRLs and CRL flags)
  ssl::X509StackPtr intermediates;  ///< the bundle's other certificates: untrusted extras
  std::vector<ssl::X509Ptr> cas;    ///< every certificate of the bundle, file order
  std::time_t earliest_ca_not_after = 0;
  std::time_t earliest_crl_next_update = 0;
};

namespace {

using policy::Diagnostic;

/// Collects every problem of the trust section, so one `check` run reports them all.
class Diagnostics {
 public:
  explicit Diagnostics(const std::string& config_file) : file_(config_file) {}
  void add(const FileRef& ref, std::string message) {
    list_.push_back(Diagnostic{file_, ref.pos.line, ref.pos.column, std::move(message)});
  }
  void add(const SourcePos& pos, std::string message) {
    list_.push_back(Diagnostic{file_, pos.line, pos.column, std::move(message)});
  }
  bool empty() const { return list_.empty(); }
  std::vector<Diagnostic> take() { return std::move(list_); }

 private:
  std::string file_;
  std::vector<Diagnostic> list_;
};

std::string quoted(const std::string& s) {
  return "\"" + s + "\"";
}

/// A non-owning STACK_OF(X509): the certificates belong to someone else.
struct ShallowStackDeleter {
  void operator()(STACK_OF(X509) * s) const { sk_X509_free(s); }
};
using ShallowX509Stack = std::unique_ptr<STACK_OF(X509), ShallowStackDeleter>;

ssl::BioPtr memory_bio(const std::string& bytes) {
  return ssl::BioPtr(BIO_new_mem_buf(bytes.data(), static_cast<int>(bytes.size())));
}

/// True when the last error in the queue only says "no more PEM blocks".
bool only_end_of_pem() {
  unsigned long e = ERR_peek_last_error();
  return ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE;
}

/// Reads every certificate of a PEM CA bundle. On failure returns false with `error` set.
bool read_ca_bundle(const FileRef& ref, std::vector<ssl::X509Ptr>& out, std::string& error) {
  std::string why;
  auto bytes = read_file_bytes(ref.path, why);
  if (!bytes) {
    error = "cannot read CA file " + quoted(ref.path) + ": " + why;
    return false;
  }
  ERR_clear_error();
  auto bio = memory_bio(*bytes);
  while (X509* cert = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    out.emplace_back(cert);
  }
  if (!only_end_of_pem()) {
    error = "cannot parse CA file " + quoted(ref.path) + ": " + drain_openssl_errors();
    return false;
  }
  ERR_clear_error();
  if (out.empty()) {
    error = "no certificate in CA file " + quoted(ref.path);
    return false;
  }
  return true;
}

/// Reads the CRLs of a file: every PEM block, or else one DER CRL filling the whole file.
bool read_crl_file(const FileRef& ref, std::vector<ssl::X509CrlPtr>& out, std::string& error) {
  std::string why;
  auto bytes = read_file_bytes(ref.path, why);
  if (!bytes) {
    error = "cannot read CRL file " + quoted(ref.path) + ": " + why;
    return false;
  }
  ERR_clear_error();
  auto bio = memory_bio(*bytes);
  std::vector<ssl::X509CrlPtr> pem;
  while (X509_CRL* crl = PEM_read_bio_X509_CRL(bio.get(), nullptr, nullptr, nullptr)) {
    pem.emplace_back(crl);
  }
  bool clean_end = only_end_of_pem();
  ERR_clear_error();
  if (!pem.empty() && clean_end) {
    for (auto& c : pem) out.push_back(std::move(c));
    return true;
  }
  if (pem.empty()) {
    const auto* p = reinterpret_cast<const unsigned char*>(bytes->data());
    ssl::X509CrlPtr der(d2i_X509_CRL(nullptr, &p, static_cast<long>(bytes->size())));
    bool whole = der && p == reinterpret_cast<const unsigned char*>(bytes->data()) + bytes->size();
    ERR_clear_error();
    if (whole) {
      out.push_back(std::move(der));
      return true;
    }
  }
  error = "cannot parse CRL file " + quoted(ref.path) + " (neither PEM nor DER)";
  return false;
}

/// The bundle certificate that issued and signed `crl`, or null.
X509* crl_issuer(X509_CRL* crl, const std::vector<ssl::X509Ptr>& cas) {
  for (const auto& ca : cas) {
    if (X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(ca.get())) != 0) continue;
    EVP_PKEY* key = X509_get0_pubkey(ca.get());
    if (key != nullptr && X509_CRL_verify(crl, key) == 1) return ca.get();
  }
  ERR_clear_error();
  return nullptr;
}

std::time_t earlier(std::time_t current, std::time_t candidate) {
  if (candidate == 0) return current;
  return current == 0 ? candidate : std::min(current, candidate);
}

VerifyReason reason_of(int err) {
  switch (err) {
    case X509_V_OK:
      return VerifyReason::kNone;
    case X509_V_ERR_CERT_HAS_EXPIRED:
      return VerifyReason::kExpired;
    case X509_V_ERR_CERT_NOT_YET_VALID:
      return VerifyReason::kNotYetValid;
    case X509_V_ERR_CERT_REVOKED:
      return VerifyReason::kRevoked;
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
      return VerifyReason::kUntrusted;
    default:
      // Includes a missing CRL (UNABLE_TO_GET_CRL), a stale one (CRL_HAS_EXPIRED), a bad CRL
      // signature, a wrong purpose/EKU: all fail closed without claiming more than we know.
      return VerifyReason::kOther;
  }
}

/// How specific a failure is; the highest across communities is reported.
int specificity(VerifyReason r) {
  switch (r) {
    case VerifyReason::kRevoked:
      return 5;
    case VerifyReason::kExpired:
      return 4;
    case VerifyReason::kNotYetValid:
      return 3;
    case VerifyReason::kOther:
      return 2;
    case VerifyReason::kUntrusted:
      return 1;
    default:
      return 0;
  }
}

VerifyResult failure(std::string community, int err, int depth) {
  VerifyResult r;
  r.ok = false;
  r.openssl_error = err;
  r.reason = reason_of(err);
  if (r.reason == VerifyReason::kNone) r.reason = VerifyReason::kOther;
  r.community = std::move(community);
  r.message =
      std::string(X509_verify_cert_error_string(err)) + " (depth " + std::to_string(depth) + ")";
  return r;
}

}  // namespace

TrustStore::TrustStore() = default;
TrustStore::~TrustStore() = default;

std::shared_ptr<const TrustStore> TrustStore::load(const std::vector<TrustCommunity>& communities,
                                                   const std::string& config_file) {
  Diagnostics diags(config_file);
  std::shared_ptr<TrustStore> trust(new TrustStore());
  for (const TrustCommunity& tc : communities) {
    auto c = std::make_unique<Community>();
    c->name = tc.name;
    std::string error;
    if (!read_ca_bundle(tc.ca, c->cas, error)) {
      diags.add(tc.ca, error);
      continue;
    }
    c->store.reset(X509_STORE_new());
    c->intermediates.reset(sk_X509_new_null());
    if (!c->store || !c->intermediates) throw std::bad_alloc();
    int roots = 0;
    for (const auto& ca : c->cas) {
      c->earliest_ca_not_after =
          earlier(c->earliest_ca_not_after, asn1_to_time_t(X509_get0_notAfter(ca.get())));
      if (X509_self_signed(ca.get(), 0) == 1) {
        if (X509_STORE_add_cert(c->store.get(), ca.get()) != 1) {
          diags.add(tc.ca, "cannot add a certificate of CA file " + quoted(tc.ca.path) + ": " +
                               drain_openssl_errors());
        }
        ++roots;
      } else {
        X509_up_ref(ca.get());
        if (sk_X509_push(c->intermediates.get(), ca.get()) <= 0) {
          X509_free(ca.get());
          throw std::bad_alloc();
        }
      }
    }
    ERR_clear_error();
    if (roots == 0) {
      diags.add(tc.ca, "no self-signed root certificate in CA file " + quoted(tc.ca.path) +
                           " (an intermediate alone cannot anchor a chain)");
    }
    for (const FileRef& ref : tc.crl) {
      std::vector<ssl::X509CrlPtr> crls;
      if (!read_crl_file(ref, crls, error)) {
        diags.add(ref, error);
        continue;
      }
      for (auto& crl : crls) {
        if (crl_issuer(crl.get(), c->cas) == nullptr) {
          diags.add(ref, "CRL file " + quoted(ref.path) +
                             " is not signed by a CA of trust community " + quoted(tc.name));
          continue;
        }
        c->earliest_crl_next_update = earlier(c->earliest_crl_next_update,
                                              asn1_to_time_t(X509_CRL_get0_nextUpdate(crl.get())));
        if (X509_STORE_add_crl(c->store.get(), crl.get()) != 1) {
          diags.add(ref, "cannot add CRL file " + quoted(ref.path) + ": " + drain_openssl_errors());
        }
      }
    }
    if (!tc.crl.empty()) {
      // Leaf and every intermediate: a CA of this community without a CRL fails closed.
      X509_STORE_set_flags(c->store.get(), X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
    }
    trust->communities_.push_back(std::move(c));
  }
  if (communities.empty()) diags.add(SourcePos{}, "no trust community configured");
  if (!diags.empty()) throw policy::ConfigError(diags.take());
  return trust;
}

VerifyResult TrustStore::verify(X509* leaf, STACK_OF(X509) * chain, std::time_t now) const {
  if (leaf == nullptr) {
    VerifyResult r;
    r.reason = VerifyReason::kNoCertificate;
    r.message = "no client certificate";
    return r;
  }
  // Keep the caller's error queue as it was: verification failures are results, not errors.
  ERR_set_mark();
  std::optional<VerifyResult> best;
  for (const auto& c : communities_) {
    ShallowX509Stack untrusted(sk_X509_new_null());
    ssl::X509StoreCtxPtr ctx(X509_STORE_CTX_new());
    bool ready = untrusted && ctx;
    for (int i = 0; ready && chain != nullptr && i < sk_X509_num(chain); ++i)
      ready = sk_X509_push(untrusted.get(), sk_X509_value(chain, i)) > 0;
    for (int i = 0; ready && i < sk_X509_num(c->intermediates.get()); ++i)
      ready = sk_X509_push(untrusted.get(), sk_X509_value(c->intermediates.get(), i)) > 0;
    ready = ready && X509_STORE_CTX_init(ctx.get(), c->store.get(), leaf, untrusted.get()) == 1 &&
            X509_STORE_CTX_set_purpose(ctx.get(), X509_PURPOSE_SSL_CLIENT) == 1;
    VerifyResult r;
    if (!ready) {
      r = failure(c->name, X509_V_ERR_OUT_OF_MEM, 0);
    } else {
      X509_STORE_CTX_set_time(ctx.get(), 0, now);
      if (X509_verify_cert(ctx.get()) == 1) {
        r.ok = true;
        r.reason = VerifyReason::kNone;
        r.community = c->name;
        r.valid_until = c->earliest_crl_next_update;
        STACK_OF(X509)* verified = X509_STORE_CTX_get0_chain(ctx.get());
        for (int i = 0; verified != nullptr && i < sk_X509_num(verified); ++i) {
          r.valid_until = earlier(r.valid_until,
                                  asn1_to_time_t(X509_get0_notAfter(sk_X509_value(verified, i))));
        }
        ERR_pop_to_mark();
        return r;
      }
      int err = X509_STORE_CTX_get_error(ctx.get());
      if (err == X509_V_OK) err = X509_V_ERR_UNSPECIFIED;  // failed without saying why: fail closed
      r = failure(c->name, err, X509_STORE_CTX_get_error_depth(ctx.get()));
    }
    if (!best || specificity(r.reason) > specificity(best->reason)) best = std::move(r);
  }
  ERR_pop_to_mark();
  if (!best) best = failure("", X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY, 0);
  return *best;
}

std::vector<X509*> TrustStore::all_cas() const {
  std::vector<X509*> out;
  for (const auto& c : communities_)
    for (const auto& ca : c->cas) out.push_back(ca.get());
  return out;
}

std::vector<TrustStore::Expiry> TrustStore::expiries() const {
  std::vector<Expiry> out;
  for (const auto& c : communities_)
    out.push_back(
        Expiry{"trust:" + c->name, c->earliest_ca_not_after, c->earliest_crl_next_update});
  return out;
}

}  // namespace fmp::proxy::tls
