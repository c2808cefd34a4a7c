// Fuzz driver: proxy.yaml (fmp::proxy::load_proxy_config_text).
//
// Invariants: loading either returns a configuration or throws policy::ConfigError (any other
// exception escaping, a crash or a sanitizer report is a finding); a configuration that loads has
// what the server relies on without re-checking: a listen address with a port, at least one
// worker, at least one trust community with a CA, an upstream host and port, and a policy path.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "policy/config_error.h"
#include "proxy/config/proxy_config.h"

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  fmp::proxy::ProxyConfig c;
  try {
    c = fmp::proxy::load_proxy_config_text(text, "proxy.yaml");
  } catch (const fmp::policy::ConfigError& e) {
    check(!e.diagnostics().empty());
    return 0;
  }
  check(!c.listen.empty() && c.listen_port != 0);
  check(c.workers >= 1);
  check(!c.tls.trust.empty());
  for (const auto& t : c.tls.trust) check(!t.name.empty() && !t.ca.path.empty());
  check(!c.tls.cert.path.empty() && !c.tls.key.path.empty());
  check(!c.upstream.host.empty() && c.upstream.port != 0);
  check(!c.policy.path.empty());
  return 0;
}
