#!/usr/bin/env bash
# Mints the EXAMPLE PKI that /etc/fhir-mtls-proxy/proxy.yaml points at, so that
# `fhir-mtls-proxy check` passes and the service can start for a first look. Never use these keys
# for anything real: replace them and the policy before production.
#
#   /usr/share/fhir-mtls-proxy/mint-example-pki.sh [OUTDIR]   default /etc/fhir-mtls-proxy/example-pki
#
# Wraps mint.sh (the repository's certs-example/mint.sh; its environment variables apply), then
# makes the files readable by the service's group: the service runs as user fhir-mtls-proxy.
set -euo pipefail
out=${1:-/etc/fhir-mtls-proxy/example-pki}
/usr/share/fhir-mtls-proxy/mint.sh "$out"
if getent group fhir-mtls-proxy >/dev/null; then
  chgrp -R fhir-mtls-proxy "$out"
  chmod -R g+rX,o-rwx "$out"
fi
echo "example PKI in $out; client certificates to try: $out/covered-entity.pem (+ .key)"
