// Identity extraction from an X.509 certificate. The contract is in x509_identity.h; this file only
// decodes with OpenSSL's own parsers and never grants anything from a value it could not decode.
#include "policy/x509_identity.h"

#include <arpa/inet.h>
#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/buffer.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <ctime>
#include <optional>
#include <stdexcept>
#include <string_view>
#include <utility>

namespace fmp::policy {
namespace {

using Asn1TypePtr = std::unique_ptr<ASN1_TYPE, ssl::Deleter<ASN1_TYPE_free>>;

struct Asn1SequenceDeleter {
  void operator()(ASN1_SEQUENCE_ANY* s) const { sk_ASN1_TYPE_pop_free(s, ASN1_TYPE_free); }
};
using Asn1SequencePtr = std::unique_ptr<ASN1_SEQUENCE_ANY, Asn1SequenceDeleter>;

struct OpensslFree {
  void operator()(unsigned char* p) const { OPENSSL_free(p); }
};
using OpensslBytesPtr = std::unique_ptr<unsigned char, OpensslFree>;

/// Errors raised while decoding a hostile certificate must not linger in the thread's OpenSSL error
/// queue (a later SSL_get_error on the same thread would misreport them): everything pushed while
/// this guard lives is dropped when it goes.
class ErrorQueueMark {
 public:
  ErrorQueueMark() { ERR_set_mark(); }
  ~ErrorQueueMark() { ERR_pop_to_mark(); }
  ErrorQueueMark(const ErrorQueueMark&) = delete;
  ErrorQueueMark& operator=(const ErrorQueueMark&) = delete;
};

constexpr std::size_t kMaxCategoryLength = 64;

std::string hex(const unsigned char* p, std::size_t n, bool upper) {
  static constexpr std::string_view kLower = "0123456789abcdef";
  static constexpr std::string_view kUpper = "0123456789ABCDEF";
  const std::string_view digits = upper ? kUpper : kLower;
  std::string out;
  out.reserve(n * 2);
  for (std::size_t i = 0; i < n; ++i) {
    out.push_back(digits[p[i] >> 4]);
    out.push_back(digits[p[i] & 0x0f]);
  }
  return out;
}

std::string bio_text(BIO* bio) {
  BUF_MEM* mem = nullptr;
  BIO_get_mem_ptr(bio, &mem);
  if (mem == nullptr || mem->data == nullptr) return {};
  return std::string(mem->data, mem->length);
}

/// Dotted text of an OID ("" when OpenSSL cannot print it).
std::string oid_text(const ASN1_OBJECT* obj) {
  if (obj == nullptr) return {};
  std::array<char, 128> buf{};
  const int n = OBJ_obj2txt(buf.data(), static_cast<int>(buf.size()), obj, 1);
  if (n <= 0) return {};
  if (static_cast<std::size_t>(n) < buf.size())
    return std::string(buf.data(), static_cast<std::size_t>(n));
  std::string out(static_cast<std::size_t>(n) + 1, '\0');
  if (OBJ_obj2txt(out.data(), n + 1, obj, 1) != n) return {};
  out.resize(static_cast<std::size_t>(n));
  return out;
}

/// OpenSSL's short name of an attribute type, or its dotted OID when it has none.
std::string attribute_type(const ASN1_OBJECT* obj) {
  const int nid = OBJ_obj2nid(obj);
  if (nid != NID_undef) {
    if (const char* sn = OBJ_nid2sn(nid); sn != nullptr) return sn;
  }
  return oid_text(obj);
}

/// The value as UTF-8, or nothing when it is not a string type, not valid in its encoding, or holds
/// a NUL (a NUL would let "evil\0.example.org" look like something else to a C consumer).
std::optional<std::string> utf8_value(const ASN1_STRING* s) {
  unsigned char* raw = nullptr;
  const int n = ASN1_STRING_to_UTF8(&raw, s);
  OpensslBytesPtr owned(raw);
  if (n < 0 || (n > 0 && raw == nullptr)) return std::nullopt;
  std::string value(reinterpret_cast<const char*>(raw), static_cast<std::size_t>(n));
  if (value.find('\0') != std::string::npos) return std::nullopt;
  return value;
}

/// RFC 4514's fallback for a value that has no string form: '#' and the hex of its DER encoding.
std::string der_hex_value(const ASN1_STRING* s) {
  Asn1TypePtr t(ASN1_TYPE_new());
  if (!t || ASN1_TYPE_set1(t.get(), ASN1_STRING_type(s), s) != 1) return "#";
  unsigned char* der = nullptr;
  const int len = i2d_ASN1_TYPE(t.get(), &der);
  OpensslBytesPtr owned(der);
  if (len <= 0 || der == nullptr) return "#";
  return "#" + hex(der, static_cast<std::size_t>(len), false);
}

DistinguishedName read_name(const X509_NAME* name, std::string_view which,
                            std::vector<std::string>& notes) {
  DistinguishedName dn;
  if (name == nullptr) {
    notes.push_back(std::string(which) + " name is missing");
    return dn;
  }
  ssl::BioPtr bio(BIO_new(BIO_s_mem()));
  if (bio && X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253) >= 0) {
    dn.rfc4514 = bio_text(bio.get());
  } else {
    notes.push_back(std::string(which) + " name could not be printed");
  }
  const int count = X509_NAME_entry_count(name);
  for (int i = 0; i < count; ++i) {
    const X509_NAME_ENTRY* entry = X509_NAME_get_entry(name, i);
    if (entry == nullptr) continue;
    DnAttribute attr;
    attr.type = attribute_type(X509_NAME_ENTRY_get_object(entry));
    const ASN1_STRING* data = X509_NAME_ENTRY_get_data(entry);
    if (auto v = utf8_value(data)) {
      attr.value = std::move(*v);
    } else {
      attr.value = der_hex_value(data);
      notes.push_back(std::string(which) + " attribute " + attr.type +
                      " has no valid UTF-8 form; kept as " + attr.value);
    }
    dn.attributes.push_back(std::move(attr));
  }
  return dn;
}

/// A SAN string is kept only when it is non-empty printable ASCII without spaces: that is all RFC
/// 5280 allows in these IA5String forms, and it keeps control characters out of headers and logs.
bool valid_san_text(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u > 0x20 && u < 0x7f;
  });
}

void add_san_text(const ASN1_IA5STRING* s, std::string_view kind, std::vector<std::string>& out,
                  std::vector<std::string>& notes) {
  if (s == nullptr) return;
  const auto* p = reinterpret_cast<const char*>(ASN1_STRING_get0_data(s));
  const std::string_view text(p == nullptr ? "" : p,
                              p == nullptr ? 0 : static_cast<std::size_t>(ASN1_STRING_length(s)));
  if (!valid_san_text(text)) {
    notes.push_back("subjectAltName " + std::string(kind) +
                    " entry ignored: empty or not printable ASCII");
    return;
  }
  out.emplace_back(text);
}

void add_san_ip(const ASN1_OCTET_STRING* s, std::vector<std::string>& out,
                std::vector<std::string>& notes) {
  if (s == nullptr) return;
  const unsigned char* p = ASN1_STRING_get0_data(s);
  const int len = ASN1_STRING_length(s);
  std::array<char, INET6_ADDRSTRLEN> buf{};
  const char* text = nullptr;
  if (len == 4) {
    text = inet_ntop(AF_INET, p, buf.data(), buf.size());
  } else if (len == 16) {
    text = inet_ntop(AF_INET6, p, buf.data(), buf.size());
  }
  if (text == nullptr) {
    notes.push_back("subjectAltName IP entry ignored: " + std::to_string(len) +
                    " bytes is neither IPv4 nor IPv6");
    return;
  }
  out.emplace_back(text);
}

/// The value of the extension `obj`, or null when it is absent or (with a note) present more than
/// once: RFC 5280 forbids duplicates, and picking one of them would be a guess.
const ASN1_OCTET_STRING* unique_extension(X509* leaf, const ASN1_OBJECT* obj, std::string_view name,
                                          std::vector<std::string>& notes) {
  const int idx = X509_get_ext_by_OBJ(leaf, obj, -1);
  if (idx < 0) return nullptr;
  if (X509_get_ext_by_OBJ(leaf, obj, idx) >= 0) {
    notes.push_back(std::string(name) + " appears more than once; ignored");
    return nullptr;
  }
  return X509_EXTENSION_get_data(X509_get_ext(leaf, idx));
}

/// Decodes `bytes` as exactly one value with OpenSSL's decoder `D2i`: trailing bytes make it
/// malformed (OpenSSL's own extension decoding, X509_get_ext_d2i, tolerates them; we do not).
template <typename Ptr, auto D2i>
Ptr decode_whole(const unsigned char* bytes, long len) {
  if (bytes == nullptr || len <= 0) return Ptr();
  const unsigned char* p = bytes;
  Ptr value(D2i(nullptr, &p, len));
  if (value && p != bytes + len) value.reset();
  return value;
}

template <typename Ptr, auto D2i>
Ptr decode_whole(const ASN1_STRING* s) {
  if (s == nullptr) return Ptr();
  return decode_whole<Ptr, D2i>(ASN1_STRING_get0_data(s), ASN1_STRING_length(s));
}

/// A standard extension decoded whole; null when absent, and null with a note when duplicated or
/// malformed.
template <typename Ptr, auto D2i>
Ptr standard_extension(X509* leaf, int nid, std::string_view name,
                       std::vector<std::string>& notes) {
  const ASN1_OCTET_STRING* data =
      unique_extension(leaf, OBJ_nid2obj(nid), std::string(name) + " extension", notes);
  if (data == nullptr) return Ptr();
  Ptr value = decode_whole<Ptr, D2i>(data);
  if (!value) notes.push_back(std::string(name) + " extension is malformed; ignored");
  return value;
}

void read_sans(X509* leaf, Identity& id) {
  const auto names = standard_extension<ssl::GeneralNamesPtr, d2i_GENERAL_NAMES>(
      leaf, NID_subject_alt_name, "subjectAltName", id.notes);
  if (!names) return;
  for (int i = 0; i < sk_GENERAL_NAME_num(names.get()); ++i) {
    const GENERAL_NAME* gn = sk_GENERAL_NAME_value(names.get(), i);
    if (gn == nullptr) continue;
    switch (gn->type) {
      case GEN_URI:
        add_san_text(gn->d.uniformResourceIdentifier, "URI", id.san_uri, id.notes);
        break;
      case GEN_DNS:
        add_san_text(gn->d.dNSName, "DNS", id.san_dns, id.notes);
        break;
      case GEN_EMAIL:
        add_san_text(gn->d.rfc822Name, "email", id.san_email, id.notes);
        break;
      case GEN_IPADD:
        add_san_ip(gn->d.iPAddress, id.san_ip, id.notes);
        break;
      default:  // otherName, directoryName, registeredID, ...: no rule or header uses them
        break;
    }
  }
}

void add_unique(std::vector<std::string>& out, std::string value) {
  if (std::find(out.begin(), out.end(), value) == out.end()) out.push_back(std::move(value));
}

bool valid_category(std::string_view s) {
  return !s.empty() && s.size() <= kMaxCategoryLength &&
         std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
         });
}

void read_policies(X509* leaf, const HipaaConfig& hipaa, Identity& id) {
  const auto policies = standard_extension<ssl::CertPoliciesPtr, d2i_CERTIFICATEPOLICIES>(
      leaf, NID_certificate_policies, "certificatePolicies", id.notes);
  if (!policies) return;
  for (int i = 0; i < sk_POLICYINFO_num(policies.get()); ++i) {
    const POLICYINFO* info = sk_POLICYINFO_value(policies.get(), i);
    const std::string oid = info == nullptr ? std::string() : oid_text(info->policyid);
    if (oid.empty()) {
      id.notes.push_back("certificatePolicies entry without a printable OID; ignored");
      continue;
    }
    add_unique(id.cert_policies, oid);
    if (auto it = hipaa.categories.find(oid); it != hipaa.categories.end())
      add_unique(id.hipaa, it->second);
  }
}

bool is_category_string_type(int type) {
  return type == V_ASN1_UTF8STRING || type == V_ASN1_PRINTABLESTRING || type == V_ASN1_IA5STRING;
}

/// Reads one `hipaa_extensions` extension. The value is all-or-nothing structurally: trailing
/// bytes, a type other than OID/UTF8String/PrintableString/IA5String, or a nested SEQUENCE anywhere
/// make the whole extension malformed and nothing of it is granted. Well-formed but unusable
/// elements (an OID with no mapping, a string that is not a valid category name) are skipped one by
/// one, with a note.
void read_hipaa_extension(X509* leaf, const std::string& oid, const HipaaConfig& hipaa,
                          Identity& id) {
  const std::string where = "HIPAA extension " + oid;
  ssl::Asn1ObjectPtr obj(OBJ_txt2obj(oid.c_str(), 1));
  if (!obj) {
    id.notes.push_back(where + ": not a dotted OID; ignored");
    return;
  }
  const ASN1_OCTET_STRING* data = unique_extension(leaf, obj.get(), where, id.notes);
  if (data == nullptr) return;
  const auto value = decode_whole<Asn1TypePtr, d2i_ASN1_TYPE>(data);
  if (!value) {
    id.notes.push_back(where + " is malformed (not a single DER value); ignored");
    return;
  }

  std::vector<const ASN1_TYPE*> items;
  Asn1SequencePtr sequence;
  if (ASN1_TYPE_get(value.get()) == V_ASN1_SEQUENCE) {
    sequence = decode_whole<Asn1SequencePtr, d2i_ASN1_SEQUENCE_ANY>(value->value.sequence);
    if (!sequence) {
      id.notes.push_back(where + " is a malformed SEQUENCE; ignored");
      return;
    }
    for (int i = 0; i < sk_ASN1_TYPE_num(sequence.get()); ++i)
      items.push_back(sk_ASN1_TYPE_value(sequence.get(), i));
  } else {
    items.push_back(value.get());
  }

  for (const ASN1_TYPE* item : items) {
    const int type = item == nullptr ? V_ASN1_UNDEF : ASN1_TYPE_get(item);
    if (type != V_ASN1_OBJECT && !is_category_string_type(type)) {
      id.notes.push_back(where + " holds a value that is neither an OID nor a string; ignored");
      return;
    }
  }

  for (const ASN1_TYPE* item : items) {
    if (ASN1_TYPE_get(item) == V_ASN1_OBJECT) {
      const std::string category_oid = oid_text(item->value.object);
      if (auto it = hipaa.categories.find(category_oid); it != hipaa.categories.end()) {
        add_unique(id.hipaa, it->second);
      } else {
        id.notes.push_back(where + ": OID " + category_oid + " maps to no HIPAA category; ignored");
      }
      continue;
    }
    const ASN1_STRING* s = item->value.asn1_string;
    const auto* text = reinterpret_cast<const char*>(ASN1_STRING_get0_data(s));
    const std::string category(
        text == nullptr ? "" : text,
        text == nullptr ? 0 : static_cast<std::size_t>(ASN1_STRING_length(s)));
    if (valid_category(category)) {
      add_unique(id.hipaa, category);
    } else {
      id.notes.push_back(where + ": \"" + (valid_san_text(category) ? category : "?") +
                         "\" is not a valid category name ([a-z0-9-]{1,64}); ignored");
    }
  }
}

std::optional<std::int64_t> unix_seconds(const ASN1_TIME* t) {
  std::tm tm{};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) return std::nullopt;
  using namespace std::chrono;
  const year_month_day ymd{year{tm.tm_year + 1900}, month{static_cast<unsigned>(tm.tm_mon + 1)},
                           day{static_cast<unsigned>(tm.tm_mday)}};
  if (!ymd.ok()) return std::nullopt;
  const std::int64_t days = sys_days{ymd}.time_since_epoch().count();
  return days * 86400 + std::int64_t{tm.tm_hour} * 3600 + std::int64_t{tm.tm_min} * 60 + tm.tm_sec;
}

void read_validity(const X509* leaf, Identity& id) {
  if (auto nb = unix_seconds(X509_get0_notBefore(leaf))) {
    id.not_before = *nb;
  } else {
    id.notes.push_back("notBefore could not be read");
  }
  if (auto na = unix_seconds(X509_get0_notAfter(leaf))) {
    id.not_after = *na;
  } else {
    id.notes.push_back("notAfter could not be read");
  }
}

/// Uppercase hex of the serial's magnitude bytes, "-" first when negative: what `openssl x509
/// -serial` prints, without its line breaks.
std::string serial_hex(const X509* leaf) {
  const ASN1_INTEGER* serial = X509_get0_serialNumber(leaf);
  if (serial == nullptr) return {};
  const int len = ASN1_STRING_length(serial);
  std::string out = ASN1_STRING_type(serial) == V_ASN1_NEG_INTEGER ? "-" : "";
  if (len <= 0) return out + "00";
  return out + hex(ASN1_STRING_get0_data(serial), static_cast<std::size_t>(len), true);
}

std::string fingerprint_sha256(const X509* leaf) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
  unsigned int n = 0;
  if (X509_digest(leaf, EVP_sha256(), md.data(), &n) != 1) return {};
  return hex(md.data(), n, false);
}

std::string pem_of(X509* cert) {
  ssl::BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509(bio.get(), cert) != 1) return {};
  return bio_text(bio.get());
}

std::string der_base64(X509* cert) {
  unsigned char* der = nullptr;
  const int len = i2d_X509(cert, &der);
  OpensslBytesPtr owned(der);
  if (len <= 0 || der == nullptr) return {};
  std::string out(4 * ((static_cast<std::size_t>(len) + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), der, len);
  if (n < 0) return {};
  out.resize(static_cast<std::size_t>(n));
  return out;
}

std::string openssl_error_text() {
  const unsigned long err = ERR_peek_last_error();
  if (err == 0) return "unknown error";
  std::array<char, 256> buf{};
  ERR_error_string_n(err, buf.data(), buf.size());
  return buf.data();
}

}  // namespace

Identity extract_identity(X509* leaf, STACK_OF(X509) * chain, const HipaaConfig& hipaa,
                          const std::string& trust) {
  Identity id;
  if (leaf == nullptr) {
    id.notes.push_back("no certificate");
    return id;
  }
  const ErrorQueueMark mark;
  id.present = true;
  id.trust = trust;
  id.subject = read_name(X509_get_subject_name(leaf), "subject", id.notes);
  id.issuer = read_name(X509_get_issuer_name(leaf), "issuer", id.notes);
  read_sans(leaf, id);
  read_policies(leaf, hipaa, id);
  for (const auto& oid : hipaa.extensions) read_hipaa_extension(leaf, oid, hipaa, id);
  id.serial_hex = serial_hex(leaf);
  id.fingerprint_sha256 = fingerprint_sha256(leaf);
  if (id.fingerprint_sha256.empty())
    id.notes.push_back("SHA-256 fingerprint could not be computed");
  read_validity(leaf, id);
  id.leaf_pem = pem_of(leaf);
  for (int i = 0; chain != nullptr && i < sk_X509_num(chain); ++i) {
    X509* cert = sk_X509_value(chain, i);
    if (cert == nullptr || X509_cmp(cert, leaf) == 0) continue;
    std::string b64 = der_base64(cert);
    if (b64.empty()) {
      id.notes.push_back("chain certificate " + std::to_string(i) + " could not be encoded");
      continue;
    }
    id.chain_der_b64.push_back(std::move(b64));
  }
  return id;
}

std::vector<ssl::X509Ptr> read_pem_certificates(const std::string& path) {
  const ErrorQueueMark mark;
  ssl::BioPtr bio(BIO_new_file(path.c_str(), "r"));
  if (!bio) throw std::runtime_error(path + ": cannot open: " + openssl_error_text());
  std::vector<ssl::X509Ptr> certs;
  for (;;) {
    ssl::X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    if (!cert) break;
    certs.push_back(std::move(cert));
  }
  // PEM_read_bio_X509 ends every successful read of the whole file with "no start line"; any other
  // error is a damaged certificate, and the whole file is rejected for it.
  const unsigned long err = ERR_peek_last_error();
  const bool clean_end =
      ERR_GET_LIB(err) == ERR_LIB_PEM && ERR_GET_REASON(err) == PEM_R_NO_START_LINE;
  if (err != 0 && !clean_end)
    throw std::runtime_error(path + ": unreadable certificate: " + openssl_error_text());
  if (certs.empty()) throw std::runtime_error(path + ": no PEM certificate found");
  return certs;
}

}  // namespace fmp::policy
