// The result of a run, as text for people and as one JSON line for run.sh.
#pragma once

#include <string>

#include "bench/loadgen/load_generator.h"

namespace fmp::bench {

/// Human-readable summary (several lines).
std::string text_report(const Options& options, const LoadGenerator& gen);

/// One JSON object on one line (no trailing newline). Times: latency in milliseconds, CPU in
/// seconds, proxy CPU per request in microseconds.
std::string json_report(const Options& options, const LoadGenerator& gen);

}  // namespace fmp::bench
