// Placeholder until the run command lands; replaced by its implementation.
#include <cstdio>

#include "proxy/cli/commands.h"

namespace fmp::proxy::cli {

int run_command(const std::vector<std::string>&) {
  std::fputs("fhir-mtls-proxy: 'run' is not built yet\n", stderr);
  return 1;
}

}  // namespace fmp::proxy::cli
