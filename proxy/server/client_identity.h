// What the proxy derives from a client's certificate chain, once, and shares between connections.
//
// A partner's system typically holds many connections open with one certificate. Everything the
// proxy derives from that certificate — the identity the policy reads, the identity header block,
// the audit peer, the policy's lookups — is the same for all of them, so a worker derives it once
// and every connection presenting the same chain (compared by SHA-256 of each certificate's DER)
// holds the same immutable ClientIdentity. That saves the derivation on every further handshake
// (most of all on resumed ones) and a few KiB per open connection.
#pragma once

#include <openssl/x509.h>

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "policy/identity.h"
#include "policy/policy.h"
#include "proxy/config/proxy_config.h"
#include "proxy/observability/audit.h"
#include "proxy/server/runtime_state.h"

namespace fmp::proxy::server {

struct ClientIdentity {
  /// The certificate's identity, without the PEM and base64 copies (they are in header_block when
  /// XFCC or RFC 9440 headers are configured). `present == false`: anonymous, or refused.
  policy::Identity identity;
  /// The identity headers for a forwarded request ("Name: value\r\n" lines), built with `names`.
  std::string header_block;
  IdentityHeaderNames names;
  /// The identity part of every audit event of its connections.
  std::shared_ptr<const observability::AuditPeer> audit_peer;

  /// Policy::prepare() of `identity`, made by `prepared_by` (held, so they never outlive it).
  /// Filled on first use. The only mutable part: a ClientIdentity is shared only within the worker
  /// (one thread) that made it.
  mutable policy::PolicyPtr prepared_by;
  mutable std::shared_ptr<const policy::PreparedIdentity> prepared;

  /// The prepared lookups of `identity` for `policy`, computed when it is not the one they were
  /// made by.
  const policy::PreparedIdentity* prepared_for(const policy::PolicyPtr& policy) const;
};

using ClientIdentityPtr = std::shared_ptr<const ClientIdentity>;

/// Builds the header block and the audit peer for `identity`, then drops its PEM and base64
/// copies. No header lines when `identity.present` is false.
ClientIdentityPtr make_client_identity(policy::Identity identity, const IdentityHeaderNames& names);

/// One worker's shared identities, by certificate chain and trust community. Not thread-safe.
///
/// Entries are derived under one runtime snapshot (its HIPAA mapping and identity header names);
/// the first lookup under another snapshot empties the cache. Connections keep their identity when
/// it leaves the cache (it only stops being shared with newer connections).
class ClientIdentityCache {
 public:
  /// Distinct chains remembered at once; when full, forgotten entries (no connection holds them)
  /// are swept, and when none is, the cache starts over.
  static constexpr std::size_t kCapacity = 4096;

  /// The identity of `leaf` (with the `chain` it came with) verified by trust community
  /// `community`, as derived under `state`. Null when OpenSSL cannot digest a certificate of the
  /// chain (the caller fails closed).
  ClientIdentityPtr get(X509* leaf, STACK_OF(X509) * chain, const std::string& community,
                        const StatePtr& state);
  /// The identity of a connection without a certificate under `state`.
  ClientIdentityPtr anonymous(const StatePtr& state);

  std::size_t size() const { return entries_.size(); }

 private:
  void use_state(const StatePtr& state);

  std::weak_ptr<const RuntimeState> state_;
  std::unordered_map<std::string, std::weak_ptr<const ClientIdentity>> entries_;
  ClientIdentityPtr anonymous_;
};

}  // namespace fmp::proxy::server
