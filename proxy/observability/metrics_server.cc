#include "proxy/observability/metrics_server.h"

#include <event2/bufferevent.h>
#include <event2/thread.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string_view>

namespace fmp::proxy::observability {
namespace {

constexpr std::size_t kMaxHeaderBytes = 8192;
constexpr std::size_t kMaxBodyBytes = 1024;
constexpr int kClientTimeoutSeconds = 10;
constexpr int kListenBacklog = 64;

struct HostPort {
  std::string host;
  std::string port;
};

// "host:port" or "[v6]:port"; the port is decimal 0..65535.
HostPort split_listen(const std::string& listen) {
  const auto bad = [&](const char* why) {
    return std::runtime_error("metrics.listen \"" + listen + "\": " + why);
  };
  HostPort out;
  std::string_view rest;
  if (!listen.empty() && listen.front() == '[') {
    const auto close = listen.find(']');
    if (close == std::string::npos || close + 1 >= listen.size() || listen[close + 1] != ':') {
      throw bad("expected [IPv6]:port");
    }
    out.host = listen.substr(1, close - 1);
    rest = std::string_view(listen).substr(close + 2);
  } else {
    const auto colon = listen.rfind(':');
    if (colon == std::string::npos || listen.find(':') != colon) throw bad("expected host:port");
    out.host = listen.substr(0, colon);
    rest = std::string_view(listen).substr(colon + 1);
  }
  unsigned port = 0;
  const auto [end, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), port);
  if (out.host.empty() || rest.empty() || ec != std::errc() || end != rest.data() + rest.size() ||
      port > 65535) {
    throw bad("expected host:port with a port 0-65535");
  }
  out.port = std::string(rest);
  return out;
}

// A listening, non-blocking socket bound to `listen`; throws with the OS's reason.
int bind_listener(const std::string& listen) {
  const HostPort hp = split_listen(listen);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (int rc = getaddrinfo(hp.host.c_str(), hp.port.c_str(), &hints, &found); rc != 0) {
    throw std::runtime_error("metrics.listen \"" + listen + "\": " + gai_strerror(rc));
  }
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> owned(found, &freeaddrinfo);
  std::string last_error = "no address";
  for (const addrinfo* ai = found; ai != nullptr; ai = ai->ai_next) {
    const int fd =
        socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      last_error = std::strerror(errno);
      continue;
    }
    const int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && ::listen(fd, kListenBacklog) == 0) {
      return fd;
    }
    last_error = std::strerror(errno);
    close(fd);
  }
  throw std::runtime_error("metrics.listen \"" + listen + "\": cannot listen: " + last_error);
}

std::uint16_t bound_port(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return 0;
  if (addr.ss_family == AF_INET) {
    return ntohs(reinterpret_cast<const sockaddr_in*>(&addr)->sin_port);
  }
  if (addr.ss_family == AF_INET6) {
    return ntohs(reinterpret_cast<const sockaddr_in6*>(&addr)->sin6_port);
  }
  return 0;
}

// Each scrape connection's bufferevent, made here so that it owns its socket
// (BEV_OPT_CLOSE_ON_FREE). evhttp's own do not: evhttp_connection_free() then closes the socket
// right after bufferevent_free(), and when that runs inside the bufferevent's own callback (a
// "Connection: close" reply finishing in its write callback) the bufferevent is finalized only
// when that callback returns, so its event_del issues epoll_ctl(EPOLL_CTL_DEL) on a closed fd
// number, which another thread may have reused meanwhile (libevent 2.1.12 http.c; ThreadSanitizer
// reported it against a reload's fopen). Owned by the bufferevent, the socket is closed by its
// finalizer, after the event_del.
bufferevent* new_connection_bufferevent(event_base* base, void* /*arg*/) {
  return bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
}

void reply(evhttp_request* req, int code, const char* reason, const char* content_type,
           std::string_view body) {
  evkeyvalq* headers = evhttp_request_get_output_headers(req);
  evhttp_add_header(headers, "Content-Type", content_type);
  evhttp_add_header(headers, "Cache-Control", "no-store");
  ev::EvBufferPtr buf(evbuffer_new());
  if (!buf || evbuffer_add(buf.get(), body.data(), body.size()) != 0) {
    evhttp_send_error(req, HTTP_INTERNAL, nullptr);
    return;
  }
  evhttp_send_reply(req, code, reason, buf.get());
}

constexpr const char* kTextPlain = "text/plain; charset=utf-8";

}  // namespace

MetricsServer::MetricsServer(const Metrics& metrics, std::function<bool()> ready)
    : metrics_(metrics), ready_(std::move(ready)) {}

MetricsServer::~MetricsServer() {
  stop();
}

void MetricsServer::start(const std::string& listen) {
  if (thread_.joinable()) throw std::runtime_error("metrics server already running");
  // event_base_loopexit from stop() runs on another thread: the base must be created with
  // libevent's locking on. Calling this again with the same pthreads callbacks is a no-op.
  evthread_use_pthreads();

  const int fd = bind_listener(listen);
  ev::EventBasePtr base(event_base_new());
  ev::EvHttpPtr http(base ? evhttp_new(base.get()) : nullptr);
  if (!http) {
    close(fd);
    throw std::runtime_error("metrics.listen \"" + listen + "\": cannot create the HTTP server");
  }
  // evhttp takes the socket (its listener closes it on free) only when this succeeds.
  if (evhttp_accept_socket_with_handle(http.get(), fd) == nullptr) {
    close(fd);
    throw std::runtime_error("metrics.listen \"" + listen + "\": cannot accept on the socket");
  }
  evhttp_set_max_headers_size(http.get(), kMaxHeaderBytes);
  evhttp_set_max_body_size(http.get(), kMaxBodyBytes);
  evhttp_set_timeout(http.get(), kClientTimeoutSeconds);
  evhttp_set_gencb(http.get(), &MetricsServer::on_request, this);
  evhttp_set_bevcb(http.get(), &new_connection_bufferevent, nullptr);

  port_ = bound_port(fd);
  base_ = std::move(base);
  http_ = std::move(http);
  event_base* loop = base_.get();
  thread_ = std::thread([loop] { event_base_loop(loop, EVLOOP_NO_EXIT_ON_EMPTY); });
}

void MetricsServer::stop() {
  if (thread_.joinable()) {
    event_base_loopexit(base_.get(), nullptr);
    thread_.join();
  }
  http_.reset();
  base_.reset();
  port_ = 0;
}

void MetricsServer::on_request(evhttp_request* req, void* self) {
  static_cast<MetricsServer*>(self)->handle(req);
}

void MetricsServer::handle(evhttp_request* req) {
  const evhttp_cmd_type method = evhttp_request_get_command(req);
  if (method != EVHTTP_REQ_GET && method != EVHTTP_REQ_HEAD) {
    evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
    reply(req, 405, "Method Not Allowed", kTextPlain, "method not allowed");
    return;
  }
  const evhttp_uri* uri = evhttp_request_get_evhttp_uri(req);
  const char* raw_path = uri != nullptr ? evhttp_uri_get_path(uri) : nullptr;
  const std::string_view path = raw_path != nullptr ? raw_path : "";
  if (path == "/metrics") {
    reply(req, HTTP_OK, "OK", "text/plain; version=0.0.4; charset=utf-8", metrics_.render());
  } else if (path == "/healthz") {
    reply(req, HTTP_OK, "OK", kTextPlain, "ok");
  } else if (path == "/readyz") {
    if (!ready_ || ready_()) {
      reply(req, HTTP_OK, "OK", kTextPlain, "ready");
    } else {
      reply(req, 503, "Service Unavailable", kTextPlain, "not ready");
    }
  } else {
    reply(req, HTTP_NOTFOUND, "Not Found", kTextPlain, "not found");
  }
}

}  // namespace fmp::proxy::observability
