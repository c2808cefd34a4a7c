#include "proxy/config/validate_files.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <system_error>

#include "policy/policy_loader.h"
#include "policy/ssl_ptr.h"
#include "policy/x509_identity.h"
#include "proxy/tls/asn1_time.h"
#include "proxy/tls/file_bytes.h"
#include "proxy/tls/openssl_errors.h"

namespace fmp::proxy {
namespace {

using policy::Diagnostic;

constexpr std::time_t kDay = 24 * 3600;

std::string quoted(const std::string& s) {
  return "\"" + s + "\"";
}

std::string utc(std::time_t t) {
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string subject_of(X509* cert) {
  ssl::BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio) return "?";
  X509_NAME_print_ex(bio.get(), X509_get_subject_name(cert), 0, XN_FLAG_RFC2253);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return n > 0 ? std::string(data, static_cast<std::size_t>(n)) : std::string();
}

std::string in_days(std::time_t seconds) {
  const std::time_t days = seconds / kDay;
  if (days == 0) return "in less than a day";
  return "in " + std::to_string(days) + (days == 1 ? " day" : " days");
}

class Collector {
 public:
  Collector(const ProxyConfig& c, FileReport& r) : file_(c.file), report_(r) {}
  void error(const SourcePos& p, std::string m) {
    report_.errors.push_back(Diagnostic{file_, p.line, p.column, std::move(m)});
  }
  void warning(const SourcePos& p, std::string m) {
    report_.warnings.push_back(Diagnostic{file_, p.line, p.column, std::move(m)});
  }

 private:
  const std::string& file_;
  FileReport& report_;
};

/// The PEM certificates of `ref`, or empty after reporting why at `ref`'s position.
std::vector<ssl::X509Ptr> read_certs(Collector& out, const FileRef& ref, const char* what) {
  std::string why;
  if (!tls::read_file_bytes(ref.path, why)) {
    out.error(ref.pos, std::string(what) + ": cannot read " + quoted(ref.path) + ": " + why);
    return {};
  }
  try {
    return policy::read_pem_certificates(ref.path);
  } catch (const std::exception& e) {
    out.error(ref.pos, std::string(what) + ": " + e.what());
    return {};
  }
}

/// Validity window of one certificate. `expired_is_error` for certificates the proxy presents
/// itself.
void check_validity(Collector& out, const FileRef& ref, X509* cert, const std::string& label,
                    std::time_t now, bool expired_is_error) {
  const std::time_t not_after = tls::asn1_to_time_t(X509_get0_notAfter(cert));
  const std::time_t not_before = tls::asn1_to_time_t(X509_get0_notBefore(cert));
  const std::string who = label + " " + quoted(subject_of(cert)) + " in " + quoted(ref.path);
  if (not_after != 0 && not_after < now) {
    const std::string m = who + " expired on " + utc(not_after);
    if (expired_is_error)
      out.error(ref.pos, m);
    else
      out.warning(ref.pos, m);
  } else if (not_before != 0 && not_before > now) {
    out.warning(ref.pos, who + " is not valid before " + utc(not_before));
  } else if (not_after != 0 && not_after - now < kExpiryWarningDays * kDay) {
    out.warning(ref.pos,
                who + " expires " + in_days(not_after - now) + " (" + utc(not_after) + ")");
  }
}

int no_password(char*, int, int, void*) {
  return -1;
}  // never prompt on the terminal

void check_server_cert(Collector& out, const ProxyConfig& c, std::time_t now) {
  const auto chain = read_certs(out, c.tls.cert, "tls.cert: server certificate chain");
  for (std::size_t i = 0; i < chain.size(); ++i)
    check_validity(out, c.tls.cert, chain[i].get(),
                   i == 0 ? "tls.cert: server certificate"
                          : "tls.cert: chain certificate " + std::to_string(i + 1),
                   now, true);

  std::string why;
  const auto bytes = tls::read_file_bytes(c.tls.key.path, why);
  if (!bytes) {
    out.error(c.tls.key.pos, "tls.key: cannot read " + quoted(c.tls.key.path) + ": " + why);
    return;
  }
  ERR_clear_error();
  ssl::BioPtr bio(BIO_new_mem_buf(bytes->data(), static_cast<int>(bytes->size())));
  ssl::EvpPkeyPtr key(bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, no_password, nullptr)
                          : nullptr);
  if (!key) {
    const std::string err = tls::drain_openssl_errors();
    out.error(c.tls.key.pos, "tls.key: cannot parse a PEM private key in " +
                                 quoted(c.tls.key.path) + " (encrypted keys are not supported)" +
                                 (err.empty() ? "" : ": " + err));
    return;
  }
  if (chain.empty()) return;
  if (EVP_PKEY_eq(X509_get0_pubkey(chain.front().get()), key.get()) == 1) return;
  std::string hint;
  for (std::size_t i = 1; i < chain.size(); ++i)
    if (EVP_PKEY_eq(X509_get0_pubkey(chain[i].get()), key.get()) == 1)
      hint = " (it matches certificate " + std::to_string(i + 1) +
             " of the chain: the server certificate must come first)";
  ERR_clear_error();
  out.error(c.tls.key.pos, "tls.key: the private key in " + quoted(c.tls.key.path) +
                               " does not match the certificate " +
                               quoted(subject_of(chain.front().get())) + " in " +
                               quoted(c.tls.cert.path) + hint);
}

/// Every CRL of a PEM or DER file; empty when unparseable (TrustStore::load reports that).
std::vector<ssl::X509CrlPtr> read_crls(const std::string& path) {
  std::vector<ssl::X509CrlPtr> out;
  std::string why;
  const auto bytes = tls::read_file_bytes(path, why);
  if (!bytes) return out;
  ssl::BioPtr bio(BIO_new_mem_buf(bytes->data(), static_cast<int>(bytes->size())));
  while (bio) {
    X509_CRL* crl = PEM_read_bio_X509_CRL(bio.get(), nullptr, nullptr, nullptr);
    if (crl == nullptr) break;
    out.emplace_back(crl);
  }
  if (out.empty()) {
    const auto* p = reinterpret_cast<const unsigned char*>(bytes->data());
    if (X509_CRL* crl = d2i_X509_CRL(nullptr, &p, static_cast<long>(bytes->size())))
      out.emplace_back(crl);
  }
  ERR_clear_error();
  return out;
}

/// What TrustStore::load does not judge: CA validity windows, stale CRLs, CAs without a CRL.
void check_trust_dates(Collector& out, const TrustCommunity& tc, std::time_t now) {
  std::vector<ssl::X509Ptr> cas;
  try {
    cas = policy::read_pem_certificates(tc.ca.path);
  } catch (const std::exception&) {
    return;  // reported by TrustStore::load
  }
  for (const auto& ca : cas)
    check_validity(out, tc.ca, ca.get(), "tls.trust " + quoted(tc.name) + ": CA certificate", now,
                   false);
  if (tc.crl.empty()) return;
  std::vector<X509_CRL*> all;
  std::vector<std::vector<ssl::X509CrlPtr>> per_file;
  bool all_read = true;  // an unreadable CRL file is TrustStore::load's to report, once
  for (const FileRef& ref : tc.crl) {
    per_file.push_back(read_crls(ref.path));
    all_read = all_read && !per_file.back().empty();
    for (const auto& crl : per_file.back()) {
      all.push_back(crl.get());
      const std::time_t next = tls::asn1_to_time_t(X509_CRL_get0_nextUpdate(crl.get()));
      if (next != 0 && next < now)
        out.error(ref.pos, "tls.trust " + quoted(tc.name) + ": CRL " + quoted(ref.path) +
                               " is past its next update (" + utc(next) +
                               "): every client of this community would be refused until it is "
                               "refreshed");
    }
  }
  if (!all_read) return;
  for (const auto& ca : cas) {
    bool covered = false;
    for (X509_CRL* crl : all)
      covered =
          covered || X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(ca.get())) == 0;
    if (!covered)
      out.error(tc.crl.front().pos,
                "tls.trust " + quoted(tc.name) + ": no CRL issued by CA " +
                    quoted(subject_of(ca.get())) +
                    " although the community lists CRLs: every chain through it would be refused");
  }
}

void check_upstream_ca(Collector& out, const ProxyConfig& c, std::time_t now) {
  if (c.upstream.ca.path.empty()) return;
  const auto cas = read_certs(out, c.upstream.ca, "upstream.ca");
  for (const auto& ca : cas)
    check_validity(out, c.upstream.ca, ca.get(), "upstream.ca: CA certificate", now, false);
}

}  // namespace

policy::PolicyPtr load_configured_policy(const ProxyConfig& config) {
  namespace fs = std::filesystem;
  const FileRef& ref = config.policy;
  auto fail = [&](const std::string& why) {
    throw policy::ConfigError(Diagnostic{config.file, ref.pos.line, ref.pos.column,
                                         "policy: cannot read " + quoted(ref.path) + ": " + why});
  };
  std::error_code ec;
  const fs::file_status st = fs::status(ref.path, ec);
  if (ec) fail(ec.message());
  if (fs::is_directory(st)) {
    fs::directory_iterator it(ref.path, ec);
    if (ec) fail(ec.message());
  } else if (fs::is_regular_file(st)) {
    std::ifstream in(ref.path);
    if (!in) fail(std::error_code(errno, std::generic_category()).message());
  } else {
    fail("not a regular file or a directory");
  }
  return policy::load_policy(ref.path);
}

FileReport inspect_files(const ProxyConfig& config, std::time_t now) {
  FileReport report;
  Collector out(config, report);
  check_server_cert(out, config, now);
  try {
    report.trust = tls::TrustStore::load(config.tls.trust, config.file);
  } catch (const policy::ConfigError& e) {
    report.errors.insert(report.errors.end(), e.diagnostics().begin(), e.diagnostics().end());
  }
  for (const TrustCommunity& tc : config.tls.trust) check_trust_dates(out, tc, now);
  check_upstream_ca(out, config, now);
  try {
    report.policy = load_configured_policy(config);
  } catch (const policy::ConfigError& e) {
    report.errors.insert(report.errors.end(), e.diagnostics().begin(), e.diagnostics().end());
  }
  return report;
}

std::vector<Diagnostic> validate_files(const ProxyConfig& config, std::vector<Diagnostic>& warnings,
                                       std::time_t now) {
  FileReport r = inspect_files(config, now);
  warnings.insert(warnings.end(), r.warnings.begin(), r.warnings.end());
  return std::move(r.errors);
}

}  // namespace fmp::proxy
