// proxy.yaml as a typed, validated value.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "policy/config_error.h"

namespace fmp::proxy {

/// Where a value came from in proxy.yaml, so errors about the files it names point at the right
/// line.
struct SourcePos {
  int line = 1;  ///< 1-based
  int column = 1;
};

/// A file named in proxy.yaml, with the position of the scalar that names it. Paths are resolved
/// relative to the current working directory (like nginx -p default), as written.
struct FileRef {
  std::string path;
  SourcePos pos;
};

enum class ClientCertMode { kRequire, kRequest };

struct TrustCommunity {
  std::string name;
  FileRef ca;  ///< PEM bundle of one or more CA certificates (roots and intermediates)
  std::vector<FileRef> crl;  ///< PEM or DER CRLs; when non-empty the whole chain is CRL-checked
  SourcePos pos;
};

struct TlsSettings {
  FileRef cert;  ///< server certificate chain, leaf first
  FileRef key;
  int min_version = 0x0303;  ///< TLS1_2_VERSION or TLS1_3_VERSION
  ClientCertMode client_cert = ClientCertMode::kRequire;
  std::vector<TrustCommunity> trust;
  int session_ticket_lifetime_s = 300;  ///< extension: how long a resumption ticket stays valid
  int session_cache_size = 2000;        ///< extension: sessions kept for resumption (all workers)
};

struct UpstreamSettings {
  std::string url;  ///< as written
  bool https = false;
  std::string host;  ///< host part (no brackets for IPv6)
  std::uint16_t port = 0;
  std::string base_path;  ///< path part of url ("" when none)
  FileRef ca;             ///< for https upstreams; empty path = system default
  int connect_timeout_ms = 2000;
  int response_timeout_ms = 30000;
  int max_idle_connections = 64;
};

struct IdentityHeaderNames {
  std::string subject = "X-Client-Subject-DN";
  std::string issuer = "X-Client-Issuer-DN";
  std::string san_uri = "X-Client-SAN-URI";
  std::string hipaa = "X-Client-HIPAA-Category";
  std::string fingerprint = "X-Client-Cert-SHA256";
  std::string trust = "X-Client-Trust-Community";
  std::string rule = "X-Policy-Rule";
  bool xfcc = false;
  bool rfc9440 = false;

  bool operator==(const IdentityHeaderNames&) const = default;
};

struct Limits {
  std::size_t max_header_bytes = 16384;
  std::size_t max_body_bytes = 10485760;
  int idle_timeout_ms = 60000;
  int header_timeout_ms = 10000;
  int max_connections = 10000;  ///< extension: accepted connections above this are closed at once
};

struct MetricsSettings {
  std::string listen;  ///< "" = no metrics endpoint
};

enum class AuditFormatSetting { kJson, kFhir };
enum class AuditFailureMode { kDeny, kContinue };

struct AuditSettings {
  std::string path = "-";  ///< "-" = stdout
  /// json: one flat JSON object per line (the contract's fields); fhir: one FHIR R4 AuditEvent per
  /// line.
  AuditFormatSetting format = AuditFormatSetting::kJson;
  /// deny: while the audit log cannot record (write failing, queue full), allowed requests are
  /// refused with 503 before they are forwarded; continue: they proceed and the loss is counted.
  AuditFailureMode on_failure = AuditFailureMode::kDeny;
};

struct ProxyConfig {
  std::string file;  ///< the proxy.yaml path this came from
  std::string listen;
  std::string listen_host;  ///< without brackets
  std::uint16_t listen_port = 0;
  int workers = 0;  ///< resolved: never 0 after loading (defaults to the number of cores)
  int drain_timeout_ms = 10000;
  TlsSettings tls;
  UpstreamSettings upstream;
  std::string fhir_base = "/fhir";
  FileRef policy;
  IdentityHeaderNames identity_headers;
  Limits limits;
  MetricsSettings metrics;
  AuditSettings audit;
  /// Reload on its own when proxy.yaml or a file it names changes (inotify), as SIGHUP does.
  bool watch = true;
};

/// Parses and validates proxy.yaml itself (types, unknown keys, required keys, ranges, address
/// syntax). Does not open the files it names: see config/validate_files.h. Throws
/// policy::ConfigError.
ProxyConfig load_proxy_config(const std::string& path);

/// Same as load_proxy_config, from memory; `name` is the file name used in diagnostics (and stored
/// in ProxyConfig::file).
ProxyConfig load_proxy_config_text(const std::string& text, const std::string& name);

}  // namespace fmp::proxy
