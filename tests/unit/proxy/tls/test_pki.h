// Test-only PKI: keys, certificates and CRLs minted with the OpenSSL API into a temporary
// directory, with exact control over validity windows, EKUs and revocation (no openssl CLI, no
// fixtures on disk).
#pragma once

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "policy/ssl_ptr.h"

namespace fmp::test_pki {

constexpr std::time_t kDay = 24 * 60 * 60;

inline void check(bool ok, const char* what) {
  if (!ok) throw std::runtime_error(std::string("test PKI: ") + what);
}

/// A fresh P-256 key (fast to generate, so every test mints its own).
inline ssl::EvpPkeyPtr make_key() {
  ssl::EvpPkeyPtr key(EVP_EC_gen("P-256"));
  check(key != nullptr, "EVP_EC_gen");
  return key;
}

struct CertSpec {
  std::string cn;
  bool ca = false;
  std::time_t not_before = 0;
  std::time_t not_after = 0;
  std::string eku = "clientAuth";  ///< extendedKeyUsage value for leaves; "" = none
  long serial = 1;
};

inline void add_ext(X509* cert, X509V3_CTX* ctx, int nid, const std::string& value) {
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, ctx, nid, value.c_str());
  check(ext != nullptr, "X509V3_EXT_conf_nid");
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

/// Signs a certificate for `key`; self-signed when `issuer` is null.
inline ssl::X509Ptr make_cert(const CertSpec& spec, EVP_PKEY* key, X509* issuer = nullptr,
                              EVP_PKEY* issuer_key = nullptr) {
  ssl::X509Ptr cert(X509_new());
  check(cert != nullptr, "X509_new");
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), spec.serial);
  ASN1_TIME_set(X509_getm_notBefore(cert.get()), spec.not_before);
  ASN1_TIME_set(X509_getm_notAfter(cert.get()), spec.not_after);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("Test PKI"), -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(spec.cn.c_str()), -1, -1, 0);
  X509_set_issuer_name(cert.get(), issuer != nullptr ? X509_get_subject_name(issuer) : name);
  X509_set_pubkey(cert.get(), key);
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer != nullptr ? issuer : cert.get(), cert.get(), nullptr, nullptr, 0);
  add_ext(cert.get(), &ctx, NID_subject_key_identifier, "hash");
  if (issuer != nullptr) add_ext(cert.get(), &ctx, NID_authority_key_identifier, "keyid:always");
  if (spec.ca) {
    add_ext(cert.get(), &ctx, NID_basic_constraints, "critical,CA:TRUE");
    add_ext(cert.get(), &ctx, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    add_ext(cert.get(), &ctx, NID_basic_constraints, "critical,CA:FALSE");
    add_ext(cert.get(), &ctx, NID_key_usage, "critical,digitalSignature");
    if (!spec.eku.empty()) add_ext(cert.get(), &ctx, NID_ext_key_usage, spec.eku);
  }
  check(X509_sign(cert.get(), issuer_key != nullptr ? issuer_key : key, EVP_sha256()) > 0,
        "X509_sign");
  return cert;
}

inline ssl::X509CrlPtr make_crl(X509* issuer, EVP_PKEY* issuer_key,
                                const std::vector<long>& revoked, std::time_t last_update,
                                std::time_t next_update) {
  ssl::X509CrlPtr crl(X509_CRL_new());
  check(crl != nullptr, "X509_CRL_new");
  X509_CRL_set_version(crl.get(), 1);
  X509_CRL_set_issuer_name(crl.get(), X509_get_subject_name(issuer));
  ASN1_TIME* t = ASN1_TIME_set(nullptr, last_update);
  X509_CRL_set1_lastUpdate(crl.get(), t);
  ASN1_TIME_set(t, next_update);
  X509_CRL_set1_nextUpdate(crl.get(), t);
  for (long serial : revoked) {
    X509_REVOKED* r = X509_REVOKED_new();
    ASN1_INTEGER* s = ASN1_INTEGER_new();
    ASN1_INTEGER_set(s, serial);
    X509_REVOKED_set_serialNumber(r, s);
    ASN1_TIME_set(t, last_update);
    X509_REVOKED_set_revocationDate(r, t);
    X509_CRL_add0_revoked(crl.get(), r);
    ASN1_INTEGER_free(s);
  }
  ASN1_TIME_free(t);
  X509_CRL_sort(crl.get());
  check(X509_CRL_sign(crl.get(), issuer_key, EVP_sha256()) > 0, "X509_CRL_sign");
  return crl;
}

template <typename Writer>
std::string bio_string(Writer write) {
  ssl::BioPtr bio(BIO_new(BIO_s_mem()));
  check(write(bio.get()) == 1, "write");
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(len));
}
inline std::string pem(X509* c) {
  return bio_string([c](BIO* b) { return PEM_write_bio_X509(b, c); });
}
inline std::string pem(X509_CRL* c) {
  return bio_string([c](BIO* b) { return PEM_write_bio_X509_CRL(b, c); });
}
inline std::string der(X509_CRL* c) {
  return bio_string([c](BIO* b) { return i2d_X509_CRL_bio(b, c); });
}
inline std::string pem(EVP_PKEY* k) {
  return bio_string([k](BIO* b) {
    return PEM_write_bio_PrivateKey(b, k, nullptr, nullptr, 0, nullptr, nullptr);
  });
}

/// A private temporary directory, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "fmp-tls-XXXXXX").string();
    check(mkdtemp(tmpl.data()) != nullptr, "mkdtemp");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  /// Writes `content` to NAME in the directory and returns its full path.
  std::string write(const std::string& name, const std::string& content) const {
    std::string p = (path_ / name).string();
    std::ofstream out(p, std::ios::binary);
    out << content;
    check(static_cast<bool>(out), "write file");
    return p;
  }
  std::string path(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

/// A CA (or leaf) together with its key.
struct Issued {
  ssl::EvpPkeyPtr key;
  ssl::X509Ptr cert;
};

inline Issued issue(const CertSpec& spec, const Issued* issuer) {
  Issued out;
  out.key = make_key();
  out.cert = issuer != nullptr
                 ? make_cert(spec, out.key.get(), issuer->cert.get(), issuer->key.get())
                 : make_cert(spec, out.key.get());
  return out;
}

}  // namespace fmp::test_pki
