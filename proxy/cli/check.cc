// Placeholder until the check command lands; replaced by its implementation.
#include <cstdio>

#include "proxy/cli/commands.h"

namespace fmp::proxy::cli {

int check_command(const std::vector<std::string>&) {
  std::fputs("fhir-mtls-proxy: 'check' is not built yet\n", stderr);
  return 1;
}

}  // namespace fmp::proxy::cli
