#!/usr/bin/env bash
# The whole demo in one command, from a fresh checkout:
#   installs the build dependencies (Debian 12 packages), builds the proxy, mints the example PKI,
#   installs and starts the demo FHIR server (127.0.0.1:8080), starts fhir-mtls-proxy with
#   conf/proxy.yaml (https://localhost:8443, metrics on 127.0.0.1:9464), then sends a few requests
#   with curl and explains what each one shows.
#
#   deploy/demo/run-demo.sh           run the demo, then stop both servers
#   deploy/demo/run-demo.sh --keep    leave both running (their PIDs and logs are printed)
#
# Environment: BUILD_DIR (default build), SKIP_INSTALL=1 (skip deploy/install-deps.sh),
# SKIP_BUILD=1 (use the binary already in BUILD_DIR). Logs go to BUILD_DIR/demo/.
set -euo pipefail

keep=0
for arg in "$@"; do
  case "$arg" in
    --keep) keep=1 ;;
    -h | --help)
      sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "run-demo.sh: unknown argument: $arg (try --help)" >&2
      exit 2
      ;;
  esac
done

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
BUILD_DIR=${BUILD_DIR:-build}
logs=$BUILD_DIR/demo
proxy_bin=$BUILD_DIR/proxy/fhir-mtls-proxy
certs="certs-example/out"
base=https://localhost:8443/fhir

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
note() { printf '   %s\n' "$*"; }

# --- 1. dependencies and build ------------------------------------------------------------------
if [ "${SKIP_INSTALL:-0}" != 1 ]; then
  step "Installing build dependencies (deploy/install-deps.sh)"
  bash deploy/install-deps.sh
fi
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  step "Building ($BUILD_DIR)"
  cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$BUILD_DIR" -j"$(nproc)" --target fhir-mtls-proxy
fi
[ -x "$proxy_bin" ] || {
  echo "run-demo.sh: $proxy_bin is missing; build first" >&2
  exit 1
}

# --- 2. certificates and the FHIR server --------------------------------------------------------
step "Minting the example PKI (certs-example/mint.sh)"
certs-example/mint.sh

step "Installing the demo FHIR server (npm ci)"
command -v node >/dev/null || {
  echo "run-demo.sh: node (20 or later) is needed for the demo FHIR server" >&2
  exit 1
}
(cd deploy/demo/fhir-server && npm ci --no-audit --no-fund --loglevel=error)

mkdir -p "$logs"
fhir_pid=
proxy_pid=
stop_all() {
  for pid in $proxy_pid $fhir_pid; do
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
      done
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
}
on_exit() {
  status=$?
  if [ "$keep" = 1 ] && [ "$status" = 0 ]; then
    return
  fi
  [ "$status" = 0 ] || echo "run-demo.sh: failed (exit $status); logs in $logs/" >&2
  stop_all
}
trap on_exit EXIT

# wait_for WHAT PID LOG SECONDS COMMAND...: polls COMMAND until it succeeds (bounded); gives up at
# once, showing the end of LOG, when the process PID has exited (e.g. a port already in use).
wait_for() {
  local what=$1 pid=$2 log=$3 seconds=$4
  shift 4
  for _ in $(seq 1 $((seconds * 5))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "run-demo.sh: $what exited during start-up; the end of $log:" >&2
      tail -n 15 "$log" | sed 's/^/   /' >&2
      return 1
    fi
    sleep 0.2
  done
  echo "run-demo.sh: $what did not come up within ${seconds}s; see $logs/" >&2
  return 1
}

# The demo's fixed ports (conf/proxy.yaml and the FHIR server) must be free: otherwise curl would
# talk to whatever holds them, e.g. the servers of an earlier `run-demo.sh --keep`.
for port in 8080 8443 9464; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "run-demo.sh: 127.0.0.1:$port is already in use (servers of an earlier --keep run? stop them first)" >&2
    exit 1
  fi
done

step "Starting the demo FHIR server on http://127.0.0.1:8080/fhir"
PORT=8080 node deploy/demo/fhir-server/server.mjs >"$logs/fhir-server.log" 2>&1 &
fhir_pid=$!
wait_for "the FHIR server" "$fhir_pid" "$logs/fhir-server.log" 90 \
  curl -sf -o /dev/null http://127.0.0.1:8080/fhir/metadata
note "pid $fhir_pid, log $logs/fhir-server.log"

# --- 3. the proxy -------------------------------------------------------------------------------
step "Starting fhir-mtls-proxy on https://localhost:8443 (conf/proxy.yaml, conf/policy.yaml)"
"$proxy_bin" check --config conf/proxy.yaml
"$proxy_bin" run --config conf/proxy.yaml >"$logs/audit.log" 2>"$logs/proxy.log" &
proxy_pid=$!
# Ready when a TLS handshake completes and an HTTP status comes back (any status).
proxy_ready() {
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$certs/server-ca.pem" "$base/metadata") || true
  [ "$code" != 000 ] && [ -n "$code" ]
}
wait_for "the proxy" "$proxy_pid" "$logs/proxy.log" 30 proxy_ready
note "pid $proxy_pid, audit log $logs/audit.log, error log $logs/proxy.log"

# --- 4. requests ----------------------------------------------------------------------------------
# call CLIENT METHOD PATH [BODY]: curl through the proxy as CLIENT (a certs-example/out name, or
# "anonymous"); prints the status and a one-line summary of the body; sets $status and $body.
call() {
  local who=$1 method=$2 path=$3 data=${4:-}
  local args=(-s --cacert "$certs/server-ca.pem" -X "$method" -w '\n%{http_code}')
  [ "$who" = anonymous ] || args+=(--cert "$certs/$who.pem" --key "$certs/$who.key")
  [ -z "$data" ] || args+=(-H 'Content-Type: application/fhir+json' --data "$data")
  local out
  out=$(curl "${args[@]}" "$base$path") || true
  status=${out##*$'\n'}
  body=${out%$'\n'*}
  printf '   $ curl %s %s%s  (as %s)\n' "$method" "$base" "$path" "$who"
  printf '   -> HTTP %s  %s\n' "$status" "$(summarize <<<"$body")"
}
summarize() {
  python3 -c '
import json, sys
text = sys.stdin.read()
try:
    r = json.loads(text)
except ValueError:
    print(text[:120].replace("\n", " ")); sys.exit()
t = r.get("resourceType")
if t == "OperationOutcome":
    i = r["issue"][0]
    print("OperationOutcome %s: %s" % (i.get("code"), i.get("diagnostics") or i.get("details", {}).get("text")))
elif t == "Bundle":
    print("Bundle %s, %d entries: %s" % (r.get("type"), len(r.get("entry", [])),
          ", ".join(e["resource"]["resourceType"] + "/" + e["resource"]["id"] for e in r.get("entry", [])[:3])))
elif t == "CapabilityStatement":
    print("CapabilityStatement FHIR %s, %d resource types" % (r.get("fhirVersion"), len(r["rest"][0]["resource"])))
else:
    print("%s/%s" % (t, r.get("id")))
'
}
expect() {
  if [ "$status" = "$1" ]; then note "as expected: $2"; else
    note "UNEXPECTED: wanted HTTP $1 ($2)"
    unexpected=$((unexpected + 1))
  fi
}
unexpected=0

step "1. Anonymous client (no certificate) reads the CapabilityStatement"
call anonymous GET /metadata
expect 200 "rule metadata-public opens /fhir/metadata to everyone"

step "2. The hospital EHR (covered entity, SAN URI .../ehr-client) creates a Patient"
call covered-entity POST /Patient '{"resourceType":"Patient","name":[{"family":"Doe","given":["Jane"]}],"birthDate":"1980-04-01"}'
expect 201 "rule ehr-client-writes: only this SAN URI may create/update"
patient_id=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1]).get("id",""))' "$body" 2>/dev/null || true)
call covered-entity POST /Observation "{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"Heart rate\"},\"subject\":{\"reference\":\"Patient/$patient_id\"},\"valueQuantity\":{\"value\":72,\"unit\":\"beats/min\"}}"
expect 201 "an Observation for that patient"

step "3. Covered entity reads, searches and runs \$everything"
call covered-entity GET "/Patient/$patient_id"
expect 200 "rule covered-entities-read-clinical"
call covered-entity GET "/Patient?family=Doe"
expect 200 "search is a read interaction too"
call covered-entity GET "/Patient/$patient_id/\$everything"
expect 200 "rule covered-entities-patient-everything"

step "4. A patient app may read, but not write"
call patient-app GET "/Observation?subject=Patient/$patient_id"
expect 200 "rule patient-apps-read-only (the proxy cannot bind the app to one patient: see policy.yaml)"
call patient-app POST /Observation '{"resourceType":"Observation","status":"final","code":{"text":"Steps"}}'
expect 403 "no rule allows it: default deny, the FHIR server never sees it"

step "5. A business associate sees billing data only"
call business-associate GET "/Patient?family=Doe"
expect 200 "allowed; the shadow rule trial-ba-no-patient-search logs what it would have denied"
call business-associate GET "/Observation?subject=Patient/$patient_id"
expect 403 "clinical data is not in the billing rule"

step "6. Certificates the proxy rejects"
call expired GET "/Patient/$patient_id"
expect 401 "expired certificate (client_cert: request -> 401 expired; 'require' would end the handshake)"
call revoked GET "/Patient/$patient_id"
expect 401 "revoked: listed in the DirectTrust intermediate's CRL"
call unknown-ca GET "/Patient/$patient_id"
expect 401 "same subject as the EHR, but from a CA in no trust bundle"

step "What the FHIR server saw (identity headers set by the proxy)"
tail -n 12 "$logs/fhir-server.log" | sed 's/^/   /'

step "Metrics (http://127.0.0.1:9464/metrics; non-zero request and handshake counters)"
curl -s http://127.0.0.1:9464/metrics | grep -E '^fhir_mtls_proxy_(requests_total|tls_handshakes_total)' |
  awk '$NF != 0' | sort | sed 's/^/   /' || true

step "Audit log ($logs/audit.log, one JSON object per decision; last entry)"
tail -n 1 "$logs/audit.log" | sed 's/^/   /'

echo
if [ "$unexpected" = 0 ]; then note "All requests behaved as described."; else note "$unexpected request(s) did not behave as described."; fi
if [ "$keep" = 1 ]; then
  step "Left running (--keep)"
  note "FHIR server pid $fhir_pid, proxy pid $proxy_pid"
  note "try: curl --cacert $certs/server-ca.pem --cert $certs/covered-entity.pem --key $certs/covered-entity.key $base/Patient"
  note "stop: kill $proxy_pid $fhir_pid"
else
  step "Stopping both servers"
  stop_all
fi
[ "$unexpected" = 0 ]
