// fmp-loadgen: HTTP/1.1 load generator for the mTLS benchmark (bench/run.sh). See --help.
#include <signal.h>

#include <cstdio>
#include <exception>

#include "bench/loadgen/load_generator.h"
#include "bench/loadgen/options.h"
#include "bench/loadgen/report.h"

int main(int argc, char** argv) {
  fmp::bench::Options options;
  try {
    if (!fmp::bench::parse_options(argc, argv, options)) return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fmp-loadgen: %s\n%s", e.what(), fmp::bench::usage());
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);  // a server closing mid-write is an error to count, not a crash
  try {
    fmp::bench::LoadGenerator gen(options);
    gen.run();
    const std::string report = options.json ? fmp::bench::json_report(options, gen) + "\n"
                                            : fmp::bench::text_report(options, gen);
    std::fputs(report.c_str(), stdout);
    return gen.stats().requests > 0 || gen.stats().idle_established > 0 ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fmp-loadgen: %s\n", e.what());
    return 1;
  }
}
