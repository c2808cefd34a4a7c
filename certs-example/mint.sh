#!/usr/bin/env bash
# Mints the example PKI used by conf/*.yaml, the demo and the README: two trust communities
# (DirectTrust: root -> intermediate -> clients; Carequality: root -> clients), a server CA and
# server certificate for localhost, client certificates for the interesting cases (covered entity,
# business associate, patient app, another community, expired, revoked, unknown CA) and CRLs.
#
#   certs-example/mint.sh [OUTDIR]          default OUTDIR: certs-example/out
#
# Idempotent: OUTDIR is wiped and re-created on every run (only if it is empty or was made by this
# script). ECDSA P-256 keys, private keys mode 0600. Only bash and the openssl CLI (3.0+) are used.
#
# Environment overrides (useful to tests):
#   CRL_DAYS     nextUpdate of every CRL, in days from now         (default 30)
#   CA_DAYS      validity of the CA certificates, in days           (default 3650)
#   LEAF_DAYS    validity of the server and client certificates     (default 397)
#   SERVER_NAME  DNS name in the server certificate's CN and SAN   (default localhost)
#   OPENSSL      the openssl binary                                 (default openssl)
# This is an EXAMPLE PKI for a demo and tests: never use these keys for anything real.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${1:-$here/out}
CRL_DAYS=${CRL_DAYS:-30}
CA_DAYS=${CA_DAYS:-3650}
LEAF_DAYS=${LEAF_DAYS:-397}
SERVER_NAME=${SERVER_NAME:-localhost}
OPENSSL=${OPENSSL:-openssl}
marker=.minted-by-mint.sh

# DirectTrust Certificate Policy OIDs (certificatePolicies): HIPAA category and level of assurance.
readonly OID_COVERED_ENTITY=1.3.6.1.4.1.41179.2.1
readonly OID_BUSINESS_ASSOCIATE=1.3.6.1.4.1.41179.2.2
readonly OID_PATIENT=1.3.6.1.4.1.41179.2.4
readonly OID_LOA_2=1.3.6.1.4.1.41179.1.2
readonly OID_LOA_3=1.3.6.1.4.1.41179.1.3

die() {
  echo "mint.sh: $*" >&2
  exit 1
}

# Refuse to wipe a directory this script did not create: OUTDIR comes from the command line.
if [ -e "$out" ]; then
  [ -d "$out" ] || die "$out exists and is not a directory"
  if [ -n "$(ls -A "$out")" ] && [ ! -e "$out/$marker" ]; then
    die "$out is not empty and was not made by mint.sh; refusing to wipe it"
  fi
  rm -rf "$out"
fi
umask 077
mkdir -p "$out/ca"
touch "$out/$marker"
out=$(cd "$out" && pwd)
cd "$out"

cnf=ca/openssl.cnf
cat >"$cnf" <<'EOF'
# Written by mint.sh. Values that differ per certificate come from the environment.
[ req ]
distinguished_name = dn
utf8 = yes
string_mask = utf8only

[ dn ]

[ v3_root ]
basicConstraints       = critical, CA:TRUE
keyUsage               = critical, keyCertSign, cRLSign
subjectKeyIdentifier   = hash

[ v3_intermediate ]
basicConstraints       = critical, CA:TRUE, pathlen:0
keyUsage               = critical, keyCertSign, cRLSign
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid:always

[ v3_server ]
basicConstraints       = critical, CA:FALSE
keyUsage               = critical, digitalSignature
extendedKeyUsage       = serverAuth
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid:always
subjectAltName         = $ENV::FMP_SAN

[ v3_client ]
basicConstraints       = critical, CA:FALSE
keyUsage               = critical, digitalSignature
extendedKeyUsage       = clientAuth
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid:always
subjectAltName         = $ENV::FMP_SAN
certificatePolicies    = $ENV::FMP_POLICIES

# `openssl ca` is used only where `req -x509` cannot do the job: dates in the past and CRLs.
[ ca ]
default_ca = ca_default

[ ca_default ]
dir             = $ENV::FMP_CA_DIR
database        = $dir/index.txt
new_certs_dir   = $dir/issued
crlnumber       = $dir/crlnumber
serial          = $dir/serial
default_md      = sha256
policy          = policy_any
unique_subject  = no
preserve        = yes
email_in_dn     = no
copy_extensions = none
crl_extensions  = crl_ext

[ crl_ext ]
authorityKeyIdentifier = keyid:always

[ policy_any ]
countryName            = optional
organizationName       = optional
organizationalUnitName = optional
commonName             = supplied
EOF
export FMP_SAN=DNS:unused FMP_POLICIES=2.5.29.32.0 FMP_CA_DIR=ca
export OPENSSL_CONF="$out/$cnf"

# ossl ARGS...: openssl, quiet on success; on failure its messages are shown and the script stops.
ossl() {
  local log
  log=$("$OPENSSL" "$@" 2>&1 >/dev/null) || die "openssl $1 failed: $log"
}

ec_key=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -noenc)

# root NAME SUBJECT: a self-signed CA; ca/NAME.key, ca/NAME.pem and the `openssl ca` state ca/NAME/.
root() {
  ossl req -x509 "${ec_key[@]}" -config "$cnf" -extensions v3_root -subj "$2" \
    -days "$CA_DAYS" -keyout "ca/$1.key" -out "ca/$1.pem"
  ca_state "$1"
}

# intermediate NAME PARENT SUBJECT: a CA signed by PARENT (no further CAs below it: pathlen 0).
intermediate() {
  ossl req -x509 "${ec_key[@]}" -config "$cnf" -extensions v3_intermediate -subj "$3" \
    -CA "ca/$2.pem" -CAkey "ca/$2.key" -days "$CA_DAYS" -keyout "ca/$1.key" -out "ca/$1.pem"
  ca_state "$1"
}

ca_state() {
  mkdir -p "ca/$1/issued"
  : >"ca/$1/index.txt"
  echo 'unique_subject = no' >"ca/$1/index.txt.attr"
  echo 01 >"ca/$1/crlnumber"
  "$OPENSSL" rand -hex 16 >"ca/$1/serial"
}

# leaf NAME ISSUER EXTENSIONS SUBJECT SAN [POLICIES]: NAME.key, NAME-cert.pem (leaf only) and
# NAME.pem (leaf followed by the issuing CA when that CA is an intermediate).
leaf() {
  local name=$1 issuer=$2 ext=$3 subject=$4
  FMP_SAN=$5 FMP_POLICIES=${6:-2.5.29.32.0} \
    ossl req -x509 "${ec_key[@]}" -config "$cnf" -extensions "$ext" -subj "$subject" \
    -CA "ca/$issuer.pem" -CAkey "ca/$issuer.key" -days "$LEAF_DAYS" \
    -keyout "$name.key" -out "$name-cert.pem"
  chain "$name" "$issuer"
}

chain() {
  cat "$1-cert.pem" >"$1.pem"
  if [ "$(issuer_of "ca/$2.pem")" != "$(subject_of "ca/$2.pem")" ]; then
    cat "ca/$2.pem" >>"$1.pem"
  fi
}

subject_of() { "$OPENSSL" x509 -in "$1" -noout -subject -nameopt RFC2253; }
issuer_of() { "$OPENSSL" x509 -in "$1" -noout -issuer -nameopt RFC2253 | sed 's/^issuer=/subject=/'; }

# crl CA FILE: the CA's CRL listing everything revoked in its database, next update in CRL_DAYS.
crl() {
  FMP_CA_DIR="ca/$1" ossl ca -config "$cnf" -gencrl -keyfile "ca/$1.key" -cert "ca/$1.pem" \
    -crldays "$CRL_DAYS" -out "$2"
}

# --- trust community 1: DirectTrust (root -> intermediate -> clients) ---
root directtrust-root "/C=US/O=Example DirectTrust/CN=Example DirectTrust Root CA"
intermediate directtrust-intermediate directtrust-root "/C=US/O=Example DirectTrust/CN=Example DirectTrust CA"

# --- trust community 2: Carequality (root -> clients) ---
root carequality-root "/C=US/O=Example Carequality/CN=Example Carequality Root CA"

# --- the server's own CA, and a CA that no trust bundle contains ---
root server-ca "/C=US/O=Example Hospital/OU=Infrastructure/CN=Example Server CA"
root unknown-ca "/C=US/O=Example Unknown Org/CN=Example Unknown CA"

# --- the proxy's server certificate ---
server_san="DNS:$SERVER_NAME"
[ "$SERVER_NAME" = localhost ] && server_san="DNS:localhost,IP:127.0.0.1,IP:::1"
leaf server server-ca v3_server "/C=US/O=Example Hospital/OU=Infrastructure/CN=$SERVER_NAME" "$server_san"
mv server-cert.pem server-leaf.pem
# server-chain.pem: leaf then the CA (clients need only server-ca.pem, see README).
cat server-leaf.pem ca/server-ca.pem >server-chain.pem
rm server.pem
cp ca/server-ca.pem server-ca.pem

# --- client certificates (UDAP-style: SAN URI names the client application) ---
dt=directtrust-intermediate
leaf covered-entity $dt v3_client \
  "/C=US/O=Example Hospital/OU=Clinical Applications/CN=ehr-client" \
  "URI:https://apps.example-hospital.org/ehr-client,DNS:ehr-client.example-hospital.org,email:ehr-admin@example-hospital.org" \
  "$OID_COVERED_ENTITY,$OID_LOA_3"
leaf business-associate $dt v3_client \
  "/C=US/O=Example Billing Services/OU=Revenue Cycle/CN=claims-client" \
  "URI:https://apps.example-billing.com/claims-client,DNS:claims.example-billing.com,email:it@example-billing.com" \
  "$OID_BUSINESS_ASSOCIATE,$OID_LOA_3"
leaf patient-app $dt v3_client \
  "/C=US/O=Example Patient Apps/OU=Consumer Health/CN=my-health-app" \
  "URI:https://apps.example-patientapps.com/my-health-app,DNS:my-health-app.example-patientapps.com,email:support@example-patientapps.com" \
  "$OID_PATIENT,$OID_LOA_2"
leaf revoked $dt v3_client \
  "/C=US/O=Example Hospital/OU=Clinical Applications/CN=retired-client" \
  "URI:https://apps.example-hospital.org/retired-client,DNS:retired-client.example-hospital.org,email:ehr-admin@example-hospital.org" \
  "$OID_COVERED_ENTITY,$OID_LOA_3"
leaf carequality-client carequality-root v3_client \
  "/C=US/O=Example Clinic/OU=Practice Management/CN=clinic-client" \
  "URI:https://apps.example-clinic.org/fhir-client,DNS:fhir-client.example-clinic.org,email:admin@example-clinic.org" \
  "$OID_COVERED_ENTITY,$OID_LOA_3"
# An impostor: the same subject and SAN as covered-entity, issued by a CA in no trust bundle.
leaf unknown-ca unknown-ca v3_client \
  "/C=US/O=Example Hospital/OU=Clinical Applications/CN=ehr-client" \
  "URI:https://apps.example-hospital.org/ehr-client,DNS:ehr-client.example-hospital.org,email:ehr-admin@example-hospital.org" \
  "$OID_COVERED_ENTITY,$OID_LOA_3"

# expired: valid 2020-2021 (req -x509 cannot back-date, `openssl ca` can).
ossl req -new "${ec_key[@]}" -config "$cnf" -keyout expired.key -out ca/expired.csr \
  -subj "/C=US/O=Example Hospital/OU=Clinical Applications/CN=expired-client"
FMP_CA_DIR=ca/$dt FMP_SAN="URI:https://apps.example-hospital.org/expired-client,DNS:expired-client.example-hospital.org,email:ehr-admin@example-hospital.org" \
  FMP_POLICIES="$OID_COVERED_ENTITY,$OID_LOA_3" \
  ossl ca -config "$cnf" -batch -notext -rand_serial -in ca/expired.csr -cert "ca/$dt.pem" \
  -keyfile "ca/$dt.key" -extensions v3_client -startdate 20200101000000Z -enddate 20210101000000Z \
  -out expired-cert.pem
rm ca/expired.csr
chain expired $dt

# --- revocation ---
FMP_CA_DIR=ca/$dt ossl ca -config "$cnf" -revoke revoked-cert.pem -crl_reason keyCompromise \
  -keyfile "ca/$dt.key" -cert "ca/$dt.pem"
crl directtrust-root directtrust-root.crl.pem
crl $dt directtrust.crl.pem
crl carequality-root carequality.crl.pem

# --- trust bundles ---
cat ca/directtrust-root.pem ca/$dt.pem >directtrust-ca.pem
cp ca/carequality-root.pem carequality-ca.pem

# Public files readable by all; private keys stay 0600 (umask above).
chmod 0755 . ca
find . -name '*.pem' -exec chmod 0644 {} +
find . -name '*.key' -exec chmod 0600 {} +

# Self-check: every client chain verifies (or fails) the way the README says.
verify() { "$OPENSSL" verify -purpose sslclient "$@" 2>&1 || true; }
expect() { # expect WHAT PATTERN CERT VERIFY-ARGS...
  local what=$1 pattern=$2 cert=$3
  shift 3
  verify "$@" "$cert" | grep -q -- "$pattern" || die "self-check failed: $cert is not $what"
}
dt_check=(-crl_check_all -CAfile directtrust-ca.pem -CRLfile directtrust-root.crl.pem -CRLfile directtrust.crl.pem)
for c in covered-entity business-associate patient-app; do
  expect valid ': OK$' $c-cert.pem "${dt_check[@]}" -untrusted ca/$dt.pem
done
expect revoked 'certificate revoked' revoked-cert.pem "${dt_check[@]}"
expect expired 'certificate has expired' expired-cert.pem "${dt_check[@]}"
expect valid ': OK$' carequality-client-cert.pem -crl_check -CAfile carequality-ca.pem -CRLfile carequality.crl.pem
expect untrusted 'unable to get local issuer' unknown-ca-cert.pem -CAfile directtrust-ca.pem
"$OPENSSL" verify -purpose sslserver -CAfile server-ca.pem server-leaf.pem 2>&1 | grep -q ': OK$' ||
  die "self-check failed: server-leaf.pem"

echo "mint.sh: example PKI written to $out"
