#include "bench/loadgen/run_stats.h"

namespace fmp::bench {

void RunStats::count_error(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kConnect:
      ++errors_connect;
      break;
    case ErrorKind::kTls:
      ++errors_tls;
      break;
    case ErrorKind::kRead:
      ++errors_read;
      break;
    case ErrorKind::kParse:
      ++errors_parse;
      break;
    case ErrorKind::kTimeout:
      ++errors_timeout;
      break;
    case ErrorKind::kClosedIdle:
      ++errors_closed_idle;
      break;
  }
}

}  // namespace fmp::bench
