// Test helper: mints X.509 certificates in-process with the OpenSSL API (header-only, so it is not
// globbed as a test file). Every certificate goes through a DER round trip before it is handed out,
// so tests see what the proxy sees: a certificate OpenSSL decoded from the wire.
#pragma once

#include <openssl/asn1.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdint>
#include <ctime>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "policy/ssl_ptr.h"

namespace fmp::policy::testcerts {

using ExtensionPtr = std::unique_ptr<X509_EXTENSION, ssl::Deleter<X509_EXTENSION_free>>;
using OctetStringPtr = std::unique_ptr<ASN1_OCTET_STRING, ssl::Deleter<ASN1_OCTET_STRING_free>>;
using Asn1StringPtr = std::unique_ptr<ASN1_STRING, ssl::Deleter<ASN1_STRING_free>>;
using Asn1TypePtr = std::unique_ptr<ASN1_TYPE, ssl::Deleter<ASN1_TYPE_free>>;
using Bytes = std::vector<unsigned char>;

inline void require(bool ok, const char* what) {
  if (!ok) throw std::runtime_error(std::string("test cert minting failed: ") + what);
}

/// One attribute of a name. `new_rdn == false` joins the previous RDN (a multi-valued RDN).
/// `encoding` MBSTRING_UTF8 lets OpenSSL pick the string type; a V_ASN1_* type stores the bytes as
/// is.
struct NameEntry {
  std::string type;
  std::string utf8_value;
  bool new_rdn = true;
  int encoding = MBSTRING_UTF8;
};

/// An extension given as raw DER bytes (for values OpenSSL's config syntax cannot express).
struct RawExtension {
  std::string oid;
  Bytes der;
  bool critical = false;
};

struct CertSpec {
  std::vector<NameEntry> subject{{"CN", "leaf"}};
  std::vector<NameEntry> issuer{{"CN", "Test CA"}};
  std::uint64_t serial = 0x1001;
  std::int64_t not_before = 1700000000;                      // 2023-11-14T22:13:20Z (UTCTime)
  std::int64_t not_after = 1800000000;                       // 2027-01-15T08:00:00Z (UTCTime)
  std::vector<std::pair<int, std::string>> conf_extensions;  // NID + OpenSSL config value
  std::vector<std::string> policy_oids;                      // certificatePolicies, when non-empty
  std::vector<RawExtension> raw_extensions;
};

inline ssl::EvpPkeyPtr make_key() {
  ssl::EvpPkeyPtr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  require(key != nullptr, "EVP_PKEY_Q_keygen");
  return key;
}

inline ssl::X509NamePtr make_name(const std::vector<NameEntry>& entries) {
  ssl::X509NamePtr name(X509_NAME_new());
  require(name != nullptr, "X509_NAME_new");
  for (const auto& e : entries) {
    // loc -1 appends; set 0 starts a new RDN, set -1 adds to the last RDN.
    require(X509_NAME_add_entry_by_txt(name.get(), e.type.c_str(), e.encoding,
                                       reinterpret_cast<const unsigned char*>(e.utf8_value.data()),
                                       static_cast<int>(e.utf8_value.size()), -1,
                                       e.new_rdn ? 0 : -1) == 1,
            "X509_NAME_add_entry_by_txt");
  }
  return name;
}

inline ssl::X509Ptr der_round_trip(X509* cert) {
  unsigned char* der = nullptr;
  const int len = i2d_X509(cert, &der);
  require(len > 0, "i2d_X509");
  const unsigned char* p = der;
  ssl::X509Ptr out(d2i_X509(nullptr, &p, len));
  OPENSSL_free(der);
  require(out != nullptr, "d2i_X509");
  return out;
}

inline void add_raw_extension(X509* cert, const RawExtension& raw) {
  ssl::Asn1ObjectPtr obj(OBJ_txt2obj(raw.oid.c_str(), 1));
  require(obj != nullptr, "OBJ_txt2obj");
  OctetStringPtr value(ASN1_OCTET_STRING_new());
  require(value != nullptr && ASN1_OCTET_STRING_set(value.get(), raw.der.data(),
                                                    static_cast<int>(raw.der.size())) == 1,
          "ASN1_OCTET_STRING_set");
  ExtensionPtr ext(
      X509_EXTENSION_create_by_OBJ(nullptr, obj.get(), raw.critical ? 1 : 0, value.get()));
  require(ext != nullptr, "X509_EXTENSION_create_by_OBJ");
  require(X509_add_ext(cert, ext.get(), -1) == 1, "X509_add_ext");
}

inline void add_policies(X509* cert, const std::vector<std::string>& oids) {
  ssl::CertPoliciesPtr policies(sk_POLICYINFO_new_null());
  require(policies != nullptr, "sk_POLICYINFO_new_null");
  for (const auto& oid : oids) {
    std::unique_ptr<POLICYINFO, ssl::Deleter<POLICYINFO_free>> info(POLICYINFO_new());
    require(info != nullptr, "POLICYINFO_new");
    ASN1_OBJECT_free(info->policyid);
    info->policyid = OBJ_txt2obj(oid.c_str(), 1);
    require(info->policyid != nullptr, "OBJ_txt2obj");
    require(sk_POLICYINFO_push(policies.get(), info.get()) > 0, "sk_POLICYINFO_push");
    info.release();  // owned by the stack now
  }
  require(
      X509_add1_ext_i2d(cert, NID_certificate_policies, policies.get(), 0, X509V3_ADD_APPEND) == 1,
      "X509_add1_ext_i2d");
}

/// Mints a certificate for `spec`, signed by `issuer_key` (the subject key is `subject_key`).
inline ssl::X509Ptr make_cert(const CertSpec& spec, EVP_PKEY* subject_key, EVP_PKEY* issuer_key) {
  ssl::X509Ptr cert(X509_new());
  require(cert != nullptr, "X509_new");
  require(X509_set_version(cert.get(), X509_VERSION_3) == 1, "X509_set_version");
  require(ASN1_INTEGER_set_uint64(X509_get_serialNumber(cert.get()), spec.serial) == 1, "serial");
  require(ASN1_TIME_set(X509_getm_notBefore(cert.get()), static_cast<time_t>(spec.not_before)) !=
              nullptr,
          "notBefore");
  require(
      ASN1_TIME_set(X509_getm_notAfter(cert.get()), static_cast<time_t>(spec.not_after)) != nullptr,
      "notAfter");
  auto subject = make_name(spec.subject);
  auto issuer = make_name(spec.issuer);
  require(X509_set_subject_name(cert.get(), subject.get()) == 1, "subject");
  require(X509_set_issuer_name(cert.get(), issuer.get()) == 1, "issuer");
  require(X509_set_pubkey(cert.get(), subject_key) == 1, "pubkey");
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, nullptr, cert.get(), nullptr, nullptr, 0);
  for (const auto& [nid, value] : spec.conf_extensions) {
    ExtensionPtr ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str()));
    require(ext != nullptr, "X509V3_EXT_conf_nid");
    require(X509_add_ext(cert.get(), ext.get(), -1) == 1, "X509_add_ext");
  }
  if (!spec.policy_oids.empty()) add_policies(cert.get(), spec.policy_oids);
  for (const auto& raw : spec.raw_extensions) add_raw_extension(cert.get(), raw);
  require(X509_sign(cert.get(), issuer_key, EVP_sha256()) > 0, "X509_sign");
  return der_round_trip(cert.get());
}

inline ssl::X509Ptr make_cert(const CertSpec& spec) {
  auto key = make_key();
  return make_cert(spec, key.get(), key.get());
}

// ---- DER building blocks for raw extension values (built with OpenSSL's encoders) ----

inline Bytes der_of(const ASN1_TYPE* t) {
  unsigned char* der = nullptr;
  const int len = i2d_ASN1_TYPE(t, &der);
  require(len > 0, "i2d_ASN1_TYPE");
  Bytes out(der, der + len);
  OPENSSL_free(der);
  return out;
}

inline Asn1TypePtr oid_value(const std::string& oid) {
  ssl::Asn1ObjectPtr obj(OBJ_txt2obj(oid.c_str(), 1));
  require(obj != nullptr, "OBJ_txt2obj");
  Asn1TypePtr t(ASN1_TYPE_new());
  require(t != nullptr && ASN1_TYPE_set1(t.get(), V_ASN1_OBJECT, obj.get()) == 1, "ASN1_TYPE_set1");
  return t;
}

/// A string value of ASN.1 type `type` (V_ASN1_UTF8STRING, V_ASN1_IA5STRING, V_ASN1_INTEGER
/// bytes...).
inline Asn1TypePtr string_value(int type, const std::string& bytes) {
  Asn1StringPtr s(ASN1_STRING_type_new(type));
  require(
      s != nullptr && ASN1_STRING_set(s.get(), bytes.data(), static_cast<int>(bytes.size())) == 1,
      "ASN1_STRING_set");
  Asn1TypePtr t(ASN1_TYPE_new());
  require(t != nullptr && ASN1_TYPE_set1(t.get(), type, s.get()) == 1, "ASN1_TYPE_set1");
  return t;
}

/// DER of a SEQUENCE of the given values.
inline Bytes sequence_der(const std::vector<const ASN1_TYPE*>& items) {
  struct SeqDeleter {
    void operator()(ASN1_SEQUENCE_ANY* s) const { sk_ASN1_TYPE_pop_free(s, ASN1_TYPE_free); }
  };
  std::unique_ptr<ASN1_SEQUENCE_ANY, SeqDeleter> seq(sk_ASN1_TYPE_new_null());
  require(seq != nullptr, "sk_ASN1_TYPE_new_null");
  for (const ASN1_TYPE* item : items) {
    Asn1TypePtr copy(ASN1_TYPE_new());
    require(copy != nullptr, "ASN1_TYPE_new");
    const void* value = ASN1_TYPE_get(item) == V_ASN1_OBJECT
                            ? static_cast<const void*>(item->value.object)
                            : static_cast<const void*>(item->value.asn1_string);
    require(ASN1_TYPE_set1(copy.get(), ASN1_TYPE_get(item), value) == 1, "ASN1_TYPE_set1");
    require(sk_ASN1_TYPE_push(seq.get(), copy.get()) > 0, "sk_ASN1_TYPE_push");
    copy.release();  // owned by the stack now
  }
  unsigned char* der = nullptr;
  const int len = i2d_ASN1_SEQUENCE_ANY(seq.get(), &der);
  require(len > 0, "i2d_ASN1_SEQUENCE_ANY");
  Bytes out(der, der + len);
  OPENSSL_free(der);
  return out;
}

/// A subjectAltName extension built from GENERAL_NAMEs whose bytes the test chooses exactly.
struct RawGeneralName {
  int type;  // GEN_URI, GEN_DNS, GEN_EMAIL, GEN_IPADD
  std::string bytes;
};

inline Bytes san_der(const std::vector<RawGeneralName>& names) {
  ssl::GeneralNamesPtr gens(sk_GENERAL_NAME_new_null());
  require(gens != nullptr, "sk_GENERAL_NAME_new_null");
  for (const auto& n : names) {
    std::unique_ptr<GENERAL_NAME, ssl::Deleter<GENERAL_NAME_free>> gn(GENERAL_NAME_new());
    Asn1StringPtr s(
        ASN1_STRING_type_new(n.type == GEN_IPADD ? V_ASN1_OCTET_STRING : V_ASN1_IA5STRING));
    require(gn != nullptr && s != nullptr &&
                ASN1_STRING_set(s.get(), n.bytes.data(), static_cast<int>(n.bytes.size())) == 1,
            "GENERAL_NAME");
    GENERAL_NAME_set0_value(gn.get(), n.type, s.release());
    require(sk_GENERAL_NAME_push(gens.get(), gn.get()) > 0, "sk_GENERAL_NAME_push");
    gn.release();
  }
  unsigned char* der = nullptr;
  const int len = i2d_GENERAL_NAMES(gens.get(), &der);
  require(len > 0, "i2d_GENERAL_NAMES");
  Bytes out(der, der + len);
  OPENSSL_free(der);
  return out;
}

}  // namespace fmp::policy::testcerts
