#include "proxy/http/identity_headers.h"

#include <algorithm>
#include <cctype>

#include "proxy/http/message_parser.h"

namespace fmp::proxy::http {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

/// Lowercase with '_' as '-': the form reserved names are compared in.
std::string folded(std::string_view s) {
  std::string out = lower(s);
  std::replace(out.begin(), out.end(), '_', '-');
  return out;
}

void add_line(std::string& out, std::string_view name, std::string_view value) {
  if (value.empty()) return;
  out.append(name);
  out.append(": ");
  out.append(value);
  out.append("\r\n");
}

std::string joined(const std::vector<std::string>& values) {
  std::string out;
  for (const auto& v : values) {
    if (v.empty()) continue;
    if (!out.empty()) out += ", ";
    out += header_safe(v, true);
  }
  return out;
}

/// The base64 body of a PEM block, without armour or line breaks (the DER in base64).
std::string pem_base64(std::string_view pem) {
  std::string out;
  const auto begin = pem.find("-----BEGIN");
  if (begin == std::string_view::npos) return out;
  auto body = pem.find('\n', begin);
  const auto end = pem.find("-----END", body);
  if (body == std::string_view::npos || end == std::string_view::npos) return out;
  for (std::size_t i = body + 1; i < end; ++i) {
    const unsigned char c = static_cast<unsigned char>(pem[i]);
    if (std::isalnum(c) || c == '+' || c == '/' || c == '=') out.push_back(static_cast<char>(c));
  }
  return out;
}

/// URL-encoding as Envoy uses for the Cert field (RFC 3986 unreserved kept).
std::string url_encode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size() * 3 / 2);
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

/// A quoted XFCC value: '"' and '\' escaped, then made header-safe.
std::string xfcc_quoted(std::string_view s) {
  std::string q = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') q.push_back('\\');
    q.push_back(c);
  }
  q.push_back('"');
  return header_safe(q, false);
}

}  // namespace

ReservedHeaders::ReservedHeaders(const IdentityHeaderNames& n) {
  for (const std::string* name :
       {&n.subject, &n.issuer, &n.san_uri, &n.hipaa, &n.fingerprint, &n.trust, &n.rule})
    lower_.push_back(folded(*name));
  // The default names stay reserved when the operator renames them: a FHIR server configured for
  // the defaults must never read a client's copy of them either.
  const IdentityHeaderNames defaults;
  for (const std::string* name :
       {&defaults.subject, &defaults.issuer, &defaults.san_uri, &defaults.hipaa,
        &defaults.fingerprint, &defaults.trust, &defaults.rule})
    lower_.push_back(folded(*name));
  for (const char* fixed :
       {"x-forwarded-client-cert", "client-cert", "client-cert-chain", "x-forwarded-for",
        "x-forwarded-proto", "x-forwarded-host", "forwarded"})
    lower_.emplace_back(fixed);
  std::sort(lower_.begin(), lower_.end());
  lower_.erase(std::unique(lower_.begin(), lower_.end()), lower_.end());
}

bool ReservedHeaders::contains(std::string_view name) const {
  // '_' counts as '-': CGI/WSGI-style servers map both to the same variable, so
  // "X_Client_Subject_DN" would otherwise reach the server as the identity header.
  for (const auto& r : lower_) {
    if (r.size() != name.size()) continue;
    bool same = true;
    for (std::size_t i = 0; i < r.size() && same; ++i) {
      char c = name[i];
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
      if (c == '_') c = '-';
      same = c == r[i];
    }
    if (same) return true;
  }
  return false;
}

std::string header_safe(std::string_view value, bool list_item) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(value.size());
  for (unsigned char c : value) {
    const bool escape = c < 0x20 || c >= 0x7f || (list_item && c == ',');
    if (escape) {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  return out;
}

std::string identity_header_block(const policy::Identity& id, const IdentityHeaderNames& names) {
  std::string out;
  if (!id.present) return out;
  add_line(out, names.subject, header_safe(id.subject.rfc4514, false));
  add_line(out, names.issuer, header_safe(id.issuer.rfc4514, false));
  add_line(out, names.san_uri, joined(id.san_uri));
  add_line(out, names.hipaa, joined(id.hipaa));
  add_line(out, names.fingerprint, header_safe(id.fingerprint_sha256, false));
  add_line(out, names.trust, header_safe(id.trust, false));
  if (names.xfcc) {
    std::string x = "Hash=" + header_safe(id.fingerprint_sha256, false);
    if (!id.leaf_pem.empty()) x += ";Cert=\"" + url_encode(id.leaf_pem) + "\"";
    x += ";Subject=" + xfcc_quoted(id.subject.rfc4514);
    // Quoted like Subject, so a SAN holding ';', '=' or ',' cannot add XFCC fields or elements.
    for (const auto& u : id.san_uri) x += ";URI=" + xfcc_quoted(u);
    for (const auto& d : id.san_dns) x += ";DNS=" + xfcc_quoted(d);
    add_line(out, "X-Forwarded-Client-Cert", x);
  }
  if (names.rfc9440) {
    const std::string leaf = pem_base64(id.leaf_pem);
    if (!leaf.empty()) add_line(out, "Client-Cert", ":" + leaf + ":");
    std::string chain;
    for (const auto& der : id.chain_der_b64) {
      if (!chain.empty()) chain += ", ";
      chain += ":" + der + ":";
    }
    add_line(out, "Client-Cert-Chain", chain);
  }
  return out;
}

}  // namespace fmp::proxy::http
