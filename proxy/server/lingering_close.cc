#include "proxy/server/lingering_close.h"

#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <utility>

namespace fmp::proxy::server {
namespace {

/// Reads of one readable event, at most (a client sending fast gets its bytes read over several
/// loop rounds, not all in one).
constexpr int kReadsPerEvent = 4;

}  // namespace

void LingeringClose::add(event_base* base, ev::SocketFd socket) {
  if (socket.get() < 0 || sockets_.size() >= kMaxLingering) return;  // closed here
  if (::shutdown(socket.get(), SHUT_WR) != 0) return;  // already reset by the client: closed here
  auto s = std::make_unique<Socket>();
  s->owner = this;
  s->deadline = std::chrono::steady_clock::now() + kTotalLimit;
  s->event.reset(
      event_new(base, socket.get(), EV_READ | EV_PERSIST, &LingeringClose::on_event, s.get()));
  if (!s->event) return;
  const timeval quiet{static_cast<time_t>(kQuietLimit.count()), 0};
  if (event_add(s->event.get(), &quiet) != 0) return;
  s->fd = std::move(socket);
  const Socket* key = s.get();
  sockets_.emplace(key, std::move(s));
}

void LingeringClose::on_event(evutil_socket_t fd, short what, void* arg) {
  auto* s = static_cast<Socket*>(arg);
  bool done = (what & EV_TIMEOUT) != 0 || std::chrono::steady_clock::now() >= s->deadline;
  std::array<char, 16384> discard;  // NOLINT: written by read() only, never read
  for (int i = 0; i < kReadsPerEvent && !done; ++i) {
    const ssize_t n = ::read(fd, discard.data(), discard.size());
    if (n > 0) continue;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    done = true;  // the client closed its side (0), or the socket failed
  }
  if (done) s->owner->sockets_.erase(s);  // frees the event (running now: allowed) and closes
}

}  // namespace fmp::proxy::server
