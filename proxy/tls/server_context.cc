// The listener's SSL_CTX.
//
// Per-connection verification state lives in the SSL's ex_data (SslState below) during the
// handshake; the connection frees it once it has read the outcome (forget_handshake), otherwise
// OpenSSL's ex_data free callback frees it with the SSL. The state holds its own reference to the
// TrustStore, so an SSL that outlives its ServerContext (a handshake still running across a
// reload) verifies against the trust it was accepted with and never touches a freed object.
#include "proxy/tls/server_context.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include <array>
#include <cstdint>
#include <new>
#include <string_view>
#include <utility>

#include "policy/config_error.h"
#include "proxy/tls/asn1_time.h"
#include "proxy/tls/file_bytes.h"
#include "proxy/tls/openssl_errors.h"

namespace fmp::proxy::tls {

namespace {

using policy::Diagnostic;

/// TLS 1.2: forward secrecy and AEAD only. TLS 1.3 keeps OpenSSL's default suites (all AEAD).
constexpr const char* kTls12Ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
constexpr const char* kGroups = "X25519:P-256:P-384";

/// What one connection's handshake learned. Owned by the SSL (ex_data), freed by free_state().
struct SslState {
  std::shared_ptr<const TrustStore> trust;
  ClientCertMode mode = ClientCertMode::kRequire;
  int lifetime_s = 0;                     ///< tls.session_ticket_lifetime_s
  std::optional<VerifyResult> handshake;  ///< set by the verify callback of a full handshake
};

void free_state(void* /*parent*/, void* ptr, CRYPTO_EX_DATA* /*ad*/, int /*idx*/, long /*argl*/,
                void* /*argp*/) {
  delete static_cast<SslState*>(ptr);
}

/// SSL_dup() copies ex_data pointers; give the copy its own state so each SSL frees only its own.
int dup_state(CRYPTO_EX_DATA* /*to*/, const CRYPTO_EX_DATA* /*from*/, void** from_d, int /*idx*/,
              long /*argl*/, void* /*argp*/) {
  auto* original = static_cast<SslState*>(*from_d);
  *from_d = original != nullptr ? new (std::nothrow) SslState(*original) : nullptr;
  return 1;
}

/// The one static of the TLS layer, on purpose: OpenSSL ex_data indices are process-wide and are
/// registered with the free/dup callbacks above. Allocating an index per ServerContext would leak
/// one per reload, and freeing it with its context would strand the state of SSLs still open across
/// a reload (their free callback would no longer run). One index per process, allocated on first
/// use (thread-safe initialisation), shared by every ServerContext.
int state_index() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, dup_state, free_state);
  return index;
}

SslState* state_of(const SSL* ssl) {
  int idx = state_index();
  if (ssl == nullptr || idx < 0) return nullptr;
  return static_cast<SslState*>(SSL_get_ex_data(ssl, idx));
}

VerifyResult not_ok(VerifyReason reason, std::string message) {
  VerifyResult r;
  r.ok = false;
  r.reason = reason;
  r.message = std::move(message);
  return r;
}

// Resumption uses OpenSSL's server-side session cache (stateful: a TLS 1.3 ticket or a TLS 1.2
// session id only names a cached session), not encrypted stateless tickets. A resumed connection
// then finds the client's certificate and chain already parsed in memory instead of decoding them
// from a ticket on every resumption (the larger part of a resumption's CPU), no long-lived ticket
// key exists whose theft would expose resumed sessions, and the chain stays known.
//
// Known, inside OpenSSL 3.0: a TLS 1.3 resumption from the stateful cache uses the cached session
// object itself as the connection's session until the new ticket's copy is made, and writes the
// negotiated group and cipher into it; two workers resuming the same ticket at once write the same
// values concurrently (a data race ThreadSanitizer would report; harmless values).
//
// Only sessions of verified certificates are cached (admit_session() below), each carrying the
// verified outcome as its "ticket application data" (kept with the session in memory): magic, ok
// flag, valid_until (8 bytes, big-endian), community name. A session resumes only until
// valid_until: its timeout ends before it, so a certificate or CA that expires, or a CRL that goes
// stale, makes the next connection do a full handshake; peer_verification() checks it again when a
// session resumes.
constexpr std::string_view kTicketMagic = "FMP1";
constexpr std::size_t kTicketHeader = kTicketMagic.size() + 1 + 8;

/// Only verified outcomes are ever stored (remember_outcome()), so the flag is always set.
std::string encode_outcome(const VerifyResult& r) {
  std::string out(kTicketMagic);
  out += '\1';
  const auto until = static_cast<std::uint64_t>(r.valid_until);
  for (int shift = 56; shift >= 0; shift -= 8) out += static_cast<char>((until >> shift) & 0xFFU);
  out += r.community;
  return out;
}

/// The verified outcome a session carries, if it still holds at `now`.
std::optional<VerifyResult> decode_outcome(const void* data, std::size_t len, std::time_t now) {
  std::string_view s(static_cast<const char*>(data), len);
  if (s.size() <= kTicketHeader || s.substr(0, kTicketMagic.size()) != kTicketMagic)
    return std::nullopt;
  if (s[kTicketMagic.size()] != '\1') return std::nullopt;
  std::uint64_t until = 0;
  for (std::size_t i = kTicketMagic.size() + 1; i < kTicketHeader; ++i)
    until = (until << 8) | static_cast<unsigned char>(s[i]);
  if (until == 0 || static_cast<std::uint64_t>(now) >= until) return std::nullopt;
  VerifyResult r;
  r.ok = true;
  r.reason = VerifyReason::kNone;
  r.community = std::string(s.substr(kTicketHeader));
  r.valid_until = static_cast<std::time_t>(until);
  return r;
}

std::optional<VerifyResult> session_outcome(SSL_SESSION* session, std::time_t now) {
  void* data = nullptr;
  std::size_t len = 0;
  if (session == nullptr || SSL_SESSION_get0_ticket_appdata(session, &data, &len) != 1 ||
      data == nullptr)
    return std::nullopt;
  return decode_outcome(data, len, now);
}

/// The only way into the session cache (SSL_SESS_CACHE_NO_INTERNAL_STORE: OpenSSL hands every new
/// server session here instead of storing it): a session enters only with a verified outcome that
/// still holds. A refused certificate never resumes, and neither anonymous clients nor failures can
/// push verified partners' sessions out of the bounded cache (an insert evicts when it is full).
int admit_session(SSL* ssl, SSL_SESSION* session) {
  if (session_outcome(session, std::time(nullptr)))
    SSL_CTX_add_session(SSL_get_SSL_CTX(ssl), session);  // takes its own reference
  return 0;                                              // the caller's reference is not kept
}

/// Stores a verified `outcome` in `session` and cuts its lifetime to the configured one, ending a
/// second before valid_until: OpenSSL still resumes a session in the second its timeout ends, and
/// decode_outcome() already refuses it then.
bool remember_outcome(SSL_SESSION* session, const VerifyResult& outcome, int lifetime_s,
                      std::time_t now) {
  if (session == nullptr) return false;
  std::string data = encode_outcome(outcome);
  long timeout = lifetime_s;
  const std::time_t left = outcome.valid_until > now ? outcome.valid_until - now - 1 : 0;
  if (left < timeout) timeout = static_cast<long>(left);
  return SSL_SESSION_set1_ticket_appdata(session, data.data(), data.size()) == 1 &&
         SSL_SESSION_set_timeout(session, timeout) == 1;
}

/// TLS 1.3: runs for each ticket issued, on the session the ticket will name (a copy of the
/// resumed one when the handshake resumed, outcome included). A ticket for anything but a
/// verified, still valid identity names a session admit_session() keeps out, so it resumes
/// nothing (the client's next offer of it is a cache miss: a full handshake).
int generate_ticket(SSL* ssl, void* /*arg*/) {
  SslState* st = state_of(ssl);
  SSL_SESSION* session = SSL_get_session(ssl);
  if (session == nullptr || st == nullptr) return 0;
  const std::time_t now = std::time(nullptr);
  // On resumption the copy restarts its lifetime now (OpenSSL resets its time), so its timeout
  // is cut again: never past valid_until.
  const std::optional<VerifyResult> outcome =
      SSL_session_reused(ssl) == 1 ? session_outcome(session, now) : st->handshake;
  if (!outcome || !outcome->ok) return 1;
  return remember_outcome(session, *outcome, st->lifetime_s, now) ? 1 : 0;
}

/// Replaces OpenSSL's chain building with TrustStore::verify. In require mode a refused chain fails
/// the handshake; the X509_V_ERR_* left in the store context picks the alert (certificate_expired,
/// certificate_revoked, unknown_ca, bad_certificate, ...). In request mode the handshake continues
/// and the refusal is only recorded: the connection answers 401 later.
int verify_callback(X509_STORE_CTX* x, void* /*arg*/) {
  auto* ssl =
      static_cast<SSL*>(X509_STORE_CTX_get_ex_data(x, SSL_get_ex_data_X509_STORE_CTX_idx()));
  SslState* st = state_of(ssl);
  if (st == nullptr || !st->trust) {
    // An SSL not made by ServerContext::new_ssl(): nothing to verify with, so refuse.
    X509_STORE_CTX_set_error(x, X509_V_ERR_APPLICATION_VERIFICATION);
    return 0;
  }
  const std::time_t now = std::time(nullptr);
  VerifyResult r =
      st->trust->verify(X509_STORE_CTX_get0_cert(x), X509_STORE_CTX_get0_untrusted(x), now);
  st->handshake = r;
  if (r.ok) {
    // The session being negotiated: TLS 1.2 caches it by session id when the handshake ends, so
    // it carries the outcome from here; TLS 1.3 sets it again when the ticket is issued.
    if (!remember_outcome(SSL_get_session(ssl), r, st->lifetime_s, now)) {
      X509_STORE_CTX_set_error(x, X509_V_ERR_OUT_OF_MEM);
      return 0;
    }
    X509_STORE_CTX_set_error(x, X509_V_OK);
    return 1;
  }
  // No resumption for a refused certificate: no TLS 1.3 ticket (sent after this point); the
  // session carries no outcome, so admit_session() keeps it out of the cache.
  SSL_set_num_tickets(ssl, 0);
  X509_STORE_CTX_set_error(x,
                           r.openssl_error != X509_V_OK ? r.openssl_error : X509_V_ERR_UNSPECIFIED);
  return st->mode == ClientCertMode::kRequest ? 1 : 0;
}

int no_password(char* /*buf*/, int /*size*/, int /*rwflag*/, void* /*u*/) {
  return -1;  // encrypted keys are not supported; never prompt on a terminal
}

std::string quoted(const std::string& s) {
  return "\"" + s + "\"";
}

ssl::BioPtr memory_bio(const std::string& bytes) {
  return ssl::BioPtr(BIO_new_mem_buf(bytes.data(), static_cast<int>(bytes.size())));
}

class Diagnostics {
 public:
  explicit Diagnostics(std::string file) : file_(std::move(file)) {}
  void add(const SourcePos& pos, std::string message) {
    list_.push_back(Diagnostic{file_, pos.line, pos.column, std::move(message)});
  }
  void add_all(const std::vector<Diagnostic>& more) {
    list_.insert(list_.end(), more.begin(), more.end());
  }
  bool empty() const { return list_.empty(); }
  std::vector<Diagnostic> take() { return std::move(list_); }

 private:
  std::string file_;
  std::vector<Diagnostic> list_;
};

/// Loads the server chain (leaf first) into ctx. Returns the leaf, or null after adding a
/// diagnostic.
X509* load_certificate_chain(SSL_CTX* ctx, const FileRef& ref, Diagnostics& diags) {
  std::string why;
  auto bytes = read_file_bytes(ref.path, why);
  if (!bytes) {
    diags.add(ref.pos, "cannot read certificate file " + quoted(ref.path) + ": " + why);
    return nullptr;
  }
  ERR_clear_error();
  auto bio = memory_bio(*bytes);
  std::vector<ssl::X509Ptr> certs;
  while (X509* c = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) certs.emplace_back(c);
  unsigned long last = ERR_peek_last_error();
  bool clean_end = ERR_GET_LIB(last) == ERR_LIB_PEM && ERR_GET_REASON(last) == PEM_R_NO_START_LINE;
  if (!clean_end) {
    diags.add(ref.pos,
              "cannot parse certificate file " + quoted(ref.path) + ": " + drain_openssl_errors());
    return nullptr;
  }
  ERR_clear_error();
  if (certs.empty()) {
    diags.add(ref.pos, "no certificate in certificate file " + quoted(ref.path));
    return nullptr;
  }
  if (SSL_CTX_use_certificate(ctx, certs.front().get()) != 1) {
    diags.add(ref.pos,
              "cannot use certificate " + quoted(ref.path) + ": " + drain_openssl_errors());
    return nullptr;
  }
  for (std::size_t i = 1; i < certs.size(); ++i) {
    if (SSL_CTX_add1_chain_cert(ctx, certs[i].get()) != 1) {
      diags.add(ref.pos, "cannot use chain certificate " + std::to_string(i + 1) + " of " +
                             quoted(ref.path) + ": " + drain_openssl_errors());
      return nullptr;
    }
  }
  return SSL_CTX_get0_certificate(ctx);
}

void load_private_key(SSL_CTX* ctx, X509* leaf, const TlsSettings& tls, Diagnostics& diags) {
  const FileRef& ref = tls.key;
  std::string why;
  auto bytes = read_file_bytes(ref.path, why);
  if (!bytes) {
    diags.add(ref.pos, "cannot read key file " + quoted(ref.path) + ": " + why);
    return;
  }
  ERR_clear_error();
  auto bio = memory_bio(*bytes);
  ssl::EvpPkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, no_password, nullptr));
  if (!key) {
    std::string errors = drain_openssl_errors();
    if (bytes->find("ENCRYPTED") != std::string::npos)
      errors += "; encrypted keys are not supported";
    diags.add(ref.pos, "cannot parse private key file " + quoted(ref.path) + ": " + errors);
    return;
  }
  if (leaf == nullptr) return;  // the certificate's own diagnostic already explains
  if (X509_check_private_key(leaf, key.get()) != 1) {
    ERR_clear_error();
    diags.add(ref.pos, "private key does not match certificate: key " + quoted(ref.path) +
                           ", certificate " + quoted(tls.cert.path));
    return;
  }
  if (SSL_CTX_use_PrivateKey(ctx, key.get()) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
    diags.add(ref.pos, "private key does not match certificate: key " + quoted(ref.path) +
                           ", certificate " + quoted(tls.cert.path) + " (" +
                           drain_openssl_errors() + ")");
  }
}

/// The acceptable-CA names sent in the CertificateRequest: every CA of every community, once each.
bool set_client_ca_list(SSL_CTX* ctx, const TrustStore& trust) {
  STACK_OF(X509_NAME)* names = sk_X509_NAME_new_null();
  if (names == nullptr) return false;
  for (X509* ca : trust.all_cas()) {
    const X509_NAME* subject = X509_get_subject_name(ca);
    bool seen = false;
    for (int i = 0; i < sk_X509_NAME_num(names) && !seen; ++i)
      seen = X509_NAME_cmp(sk_X509_NAME_value(names, i), subject) == 0;
    if (seen) continue;
    X509_NAME* copy = X509_NAME_dup(subject);
    if (copy == nullptr || sk_X509_NAME_push(names, copy) <= 0) {
      X509_NAME_free(copy);
      sk_X509_NAME_pop_free(names, X509_NAME_free);
      return false;
    }
  }
  SSL_CTX_set_client_CA_list(ctx, names);  // takes ownership
  return true;
}

}  // namespace

std::shared_ptr<const ServerContext> ServerContext::build(const ProxyConfig& config) {
  const TlsSettings& tls = config.tls;
  Diagnostics diags(config.file);
  const SourcePos top{};
  std::shared_ptr<ServerContext> sc(new ServerContext());
  sc->mode_ = tls.client_cert;
  sc->ctx_.reset(SSL_CTX_new(TLS_server_method()));
  SSL_CTX* ctx = sc->ctx_.get();
  if (ctx == nullptr || state_index() < 0) {
    diags.add(top, "cannot create the TLS context: " + drain_openssl_errors());
    throw policy::ConfigError(diags.take());
  }

  if (tls.min_version != TLS1_2_VERSION && tls.min_version != TLS1_3_VERSION) {
    diags.add(top, "unsupported minimum TLS version " + std::to_string(tls.min_version));
  } else if (SSL_CTX_set_min_proto_version(ctx, tls.min_version) != 1 ||
             SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) != 1) {
    diags.add(top, "cannot set the TLS versions: " + drain_openssl_errors());
  }
  if (SSL_CTX_set_cipher_list(ctx, kTls12Ciphers) != 1 ||
      SSL_CTX_set1_groups_list(ctx, kGroups) != 1) {
    diags.add(top, "cannot set the TLS ciphers or groups: " + drain_openssl_errors());
  }
  std::uint64_t options =
      SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE;
#ifdef SSL_OP_NO_CLIENT_RENEGOTIATION
  options |= SSL_OP_NO_CLIENT_RENEGOTIATION;
#endif
  // A client that closes without close_notify (many do) ends its connection cleanly: HTTP framing,
  // not TLS, tells a complete request from a cut one. Otherwise OpenSSL treats that EOF as a fatal
  // error and drops the client's session from the cache, so it could never resume.
  options |= SSL_OP_IGNORE_UNEXPECTED_EOF;
  SSL_CTX_set_options(ctx, options);
  // Idle connections give their 16 KiB+ read/write buffers back: thousands of kept-alive clients
  // then cost little memory.
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);

  X509* leaf = load_certificate_chain(ctx, tls.cert, diags);
  if (leaf != nullptr) sc->server_not_after_ = asn1_to_time_t(X509_get0_notAfter(leaf));
  load_private_key(ctx, leaf, tls, diags);

  try {
    sc->trust_ = TrustStore::load(tls.trust, config.file);
  } catch (const policy::ConfigError& e) {
    diags.add_all(e.diagnostics());
  }
  if (!diags.empty()) throw policy::ConfigError(diags.take());

  // Client certificates: TrustStore::verify decides, not OpenSSL's default chain building.
  int verify_mode = SSL_VERIFY_PEER;
  if (tls.client_cert == ClientCertMode::kRequire) verify_mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
  SSL_CTX_set_verify(ctx, verify_mode, nullptr);
  SSL_CTX_set_cert_verify_callback(ctx, verify_callback, nullptr);
  if (!set_client_ca_list(ctx, *sc->trust_)) diags.add(top, "cannot build the client CA list");

  // Resumption: this SSL_CTX's own session cache (shared by the workers, bounded, dropped with the
  // context on a reload), one TLS 1.3 ticket per handshake naming a cached session, the verified
  // community kept with each session. The random session-id context also keeps sessions from ever
  // matching another context. A lifetime of 0 turns resumption off.
  std::array<unsigned char, SSL_MAX_SID_CTX_LENGTH> sid_ctx{};
  if (RAND_bytes(sid_ctx.data(), static_cast<int>(sid_ctx.size())) != 1 ||
      SSL_CTX_set_session_id_context(ctx, sid_ctx.data(), static_cast<unsigned>(sid_ctx.size())) !=
          1) {
    diags.add(top, "cannot set the session id context: " + drain_openssl_errors());
  }
  sc->lifetime_s_ = tls.session_ticket_lifetime_s;
  const bool resume = tls.session_ticket_lifetime_s > 0;
  SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);  // stateful: tickets name cached sessions
  SSL_CTX_set_session_cache_mode(
      ctx, resume ? SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_INTERNAL_STORE : SSL_SESS_CACHE_OFF);
  SSL_CTX_sess_set_new_cb(ctx, admit_session);
  SSL_CTX_sess_set_cache_size(ctx, tls.session_cache_size);
  SSL_CTX_set_timeout(ctx, static_cast<long>(tls.session_ticket_lifetime_s));
  SSL_CTX_set_num_tickets(ctx, resume ? 1 : 0);
  if (SSL_CTX_set_session_ticket_cb(ctx, generate_ticket, nullptr, nullptr) != 1) {
    diags.add(top, "cannot set the session ticket callback");
  }
  if (!diags.empty()) throw policy::ConfigError(diags.take());
  ERR_clear_error();
  return sc;
}

ssl::SslPtr ServerContext::new_ssl() const {
  int idx = state_index();
  if (idx < 0) return nullptr;
  ssl::SslPtr ssl(SSL_new(ctx_.get()));
  if (!ssl) return nullptr;
  auto* st = new (std::nothrow) SslState{trust_, mode_, lifetime_s_, std::nullopt};
  if (st == nullptr) return nullptr;
  if (SSL_set_ex_data(ssl.get(), idx, st) != 1) {
    delete st;
    return nullptr;
  }
  return ssl;
}

PeerVerification ServerContext::peer_verification(SSL* ssl) const {
  PeerVerification pv;
  const SslState* st = state_of(ssl);
  if (st == nullptr) {
    // Not made by new_ssl(), or its outcome was already read (forget_handshake): fail closed.
    pv.result = not_ok(VerifyReason::kOther, "no handshake state for this connection");
    return pv;
  }
  if (SSL_session_reused(ssl) == 1) {
    pv.resumed = true;
    std::optional<VerifyResult> stored = session_outcome(SSL_get_session(ssl), std::time(nullptr));
    if (stored) {
      pv.result = std::move(*stored);
      return pv;
    }
    // Only verified sessions are cached and they time out before valid_until, but a resumption
    // accepted in the last second before it can finish after it: refused (fail closed); the
    // client's next connection does a full handshake.
    pv.result = not_ok(VerifyReason::kOther,
                       "resumed session outlived the validity of its certificate, CAs or CRLs");
    return pv;
  }
  if (st->handshake) {
    pv.result = *st->handshake;
    return pv;
  }
  if (SSL_get0_peer_certificate(ssl) != nullptr) {  // cannot happen: a certificate is always judged
    pv.result = not_ok(VerifyReason::kOther, "client certificate was not verified");
    return pv;
  }
  pv.result = not_ok(VerifyReason::kNoCertificate, "no client certificate");
  return pv;
}

void ServerContext::forget_handshake(SSL* ssl) {
  const int idx = state_index();
  SslState* st = state_of(ssl);
  if (st != nullptr && SSL_set_ex_data(ssl, idx, nullptr) == 1) delete st;
}

void ServerContext::forget_sessions() const {
  SSL_CTX_flush_sessions(ctx_.get(), 0);  // 0: every session, expired or not
}

VerifyReason ServerContext::failure_reason(SSL* ssl) const {
  const SslState* st = state_of(ssl);
  if (st != nullptr && st->handshake) {
    if (!st->handshake->ok) return st->handshake->reason;
    return VerifyReason::kProtocol;  // the chain was fine; something after it failed
  }
  // The handshake stopped while reading the client's Certificate message without judging any
  // certificate: the client sent an empty one although require mode demands it.
  if (mode_ == ClientCertMode::kRequire && ssl != nullptr && SSL_get_state(ssl) == TLS_ST_SR_CERT &&
      SSL_get0_peer_certificate(ssl) == nullptr) {
    return VerifyReason::kNoCertificate;
  }
  return VerifyReason::kProtocol;
}

}  // namespace fmp::proxy::tls
