#include "proxy/server/worker.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cstring>
#include <stdexcept>
#include <vector>

#include "proxy/server/connection.h"

namespace fmp::proxy::server {
namespace {

sockaddr_storage listen_address(const ProxyConfig& config, int& len) {
  sockaddr_storage ss{};
  len = sizeof ss;
  const std::string text =
      config.listen_host.find(':') != std::string::npos
          ? "[" + config.listen_host + "]:" + std::to_string(config.listen_port)
          : config.listen_host + ":" + std::to_string(config.listen_port);
  if (evutil_parse_sockaddr_port(text.c_str(), reinterpret_cast<sockaddr*>(&ss), &len) != 0)
    throw std::runtime_error("cannot parse listen address \"" + config.listen + "\"");
  return ss;
}

/// A base without libevent's lock: every event and bufferevent of a worker is used by its thread
/// only, and the lock cost a mutex lock and unlock on each of the ~23 event_add/event_pending calls
/// a kept-alive request makes (callgrind). The one message from outside, request_stop(), comes
/// through an eventfd instead of event_active.
ev::EventBasePtr new_unlocked_base() {
  ev::EventConfigPtr cfg(event_config_new());
  if (!cfg || event_config_set_flag(cfg.get(), EVENT_BASE_FLAG_NOLOCK) != 0) return nullptr;
  return ev::EventBasePtr(event_base_new_with_config(cfg.get()));
}

}  // namespace

Worker::Worker(Services services, int index, const ProxyConfig& config)
    : services_(services), index_(index) {
  base_ = new_unlocked_base();
  if (!base_) throw std::runtime_error("cannot create an event loop");
  stop_fd_ = ev::SocketFd(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (stop_fd_.get() < 0) throw std::runtime_error("cannot create the worker's stop eventfd");
  int len = 0;
  sockaddr_storage ss = listen_address(config, len);
  listener_.reset(evconnlistener_new_bind(
      base_.get(), &Worker::accept_cb, this,
      LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_REUSEABLE_PORT | LEV_OPT_CLOSE_ON_EXEC,
      1024, reinterpret_cast<sockaddr*>(&ss), len));
  if (!listener_)
    throw std::runtime_error("cannot listen on " + config.listen + ": " +
                             evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
  evconnlistener_set_error_cb(listener_.get(), &Worker::accept_error_cb);
  stop_event_.reset(event_new(base_.get(), stop_fd_.get(), EV_READ, &Worker::stop_cb, this));
  drain_timer_.reset(evtimer_new(base_.get(), &Worker::drain_deadline_cb, this));
  reap_event_.reset(event_new(base_.get(), -1, 0, &Worker::reap_cb, this));
  if (!stop_event_ || !drain_timer_ || !reap_event_ || event_add(stop_event_.get(), nullptr) != 0)
    throw std::runtime_error("cannot create the worker's events");
  pool_ = std::make_unique<UpstreamPool>(base_.get(), services_.metrics);
  const int workers = config.workers > 0 ? config.workers : 1;
  max_connections_ = static_cast<std::size_t>(std::max(1, config.limits.max_connections / workers));
}

Worker::~Worker() {
  join();
  connections_.clear();
  pool_.reset();
  listener_.reset();
}

void Worker::start() {
  thread_ = std::thread([this] { event_base_dispatch(base_.get()); });
}

void Worker::join() {
  if (thread_.joinable()) thread_.join();
}

void Worker::request_stop(int drain_timeout_ms) {
  drain_timeout_ms_.store(drain_timeout_ms);
  // Thread-safe: a write to an eventfd. It cannot fail short of a counter overflow (2^64 - 1
  // stops); the stop event is one-shot, so repeated requests change nothing.
  const std::uint64_t one = 1;
  [[maybe_unused]] const ssize_t n = write(stop_fd_.get(), &one, sizeof one);
}

void Worker::accept_cb(evconnlistener*, evutil_socket_t fd, sockaddr* addr, int, void* arg) {
  static_cast<Worker*>(arg)->on_accept(fd, addr);
}

void Worker::accept_error_cb(evconnlistener*, void* arg) {
  auto* w = static_cast<Worker*>(arg);
  // EMFILE and friends: log and keep listening; libevent retries on the next readiness.
  w->services_.log.error("accept failed",
                         {{"error", evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR())}});
}

void Worker::on_accept(evutil_socket_t fd, sockaddr* addr) {
  if (draining_ || connections_.size() >= max_connections_) {
    evutil_closesocket(fd);
    if (!draining_)
      services_.log.warn("connection limit reached; connection closed",
                         {{"max_connections", std::to_string(max_connections_)}});
    return;
  }
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  evutil_make_socket_nonblocking(fd);
  auto conn = std::make_unique<Connection>(*this, fd, addr, state());
  Connection* raw = conn.get();
  connections_.emplace(raw, std::move(conn));
  if (!raw->start()) destroy(raw);
}

void Worker::destroy(Connection* c) {
  connections_.erase(c);
  if (draining_ && connections_.empty()) event_base_loopexit(base_.get(), nullptr);
}

void Worker::retire(ssl::SslPtr ssl, ev::SocketFd socket) {
  if (!ssl && socket.get() < 0) return;
  retired_.push_back(Retired{std::move(ssl), std::move(socket)});
  // Runs once the callback running now has returned (on this loop iteration); activating an
  // event that is already active changes nothing.
  event_active(reap_event_.get(), EV_TIMEOUT, 1);
}

void Worker::linger(ev::SocketFd socket) {
  if (draining_) return;  // closed here: a draining worker does not wait for clients
  lingering_.add(base_.get(), std::move(socket));
}

void Worker::reap_cb(evutil_socket_t, short, void* arg) {
  static_cast<Worker*>(arg)->retired_.clear();
}

void Worker::stop_cb(evutil_socket_t, short, void* arg) {
  static_cast<Worker*>(arg)->begin_drain();
}

void Worker::begin_drain() {
  if (draining_) return;
  draining_ = true;
  listener_.reset();  // stop accepting
  pool_->close_idle();
  lingering_.close_all();
  std::vector<Connection*> open;
  open.reserve(connections_.size());
  for (auto& [c, owned] : connections_) open.push_back(c);
  for (Connection* c : open)
    if (connections_.count(c)) c->drain();
  if (connections_.empty()) {
    event_base_loopexit(base_.get(), nullptr);
    return;
  }
  const int ms = drain_timeout_ms_.load();
  const timeval t{ms / 1000, (ms % 1000) * 1000};
  evtimer_add(drain_timer_.get(), &t);
}

void Worker::drain_deadline_cb(evutil_socket_t, short, void* arg) {
  auto* w = static_cast<Worker*>(arg);
  std::vector<Connection*> open;
  for (auto& [c, owned] : w->connections_) open.push_back(c);
  if (!open.empty())
    w->services_.log.warn(
        "drain timeout: cutting in-flight requests",
        {{"worker", std::to_string(w->index_)}, {"connections", std::to_string(open.size())}});
  for (Connection* c : open)
    if (w->connections_.count(c)) c->abort();
  event_base_loopexit(w->base_.get(), nullptr);
}

}  // namespace fmp::proxy::server
