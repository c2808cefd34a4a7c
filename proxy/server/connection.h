// One downstream client connection: the TLS handshake, then HTTP/1.1 requests one at a time, each
// decided by the policy and either rejected or relayed to the upstream with backpressure both ways.
//
// Lives on one worker's event loop and is touched by no other thread. Deleted by its worker once it
// has closed and no libevent callback of it is on the stack.
#pragma once

#include <event2/bufferevent_ssl.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "policy/ssl_ptr.h"
#include "proxy/event_ptr.h"
#include "proxy/http/message_parser.h"
#include "proxy/http/rejection.h"
#include "proxy/observability/audit.h"
#include "proxy/observability/metrics.h"
#include "proxy/server/client_identity.h"
#include "proxy/server/exchange.h"
#include "proxy/server/runtime_state.h"
#include "proxy/server/upstream_pool.h"
#include "proxy/socket_fd.h"
#include "proxy/tls/trust_store.h"

namespace fmp::proxy::server {

class Worker;

class Connection : private http::MessageParser::BodySink {
 public:
  Connection(Worker& worker, evutil_socket_t fd, const sockaddr* addr, StatePtr state);
  ~Connection() override;
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  /// Starts the TLS handshake. False when the connection could not be set up (it is then closed).
  bool start();
  /// Graceful stop: closes at once when no request is in progress, otherwise after the current
  /// response.
  void drain();
  /// Cuts the connection now (drain deadline passed).
  void abort();
  bool closed() const { return dead_; }

 private:
  using Clock = std::chrono::steady_clock;
  enum class Down { kHandshake, kHead, kBody, kWaitResponse, kClosing };
  enum class Up { kNone, kHead, kBody };

  // libevent entry points; each keeps the object alive until it returns.
  static void down_read_cb(bufferevent*, void* arg);
  static void down_write_cb(bufferevent*, void* arg);
  static void down_event_cb(bufferevent*, short events, void* arg);
  static void up_read_cb(bufferevent*, void* arg);
  static void up_write_cb(bufferevent*, void* arg);
  static void up_event_cb(bufferevent*, short events, void* arg);
  static void header_timeout_cb(evutil_socket_t, short, void* arg);
  static void resume_cb(evutil_socket_t, short, void* arg);
  static void socket_cb(evutil_socket_t, short what, void* arg);

  void on_down_read();
  void on_down_write();
  void on_down_event(short events);
  void on_up_read();
  void on_up_write();
  void on_up_event(short events);
  void on_header_timeout();
  void on_socket(short what);

  bool open_down(bufferevent_ssl_state state);
  bool wait_on_socket(short what);
  bool park();
  bool head_timer_from_socket();
  void continue_handshake();
  void handshake_done();
  void handshake_failed();
  void read_head();
  void begin_request();
  void reverify();
  void pump_request_body();
  void on_body_data(const char* data, std::size_t len) override;
  void decide_and_dispatch();
  void forward();
  bool send_to_upstream(bool fresh = false);
  void flush_upstream();
  void flush_down();
  void send_down(const char* data, std::size_t len);
  void relay_response();
  void kick_tls_reader();
  void refuse_identity(tls::VerifyReason reason);
  void rename_identity();
  void upstream_failed(observability::UpstreamError kind);
  void finish_response();
  void wait_for_response();
  void next_request();
  void release_exchange();
  /// The current exchange, taken from the worker when first used for a request.
  Exchange& ex();

  void reject(http::Rejection r, std::string_view diagnostics, bool close);
  void reject_malformed();
  void audit(int status, std::string_view decision, std::string_view reason);
  void complete_request(int status);
  void arm_header_timer();
  /// header_deadline_ and idle_deadline_ from now (accept, end of a response); returns now.
  Clock::time_point restart_deadlines();
  void restart_idle_deadline();  ///< the handshake or the connection made progress
  void close_after_flush();
  void close_now();
  void release_upstream(bool reusable);
  bool request_body_pending() const;
  std::string_view client_ip() const;  ///< from client_address_

  Worker& worker_;
  StatePtr conn_state_;  ///< the snapshot at accept: its TLS context served the handshake
  StatePtr req_state_;   ///< the snapshot of the current request
  // The socket and the SSL belong to the connection, not to down_: there is no bufferevent during
  // the handshake and until the first request's bytes arrive (wait_on_socket()). Declared before
  // down_, which goes first.
  ev::SocketFd socket_;
  ssl::SslPtr ssl_;
  ev::BufferEventPtr down_;
  /// Bytes for the client gathered during one callback; flush_down() writes them with SSL_write
  /// directly when nothing is queued in down_, so an answer costs no write-event round trip.
  ev::EvBufferPtr down_stage_;
  /// The request-head deadline (from accept, then from the end of each response). Before the
  /// first request it is the socket wait of the handshake and of the idle connection, with the
  /// head and idle deadlines as its timeout (wait_on_socket()).
  ev::EventPtr header_timer_;
  Clock::time_point header_deadline_{};
  Clock::time_point idle_deadline_{};  ///< for the socket wait (down_ has its own read timeout)
  bool wait_for_head_ = false;  ///< the socket wait's timeout is the head deadline (else idle)
  bool park_timer_ = false;     ///< the head timer is armed for the park moment, not the deadline
  ev::EventPtr resume_event_;   ///< runs read_head() for a pipelined request from the event loop
  /// Limits of the configuration the connection was accepted with (a reload's apply to new ones).
  const std::size_t max_header_bytes_;
  const std::size_t max_body_bytes_;
  std::shared_ptr<const std::string> client_address_;  ///< ip:port, for logs and audit events
  std::uint64_t id_ = 0;
  std::uint64_t request_seq_ = 0;

  /// The client's identity (shared with this worker's other connections presenting the same
  /// certificate chain); set at the end of the handshake, replaced only by a reload that
  /// re-verifies the certificate or renames the identity headers.
  ClientIdentityPtr client_;
  bool cert_invalid_ = false;
  tls::VerifyReason cert_reason_ = tls::VerifyReason::kNone;

  Down down_phase_ = Down::kHandshake;
  Up up_phase_ = Up::kNone;

  // The current request.
  Clock::time_point started_{};
  Clock::time_point upstream_started_{};
  bool keep_alive_ = true;
  bool head_method_ = false;
  bool buffer_body_ = false;  ///< the body decides (Bundle): read all of it before deciding
  bool forwarding_ = false;   ///< body bytes go upstream as they arrive
  bool chunked_upstream_ = false;
  bool request_body_done_ = false;
  bool response_started_ = false;
  bool close_after_response_ = false;
  /// Closing after an error response sent before the request was read to its end: the socket is
  /// closed gently (Worker::linger), so a client still sending is not reset before it reads it.
  bool linger_ = false;
  bool retried_ = false;
  bool audited_ = false;
  bool decided_ = false;             ///< the current request got a decision (policy or 401)
  bool got_upstream_bytes_ = false;  ///< some response (even interim) came back: never replay
  std::unique_ptr<Exchange> ex_;     ///< the current request's state (exchange.h); none while idle
  std::unique_ptr<UpstreamConnection> up_;
  std::uint64_t bytes_in_ = 0;
  std::uint64_t bytes_out_ = 0;

  bool counted_open_ = false;
  bool draining_ = false;
  bool dead_ = false;
  int depth_ = 0;
  friend class CallbackScope;
};

}  // namespace fmp::proxy::server
