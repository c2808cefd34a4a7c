#include "bench/loadgen/report.h"

#include <cstdio>
#include <nlohmann/json.hpp>

namespace fmp::bench {

namespace {

constexpr double kPercentiles[] = {50, 90, 99, 99.9};

double ms(std::uint64_t ns) {
  return static_cast<double>(ns) / 1e6;
}

struct Derived {
  double seconds = 0;
  double rps = 0;
  double mbps = 0;
  double proxy_us_per_request = 0;
  double proxy_busy = 0;  // fraction of one core
  double other_cores = 0;
};

Derived derive(const LoadGenerator& gen) {
  Derived d;
  const RunStats& s = gen.stats();
  const CpuUsage& c = gen.cpu();
  d.seconds = gen.measured_seconds();
  if (d.seconds > 0) {
    d.rps = static_cast<double>(s.requests) / d.seconds;
    d.mbps = static_cast<double>(s.body_bytes) / 1e6 / d.seconds;
    d.proxy_busy = c.proxy_s / d.seconds;
    d.other_cores = c.other_s / d.seconds;
  }
  if (s.requests > 0) d.proxy_us_per_request = c.proxy_s * 1e6 / static_cast<double>(s.requests);
  return d;
}

std::string format(const char* fmt, auto... args) {
  char buf[512];
  std::snprintf(buf, sizeof buf, fmt, args...);
  return buf;
}

}  // namespace

std::string text_report(const Options& o, const LoadGenerator& gen) {
  const RunStats& s = gen.stats();
  const CpuUsage& c = gen.cpu();
  const Derived d = derive(gen);
  std::string out;
  out += format("fmp-loadgen: %s %s, mode %s, %d connection(s), %.2f s measured", o.method.c_str(),
                o.url.c_str(), mode_name(o.mode), o.connections, d.seconds);
  if (o.warmup_s > 0) out += format(" after %.1f s warm-up", o.warmup_s);
  if (gen.hit_max_time()) out += " (stopped by --max-time)";
  out += "\n";
  out += format("  requests   %llu (%.1f/s), response body %.1f MB (%.1f MB/s)\n",
                static_cast<unsigned long long>(s.requests), d.rps,
                static_cast<double>(s.body_bytes) / 1e6, d.mbps);
  if (o.tls)
    out += format("  handshakes full %llu, resumed %llu\n",
                  static_cast<unsigned long long>(s.handshakes_full),
                  static_cast<unsigned long long>(s.handshakes_resumed));
  if (o.mode == ConnectionMode::kIdle)
    out += format("  idle connections established %llu of %d\n",
                  static_cast<unsigned long long>(s.idle_established), o.connections);
  out += "  status    ";
  for (const auto& [code, n] : s.status)
    out += format(" %d: %llu", code, static_cast<unsigned long long>(n));
  out += "\n";
  out += format("  errors     connect %llu, tls %llu, read %llu, parse %llu, timeout %llu",
                static_cast<unsigned long long>(s.errors_connect),
                static_cast<unsigned long long>(s.errors_tls),
                static_cast<unsigned long long>(s.errors_read),
                static_cast<unsigned long long>(s.errors_parse),
                static_cast<unsigned long long>(s.errors_timeout));
  if (o.mode == ConnectionMode::kIdle)
    out +=
        format(", dropped while idle %llu", static_cast<unsigned long long>(s.errors_closed_idle));
  out += "\n";
  const auto& h = s.latency_ns;
  out += format("  latency ms p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f  (mean %.3f)\n",
                ms(h.value_at_percentile(50)), ms(h.value_at_percentile(90)),
                ms(h.value_at_percentile(99)), ms(h.value_at_percentile(99.9)), ms(h.max()),
                h.mean() / 1e6);
  if (!o.proxy_pids.empty())
    out += format("  proxy CPU  %.2f s (%.1f%% of a core), %.1f us per request%s\n", c.proxy_s,
                  d.proxy_busy * 100, d.proxy_us_per_request,
                  c.valid ? "" : " (a proxy process exited: figure invalid)");
  out += format(
      "  other CPU  rig %.2f s, load generator %.2f s, everything else %.2f s "
      "(%.1f%% of a core), steal %.2f s\n",
      c.rig_s, c.self_s, c.other_s, d.other_cores * 100, c.steal_s);
  return out;
}

std::string json_report(const Options& o, const LoadGenerator& gen) {
  const RunStats& s = gen.stats();
  const CpuUsage& c = gen.cpu();
  const Derived d = derive(gen);
  const auto& h = s.latency_ns;
  nlohmann::json j;
  j["label"] = o.label;
  j["url"] = o.url;
  j["method"] = o.method;
  j["mode"] = mode_name(o.mode);
  j["connections"] = o.connections;
  j["seconds"] = d.seconds;
  j["hit_max_time"] = gen.hit_max_time();
  j["requests"] = s.requests;
  j["rps"] = d.rps;
  j["body_bytes"] = s.body_bytes;
  j["mb_per_s"] = d.mbps;
  nlohmann::json status = nlohmann::json::object();
  for (const auto& [code, n] : s.status) status[std::to_string(code)] = n;
  j["status"] = status;
  j["errors"] = {{"connect", s.errors_connect}, {"tls", s.errors_tls},
                 {"read", s.errors_read},       {"parse", s.errors_parse},
                 {"timeout", s.errors_timeout}, {"closed_idle", s.errors_closed_idle},
                 {"total", s.errors()}};
  j["handshakes"] = {{"full", s.handshakes_full}, {"resumed", s.handshakes_resumed}};
  j["idle_established"] = s.idle_established;
  nlohmann::json lat;
  for (const double p : kPercentiles) lat[format("p%g", p)] = ms(h.value_at_percentile(p));
  lat["max"] = ms(h.max());
  lat["mean"] = h.mean() / 1e6;
  j["latency_ms"] = lat;
  j["cpu"] = {{"proxy_s", c.proxy_s},
              {"proxy_busy", d.proxy_busy},
              {"proxy_us_per_request", d.proxy_us_per_request},
              {"rig_s", c.rig_s},
              {"loadgen_s", c.self_s},
              {"other_s", c.other_s},
              {"other_cores", d.other_cores},
              {"steal_s", c.steal_s},
              {"valid", c.valid}};
  return j.dump();
}

}  // namespace fmp::bench
