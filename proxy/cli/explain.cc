// Placeholder until the explain command lands; replaced by its implementation.
#include <cstdio>

#include "proxy/cli/commands.h"

namespace fmp::proxy::cli {

int explain_command(const std::vector<std::string>&) {
  std::fputs("fhir-mtls-proxy: 'explain' is not built yet\n", stderr);
  return 1;
}

}  // namespace fmp::proxy::cli
