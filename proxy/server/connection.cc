#include "proxy/server/connection.h"

#include <arpa/inet.h>
#include <event2/bufferevent_ssl.h>
#include <event2/bufferevent_struct.h>  // ev_read, for the read-ahead wake-up (kick_tls_reader)
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <cerrno>
#include <cstdio>
#include <ctime>

#include "policy/fhir_classify.h"
#include "policy/x509_identity.h"
#include "proxy/http/forward_head.h"
#include "proxy/server/worker.h"

namespace fmp::proxy::server {
namespace {

using observability::DecisionLabel;
using observability::UpstreamError;

/// Above this much unsent data towards one side, the proxy stops reading from the other side.
constexpr std::size_t kHighWatermark = 256 * 1024;
/// Reading resumes once the backlog has drained below this.
constexpr std::size_t kLowWatermark = 64 * 1024;
/// Bytes moved per read or write call: large enough for full 16 KiB TLS records and few syscalls.
constexpr ev_ssize_t kMaxSingleIo = 64 * 1024;
/// Client bytes read ahead (pipelined requests) beyond a request head before reading pauses.
constexpr std::size_t kReadAhead = 64 * 1024;
/// Plaintext per direct SSL_write: one full TLS record.
constexpr std::size_t kRecordPlaintext = 16 * 1024;
/// A keep-alive connection idle this long between requests gives its bufferevent back (park()).
/// Not at once: a busy connection would pay a bufferevent and four epoll_ctl calls per request.
constexpr std::chrono::milliseconds kParkAfter{100};

timeval to_timeval(int ms) {
  return timeval{ms / 1000, (ms % 1000) * 1000};
}

timeval to_timeval(std::chrono::steady_clock::duration d) {
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(d).count();
  if (us <= 0) return timeval{0, 0};
  return timeval{static_cast<time_t>(us / 1000000), static_cast<suseconds_t>(us % 1000000)};
}

std::string ip_of(const sockaddr* sa, std::uint16_t& port) {
  char buf[INET6_ADDRSTRLEN] = {0};
  port = 0;
  if (sa->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    evutil_inet_ntop(AF_INET, &in->sin_addr, buf, sizeof buf);
    port = ntohs(in->sin_port);
  } else if (sa->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    evutil_inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof buf);
    port = ntohs(in6->sin6_port);
  }
  return buf;
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

std::string_view effect_label(policy::Effect e, bool shadow) {
  if (shadow) return e == policy::Effect::kAllow ? "shadow_allow" : "shadow_deny";
  return e == policy::Effect::kAllow ? "allow" : "deny";
}

DecisionLabel decision_label(policy::Effect e, bool shadow) {
  if (shadow)
    return e == policy::Effect::kAllow ? DecisionLabel::kShadowAllow : DecisionLabel::kShadowDeny;
  return e == policy::Effect::kAllow ? DecisionLabel::kAllow : DecisionLabel::kDeny;
}

}  // namespace

/// Keeps a Connection alive across one libevent callback: the worker deletes it only once the
/// outermost callback of a closed connection returns.
class CallbackScope {
 public:
  explicit CallbackScope(Connection* c) : c_(c) { ++c_->depth_; }
  ~CallbackScope() {
    if (--c_->depth_ != 0) return;
    if (c_->dead_)
      c_->worker_.destroy(c_);
    else
      c_->kick_tls_reader();
  }
  CallbackScope(const CallbackScope&) = delete;
  CallbackScope& operator=(const CallbackScope&) = delete;

 private:
  Connection* c_;
};

Connection::Connection(Worker& worker, evutil_socket_t fd, const sockaddr* addr, StatePtr state)
    : worker_(worker),
      conn_state_(std::move(state)),
      max_header_bytes_(conn_state_->config.limits.max_header_bytes),
      max_body_bytes_(conn_state_->config.limits.max_body_bytes) {
  std::uint16_t port = 0;
  const std::string ip = ip_of(addr, port);
  client_address_ = std::make_shared<const std::string>(
      (addr->sa_family == AF_INET6 ? "[" + ip + "]" : ip) + ":" + std::to_string(port));
  id_ = worker_.next_connection_id();
  socket_ = ev::SocketFd(fd);
  ssl_ = conn_state_->tls->new_ssl();
  // Read-ahead: OpenSSL reads whatever the socket holds in one read() instead of a 5-byte record
  // header and then the record (one syscall per request instead of two). See kick_tls_reader().
  if (ssl_) SSL_set_read_ahead(ssl_.get(), 1);
  worker_.services().metrics.connection_opened();
  counted_open_ = true;
}

Connection::~Connection() {
  if (counted_open_) worker_.services().metrics.connection_closed();
  release_exchange();  // for the worker's next connections
}

// The exchange (and through it the head buffers) is borrowed from the worker while a request is
// handled (exchange.h, head_storage.h).
void Connection::release_exchange() {
  worker_.exchanges().give(std::move(ex_));
}

Exchange& Connection::ex() {
  // With the limits of the configuration the connection was accepted with.
  if (!ex_) ex_ = worker_.exchanges().take(max_header_bytes_, max_body_bytes_);
  return *ex_;
}

bool Connection::start() {
  header_timer_.reset(event_new(worker_.base(), -1, 0, &Connection::socket_cb, this));
  if (!ssl_ || !header_timer_ || SSL_set_fd(ssl_.get(), socket_.get()) != 1) {
    dead_ = true;
    return false;
  }
  SSL_set_accept_state(ssl_.get());
  restart_deadlines();
  if (!wait_on_socket(EV_READ)) {
    dead_ = true;
    return false;
  }
  return true;
}

// The bufferevent for the client side, made once the handshake is done and the first request's
// bytes are there. Without BEV_OPT_CLOSE_ON_FREE: the socket and the SSL stay the connection's.
bool Connection::open_down(bufferevent_ssl_state state) {
  down_stage_.reset(evbuffer_new());
  down_.reset(bufferevent_openssl_socket_new(worker_.base(), socket_.get(), ssl_.get(), state, 0));
  if (!down_ || !down_stage_) {
    down_.reset();
    down_stage_.reset();
    return false;
  }
  bufferevent_openssl_set_allow_dirty_shutdown(down_.get(), 1);
  bufferevent_setcb(down_.get(), &Connection::down_read_cb, &Connection::down_write_cb,
                    &Connection::down_event_cb, this);
  bufferevent_setwatermark(down_.get(), EV_WRITE, kLowWatermark, 0);
  // Reading stays enabled for the connection's life (no epoll_ctl per request); the high read
  // watermark bounds what a client can pipeline ahead of the request being served.
  bufferevent_setwatermark(down_.get(), EV_READ, 0, max_header_bytes_ + kReadAhead);
  bufferevent_set_max_single_read(down_.get(), kMaxSingleIo);
  bufferevent_set_max_single_write(down_.get(), kMaxSingleIo);
  const timeval idle = to_timeval(conn_state_->config.limits.idle_timeout_ms);
  bufferevent_set_timeouts(down_.get(), &idle, &idle);
  bufferevent_enable(down_.get(), EV_READ | EV_WRITE);
  return true;
}

// Until its first request arrives, a connection has no bufferevent: the TLS handshake is driven
// here (SSL_do_handshake on a socket event, as libevent's own bufferevent_openssl does it), and a
// connection that is idle after it (or between requests, park()) waits on that same one event.
// An idle mTLS connection then costs its SSL and this object, not ~1.2 KiB more of bufferevent and
// buffers. The wait keeps the request-head deadline (which the handshake counts against) and the
// idle timeout.
bool Connection::wait_on_socket(short what) {
  // Which deadline the timeout stands for is decided here, not from the clock when it fires:
  // libevent's timers may fire a few milliseconds early or late.
  wait_for_head_ = header_deadline_ <= idle_deadline_;
  park_timer_ = false;
  const timeval tv = to_timeval(std::min(header_deadline_, idle_deadline_) - Clock::now());
  event_del(header_timer_.get());
  return event_assign(header_timer_.get(), worker_.base(), socket_.get(), what,
                      &Connection::socket_cb, this) == 0 &&
         event_add(header_timer_.get(), &tv) == 0;
}

// A keep-alive connection idle for kParkAfter with nothing buffered anywhere (no request begun, no
// pipelined bytes, nothing unsent, no TLS record read ahead) frees its bufferevent and staging
// buffer and waits on the socket (wait_on_socket()); its next request makes them again. Called
// from the head timer, outside down_'s callbacks: the bufferevent goes at once.
bool Connection::park() {
  if (!down_ || ex_ || up_ || draining_ || close_after_response_) return false;
  if (evbuffer_get_length(bufferevent_get_input(down_.get())) != 0 ||
      evbuffer_get_length(bufferevent_get_output(down_.get())) != 0 ||
      evbuffer_get_length(down_stage_.get()) != 0 || SSL_has_pending(ssl_.get()) != 0)
    return false;
  down_.reset();
  down_stage_.reset();
  if (!wait_on_socket(EV_READ)) close_now();
  return true;
}

// From the socket wait to the bufferevent's life: the event is the head timer again, for what is
// left of the deadline.
bool Connection::head_timer_from_socket() {
  event_del(header_timer_.get());
  park_timer_ = false;
  const timeval tv = to_timeval(header_deadline_ - Clock::now());
  return event_assign(header_timer_.get(), worker_.base(), -1, 0, &Connection::header_timeout_cb,
                      this) == 0 &&
         evtimer_add(header_timer_.get(), &tv) == 0;
}

void Connection::socket_cb(evutil_socket_t, short what, void* arg) {
  auto* c = static_cast<Connection*>(arg);
  CallbackScope scope(c);
  if (!c->dead_) c->on_socket(what);
}

void Connection::on_socket(short what) {
  if ((what & EV_TIMEOUT) != 0) {
    if (wait_for_head_) {
      on_header_timeout();
    } else if (down_phase_ == Down::kHandshake) {
      handshake_failed();  // idle_timeout_ms without a byte of the handshake
    } else {
      worker_.services().log.info(
          "client connection idle timeout",
          {{"connection", std::to_string(id_)}, {"client", *client_address_}});
      close_now();
    }
    return;
  }
  if (down_phase_ == Down::kHandshake) {
    continue_handshake();
    return;
  }
  // Idle and now readable (bytes or EOF): a bufferevent from here on; it reads on the loop's next
  // round. The head deadline keeps running, as a timer.
  if (!head_timer_from_socket() || !open_down(BUFFEREVENT_SSL_OPEN)) close_now();
}

void Connection::continue_handshake() {
  ERR_clear_error();
  const int r = SSL_do_handshake(ssl_.get());
  if (r == 1) {
    handshake_done();
    return;
  }
  const int err = SSL_get_error(ssl_.get(), r);
  ERR_clear_error();
  restart_idle_deadline();
  if ((err == SSL_ERROR_WANT_READ && wait_on_socket(EV_READ)) ||
      (err == SSL_ERROR_WANT_WRITE && wait_on_socket(EV_WRITE)))
    return;
  handshake_failed();
}

std::string_view Connection::client_ip() const {
  std::string_view a = *client_address_;  // ip:port, or [ip]:port for IPv6
  a = a.substr(0, a.rfind(':'));
  if (a.size() >= 2 && a.front() == '[') a = a.substr(1, a.size() - 2);
  return a;
}

// ---- libevent entry points -------------------------------------------------------------------

void Connection::down_read_cb(bufferevent*, void* arg) {
  auto* c = static_cast<Connection*>(arg);
  CallbackScope scope(c);
  if (!c->dead_) c->on_down_read();
}
void Connection::down_write_cb(bufferevent*, void* arg) {
  auto* c = static_cast<Connection*>(arg);
  CallbackScope scope(c);
  if (!c->dead_) c->on_down_write();
}
void Connection::down_event_cb(bufferevent*, short events, void* arg) {
  auto* c = static_cast<Connection*>(arg);
  CallbackScope scope(c);
  if (!c->dead_) c->on_down_event(events);
}
void Connection::up_read_cb(bufferevent*, void* arg) {
  auto* c = static_cast<Connection*>(arg);
  CallbackScope scope(c);
  if (!c->dead_) c->on_up_read();
}
void Connection::up_write_cb(bufferevent*, void* arg) {
  auto* c = static_cast<Connection*>(arg);
  CallbackScope scope(c);
  if (!c->dead_) c->on_up_write();
}
void Connection::up_event_cb(bufferevent*, short events, void* arg) {
  auto* c = static_cast<Connection*>(arg);
  CallbackScope scope(c);
  if (!c->dead_) c->on_up_event(events);
}
void Connection::header_timeout_cb(evutil_socket_t, short, void* arg) {
  auto* c = static_cast<Connection*>(arg);
  CallbackScope scope(c);
  if (!c->dead_) c->on_header_timeout();
}

// ---- TLS ---------------------------------------------------------------------------------------

// With read-ahead, OpenSSL may hold received records that libevent has not turned into input yet
// (it reads one record per readable event, and the socket will not signal bytes already taken from
// it): after each outermost callback, while reading is wanted and not held back by the input
// watermark, the bufferevent's read event is activated so those records are read now.
void Connection::kick_tls_reader() {
  if (!down_ || down_phase_ == Down::kHandshake || down_phase_ == Down::kClosing) return;
  if ((bufferevent_get_enabled(down_.get()) & EV_READ) == 0) return;
  if (SSL_has_pending(ssl_.get()) == 0) return;
  size_t high = 0;
  bufferevent_getwatermark(down_.get(), EV_READ, nullptr, &high);
  if (high != 0 && evbuffer_get_length(bufferevent_get_input(down_.get())) >= high) return;
  event_active(&down_->ev_read, EV_READ, 1);
}

void Connection::on_down_event(short events) {
  if (events & BEV_EVENT_TIMEOUT) {
    worker_.services().log.info(
        "client connection idle timeout",
        {{"connection", std::to_string(id_)}, {"client", *client_address_}});
  }
  // EOF or error from the client: like nginx, a client that closes its side is taken to have
  // abandoned the request (TLS half-close is not supported); the upstream exchange is cut too.
  if (up_phase_ != Up::kNone && response_started_) {
    worker_.services().log.info("client went away during the response",
                                {{"connection", std::to_string(id_)}});
  }
  close_now();
}

void Connection::handshake_failed() {
  SSL* ssl = ssl_.get();
  if (ssl != nullptr && SSL_get_rbio(ssl) != nullptr && BIO_number_read(SSL_get_rbio(ssl)) == 0) {
    // Closed before sending a byte: a TCP health check or port probe, not a handshake attempt.
    down_phase_ = Down::kClosing;
    close_now();
    return;
  }
  const tls::VerifyReason reason =
      ssl ? conn_state_->tls->failure_reason(ssl) : tls::VerifyReason::kProtocol;
  worker_.services().metrics.count_handshake(false, reason);
  worker_.services().log.info(
      "TLS handshake failed",
      {{"client", *client_address_}, {"reason", std::string(tls::to_string(reason))}});
  down_phase_ = Down::kClosing;
  close_now();
}

void Connection::handshake_done() {
  SSL* ssl = ssl_.get();
  const tls::PeerVerification pv = conn_state_->tls->peer_verification(ssl);
  tls::ServerContext::forget_handshake(ssl);
  auto& metrics = worker_.services().metrics;
  if (pv.result.ok) {
    X509* leaf = SSL_get0_peer_certificate(ssl);
    if (leaf == nullptr) {
      // Verified but no certificate to read: cannot happen with OpenSSL; fail closed.
      metrics.count_handshake(false, tls::VerifyReason::kOther);
      close_now();
      return;
    }
    client_ = worker_.identities().get(leaf, SSL_get_peer_cert_chain(ssl), pv.result.community,
                                       worker_.state());
    if (!client_) {
      metrics.count_handshake(false, tls::VerifyReason::kOther);  // fail closed
      close_now();
      return;
    }
    metrics.count_handshake(true, tls::VerifyReason::kNone);
    if (pv.resumed) metrics.count_resumed();
  } else if (pv.result.reason == tls::VerifyReason::kNoCertificate) {
    client_ = worker_.identities().anonymous(worker_.state());
    metrics.count_handshake(true, tls::VerifyReason::kNone);  // anonymous, as `request` allows
    if (pv.resumed) metrics.count_resumed();
  } else {
    // `client_cert: request` and a certificate that failed verification: never downgraded to
    // anonymous; every request on this connection gets 401.
    cert_invalid_ = true;
    cert_reason_ = pv.result.reason;
    X509* leaf = SSL_get0_peer_certificate(ssl);
    policy::Identity refused;
    if (leaf != nullptr)
      refused = policy::extract_identity(leaf, SSL_get_peer_cert_chain(ssl),
                                         worker_.state()->policy->hipaa(), "");
    refused.present = false;  // the certificate proves nothing (it is only audited)
    client_ = make_client_identity(std::move(refused), worker_.state()->config.identity_headers);
    metrics.count_handshake(false, cert_reason_);
  }
  down_phase_ = Down::kHead;
  if (dead_) return;
  // Records read ahead with the handshake's last flight: a bufferevent now (kick_tls_reader reads
  // them once this callback returns). Otherwise wait, bufferevent-less, for the first request.
  restart_idle_deadline();
  const bool ok = SSL_has_pending(ssl_.get()) != 0
                      ? head_timer_from_socket() && open_down(BUFFEREVENT_SSL_OPEN)
                      : wait_on_socket(EV_READ);
  if (!ok) close_now();
}

// ---- requests ----------------------------------------------------------------------------------

void Connection::restart_idle_deadline() {
  idle_deadline_ =
      Clock::now() + std::chrono::milliseconds(conn_state_->config.limits.idle_timeout_ms);
}

Connection::Clock::time_point Connection::restart_deadlines() {
  const auto now = Clock::now();
  header_deadline_ = now + std::chrono::milliseconds(conn_state_->config.limits.header_timeout_ms);
  idle_deadline_ = now + std::chrono::milliseconds(conn_state_->config.limits.idle_timeout_ms);
  return now;
}

// Between requests: the head deadline, and the idle timeout (for a parked connection; down_'s read
// timeout is the same). The timer fires first at kParkAfter, to park().
void Connection::arm_header_timer() {
  const Clock::time_point now = restart_deadlines();
  park_timer_ = kParkAfter < header_deadline_ - now;
  const timeval t = to_timeval(std::min<Clock::duration>(header_deadline_ - now, kParkAfter));
  evtimer_add(header_timer_.get(), &t);
}

void Connection::on_header_timeout() {
  if (park_timer_) {
    // Not the deadline yet: the moment to park. A request that has begun keeps its deadline.
    park_timer_ = false;
    if (!park()) {
      const timeval t = to_timeval(header_deadline_ - Clock::now());
      evtimer_add(header_timer_.get(), &t);
    }
    return;
  }
  if (down_phase_ == Down::kHandshake) {
    worker_.services().metrics.count_handshake(false, tls::VerifyReason::kProtocol);
    worker_.services().log.info("TLS handshake timed out", {{"client", *client_address_}});
    close_now();
    return;
  }
  if (down_phase_ == Down::kHead) {
    if (down_ && evbuffer_get_length(bufferevent_get_input(down_.get())) > 0) {
      reject(http::Rejection::kRequestTimeout, "request head not received in time", true);
    } else {
      close_now();
    }
  }
}

void Connection::on_down_read() {
  if (down_phase_ == Down::kHead)
    read_head();
  else if (down_phase_ == Down::kBody)
    pump_request_body();
}

void Connection::read_head() {
  if (down_phase_ != Down::kHead || dead_) return;
  // A client that pipelines requests but does not read the answers gets no more of them read
  // until it catches up (resumed from on_down_write).
  if (evbuffer_get_length(bufferevent_get_output(down_.get())) > kHighWatermark) return;
  evbuffer* in = bufferevent_get_input(down_.get());
  if (evbuffer_get_length(in) == 0) return;  // nothing to take an exchange for yet
  const auto st = ex().request.read_head(in);
  if (st == http::MessageParser::Status::kNeedMore) return;
  if (st == http::MessageParser::Status::kError) {
    reject_malformed();
    return;
  }
  evtimer_del(header_timer_.get());
  begin_request();
}

void Connection::reject_malformed() {
  const auto err = ex().request.error();
  http::Rejection r = http::Rejection::kStructure;
  if (err == http::ParseError::kHeadersTooLarge) r = http::Rejection::kHeadersTooLarge;
  if (err == http::ParseError::kBodyTooLarge) r = http::Rejection::kBodyTooLarge;
  worker_.services().log.info("malformed request", {{"connection", std::to_string(id_)},
                                                    {"client", *client_address_},
                                                    {"error", ex().request.error_message()}});
  if (response_started_) {
    // Part of the response went out: no rejection can follow it; cut both sides.
    close_now();
    return;
  }
  if (up_phase_ != Up::kNone) {
    // The body was being streamed: the upstream holds an incomplete request, so its connection is
    // dropped (never pooled) and the client still gets its 400/413.
    release_upstream(false);
    up_phase_ = Up::kNone;
    forwarding_ = false;
  }
  if (r == http::Rejection::kBodyTooLarge && started_ != Clock::time_point{})
    audit(413, "deny", "request body exceeds max_body_bytes");
  reject(r, ex().request.error_message(), true);
}

void Connection::reverify() {
  // A reload may have revoked the certificate (new CRL), dropped its trust community or changed
  // the HIPAA mapping: a kept-alive connection is judged again, once, under the new snapshot.
  conn_state_ = req_state_;
  if (!client_ || !client_->identity.present) return;  // anonymous or refused: nothing to re-check
  SSL* ssl = ssl_.get();
  X509* leaf = ssl != nullptr ? SSL_get0_peer_certificate(ssl) : nullptr;
  STACK_OF(X509)* chain = ssl != nullptr ? SSL_get_peer_cert_chain(ssl) : nullptr;
  const tls::VerifyResult r = leaf != nullptr
                                  ? req_state_->tls->trust().verify(leaf, chain, std::time(nullptr))
                                  : tls::VerifyResult{};
  ClientIdentityPtr verified =
      r.ok ? worker_.identities().get(leaf, chain, r.community, req_state_) : nullptr;
  if (verified) {
    client_ = std::move(verified);
  } else {
    refuse_identity(leaf != nullptr && !r.ok ? r.reason : tls::VerifyReason::kOther);
    worker_.services().log.info("client certificate no longer valid after reload",
                                {{"connection", std::to_string(id_)},
                                 {"reason", std::string(tls::to_string(cert_reason_))}});
  }
}

// The certificate proves nothing any more (a reload re-verified it and it failed, or its identity
// could not be derived): every further request gets 401 and the connection closes after the
// current one. The refused identity is kept for the audit log only.
void Connection::refuse_identity(tls::VerifyReason reason) {
  cert_invalid_ = true;
  cert_reason_ = reason;
  policy::Identity refused = client_ ? client_->identity : policy::Identity{};
  refused.present = false;
  client_ = make_client_identity(std::move(refused), req_state_->config.identity_headers);
  close_after_response_ = true;
}

// A reload renamed the identity headers (or switched XFCC / RFC 9440 on or off): the block is
// derived again from the certificate (its PEM copies were dropped once the first one was built).
void Connection::rename_identity() {
  if (!client_->identity.present) {
    client_ = worker_.identities().anonymous(req_state_);
    return;
  }
  SSL* ssl = ssl_.get();
  X509* leaf = ssl != nullptr ? SSL_get0_peer_certificate(ssl) : nullptr;
  ClientIdentityPtr renamed = leaf != nullptr
                                  ? worker_.identities().get(leaf, SSL_get_peer_cert_chain(ssl),
                                                             client_->identity.trust, req_state_)
                                  : nullptr;
  if (renamed)
    client_ = std::move(renamed);
  else
    refuse_identity(tls::VerifyReason::kOther);
}

void Connection::begin_request() {
  req_state_ = worker_.state();
  started_ = Clock::now();
  ++request_seq_;
  const http::MessageHead& head = ex().request.head();
  keep_alive_ = head.keep_alive && !draining_;
  head_method_ = head.method == "HEAD";
  // fhir, decision and body start empty: the exchange came clean from the worker's pool.
  buffer_body_ = forwarding_ = chunked_upstream_ = false;
  request_body_done_ = !head.has_request_body();
  response_started_ = close_after_response_ = retried_ = audited_ = false;
  decided_ = got_upstream_bytes_ = false;
  bytes_in_ = bytes_out_ = 0;
  if (req_state_->tls != conn_state_->tls) reverify();
  if (!cert_invalid_ && client_ && req_state_->config.identity_headers != client_->names)
    rename_identity();

  const auto perr = policy::split_target(head.target, ex().path, ex().query);
  if (perr != policy::PathError::kOk) {
    worker_.services().log.info(
        "rejected request target",
        {{"connection", std::to_string(id_)}, {"error", std::string(policy::to_string(perr))}});
    reject(http::Rejection::kStructure,
           "invalid request target: " + std::string(policy::to_string(perr)), true);
    return;
  }
  if (cert_invalid_) {
    const bool expired = cert_reason_ == tls::VerifyReason::kExpired;
    ex().fhir.method = head.method;
    ex().fhir.path = ex().path;
    ex().decision.effect = policy::Effect::kDeny;
    ex().decision.rule = "default";
    ex().decision.reason = "client certificate " + std::string(tls::to_string(cert_reason_));
    decided_ = true;
    worker_.services().metrics.count_decision(*req_state_->rule_counters, DecisionLabel::kDeny,
                                              ex().decision.rule);
    audit(401, "deny", ex().decision.reason);
    reject(expired ? http::Rejection::kExpired : http::Rejection::kSecurity,
           "client certificate rejected: " + std::string(tls::to_string(cert_reason_)),
           !keep_alive_ || !request_body_done_ || close_after_response_);
    return;
  }
  if (!request_body_done_ &&
      policy::needs_body(head.method, ex().path, req_state_->config.fhir_base)) {
    buffer_body_ = true;
    down_phase_ = Down::kBody;
    if (head.expect_continue) send_down("HTTP/1.1 100 Continue\r\n\r\n", 25);
    pump_request_body();
    return;
  }
  decide_and_dispatch();
}

void Connection::on_body_data(const char* data, std::size_t len) {
  bytes_in_ += len;
  if (buffer_body_) {
    ex().body.append(data, len);
    return;
  }
  if (!up_) return;
  bufferevent* up = up_->bev.get();
  if (chunked_upstream_) {
    char size_line[32];
    const int n = std::snprintf(size_line, sizeof size_line, "%zx\r\n", len);
    bufferevent_write(up, size_line, static_cast<std::size_t>(n));
    bufferevent_write(up, data, len);
    bufferevent_write(up, "\r\n", 2);
  } else {
    bufferevent_write(up, data, len);
  }
}

void Connection::pump_request_body() {
  if (down_phase_ != Down::kBody || dead_) return;
  evbuffer* in = bufferevent_get_input(down_.get());
  const auto st = ex().request.read_body(in, this, nullptr);
  if (st == http::MessageParser::Status::kError) {
    reject_malformed();  // drops the upstream connection with whatever of this request is unsent
    return;
  }
  // Only bytes of a body that parsed so far leave: the head of a streamed request goes out with
  // its first body bytes, so a body that is malformed in the same read never reaches the upstream.
  if (forwarding_) flush_upstream();
  if (st == http::MessageParser::Status::kNeedMore) {
    if (forwarding_ && up_ &&
        evbuffer_get_length(bufferevent_get_output(up_->bev.get())) > kHighWatermark)
      bufferevent_disable(down_.get(), EV_READ);  // resumed by on_up_write
    return;
  }
  request_body_done_ = true;
  wait_for_response();
  if (buffer_body_) {
    decide_and_dispatch();
    return;
  }
  if (chunked_upstream_ && up_) {
    bufferevent_write(up_->bev.get(), "0\r\n\r\n", 5);
    flush_upstream();
  }
}

void Connection::decide_and_dispatch() {
  const http::MessageHead& head = ex().request.head();
  const auto& cfg = req_state_->config;
  auto& metrics = worker_.services().metrics;
  try {
    // Both written into the exchange's reused objects: no allocation per request.
    policy::classify_into(head.method, ex().path, ex().query, cfg.fhir_base,
                          head.header("content-type"), ex().body, ex().fhir);
    // The identity's index lookups are made once per identity and policy (ClientIdentity).
    const policy::PreparedIdentity* prepared = client_->prepared_for(req_state_->policy);
    req_state_->policy->evaluate_into(client_->identity, ex().fhir, prepared, ex().decision);
  } catch (const std::exception& e) {
    // Fail closed: an error anywhere in classification or evaluation denies. A classification
    // cut short is not reported as if it were one.
    ex().fhir = policy::FhirRequest{};
    ex().fhir.method = head.method;
    ex().fhir.path = ex().path;
    ex().fhir.interaction = policy::Interaction::kUnknown;
    ex().decision = policy::Decision{};
    ex().decision.reason = std::string("evaluation error: ") + e.what();
    worker_.services().log.error("policy evaluation failed", {{"error", e.what()}});
  }
  decided_ = true;
  for (const auto& s : ex().decision.shadow)
    metrics.count_decision(*req_state_->rule_counters, decision_label(s.effect, true), s.rule);
  const DecisionLabel label = decision_label(ex().decision.effect, false);
  metrics.count_decision(*req_state_->rule_counters, label, ex().decision.rule);
  metrics.count_fhir(ex().fhir.interaction, ex().fhir.resource, label);

  if (!ex().decision.allowed()) {
    const bool anonymous = !client_->identity.present;
    std::string diagnostics = ex().decision.rule == "default"
                                  ? std::string("no rule matched")
                                  : "denied by rule \"" + ex().decision.rule + "\"";
    if (!ex().decision.reason.empty() && ex().decision.reason != "no rule matched")
      diagnostics += ": " + ex().decision.reason;
    const int status = anonymous ? 401 : 403;
    audit(status, "deny", ex().decision.reason);
    reject(anonymous ? http::Rejection::kLogin : http::Rejection::kForbidden, diagnostics,
           !keep_alive_ || !request_body_done_);
    return;
  }
  const observability::AuditLog* audit_log = worker_.services().audit;
  if (audit_log != nullptr && !audit_log->healthy() &&
      cfg.audit.on_failure == AuditFailureMode::kDeny) {
    // audit.on_failure: deny: nothing is forwarded that could not be audited. The refusal is
    // audited too: that write is what tells the log it has recovered.
    worker_.services().log.warn("audit log unavailable: request refused",
                                {{"connection", std::to_string(id_)}});
    audit(503, "deny", "audit log unavailable");
    reject(http::Rejection::kUnavailable, "audit log unavailable",
           !keep_alive_ || !request_body_done_);
    return;
  }
  forward();
}

// ---- upstream ----------------------------------------------------------------------------------

void Connection::forward() {
  const http::MessageHead& head = ex().request.head();
  http::BodyFraming framing;
  if (buffer_body_) {
    framing.content_length = ex().body.size();
  } else if (head.chunked) {
    framing.chunked = true;
  } else if (head.content_length) {
    framing.content_length = head.content_length;
  }
  chunked_upstream_ = framing.chunked;
  const http::ForwardAdditions add{client_->header_block, req_state_->config.identity_headers.rule,
                                   ex().decision.rule, client_ip(), req_state_->upstream_authority};
  ex().upstream_head.clear();
  http::append_forward_request_head(ex().upstream_head, head, *req_state_->reserved, add, framing);
  if (!send_to_upstream()) return;
  if (!request_body_done_) {
    forwarding_ = true;
    down_phase_ = Down::kBody;
    if (head.expect_continue) send_down("HTTP/1.1 100 Continue\r\n\r\n", 25);
    pump_request_body();
  } else {
    wait_for_response();
  }
}

bool Connection::send_to_upstream(bool fresh) {
  up_ = worker_.pool().acquire(*req_state_, fresh);
  if (!up_) {
    upstream_failed(UpstreamError::kConnect);
    return false;
  }
  bufferevent* up = up_->bev.get();
  bufferevent_setcb(up, &Connection::up_read_cb, &Connection::up_write_cb, &Connection::up_event_cb,
                    this);
  bufferevent_setwatermark(up, EV_WRITE, kLowWatermark, 0);
  const auto& u = req_state_->config.upstream;
  const timeval read_timeout = to_timeval(u.response_timeout_ms);
  const timeval write_timeout =
      to_timeval(up_->reused ? u.response_timeout_ms : u.connect_timeout_ms);
  bufferevent_set_timeouts(up, &read_timeout, &write_timeout);
  bufferevent_write(up, ex().upstream_head.data(), ex().upstream_head.size());
  if (buffer_body_ && !ex().body.empty()) bufferevent_write(up, ex().body.data(), ex().body.size());
  ex().response.reset(head_method_);
  up_phase_ = Up::kHead;
  upstream_started_ = Clock::now();
  if (up_->plain && up_->reused) {
    // Enabled while pooled (no epoll_ctl); set_timeouts above re-added the read event with the
    // response timeout, so enabling again would only add it once more.
    if ((bufferevent_get_enabled(up) & EV_READ) == 0) bufferevent_enable(up, EV_READ);
    // A streamed body follows: the head is flushed with the body's first bytes, once they parse
    // (pump_request_body).
    if (request_body_done_) flush_upstream();
  } else {
    // Connecting (or TLS): libevent writes once the socket is connected / the handshake is done.
    bufferevent_enable(up, EV_READ | EV_WRITE);
  }
  return true;
}

// Write-through to a connected plain upstream: the bytes queued in its output go to the socket now,
// so a request costs neither a write-event round through epoll nor the two epoll_ctl calls that add
// and remove it. What the socket does not take (or an error) is left to libevent: EV_WRITE enabled,
// it writes the rest in order (with the write timeout) or reports the error through up_event_cb.
void Connection::flush_upstream() {
  if (!up_ || !up_->plain || !up_->connected) return;
  bufferevent* up = up_->bev.get();
  if ((bufferevent_get_enabled(up) & EV_WRITE) != 0) return;  // libevent is already writing
  evbuffer* out = bufferevent_get_output(up);
  if (evbuffer_get_length(out) == 0) return;
  // A bufferevent keeps the start of its output frozen against its user (only its own write
  // callback drains it); thawed for exactly this write, as that callback does.
  evbuffer_unfreeze(out, 1);
  evbuffer_write(out, bufferevent_getfd(up));
  evbuffer_freeze(out, 1);
  if (evbuffer_get_length(out) > 0) bufferevent_enable(up, EV_WRITE);
}

void Connection::on_up_write() {
  if (up_ && up_->plain && up_->connected &&
      evbuffer_get_length(bufferevent_get_output(up_->bev.get())) == 0)
    bufferevent_disable(up_->bev.get(), EV_WRITE);  // libevent already removed the event
  if (forwarding_ && down_phase_ == Down::kBody && up_ &&
      evbuffer_get_length(bufferevent_get_output(up_->bev.get())) <= kLowWatermark) {
    bufferevent_enable(down_.get(), EV_READ);
    pump_request_body();
  }
}

void Connection::on_up_event(short events) {
  if (events & BEV_EVENT_CONNECTED) {
    up_->connected = true;
    const auto& u = req_state_->config.upstream;
    const timeval t = to_timeval(u.response_timeout_ms);
    bufferevent_set_timeouts(up_->bev.get(), &t, &t);
    return;
  }
  if (events & BEV_EVENT_TIMEOUT) {
    upstream_failed(up_->connected ? UpstreamError::kTimeout : UpstreamError::kConnect);
    return;
  }
  if ((events & BEV_EVENT_EOF) && up_phase_ == Up::kBody) {
    on_up_read();  // relay what is still buffered before judging the end
    if (dead_ || up_phase_ != Up::kBody) return;
    if (ex().response.finish_eof() == http::MessageParser::Status::kDone) {
      close_after_response_ = true;  // an EOF-delimited body: the client learns the end by EOF too
      release_upstream(false);
      finish_response();
      return;
    }
  }
  upstream_failed(up_->connected || up_->reused ? UpstreamError::kReset : UpstreamError::kConnect);
}

void Connection::upstream_failed(UpstreamError kind) {
  flush_down();
  auto& services = worker_.services();
  // Only a request the upstream cannot have acted on twice is replayed: an idempotent method
  // (RFC 9110 9.2.2), sent on a pooled connection, with not one byte of any response received.
  const std::string& m = ex().request.head().method;
  const bool idempotent =
      m == "GET" || m == "HEAD" || m == "PUT" || m == "DELETE" || m == "OPTIONS";
  const bool replayable = up_ && idempotent && !response_started_ && !got_upstream_bytes_ &&
                          up_phase_ == Up::kHead && request_body_done_ &&
                          evbuffer_get_length(bufferevent_get_input(up_->bev.get())) == 0 &&
                          (buffer_body_ || !ex().request.head().has_request_body());
  if (replayable && up_->reused && !retried_ && kind == UpstreamError::kReset) {
    // A pooled connection the upstream had closed: retry once on a new connection (never another
    // pooled one, which is likely stale too).
    retried_ = true;
    release_upstream(false);
    send_to_upstream(/*fresh=*/true);
    return;
  }
  services.metrics.count_upstream_error(kind);
  services.log.warn("upstream failed", {{"connection", std::to_string(id_)},
                                        {"kind", std::string(observability::to_string(kind))}});
  release_upstream(false);
  up_phase_ = Up::kNone;
  if (response_started_) {
    close_now();  // part of the response went out: the client must see it truncated
    return;
  }
  const bool timeout = kind == UpstreamError::kTimeout;
  audit(timeout ? 504 : 502, "allow", ex().decision.reason);
  reject(timeout ? http::Rejection::kTimeout : http::Rejection::kTransient,
         timeout ? "upstream did not answer in time" : "upstream unreachable or reset",
         !keep_alive_ || !request_body_done_);
}

void Connection::on_up_read() {
  if (!up_ || dead_) return;
  relay_response();
  if (dead_) return;
  flush_down();
  if (up_ && up_phase_ == Up::kBody &&
      evbuffer_get_length(bufferevent_get_output(down_.get())) > kHighWatermark)
    bufferevent_disable(up_->bev.get(), EV_READ);  // resumed by on_down_write
}

void Connection::relay_response() {
  evbuffer* in = bufferevent_get_input(up_->bev.get());
  while (up_phase_ == Up::kHead) {
    const auto st = ex().response.read_head(in);
    if (st == http::MessageParser::Status::kNeedMore) return;
    if (st == http::MessageParser::Status::kError) {
      worker_.services().log.warn("invalid response from upstream",
                                  {{"error", ex().response.error_message()}});
      upstream_failed(UpstreamError::kReset);
      return;
    }
    got_upstream_bytes_ = true;
    const http::MessageHead& rh = ex().response.head();
    if (rh.status >= 100 && rh.status < 200) {
      if (rh.status == 101) {
        upstream_failed(UpstreamError::kReset);
        return;
      }
      ex().response.reset(head_method_);  // interim response: the final one follows
      continue;
    }
    response_started_ = true;
    const bool eof_delimited =
        !ex().response.message_complete() && !rh.chunked && !rh.content_length;
    if (!keep_alive_ || !request_body_done_ || eof_delimited || draining_)
      close_after_response_ = true;
    std::string out = worker_.head_storage().take_bytes();
    http::append_forward_response_head(out, rh, close_after_response_);
    // Room for the head and a small body in one chain, so they leave in one TLS record.
    evbuffer_expand(down_stage_.get(),
                    out.size() + std::min<std::size_t>(evbuffer_get_length(in), kRecordPlaintext));
    evbuffer_add(down_stage_.get(), out.data(), out.size());
    worker_.head_storage().give(std::move(out));
    if (ex().response.message_complete()) {
      release_upstream(rh.keep_alive && request_body_done_);
      finish_response();
      return;
    }
    up_phase_ = Up::kBody;
  }
  if (up_phase_ != Up::kBody) return;
  const auto st = ex().response.read_body(in, nullptr, down_stage_.get());
  bytes_out_ = ex().response.body_bytes();
  if (st == http::MessageParser::Status::kError) {
    worker_.services().log.warn("invalid response body from upstream",
                                {{"error", ex().response.error_message()}});
    upstream_failed(UpstreamError::kReset);
    return;
  }
  if (st == http::MessageParser::Status::kDone) {
    release_upstream(ex().response.head().keep_alive && request_body_done_);
    finish_response();
  }
}

void Connection::on_down_write() {
  evbuffer* out = bufferevent_get_output(down_.get());
  if (down_phase_ == Down::kClosing) {
    if (evbuffer_get_length(out) == 0) close_now();
    return;
  }
  if (down_phase_ == Down::kHead && evbuffer_get_length(out) <= kLowWatermark &&
      evbuffer_get_length(bufferevent_get_input(down_.get())) > 0) {
    read_head();  // pipelined requests paused while the answers backed up
    return;
  }
  if (up_phase_ == Up::kBody && up_ && evbuffer_get_length(out) <= kLowWatermark) {
    bufferevent_enable(up_->bev.get(), EV_READ);
    on_up_read();
  }
}

void Connection::release_upstream(bool reusable) {
  if (!up_) return;
  if (reusable) {
    worker_.pool().release(std::move(up_), *req_state_);
  }
  up_.reset();
}

void Connection::send_down(const char* data, std::size_t len) {
  evbuffer_add(down_stage_.get(), data, len);
  flush_down();
}

// Write-through to the client: when nothing is queued in down_'s output (so no SSL_write of
// libevent's is pending a retry), the staged bytes are written with SSL_write here, one record of
// at most 16 KiB per call, and the answer leaves without a write event being added and removed.
// Whatever is not written (socket full, or an error) moves to down_'s output unchanged: its first
// chain starts with the very bytes of a record OpenSSL may hold half-sent, and is at least that
// long (evbuffer_pullup below), which is what OpenSSL requires of the retry libevent makes
// (SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER is set by bufferevent_openssl). Errors are reported by that
// retry through down_event_cb, as before.
void Connection::flush_down() {
  evbuffer* stage = down_stage_.get();
  std::size_t left = evbuffer_get_length(stage);
  if (left == 0) return;
  if (dead_ || !down_) {
    evbuffer_drain(stage, left);
    return;
  }
  evbuffer* out = bufferevent_get_output(down_.get());
  SSL* ssl = ssl_.get();
  if (evbuffer_get_length(out) == 0 && ssl != nullptr && SSL_is_init_finished(ssl)) {
    while (left > 0) {
      const std::size_t n = std::min(left, kRecordPlaintext);
      const unsigned char* p = evbuffer_pullup(stage, static_cast<ev_ssize_t>(n));
      if (p == nullptr) break;
      if (ERR_peek_error() != 0) ERR_clear_error();  // a clear of an empty queue still costs
      const int r = SSL_write(ssl, p, static_cast<int>(n));
      if (r <= 0) {
        ERR_clear_error();  // libevent's retry reads the error afresh
        break;
      }
      evbuffer_drain(stage, static_cast<std::size_t>(r));
      left -= static_cast<std::size_t>(r);
    }
  }
  if (left > 0) evbuffer_add_buffer(out, stage);
}

void Connection::finish_response() {
  flush_down();
  up_phase_ = Up::kNone;
  worker_.services().metrics.observe_upstream(seconds_since(upstream_started_));
  complete_request(ex().response.head().status);
  // Draining: a response whose head went out before the stop began ends the connection too, or it
  // would linger as an idle keep-alive one until the drain deadline.
  if (close_after_response_ || draining_) {
    close_after_flush();
    return;
  }
  next_request();
}

void Connection::wait_for_response() {
  down_phase_ = Down::kWaitResponse;
  // The client owes nothing now: no read timeout while the response is awaited and streamed (a
  // large download must not be cut because the client stays silent); the write timeout stays.
  const timeval idle = to_timeval(conn_state_->config.limits.idle_timeout_ms);
  bufferevent_set_timeouts(down_.get(), nullptr, &idle);
}

void Connection::next_request() {
  release_exchange();
  audited_ = false;
  // Per-request flags start clean: a stale response_started_ made a malformed next request end
  // in a bare close instead of its 400.
  response_started_ = close_after_response_ = false;
  head_method_ = decided_ = got_upstream_bytes_ = false;
  started_ = Clock::time_point{};
  down_phase_ = Down::kHead;
  req_state_.reset();
  const timeval idle = to_timeval(conn_state_->config.limits.idle_timeout_ms);
  bufferevent_set_timeouts(down_.get(), &idle, &idle);
  // Only when body backpressure had paused reading: enabling re-adds the read event (a timer
  // update), which set_timeouts has just done.
  if ((bufferevent_get_enabled(down_.get()) & EV_READ) == 0)
    bufferevent_enable(down_.get(), EV_READ);
  arm_header_timer();
  // A pipelined request may be waiting: handle it from the event loop, not from this stack, so a
  // long pipeline of rejected requests cannot recurse.
  if (evbuffer_get_length(bufferevent_get_input(down_.get())) > 0) {
    // Made on first use: most connections never pipeline, and an idle one should not hold it.
    if (!resume_event_)
      resume_event_.reset(event_new(worker_.base(), -1, 0, &Connection::resume_cb, this));
    if (resume_event_)
      event_active(resume_event_.get(), EV_TIMEOUT, 1);
    else
      close_now();  // out of memory: drop the connection rather than stall it
  }
}

void Connection::resume_cb(evutil_socket_t, short, void* arg) {
  auto* c = static_cast<Connection*>(arg);
  CallbackScope scope(c);
  if (!c->dead_) c->read_head();
}

// ---- answers -----------------------------------------------------------------------------------

void Connection::audit(int status, std::string_view decision, std::string_view reason) {
  if (audited_) return;
  audited_ = true;
  observability::AuditLog* log = worker_.services().audit;
  if (log == nullptr) return;
  // The worker's event, every field assigned: its strings keep their storage between requests.
  observability::AuditEvent& e = worker_.audit_event();
  e.time = std::chrono::system_clock::now();
  e.connection_id = id_;
  e.request_id = request_seq_;
  e.peer = client_ ? client_->audit_peer : nullptr;
  e.client_address = client_address_;
  e.method.assign(ex().request.head().method);
  e.path.assign(ex().path);
  e.fhir_resource.assign(ex().fhir.resource);
  e.fhir_interaction.assign(policy::to_string(ex().fhir.interaction));
  e.fhir_operation.assign(ex().fhir.operation);
  e.decision.assign(decision);
  e.rule.assign(ex().decision.rule);
  e.mode.assign(ex().decision.mode == policy::Mode::kShadow ? "shadow" : "enforce");
  e.reason.assign(reason);
  e.status = status;
  e.bytes_in = bytes_in_;
  e.bytes_out = bytes_out_;
  e.duration_ms = seconds_since(started_) * 1000.0;
  log->write(e);
  // The event does not keep the identity or the address alive until the next request.
  observability::release_held_parts(e);
}

void Connection::complete_request(int status) {
  auto& metrics = worker_.services().metrics;
  if (!audited_) audit(status, effect_label(ex().decision.effect, false), ex().decision.reason);
  metrics.count_response(status);
  metrics.observe_request(seconds_since(started_));
}

void Connection::reject(http::Rejection r, std::string_view diagnostics, bool close) {
  const http::RejectionStatus s = http::status_of(r);
  if (draining_) close = true;
  const std::string response = http::rejection_response(r, diagnostics, close, head_method_);
  send_down(response.data(), response.size());
  if (audited_)
    complete_request(s.status);  // a decided request: counted with its duration
  else
    worker_.services().metrics.count_response(s.status);
  if (close) {
    linger_ = true;
    close_after_flush();
    return;
  }
  next_request();
}

// ---- closing -----------------------------------------------------------------------------------

void Connection::close_after_flush() {
  flush_down();
  down_phase_ = Down::kClosing;
  release_upstream(false);
  evtimer_del(header_timer_.get());
  bufferevent_disable(down_.get(), EV_READ);
  bufferevent_setwatermark(down_.get(), EV_WRITE, 0, 0);
  if (evbuffer_get_length(bufferevent_get_output(down_.get())) == 0) close_now();
}

void Connection::close_now() {
  if (dead_) return;
  // A response whose end never came (upstream cut, client or drain deadline gone), or whose bytes
  // are not all out, is not ended with close_notify either: for a response that ends when the
  // connection does, close_notify would tell the client it is complete.
  const bool cut_response =
      (response_started_ && !audited_) ||
      (down_ && (evbuffer_get_length(bufferevent_get_output(down_.get())) > 0 ||
                 evbuffer_get_length(down_stage_.get()) > 0));
  if (decided_ && !audited_) {
    // A decided request whose exchange ended early (client gone, upstream cut mid-response, drain
    // deadline) is still audited: the upstream may have acted on it. 499 = client closed first.
    const int status = response_started_ ? ex().response.head().status : 499;
    audit(status, effect_label(ex().decision.effect, false),
          response_started_ ? "connection closed before the response completed"
                            : "connection closed before the response");
  }
  dead_ = true;
  down_phase_ = Down::kClosing;
  up_.reset();
  if (header_timer_) event_del(header_timer_.get());  // the head timer, or the socket wait
  if (ssl_ && (down_ || SSL_is_init_finished(ssl_.get()))) {
    // Quiet: marks the shutdown done (the session stays resumable) without sending anything.
    SSL_set_quiet_shutdown(ssl_.get(), cut_response ? 1 : 0);
    SSL_shutdown(ssl_.get());  // best effort close_notify; the socket closes regardless
  }
  down_.reset();
  // After an error response whose bytes are all out (with close_notify, written to the socket by
  // SSL_shutdown above), a client may still be sending the rest of its request.
  if (linger_ && !cut_response) worker_.linger(std::move(socket_));
  worker_.retire(std::move(ssl_), std::move(socket_));
  if (depth_ == 0) worker_.destroy(this);
}

void Connection::drain() {
  draining_ = true;
  keep_alive_ = false;
  const bool idle = down_phase_ == Down::kHandshake ||
                    (down_phase_ == Down::kHead &&
                     (!down_ || evbuffer_get_length(bufferevent_get_input(down_.get())) == 0));
  if (idle) {
    CallbackScope scope(this);
    close_now();
  } else if (!response_started_) {
    close_after_response_ = true;
  }
}

void Connection::abort() {
  CallbackScope scope(this);
  close_now();
}

}  // namespace fmp::proxy::server
