#include "proxy/server/client_identity.h"

#include <doctest/doctest.h>
#include <openssl/x509.h>

#include <ctime>
#include <memory>
#include <string>
#include <vector>

#include "policy/policy_loader.h"
#include "tests/unit/proxy/tls/test_pki.h"

namespace srv = fmp::proxy::server;
namespace pki = fmp::test_pki;

namespace {

srv::StatePtr snapshot(const std::string& subject_header = "X-Client-Subject-DN") {
  auto s = std::make_shared<srv::RuntimeState>();
  s->policy = fmp::policy::load_policy_text(
      "rules:\n  - {name: a, effect: allow, when: {method: GET, path: /fhir/metadata}}\n",
      "p.yaml");
  s->config.identity_headers.subject = subject_header;
  return s;
}

pki::CertSpec leaf_spec(const std::string& cn, long serial = 2) {
  const std::time_t now = std::time(nullptr);
  pki::CertSpec spec;
  spec.cn = cn;
  spec.not_before = now - pki::kDay;
  spec.not_after = now + pki::kDay;
  spec.serial = serial;
  return spec;
}

struct Pki {
  pki::Issued ca = pki::issue(
      [] {
        pki::CertSpec s = leaf_spec("Test CA", 1);
        s.ca = true;
        return s;
      }(),
      nullptr);
  pki::Issued leaf(const std::string& cn, long serial = 2) const {
    return pki::issue(leaf_spec(cn, serial), &ca);
  }
};

/// A chain stack holding `certs` (not owned: the test keeps them).
struct Chain {
  STACK_OF(X509) * sk = sk_X509_new_null();
  explicit Chain(std::vector<X509*> certs) {
    for (X509* c : certs) sk_X509_push(sk, c);
  }
  ~Chain() { sk_X509_free(sk); }
  Chain(const Chain&) = delete;
  Chain& operator=(const Chain&) = delete;
};

/// One partner certificate and an empty cache.
struct OnePartner {
  const Pki p;
  const pki::Issued a = p.leaf("partner-a");
  srv::ClientIdentityCache cache;
};

}  // namespace

TEST_CASE("ClientIdentityCache: one derivation shared by every connection with the same chain") {
  const Pki p;
  const auto a = p.leaf("partner-a");
  const srv::StatePtr state = snapshot();
  srv::ClientIdentityCache cache;
  Chain chain({p.ca.cert.get()});

  const srv::ClientIdentityPtr first = cache.get(a.cert.get(), chain.sk, "bench", state);
  REQUIRE(first != nullptr);
  CHECK(first->identity.present);
  CHECK(first->identity.subject.rfc4514 == "CN=partner-a,O=Test PKI");
  CHECK(first->identity.trust == "bench");
  CHECK(first->header_block.find("X-Client-Subject-DN: CN=partner-a,O=Test PKI\r\n") !=
        std::string::npos);
  CHECK(first->header_block.find("X-Client-Trust-Community: bench\r\n") != std::string::npos);
  CHECK(first->identity.leaf_pem.empty());  // only the header block needed it
  CHECK(first->identity.chain_der_b64.empty());
  REQUIRE(first->audit_peer != nullptr);
  CHECK(first->audit_peer->subject == "CN=partner-a,O=Test PKI");
  CHECK(first->audit_peer->fingerprint == first->identity.fingerprint_sha256);
  CHECK(first->audit_peer->trust == "bench");

  // A second connection with the same certificate, parsed afresh from its DER as a handshake does.
  const std::string der = [&] {
    unsigned char* buf = nullptr;
    const int len = i2d_X509(a.cert.get(), &buf);
    std::string out(reinterpret_cast<char*>(buf), static_cast<std::size_t>(len));
    OPENSSL_free(buf);
    return out;
  }();
  const auto* in = reinterpret_cast<const unsigned char*>(der.data());
  fmp::ssl::X509Ptr again(d2i_X509(nullptr, &in, static_cast<long>(der.size())));
  REQUIRE(again != nullptr);
  CHECK(cache.get(again.get(), chain.sk, "bench", state) == first);
  CHECK(cache.size() == 1);
}

TEST_CASE("ClientIdentityCache: a different leaf, chain or community is a different identity") {
  const Pki p;
  const auto a = p.leaf("partner-a");
  const auto b = p.leaf("partner-b");
  const srv::StatePtr state = snapshot();
  srv::ClientIdentityCache cache;
  Chain with_ca({p.ca.cert.get()});
  Chain empty({});

  const auto base = cache.get(a.cert.get(), with_ca.sk, "bench", state);
  const auto other_leaf = cache.get(b.cert.get(), with_ca.sk, "bench", state);
  const auto other_chain = cache.get(a.cert.get(), empty.sk, "bench", state);
  const auto no_chain = cache.get(a.cert.get(), nullptr, "bench", state);
  const auto other_community = cache.get(a.cert.get(), with_ca.sk, "carequality", state);
  CHECK(other_leaf != base);
  CHECK(other_leaf->identity.subject.rfc4514 == "CN=partner-b,O=Test PKI");
  CHECK(other_chain != base);
  CHECK(no_chain == other_chain);  // no stack and an empty one present the same chain
  CHECK(other_community != base);
  CHECK(other_community->identity.trust == "carequality");
  CHECK(other_community->header_block.find("X-Client-Trust-Community: carequality\r\n") !=
        std::string::npos);
}

TEST_CASE("ClientIdentityCache: the same to-be-signed certificate signed twice is not shared") {
  // ECDSA signatures are randomised: the same TBSCertificate signed again is another certificate
  // with another fingerprint, and the identity (which carries the fingerprint) must follow it.
  const Pki p;
  const auto key = pki::make_key();
  const auto one = pki::make_cert(leaf_spec("twin"), key.get(), p.ca.cert.get(), p.ca.key.get());
  const auto two = pki::make_cert(leaf_spec("twin"), key.get(), p.ca.cert.get(), p.ca.key.get());
  REQUIRE(X509_cmp(one.get(), two.get()) != 0);
  const srv::StatePtr state = snapshot();
  srv::ClientIdentityCache cache;
  const auto first = cache.get(one.get(), nullptr, "bench", state);
  const auto second = cache.get(two.get(), nullptr, "bench", state);
  CHECK(first != second);
  CHECK(first->identity.fingerprint_sha256 != second->identity.fingerprint_sha256);
}

TEST_CASE_FIXTURE(
    OnePartner, "ClientIdentityCache: a new snapshot derives again (its header names, HIPAA map)") {
  const srv::StatePtr before = snapshot();
  const auto old_identity = cache.get(a.cert.get(), nullptr, "bench", before);
  const srv::StatePtr after = snapshot("X-Partner-DN");
  const auto renamed = cache.get(a.cert.get(), nullptr, "bench", after);
  CHECK(renamed != old_identity);
  CHECK(renamed->names.subject == "X-Partner-DN");
  CHECK(renamed->header_block.find("X-Partner-DN: CN=partner-a,O=Test PKI\r\n") !=
        std::string::npos);
  // The connection that still holds the old identity keeps it unchanged.
  CHECK(old_identity->header_block.find("X-Client-Subject-DN: ") != std::string::npos);
  CHECK(cache.size() == 1);  // the old snapshot's entries are gone
  // Anonymous connections get one shared identity per snapshot, with no identity headers.
  const auto anon = cache.anonymous(after);
  CHECK(anon == cache.anonymous(after));
  CHECK_FALSE(anon->identity.present);
  CHECK(anon->header_block.empty());
  CHECK(cache.anonymous(snapshot()) != anon);
}

TEST_CASE_FIXTURE(OnePartner, "ClientIdentity: the policy's lookups are prepared once per policy") {
  const srv::StatePtr state = snapshot();
  const auto id = cache.get(a.cert.get(), nullptr, "bench", state);
  const fmp::policy::PreparedIdentity* first = id->prepared_for(state->policy);
  CHECK(id->prepared_for(state->policy) == first);
  CHECK(id->prepared_by == state->policy);
  const srv::StatePtr reloaded = snapshot();
  id->prepared_for(reloaded->policy);
  CHECK(id->prepared_by == reloaded->policy);  // the new policy's, holding it alive
}

TEST_CASE("ClientIdentityCache: bounded; forgotten identities are swept, held ones stay shared") {
  const Pki p;
  const srv::StatePtr state = snapshot();
  srv::ClientIdentityCache cache;
  const auto key = pki::make_key();
  const auto kept_cert = p.leaf("kept");
  const auto kept = cache.get(kept_cert.cert.get(), nullptr, "bench", state);
  // Fill the cache with identities no connection holds any more.
  for (std::size_t i = 0; i < srv::ClientIdentityCache::kCapacity; ++i) {
    const auto c = pki::make_cert(leaf_spec("c", static_cast<long>(i + 10)), key.get(),
                                  p.ca.cert.get(), p.ca.key.get());
    REQUIRE(cache.get(c.get(), nullptr, "bench", state) != nullptr);
    CHECK(cache.size() <= srv::ClientIdentityCache::kCapacity);
  }
  // The sweep dropped the forgotten ones and kept the held one.
  CHECK(cache.size() < srv::ClientIdentityCache::kCapacity);
  CHECK(cache.get(kept_cert.cert.get(), nullptr, "bench", state) == kept);
}
