#include "proxy/tls/trust_store.h"

#include <doctest/doctest.h>
#include <openssl/x509_vfy.h>

#include "policy/config_error.h"
#include "tests/unit/proxy/tls/test_pki.h"

using fmp::policy::ConfigError;
using fmp::proxy::FileRef;
using fmp::proxy::SourcePos;
using fmp::proxy::TrustCommunity;
using fmp::proxy::tls::TrustStore;
using fmp::proxy::tls::VerifyReason;
using fmp::proxy::tls::VerifyResult;
namespace pki = fmp::test_pki;

namespace {

/// Two communities' worth of certificates, all relative to the real current time.
struct Pki {
  std::time_t now = std::time(nullptr);
  pki::TempDir dir;
  pki::Issued root_a, int_a, int_a2, leaf_a, leaf_a2, leaf_a_expired, leaf_a_future, leaf_a_revoked,
      leaf_a_server, root_b, leaf_b, root_x, leaf_x;

  pki::CertSpec ca(const std::string& cn, long serial, std::time_t not_after_days = 3650) const {
    return pki::CertSpec{cn, true,  now - 30 * pki::kDay, now + not_after_days * pki::kDay,
                         "", serial};
  }
  pki::CertSpec leaf(const std::string& cn, long serial) const {
    return pki::CertSpec{cn, false, now - pki::kDay, now + 365 * pki::kDay, "clientAuth", serial};
  }

  Pki() {
    root_a = pki::issue(ca("Root A", 1), nullptr);
    int_a = pki::issue(ca("Intermediate A", 2, 1000), &root_a);
    int_a2 = pki::issue(ca("Intermediate A2", 3), &root_a);
    leaf_a = pki::issue(leaf("client a", 10), &int_a);
    leaf_a2 = pki::issue(leaf("client a2", 10), &int_a2);
    auto expired = leaf("expired a", 11);
    expired.not_before = now - 10 * pki::kDay;
    expired.not_after = now - pki::kDay;
    leaf_a_expired = pki::issue(expired, &int_a);
    auto future = leaf("future a", 12);
    future.not_before = now + pki::kDay;
    leaf_a_future = pki::issue(future, &int_a);
    leaf_a_revoked = pki::issue(leaf("revoked a", 13), &int_a);
    auto server = leaf("server-only a", 14);
    server.eku = "serverAuth";
    leaf_a_server = pki::issue(server, &int_a);
    root_b = pki::issue(ca("Root B", 1), nullptr);
    leaf_b = pki::issue(leaf("client b", 10), &root_b);
    root_x = pki::issue(ca("Unknown Root", 1), nullptr);
    leaf_x = pki::issue(leaf("client x", 10), &root_x);

    dir.write("alpha.pem", pki::pem(root_a.cert.get()) + pki::pem(int_a.cert.get()) +
                               pki::pem(int_a2.cert.get()));
    dir.write("alpha-root.pem", pki::pem(root_a.cert.get()));
    dir.write("beta.pem", pki::pem(root_b.cert.get()));
    dir.write("beta-plus-int-a.pem", pki::pem(root_b.cert.get()) + pki::pem(int_a.cert.get()));
    auto crl_root = crl(root_a, {3});
    auto crl_int = crl(int_a, {11, 13});
    auto crl_int2 = crl(int_a2, {});
    dir.write("root-a.crl.pem", pki::pem(crl_root.get()));
    dir.write("int-a.crl.pem", pki::pem(crl_int.get()));
    dir.write("int-a2.crl.pem", pki::pem(crl_int2.get()));
    dir.write("root-a.crl.der", pki::der(crl_root.get()));
    dir.write("int-a.crl.der", pki::der(crl_int.get()));
    dir.write("int-a2.crl.der", pki::der(crl_int2.get()));
    auto stale =
        pki::make_crl(int_a.cert.get(), int_a.key.get(), {13}, now - 2 * pki::kDay, now - 3600);
    dir.write("int-a-stale.crl.pem", pki::pem(stale.get()));
  }

  fmp::ssl::X509CrlPtr crl(const pki::Issued& issuer, const std::vector<long>& revoked) const {
    return pki::make_crl(issuer.cert.get(), issuer.key.get(), revoked, now - pki::kDay,
                         now + 7 * pki::kDay);
  }

  TrustCommunity community(const std::string& name, const std::string& ca_file,
                           const std::vector<std::string>& crl_files = {}, int line = 10) const {
    TrustCommunity c;
    c.name = name;
    c.ca = FileRef{dir.path(ca_file), SourcePos{line, 11}};
    int l = line + 1;
    for (const auto& f : crl_files) c.crl.push_back(FileRef{dir.path(f), SourcePos{l++, 13}});
    c.pos = SourcePos{line - 1, 7};
    return c;
  }

  std::shared_ptr<const TrustStore> load(const std::vector<TrustCommunity>& cs) const {
    return TrustStore::load(cs, "proxy.yaml");
  }

  std::vector<std::string> full_crls() const {
    return {"root-a.crl.pem", "int-a.crl.pem", "int-a2.crl.pem"};
  }
};

VerifyResult verify(const TrustStore& t, const pki::Issued& leaf, std::time_t now,
                    STACK_OF(X509) * chain = nullptr) {
  return t.verify(leaf.cert.get(), chain, now);
}

}  // namespace

TEST_CASE("each community verifies its own clients and names itself") {
  Pki p;
  auto t = p.load({p.community("alpha", "alpha.pem"), p.community("beta", "beta.pem")});
  auto a = verify(*t, p.leaf_a, p.now);
  CHECK(a.ok);
  CHECK(a.reason == VerifyReason::kNone);
  CHECK(a.community == "alpha");
  CHECK(a.valid_until == p.now + 365 * pki::kDay);  // the leaf expires first in its chain
  auto b = verify(*t, p.leaf_b, p.now);
  CHECK(b.ok);
  CHECK(b.community == "beta");
  auto a2 = verify(*t, p.leaf_a2, p.now);
  CHECK(a2.ok);
  CHECK(a2.community == "alpha");
}

TEST_CASE("a certificate of an unknown CA is untrusted") {
  Pki p;
  auto t = p.load({p.community("alpha", "alpha.pem"), p.community("beta", "beta.pem")});
  auto r = verify(*t, p.leaf_x, p.now);
  CHECK_FALSE(r.ok);
  CHECK(r.reason == VerifyReason::kUntrusted);
  CHECK(r.openssl_error == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
  CHECK_FALSE(r.message.empty());
}

TEST_CASE("the client's own intermediates complete a chain to a bundle root") {
  Pki p;
  auto t = p.load({p.community("alpha", "alpha-root.pem")});
  CHECK(verify(*t, p.leaf_a, p.now).reason == VerifyReason::kUntrusted);
  fmp::ssl::X509StackPtr chain(sk_X509_new_null());
  X509_up_ref(p.int_a.cert.get());
  sk_X509_push(chain.get(), p.int_a.cert.get());
  auto r = verify(*t, p.leaf_a, p.now, chain.get());
  CHECK(r.ok);
  CHECK(r.community == "alpha");
}

TEST_CASE("an intermediate in a bundle is not a trust anchor on its own") {
  Pki p;
  // The bundle holds int_a but not its root: without PARTIAL_CHAIN the chain cannot be anchored.
  auto t = p.load({p.community("beta", "beta-plus-int-a.pem")});
  auto r = verify(*t, p.leaf_a, p.now);
  CHECK_FALSE(r.ok);
  CHECK(r.reason == VerifyReason::kUntrusted);
  CHECK(verify(*t, p.leaf_b, p.now).ok);
}

TEST_CASE("expiry is reported over another community's untrusted") {
  Pki p;
  auto t = p.load({p.community("beta", "beta.pem"), p.community("alpha", "alpha.pem")});
  auto r = verify(*t, p.leaf_a_expired, p.now);
  CHECK_FALSE(r.ok);
  CHECK(r.reason == VerifyReason::kExpired);
  CHECK(r.community == "alpha");
  CHECK(r.openssl_error == X509_V_ERR_CERT_HAS_EXPIRED);

  // The same good certificate, judged at an injected time after its notAfter.
  auto later = verify(*t, p.leaf_a, p.now + 400 * pki::kDay);
  CHECK(later.reason == VerifyReason::kExpired);
  CHECK(verify(*t, p.leaf_a, p.now).ok);
}

TEST_CASE("a certificate before its notBefore is not yet valid") {
  Pki p;
  auto t = p.load({p.community("alpha", "alpha.pem")});
  auto r = verify(*t, p.leaf_a_future, p.now);
  CHECK_FALSE(r.ok);
  CHECK(r.reason == VerifyReason::kNotYetValid);
  CHECK(verify(*t, p.leaf_a_future, p.now + 2 * pki::kDay).ok);
}

TEST_CASE("CRLs: revoked leaf and revoked intermediate") {
  Pki p;
  auto t = p.load({p.community("alpha", "alpha.pem", p.full_crls())});
  auto good = verify(*t, p.leaf_a, p.now);
  CHECK(good.ok);
  CHECK(good.valid_until == p.now + 7 * pki::kDay);  // the CRLs' nextUpdate comes before any expiry
  auto leaf = verify(*t, p.leaf_a_revoked, p.now);
  CHECK_FALSE(leaf.ok);
  CHECK(leaf.reason == VerifyReason::kRevoked);
  CHECK(leaf.openssl_error == X509_V_ERR_CERT_REVOKED);
  auto via_int = verify(*t, p.leaf_a2, p.now);
  CHECK_FALSE(via_int.ok);
  CHECK(via_int.reason == VerifyReason::kRevoked);
  CHECK(via_int.message.find("depth 1") != std::string::npos);

  // Without CRLs nothing is checked: the same certificates pass.
  auto plain = p.load({p.community("alpha", "alpha.pem")});
  CHECK(verify(*plain, p.leaf_a_revoked, p.now).ok);
  CHECK(verify(*plain, p.leaf_a2, p.now).ok);
}

TEST_CASE("revoked is reported over another community's expiry") {
  Pki p;
  // leaf_a_expired is also listed in int_a's CRL: the CRL-checked community says revoked
  // (revocation is checked before validity times), the plain one says expired. Either order reports
  // revoked.
  for (bool checked_first : {false, true}) {
    auto plain = p.community("plain", "alpha.pem");
    auto checked = p.community("checked", "alpha.pem", p.full_crls());
    auto t = checked_first ? p.load({checked, plain}) : p.load({plain, checked});
    auto r = verify(*t, p.leaf_a_expired, p.now);
    CHECK_FALSE(r.ok);
    CHECK(r.reason == VerifyReason::kRevoked);
    CHECK(r.community == "checked");
  }
}

TEST_CASE("a CA without a CRL fails closed") {
  Pki p;
  auto t = p.load({p.community("alpha", "alpha.pem", {"root-a.crl.pem"})});
  auto r = verify(*t, p.leaf_a, p.now);
  CHECK_FALSE(r.ok);
  CHECK(r.reason == VerifyReason::kOther);
  CHECK(r.openssl_error == X509_V_ERR_UNABLE_TO_GET_CRL);
}

TEST_CASE("a CRL past its nextUpdate fails closed") {
  Pki p;
  auto t = p.load({p.community("alpha", "alpha.pem",
                               {"root-a.crl.pem", "int-a-stale.crl.pem", "int-a2.crl.pem"})});
  auto r = verify(*t, p.leaf_a, p.now);
  CHECK_FALSE(r.ok);
  CHECK(r.reason == VerifyReason::kOther);
  CHECK(r.openssl_error == X509_V_ERR_CRL_HAS_EXPIRED);
  // The good leaf of the other intermediate is unaffected.
  CHECK(verify(*t, p.leaf_a2, p.now).reason == VerifyReason::kRevoked);
}

TEST_CASE("DER CRLs are accepted") {
  Pki p;
  auto t = p.load(
      {p.community("alpha", "alpha.pem", {"root-a.crl.der", "int-a.crl.der", "int-a2.crl.der"})});
  CHECK(verify(*t, p.leaf_a, p.now).ok);
  CHECK(verify(*t, p.leaf_a_revoked, p.now).reason == VerifyReason::kRevoked);
}

TEST_CASE("a certificate for servers only is refused as a client certificate") {
  Pki p;
  auto t = p.load({p.community("alpha", "alpha.pem")});
  auto r = verify(*t, p.leaf_a_server, p.now);
  CHECK_FALSE(r.ok);
  CHECK(r.reason == VerifyReason::kOther);
  CHECK(r.openssl_error == X509_V_ERR_INVALID_PURPOSE);
}

TEST_CASE("no leaf means no certificate") {
  Pki p;
  auto t = p.load({p.community("alpha", "alpha.pem")});
  auto r = t->verify(nullptr, nullptr, p.now);
  CHECK_FALSE(r.ok);
  CHECK(r.reason == VerifyReason::kNoCertificate);
}

TEST_CASE("load errors name the proxy.yaml position of the bad file") {
  Pki p;
  p.dir.write("empty.pem", "just text\n");
  p.dir.write("garbage.crl", "not a crl at all");
  p.dir.write("int-only.pem", fmp::test_pki::pem(p.int_a.cert.get()));
  p.dir.write("broken.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
  auto foreign = p.crl(p.root_b, {});
  p.dir.write("foreign.crl.pem", fmp::test_pki::pem(foreign.get()));
  std::vector<TrustCommunity> cs{
      p.community("missing", "nope.pem", {}, 10),
      p.community("empty", "empty.pem", {}, 20),
      p.community("badcrl", "alpha.pem", {"garbage.crl"}, 30),
      p.community("introot", "int-only.pem", {}, 40),
      p.community("foreign", "alpha.pem", {"foreign.crl.pem"}, 50),
      p.community("broken", "broken.pem", {}, 60),
  };
  try {
    p.load(cs);
    FAIL("expected ConfigError");
  } catch (const ConfigError& e) {
    const auto& d = e.diagnostics();
    REQUIRE(d.size() == 6);
    CHECK(d[0].file == "proxy.yaml");
    CHECK(d[0].line == 10);
    CHECK(d[0].column == 11);
    CHECK(d[0].message ==
          "cannot read CA file \"" + p.dir.path("nope.pem") + "\": No such file or directory");
    CHECK(d[1].line == 20);
    CHECK(d[1].message == "no certificate in CA file \"" + p.dir.path("empty.pem") + "\"");
    CHECK(d[2].line == 31);
    CHECK(d[2].column == 13);
    CHECK(d[2].message.rfind("cannot parse CRL file \"" + p.dir.path("garbage.crl") + "\"", 0) ==
          0);
    CHECK(d[3].line == 40);
    CHECK(d[3].message.find("no self-signed root certificate") != std::string::npos);
    CHECK(d[4].line == 51);
    CHECK(d[4].message.find("not signed by a CA of trust community \"foreign\"") !=
          std::string::npos);
    CHECK(d[5].line == 60);
    CHECK(d[5].message.rfind("cannot parse CA file", 0) == 0);
    CHECK(std::string(e.what()).rfind("proxy.yaml:10:11: cannot read CA file", 0) == 0);
  }
}

TEST_CASE("expiries report the earliest CA notAfter and CRL nextUpdate") {
  Pki p;
  p.dir.write(
      "int-a2-soon.crl.pem",
      fmp::test_pki::pem(fmp::test_pki::make_crl(p.int_a2.cert.get(), p.int_a2.key.get(), {},
                                                 p.now - pki::kDay, p.now + 2 * pki::kDay)
                             .get()));
  auto t = p.load({p.community("alpha", "alpha.pem",
                               {"root-a.crl.pem", "int-a.crl.pem", "int-a2-soon.crl.pem"}),
                   p.community("beta", "beta.pem")});
  auto e = t->expiries();
  REQUIRE(e.size() == 2);
  CHECK(e[0].label == "trust:alpha");
  CHECK(e[0].not_after == p.now + 1000 * pki::kDay);  // int_a expires before the root
  CHECK(e[0].crl_next_update == p.now + 2 * pki::kDay);
  CHECK(e[1].label == "trust:beta");
  CHECK(e[1].not_after == p.now + 3650 * pki::kDay);
  CHECK(e[1].crl_next_update == 0);
  CHECK(t->all_cas().size() == 4);
}

TEST_CASE("reason names are the metric labels") {
  CHECK(to_string(VerifyReason::kNone) == "none");
  CHECK(to_string(VerifyReason::kNoCertificate) == "no_certificate");
  CHECK(to_string(VerifyReason::kUntrusted) == "untrusted");
  CHECK(to_string(VerifyReason::kExpired) == "expired");
  CHECK(to_string(VerifyReason::kNotYetValid) == "not_yet_valid");
  CHECK(to_string(VerifyReason::kRevoked) == "revoked");
  CHECK(to_string(VerifyReason::kProtocol) == "protocol");
  CHECK(to_string(VerifyReason::kOther) == "other");
}
