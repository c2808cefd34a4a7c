// Parsing and validation of proxy.yaml. Every problem of the file is collected (with its 1-based
// position and the offending value quoted) before one ConfigError is thrown: all or nothing.
#include "proxy/config/proxy_config.h"

#include <arpa/inet.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include "proxy/config/address.h"

namespace fmp::proxy {
namespace {

using policy::Diagnostic;

constexpr int kMaxWorkers = 1024;
constexpr long long kMaxMillis = 24LL * 3600 * 1000;              // one day
constexpr long long kMaxTicketLifetimeS = 7LL * 24 * 3600;        // TLS 1.3 limit (RFC 8446 4.6.1)
constexpr long long kMaxSessionCacheSize = 100000;                // ~13 KiB each: ~1.3 GiB at most
constexpr long long kMaxBytes = std::numeric_limits<int>::max();  // keeps size arithmetic in range
/// A request or response head above 80 KiB is refused by http_parser itself (HTTP_MAX_HEADER_SIZE,
/// as Debian builds it) with a plain 400: the limit stays below that, so it always answers 431.
constexpr long long kMaxHeaderBytes = 65536;

/// Header names the proxy sets or that frame the message: an identity header may not reuse them.
constexpr const char* kReservedHeaders[] = {"host",
                                            "content-length",
                                            "transfer-encoding",
                                            "connection",
                                            "keep-alive",
                                            "te",
                                            "trailer",
                                            "upgrade",
                                            "expect",
                                            "proxy-connection",
                                            "content-type",
                                            "x-forwarded-for",
                                            "x-forwarded-proto",
                                            "x-forwarded-host",
                                            "x-forwarded-client-cert",
                                            "client-cert",
                                            "client-cert-chain",
                                            "forwarded"};

std::string quote(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20 || u == 0x7f) {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[u >> 4];
      out += kHex[u & 0xf];
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

bool is_tchar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::strchr("!#$%&'*+-.^_`|~", c) != nullptr && c != '\0';
}

/// One key of a mapping: the key node (for positions) and its value.
struct Entry {
  YAML::Node key;
  YAML::Node value;
  std::string path;  ///< dotted name for messages ("tls.cert")
};

/// Collects diagnostics for one file and reads typed values out of yaml-cpp nodes.
class Reader {
 public:
  explicit Reader(std::string file) : file_(std::move(file)) {}

  std::vector<Diagnostic>& diagnostics() { return diags_; }

  static SourcePos pos_of(const YAML::Node& n) {
    const YAML::Mark m = n.Mark();
    if (m.line < 0 || m.column < 0) return {};
    return {m.line + 1, m.column + 1};
  }
  /// Where a value is: its own mark, or its key's for a null value (yaml-cpp marks an empty value
  /// at the start of the next line).
  static SourcePos pos_of(const Entry& e) {
    if (!e.value.IsDefined() || e.value.IsNull()) return pos_of(e.key);
    return pos_of(e.value);
  }

  void error(SourcePos p, std::string message) {
    diags_.push_back({file_, p.line, p.column, std::move(message)});
  }
  void error(const Entry& e, std::string message) { error(pos_of(e), std::move(message)); }

  /// Checks that `node` is a mapping with only `allowed` keys, each at most once. Returns the
  /// entries by key; on a non-mapping reports an error and returns nothing.
  std::optional<std::map<std::string, Entry>> mapping(const Entry& where,
                                                      std::initializer_list<const char*> allowed) {
    if (!where.value.IsMap()) {
      error(where, (where.path.empty() ? std::string("the document") : where.path) +
                       ": expected a mapping" + describe(where.value));
      return std::nullopt;
    }
    std::map<std::string, Entry> out;
    for (auto it = where.value.begin(); it != where.value.end(); ++it) {
      const YAML::Node k = it->first;
      const std::string prefix = where.path.empty() ? "" : where.path + ".";
      if (!k.IsScalar()) {
        error(pos_of(k), prefix + "<key>: a key must be a plain string");
        continue;
      }
      const std::string name = k.Scalar();
      bool known = false;
      for (const char* a : allowed) known = known || name == a;
      if (!known) {
        error(pos_of(k), "unknown key " + quote(prefix + name));
        continue;
      }
      if (out.count(name)) {
        error(pos_of(k), "duplicate key " + quote(prefix + name));
        continue;
      }
      out.emplace(name, Entry{k, it->second, prefix + name});
    }
    return out;
  }

  void require(const std::map<std::string, Entry>& m, const Entry& parent,
               std::initializer_list<const char*> keys) {
    for (const char* k : keys)
      if (!m.count(k)) {
        const std::string prefix = parent.path.empty() ? "" : parent.path + ".";
        error(parent.path.empty() ? SourcePos{} : pos_of(parent.key),
              "missing required key " + quote(prefix + k));
      }
  }

  static std::string describe(const YAML::Node& n) {
    if (!n.IsDefined() || n.IsNull()) return ", got nothing";
    if (n.IsSequence()) return ", got a list";
    if (n.IsMap()) return ", got a mapping";
    if (n.IsScalar()) return ", got " + quote(n.Scalar());
    return "";
  }

  bool string(const Entry& e, std::string& out, bool allow_empty = false) {
    if (!e.value.IsScalar()) {
      error(e, e.path + ": expected a string" + describe(e.value));
      return false;
    }
    if (!allow_empty && e.value.Scalar().empty()) {
      error(e, e.path + ": must not be empty");
      return false;
    }
    out = e.value.Scalar();
    return true;
  }

  bool file(const Entry& e, FileRef& out) {
    std::string s;
    if (!string(e, s)) return false;
    if (s.find('\0') != std::string::npos) {
      error(e, e.path + ": invalid file name " + quote(s));
      return false;
    }
    out.path = s;
    out.pos = pos_of(e);
    return true;
  }

  /// A plain (unquoted) decimal integer in [min, max].
  template <typename T>
  bool integer(const Entry& e, long long min, long long max, T& out) {
    const std::string range =
        min == max ? ""
        : max == std::numeric_limits<long long>::max()
            ? " >= " + std::to_string(min)
            : " in [" + std::to_string(min) + ", " + std::to_string(max) + "]";
    if (!e.value.IsScalar() || e.value.Tag() != "?") {
      error(e, e.path + ": expected an integer" + range + describe(e.value) +
                   (e.value.IsScalar() ? " (a quoted string)" : ""));
      return false;
    }
    const std::string& s = e.value.Scalar();
    std::size_t i = (!s.empty() && (s[0] == '-' || s[0] == '+')) ? 1 : 0;
    bool digits = i < s.size();
    for (std::size_t j = i; j < s.size(); ++j) digits = digits && s[j] >= '0' && s[j] <= '9';
    if (!digits || s.size() > 18) {
      error(e, e.path + ": expected an integer" + range + ", got " + quote(s));
      return false;
    }
    const long long v = std::stoll(s);
    if (v < min || v > max) {
      error(e, e.path + ": must be an integer" + range + ", got " + quote(s));
      return false;
    }
    out = static_cast<T>(v);
    return true;
  }

  /// YAML 1.2 core-schema booleans only (no yes/no/on/off).
  bool boolean(const Entry& e, bool& out) {
    static const std::set<std::string> kTrue{"true", "True", "TRUE"};
    static const std::set<std::string> kFalse{"false", "False", "FALSE"};
    if (e.value.IsScalar() && e.value.Tag() == "?") {
      if (kTrue.count(e.value.Scalar())) return out = true, true;
      if (kFalse.count(e.value.Scalar())) return out = false, true;
    }
    error(e, e.path + ": expected true or false" + describe(e.value));
    return false;
  }

 private:
  std::string file_;
  std::vector<Diagnostic> diags_;
};

void read_listen(Reader& r, const Entry& e, std::string& listen, std::string& host,
                 std::uint16_t& port) {
  std::string s;
  if (!r.string(e, s)) return;
  std::string why;
  if (!parse_listen_address(s, host, port, why)) {
    r.error(e, e.path + ": invalid address " + quote(s) + ": " + why);
    return;
  }
  listen = s;
}

bool valid_community_name(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '.' || c == '-';
    if (!ok) return false;
  }
  return true;
}

void read_trust(Reader& r, const Entry& e, std::vector<TrustCommunity>& out) {
  if (!e.value.IsSequence() || e.value.size() == 0) {
    r.error(e, e.path + ": expected a list of at least one trust community" +
                   (e.value.IsSequence() ? std::string(", got an empty list")
                                         : Reader::describe(e.value)));
    return;
  }
  std::map<std::string, SourcePos> seen;
  std::size_t index = 0;
  for (const YAML::Node& item : e.value) {
    const std::string path = e.path + "[" + std::to_string(index++) + "]";
    const Entry self{item, item, path};
    auto m = r.mapping(self, {"name", "ca", "crl"});
    if (!m) continue;
    TrustCommunity tc;
    tc.pos = Reader::pos_of(item);
    for (const char* req : {"name", "ca"})
      if (!m->count(req)) r.error(tc.pos, "missing required key " + quote(path + "." + req));
    if (auto it = m->find("name"); it != m->end()) {
      std::string name;
      if (r.string(it->second, name)) {
        if (!valid_community_name(name)) {
          r.error(it->second, it->second.path + ": invalid trust community name " + quote(name) +
                                  " (allowed: A-Z a-z 0-9 _ . -)");
        } else if (auto prev = seen.find(name); prev != seen.end()) {
          r.error(it->second, it->second.path + ": duplicate trust community name " + quote(name) +
                                  " (first at line " + std::to_string(prev->second.line) + ")");
        } else {
          seen.emplace(name, Reader::pos_of(it->second));
          tc.name = name;
        }
      }
    }
    if (auto it = m->find("ca"); it != m->end()) r.file(it->second, tc.ca);
    if (auto it = m->find("crl"); it != m->end()) {
      const Entry& c = it->second;
      if (c.value.IsScalar() && !c.value.IsNull()) {
        FileRef f;
        if (r.file(c, f)) tc.crl.push_back(f);
      } else if (c.value.IsSequence()) {
        std::size_t j = 0;
        for (const YAML::Node& f : c.value) {
          FileRef ref;
          if (r.file(Entry{f, f, c.path + "[" + std::to_string(j++) + "]"}, ref))
            tc.crl.push_back(ref);
        }
      } else {
        r.error(c, c.path + ": expected a file name or a list of file names" +
                       Reader::describe(c.value));
      }
    }
    out.push_back(std::move(tc));
  }
}

void read_tls(Reader& r, const Entry& e, TlsSettings& tls) {
  auto m = r.mapping(e, {"cert", "key", "min_version", "client_cert", "trust",
                         "session_ticket_lifetime_s", "session_cache_size"});
  if (!m) return;
  r.require(*m, e, {"cert", "key", "trust"});
  if (auto it = m->find("cert"); it != m->end()) r.file(it->second, tls.cert);
  if (auto it = m->find("key"); it != m->end()) r.file(it->second, tls.key);
  if (auto it = m->find("min_version"); it != m->end()) {
    const Entry& v = it->second;
    if (v.value.IsScalar() && v.value.Scalar() == "1.2")
      tls.min_version = 0x0303;
    else if (v.value.IsScalar() && v.value.Scalar() == "1.3")
      tls.min_version = 0x0304;
    else
      r.error(v, v.path + ": expected \"1.2\" or \"1.3\"" + Reader::describe(v.value));
  }
  if (auto it = m->find("client_cert"); it != m->end()) {
    const Entry& v = it->second;
    if (v.value.IsScalar() && v.value.Scalar() == "require")
      tls.client_cert = ClientCertMode::kRequire;
    else if (v.value.IsScalar() && v.value.Scalar() == "request")
      tls.client_cert = ClientCertMode::kRequest;
    else
      r.error(v, v.path + ": expected require or request" + Reader::describe(v.value));
  }
  if (auto it = m->find("session_ticket_lifetime_s"); it != m->end())
    r.integer(it->second, 0, kMaxTicketLifetimeS, tls.session_ticket_lifetime_s);
  if (auto it = m->find("session_cache_size"); it != m->end())
    r.integer(it->second, 1, kMaxSessionCacheSize, tls.session_cache_size);
  if (auto it = m->find("trust"); it != m->end()) read_trust(r, it->second, tls.trust);
}

void read_upstream(Reader& r, const Entry& e, UpstreamSettings& up) {
  auto m = r.mapping(
      e, {"url", "ca", "connect_timeout_ms", "response_timeout_ms", "max_idle_connections"});
  if (!m) return;
  r.require(*m, e, {"url"});
  std::optional<Entry> url_entry;
  if (auto it = m->find("url"); it != m->end()) {
    std::string s;
    if (r.string(it->second, s)) {
      UpstreamUrl u;
      std::string why;
      if (!parse_upstream_url(s, u, why)) {
        r.error(it->second, it->second.path + ": invalid url " + quote(s) + ": " + why);
      } else {
        up.url = s;
        up.https = u.https;
        up.host = u.host;
        up.port = u.port;
        up.base_path = u.base_path;
        url_entry = it->second;
      }
    }
  }
  if (auto it = m->find("ca"); it != m->end()) {
    if (r.file(it->second, up.ca) && url_entry && !up.https)
      r.error(it->second,
              it->second.path + ": only used with an https url, but url is " + quote(up.url));
  }
  if (auto it = m->find("connect_timeout_ms"); it != m->end())
    r.integer(it->second, 1, kMaxMillis, up.connect_timeout_ms);
  if (auto it = m->find("response_timeout_ms"); it != m->end())
    r.integer(it->second, 1, kMaxMillis, up.response_timeout_ms);
  if (auto it = m->find("max_idle_connections"); it != m->end())
    r.integer(it->second, 0, 100000, up.max_idle_connections);
}

void read_identity_headers(Reader& r, const Entry& e, IdentityHeaderNames& h) {
  auto m = r.mapping(e, {"subject", "issuer", "san_uri", "hipaa", "fingerprint", "trust", "rule",
                         "xfcc", "rfc9440"});
  if (!m) return;
  struct Name {
    const char* key;
    std::string* target;
  };
  const Name names[] = {
      {"subject", &h.subject}, {"issuer", &h.issuer},           {"san_uri", &h.san_uri},
      {"hipaa", &h.hipaa},     {"fingerprint", &h.fingerprint}, {"trust", &h.trust},
      {"rule", &h.rule}};
  for (const Name& n : names) {
    auto it = m->find(n.key);
    if (it == m->end()) continue;
    std::string s;
    if (!r.string(it->second, s)) continue;
    bool token = true;
    for (char c : s) token = token && is_tchar(c);
    if (!token) {
      r.error(it->second, it->second.path + ": " + quote(s) + " is not a valid HTTP header name");
      continue;
    }
    bool reserved = false;
    for (const char* res : kReservedHeaders) reserved = reserved || lower(s) == res;
    if (reserved) {
      r.error(it->second, it->second.path + ": " + quote(s) +
                              " is a header the proxy handles itself; choose another name");
      continue;
    }
    *n.target = s;
  }
  // Uniqueness over the final names (defaults included), reported at the later key written.
  std::map<std::string, const char*> seen;
  for (const Name& n : names) {
    const std::string l = lower(*n.target);
    auto [prev, inserted] = seen.emplace(l, n.key);
    if (inserted) continue;
    auto it = m->find(n.key);
    if (it == m->end()) it = m->find(prev->second);
    r.error(it->second, "identity_headers." + std::string(n.key) + ": header name " +
                            quote(*n.target) + " is already used by identity_headers." +
                            prev->second);
  }
  if (auto it = m->find("xfcc"); it != m->end()) r.boolean(it->second, h.xfcc);
  if (auto it = m->find("rfc9440"); it != m->end()) r.boolean(it->second, h.rfc9440);
}

void read_limits(Reader& r, const Entry& e, Limits& l) {
  auto m = r.mapping(e, {"max_header_bytes", "max_body_bytes", "idle_timeout_ms",
                         "header_timeout_ms", "max_connections"});
  if (!m) return;
  if (auto it = m->find("max_header_bytes"); it != m->end())
    r.integer(it->second, 1, kMaxHeaderBytes, l.max_header_bytes);
  if (auto it = m->find("max_body_bytes"); it != m->end())
    r.integer(it->second, 1, kMaxBytes, l.max_body_bytes);
  if (auto it = m->find("idle_timeout_ms"); it != m->end())
    r.integer(it->second, 1, kMaxMillis, l.idle_timeout_ms);
  if (auto it = m->find("header_timeout_ms"); it != m->end())
    r.integer(it->second, 1, kMaxMillis, l.header_timeout_ms);
  if (auto it = m->find("max_connections"); it != m->end())
    r.integer(it->second, 1, 10000000, l.max_connections);
}

void read_fhir_base(Reader& r, const Entry& e, std::string& out) {
  std::string s;
  if (!r.string(e, s)) return;
  std::string why;
  if (!valid_fhir_base(s, why)) {
    r.error(e, e.path + ": invalid path " + quote(s) + ": " + why);
    return;
  }
  out = s;
}

void read_document(Reader& r, const YAML::Node& root, ProxyConfig& c) {
  const Entry doc{root, root, ""};
  if (!root.IsDefined() || root.IsNull()) {
    r.error(SourcePos{},
            "the file is empty: expected a mapping with listen, tls, upstream, policy");
    return;
  }
  auto m = r.mapping(doc, {"listen", "workers", "drain_timeout_ms", "tls", "upstream", "fhir_base",
                           "policy", "identity_headers", "limits", "metrics", "audit", "watch"});
  if (!m) return;
  r.require(*m, doc, {"listen", "tls", "upstream", "policy"});
  if (auto it = m->find("listen"); it != m->end())
    read_listen(r, it->second, c.listen, c.listen_host, c.listen_port);
  if (auto it = m->find("workers"); it != m->end())
    r.integer(it->second, 1, kMaxWorkers, c.workers);
  if (auto it = m->find("drain_timeout_ms"); it != m->end())
    r.integer(it->second, 0, kMaxMillis, c.drain_timeout_ms);
  if (auto it = m->find("tls"); it != m->end()) read_tls(r, it->second, c.tls);
  if (auto it = m->find("upstream"); it != m->end()) read_upstream(r, it->second, c.upstream);
  if (auto it = m->find("fhir_base"); it != m->end()) read_fhir_base(r, it->second, c.fhir_base);
  if (auto it = m->find("policy"); it != m->end()) r.file(it->second, c.policy);
  if (auto it = m->find("identity_headers"); it != m->end())
    read_identity_headers(r, it->second, c.identity_headers);
  if (auto it = m->find("limits"); it != m->end()) read_limits(r, it->second, c.limits);
  if (auto it = m->find("metrics"); it != m->end()) {
    if (auto mm = r.mapping(it->second, {"listen"})) {
      if (auto l = mm->find("listen"); l != mm->end()) {
        std::string host;
        std::uint16_t port = 0;
        read_listen(r, l->second, c.metrics.listen, host, port);
      }
    }
  }
  if (auto it = m->find("watch"); it != m->end()) r.boolean(it->second, c.watch);
  if (auto it = m->find("audit"); it != m->end()) {
    if (auto am = r.mapping(it->second, {"path", "format", "on_failure"})) {
      if (auto p = am->find("path"); p != am->end()) r.string(p->second, c.audit.path);
      if (auto f = am->find("format"); f != am->end()) {
        const Entry& v = f->second;
        if (v.value.IsScalar() && v.value.Scalar() == "json")
          c.audit.format = AuditFormatSetting::kJson;
        else if (v.value.IsScalar() && v.value.Scalar() == "fhir")
          c.audit.format = AuditFormatSetting::kFhir;
        else
          r.error(v, v.path + ": expected json or fhir" + Reader::describe(v.value));
      }
      if (auto f = am->find("on_failure"); f != am->end()) {
        const Entry& v = f->second;
        if (v.value.IsScalar() && v.value.Scalar() == "deny")
          c.audit.on_failure = AuditFailureMode::kDeny;
        else if (v.value.IsScalar() && v.value.Scalar() == "continue")
          c.audit.on_failure = AuditFailureMode::kContinue;
        else
          r.error(v, v.path + ": expected deny or continue" + Reader::describe(v.value));
      }
    }
  }
}

}  // namespace

ProxyConfig load_proxy_config(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int err = errno;
    throw policy::ConfigError(
        Diagnostic{path, 1, 1, "cannot read the file: " + std::string(std::strerror(err))});
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw policy::ConfigError(Diagnostic{path, 1, 1, "cannot read the file"});
  return load_proxy_config_text(text.str(), path);
}

ProxyConfig load_proxy_config_text(const std::string& text, const std::string& name) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::ParserException& e) {
    const SourcePos p =
        e.mark.line < 0 ? SourcePos{} : SourcePos{e.mark.line + 1, e.mark.column + 1};
    throw policy::ConfigError(Diagnostic{name, p.line, p.column, "invalid YAML: " + e.msg});
  } catch (const YAML::Exception& e) {
    throw policy::ConfigError(Diagnostic{name, 1, 1, "invalid YAML: " + e.msg});
  }
  Reader r(name);
  ProxyConfig c;
  c.file = name;
  try {
    read_document(r, root, c);
  } catch (const YAML::Exception& e) {
    // yaml-cpp reports some problems (e.g. bad conversions) by throwing; never let them escape raw.
    r.error(
        SourcePos{e.mark.line < 0 ? 1 : e.mark.line + 1, e.mark.column < 0 ? 1 : e.mark.column + 1},
        e.msg);
  }
  if (!r.diagnostics().empty()) {
    std::stable_sort(r.diagnostics().begin(), r.diagnostics().end(),
                     [](const Diagnostic& a, const Diagnostic& b) {
                       return a.line != b.line ? a.line < b.line : a.column < b.column;
                     });
    throw policy::ConfigError(std::move(r.diagnostics()));
  }
  if (c.workers == 0) {
    const unsigned n = std::thread::hardware_concurrency();
    c.workers = n == 0 ? 1 : static_cast<int>(std::min<unsigned>(n, kMaxWorkers));
  }
  return c;
}

}  // namespace fmp::proxy
