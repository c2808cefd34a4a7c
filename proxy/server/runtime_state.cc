#include "proxy/server/runtime_state.h"

#include <event2/util.h>
#include <openssl/ssl.h>

#include <cstring>
#include <ctime>

#include "proxy/config/validate_files.h"

namespace fmp::proxy::server {
namespace {

policy::Diagnostic at(const ProxyConfig& c, std::string message) {
  return policy::Diagnostic{c.file, 1, 1, std::move(message)};
}

void resolve_upstream(const ProxyConfig& c, RuntimeState& s) {
  evutil_addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = EVUTIL_AI_ADDRCONFIG;
  evutil_addrinfo* res = nullptr;
  const std::string port = std::to_string(c.upstream.port);
  const int rc = evutil_getaddrinfo(c.upstream.host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0 || res == nullptr)
    throw policy::ConfigError(at(
        c, "cannot resolve upstream host \"" + c.upstream.host + "\": " + evutil_gai_strerror(rc)));
  std::memcpy(&s.upstream_addr, res->ai_addr, res->ai_addrlen);
  s.upstream_addr_len = static_cast<socklen_t>(res->ai_addrlen);
  evutil_freeaddrinfo(res);
}

std::shared_ptr<SSL_CTX> upstream_client_context(const ProxyConfig& c) {
  SSL_CTX* raw = SSL_CTX_new(TLS_client_method());
  if (raw == nullptr) throw policy::ConfigError(at(c, "cannot create upstream TLS context"));
  std::shared_ptr<SSL_CTX> ctx(raw, SSL_CTX_free);
  SSL_CTX_set_min_proto_version(raw, TLS1_2_VERSION);
  SSL_CTX_set_verify(raw, SSL_VERIFY_PEER, nullptr);
  const bool ok = c.upstream.ca.path.empty() ? SSL_CTX_set_default_verify_paths(raw) == 1
                                             : SSL_CTX_load_verify_locations(
                                                   raw, c.upstream.ca.path.c_str(), nullptr) == 1;
  if (!ok)
    throw policy::ConfigError(
        policy::Diagnostic{c.file, c.upstream.ca.pos.line, c.upstream.ca.pos.column,
                           "cannot load upstream CA \"" + c.upstream.ca.path + "\""});
  return ctx;
}

}  // namespace

StatePtr build_runtime_state(const std::string& config_path, observability::Metrics& metrics) {
  auto s = std::make_shared<RuntimeState>();
  s->config = load_proxy_config(config_path);
  FileReport report = inspect_files(s->config, std::time(nullptr));
  if (!report.errors.empty()) throw policy::ConfigError(std::move(report.errors));
  s->policy = report.policy;
  s->tls = tls::ServerContext::build(s->config);
  s->reserved = std::make_shared<const http::ReservedHeaders>(s->config.identity_headers);
  resolve_upstream(s->config, *s);
  s->upstream_host = s->config.upstream.host;
  const bool v6 = s->upstream_host.find(':') != std::string::npos;
  s->upstream_authority = (v6 ? "[" + s->upstream_host + "]" : s->upstream_host) + ":" +
                          std::to_string(s->config.upstream.port);
  s->upstream_key = (s->config.upstream.https ? "https://" : "http://") + s->upstream_authority;
  if (s->config.upstream.https) s->upstream_tls = upstream_client_context(s->config);
  s->rule_counters = metrics.bind_rules(s->policy->rule_names());
  return s;
}

}  // namespace fmp::proxy::server
