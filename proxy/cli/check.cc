// `check --config FILE`: validates proxy.yaml, every file it names and the policy, like `nginx -t`.
#include <cstdio>
#include <ctime>

#include "proxy/cli/commands.h"
#include "proxy/cli/options.h"
#include "proxy/config/proxy_config.h"
#include "proxy/config/validate_files.h"

namespace fmp::proxy::cli {
namespace {

constexpr const char* kUsage = "usage: fhir-mtls-proxy check --config FILE\n";

void print(const policy::Diagnostic& d, const char* kind) {
  std::fprintf(stderr, "%s:%d:%d: %s%s\n", d.file.c_str(), d.line, d.column, kind,
               d.message.c_str());
}

}  // namespace

int check_command(const std::vector<std::string>& args) {
  std::string error;
  const auto options = parse_options(args, {"--config"}, {}, error);
  if (!options || !options->get("--config")) {
    std::fprintf(stderr, "fhir-mtls-proxy check: %s\n%s",
                 options ? "missing --config FILE" : error.c_str(), kUsage);
    return 1;
  }
  const std::string file = *options->get("--config");
  ProxyConfig config;
  try {
    config = load_proxy_config(file);
  } catch (const policy::ConfigError& e) {
    for (const auto& d : e.diagnostics()) print(d, "");
    return 1;
  }
  const FileReport report = inspect_files(config, std::time(nullptr));
  for (const auto& d : report.errors) print(d, "");
  for (const auto& d : report.warnings) print(d, "warning: ");
  if (!report.errors.empty()) return 1;
  const std::size_t communities = config.tls.trust.size();
  const std::size_t rules = report.policy ? report.policy->rule_names().size() : 0;
  std::printf("%s: ok (%zu trust %s, %zu policy %s)\n", file.c_str(), communities,
              communities == 1 ? "community" : "communities", rules, rules == 1 ? "rule" : "rules");
  return 0;
}

}  // namespace fmp::proxy::cli
