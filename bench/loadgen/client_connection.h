// One client connection: connect (TLS or plain), send requests per the mode, frame each response
// with http_parser (Content-Length, chunked, or close-delimited), report to the LoadGenerator.
#pragma once

#include <http_parser.h>

#include <chrono>
#include <cstdint>

#include "bench/loadgen/run_stats.h"
#include "proxy/event_ptr.h"

namespace fmp::bench {

class LoadGenerator;

class ClientConnection {
 public:
  explicit ClientConnection(LoadGenerator& gen);
  ClientConnection(const ClientConnection&) = delete;
  ClientConnection& operator=(const ClientConnection&) = delete;

  /// Opens a connection and starts issuing requests (does nothing once the run is over).
  void start();

 private:
  static void on_read(bufferevent* bev, void* arg);
  static void on_event(bufferevent* bev, short what, void* arg);
  static void on_retry(evutil_socket_t, short, void* arg);
  static int on_headers_complete(http_parser* parser);
  static int on_body(http_parser* parser, const char* at, std::size_t length);
  static int on_message_complete(http_parser* parser);
  static const http_parser_settings& parser_settings();

  void connected();
  void send_request();
  void response_complete();
  void fail(ErrorKind kind);
  void close();
  void set_timeouts(bool enabled);

  LoadGenerator& gen_;
  ev::BufferEventPtr bev_;
  ev::EventPtr retry_timer_;
  http_parser parser_{};
  bool in_request_ = false;
  bool established_ = false;  // connected (handshake done)
  bool message_done_ = false;
  bool idle_held_ = false;
  int status_ = 0;
  std::uint64_t body_bytes_ = 0;
  std::chrono::steady_clock::time_point
      started_;  // request start (connection start when per-request)
};

}  // namespace fmp::bench
