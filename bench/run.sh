#!/usr/bin/env bash
# The measuring stick: fhir-mtls-proxy against nginx and HAProxy doing the same mTLS job, in front of
# the same upstream, on this machine. See bench/RESULTS.md for the method and the last results.
#
#   bench/run.sh [--quick] [--reps N] [--only LIST] [--proxy BIN] [--loadgen BIN] [--no-results]
#                [--keep]
#
#   --quick       a few seconds per scenario, 1 repetition, tiny streaming/idle scenarios, no RSA
#                 (ctest bench_quick runs this so the benchmark never rots; no thresholds)
#   --reps N      repetitions of each interleaved scenario (default 3)
#   --only LIST   run only these comma-separated scenarios: keepalive-50, handshake-full,
#                 handshake-resumed, sequential-1, bundle-1mib, stream, idle, handshake-full-rsa
#                 (implies --no-results unless --results follows: a partial table never replaces
#                 the full one)
#   --proxy BIN   fhir-mtls-proxy binary (default: build-bench/, then build/)
#   --loadgen BIN fmp-loadgen binary (default: next to the proxy's build tree)
#   --no-results  do not rewrite the generated section of bench/RESULTS.md (default with --quick)
#   --keep        keep the temporary directory (configs, certificates, raw JSON lines)
#   --max-other F a run is "noisy" when other processes used more than F of a core (default 0.05)
#
# Layout: the upstream nginx and the load generator are pinned to CPU 1, every contender to CPU 0.
# Every server listens on 127.0.0.1 only. Every wait is bounded.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
QUICK=0
REPS=3
PROXY=""
LOADGEN=""
WRITE_RESULTS=1
ONLY=""
KEEP=0
MAX_OTHER=0.05
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) QUICK=1; REPS=1; WRITE_RESULTS=0 ;;
    --reps) REPS=$2; shift ;;
    --only) ONLY=$2; WRITE_RESULTS=0; shift
      [[ -n "${ONLY// /}" ]] || { echo "run.sh: --only needs a scenario list" >&2; exit 2; } ;;
    --proxy) PROXY=$2; shift ;;
    --loadgen) LOADGEN=$2; shift ;;
    --no-results) WRITE_RESULTS=0 ;;
    --results) WRITE_RESULTS=1 ;;
    --keep) KEEP=1 ;;
    --max-other) MAX_OTHER=$2; shift ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

log() { echo "[bench $(date +%H:%M:%S)] $*" >&2; }
die() { echo "run.sh: $*" >&2; exit 1; }

ALL_SCENARIOS=(keepalive-50 handshake-full handshake-resumed sequential-1 bundle-1mib stream idle
  handshake-full-rsa)
ONLY=${ONLY// /}
ONLY_LIST=()
[[ -z "$ONLY" ]] || IFS=, read -ra ONLY_LIST <<<"$ONLY"
for scenario in "${ONLY_LIST[@]}"; do
  [[ " ${ALL_SCENARIOS[*]} " == *" $scenario "* ]] ||
    die "--only: unknown scenario \"$scenario\" (one of: ${ALL_SCENARIOS[*]})"
done
if [[ $QUICK -eq 1 && ",$ONLY," == *",handshake-full-rsa,"* ]]; then
  die "--only: handshake-full-rsa does not run with --quick (no RSA certificates there)"
fi
wanted() {  # SCENARIO: is it part of this run?
  [[ -z "$ONLY" || ",$ONLY," == *",$1,"* ]]
}
[[ "$REPS" =~ ^[1-9][0-9]*$ ]] || die "--reps: expected a positive count, got \"$REPS\""

if [[ -z "$PROXY" ]]; then
  for d in build-bench build; do
    if [[ -x "$ROOT/$d/proxy/fhir-mtls-proxy" ]]; then PROXY="$ROOT/$d/proxy/fhir-mtls-proxy"; break; fi
  done
fi
[[ -n "$PROXY" && -x "$PROXY" ]] || die "no fhir-mtls-proxy binary (build it, or pass --proxy)"
if [[ -z "$LOADGEN" ]]; then
  LOADGEN="$(dirname "$(dirname "$PROXY")")/bench/loadgen/fmp-loadgen"
fi
[[ -x "$LOADGEN" ]] || die "no fmp-loadgen binary at $LOADGEN (build target fmp-loadgen, or pass --loadgen)"
PROXY=$(readlink -f "$PROXY")
LOADGEN=$(readlink -f "$LOADGEN")

# --- packages -----------------------------------------------------------------------------------
install_packages() {
  local need=()
  command -v nginx >/dev/null || need+=(nginx-light)
  command -v haproxy >/dev/null || need+=(haproxy)
  [[ ${#need[@]} -eq 0 ]] && return 0
  if ! command -v apt-get >/dev/null || [[ $(id -u) -ne 0 ]]; then
    echo "run.sh: SKIP: nginx/haproxy missing and cannot be installed (needs root and apt-get)" >&2
    exit 77
  fi
  log "installing ${need[*]} from Debian"
  # policy-rc.d (when present) keeps the packages' own services from starting.
  DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y "${need[@]}" >/dev/null 2>&1 ||
    { DEBIAN_FRONTEND=noninteractive timeout 600 apt-get update >/dev/null 2>&1 || true
      local alt=("${need[@]/nginx-light/nginx}")
      DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y "${alt[@]}" >/dev/null 2>&1 ||
        { echo "run.sh: SKIP: apt-get install ${alt[*]} failed" >&2; exit 77; }; }
}
install_packages
NGINX=$(command -v nginx)
HAPROXY=$(command -v haproxy)
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# --- scenario sizes -----------------------------------------------------------------------------
if [[ $QUICK -eq 1 ]]; then
  WARM=0.5; DUR=2; SEQ_DUR=1; BUNDLE_DUR=1; STREAM_MIB=16; IDLE_CONNS=100; IDLE_HOLD=1; RSA=0
else
  WARM=2; DUR=6; SEQ_DUR=4; BUNDLE_DUR=4; STREAM_MIB=1024; IDLE_CONNS=5000; IDLE_HOLD=3; RSA=1
fi
CONNS=50

# --- temp dir, cleanup --------------------------------------------------------------------------
TMP=$(mktemp -d /tmp/fmp-bench.XXXXXX)
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  if [[ $KEEP -eq 1 ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
UP_PORT=$(free_port); NGX_PORT=$(free_port); HAP_PORT=$(free_port); FMP_PORT=$(free_port)
FMP_METRICS_PORT=$(free_port)

# --- certificates: ECDSA P-256 and RSA-2048 variants ---------------------------------------------
mint() {  # mint DIR ec|rsa
  local dir=$1 kind=$2 newkey
  mkdir -p "$dir"
  if [[ $kind == ec ]]; then newkey=(-newkey ec -pkeyopt ec_paramgen_curve:P-256)
  else newkey=(-newkey rsa:2048); fi
  openssl req -x509 "${newkey[@]}" -nodes -keyout "$dir/ca.key" -out "$dir/ca.pem" -days 365 \
    -subj "/C=US/O=Bench Trust/CN=Bench CA ($kind)" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    2>/dev/null
  cat > "$dir/server.ext" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1
EOF
  cat > "$dir/client.ext" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth
subjectAltName=URI:https://apps.bench-hospital.example/ehr-client
certificatePolicies=1.3.6.1.4.1.41179.2.1,1.3.6.1.4.1.41179.1.3
EOF
  local who subj
  for who in server client; do
    if [[ $who == server ]]; then subj="/CN=localhost"; else
      subj="/C=US/O=Bench Hospital/OU=Integration/CN=bench-ehr-client"; fi
    openssl req -new "${newkey[@]}" -nodes -keyout "$dir/$who.key" -out "$dir/$who.csr" \
      -subj "$subj" 2>/dev/null
    openssl x509 -req -in "$dir/$who.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
      -CAcreateserial -days 365 -extfile "$dir/$who.ext" -out "$dir/$who.pem" 2>/dev/null
  done
  cat "$dir/server.pem" "$dir/server.key" > "$dir/server-combined.pem"  # HAProxy's crt format
}
log "minting certificates in $TMP"
mint "$TMP/pki-ec" ec
[[ $RSA -eq 1 ]] && mint "$TMP/pki-rsa" rsa

# --- content: Patient (2,135 bytes), 1 MiB transaction Bundle, big sparse file ------------------
mkdir -p "$TMP/www/fhir/Patient" "$TMP/www/fhir/Binary" "$TMP/logs"
python3 - "$TMP" <<'EOF'
import json, sys, uuid
tmp = sys.argv[1]
patient = {
    "resourceType": "Patient", "id": "example",
    "meta": {"versionId": "3", "lastUpdated": "2024-05-02T09:30:00Z",
             "profile": ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"]},
    "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Peter James Chalmers</div>"},
    "identifier": [{"use": "usual", "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
                    "system": "urn:oid:1.2.36.146.595.217.0.1", "value": "12345",
                    "period": {"start": "2001-05-06"}, "assigner": {"display": "Acme Healthcare"}}],
    "active": True,
    "name": [{"use": "official", "family": "Chalmers", "given": ["Peter", "James"]},
             {"use": "usual", "given": ["Jim"]}],
    "telecom": [{"system": "phone", "value": "(03) 5555 6473", "use": "work", "rank": 1},
                {"system": "phone", "value": "(03) 3410 5613", "use": "mobile", "rank": 2}],
    "gender": "male", "birthDate": "1974-12-25", "deceasedBoolean": False,
    "address": [{"use": "home", "type": "both", "text": "534 Erewhon St PeasantVille, Rainbow, Vic  3999",
                 "line": ["534 Erewhon St"], "city": "PleasantVille", "district": "Rainbow",
                 "state": "Vic", "postalCode": "3999", "period": {"start": "1974-12-25"}}],
    "contact": [{"relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0131", "code": "N"}]}],
                 "name": {"family": "du Marché", "given": ["Bénédicte"]},
                 "telecom": [{"system": "phone", "value": "+33 (237) 998327"}],
                 "address": {"use": "home", "type": "both", "line": ["534 Erewhon St"],
                             "city": "PleasantVille", "district": "Rainbow", "state": "Vic",
                             "postalCode": "3999", "period": {"start": "1974-12-25"}},
                 "gender": "female", "period": {"start": "2012"}}],
    "managingOrganization": {"reference": "Organization/1"},
}
body = json.dumps(patient, ensure_ascii=False).encode()
pad = 2135 - len(body)
assert pad > 20, len(body)
patient["extension"] = [{"url": "http://example.org/pad", "valueString": ""}]
body = json.dumps(patient, ensure_ascii=False).encode()
patient["extension"][0]["valueString"] = "x" * (2135 - len(body))
body = json.dumps(patient, ensure_ascii=False).encode()
assert len(body) == 2135, len(body)
open(f"{tmp}/www/fhir/Patient/example", "wb").write(body)

entries = []
i = 0
size = 0
while size < 1024 * 1024 - 3000:
    p = dict(patient); p.pop("id"); p.pop("meta"); p.pop("extension")
    p["identifier"] = [{"system": "urn:oid:1.2.36.146.595.217.0.1", "value": str(100000 + i)}]
    e = {"fullUrl": "urn:uuid:" + str(uuid.UUID(int=i + 1)), "resource": p,
         "request": {"method": "POST", "url": "Patient"}}
    entries.append(e)
    size += len(json.dumps(e)) + 1
    i += 1
bundle = json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries}).encode()
open(f"{tmp}/bundle.json", "wb").write(bundle)
print(f"bundle: {len(bundle)} bytes, {len(entries)} entries", file=sys.stderr)
EOF
truncate -s "${STREAM_MIB}M" "$TMP/www/fhir/Binary/big"   # sparse: no disk used
BUNDLE_ENTRIES=$(python3 -c "import json;print(len(json.load(open('$TMP/bundle.json'))['entry']))")
BUNDLE_BYTES=$(stat -c %s "$TMP/bundle.json")

# --- the 1,000-rule policy; the deciding rule is number 998 --------------------------------------
python3 - "$TMP/policy.yaml" <<'EOF'
import sys
out = ["# generated by bench/run.sh: 1,000 rules; the bench client is decided by rule 998",
       "default: deny", "rules:"]
resources = ["Patient", "Observation", "Condition", "Encounter", "MedicationRequest", "Procedure"]
for n in range(1, 1001):
    name = f"rule-{n:04d}"
    if n == 998:
        out += [f"  - name: bench-ehr-client", "    effect: allow", "    when:",
                "      trust: [bench]",
                "      subject: { O: [\"Bench Hospital\"], CN: [\"bench-*\"] }",
                "      san_uri: [\"https://apps.bench-hospital.example/*\"]",
                "      hipaa: [covered-entity]",
                "      fhir:",
                "        interaction: [read, search, create, update, transaction, batch]"]
        continue
    kind = n % 5
    out += [f"  - name: {name}", f"    effect: {'deny' if n % 7 == 0 else 'allow'}", "    when:"]
    if kind == 0:
        out += [f"      subject: {{ O: [\"Org {n:04d}\"] }}",
                f"      fhir: {{ resource: [{resources[n % 6]}], interaction: [read, search] }}"]
    elif kind == 1:
        out += [f"      san_uri: [\"https://apps.org{n:04d}.example/*\"]",
                "      method: [GET, HEAD]"]
    elif kind == 2:
        out += [f"      issuer: {{ CN: [\"Issuing CA {n:04d}\"] }}",
                f"      path: [\"/fhir/{resources[n % 6]}/*\"]"]
    elif kind == 3:
        out += [f"      fingerprint_sha256: [\"{n:064x}\"]"]
    else:
        out += [f"      subject: {{ CN: [\"client-{n:04d}\"] }}", "      hipaa: [business-associate]",
                f"      fhir: {{ resource: [{resources[n % 6]}] }}"]
open(sys.argv[1], "w").write("\n".join(out) + "\n")
EOF

# --- configs --------------------------------------------------------------------------------------
write_upstream_conf() {
  cat > "$TMP/upstream.conf" <<EOF
# The FHIR server stand-in: a fixed Patient, POST accepted, a big file; keep-alive.
worker_processes 1;
daemon off;
user root;
pid $TMP/upstream.pid;
error_log $TMP/logs/upstream-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_timeout 300s;
  keepalive_requests 10000000;
  open_file_cache max=64 inactive=600s;
  open_file_cache_valid 600s;
  client_body_temp_path $TMP/upstream-body;
  types { }
  default_type application/fhir+json;
  server {
    listen 127.0.0.1:$UP_PORT backlog=4096;
    root $TMP/www;
    location = /fhir {
      client_max_body_size 20m;
      client_body_buffer_size 2m;
      return 200 '{"resourceType":"Bundle","type":"transaction-response"}';
    }
    location /fhir/ { }
  }
}
EOF
}

write_nginx_conf() {  # PKI dir
  local pki=$1
  cat > "$TMP/nginx-proxy.conf" <<EOF
# nginx as the mTLS proxy: client certificate required, identity headers set, upstream keep-alive.
worker_processes 1;
daemon off;
user root;
pid $TMP/nginx-proxy.pid;
error_log $TMP/logs/nginx-proxy-error.log warn;
worker_rlimit_nofile 20000;
events { worker_connections 12000; }
http {
  access_log /dev/null;
  keepalive_timeout 300s;
  keepalive_requests 10000000;
  client_body_temp_path $TMP/nginx-body;
  proxy_temp_path $TMP/nginx-proxy-temp;
  client_max_body_size 10m;
  client_body_buffer_size 2m;      # the 1 MiB Bundle stays in memory
  upstream fhir { server 127.0.0.1:$UP_PORT; keepalive 64; }
  server {
    listen 127.0.0.1:$NGX_PORT ssl backlog=4096;
    ssl_certificate $pki/server.pem;
    ssl_certificate_key $pki/server.key;
    ssl_client_certificate $pki/ca.pem;
    ssl_verify_client on;
    ssl_verify_depth 3;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / {
      proxy_pass http://fhir;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Client-Subject-DN \$ssl_client_s_dn;
      proxy_set_header X-Client-Issuer-DN \$ssl_client_i_dn;
      proxy_set_header X-Client-Cert-SHA1 \$ssl_client_fingerprint;
      proxy_set_header X-Client-Serial \$ssl_client_serial;
      proxy_set_header X-Client-Verify \$ssl_client_verify;
      proxy_set_header X-Forwarded-For \$remote_addr;
      proxy_set_header X-Forwarded-Proto https;
      proxy_set_header X-Forwarded-Client-Cert "";
      proxy_max_temp_file_size 0;    # stream big responses through memory buffers, never disk
    }
  }
}
EOF
}

write_haproxy_conf() {  # PKI dir
  local pki=$1
  cat > "$TMP/haproxy.cfg" <<EOF
# HAProxy as the mTLS proxy: verify required, identity headers set, upstream connection reuse.
global
  nbthread 1
  maxconn 9000
  pidfile $TMP/haproxy.pid
defaults
  mode http
  timeout connect 5s
  timeout client 300s
  timeout server 300s
  timeout http-keep-alive 300s
  timeout http-request 10s
  option http-keep-alive
  http-reuse always
frontend fhir_mtls
  bind 127.0.0.1:$HAP_PORT ssl crt $pki/server-combined.pem ca-file $pki/ca.pem verify required
  maxconn 9000
  http-request del-header X-Forwarded-Client-Cert
  http-request set-header X-Client-Subject-DN %[ssl_c_s_dn]
  http-request set-header X-Client-Issuer-DN %[ssl_c_i_dn]
  http-request set-header X-Client-Cert-SHA256 %[ssl_c_der,sha2(256),hex,lower]
  http-request set-header X-Client-Serial %[ssl_c_serial,hex]
  http-request set-header X-Forwarded-Proto https
  option forwardfor
  default_backend fhir
backend fhir
  server up 127.0.0.1:$UP_PORT
EOF
}

write_fmp_conf() {  # PKI dir
  local pki=$1
  cat > "$TMP/fmp.yaml" <<EOF
# fhir-mtls-proxy: one worker, client certificate required, 1,000-rule policy.
listen: "127.0.0.1:$FMP_PORT"
workers: 1
tls:
  cert: $pki/server.pem
  key: $pki/server.key
  client_cert: require
  trust:
    - name: bench
      ca: $pki/ca.pem
upstream:
  url: "http://127.0.0.1:$UP_PORT"
  max_idle_connections: 64
fhir_base: /fhir
policy: $TMP/policy.yaml
limits:
  idle_timeout_ms: 300000
  header_timeout_ms: 300000   # also the keep-alive idle limit: like nginx keepalive_timeout 300s
metrics:
  listen: "127.0.0.1:$FMP_METRICS_PORT"
audit:
  path: /dev/null
watch: false
EOF
}

# --- processes ------------------------------------------------------------------------------------
wait_port() {  # PORT PID: bounded wait for a listener (gives up early when PID exits)
  local port=$1 pid=$2
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
children() { ps -o pid= --ppid "$1" | tr -d ' ' | paste -sd, -; }
sum_status_kib() {  # FIELD PID,PID...: sum of VmRSS/VmHWM in KiB
  local field=$1 pids=$2 total=0 pid v
  for pid in ${pids//,/ }; do
    v=$(awk -v f="$field:" '$1==f {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
    total=$((total + ${v:-0}))
  done
  echo "$total"
}

declare -A CPIDS   # contender -> pids whose CPU counts (workers)
declare -A MAINPID # contender -> the process we started
start_upstream() {
  write_upstream_conf
  mkdir -p "$TMP/upstream-body"
  taskset -c 1 "$NGINX" -c "$TMP/upstream.conf" -p "$TMP" 2>"$TMP/logs/upstream.stderr" &
  PIDS+=($!); MAINPID[upstream]=$!
  wait_port "$UP_PORT" "${MAINPID[upstream]}" || die "upstream nginx did not start: $(cat "$TMP/logs/upstream"*)"
  sleep 0.2
  CPIDS[upstream]=$(children "${MAINPID[upstream]}")
}
stop_pid() {
  local pid=$1
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
start_contenders() {  # PKI dir
  local pki=$1
  write_nginx_conf "$pki"; write_haproxy_conf "$pki"; write_fmp_conf "$pki"
  mkdir -p "$TMP/nginx-body" "$TMP/nginx-proxy-temp"
  taskset -c 0 "$NGINX" -c "$TMP/nginx-proxy.conf" -p "$TMP" 2>"$TMP/logs/nginx.stderr" &
  PIDS+=($!); MAINPID[nginx]=$!
  "$HAPROXY" -c -q -f "$TMP/haproxy.cfg" || die "haproxy config invalid"
  taskset -c 0 "$HAPROXY" -db -f "$TMP/haproxy.cfg" >"$TMP/logs/haproxy.log" 2>&1 &
  PIDS+=($!); MAINPID[haproxy]=$!
  "$PROXY" check --config "$TMP/fmp.yaml" >/dev/null || die "fhir-mtls-proxy check failed"
  taskset -c 0 "$PROXY" run --config "$TMP/fmp.yaml" >"$TMP/logs/fmp.log" 2>&1 &
  PIDS+=($!); MAINPID[fmp]=$!
  wait_port "$NGX_PORT" "${MAINPID[nginx]}" || die "nginx proxy did not start: $(cat "$TMP/logs/nginx"*)"
  wait_port "$HAP_PORT" "${MAINPID[haproxy]}" || die "haproxy did not start: $(cat "$TMP/logs/haproxy.log")"
  wait_port "$FMP_PORT" "${MAINPID[fmp]}" || die "fhir-mtls-proxy did not start: $(tail -5 "$TMP/logs/fmp.log")"
  sleep 0.2
  CPIDS[nginx]=$(children "${MAINPID[nginx]}")
  CPIDS[haproxy]=${MAINPID[haproxy]}
  CPIDS[fmp]=${MAINPID[fmp]}
  CPIDS[direct]=""
  [[ -n "${CPIDS[nginx]}" ]] || die "nginx proxy has no worker"
  PKI=$pki
}
stop_contenders() {
  local c
  for c in nginx haproxy fmp; do stop_pid "${MAINPID[$c]}"; done
}

CONTENDERS=(direct nginx haproxy fmp)
url_of() {  # contender path
  case $1 in
    direct) echo "http://127.0.0.1:$UP_PORT$2" ;;
    nginx) echo "https://127.0.0.1:$NGX_PORT$2" ;;
    haproxy) echo "https://127.0.0.1:$HAP_PORT$2" ;;
    fmp) echo "https://127.0.0.1:$FMP_PORT$2" ;;
  esac
}
RAW="$TMP/results.jsonl"
: > "$RAW"

# loadgen SCENARIO CONTENDER REP [loadgen options...]: one run, one JSON line appended to $RAW.
loadgen() {
  local scenario=$1 contender=$2 rep=$3; shift 3
  local tls=()
  if [[ $contender != direct ]]; then
    tls=(--cert "$PKI/client.pem" --key "$PKI/client.key" --ca "$PKI/ca.pem")
  fi
  local out
  if ! out=$(taskset -c 1 "$LOADGEN" --json --label "$scenario|$contender|$rep" "${tls[@]}" \
               --proxy-pids "${CPIDS[$contender]}" --rig-pids "${CPIDS[upstream]}" \
               --max-time 600 "$@" 2>>"$TMP/logs/loadgen.stderr"); then
    log "  $scenario $contender rep $rep: loadgen failed: $(tail -2 "$TMP/logs/loadgen.stderr")"
  fi
  [[ -n "$out" ]] && echo "$out" >> "$RAW"
  python3 -c '
import json, sys
j = json.loads(sys.argv[1]); s, c, r = j["label"].split("|")
print("  %-18s %-8s rep %s: %9.1f req/s  p99 %8.2f ms  proxy %7.1f us/req (%3.0f%% busy)  errors %d  other %.0f%%" % (s, c, r, j["rps"], j["latency_ms"]["p99"], j["cpu"]["proxy_us_per_request"], j["cpu"]["proxy_busy"] * 100, j["errors"]["total"], j["cpu"]["other_cores"] * 100))' "$out" >&2 2>/dev/null || true
}

# Interleaved repetitions: A B C D, A B C D, ...
interleave() {  # SCENARIO PATH [loadgen options...]; per-contender mode override via MODE_direct
  local scenario=$1 path=$2; shift 2
  local rep c extra
  log "scenario $scenario ($REPS repetition(s))"
  for rep in $(seq "$REPS"); do
    for c in "${CONTENDERS[@]}"; do
      extra=()
      if [[ $c == direct && -n "${DIRECT_MODE:-}" ]]; then extra=(--mode "$DIRECT_MODE"); fi
      loadgen "$scenario" "$c" "$rep" --url "$(url_of "$c" "$path")" "$@" "${extra[@]}"
    done
  done
}

# --- machine and versions -----------------------------------------------------------------------
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "mode: $([[ $QUICK -eq 1 ]] && echo quick || echo full), repetitions: $REPS$([[ -n $ONLY ]] && echo ", scenarios: $ONLY")"
  echo "machine: $(nproc) CPU(s), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(awk '/MemTotal/ {printf "%.1f GiB RAM", $2/1048576}' /proc/meminfo)"
  echo "kernel: $(uname -r)"
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "openssl: $(openssl version)"
  echo "nginx: $("$NGINX" -v 2>&1 | sed 's/.*: //')"
  echo "haproxy: $("$HAPROXY" -v | head -1)"
  echo "fhir-mtls-proxy: $("$PROXY" --version 2>&1 | head -1) ($PROXY)"
  echo "git: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet 2>/dev/null || echo ' (working tree modified)')"
  echo "patient body: 2135 bytes; bundle: $BUNDLE_BYTES bytes, $BUNDLE_ENTRIES entries; stream: $STREAM_MIB MiB"
} > "$TMP/machine.txt"

# --- run ------------------------------------------------------------------------------------------
log "upstream on 127.0.0.1:$UP_PORT (CPU 1); nginx :$NGX_PORT, haproxy :$HAP_PORT, fhir-mtls-proxy :$FMP_PORT (CPU 0)"
start_upstream
start_contenders "$TMP/pki-ec"

# Preflight: every contender must answer the Patient read and the Bundle with 200.
for c in "${CONTENDERS[@]}"; do
  loadgen preflight "$c" 0 --url "$(url_of "$c" /fhir/Patient/example)" --requests 5 --timeout 10
  loadgen preflight-bundle "$c" 0 --url "$(url_of "$c" /fhir)" --method POST \
    --body "$TMP/bundle.json" --requests 2 --timeout 20
done
python3 - "$RAW" <<'EOF' || die "preflight failed (see above)"
import json, sys
bad = []
for line in open(sys.argv[1]):
    j = json.loads(line)
    if j["label"].startswith("preflight") and (j["requests"] == 0 or list(j["status"]) != ["200"]):
        bad.append(f'{j["label"]}: status {j["status"]} errors {j["errors"]}')
if bad:
    print("\n".join(bad), file=sys.stderr)
    sys.exit(1)
EOF

PATIENT=/fhir/Patient/example
wanted keepalive-50 && DIRECT_MODE="" interleave keepalive-50 "$PATIENT" --mode keepalive \
  --connections $CONNS --warmup "$WARM" --duration "$DUR"
wanted handshake-full && DIRECT_MODE=new interleave handshake-full "$PATIENT" --mode new \
  --connections $CONNS --warmup "$WARM" --duration "$DUR"
wanted handshake-resumed && DIRECT_MODE=new interleave handshake-resumed "$PATIENT" \
  --mode resume --connections $CONNS --warmup "$WARM" --duration "$DUR"
wanted sequential-1 && DIRECT_MODE="" interleave sequential-1 "$PATIENT" --mode keepalive \
  --connections 1 --warmup 1 --duration "$SEQ_DUR"
wanted bundle-1mib && DIRECT_MODE="" interleave bundle-1mib "/fhir" --mode keepalive \
  --connections 4 --method POST --body "$TMP/bundle.json" --warmup 1 --duration "$BUNDLE_DUR" \
  --timeout 60

# Streaming: fresh contenders so VmHWM is this scenario's peak.
run_stream() {
  local c
  log "scenario stream (${STREAM_MIB} MiB response, once per contender, fresh processes)"
  stop_contenders; start_contenders "$TMP/pki-ec"
  for c in "${CONTENDERS[@]}"; do
    loadgen stream "$c" 1 --url "$(url_of "$c" /fhir/Binary/big)" --connections 1 --requests 1 \
      --timeout 300
    if [[ $c != direct ]]; then
      printf '{"label":"stream|%s|1","mem":{"hwm_kib":%s,"rss_kib":%s}}\n' "$c" \
        "$(sum_status_kib VmHWM "${CPIDS[$c]}")" "$(sum_status_kib VmRSS "${CPIDS[$c]}")" \
        >> "$TMP/memory.jsonl"
    fi
  done
}

# Idle connections: RSS delta per held mTLS connection.
run_idle() {
  local c before after lg established
  log "scenario idle ($IDLE_CONNS idle mTLS connections per contender)"
  for c in nginx haproxy fmp; do
    before=$(sum_status_kib VmRSS "${CPIDS[$c]}")
    rm -f "$TMP/ready"
    taskset -c 1 "$LOADGEN" --json --label "idle|$c|1" --url "$(url_of "$c" "$PATIENT")" \
      --cert "$PKI/client.pem" --key "$PKI/client.key" --ca "$PKI/ca.pem" --mode idle \
      --connections "$IDLE_CONNS" --duration "$((IDLE_HOLD + 2))" --ready-file "$TMP/ready" \
      --timeout 60 --max-time 300 --proxy-pids "${CPIDS[$c]}" \
      >> "$RAW" 2>>"$TMP/logs/loadgen.stderr" &
    lg=$!
    PIDS+=($lg)
    for _ in $(seq 3000); do [[ -e "$TMP/ready" ]] && break; kill -0 $lg 2>/dev/null || break; sleep 0.1; done
    sleep "$IDLE_HOLD"
    after=$(sum_status_kib VmRSS "${CPIDS[$c]}")
    established=$(cat "$TMP/ready" 2>/dev/null || echo 0)
    wait $lg || true
    printf '{"label":"idle|%s|1","mem":{"rss_before_kib":%s,"rss_after_kib":%s,"established":%s}}\n' \
      "$c" "$before" "$after" "${established:-0}" >> "$TMP/memory.jsonl"
    log "  idle $c: $established connections, RSS $before -> $after KiB"
  done
}

: > "$TMP/memory.jsonl"
if wanted stream; then run_stream; fi
if wanted idle; then run_idle; fi

if [[ $RSA -eq 1 ]] && wanted handshake-full-rsa; then
  stop_contenders; start_contenders "$TMP/pki-rsa"
  DIRECT_MODE=new interleave handshake-full-rsa "$PATIENT" --mode new --connections $CONNS \
    --warmup "$WARM" --duration "$DUR"
fi
stop_contenders

# --- table ----------------------------------------------------------------------------------------
{
  echo "### Machine and versions"
  echo '```'
  cat "$TMP/machine.txt"
  echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo '```'
  echo
  python3 "$ROOT/bench/summarize.py" --max-other "$MAX_OTHER" "$RAW" "$TMP/memory.jsonl"
  echo
  echo "<details><summary>Contender configurations (as generated; paths and ports vary per run)</summary>"
  echo
  for f in nginx-proxy.conf haproxy.cfg fmp.yaml upstream.conf; do
    echo "\`$f\`:"
    echo '```'
    sed "s#$TMP#\$TMP#g" "$TMP/$f"
    echo '```'
  done
  echo "Policy (\`policy.yaml\`, 1,000 rules): rules 1-997 and 999-1000 are generated variations on"
  echo "subject O/CN, SAN URI, issuer CN, fingerprint, HIPAA category, method, path and FHIR resource"
  echo "that never match the bench client; rule 998 decides:"
  echo '```yaml'
  grep -A8 'name: bench-ehr-client' "$TMP/policy.yaml"
  echo '```'
  echo "</details>"
} > "$TMP/report.md"
cat "$TMP/report.md"
grep -q "fhir-mtls-proxy vs nginx" "$TMP/report.md" || die "the table was not produced"

if [[ $WRITE_RESULTS -eq 1 ]]; then
  python3 - "$ROOT/bench/RESULTS.md" "$TMP/report.md" <<'EOF'
import sys
path, report = sys.argv[1], open(sys.argv[2]).read()
begin, end = "<!-- BEGIN GENERATED by bench/run.sh -->", "<!-- END GENERATED -->"
try:
    text = open(path).read()
except FileNotFoundError:
    text = "# Benchmark results\n\n" + begin + "\n" + end + "\n"
if begin not in text or end not in text:
    text += "\n" + begin + "\n" + end + "\n"
head, rest = text.split(begin, 1)
_, tail = rest.split(end, 1)
open(path, "w").write(head + begin + "\n" + report + "\n" + end + tail)
EOF
  log "wrote the generated section of bench/RESULTS.md"
fi
