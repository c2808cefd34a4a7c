#include "bench/loadgen/load_generator.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <stdexcept>

#include "bench/loadgen/client_connection.h"

namespace fmp::bench {

namespace {

timeval to_timeval(double seconds) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(seconds);
  tv.tv_usec = static_cast<suseconds_t>((seconds - static_cast<double>(tv.tv_sec)) * 1e6);
  return tv;
}

}  // namespace

LoadGenerator::LoadGenerator(const Options& options) : options_(options), base_(event_base_new()) {
  if (!base_) throw std::runtime_error("event_base_new failed");
  if (options.tls) tls_ = std::make_unique<TlsClientContext>(options);
  resolve_address();
  if (!options.body_file.empty()) {
    std::ifstream in(options.body_file, std::ios::binary);
    if (!in) throw std::runtime_error("cannot read body file " + options.body_file);
    request_body_.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  build_request();
  phase_timer_.reset(evtimer_new(base_.get(), &LoadGenerator::on_phase_timer, this));
  max_time_timer_.reset(evtimer_new(base_.get(), &LoadGenerator::on_max_time, this));
  if (!phase_timer_ || !max_time_timer_) throw std::runtime_error("evtimer_new failed");
}

LoadGenerator::~LoadGenerator() {
  connections_.clear();  // every bufferevent before the timers and the base
}

void LoadGenerator::resolve_address() {
  if (auto* v4 = reinterpret_cast<sockaddr_in*>(&address_);
      inet_pton(AF_INET, options_.host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(options_.port);
    address_length_ = sizeof(sockaddr_in);
    return;
  }
  if (auto* v6 = reinterpret_cast<sockaddr_in6*>(&address_);
      inet_pton(AF_INET6, options_.host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(options_.port);
    address_length_ = sizeof(sockaddr_in6);
    return;
  }
  throw std::invalid_argument(
      "--url: host must be an IP address (benchmarks do not resolve names)");
}

void LoadGenerator::build_request() {
  std::string& h = request_head_;
  h = options_.method + " " + options_.path + " HTTP/1.1\r\nHost: " + options_.host_header +
      "\r\nUser-Agent: fmp-loadgen\r\nAccept: application/fhir+json\r\n";
  if (!options_.body_file.empty()) {
    h += "Content-Type: " + options_.content_type + "\r\n";
    h += "Content-Length: " + std::to_string(request_body_.size()) + "\r\n";
  }
  if (options_.mode == ConnectionMode::kNewConnection || options_.mode == ConnectionMode::kResumed)
    h += "Connection: close\r\n";
  for (const auto& line : options_.headers) h += line + "\r\n";
  h += "\r\n";
}

void LoadGenerator::run() {
  const timeval max_time = to_timeval(options_.max_time_s);
  evtimer_add(max_time_timer_.get(), &max_time);
  const bool idle = options_.mode == ConnectionMode::kIdle;
  if (!idle) {
    if (options_.warmup_s > 0) {
      phase_ = Phase::kWarmup;
      const timeval warm = to_timeval(options_.warmup_s);
      evtimer_add(phase_timer_.get(), &warm);
    } else {
      start_measuring();
    }
  } else {
    phase_ = Phase::kWarmup;  // idle mode: "warm-up" lasts until every connection is established
  }
  connections_.reserve(static_cast<std::size_t>(options_.connections));
  for (int i = 0; i < options_.connections; ++i)
    connections_.push_back(std::make_unique<ClientConnection>(*this));
  if (idle) {
    const auto first = std::min<std::size_t>(
        connections_.size(), static_cast<std::size_t>(options_.connect_concurrency));
    for (; idle_next_ < first; ++idle_next_) {
      ++idle_in_flight_;
      connections_[idle_next_]->start();
    }
  } else {
    for (auto& c : connections_) c->start();
  }
  event_base_dispatch(base_.get());
  if (phase_ != Phase::kDone) finish();
}

void LoadGenerator::start_measuring() {
  phase_ = Phase::kMeasure;
  cpu_before_ = take_cpu_snapshot(options_.proxy_pids, options_.rig_pids);
  measure_start_ = std::chrono::steady_clock::now();
  if (options_.requests == 0 || options_.mode == ConnectionMode::kIdle) {
    const timeval window = to_timeval(options_.duration_s);
    evtimer_add(phase_timer_.get(), &window);
  }
}

void LoadGenerator::finish() {
  if (phase_ == Phase::kDone) return;
  const bool measured = phase_ == Phase::kMeasure;
  phase_ = Phase::kDone;
  if (measured) {
    cpu_ =
        cpu_usage_between(cpu_before_, take_cpu_snapshot(options_.proxy_pids, options_.rig_pids));
    measured_s_ =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - measure_start_).count();
  }
  event_base_loopbreak(base_.get());
}

void LoadGenerator::on_phase_timer(evutil_socket_t, short, void* arg) {
  auto* self = static_cast<LoadGenerator*>(arg);
  if (self->phase_ == Phase::kWarmup)
    self->start_measuring();
  else
    self->finish();
}

void LoadGenerator::on_max_time(evutil_socket_t, short, void* arg) {
  auto* self = static_cast<LoadGenerator*>(arg);
  self->hit_max_time_ = true;
  self->finish();
}

bool LoadGenerator::claim_request() {
  if (phase_ == Phase::kDone) return false;
  if (phase_ == Phase::kMeasure && options_.requests > 0) {
    if (claimed_ >= options_.requests) return false;
    ++claimed_;
  }
  return true;
}

void LoadGenerator::check_request_budget() {
  if (options_.requests > 0 && options_.mode != ConnectionMode::kIdle &&
      phase_ == Phase::kMeasure && finished_ >= options_.requests)
    finish();
}

void LoadGenerator::record_response(std::uint64_t latency_ns, int status,
                                    std::uint64_t body_bytes) {
  if (phase_ != Phase::kMeasure && options_.mode != ConnectionMode::kIdle) return;
  ++stats_.requests;
  stats_.body_bytes += body_bytes;
  ++stats_.status[status];
  stats_.latency_ns.record(latency_ns);
  ++finished_;
  check_request_budget();
}

void LoadGenerator::record_error(ErrorKind kind) {
  if (phase_ != Phase::kMeasure && options_.mode != ConnectionMode::kIdle) return;
  stats_.count_error(kind);
  ++finished_;
  check_request_budget();
}

void LoadGenerator::record_handshake(bool resumed) {
  if (phase_ != Phase::kMeasure && options_.mode != ConnectionMode::kIdle) return;
  ++(resumed ? stats_.handshakes_resumed : stats_.handshakes_full);
}

void LoadGenerator::on_idle_established() {
  ++stats_.idle_established;
}

void LoadGenerator::on_idle_attempt_over() {
  --idle_in_flight_;
  if (phase_ != Phase::kWarmup) return;
  if (idle_next_ < connections_.size()) {
    ++idle_in_flight_;
    connections_[idle_next_++]->start();
    return;
  }
  if (idle_in_flight_ > 0) return;
  // Every attempt is over: hold what is established for the measured window.
  if (!options_.ready_file.empty()) {
    std::ofstream ready(options_.ready_file);
    ready << stats_.idle_established - stats_.errors_closed_idle << "\n";  // open right now
  }
  std::fprintf(stderr, "fmp-loadgen: %llu of %d connections established and idle\n",
               static_cast<unsigned long long>(stats_.idle_established), options_.connections);
  start_measuring();
}

}  // namespace fmp::bench
