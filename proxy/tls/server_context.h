// The listener's SSL_CTX: server certificate, TLS versions and ciphers, client-certificate policy,
// verification through TrustStore, and a session cache whose sessions keep the verified identity.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "policy/identity.h"
#include "policy/policy.h"
#include "policy/ssl_ptr.h"
#include "proxy/config/proxy_config.h"
#include "proxy/tls/trust_store.h"

namespace fmp::proxy::tls {

/// What the handshake established about the client, read by the connection once the handshake is
/// done.
struct PeerVerification {
  VerifyResult result;  ///< ok=false with kNoCertificate when the client sent none
  bool resumed = false;
};

/// Owns an SSL_CTX built from the config; immutable after construction, shared by all workers.
/// A reload builds a new ServerContext (with its own, empty session cache, so no session resumes
/// across a reload that may have changed trust or CRLs) and new connections use it.
class ServerContext {
 public:
  /// Throws policy::ConfigError (positioned at proxy.yaml) when a file is bad or the key does not
  /// match.
  static std::shared_ptr<const ServerContext> build(const ProxyConfig& config);

  /// A new server-side SSL for one accepted connection. nullptr on allocation failure.
  ssl::SslPtr new_ssl() const;

  /// After the handshake completed on `ssl`: the verification outcome (from the handshake's
  /// callback, or from the resumed session's stored outcome) and the peer chain.
  PeerVerification peer_verification(SSL* ssl) const;

  /// Frees what the handshake's callbacks kept on `ssl`, once peer_verification() has been read:
  /// a connection does not carry it for its lifetime. A verify or ticket callback on `ssl` after
  /// this refuses (renegotiation is off; tickets are issued within the handshake).
  static void forget_handshake(SSL* ssl);

  /// Maps a failed handshake (SSL_get_verify_result, alerts, error queue) to a metric reason.
  VerifyReason failure_reason(SSL* ssl) const;

  /// Empties the session cache: a context replaced by a reload resumes nothing more, and its
  /// sessions' memory goes now rather than when its last connection closes.
  void forget_sessions() const;

  const TrustStore& trust() const { return *trust_; }
  SSL_CTX* native() const { return ctx_.get(); }
  std::time_t server_cert_not_after() const { return server_not_after_; }

 private:
  ServerContext() = default;
  ssl::SslCtxPtr ctx_;
  std::shared_ptr<const TrustStore> trust_;
  std::time_t server_not_after_ = 0;
  ClientCertMode mode_ = ClientCertMode::kRequire;
  int lifetime_s_ = 0;
};

}  // namespace fmp::proxy::tls
