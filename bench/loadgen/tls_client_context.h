// The client-side SSL_CTX: client certificate, server verification, and a small store of the
// sessions (TLS 1.3 tickets) the server sent, for resumption.
#pragma once

#include <deque>

#include "bench/loadgen/options.h"
#include "policy/ssl_ptr.h"

namespace fmp::bench {

class TlsClientContext {
 public:
  /// Loads certificate, key and CA named in `options`. Throws std::runtime_error with the OpenSSL
  /// error on failure.
  explicit TlsClientContext(const Options& options);
  TlsClientContext(const TlsClientContext&) = delete;
  TlsClientContext& operator=(const TlsClientContext&) = delete;

  /// A new client SSL for one connection, set up to verify the server name and, when `resume`
  /// holds, to resume a stored session. Each ticket is offered once (RFC 8446 C.4: clients SHOULD
  /// NOT reuse a ticket), newest first; only when none is left is the last one offered again.
  /// Null on allocation failure.
  ssl::SslPtr new_ssl(bool resume);

 private:
  static int on_new_session(SSL* ssl, SSL_SESSION* session);

  const Options& options_;
  ssl::SslCtxPtr ctx_;
  std::deque<ssl::SslSessionPtr> sessions_;  // unused tickets, newest at the back
  ssl::SslSessionPtr last_offered_;
  bool server_name_is_ip_ = false;
};

}  // namespace fmp::bench
