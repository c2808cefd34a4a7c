#!/bin/sh
# Runs one libFuzzer driver for a bounded time on a temporary copy of its seed corpus (the tree's
# corpus is never written). Fails when the driver finds a crash, a leak, a timeout or a sanitizer
# report; the reproducer is kept in ARTIFACT_DIR.
#   run_fuzzer.sh DRIVER CORPUS_DIR DICT SECONDS ARTIFACT_DIR
set -eu
driver=$1 corpus=$2 dict=$3 seconds=$4 artifacts=$5
work=$(mktemp -d "${TMPDIR:-/tmp}/fmp-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
cp -R "$corpus"/. "$work"/
mkdir -p "$artifacts"
exec_status=0
"$driver" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
  -dict="$dict" -artifact_prefix="$artifacts/$(basename "$driver")-" "$work" || exec_status=$?
exit "$exec_status"
