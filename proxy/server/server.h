// The `run` command's process: loads the configuration, starts the workers and the metrics
// endpoint, and turns signals into reloads (SIGHUP), audit reopening (SIGUSR1) and a graceful stop
// (SIGTERM/SIGINT).
#pragma once

#include <string>

#include "proxy/log/logger.h"

namespace fmp::proxy::server {

/// Serves until SIGTERM/SIGINT. Returns the exit status: 0 after a clean stop, 1 when the
/// configuration is invalid or the listener cannot be bound (errors printed as FILE:LINE:COL:
/// message).
int serve(const std::string& config_path, Logger& log);

}  // namespace fmp::proxy::server
