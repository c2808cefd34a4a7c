// Validation of every file proxy.yaml names: what `check` adds on top of load_proxy_config.
#pragma once

#include <ctime>
#include <memory>
#include <vector>

#include "policy/config_error.h"
#include "policy/policy.h"
#include "proxy/config/proxy_config.h"
#include "proxy/tls/trust_store.h"

namespace fmp::proxy {

/// Days before a certificate's notAfter from which `check` warns.
inline constexpr int kExpiryWarningDays = 30;

/// Everything learned while checking the files of one configuration.
struct FileReport {
  std::vector<policy::Diagnostic> errors;        ///< the configuration must not be used
  std::vector<policy::Diagnostic> warnings;      ///< usable, but an operator should act
  policy::PolicyPtr policy;                      ///< set when the policy loaded
  std::shared_ptr<const tls::TrustStore> trust;  ///< set when every CA/CRL file loaded
};

/// Opens and checks every file `config` names, at time `now`:
/// - tls.cert: readable PEM chain (leaf first); each certificate expired -> error, not yet valid or
///   expiring within kExpiryWarningDays -> warning;
/// - tls.key: readable unencrypted PEM private key matching the leaf's public key;
/// - tls.trust: through tls::TrustStore::load; a CRL past its nextUpdate -> error (the proxy would
///   refuse every client of that community); a CA of a community with CRLs that issued none of them
///   -> error (same reason); an expired or expiring CA -> warning;
/// - upstream.ca: readable PEM with at least one certificate;
/// - policy: see load_configured_policy; its own errors keep their own FILE:LINE:COL.
/// Problems with a file are positioned at the proxy.yaml scalar that names it. Never throws
/// ConfigError.
FileReport inspect_files(const ProxyConfig& config, std::time_t now);

/// inspect_files without the loaded objects: returns the errors, appends the warnings.
std::vector<policy::Diagnostic> validate_files(const ProxyConfig& config,
                                               std::vector<policy::Diagnostic>& warnings,
                                               std::time_t now);

/// Loads the policy `config.policy` names. A path that does not exist or cannot be read is reported
/// at the proxy.yaml line naming it; errors inside the policy files keep their own positions.
/// Throws policy::ConfigError.
policy::PolicyPtr load_configured_policy(const ProxyConfig& config);

}  // namespace fmp::proxy
