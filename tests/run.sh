#!/usr/bin/env bash
# The test command: installs what is needed (Debian 12 packages), builds, and runs every test.
#   tests/run.sh            everything: unit, integration (real processes, real TLS)
#   tests/run.sh -L unit    pass ctest arguments to select
set -euo pipefail
cd "$(dirname "$0")/.."

bash deploy/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)"
ctest --test-dir build --output-on-failure -j2 "$@"
