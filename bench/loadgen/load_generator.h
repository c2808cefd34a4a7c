// Drives N client connections on one libevent loop through warm-up, the measured window and the
// end, and collects RunStats plus the CPU accounting of that window.
#pragma once

#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "bench/loadgen/cpu_accounting.h"
#include "bench/loadgen/options.h"
#include "bench/loadgen/run_stats.h"
#include "bench/loadgen/tls_client_context.h"
#include "proxy/event_ptr.h"

namespace fmp::bench {

class ClientConnection;

/// Where the run is. Requests complete in any phase but only kMeasure counts them.
enum class Phase { kWarmup, kMeasure, kDone };

class LoadGenerator {
 public:
  /// Reads the body file and sets up TLS. Throws std::runtime_error / std::invalid_argument.
  explicit LoadGenerator(const Options& options);
  ~LoadGenerator();
  LoadGenerator(const LoadGenerator&) = delete;
  LoadGenerator& operator=(const LoadGenerator&) = delete;

  /// Runs to the end (duration, request count, or max-time) and returns the measured figures.
  void run();

  const RunStats& stats() const { return stats_; }
  const CpuUsage& cpu() const { return cpu_; }
  double measured_seconds() const { return measured_s_; }
  bool hit_max_time() const { return hit_max_time_; }

  // --- for ClientConnection ---------------------------------------------------------------
  event_base* base() const { return base_.get(); }
  const Options& options() const { return options_; }
  TlsClientContext* tls() const { return tls_.get(); }
  const sockaddr* address() const { return reinterpret_cast<const sockaddr*>(&address_); }
  int address_length() const { return address_length_; }
  const std::string& request_head() const { return request_head_; }
  const std::string& request_body() const { return request_body_; }
  /// Whether a connection may start another request now (false once the run is ending or the
  /// request count has been handed out). Counts the request when it returns true.
  bool claim_request();
  bool measuring() const { return phase_ == Phase::kMeasure; }
  bool done() const { return phase_ == Phase::kDone; }
  void record_response(std::uint64_t latency_ns, int status, std::uint64_t body_bytes);
  void record_error(ErrorKind kind);
  void record_handshake(bool resumed);
  /// Idle mode: a connection finished its request and is now held open.
  void on_idle_established();
  /// Idle mode: a connection attempt ended (established or failed): start the next one.
  void on_idle_attempt_over();

 private:
  void build_request();
  void resolve_address();
  void start_measuring();
  void finish();
  void check_request_budget();
  static void on_phase_timer(evutil_socket_t, short, void* arg);
  static void on_max_time(evutil_socket_t, short, void* arg);

  const Options& options_;
  ev::EventBasePtr base_;  // declared first: destroyed last
  std::unique_ptr<TlsClientContext> tls_;
  sockaddr_storage address_{};
  int address_length_ = 0;
  std::string request_head_;
  std::string request_body_;

  ev::EventPtr phase_timer_;
  ev::EventPtr max_time_timer_;
  std::vector<std::unique_ptr<ClientConnection>> connections_;
  std::size_t idle_next_ = 0;  // idle mode: next connection to start
  int idle_in_flight_ = 0;

  Phase phase_ = Phase::kWarmup;
  std::uint64_t claimed_ = 0;
  std::uint64_t finished_ = 0;  // measured requests completed or failed (request-count mode)
  RunStats stats_;
  CpuSnapshot cpu_before_;
  CpuUsage cpu_;
  std::chrono::steady_clock::time_point measure_start_;
  double measured_s_ = 0;
  bool hit_max_time_ = false;
};

}  // namespace fmp::bench
