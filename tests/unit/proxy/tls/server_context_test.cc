#include "proxy/tls/server_context.h"

#include <doctest/doctest.h>
#include <openssl/err.h>

#include <chrono>
#include <thread>

#include "policy/config_error.h"
#include "proxy/server/runtime_state.h"
#include "tests/unit/proxy/tls/test_pki.h"

using fmp::policy::ConfigError;
using fmp::proxy::ClientCertMode;
using fmp::proxy::FileRef;
using fmp::proxy::ProxyConfig;
using fmp::proxy::SourcePos;
using fmp::proxy::TrustCommunity;
using fmp::proxy::tls::PeerVerification;
using fmp::proxy::tls::ServerContext;
using fmp::proxy::tls::VerifyReason;
namespace pki = fmp::test_pki;
namespace ssl = fmp::ssl;

namespace {

struct Env {
  std::time_t now = std::time(nullptr);
  pki::TempDir dir;
  pki::Issued server_root, server_leaf, other_key_holder, root_a, int_a, leaf_a, leaf_a_expired,
      root_b, leaf_b, root_x, leaf_x;

  pki::CertSpec ca(const std::string& cn, long serial) const {
    return pki::CertSpec{cn, true, now - 30 * pki::kDay, now + 3650 * pki::kDay, "", serial};
  }
  pki::CertSpec leaf(const std::string& cn, long serial,
                     const std::string& eku = "clientAuth") const {
    return pki::CertSpec{cn, false, now - pki::kDay, now + 365 * pki::kDay, eku, serial};
  }

  Env() {
    server_root = pki::issue(ca("Server Root", 1), nullptr);
    server_leaf = pki::issue(leaf("localhost", 2, "serverAuth"), &server_root);
    other_key_holder = pki::issue(leaf("other", 3, "serverAuth"), &server_root);
    root_a = pki::issue(ca("Root A", 1), nullptr);
    int_a = pki::issue(ca("Intermediate A", 2), &root_a);
    leaf_a = pki::issue(leaf("client a", 10), &int_a);
    auto expired = leaf("expired a", 11);
    expired.not_before = now - 10 * pki::kDay;
    expired.not_after = now - pki::kDay;
    leaf_a_expired = pki::issue(expired, &int_a);
    root_b = pki::issue(ca("Root B", 1), nullptr);
    leaf_b = pki::issue(leaf("client b", 10), &root_b);
    root_x = pki::issue(ca("Unknown Root", 1), nullptr);
    leaf_x = pki::issue(leaf("client x", 10), &root_x);
    dir.write("server-chain.pem",
              pki::pem(server_leaf.cert.get()) + pki::pem(server_root.cert.get()));
    dir.write("server.key", pki::pem(server_leaf.key.get()));
    dir.write("other.key", pki::pem(other_key_holder.key.get()));
    dir.write("alpha.pem", pki::pem(root_a.cert.get()) + pki::pem(int_a.cert.get()));
    dir.write("beta.pem", pki::pem(root_b.cert.get()));
  }

  ProxyConfig config(ClientCertMode mode, int min_version = TLS1_2_VERSION) const {
    ProxyConfig c;
    c.file = "proxy.yaml";
    c.tls.cert = FileRef{dir.path("server-chain.pem"), SourcePos{5, 9}};
    c.tls.key = FileRef{dir.path("server.key"), SourcePos{6, 9}};
    c.tls.min_version = min_version;
    c.tls.client_cert = mode;
    TrustCommunity beta{
        "beta", FileRef{dir.path("beta.pem"), SourcePos{10, 11}}, {}, SourcePos{9, 7}};
    TrustCommunity alpha{
        "alpha", FileRef{dir.path("alpha.pem"), SourcePos{12, 11}}, {}, SourcePos{11, 7}};
    c.tls.trust = {beta, alpha};
    c.tls.session_ticket_lifetime_s = 300;
    return c;
  }
};

/// A client context presenting `client` (null: no certificate); it does not check the server.
ssl::SslCtxPtr client_ctx(const pki::Issued* client, int max_version = TLS1_3_VERSION) {
  ssl::SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
  REQUIRE(ctx);
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, nullptr);
  SSL_CTX_set_max_proto_version(ctx.get(), max_version);
  if (client != nullptr) {
    REQUIRE(SSL_CTX_use_certificate(ctx.get(), client->cert.get()) == 1);
    REQUIRE(SSL_CTX_use_PrivateKey(ctx.get(), client->key.get()) == 1);
  }
  return ctx;
}

enum class Step { kPending, kDone, kFailed };

void step(SSL* ssl, Step& state) {
  if (state != Step::kPending) return;
  int rc = SSL_do_handshake(ssl);
  if (rc == 1) {
    state = Step::kDone;
    return;
  }
  int err = SSL_get_error(ssl, rc);
  if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) state = Step::kFailed;
}

struct Outcome {
  Step client = Step::kPending;
  Step server = Step::kPending;
  unsigned long client_error = 0;  ///< the client's last OpenSSL error (e.g. the alert it received)
};

/// Runs a handshake between two SSLs joined by an in-memory BIO pair (bounded, no sockets, no
/// time), then moves one byte server -> client so a TLS 1.3 client processes its session ticket.
Outcome handshake(SSL* client, SSL* server) {
  BIO* client_bio = nullptr;
  BIO* server_bio = nullptr;
  REQUIRE(BIO_new_bio_pair(&client_bio, 0, &server_bio, 0) == 1);
  SSL_set_bio(client, client_bio, client_bio);
  SSL_set_bio(server, server_bio, server_bio);
  SSL_set_connect_state(client);
  SSL_set_accept_state(server);
  Outcome o;
  for (int i = 0; i < 100 && (o.client == Step::kPending || o.server == Step::kPending); ++i) {
    step(client, o.client);
    step(server, o.server);
  }
  ERR_clear_error();
  char byte = 0;
  if (o.server == Step::kDone) REQUIRE(SSL_write(server, "x", 1) == 1);
  if (o.client == Step::kDone) {
    // After a failed server handshake this reads the alert; otherwise the ticket and the byte.
    int rc = SSL_read(client, &byte, 1);
    if (rc <= 0) o.client_error = ERR_peek_last_error();
  }
  ERR_clear_error();
  return o;
}

struct Connection {
  ssl::SslPtr client;
  ssl::SslPtr server;
  Outcome outcome;
  PeerVerification peer;
};

Connection connect(const ServerContext& sc, SSL_CTX* cctx, SSL_SESSION* resume = nullptr) {
  Connection c;
  c.client.reset(SSL_new(cctx));
  c.server = sc.new_ssl();
  REQUIRE(c.client);
  REQUIRE(c.server);
  if (resume != nullptr) REQUIRE(SSL_set_session(c.client.get(), resume) == 1);
  c.outcome = handshake(c.client.get(), c.server.get());
  if (c.outcome.server == Step::kDone) c.peer = sc.peer_verification(c.server.get());
  return c;
}

/// A full handshake that verified, kept open (a server SSL freed without a shutdown takes its
/// session out of the cache), and the client's session to resume with.
struct Verified {
  Connection conn;
  ssl::SslSessionPtr session;
};

Verified verified_handshake(const ServerContext& sc, SSL_CTX* cctx) {
  Verified v{connect(sc, cctx), nullptr};
  REQUIRE(v.conn.peer.result.ok);
  v.session.reset(SSL_get1_session(v.conn.client.get()));
  REQUIRE(v.session);
  return v;
}

int alert_of(unsigned long err) {
  return ERR_GET_REASON(err) - SSL_AD_REASON_OFFSET;
}

}  // namespace

TEST_CASE("a key that does not match the certificate is a positioned config error") {
  Env env;
  auto config = env.config(ClientCertMode::kRequire);
  config.tls.key.path = env.dir.path("other.key");
  try {
    ServerContext::build(config);
    FAIL("expected ConfigError");
  } catch (const ConfigError& e) {
    REQUIRE(e.diagnostics().size() == 1);
    const auto& d = e.diagnostics()[0];
    CHECK(d.file == "proxy.yaml");
    CHECK(d.line == 6);
    CHECK(d.column == 9);
    CHECK(d.message.rfind("private key does not match certificate", 0) == 0);
  }
}

TEST_CASE("unreadable server files and bad trust files are all reported") {
  Env env;
  auto config = env.config(ClientCertMode::kRequire);
  config.tls.cert.path = env.dir.path("missing.pem");
  config.tls.trust[0].ca.path = env.dir.path("missing-ca.pem");
  try {
    ServerContext::build(config);
    FAIL("expected ConfigError");
  } catch (const ConfigError& e) {
    REQUIRE(e.diagnostics().size() == 2);
    CHECK(e.diagnostics()[0].line == 5);
    CHECK(e.diagnostics()[0].message.rfind("cannot read certificate file", 0) == 0);
    CHECK(e.diagnostics()[1].line == 10);
    CHECK(e.diagnostics()[1].message.rfind("cannot read CA file", 0) == 0);
  }
}

TEST_CASE("the context records the server certificate expiry and the trust") {
  Env env;
  auto sc = ServerContext::build(env.config(ClientCertMode::kRequire));
  CHECK(sc->server_cert_not_after() == env.now + 365 * pki::kDay);
  CHECK(sc->trust().expiries().size() == 2);
  CHECK(SSL_CTX_get_min_proto_version(sc->native()) == TLS1_2_VERSION);
  CHECK(SSL_CTX_get_num_tickets(sc->native()) == 1);
  STACK_OF(X509_NAME)* cas = SSL_CTX_get_client_CA_list(sc->native());
  REQUIRE(cas != nullptr);
  CHECK(sk_X509_NAME_num(cas) == 3);  // Root B, Root A, Intermediate A
}

TEST_CASE("require: a trusted client certificate completes the handshake with its community") {
  Env env;
  auto sc = ServerContext::build(env.config(ClientCertMode::kRequire));
  for (int version : {TLS1_2_VERSION, TLS1_3_VERSION}) {
    CAPTURE(version);
    auto cctx = client_ctx(&env.leaf_a, version);
    auto c = connect(*sc, cctx.get());
    REQUIRE(c.outcome.server == Step::kDone);
    CHECK(c.outcome.client == Step::kDone);
    CHECK(SSL_version(c.server.get()) == version);
    CHECK(c.peer.result.ok);
    CHECK(c.peer.result.reason == VerifyReason::kNone);
    CHECK(c.peer.result.community == "alpha");
    CHECK_FALSE(c.peer.resumed);
    CHECK(SSL_get0_peer_certificate(c.server.get()) != nullptr);
    if (version == TLS1_2_VERSION) {
      std::string cipher = SSL_get_cipher_name(c.server.get());
      CHECK(cipher.rfind("ECDHE-", 0) == 0);
    }
  }
  auto cb = client_ctx(&env.leaf_b);
  auto b = connect(*sc, cb.get());
  CHECK(b.peer.result.ok);
  CHECK(b.peer.result.community == "beta");
}

TEST_CASE("require: a refused certificate fails the handshake with the right alert and reason") {
  Env env;
  auto sc = ServerContext::build(env.config(ClientCertMode::kRequire));
  for (int version : {TLS1_2_VERSION, TLS1_3_VERSION}) {
    CAPTURE(version);
    auto expired_ctx = client_ctx(&env.leaf_a_expired, version);
    auto expired = connect(*sc, expired_ctx.get());
    CHECK(expired.outcome.server == Step::kFailed);
    CHECK(sc->failure_reason(expired.server.get()) == VerifyReason::kExpired);
    if (version == TLS1_3_VERSION)  // a TLS 1.2 client sees the alert during its own handshake
      CHECK(alert_of(expired.outcome.client_error) == SSL_AD_CERTIFICATE_EXPIRED);

    auto unknown_ctx = client_ctx(&env.leaf_x, version);
    auto unknown = connect(*sc, unknown_ctx.get());
    CHECK(unknown.outcome.server == Step::kFailed);
    CHECK(sc->failure_reason(unknown.server.get()) == VerifyReason::kUntrusted);
    if (version == TLS1_3_VERSION)
      CHECK(alert_of(unknown.outcome.client_error) == SSL_AD_UNKNOWN_CA);
  }
}

TEST_CASE("require: no client certificate fails with no_certificate") {
  Env env;
  auto sc = ServerContext::build(env.config(ClientCertMode::kRequire));
  for (int version : {TLS1_2_VERSION, TLS1_3_VERSION}) {
    CAPTURE(version);
    auto cctx = client_ctx(nullptr, version);
    auto c = connect(*sc, cctx.get());
    CHECK(c.outcome.server == Step::kFailed);
    CHECK(sc->failure_reason(c.server.get()) == VerifyReason::kNoCertificate);
  }
}

TEST_CASE("protocol failures are protocol, not certificate problems") {
  Env env;
  auto sc13 = ServerContext::build(env.config(ClientCertMode::kRequire, TLS1_3_VERSION));
  auto old_client = client_ctx(&env.leaf_a, TLS1_2_VERSION);
  auto c = connect(*sc13, old_client.get());
  CHECK(c.outcome.server == Step::kFailed);
  CHECK(sc13->failure_reason(c.server.get()) == VerifyReason::kProtocol);

  // A TLS 1.2 client offering only a non-forward-secret cipher finds nothing shared.
  auto sc = ServerContext::build(env.config(ClientCertMode::kRequire));
  auto weak = client_ctx(&env.leaf_a, TLS1_2_VERSION);
  REQUIRE(SSL_CTX_set_cipher_list(weak.get(), "AES128-SHA") == 1);
  auto w = connect(*sc, weak.get());
  CHECK(w.outcome.server == Step::kFailed);
  CHECK(sc->failure_reason(w.server.get()) == VerifyReason::kProtocol);
}

TEST_CASE("request: no certificate completes the handshake as no_certificate") {
  Env env;
  auto sc = ServerContext::build(env.config(ClientCertMode::kRequest));
  for (int version : {TLS1_2_VERSION, TLS1_3_VERSION}) {
    CAPTURE(version);
    auto cctx = client_ctx(nullptr, version);
    auto c = connect(*sc, cctx.get());
    REQUIRE(c.outcome.server == Step::kDone);
    CHECK_FALSE(c.peer.result.ok);
    CHECK(c.peer.result.reason == VerifyReason::kNoCertificate);
    CHECK_FALSE(c.peer.resumed);

    // Only verified sessions are cached: an anonymous one does a full handshake again, anonymous.
    CHECK(SSL_CTX_sess_number(sc->native()) == 0);
    ssl::SslSessionPtr session(SSL_get1_session(c.client.get()));
    auto again = connect(*sc, cctx.get(), session.get());
    REQUIRE(again.outcome.server == Step::kDone);
    CHECK_FALSE(again.peer.resumed);
    CHECK(again.peer.result.reason == VerifyReason::kNoCertificate);
  }
}

TEST_CASE("request: an invalid certificate completes the handshake but is recorded as refused") {
  Env env;
  auto sc = ServerContext::build(env.config(ClientCertMode::kRequest));
  for (int version : {TLS1_2_VERSION, TLS1_3_VERSION}) {
    CAPTURE(version);
    auto cctx = client_ctx(&env.leaf_a_expired, version);
    auto c = connect(*sc, cctx.get());
    REQUIRE(c.outcome.server == Step::kDone);
    CHECK_FALSE(c.peer.result.ok);
    CHECK(c.peer.result.reason == VerifyReason::kExpired);
    CHECK(c.peer.result.community == "alpha");

    // Whatever ticket the client holds never resumes the refused identity: nothing was cached.
    CHECK(SSL_CTX_sess_number(sc->native()) == 0);
    ssl::SslSessionPtr session(SSL_get1_session(c.client.get()));
    auto again = connect(*sc, cctx.get(), session.get());
    REQUIRE(again.outcome.server == Step::kDone);
    CHECK_FALSE(again.peer.resumed);
    CHECK(SSL_session_reused(again.server.get()) == 0);
    CHECK(again.peer.result.reason == VerifyReason::kExpired);
  }
  auto good_ctx = client_ctx(&env.leaf_a);
  auto good = connect(*sc, good_ctx.get());
  CHECK(good.peer.result.ok);
}

TEST_CASE(
    "a session ticket resumes with the verified community (handshake state forgotten), but not "
    "across a rebuild") {
  Env env;
  auto sc = ServerContext::build(env.config(ClientCertMode::kRequire));
  for (int version : {TLS1_2_VERSION, TLS1_3_VERSION}) {
    CAPTURE(version);
    auto cctx = client_ctx(&env.leaf_a, version);
    auto [first, session] = verified_handshake(*sc, cctx.get());
    REQUIRE(SSL_SESSION_is_resumable(session.get()) == 1);
    // The connection reads the outcome once and frees the handshake's state (forget_handshake):
    // nothing is left to read after (fail closed), and the session carries its own outcome.
    ServerContext::forget_handshake(first.server.get());
    const PeerVerification gone = sc->peer_verification(first.server.get());
    CHECK_FALSE(gone.result.ok);
    CHECK(gone.result.reason == VerifyReason::kOther);
    ServerContext::forget_handshake(first.server.get());  // again: nothing to free
    ServerContext::forget_handshake(nullptr);

    auto second = connect(*sc, cctx.get(), session.get());
    REQUIRE(second.outcome.server == Step::kDone);
    CHECK(SSL_session_reused(second.server.get()) == 1);
    CHECK(second.peer.resumed);
    CHECK(second.peer.result.ok);
    CHECK(second.peer.result.community == "alpha");
    CHECK(SSL_get0_peer_certificate(second.server.get()) != nullptr);

    // A replaced context forgets its sessions (StateHolder::set on a reload)...
    REQUIRE(SSL_CTX_sess_number(sc->native()) > 0);
    sc->forget_sessions();
    CHECK(SSL_CTX_sess_number(sc->native()) == 0);
    CHECK_FALSE(connect(*sc, cctx.get(), session.get()).peer.resumed);

    // ...and a reload builds a new context with its own, empty session cache: a full handshake,
    // verified again.
    auto reloaded = ServerContext::build(env.config(ClientCertMode::kRequire));
    auto third = connect(*reloaded, cctx.get(), session.get());
    REQUIRE(third.outcome.server == Step::kDone);
    CHECK(SSL_session_reused(third.server.get()) == 0);
    CHECK_FALSE(third.peer.resumed);
    CHECK(third.peer.result.ok);
    CHECK(third.peer.result.community == "alpha");
  }
}

TEST_CASE("a resumed session keeps the client's chain; its lifetime ends with the certificate") {
  Env env;
  auto short_spec = env.leaf("client a, expiring", 12);
  short_spec.not_after = env.now + 100;
  const pki::Issued expiring = pki::issue(short_spec, &env.int_a);
  auto sc = ServerContext::build(env.config(ClientCertMode::kRequire));
  for (int version : {TLS1_2_VERSION, TLS1_3_VERSION}) {
    CAPTURE(version);
    auto cctx = client_ctx(&env.leaf_a, version);
    REQUIRE(SSL_CTX_add1_chain_cert(cctx.get(), env.int_a.cert.get()) == 1);
    auto [first, session] = verified_handshake(*sc, cctx.get());
    // The configured lifetime: the certificate, its CAs and (no) CRLs are valid far longer.
    CHECK(SSL_SESSION_get_timeout(SSL_get_session(first.server.get())) == 300);
    auto second = connect(*sc, cctx.get(), session.get());
    REQUIRE(second.peer.resumed);
    CHECK(second.peer.result.community == "alpha");
    // The cached session still holds what the client sent, intermediate included.
    STACK_OF(X509)* chain = SSL_get_peer_cert_chain(second.server.get());
    REQUIRE(chain != nullptr);
    bool has_intermediate = false;
    for (int i = 0; i < sk_X509_num(chain); ++i)
      has_intermediate |= X509_cmp(sk_X509_value(chain, i), env.int_a.cert.get()) == 0;
    CHECK(has_intermediate);
    // The session issued on resumption (TLS 1.3) keeps the outcome and the remaining lifetime.
    CHECK(SSL_SESSION_get_timeout(SSL_get_session(second.server.get())) <= 300);
    CHECK(SSL_SESSION_get_timeout(SSL_get_session(second.server.get())) >= 298);

    auto ectx = client_ctx(&expiring, version);
    auto e = connect(*sc, ectx.get());
    REQUIRE(e.peer.result.ok);
    const long timeout = SSL_SESSION_get_timeout(SSL_get_session(e.server.get()));
    // Ends before the certificate's notAfter: OpenSSL still resumes in the second a timeout ends.
    CHECK(timeout <= 99);
    CHECK(timeout >= 97);
    // A TLS 1.3 resumption restarts the new session's clock: its timeout is cut again.
    ssl::SslSessionPtr es(SSL_get1_session(e.client.get()));
    auto resumed = connect(*sc, ectx.get(), es.get());
    REQUIRE(resumed.peer.resumed);
    CHECK(SSL_SESSION_get_timeout(SSL_get_session(resumed.server.get())) <= 99);
  }
}

TEST_CASE("a session past its lifetime does a full handshake; lifetime 0 never resumes") {
  Env env;
  auto config = env.config(ClientCertMode::kRequire);
  config.tls.session_ticket_lifetime_s = 1;
  auto sc = ServerContext::build(config);
  config.tls.session_ticket_lifetime_s = 0;
  auto never = ServerContext::build(config);
  for (int version : {TLS1_2_VERSION, TLS1_3_VERSION}) {
    CAPTURE(version);
    auto cctx = client_ctx(&env.leaf_a, version);
    auto [first, session] = verified_handshake(*sc, cctx.get());
    CHECK(connect(*sc, cctx.get(), session.get()).peer.resumed);  // within its second
    std::this_thread::sleep_for(std::chrono::milliseconds(2100));
    auto late = connect(*sc, cctx.get(), session.get());
    REQUIRE(late.outcome.server == Step::kDone);
    CHECK_FALSE(late.peer.resumed);
    CHECK(late.peer.result.ok);

    auto a = connect(*never, cctx.get());
    REQUIRE(a.peer.result.ok);
    ssl::SslSessionPtr s2(SSL_get1_session(a.client.get()));
    auto b = connect(*never, cctx.get(), s2.get());
    REQUIRE(b.outcome.server == Step::kDone);
    CHECK_FALSE(b.peer.resumed);
  }
}

TEST_CASE("the session cache holds at most session_cache_size verified sessions") {
  Env env;
  auto config = env.config(ClientCertMode::kRequest);
  config.tls.session_cache_size = 3;
  auto sc = ServerContext::build(config);
  CHECK(SSL_CTX_sess_get_cache_size(sc->native()) == 3);
  for (int version : {TLS1_2_VERSION, TLS1_3_VERSION}) {
    CAPTURE(version);
    SSL_CTX_flush_sessions(sc->native(), 0);
    auto cctx = client_ctx(&env.leaf_a, version);
    std::vector<Connection> full;
    for (int i = 0; i < 5; ++i) {
      full.push_back(connect(*sc, cctx.get()));
      REQUIRE(full.back().peer.result.ok);
    }
    // OpenSSL 3.0 makes room before it counts the new session, so a full cache holds size - 1.
    CHECK(SSL_CTX_sess_number(sc->native()) <= 3);
    CHECK(SSL_CTX_sess_number(sc->native()) >= 2);
    ssl::SslSessionPtr oldest(SSL_get1_session(full.front().client.get()));
    ssl::SslSessionPtr newest(SSL_get1_session(full.back().client.get()));
    CHECK_FALSE(connect(*sc, cctx.get(), oldest.get()).peer.resumed);
    // Kept open: a server SSL freed without a shutdown takes its session out of the cache.
    auto again = connect(*sc, cctx.get(), newest.get());
    CHECK(again.peer.resumed);

    // Anonymous and refused handshakes never enter the cache, so they evict nothing.
    const long before = SSL_CTX_sess_number(sc->native());
    const long evicted = SSL_CTX_sess_cache_full(sc->native());
    auto anonymous_ctx = client_ctx(nullptr, version);
    auto refused_ctx = client_ctx(&env.leaf_a_expired, version);
    auto anonymous = connect(*sc, anonymous_ctx.get());
    auto refused = connect(*sc, refused_ctx.get());
    CHECK(anonymous.peer.result.reason == VerifyReason::kNoCertificate);
    CHECK(refused.peer.result.reason == VerifyReason::kExpired);
    CHECK(SSL_CTX_sess_number(sc->native()) == before);
    CHECK(SSL_CTX_sess_cache_full(sc->native()) == evicted);
    CHECK(connect(*sc, cctx.get(), newest.get()).peer.resumed);
  }
}

TEST_CASE("a reload's StateHolder::set empties the replaced context's session cache") {
  Env env;
  auto state = [&] {
    auto s = std::make_shared<fmp::proxy::server::RuntimeState>();
    s->tls = ServerContext::build(env.config(ClientCertMode::kRequire));
    return s;
  };
  auto old_state = state();
  fmp::proxy::server::StateHolder holder(old_state);
  auto cctx = client_ctx(&env.leaf_a);
  auto [first, session] = verified_handshake(*old_state->tls, cctx.get());
  REQUIRE(SSL_CTX_sess_number(old_state->tls->native()) == 1);
  holder.set(old_state);  // the same snapshot again: nothing replaced, nothing forgotten
  CHECK(SSL_CTX_sess_number(old_state->tls->native()) == 1);
  holder.set(state());
  CHECK(SSL_CTX_sess_number(old_state->tls->native()) == 0);
  CHECK_FALSE(connect(*old_state->tls, cctx.get(), session.get()).peer.resumed);
}

TEST_CASE("an SSL that outlives its context still verifies and frees cleanly") {
  Env env;
  auto sc = ServerContext::build(env.config(ClientCertMode::kRequire));
  ssl::SslPtr server = sc->new_ssl();
  auto cctx = client_ctx(&env.leaf_a);
  ssl::SslPtr client(SSL_new(cctx.get()));
  sc.reset();  // the listener swapped contexts; this connection keeps going
  auto o = handshake(client.get(), server.get());
  CHECK(o.server == Step::kDone);
}
