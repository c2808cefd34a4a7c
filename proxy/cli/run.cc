// `run --config FILE`: serves until SIGTERM/SIGINT.
#include <cstdio>

#include "proxy/cli/commands.h"
#include "proxy/cli/options.h"
#include "proxy/log/logger.h"
#include "proxy/server/server.h"

namespace fmp::proxy::cli {

int run_command(const std::vector<std::string>& args) {
  std::string error;
  const auto options = parse_options(args, {"--config"}, {}, error);
  if (!options || !options->get("--config")) {
    std::fprintf(stderr, "fhir-mtls-proxy run: %s\nusage: fhir-mtls-proxy run --config FILE\n",
                 options ? "missing --config FILE" : error.c_str());
    return 1;
  }
  Logger log(stderr);
  return server::serve(*options->get("--config"), log);
}

}  // namespace fmp::proxy::cli
