#!/usr/bin/env bash
# The test command: installs what is needed (Debian 12 packages), builds, and runs every test.
#   tests/run.sh              everything, as CI runs it (.ci/run):
#                               1. normal build (build/), full ctest: unit + integration
#                               2. ASan+UBSan build (build-asan/): unit + integration tests
#                               3. TSan build (build-tsan/): unit + the multi-threaded integration tests
#                               4. libFuzzer build with clang, ASan+UBSan (build-fuzz/): every fuzz
#                                  driver for FMP_FUZZ_SECONDS (default 20) on a copy of its corpus
#   tests/run.sh -L unit      ctest arguments select the tests of stage 1 (stages 2-4 still run)
#   FMP_QUICK=1 tests/run.sh  developers: stage 1 only
# Any sanitizer report fails its test (halt_on_error; the integration harness also fails a test
# whose proxy left a report on stderr). Suppressions, each with its reason: tests/sanitizers/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
jobs=$(nproc)

# Per stage: wall time, and CPU time (user+sys) of everything it ran. On a machine shared with
# other work the wall time grows; the CPU time shows what the stage itself costs (2 cores: wall
# >= cpu / 2).
timings=()
stage_start=0
stage_cpu=0
children_cpu_s=0
times_file=$(mktemp)
# `times` must run in this shell (a $(...) subshell has no children of its own yet).
children_cpu() {  # user+sys seconds of every finished child of this shell so far
  times >"$times_file"
  children_cpu_s=$(tail -n 1 "$times_file" | awk '{ n = 0; for (i = 1; i <= 2; i++) {
    split($i, a, "m"); sub("s", "", a[2]); n += a[1] * 60 + a[2] } printf "%.1f", n }')
}
begin_stage() {
  stage_start=$(date +%s)
  children_cpu
  stage_cpu=$children_cpu_s
  echo "=== stage: $1"
}
end_stage() {
  children_cpu
  local s=$(($(date +%s) - stage_start))
  local c
  c=$(awk -v a="$children_cpu_s" -v b="$stage_cpu" 'BEGIN { printf "%d", a - b + 0.5 }')
  timings+=("$(printf '%-8s wall %4d s  cpu %4d s' "$1" "$s" "$c")")
  echo "=== stage $1 done in ${s}s (cpu ${c}s)"
}
print_timings() {
  rm -f "$times_file"
  ((${#timings[@]})) || return 0
  echo "=== stage timings"
  printf '%s\n' "${timings[@]}"
}
trap print_timings EXIT

bash deploy/install-deps.sh

begin_stage normal
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$jobs"
ctest --test-dir build --output-on-failure -j2 "$@"
end_stage normal

if [ "${FMP_QUICK:-0}" = 1 ]; then
  echo "FMP_QUICK=1: sanitizer and fuzz stages skipped"
  exit 0
fi

supp=$root/tests/sanitizers
# Sanitizer builds: -O1 keeps stack traces exact and compiles much faster than -O2; -g1 is enough
# for file:line in reports. Benchmarks are not built there.
san_flags=(-DCMAKE_BUILD_TYPE=Debug "-DCMAKE_CXX_FLAGS_DEBUG=-O1 -g1" "-DCMAKE_C_FLAGS_DEBUG=-O1 -g1"
           -DFMP_BUILD_BENCH=OFF)

begin_stage asan
cmake -S . -B build-asan "${san_flags[@]}" -DFMP_SANITIZE_ADDRESS=ON -DFMP_SANITIZE_THREAD=OFF >/dev/null
cmake --build build-asan -j"$jobs"
# quarantine_size_mb: the streaming tests bound the proxy's RSS (64 MiB); ASan's default 256 MiB
# quarantine of freed memory alone would exceed it. 8 MiB still catches use-after-free of anything
# freed recently. Excluded: test_deploy_manifests checks the release binary's shared libraries
# against the Dockerfile, and a sanitizer binary also links libasan.
ASAN_OPTIONS="halt_on_error=1:exitcode=86:detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1:quarantine_size_mb=8:thread_local_quarantine_size_kb=256" \
LSAN_OPTIONS="suppressions=$supp/lsan.supp:print_suppressions=0" \
UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:exitcode=86:suppressions=$supp/ubsan.supp" \
  ctest --test-dir build-asan --output-on-failure -j2 -L 'unit|integration' \
    -E '^integration_test_deploy_manifests$'
end_stage asan

begin_stage tsan
cmake -S . -B build-tsan "${san_flags[@]}" -DFMP_SANITIZE_THREAD=ON -DFMP_SANITIZE_ADDRESS=OFF >/dev/null
cmake --build build-tsan -j"$jobs"
# Unit tests plus the integration tests where threads share the most state: two worker threads
# (keep-alive/concurrency), reload swapping the shared snapshot under live traffic (SIGHUP and the
# file-watcher thread), shutdown draining every worker, the metrics endpoint's threads reading
# what the workers count.
TSAN_OPTIONS="halt_on_error=1:exitcode=66:second_deadlock_stack=1:suppressions=$supp/tsan.supp" \
  ctest --test-dir build-tsan --output-on-failure -j2 \
    -R '^(unit_.*|integration_test_(keepalive_concurrency|reload|watch_reload|shutdown|prometheus))$'
end_stage tsan

begin_stage fuzz
CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFMP_FUZZ=ON \
  -DFMP_SANITIZE_ADDRESS=ON -DFMP_BUILD_BENCH=OFF -DFMP_FUZZ_SECONDS="${FMP_FUZZ_SECONDS:-20}" >/dev/null
cmake --build build-fuzz -j"$jobs" --target fmp_fuzzers
ASAN_OPTIONS="halt_on_error=1:detect_leaks=1" UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1" \
  ctest --test-dir build-fuzz --output-on-failure -j2 -L fuzz
end_stage fuzz
