#include "bench/loadgen/options.h"

#include <charconv>
#include <cstdio>
#include <stdexcept>
#include <string_view>

namespace fmp::bench {

namespace {

template <typename T>
T parse_number(std::string_view name, std::string_view text) {
  T value{};
  const auto* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc() || ptr != end || text.empty())
    throw std::invalid_argument(std::string(name) + ": not a number: \"" + std::string(text) +
                                "\"");
  return value;
}

std::vector<int> parse_pids(std::string_view name, std::string_view text) {
  std::vector<int> pids;
  while (!text.empty()) {
    const auto comma = text.find(',');
    const auto item = text.substr(0, comma);
    if (!item.empty()) {
      const int pid = parse_number<int>(name, item);
      if (pid <= 0) throw std::invalid_argument(std::string(name) + ": bad pid");
      pids.push_back(pid);
    }
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  return pids;
}

ConnectionMode parse_mode(std::string_view text) {
  if (text == "keepalive") return ConnectionMode::kKeepAlive;
  if (text == "new") return ConnectionMode::kNewConnection;
  if (text == "resume") return ConnectionMode::kResumed;
  if (text == "idle") return ConnectionMode::kIdle;
  throw std::invalid_argument("--mode: expected keepalive, new, resume or idle, got \"" +
                              std::string(text) + "\"");
}

void parse_url(Options& o) {
  std::string_view u = o.url;
  if (u.starts_with("https://")) {
    o.tls = true;
    u.remove_prefix(8);
  } else if (u.starts_with("http://")) {
    o.tls = false;
    u.remove_prefix(7);
  } else {
    throw std::invalid_argument("--url: must start with http:// or https://");
  }
  const auto slash = u.find('/');
  const auto authority = u.substr(0, slash);
  o.path = slash == std::string_view::npos ? "/" : std::string(u.substr(slash));
  std::string_view host;
  std::string_view port;
  if (authority.starts_with('[')) {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) throw std::invalid_argument("--url: bad IPv6 literal");
    host = authority.substr(1, close - 1);
    if (close + 1 < authority.size() && authority[close + 1] == ':')
      port = authority.substr(close + 2);
  } else {
    const auto colon = authority.rfind(':');
    host = authority.substr(0, colon);
    if (colon != std::string_view::npos) port = authority.substr(colon + 1);
  }
  if (host.empty()) throw std::invalid_argument("--url: no host");
  o.host = std::string(host);
  o.port = port.empty() ? (o.tls ? 443 : 80) : parse_number<std::uint16_t>("--url port", port);
  if (o.host_header.empty()) o.host_header = std::string(authority);
}

}  // namespace

const char* usage() {
  return "usage: fmp-loadgen --url http[s]://HOST:PORT/PATH [options]\n"
         "  --cert FILE --key FILE   client certificate (mTLS)\n"
         "  --ca FILE                verify the server against this CA bundle\n"
         "  --server-name NAME       name to verify (and SNI); default: the URL host\n"
         "  --tls13                  offer TLS 1.3 only\n"
         "  --method M               GET (default), POST, PUT, HEAD ...\n"
         "  --body FILE              request body (Content-Length framing)\n"
         "  --content-type T         default application/fhir+json\n"
         "  --header 'Name: value'   extra request header (repeatable)\n"
         "  --mode keepalive|new|resume|idle\n"
         "                           keepalive: reuse each connection; new: new connection and "
         "full\n"
         "                           handshake per request; resume: new connection per request\n"
         "                           resuming the last TLS session; idle: one request per\n"
         "                           connection, then hold them all open for --duration\n"
         "  --connections N          default 1\n"
         "  --duration S             measured seconds (default 10)\n"
         "  --warmup S               unmeasured seconds before (default 0)\n"
         "  --requests N             stop after N measured requests instead\n"
         "  --timeout S              per request, including connect and handshake (default 30)\n"
         "  --max-time S             hard bound on the whole run (default 900)\n"
         "  --connect-concurrency N  idle mode: handshakes in flight at once (default 100)\n"
         "  --proxy-pids P,P         CPU time of these processes is reported as the proxy's\n"
         "  --rig-pids P,P           other known processes (upstream), for interference "
         "accounting\n"
         "  --ready-file FILE        idle mode: created once every connection is established\n"
         "  --label TEXT             copied into the JSON output\n"
         "  --json                   print one JSON line instead of text\n";
}

const char* mode_name(ConnectionMode mode) {
  switch (mode) {
    case ConnectionMode::kKeepAlive:
      return "keepalive";
    case ConnectionMode::kNewConnection:
      return "new";
    case ConnectionMode::kResumed:
      return "resume";
    case ConnectionMode::kIdle:
      return "idle";
  }
  return "?";
}

bool parse_options(int argc, char** argv, Options& o) {
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    auto value = [&]() -> std::string_view {
      if (i + 1 >= argc) throw std::invalid_argument(std::string(arg) + ": missing value");
      return argv[++i];
    };
    if (arg == "--help" || arg == "-h") {
      std::fputs(usage(), stdout);
      return false;
    } else if (arg == "--url") {
      o.url = value();
    } else if (arg == "--cert") {
      o.cert = value();
    } else if (arg == "--key") {
      o.key = value();
    } else if (arg == "--ca") {
      o.ca = value();
    } else if (arg == "--server-name") {
      o.server_name = value();
    } else if (arg == "--host-header") {
      o.host_header = value();
    } else if (arg == "--tls13") {
      o.tls13_only = true;
    } else if (arg == "--method") {
      o.method = value();
    } else if (arg == "--body") {
      o.body_file = value();
    } else if (arg == "--content-type") {
      o.content_type = value();
    } else if (arg == "--header") {
      o.headers.emplace_back(value());
    } else if (arg == "--mode") {
      o.mode = parse_mode(value());
    } else if (arg == "--connections") {
      o.connections = parse_number<int>(arg, value());
    } else if (arg == "--duration") {
      o.duration_s = parse_number<double>(arg, value());
    } else if (arg == "--warmup") {
      o.warmup_s = parse_number<double>(arg, value());
    } else if (arg == "--requests") {
      o.requests = parse_number<std::uint64_t>(arg, value());
    } else if (arg == "--timeout") {
      o.timeout_s = parse_number<double>(arg, value());
    } else if (arg == "--max-time") {
      o.max_time_s = parse_number<double>(arg, value());
    } else if (arg == "--connect-concurrency") {
      o.connect_concurrency = parse_number<int>(arg, value());
    } else if (arg == "--proxy-pids") {
      o.proxy_pids = parse_pids(arg, value());
    } else if (arg == "--rig-pids") {
      o.rig_pids = parse_pids(arg, value());
    } else if (arg == "--ready-file") {
      o.ready_file = value();
    } else if (arg == "--label") {
      o.label = value();
    } else if (arg == "--json") {
      o.json = true;
    } else {
      throw std::invalid_argument("unknown option \"" + std::string(arg) + "\"");
    }
  }
  if (o.url.empty()) throw std::invalid_argument("--url is required");
  parse_url(o);
  if (o.server_name.empty()) o.server_name = o.host;
  if (o.cert.empty() != o.key.empty()) throw std::invalid_argument("--cert and --key go together");
  if (!o.tls && (!o.cert.empty() || !o.ca.empty()))
    throw std::invalid_argument("--cert/--ca need an https:// URL");
  if (o.tls == false && o.mode == ConnectionMode::kResumed)
    throw std::invalid_argument("--mode resume needs an https:// URL");
  if (o.connections < 1 || o.connections > 100000)
    throw std::invalid_argument("--connections: 1..100000");
  if (o.duration_s <= 0 || o.warmup_s < 0 || o.timeout_s <= 0 || o.max_time_s <= 0)
    throw std::invalid_argument("--duration, --timeout, --max-time must be > 0, --warmup >= 0");
  if (o.connect_concurrency < 1) throw std::invalid_argument("--connect-concurrency must be >= 1");
  return true;
}

}  // namespace fmp::bench
