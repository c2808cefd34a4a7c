// An owned socket descriptor: closed when its holder goes (or on reset()). Move-only.
#pragma once

#include <event2/util.h>

#include <utility>

namespace fmp::ev {

class SocketFd {
 public:
  SocketFd() = default;
  explicit SocketFd(evutil_socket_t fd) : fd_(fd) {}
  ~SocketFd() { reset(); }
  SocketFd(SocketFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  SocketFd& operator=(SocketFd&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  SocketFd(const SocketFd&) = delete;
  SocketFd& operator=(const SocketFd&) = delete;

  evutil_socket_t get() const { return fd_; }
  void reset() {
    if (fd_ >= 0) evutil_closesocket(fd_);
    fd_ = -1;
  }

 private:
  evutil_socket_t fd_ = -1;
};

}  // namespace fmp::ev
