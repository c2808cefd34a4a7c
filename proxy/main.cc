// fhir-mtls-proxy: subcommand dispatch only; every command lives in proxy/cli/.
#include <cstdio>
#include <string>
#include <vector>

#include "proxy/cli/commands.h"

namespace {

constexpr const char* kUsage =
    "usage: fhir-mtls-proxy run --config FILE\n"
    "       fhir-mtls-proxy check --config FILE\n"
    "       fhir-mtls-proxy explain --config FILE --cert CLIENT.pem [--method M] --path P\n"
    "                               [--body FILE] [--json]\n"
    "       fhir-mtls-proxy --version\n";

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) {
    std::fputs(kUsage, stderr);
    return 1;
  }
  const std::string command = args.front();
  args.erase(args.begin());
  if (command == "--version" || command == "version") {
    std::printf("fhir-mtls-proxy %s\n", FMP_VERSION);
    return 0;
  }
  if (command == "--help" || command == "-h" || command == "help") {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (command == "run") return fmp::proxy::cli::run_command(args);
  if (command == "check") return fmp::proxy::cli::check_command(args);
  if (command == "explain") return fmp::proxy::cli::explain_command(args);
  std::fprintf(stderr, "fhir-mtls-proxy: unknown command '%s'\n%s", command.c_str(), kUsage);
  return 1;
}
