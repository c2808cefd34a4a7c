// Identity extraction from certificates minted in-process (tests/unit/policy/x509_test_certs.h).
#include "policy/x509_identity.h"

#include <doctest/doctest.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <unistd.h>
#include <algorithm>
#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

#include "tests/unit/policy/x509_test_certs.h"

namespace fmp::policy {
namespace {

using namespace testcerts;

constexpr const char* kCoveredEntity = "1.3.6.1.4.1.41179.2.1";
constexpr const char* kBusinessAssociate = "1.3.6.1.4.1.41179.2.2";
constexpr const char* kPatient = "1.3.6.1.4.1.41179.2.4";
constexpr const char* kAssurance3 = "1.3.6.1.4.1.41179.1.3";
constexpr const char* kHipaaExt = "1.3.6.1.4.1.99999.1";

using Strings = std::vector<std::string>;

Identity extract(X509* cert, const HipaaConfig& hipaa = HipaaConfig::directtrust_defaults()) {
  return extract_identity(cert, nullptr, hipaa, "directtrust");
}

bool has_note_containing(const Identity& id, const std::string& needle) {
  return std::any_of(id.notes.begin(), id.notes.end(),
                     [&](const std::string& n) { return n.find(needle) != std::string::npos; });
}

Strings attribute_pairs(const DistinguishedName& dn) {
  Strings out;
  for (const auto& a : dn.attributes) out.push_back(a.type + "=" + a.value);
  return out;
}

HipaaConfig with_extension() {
  HipaaConfig c = HipaaConfig::directtrust_defaults();
  c.extensions.push_back(kHipaaExt);
  return c;
}

ssl::X509Ptr cert_with_hipaa_value(const Bytes& der) {
  CertSpec spec;
  spec.raw_extensions.push_back({kHipaaExt, der, false});
  return make_cert(spec);
}

/// Writes `text` to a fresh file under the system temp directory; removes it when destroyed.
class TempFile {
 public:
  explicit TempFile(const std::string& text) {
    path_ = (std::filesystem::temp_directory_path() /
             ("x509_identity_test_" + std::to_string(::getpid()) + "_" +
              std::to_string(counter_++) + ".pem"))
                .string();
    std::ofstream(path_, std::ios::binary) << text;
  }
  ~TempFile() { std::filesystem::remove(path_); }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  static inline int counter_ = 0;
  std::string path_;
};

std::string pem_text(X509* cert) {
  ssl::BioPtr bio(BIO_new(BIO_s_mem()));
  REQUIRE(PEM_write_bio_X509(bio.get(), cert) == 1);
  BUF_MEM* mem = nullptr;
  BIO_get_mem_ptr(bio.get(), &mem);
  return std::string(mem->data, mem->length);
}

}  // namespace

TEST_CASE("subject and issuer: RFC 4514 strings and attributes in certificate order") {
  CertSpec spec;
  spec.subject = {
      {"C", "US"}, {"O", "Example Hospital"}, {"OU", "Cardiology"}, {"CN", "ehr-client"}};
  spec.issuer = {{"C", "US"}, {"O", "DirectTrust"}, {"CN", "Example DirectTrust CA"}};
  auto cert = make_cert(spec);
  const Identity id = extract(cert.get());

  CHECK(id.present);
  CHECK(id.trust == "directtrust");
  CHECK(id.subject.rfc4514 == "CN=ehr-client,OU=Cardiology,O=Example Hospital,C=US");
  CHECK(id.issuer.rfc4514 == "CN=Example DirectTrust CA,O=DirectTrust,C=US");
  CHECK(attribute_pairs(id.subject) ==
        Strings{"C=US", "O=Example Hospital", "OU=Cardiology", "CN=ehr-client"});
  CHECK(attribute_pairs(id.issuer) ==
        Strings{"C=US", "O=DirectTrust", "CN=Example DirectTrust CA"});
  CHECK(id.subject.values("O") == std::vector<std::string_view>{"Example Hospital"});
  CHECK(id.notes.empty());
}

TEST_CASE("RFC 4514 special characters are escaped in the string, raw in the attribute") {
  CertSpec spec;
  spec.subject = {{"O", "Smith, Jones + Co"}, {"CN", "#lead \"q\""}};
  auto cert = make_cert(spec);
  const Identity id = extract(cert.get());
  CHECK(id.subject.rfc4514 == "CN=\\#lead \\\"q\\\",O=Smith\\, Jones \\+ Co");
  CHECK(attribute_pairs(id.subject) == Strings{"O=Smith, Jones + Co", "CN=#lead \"q\""});
}

TEST_CASE("multi-valued RDN: every AVA kept, joined with + in the string") {
  CertSpec spec;
  spec.subject = {{"O", "Example"}, {"CN", "a"}, {"UID", "b", false}};
  auto cert = make_cert(spec);
  const Identity id = extract(cert.get());
  CHECK(id.subject.rfc4514 == "UID=b+CN=a,O=Example");
  CHECK(attribute_pairs(id.subject) == Strings{"O=Example", "CN=a", "UID=b"});
  CHECK(id.subject.values("UID") == std::vector<std::string_view>{"b"});
}

TEST_CASE("UTF-8 names: attribute values exact UTF-8, string as XN_FLAG_RFC2253 escapes it") {
  CertSpec spec;
  spec.subject = {
      {"C", "ES"}, {"O", "Cl\xC3\xADnica Se\xC3\xB1ora"}, {"CN", "\xE7\x97\x85\xE9\x99\xA2"}};
  auto cert = make_cert(spec);
  const Identity id = extract(cert.get());
  CHECK(id.subject.values("O") == std::vector<std::string_view>{"Cl\xC3\xADnica Se\xC3\xB1ora"});
  CHECK(id.subject.values("CN") == std::vector<std::string_view>{"\xE7\x97\x85\xE9\x99\xA2"});
  // XN_FLAG_RFC2253 includes ASN1_STRFLGS_ESC_MSB: every byte >= 0x80 of the UTF-8 form is \XX.
  CHECK(id.subject.rfc4514 == "CN=\\E7\\97\\85\\E9\\99\\A2,O=Cl\\C3\\ADnica Se\\C3\\B1ora,C=ES");
}

TEST_CASE("a value without a valid UTF-8 form is kept as #hex DER, with a note") {
  CertSpec spec;
  spec.subject = {{"O", "Example"},
                  {"CN", std::string("admin\0.evil", 11), true, V_ASN1_UTF8STRING},
                  {"OU", "\xff\xfe", true, V_ASN1_BIT_STRING}};
  auto cert = make_cert(spec);
  const Identity id = extract(cert.get());
  CHECK(attribute_pairs(id.subject) ==
        Strings{"O=Example", "CN=#0c0b61646d696e002e6576696c", "OU=#030301fffe"});
  CHECK(has_note_containing(id, "attribute CN has no valid UTF-8 form"));
  CHECK(has_note_containing(id, "attribute OU has no valid UTF-8 form"));
}

TEST_CASE("attribute types without a short name are dotted OIDs; emailAddress keeps its name") {
  CertSpec spec;
  spec.subject = {
      {"1.3.6.1.4.1.99999.7", "custom"}, {"emailAddress", "ops@example.org"}, {"CN", "x"}};
  auto cert = make_cert(spec);
  const Identity id = extract(cert.get());
  CHECK(attribute_pairs(id.subject) ==
        Strings{"1.3.6.1.4.1.99999.7=custom", "emailAddress=ops@example.org", "CN=x"});
}

TEST_CASE("subjectAltName: URI, DNS, email and IP entries of every kind") {
  CertSpec spec;
  // RID (registeredID) is a kind no rule uses: ignored without a note.
  spec.conf_extensions.push_back(
      {NID_subject_alt_name,
       "URI:https://apps.example.org/ehr,URI:urn:oid:1.2.3,DNS:ehr.example.org,DNS:*.example.org,"
       "email:ehr@example.org,IP:192.0.2.7,IP:2001:db8:0:0:0:0:0:1,IP:::ffff:10.0.0.1,"
       "RID:1.2.3.4"});
  auto cert = make_cert(spec);
  const Identity id = extract(cert.get());
  CHECK(id.san_uri == Strings{"https://apps.example.org/ehr", "urn:oid:1.2.3"});
  CHECK(id.san_dns == Strings{"ehr.example.org", "*.example.org"});
  CHECK(id.san_email == Strings{"ehr@example.org"});
  CHECK(id.san_ip == Strings{"192.0.2.7", "2001:db8::1", "::ffff:10.0.0.1"});
  CHECK(id.notes.empty());
}

TEST_CASE("subjectAltName: malformed entries are skipped one by one, the rest kept") {
  CertSpec spec;
  spec.raw_extensions.push_back(
      {"2.5.29.17",
       san_der({{GEN_URI, "https://ok.example.org/"},
                {GEN_URI, std::string("https://a.example.org/\r\nX-Client-Subject-DN: CN=admin")},
                {GEN_DNS, std::string("evil\0.example.org", 17)},
                {GEN_DNS, ""},
                {GEN_EMAIL, "caf\xC3\xA9@example.org"},
                {GEN_IPADD, std::string("\x0a\x00\x00\x01\x05", 5)},
                {GEN_IPADD, std::string("\x0a\x00\x00\x01", 4)},
                {GEN_DNS, "good.example.org"}}),
       false});
  auto cert = make_cert(spec);
  const Identity id = extract(cert.get());
  CHECK(id.san_uri == Strings{"https://ok.example.org/"});
  CHECK(id.san_dns == Strings{"good.example.org"});
  CHECK(id.san_email.empty());
  CHECK(id.san_ip == Strings{"10.0.0.1"});
  CHECK(id.notes.size() == 5);
  CHECK(has_note_containing(id, "IP entry ignored"));
}

TEST_CASE(
    "subjectAltName: garbage DER or a duplicated extension grants nothing and never crashes") {
  const std::vector<Bytes> garbage = {
      {0x30, 0x05, 0x86, 0x03, 0x61},        // length runs past the end
      {0x04, 0x02, 0x41, 0x42},              // OCTET STRING, not GeneralNames
      {0x30, 0x03, 0x86, 0x01, 0x61, 0x00},  // trailing byte
      {},                                    // empty value
  };
  for (const auto& der : garbage) {
    CertSpec spec;
    spec.raw_extensions.push_back({"2.5.29.17", der, true});
    auto cert = make_cert(spec);
    const Identity id = extract(cert.get());
    CHECK(id.present);
    CHECK(id.san_uri.empty());
    CHECK(id.san_dns.empty());
    CHECK(has_note_containing(id, "subjectAltName extension is malformed"));
  }

  CertSpec dup;
  dup.conf_extensions = {{NID_subject_alt_name, "URI:https://a.example.org/"},
                         {NID_subject_alt_name, "URI:https://b.example.org/"}};
  auto cert = make_cert(dup);
  const Identity id = extract(cert.get());
  CHECK(id.san_uri.empty());
  CHECK(has_note_containing(id, "subjectAltName extension appears more than once"));
}

TEST_CASE("certificatePolicies: OIDs kept, HIPAA categories from the built-in mapping") {
  CertSpec spec;
  spec.policy_oids = {kAssurance3, kBusinessAssociate, kCoveredEntity, "1.2.3.4"};
  auto cert = make_cert(spec);
  const Identity id = extract(cert.get());
  CHECK(id.cert_policies == Strings{kAssurance3, kBusinessAssociate, kCoveredEntity, "1.2.3.4"});
  CHECK(id.hipaa == Strings{"business-associate", "covered-entity"});
  CHECK(id.notes.empty());
}

TEST_CASE("certificatePolicies: an override map replaces and extends the built-ins") {
  CertSpec spec;
  spec.policy_oids = {kCoveredEntity, kPatient, "1.2.3.4"};
  auto cert = make_cert(spec);
  HipaaConfig config = HipaaConfig::directtrust_defaults();
  config.categories[kCoveredEntity] = "hospital";
  config.categories["1.2.3.4"] = "covered-entity";
  config.categories.erase(kPatient);
  const Identity id = extract(cert.get(), config);
  CHECK(id.hipaa == Strings{"hospital", "covered-entity"});

  const Identity none = extract(cert.get(), HipaaConfig{});
  CHECK(none.hipaa.empty());
  CHECK(none.cert_policies.size() == 3);
}

TEST_CASE("certificatePolicies: garbage DER grants nothing, adds a note, never crashes") {
  const std::vector<Bytes> garbage = {
      {0x30, 0x03, 0x02, 0x01, 0x05},        // SEQUENCE { INTEGER }: valid DER, wrong schema
      {0x30, 0x0a, 0x30, 0x08, 0x06, 0x06},  // truncated
      {0xff, 0xff, 0xff},                    // not DER at all
  };
  for (const auto& der : garbage) {
    CertSpec spec;
    spec.raw_extensions.push_back({"2.5.29.32", der, true});
    spec.conf_extensions.push_back({NID_subject_alt_name, "URI:https://still.example.org/"});
    auto cert = make_cert(spec);
    const Identity id = extract(cert.get());
    CHECK(id.cert_policies.empty());
    CHECK(id.hipaa.empty());
    CHECK(has_note_containing(id, "certificatePolicies extension is malformed"));
    CHECK(id.san_uri == Strings{"https://still.example.org/"});  // the rest is still read
  }
}

TEST_CASE("hipaa_extensions: value as an OBJECT IDENTIFIER") {
  auto cert = cert_with_hipaa_value(der_of(oid_value(kBusinessAssociate).get()));
  CHECK(extract(cert.get(), with_extension()).hipaa == Strings{"business-associate"});
  // Not configured: the extension is not read at all.
  CHECK(extract(cert.get()).hipaa.empty());

  auto unmapped = cert_with_hipaa_value(der_of(oid_value("1.2.3.4.5").get()));
  const Identity id = extract(unmapped.get(), with_extension());
  CHECK(id.hipaa.empty());
  CHECK(has_note_containing(id, "OID 1.2.3.4.5 maps to no HIPAA category"));
}

TEST_CASE("hipaa_extensions: value as UTF8String, PrintableString, IA5String") {
  for (int type : {V_ASN1_UTF8STRING, V_ASN1_PRINTABLESTRING, V_ASN1_IA5STRING}) {
    auto cert = cert_with_hipaa_value(der_of(string_value(type, "covered-entity").get()));
    const Identity id = extract(cert.get(), with_extension());
    CHECK(id.hipaa == Strings{"covered-entity"});
    CHECK(id.notes.empty());
  }
}

TEST_CASE("hipaa_extensions: SEQUENCE of OIDs and strings, combined with policies, deduplicated") {
  auto a = oid_value(kPatient);
  auto b = string_value(V_ASN1_UTF8STRING, "research-partner");
  auto c = string_value(V_ASN1_IA5STRING, "patient");  // duplicate of the OID's category
  CertSpec spec;
  spec.policy_oids = {kCoveredEntity};
  spec.raw_extensions.push_back({kHipaaExt, sequence_der({a.get(), b.get(), c.get()}), false});
  auto cert = make_cert(spec);
  const Identity id = extract(cert.get(), with_extension());
  CHECK(id.hipaa == Strings{"covered-entity", "patient", "research-partner"});
  CHECK(id.notes.empty());
}

TEST_CASE("hipaa_extensions: garbage bytes grant nothing and leave a note") {
  const std::vector<Bytes> garbage = {
      {0x0c, 0x05, 0x61},        // UTF8String, length past the end
      {0x0c, 0x01, 0x61, 0x00},  // trailing byte after a valid value
      {0x30, 0x05, 0x0c, 0x01},  // SEQUENCE, inner value truncated
      {0xde, 0xad, 0xbe, 0xef}, {},
  };
  for (const auto& der : garbage) {
    auto cert = cert_with_hipaa_value(der);
    const Identity id = extract(cert.get(), with_extension());
    CHECK(id.hipaa.empty());
    CHECK(has_note_containing(id, "HIPAA extension 1.3.6.1.4.1.99999.1"));
  }
}

TEST_CASE("hipaa_extensions: a wrong element type makes the whole value malformed") {
  auto good = string_value(V_ASN1_UTF8STRING, "covered-entity");
  auto integer = string_value(V_ASN1_INTEGER, "\x05");
  auto inner = sequence_der({good.get()});
  auto nested = string_value(V_ASN1_SEQUENCE, std::string(inner.begin(), inner.end()));
  for (const ASN1_TYPE* bad : {static_cast<const ASN1_TYPE*>(integer.get()),
                               static_cast<const ASN1_TYPE*>(nested.get())}) {
    auto cert = cert_with_hipaa_value(sequence_der({good.get(), bad}));
    const Identity id = extract(cert.get(), with_extension());
    CHECK(id.hipaa.empty());
    CHECK(has_note_containing(id, "neither an OID nor a string"));
  }
  auto bmp =
      cert_with_hipaa_value(der_of(string_value(V_ASN1_BMPSTRING, std::string("\0a", 2)).get()));
  CHECK(extract(bmp.get(), with_extension()).hipaa.empty());
}

TEST_CASE("hipaa_extensions: a string that is not a category name is ignored with a note") {
  const Strings bad = {"Covered Entity",     "covered_entity",         "",
                       std::string(65, 'a'), "covered-entity\r\nX: y", std::string("patient\0", 8),
                       "pa\xC3\xA9tient"};
  for (const auto& s : bad) {
    CAPTURE(s);
    auto cert = cert_with_hipaa_value(der_of(string_value(V_ASN1_UTF8STRING, s).get()));
    const Identity id = extract(cert.get(), with_extension());
    CHECK(id.hipaa.empty());
    CHECK(has_note_containing(id, "is not a valid category name"));
  }
  // Good and bad elements of one SEQUENCE: the good ones still count.
  auto ok = string_value(V_ASN1_UTF8STRING, std::string(64, 'a'));
  auto ko = string_value(V_ASN1_UTF8STRING, "Covered Entity");
  auto cert = cert_with_hipaa_value(sequence_der({ko.get(), ok.get()}));
  const Identity id = extract(cert.get(), with_extension());
  CHECK(id.hipaa == Strings{std::string(64, 'a')});
  CHECK(id.notes.size() == 1);
}

TEST_CASE("hipaa_extensions: a duplicated extension or a bad configured OID grants nothing") {
  auto v = der_of(string_value(V_ASN1_UTF8STRING, "covered-entity").get());
  CertSpec spec;
  spec.raw_extensions = {{kHipaaExt, v, false}, {kHipaaExt, v, false}};
  auto cert = make_cert(spec);
  const Identity id = extract(cert.get(), with_extension());
  CHECK(id.hipaa.empty());
  CHECK(has_note_containing(id, "appears more than once"));

  HipaaConfig config = HipaaConfig::directtrust_defaults();
  config.extensions = {"not-an-oid"};
  const Identity bad = extract(cert.get(), config);
  CHECK(bad.hipaa.empty());
  CHECK(has_note_containing(bad, "not a dotted OID"));
}

TEST_CASE("serial, fingerprint and validity") {
  CertSpec spec;
  spec.serial = 0x0123456789ABCDEFULL;
  spec.not_before = 1700000000;  // UTCTime
  spec.not_after = 4102444800;   // 2100-01-01T00:00:00Z, GeneralizedTime
  auto cert = make_cert(spec);
  const Identity id = extract(cert.get());
  CHECK(id.serial_hex == "0123456789ABCDEF");
  CHECK(id.not_before == 1700000000);
  CHECK(id.not_after == 4102444800);

  // The fingerprint is SHA-256 over the DER encoding, computed here independently.
  unsigned char* der = nullptr;
  const int len = i2d_X509(cert.get(), &der);
  REQUIRE(len > 0);
  std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
  unsigned int md_len = 0;
  REQUIRE(EVP_Digest(der, static_cast<size_t>(len), md.data(), &md_len, EVP_sha256(), nullptr) ==
          1);
  OPENSSL_free(der);
  std::string expected;
  for (unsigned int i = 0; i < md_len; ++i) {
    std::array<char, 3> byte{};
    std::snprintf(byte.data(), byte.size(), "%02x", md[i]);
    expected += byte.data();
  }
  CHECK(md_len == 32);
  CHECK(id.fingerprint_sha256 == expected);

  spec.serial = 0xAB;
  auto small = make_cert(spec);
  CHECK(extract(small.get()).serial_hex == "AB");
}

TEST_CASE("leaf PEM and chain: intermediates as base64 DER, the leaf skipped") {
  auto root_key = make_key();
  auto inter_key = make_key();
  auto leaf_key = make_key();
  CertSpec inter_spec;
  inter_spec.subject = {{"CN", "Intermediate"}};
  inter_spec.issuer = {{"CN", "Root"}};
  auto inter = make_cert(inter_spec, inter_key.get(), root_key.get());
  CertSpec leaf_spec;
  leaf_spec.issuer = {{"CN", "Intermediate"}};
  auto leaf = make_cert(leaf_spec, leaf_key.get(), inter_key.get());

  ssl::X509StackPtr chain(sk_X509_new_null());
  REQUIRE(chain != nullptr);
  REQUIRE(sk_X509_push(chain.get(), X509_dup(leaf.get())) > 0);
  REQUIRE(sk_X509_push(chain.get(), X509_dup(inter.get())) > 0);

  const Identity id = extract_identity(leaf.get(), chain.get(), HipaaConfig{}, "community-a");
  CHECK(id.trust == "community-a");
  REQUIRE(id.chain_der_b64.size() == 1);

  // Decode independently and compare with the intermediate.
  const std::string& b64 = id.chain_der_b64[0];
  CHECK(b64.find('\n') == std::string::npos);
  std::vector<unsigned char> der(b64.size());
  const int n = EVP_DecodeBlock(der.data(), reinterpret_cast<const unsigned char*>(b64.data()),
                                static_cast<int>(b64.size()));
  REQUIRE(n > 0);
  const unsigned char* p = der.data();
  ssl::X509Ptr decoded(d2i_X509(nullptr, &p, n));
  REQUIRE(decoded != nullptr);
  CHECK(X509_cmp(decoded.get(), inter.get()) == 0);

  ssl::BioPtr bio(BIO_new_mem_buf(id.leaf_pem.data(), static_cast<int>(id.leaf_pem.size())));
  ssl::X509Ptr from_pem(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  REQUIRE(from_pem != nullptr);
  CHECK(X509_cmp(from_pem.get(), leaf.get()) == 0);
  CHECK(id.leaf_pem.rfind("-----BEGIN CERTIFICATE-----\n", 0) == 0);

  CHECK(extract_identity(leaf.get(), nullptr, HipaaConfig{}, "").chain_der_b64.empty());
}

TEST_CASE("extraction leaves nothing in the OpenSSL error queue") {
  ERR_clear_error();
  CertSpec spec;
  spec.raw_extensions = {{"2.5.29.17", {0xff}, false},
                         {"2.5.29.32", {0x30, 0x01}, false},
                         {kHipaaExt, {0x0c, 0x09}, false}};
  auto cert = make_cert(spec);
  ERR_clear_error();
  const Identity id = extract(cert.get(), with_extension());
  CHECK(id.notes.size() == 3);
  CHECK(ERR_peek_error() == 0);
}

TEST_CASE("a null leaf is no identity") {
  const Identity id = extract_identity(nullptr, nullptr, HipaaConfig{}, "directtrust");
  CHECK_FALSE(id.present);
  CHECK(id.trust.empty());
}

TEST_CASE("read_pem_certificates: every certificate, leaf first") {
  CertSpec a;
  a.subject = {{"CN", "leaf"}};
  CertSpec b;
  b.subject = {{"CN", "intermediate"}};
  auto leaf = make_cert(a);
  auto inter = make_cert(b);
  auto key = make_key();
  ssl::BioPtr key_bio(BIO_new(BIO_s_mem()));
  REQUIRE(PEM_write_bio_PrivateKey(key_bio.get(), key.get(), nullptr, nullptr, 0, nullptr,
                                   nullptr) == 1);
  BUF_MEM* mem = nullptr;
  BIO_get_mem_ptr(key_bio.get(), &mem);
  const std::string key_pem(mem->data, mem->length);

  // Other PEM blocks (a key) and text between blocks are skipped.
  TempFile file("leaf follows\n" + pem_text(leaf.get()) + key_pem + pem_text(inter.get()));
  const auto certs = read_pem_certificates(file.path());
  REQUIRE(certs.size() == 2);
  CHECK(X509_cmp(certs[0].get(), leaf.get()) == 0);
  CHECK(X509_cmp(certs[1].get(), inter.get()) == 0);

  SUBCASE("missing file") {
    CHECK_THROWS_AS(read_pem_certificates(file.path() + ".missing"), std::runtime_error);
  }
  SUBCASE("empty file") {
    TempFile empty("");
    CHECK_THROWS_WITH_AS(read_pem_certificates(empty.path()),
                         doctest::Contains("no PEM certificate"), std::runtime_error);
  }
  SUBCASE("only a key") {
    TempFile only_key(key_pem);
    CHECK_THROWS_AS(read_pem_certificates(only_key.path()), std::runtime_error);
  }
  SUBCASE("a damaged certificate after a good one rejects the file") {
    TempFile damaged(pem_text(leaf.get()) +
                     "-----BEGIN CERTIFICATE-----\nMIIBnotbase64!!\n-----END CERTIFICATE-----\n");
    CHECK_THROWS_WITH_AS(read_pem_certificates(damaged.path()),
                         doctest::Contains("unreadable certificate"), std::runtime_error);
  }
  CHECK(ERR_peek_error() == 0);
}

}  // namespace fmp::policy
