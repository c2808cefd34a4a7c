// What a run counted: requests, bytes, status codes, errors, handshakes and the latency histogram.
#pragma once

#include <cstdint>
#include <map>

#include "bench/loadgen/histogram.h"

namespace fmp::bench {

/// Why a request (or a connection) failed.
enum class ErrorKind { kConnect, kTls, kRead, kParse, kTimeout, kClosedIdle };

struct RunStats {
  std::uint64_t requests = 0;    ///< responses completed in the measured window (any status)
  std::uint64_t body_bytes = 0;  ///< response body bytes of those responses
  std::map<int, std::uint64_t> status;
  std::uint64_t errors_connect = 0;  ///< TCP connect refused/failed
  std::uint64_t errors_tls = 0;      ///< TLS handshake or record error
  std::uint64_t errors_read = 0;     ///< connection closed or reset before a response completed
  std::uint64_t errors_parse = 0;    ///< response not valid HTTP/1.1
  std::uint64_t errors_timeout = 0;
  std::uint64_t errors_closed_idle = 0;  ///< idle mode: the server closed a held connection
  std::uint64_t handshakes_full = 0;
  std::uint64_t handshakes_resumed = 0;
  std::uint64_t idle_established = 0;  ///< idle mode: connections that completed their request
  LatencyHistogram latency_ns;

  std::uint64_t errors() const {
    return errors_connect + errors_tls + errors_read + errors_parse + errors_timeout +
           errors_closed_idle;
  }
  void count_error(ErrorKind kind);
};

}  // namespace fmp::bench
