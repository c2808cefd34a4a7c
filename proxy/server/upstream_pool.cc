#include "proxy/server/upstream_pool.h"

#include <event2/bufferevent_ssl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "policy/ssl_ptr.h"
#include "proxy/server/upstream_reader.h"

namespace fmp::proxy::server {
namespace {

/// How long an idle upstream connection is kept before the proxy closes it.
constexpr int kIdleUpstreamSeconds = 60;

}  // namespace

UpstreamPool::~UpstreamPool() {
  close_idle();
}

std::unique_ptr<UpstreamConnection> UpstreamPool::acquire(const RuntimeState& state, bool fresh) {
  const std::string& key = state.upstream_key;
  while (!fresh && !idle_.empty()) {
    std::unique_ptr<UpstreamConnection> conn = std::move(idle_.back());
    idle_.pop_back();
    metrics_.add_upstream_idle(-1);
    if (conn->key != key) continue;  // a reload moved the upstream: drop the old connection
    // Reading stays enabled (no epoll_ctl); the caller installs its callbacks before the loop runs.
    bufferevent_setcb(conn->bev.get(), nullptr, nullptr, nullptr, nullptr);
    conn->pool = nullptr;
    conn->reused = true;
    return conn;
  }

  const int fd =
      socket(state.upstream_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return nullptr;
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  auto conn = std::make_unique<UpstreamConnection>();
  conn->key = key;
  if (state.upstream_tls) {
    ssl::SslPtr ssl(SSL_new(state.upstream_tls.get()));
    if (!ssl) {
      close(fd);
      return nullptr;
    }
    // SNI; SSL_set_tlsext_host_name() is a macro with a C cast, so its call is spelled out.
    SSL_ctrl(ssl.get(), SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
             const_cast<char*>(state.upstream_host.c_str()));
    SSL_set1_host(ssl.get(), state.upstream_host.c_str());
    // BEV_OPT_CLOSE_ON_FREE: the bufferevent owns the socket and the SSL* from here on, even when
    // creation fails, so the SslPtr is released at the call.
    conn->bev.reset(bufferevent_openssl_socket_new(
        base_, fd, ssl.release(), BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE));
    if (conn->bev) bufferevent_openssl_set_allow_dirty_shutdown(conn->bev.get(), 1);
  } else {
    conn->bev.reset(bufferevent_socket_new(base_, fd, BEV_OPT_CLOSE_ON_FREE));
    conn->plain = true;
  }
  if (!conn->bev) return nullptr;
  bufferevent_set_max_single_read(conn->bev.get(), 64 * 1024);
  bufferevent_set_max_single_write(conn->bev.get(), 64 * 1024);
  // The socket is already set on the bufferevent, so connect() is issued on it directly.
  if (bufferevent_socket_connect(conn->bev.get(),
                                 reinterpret_cast<const sockaddr*>(&state.upstream_addr),
                                 static_cast<int>(state.upstream_addr_len)) != 0)
    return nullptr;
  if (conn->plain)
    read_without_fionread(conn->bev.get());  // after the connect, which reassigns the read
  return conn;
}

void UpstreamPool::release(std::unique_ptr<UpstreamConnection> conn, const RuntimeState& state) {
  if (!conn || !conn->bev) return;
  if (conn->key != state.upstream_key ||
      idle_.size() >= static_cast<std::size_t>(state.config.upstream.max_idle_connections) ||
      evbuffer_get_length(bufferevent_get_input(conn->bev.get())) != 0 ||
      evbuffer_get_length(bufferevent_get_output(conn->bev.get())) != 0)
    return;  // closed by the unique_ptr
  conn->pool = this;
  bufferevent* bev = conn->bev.get();
  bufferevent_setcb(bev, &UpstreamPool::on_idle_read, nullptr, &UpstreamPool::on_idle_event,
                    conn.get());
  const timeval idle_timeout{kIdleUpstreamSeconds, 0};
  bufferevent_set_timeouts(bev, &idle_timeout, nullptr);  // re-adds a pending read event
  if ((bufferevent_get_enabled(bev) & EV_READ) == 0) bufferevent_enable(bev, EV_READ);
  idle_.push_back(std::move(conn));
  metrics_.add_upstream_idle(1);
}

void UpstreamPool::drop(UpstreamConnection* idle) {
  for (auto it = idle_.begin(); it != idle_.end(); ++it) {
    if (it->get() == idle) {
      idle_.erase(it);
      metrics_.add_upstream_idle(-1);
      return;
    }
  }
}

void UpstreamPool::on_idle_read(bufferevent*, void* arg) {
  // An idle connection has no request outstanding: any byte is a protocol error. Close it.
  auto* idle = static_cast<UpstreamConnection*>(arg);
  idle->pool->drop(idle);
}

void UpstreamPool::on_idle_event(bufferevent*, short, void* arg) {
  auto* idle = static_cast<UpstreamConnection*>(arg);
  idle->pool->drop(idle);
}

void UpstreamPool::close_idle() {
  metrics_.add_upstream_idle(-static_cast<int>(idle_.size()));
  idle_.clear();
}

}  // namespace fmp::proxy::server
