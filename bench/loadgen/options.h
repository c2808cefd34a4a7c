// The load generator's command line as a typed value.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace fmp::bench {

/// How each connection issues its requests.
enum class ConnectionMode {
  kKeepAlive,      ///< one connection, requests one after another (HTTP/1.1 keep-alive)
  kNewConnection,  ///< a new TCP connection and a full TLS handshake for every request
  kResumed,        ///< a new TCP connection per request, resuming the last TLS session (ticket)
  kIdle,  ///< open, send one request, then hold the connection idle (memory per connection)
};

struct Options {
  // Target, from --url http[s]://HOST:PORT/PATH
  std::string url;
  bool tls = false;
  std::string host;
  std::uint16_t port = 0;
  std::string path;         ///< request target, with query
  std::string host_header;  ///< Host header value; default HOST:PORT

  // TLS client identity and server verification
  std::string cert;         ///< client certificate chain (PEM); empty: no client certificate
  std::string key;          ///< client key (PEM)
  std::string ca;           ///< CA bundle to verify the server; empty: server not verified
  std::string server_name;  ///< name checked against the server certificate (and sent as SNI)
  bool tls13_only = false;

  // Request
  std::string method = "GET";
  std::string body_file;  ///< request body (sent with Content-Length)
  std::string content_type = "application/fhir+json";
  std::vector<std::string> headers;  ///< extra "Name: value" lines

  // Load shape
  ConnectionMode mode = ConnectionMode::kKeepAlive;
  int connections = 1;
  double duration_s = 10;      ///< measured window (idle mode: how long to hold the connections)
  double warmup_s = 0;         ///< not measured, before the window
  std::uint64_t requests = 0;  ///< > 0: stop after this many measured requests instead of duration
  double timeout_s = 30;       ///< per request (and per connect + handshake)
  double max_time_s = 900;     ///< hard bound on the whole run
  int connect_concurrency = 100;  ///< idle mode: handshakes in flight at once

  // Accounting
  std::vector<int> proxy_pids;  ///< processes whose CPU time is "the proxy" (summed)
  std::vector<int> rig_pids;    ///< other known processes of the rig (the upstream), summed
  std::string ready_file;       ///< idle mode: once every attempt is over, holds the number open

  // Output
  bool json = false;
  std::string label;  ///< copied into the JSON line
};

/// Parses argv. Throws std::invalid_argument with a one-line message on a bad or missing option;
/// returns false when --help was asked for (usage already printed).
bool parse_options(int argc, char** argv, Options& out);

/// The usage text.
const char* usage();

const char* mode_name(ConnectionMode mode);

}  // namespace fmp::bench
