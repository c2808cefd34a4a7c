// The subcommands of fhir-mtls-proxy. Each returns the process exit status.
#pragma once

#include <string>
#include <vector>

namespace fmp::proxy::cli {

/// `run --config FILE`: serves until SIGTERM/SIGINT. 0 after a clean stop, 1 on invalid config.
int run_command(const std::vector<std::string>& args);
/// `check --config FILE`: 0 valid, 1 invalid (each error on stderr as FILE:LINE:COL: message).
int check_command(const std::vector<std::string>& args);
/// `explain --config FILE --cert PEM [--method M] --path P [--body FILE] [--json]`: 0 allow, 2
/// deny, 1 error.
int explain_command(const std::vector<std::string>& args);

}  // namespace fmp::proxy::cli
