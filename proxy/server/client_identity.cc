#include "proxy/server/client_identity.h"

#include <openssl/evp.h>

#include <utility>

#include "policy/x509_identity.h"
#include "proxy/http/identity_headers.h"

namespace fmp::proxy::server {
namespace {

/// Appends the SHA-256 of `cert`'s DER encoding (32 raw bytes) to `key`; false when OpenSSL
/// cannot compute it.
bool append_digest(std::string& key, const X509* cert) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (cert == nullptr || X509_digest(cert, EVP_sha256(), md, &len) != 1 || len == 0) return false;
  key.append(reinterpret_cast<const char*>(md), len);
  return true;
}

/// The cache key: the community, then the digests of the leaf and of every chain certificate in
/// the order presented. Fixed-size digests after a length-prefixed community cannot run together.
/// Empty when a digest cannot be computed.
std::string chain_key(X509* leaf, STACK_OF(X509) * chain, const std::string& community) {
  std::string key = std::to_string(community.size());
  key.push_back(':');
  key.append(community);
  bool ok = append_digest(key, leaf);
  const int n = chain != nullptr ? sk_X509_num(chain) : 0;
  for (int i = 0; i < n && ok; ++i) ok = append_digest(key, sk_X509_value(chain, i));
  if (!ok) key.clear();
  return key;
}

}  // namespace

const policy::PreparedIdentity* ClientIdentity::prepared_for(
    const policy::PolicyPtr& policy) const {
  if (prepared_by != policy) {
    prepared = policy->prepare(identity);
    prepared_by = policy;
  }
  return prepared.get();
}

ClientIdentityPtr make_client_identity(policy::Identity identity,
                                       const IdentityHeaderNames& names) {
  auto c = std::make_shared<ClientIdentity>();
  c->header_block = http::identity_header_block(identity, names);
  c->names = names;
  // The PEM copies were only needed for the header block: kept, they would be kilobytes per
  // identity held for nothing.
  std::string().swap(identity.leaf_pem);
  std::vector<std::string>().swap(identity.chain_der_b64);
  auto peer = std::make_shared<observability::AuditPeer>();
  peer->subject = identity.subject.rfc4514;
  peer->san_uri = identity.san_uri;
  peer->fingerprint = identity.fingerprint_sha256;
  peer->trust = identity.trust;
  peer->hipaa = identity.hipaa;
  observability::prepare_audit_peer(*peer);
  c->audit_peer = std::move(peer);
  c->identity = std::move(identity);
  return c;
}

void ClientIdentityCache::use_state(const StatePtr& state) {
  // owner_before in both directions: the same snapshot (control block), even if a freed snapshot's
  // address was reused by a newer one.
  if (!state_.owner_before(state) && !state.owner_before(state_)) return;
  entries_.clear();
  anonymous_.reset();
  state_ = state;
}

ClientIdentityPtr ClientIdentityCache::get(X509* leaf, STACK_OF(X509) * chain,
                                           const std::string& community, const StatePtr& state) {
  use_state(state);
  std::string key = chain_key(leaf, chain, community);
  if (key.empty()) return nullptr;
  if (auto it = entries_.find(key); it != entries_.end()) {
    if (ClientIdentityPtr shared = it->second.lock()) return shared;
  }
  ClientIdentityPtr made =
      make_client_identity(policy::extract_identity(leaf, chain, state->policy->hipaa(), community),
                           state->config.identity_headers);
  if (entries_.size() >= kCapacity) {
    std::erase_if(entries_, [](const auto& e) { return e.second.expired(); });
    if (entries_.size() >= kCapacity) entries_.clear();
  }
  entries_.insert_or_assign(std::move(key), made);
  return made;
}

ClientIdentityPtr ClientIdentityCache::anonymous(const StatePtr& state) {
  use_state(state);
  if (!anonymous_)
    anonymous_ = make_client_identity(policy::Identity{}, state->config.identity_headers);
  return anonymous_;
}

}  // namespace fmp::proxy::server
