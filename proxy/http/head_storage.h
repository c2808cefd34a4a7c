// Spare buffers for message heads, lent to one worker's connections.
//
// Reading a head, and writing the rewritten one, needs a few hundred bytes to a few KiB of storage
// per message. A connection that kept its own between messages would hold it for as long as it
// stays open, idle or not; one that freed it would allocate again for every message. Instead the
// connections of a worker (one thread, so no locking) borrow from this pool while they handle a
// message and give it back when the message is done: an idle kept-alive connection holds none, and
// a busy worker reuses the same few buffers without allocating.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "proxy/http/message_parser.h"

namespace fmp::proxy::http {

class HeadStorage {
 public:
  /// Spares kept of each kind; more given back are freed.
  static constexpr std::size_t kMaxSpares = 256;
  /// Largest byte buffer kept: a forwarded head with XFCC and RFC 9440 certificate headers runs
  /// to several KiB, and a head up to the default max_header_bytes fits.
  static constexpr std::size_t kMaxBufferBytes = 16384;

  /// A byte buffer (empty, possibly with capacity).
  std::string take_bytes();
  /// Keeps `s` for the next taker unless it grew past kMaxBufferBytes or enough spares are kept
  /// already.
  void give(std::string&& s);

  /// A header list (empty, possibly with capacity).
  std::vector<Header> take_headers();
  /// Keeps `v` unless it grew past MessageParser::kRetainedHeaders or enough spares are kept.
  void give(std::vector<Header>&& v);

  /// True when `s` holds heap storage worth lending (more than std::string's inline buffer).
  static bool holds_storage(const std::string& s) {
    return s.capacity() > std::string().capacity();
  }
  static bool holds_storage(const std::vector<Header>& v) { return v.capacity() > 0; }

  std::size_t spare_bytes() const { return bytes_.size(); }
  std::size_t spare_header_lists() const { return headers_.size(); }

 private:
  std::vector<std::string> bytes_;
  std::vector<std::vector<Header>> headers_;
};

}  // namespace fmp::proxy::http
