#include "bench/loadgen/client_connection.h"

#include <event2/bufferevent_ssl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <sys/socket.h>

#include "bench/loadgen/load_generator.h"

namespace fmp::bench {

namespace {

constexpr timeval kRetryDelay{0, 10000};  // after an error: 10 ms, so a dead server is not a spin

std::uint64_t elapsed_ns(std::chrono::steady_clock::time_point since) {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - since)
          .count());
}

}  // namespace

ClientConnection::ClientConnection(LoadGenerator& gen)
    : gen_(gen), retry_timer_(evtimer_new(gen.base(), &ClientConnection::on_retry, this)) {}

const http_parser_settings& ClientConnection::parser_settings() {
  static const http_parser_settings settings = [] {
    http_parser_settings s{};
    s.on_headers_complete = &ClientConnection::on_headers_complete;
    s.on_body = &ClientConnection::on_body;
    s.on_message_complete = &ClientConnection::on_message_complete;
    return s;
  }();
  return settings;
}

void ClientConnection::start() {
  close();
  const Options& o = gen_.options();
  const bool per_request =
      o.mode == ConnectionMode::kNewConnection || o.mode == ConnectionMode::kResumed;
  if (gen_.done()) return;
  if (per_request && !gen_.claim_request()) return;
  started_ = std::chrono::steady_clock::now();
  in_request_ = per_request;

  if (o.tls) {
    ssl::SslPtr ssl = gen_.tls()->new_ssl(o.mode == ConnectionMode::kResumed);
    if (!ssl) {
      fail(ErrorKind::kTls);
      return;
    }
    // BEV_OPT_CLOSE_ON_FREE hands the SSL to the bufferevent, which frees it even when creation
    // fails: ownership passes at this call.
    bev_.reset(bufferevent_openssl_socket_new(gen_.base(), -1, ssl.release(),
                                              BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE));
    if (bev_) bufferevent_openssl_set_allow_dirty_shutdown(bev_.get(), 1);
  } else {
    bev_.reset(bufferevent_socket_new(gen_.base(), -1, BEV_OPT_CLOSE_ON_FREE));
  }
  if (!bev_) {
    fail(ErrorKind::kConnect);
    return;
  }
  bufferevent_setcb(bev_.get(), &ClientConnection::on_read, nullptr, &ClientConnection::on_event,
                    this);
  set_timeouts(true);
  bufferevent_enable(bev_.get(), EV_READ | EV_WRITE);
  if (bufferevent_socket_connect(bev_.get(), gen_.address(), gen_.address_length()) != 0) {
    fail(ErrorKind::kConnect);
    return;
  }
}

void ClientConnection::set_timeouts(bool enabled) {
  if (!enabled) {
    bufferevent_set_timeouts(bev_.get(), nullptr, nullptr);
    return;
  }
  const double t = gen_.options().timeout_s;
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(t);
  tv.tv_usec = static_cast<suseconds_t>((t - static_cast<double>(tv.tv_sec)) * 1e6);
  bufferevent_set_timeouts(bev_.get(), &tv, &tv);
}

void ClientConnection::close() {
  if (bev_ && gen_.options().tls) {
    // Freed without close_notify; marking the shutdown as done keeps OpenSSL from flagging the
    // session as not resumable.
    if (SSL* ssl = bufferevent_openssl_get_ssl(bev_.get()))
      SSL_set_shutdown(ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
  }
  bev_.reset();
  established_ = false;
  in_request_ = false;
}

void ClientConnection::connected() {
  established_ = true;
  if (evutil_socket_t fd = bufferevent_getfd(bev_.get()); fd >= 0) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  if (gen_.options().tls) {
    SSL* ssl = bufferevent_openssl_get_ssl(bev_.get());
    gen_.record_handshake(ssl != nullptr && SSL_session_reused(ssl) == 1);
  }
  send_request();
}

void ClientConnection::send_request() {
  const Options& o = gen_.options();
  const bool per_request =
      o.mode == ConnectionMode::kNewConnection || o.mode == ConnectionMode::kResumed;
  if (!per_request) {
    if (!gen_.claim_request()) {
      close();
      if (o.mode == ConnectionMode::kIdle) gen_.on_idle_attempt_over();
      return;
    }
    started_ = std::chrono::steady_clock::now();
    in_request_ = true;
  }
  http_parser_init(&parser_, HTTP_RESPONSE);
  parser_.data = this;
  message_done_ = false;
  status_ = 0;
  body_bytes_ = 0;
  evbuffer* out = bufferevent_get_output(bev_.get());
  evbuffer_add_reference(out, gen_.request_head().data(), gen_.request_head().size(), nullptr,
                         nullptr);
  if (!gen_.request_body().empty())
    evbuffer_add_reference(out, gen_.request_body().data(), gen_.request_body().size(), nullptr,
                           nullptr);
}

int ClientConnection::on_headers_complete(http_parser* parser) {
  auto* self = static_cast<ClientConnection*>(parser->data);
  self->status_ = static_cast<int>(parser->status_code);
  // A response to HEAD has no body whatever its headers say: 1 tells http_parser so.
  return self->gen_.options().method == "HEAD" ? 1 : 0;
}

int ClientConnection::on_body(http_parser* parser, const char*, std::size_t length) {
  static_cast<ClientConnection*>(parser->data)->body_bytes_ += length;
  return 0;
}

int ClientConnection::on_message_complete(http_parser* parser) {
  static_cast<ClientConnection*>(parser->data)->message_done_ = true;
  http_parser_pause(parser, 1);  // stop here: anything after belongs to no request of ours
  return 0;
}

void ClientConnection::on_read(bufferevent* bev, void* arg) {
  auto* self = static_cast<ClientConnection*>(arg);
  evbuffer* in = bufferevent_get_input(bev);
  while (evbuffer_get_length(in) > 0) {
    if (!self->in_request_) {
      self->fail(ErrorKind::kParse);  // bytes nobody asked for
      return;
    }
    constexpr int kVecs = 16;
    evbuffer_iovec vec[kVecs];
    const int n = evbuffer_peek(in, -1, nullptr, vec, kVecs);
    std::size_t consumed = 0;
    bool stop = false;
    for (int i = 0; i < n && i < kVecs && !stop; ++i) {
      const auto len = vec[i].iov_len;
      const std::size_t k = http_parser_execute(&self->parser_, &parser_settings(),
                                                static_cast<const char*>(vec[i].iov_base), len);
      consumed += k;
      stop = k != len || HTTP_PARSER_ERRNO(&self->parser_) != HPE_OK;
    }
    evbuffer_drain(in, consumed);
    if (self->message_done_) {
      self->response_complete();
      return;  // the connection may have been closed and reopened: nothing more to do here
    }
    if (HTTP_PARSER_ERRNO(&self->parser_) != HPE_OK) {
      self->fail(ErrorKind::kParse);
      return;
    }
  }
}

void ClientConnection::response_complete() {
  const Options& o = gen_.options();
  in_request_ = false;
  gen_.record_response(elapsed_ns(started_), status_, body_bytes_);
  const bool keep_alive = http_should_keep_alive(&parser_) != 0;
  http_parser_pause(&parser_, 0);
  switch (o.mode) {
    case ConnectionMode::kKeepAlive:
      if (gen_.done()) {
        close();
      } else if (keep_alive) {
        send_request();
      } else {
        start();
      }
      return;
    case ConnectionMode::kNewConnection:
    case ConnectionMode::kResumed:
      start();
      return;
    case ConnectionMode::kIdle:
      idle_held_ = true;
      set_timeouts(false);
      gen_.on_idle_established();
      gen_.on_idle_attempt_over();
      return;
  }
}

void ClientConnection::on_event(bufferevent* bev, short what, void* arg) {
  auto* self = static_cast<ClientConnection*>(arg);
  if (what & BEV_EVENT_CONNECTED) {
    self->connected();
    return;
  }
  if (what & BEV_EVENT_TIMEOUT) {
    self->fail(ErrorKind::kTimeout);
    return;
  }
  if (self->idle_held_) {
    self->fail(ErrorKind::kClosedIdle);
    return;
  }
  if (!self->established_) {
    const bool tls_error = self->gen_.options().tls && bufferevent_get_openssl_error(bev) != 0;
    self->fail(tls_error ? ErrorKind::kTls : ErrorKind::kConnect);
    return;
  }
  if ((what & BEV_EVENT_EOF) && self->in_request_) {
    // A close-delimited body ends here: tell http_parser the stream is over.
    http_parser_execute(&self->parser_, &parser_settings(), nullptr, 0);
    if (self->message_done_) {
      self->response_complete();
      return;
    }
  }
  if (!self->in_request_ && !(what & BEV_EVENT_ERROR)) {
    // The server closed a kept-alive connection between requests: reconnect, no error.
    self->start();
    return;
  }
  const bool tls_error = self->gen_.options().tls && bufferevent_get_openssl_error(bev) != 0;
  self->fail(tls_error ? ErrorKind::kTls : ErrorKind::kRead);
}

void ClientConnection::fail(ErrorKind kind) {
  const bool was_idle_attempt = gen_.options().mode == ConnectionMode::kIdle && !idle_held_;
  gen_.record_error(kind);
  close();
  idle_held_ = false;
  if (gen_.options().mode == ConnectionMode::kIdle) {
    // A failed attempt frees its slot; a dropped held connection is counted, never reopened.
    if (was_idle_attempt) gen_.on_idle_attempt_over();
    return;
  }
  if (!gen_.done() && retry_timer_) evtimer_add(retry_timer_.get(), &kRetryDelay);
}

void ClientConnection::on_retry(evutil_socket_t, short, void* arg) {
  static_cast<ClientConnection*>(arg)->start();
}

}  // namespace fmp::bench
