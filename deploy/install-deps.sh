#!/usr/bin/env bash
# Installs, from Debian 12's own packages, everything the build, the demo and the tests need.
# Idempotent: packages already present are left alone. Run as root (or with sudo available).
set -euo pipefail

packages=(
  build-essential cmake pkg-config clang clang-format
  libclang-rt-14-dev  # libFuzzer, ASan/UBSan/TSan runtimes for clang (tests/fuzz, tests/run.sh)
  libevent-dev libssl-dev libyaml-cpp-dev nlohmann-json3-dev prometheus-cpp-dev doctest-dev
  libhttp-parser-dev libbenchmark-dev libsystemd-dev
  openssl curl python3 ca-certificates
  python3-yaml  # /usr/bin/python3 reads the Kubernetes manifests in test_deploy_manifests.py
  systemd  # systemd-analyze verify / security in test_package.py
  prometheus  # prometheus + promtool for tests/integration/test_prometheus.py
  sslscan     # TLS configuration scan: tests/integration/test_tls_scan.py
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
