#include "proxy/server/upstream_reader.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_struct.h>
#include <event2/event.h>
#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>

namespace fmp::proxy::server {
namespace {

constexpr std::size_t kMinRead = 4 * 1024;
constexpr std::size_t kMaxRead = 64 * 1024;  // as the TLS upstreams' max single read

/// As libevent ends a read that found no more to come: reading off, then the event callback.
void stop_reading(bufferevent* bev, short cause) {
  bufferevent_disable(bev, EV_READ);
  bufferevent_trigger_event(bev, static_cast<short>(BEV_EVENT_READING | cause), 0);
}

/// Reads up to `want` bytes (at least; evbuffer_reserve_space may offer more) from `fd` into the
/// end of `in`: the bytes read (committed), 0 at end of file, -1 with errno on error (EAGAIN:
/// nothing to read). `reserved` is set to the space offered.
ssize_t read_into(evbuffer* in, evutil_socket_t fd, std::size_t want, std::size_t& reserved) {
  evbuffer_iovec space[2];
  const int vectors = evbuffer_reserve_space(in, static_cast<ev_ssize_t>(want), space, 2);
  if (vectors <= 0) {
    errno = ENOMEM;
    return -1;
  }
  iovec iov[2];
  for (int i = 0; i < vectors; ++i) {
    iov[i].iov_base = space[i].iov_base;
    iov[i].iov_len = space[i].iov_len;
    reserved += space[i].iov_len;
  }
  ssize_t n = 0;
  do {
    n = readv(fd, iov, vectors);
  } while (n < 0 && errno == EINTR);
  if (n <= 0) return n;  // nothing committed: the space stays unused
  auto left = static_cast<std::size_t>(n);
  int used = 0;
  for (; used < vectors && left > 0; ++used) {
    space[used].iov_len = std::min(space[used].iov_len, left);
    left -= space[used].iov_len;
  }
  if (evbuffer_commit_space(in, space, used) != 0) {
    errno = EIO;
    return -1;
  }
  return n;
}

// The event's argument is the bufferevent, as libevent's own: libevent's finalizer reads it so.
void on_readable(evutil_socket_t fd, short what, void* arg) {
  auto* bev = static_cast<bufferevent*>(arg);
  if ((what & EV_TIMEOUT) != 0) {
    stop_reading(bev, BEV_EVENT_TIMEOUT);
    return;
  }
  evbuffer* in = bufferevent_get_input(bev);
  // The end of a bufferevent's input is frozen against its user; thawed for this read, as
  // libevent's own read callback does.
  evbuffer_unfreeze(in, 0);
  // The bufferevent's "max single read" is this reader's read size (libevent's reader, which read
  // it, is not used here).
  const auto want = static_cast<std::size_t>(bufferevent_get_max_single_read(bev));
  std::size_t reserved = 0;
  const ssize_t n = read_into(in, fd, want, reserved);
  const int error = errno;
  evbuffer_freeze(in, 0);
  if (n < 0) {
    if (error == EAGAIN || error == EWOULDBLOCK) return;
    errno = error;  // for the event callback, as libevent leaves it
    stop_reading(bev, BEV_EVENT_ERROR);
    return;
  }
  if (n == 0) {
    stop_reading(bev, BEV_EVENT_EOF);
    return;
  }
  // The next reservation follows the traffic: doubled after a read that filled it (a stream),
  // halved after one that used less than a quarter (small responses after a large one).
  const auto got = static_cast<std::size_t>(n);
  std::size_t next = want;
  if (got >= reserved)
    next = std::min(want * 2, kMaxRead);
  else if (got < want / 4)
    next = std::max(want / 2, kMinRead);
  if (next != want) bufferevent_set_max_single_read(bev, next);
  // Last: the read callback may free the bufferevent (bufferevent_trigger holds it until done).
  bufferevent_trigger(bev, EV_READ, 0);
}

}  // namespace

void read_without_fionread(bufferevent* bev) {
  bufferevent_set_max_single_read(bev, kMinRead);
  const bool reading = (bufferevent_get_enabled(bev) & EV_READ) != 0;
  event_del(&bev->ev_read);
  event_assign(&bev->ev_read, bufferevent_get_base(bev), bufferevent_getfd(bev),
               EV_READ | EV_PERSIST | EV_FINALIZE, &on_readable, bev);
  if (reading) bufferevent_enable(bev, EV_READ);  // adds the event again, with its timeout
}

}  // namespace fmp::proxy::server
