// Closing a client connection gently after an error response (what nginx calls lingering close).
//
// When the proxy answers before it has read the whole request (431 for an oversized head, 413 for
// an oversized body, 400 in the middle of a body) and then closes, the client may still be
// sending. Closing a socket with unread bytes makes the kernel send a reset, and a reset can reach
// the client before it has read the answer: it sees "connection reset" instead of the 413. So such
// a socket is shut down for writing (after the response and the TLS close_notify) and what the
// client still sends is read and thrown away until it closes its side, it stays silent for
// kQuietLimit, or kTotalLimit has passed. At most kMaxLingering sockets per worker linger;
// beyond that, or while the worker drains, a socket is closed at once.
#pragma once

#include <event2/event.h>

#include <chrono>
#include <cstddef>
#include <memory>
#include <unordered_map>

#include "proxy/event_ptr.h"
#include "proxy/socket_fd.h"

namespace fmp::proxy::server {

class LingeringClose {
 public:
  static constexpr std::chrono::seconds kQuietLimit{2};
  static constexpr std::chrono::seconds kTotalLimit{10};
  static constexpr std::size_t kMaxLingering = 4096;

  LingeringClose() = default;
  LingeringClose(const LingeringClose&) = delete;
  LingeringClose& operator=(const LingeringClose&) = delete;

  /// Shuts `socket` down for writing and reads it empty on `base` until the client is done.
  void add(event_base* base, ev::SocketFd socket);
  /// Closes every lingering socket now.
  void close_all() { sockets_.clear(); }
  std::size_t size() const { return sockets_.size(); }

 private:
  struct Socket {
    LingeringClose* owner = nullptr;
    ev::SocketFd fd;
    ev::EventPtr event;
    std::chrono::steady_clock::time_point deadline;
  };
  static void on_event(evutil_socket_t fd, short what, void* arg);

  std::unordered_map<const Socket*, std::unique_ptr<Socket>> sockets_;
};

}  // namespace fmp::proxy::server
