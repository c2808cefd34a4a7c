"""Per-test PKI minted with the openssl CLI: CAs, client/server leaves, CRLs.

Every certificate uses an EC P-256 key (RSA on request) and costs one openssl call; certificates with
explicit (past or future) validity dates and CRLs go through `openssl ca` with a minimal config.

    pki = Pki(tmpdir)
    root = pki.root("dt-root")
    ca = pki.intermediate("dt-ca", root, subject={"C": "US", "O": "Example", "CN": "Example DirectTrust CA"})
    client = pki.leaf("client", ca, subject={"O": "Example Hospital", "CN": "ehr"},
                      sans=["URI:https://apps.example.org/ehr"], policies=[HIPAA_COVERED_ENTITY])
    server = pki.server(pki.root("server-ca"))
    crl = pki.crl(ca, revoked=[client])
"""

import datetime
import hashlib
import os
import secrets
import ssl
import subprocess

HIPAA_COVERED_ENTITY = "1.3.6.1.4.1.41179.2.1"
HIPAA_BUSINESS_ASSOCIATE = "1.3.6.1.4.1.41179.2.2"
HIPAA_HEALTHCARE_ENTITY = "1.3.6.1.4.1.41179.2.3"
HIPAA_PATIENT = "1.3.6.1.4.1.41179.2.4"
LOA_1 = "1.3.6.1.4.1.41179.1.1"
LOA_2 = "1.3.6.1.4.1.41179.1.2"
LOA_3 = "1.3.6.1.4.1.41179.1.3"
LOA_4 = "1.3.6.1.4.1.41179.1.4"

EXPIRED = ("20200101000000Z", "20210101000000Z")
NOT_YET_VALID = ("20990101000000Z", "21000101000000Z")


class PkiError(RuntimeError):
    """An openssl command failed; the message holds the command and its output."""


class Cert:
    """A minted certificate and its key.

    Attributes: name, cert (leaf PEM path), key (private key PEM path), chain (PEM path: this
    certificate then every CA above it except the self-signed root), issuer (Cert or None for a root),
    is_ca, serial (int), not_after (datetime, UTC).
    """

    def __init__(self, name, cert, key, chain, issuer, is_ca, serial, not_after):
        self.name = name
        self.cert = cert
        self.key = key
        self.chain = chain
        self.issuer = issuer
        self.is_ca = is_ca
        self.serial = serial
        self.not_after = not_after
        self._subject = None

    def pem(self):
        """The certificate as PEM text."""
        with open(self.cert) as f:
            return f.read()

    def der(self):
        """The certificate as DER bytes."""
        return ssl.PEM_cert_to_DER_cert(self.pem())

    @property
    def fingerprint_sha256(self):
        """Lowercase hex SHA-256 of the DER certificate, without colons (the proxy's format)."""
        return hashlib.sha256(self.der()).hexdigest()

    @property
    def subject_dn(self):
        """The subject as OpenSSL prints it with XN_FLAG_RFC2253 (e.g. CN=a,O=b,C=US)."""
        if self._subject is None:
            out = _openssl(["x509", "-in", self.cert, "-noout", "-subject", "-nameopt", "RFC2253"])
            self._subject = out.decode().strip().split("=", 1)[1]
        return self._subject

    @property
    def root(self):
        """The self-signed root this certificate chains to (itself for a root)."""
        c = self
        while c.issuer is not None:
            c = c.issuer
        return c

    def __repr__(self):
        return "Cert(%r)" % self.name


def _openssl(args, env=None):
    proc = subprocess.run(["openssl"] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env=env, timeout=30)
    if proc.returncode != 0:
        raise PkiError("openssl %s failed (%d):\n%s%s" % (" ".join(args), proc.returncode,
                                                         proc.stdout.decode(errors="replace"),
                                                         proc.stderr.decode(errors="replace")))
    return proc.stdout


def _subj(subject):
    """openssl -subj from a dict (issue order, e.g. C, O, OU, CN), a list of (attr, value) or a str."""
    if isinstance(subject, str):
        return subject
    items = subject.items() if isinstance(subject, dict) else subject
    out = ""
    for attr, value in items:
        out += "/%s=%s" % (attr, value.replace("\\", "\\\\").replace("/", "\\/").replace("+", "\\+"))
    return out


def _conf_value(value):
    # openssl config values: '#' starts a comment and '$' expands variables unless escaped.
    return value.replace("\\", "\\\\").replace("$", "\\$").replace("#", "\\#")


def _gentime(value):
    """YYYYMMDDHHMMSSZ from a datetime (UTC), or a string passed through."""
    if isinstance(value, datetime.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(datetime.timezone.utc).replace(tzinfo=None)
        return value.strftime("%Y%m%d%H%M%SZ")
    return value


def _validity(validity, expired, not_yet_valid):
    if expired:
        return EXPIRED
    if not_yet_valid:
        return NOT_YET_VALID
    return validity


def _parse_gentime(value):
    return datetime.datetime.strptime(value, "%Y%m%d%H%M%SZ")


def _utcnow():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None, microsecond=0)


# --- DER builders for private extensions (hipaa_extensions tests) --------------------------------

def _der_len(n):
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def der_tlv(tag, content):
    """One DER TLV with a single-byte tag."""
    return bytes([tag]) + _der_len(len(content)) + content


def der_oid(oid):
    """DER OBJECT IDENTIFIER for a dotted OID string."""
    arcs = [int(a) for a in oid.split(".")]
    body = bytearray()
    first = arcs[0] * 40 + arcs[1]
    for arc in [first] + arcs[2:]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body.extend(reversed(chunk))
    return der_tlv(0x06, bytes(body))


def der_utf8(text):
    """DER UTF8String."""
    return der_tlv(0x0C, text.encode("utf-8"))


def der_printable(text):
    """DER PrintableString."""
    return der_tlv(0x13, text.encode("ascii"))


def der_ia5(text):
    """DER IA5String."""
    return der_tlv(0x16, text.encode("ascii"))


def der_seq(*items):
    """DER SEQUENCE of already-encoded items."""
    return der_tlv(0x30, b"".join(items))


class Pki:
    """Mints certificates into `directory` (created if missing). Not thread-safe.

    Subjects are a dict in issue order ({"C": "US", "O": "Example", "CN": "x"}), a list of
    (attribute, value) pairs (for repeated attributes) or an openssl -subj string; the default is
    {"CN": name}. Names must be unique within one Pki (they name the files).
    """

    def __init__(self, directory):
        self.dir = os.path.abspath(directory)
        os.makedirs(self.dir, exist_ok=True)
        self._env = dict(os.environ)
        self._env.pop("OPENSSL_CONF", None)

    def path(self, filename):
        """An absolute path inside the PKI directory."""
        return os.path.join(self.dir, filename)

    # --- certificates --------------------------------------------------------------------------

    def root(self, name, subject=None, days=3650, validity=None, expired=False, not_yet_valid=False,
             key_alg="ec"):
        """A self-signed CA (basicConstraints CA:TRUE, keyCertSign/cRLSign)."""
        validity = _validity(validity, expired, not_yet_valid)
        ext = ["basicConstraints = critical, CA:TRUE",
               "keyUsage = critical, keyCertSign, cRLSign",
               "subjectKeyIdentifier = hash"]
        return self._issue(name, None, subject, ext, True, days, validity, key_alg)

    def intermediate(self, name, parent, subject=None, days=3650, pathlen=0, validity=None,
                     expired=False, not_yet_valid=False, key_alg="ec"):
        """A CA signed by `parent` (pathlen None: unlimited)."""
        validity = _validity(validity, expired, not_yet_valid)
        bc = "critical, CA:TRUE" + ("" if pathlen is None else ", pathlen:%d" % pathlen)
        ext = ["basicConstraints = " + bc,
               "keyUsage = critical, keyCertSign, cRLSign",
               "subjectKeyIdentifier = hash",
               "authorityKeyIdentifier = keyid:always"]
        return self._issue(name, parent, subject, ext, True, days, validity, key_alg)

    def leaf(self, name, issuer, subject=None, sans=(), policies=(), eku="clientAuth", days=365,
             validity=None, expired=False, not_yet_valid=False, extra_ext_der=None,
             extra_ext=(), key_alg="ec"):
        """An end-entity certificate signed by `issuer`.

        sans: openssl-style entries "URI:https://...", "DNS:a.example", "email:a@b", "IP:127.0.0.1"
        (values may contain commas). policies: certificatePolicies OIDs. eku: "clientAuth",
        "serverAuth", "clientAuth,serverAuth" or None (no EKU extension). validity: (not_before,
        not_after) as YYYYMMDDHHMMSSZ strings or datetimes; expired / not_yet_valid are shortcuts
        (2020-2021 / 2099-2100). extra_ext_der: {oid: DER bytes or hex string} added as non-critical
        raw extensions (prefix the hex with "critical," to mark one critical). extra_ext: raw
        openssl extension config lines.
        """
        validity = _validity(validity, expired, not_yet_valid)
        ext = ["basicConstraints = critical, CA:FALSE",
               "keyUsage = critical, digitalSignature",
               "subjectKeyIdentifier = hash",
               "authorityKeyIdentifier = keyid:always"]
        if eku:
            ext.append("extendedKeyUsage = " + eku)
        sections = {}
        if sans:
            ext.append("subjectAltName = @alt")
            counts = {}
            lines = []
            for san in sans:
                kind, value = san.split(":", 1)
                counts[kind] = counts.get(kind, 0) + 1
                lines.append("%s.%d = %s" % (kind, counts[kind], _conf_value(value)))
            sections["alt"] = lines
        if policies:
            ext.append("certificatePolicies = " + ", ".join(policies))
        for oid, der in (extra_ext_der or {}).items():
            critical = ""
            if isinstance(der, str) and der.startswith("critical,"):
                critical, der = "critical, ", der[len("critical,"):]
            hexstr = der.hex() if isinstance(der, (bytes, bytearray)) else der.replace(":", "")
            ext.append("%s = %sDER:%s" % (oid, critical, hexstr))
        ext.extend(extra_ext)
        return self._issue(name, issuer, subject, ext, False, days, validity, key_alg, sections)

    def server(self, issuer, name="server", sans=("DNS:localhost", "IP:127.0.0.1", "IP:::1"),
               subject=None, **kwargs):
        """A TLS server leaf (EKU serverAuth, CN=localhost by default)."""
        return self.leaf(name, issuer, subject=subject or {"CN": "localhost"}, sans=sans,
                         eku="serverAuth", **kwargs)

    def client(self, name, issuer, **kwargs):
        """A client leaf with a realistic default identity (covered entity, LoA 3)."""
        kwargs.setdefault("subject", {"C": "US", "O": "Example Hospital", "OU": "Clinical Applications",
                                      "CN": name})
        kwargs.setdefault("sans", ["URI:https://apps.example-hospital.org/%s" % name])
        kwargs.setdefault("policies", [HIPAA_COVERED_ENTITY, LOA_3])
        return self.leaf(name, issuer, **kwargs)

    # --- bundles and CRLs ----------------------------------------------------------------------

    def bundle(self, name, *certs):
        """A PEM file concatenating the given certificates (e.g. a trust bundle); returns its path."""
        path = self.path(name if name.endswith(".pem") else name + ".pem")
        with open(path, "w") as f:
            for c in certs:
                f.write(c.pem())
        return path

    def crl(self, ca, revoked=(), next_update_days=30, der=False, name=None, last_update=None):
        """The CRL of `ca` listing `revoked` (Certs it issued), signed now; returns its path.

        next_update_days < 0 makes a stale CRL (nextUpdate in the past; lastUpdate 30 days before
        it). last_update overrides lastUpdate (datetime or YYYYMMDDHHMMSSZ). der=True writes DER.
        The file is NAME.crl.pem / .crl.der (NAME defaults to the CA's name and is overwritten on the
        next call with the same name).
        """
        now = _utcnow()
        next_update = now + datetime.timedelta(days=next_update_days)
        if last_update is None:
            last_update = (next_update - datetime.timedelta(days=30)) if next_update_days < 0 \
                else now - datetime.timedelta(minutes=1)
        db = self._ca_db(ca)
        revdate = (now - datetime.timedelta(minutes=1)).strftime("%y%m%d%H%M%SZ")
        with open(os.path.join(db, "index.txt"), "w") as f:
            for c in revoked:
                expiry = c.not_after.strftime("%y%m%d%H%M%SZ" if c.not_after.year < 2050 else "%Y%m%d%H%M%SZ")
                f.write("R\t%s\t%s\t%X\tunknown\t/CN=%s\n" % (expiry, revdate, c.serial, c.name))
        cnf = self._ca_config(ca.name, db)
        base = self.path((name or ca.name) + ".crl")
        pem = base + ".pem"
        _openssl(["ca", "-config", cnf, "-gencrl", "-keyfile", ca.key, "-cert", ca.cert,
                  "-crl_lastupdate", _gentime(last_update), "-crl_nextupdate", _gentime(next_update),
                  "-out", pem], self._env)
        if not der:
            return pem
        out = base + ".der"
        _openssl(["crl", "-in", pem, "-outform", "DER", "-out", out], self._env)
        return out

    # --- internals -----------------------------------------------------------------------------

    def _issue(self, name, issuer, subject, ext, is_ca, days, validity, key_alg, sections=None):
        cert, key = self.path(name + ".pem"), self.path(name + ".key")
        if os.path.exists(cert):
            raise ValueError("certificate name %r already used in this Pki" % name)
        serial = int.from_bytes(secrets.token_bytes(16), "big") >> 2 | (1 << 124)
        subj = _subj(subject if subject is not None else {"CN": name})
        lines = ["[req]", "distinguished_name = dn", "string_mask = utf8only", "utf8 = yes", "",
                 "[dn]", "", "[ext]"] + ext
        for section, body in (sections or {}).items():
            lines += ["", "[%s]" % section] + body
        cnf = self.path(name + ".cnf")
        with open(cnf, "w") as f:
            f.write("\n".join(lines) + "\n")
        newkey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"] if key_alg == "ec" \
            else ["-newkey", "rsa:2048"]
        old_umask = os.umask(0o077)
        try:
            if validity is None:
                args = ["req", "-x509", "-config", cnf, "-extensions", "ext", "-subj", subj,
                        "-days", str(days), "-set_serial", str(serial), "-noenc", "-keyout", key,
                        "-out", cert] + newkey
                if issuer is not None:
                    args += ["-CA", issuer.cert, "-CAkey", issuer.key]
                _openssl(args, self._env)
                not_after = _utcnow() + datetime.timedelta(days=days)
            else:
                not_before, not_after_s = (_gentime(v) for v in validity)
                csr = self.path(name + ".csr")
                _openssl(["req", "-new", "-config", cnf, "-subj", subj, "-noenc", "-keyout", key,
                          "-out", csr] + newkey, self._env)
                signer = issuer if issuer is not None else None
                db = self._ca_db(signer if signer is not None else _SelfSigned(name, cert, key))
                with open(os.path.join(db, "serial"), "w") as f:
                    f.write("%X\n" % serial)
                open(os.path.join(db, "index.txt"), "w").close()
                ca_cnf = self._ca_config(name, db, extfile_lines=lines)
                args = ["ca", "-config", ca_cnf, "-batch", "-notext", "-in", csr, "-extensions", "ext",
                        "-startdate", not_before, "-enddate", not_after_s, "-out", cert]
                if issuer is None:
                    args += ["-selfsign", "-keyfile", key]
                else:
                    args += ["-cert", issuer.cert, "-keyfile", issuer.key]
                _openssl(args, self._env)
                not_after = _parse_gentime(not_after_s)
        finally:
            os.umask(old_umask)
        os.chmod(cert, 0o644)
        chain = cert
        if issuer is not None and issuer.issuer is not None:
            chain = self.path(name + "-chain.pem")
            with open(chain, "w") as out, open(cert) as leaf, open(issuer.chain) as up:
                out.write(leaf.read() + up.read())
        return Cert(name, cert, key, chain, issuer, is_ca, serial, not_after)

    def _ca_db(self, ca):
        db = self.path("ca-db-" + ca.name)
        os.makedirs(db, exist_ok=True)
        for fn, content in (("crlnumber", "01\n"), ("serial", "01\n")):
            p = os.path.join(db, fn)
            if not os.path.exists(p):
                with open(p, "w") as f:
                    f.write(content)
        if not os.path.exists(os.path.join(db, "index.txt")):
            open(os.path.join(db, "index.txt"), "w").close()
        with open(os.path.join(db, "index.txt.attr"), "w") as f:
            f.write("unique_subject = no\n")
        return db

    def _ca_config(self, name, db, extfile_lines=()):
        cnf = os.path.join(db, "ca-%s.cnf" % name)
        lines = list(extfile_lines) + [
            "", "[ca]", "default_ca = ca_default", "", "[ca_default]",
            "database = %s" % os.path.join(db, "index.txt"),
            "new_certs_dir = %s" % db,
            "serial = %s" % os.path.join(db, "serial"),
            "crlnumber = %s" % os.path.join(db, "crlnumber"),
            "default_md = sha256", "policy = policy_any", "unique_subject = no", "preserve = yes",
            "email_in_dn = no", "copy_extensions = none", "crl_extensions = crl_ext", "",
            "[crl_ext]", "authorityKeyIdentifier = keyid:always", "",
            "[policy_any]", "countryName = optional", "stateOrProvinceName = optional",
            "localityName = optional", "organizationName = optional",
            "organizationalUnitName = optional", "commonName = optional",
            "emailAddress = optional"]
        with open(cnf, "w") as f:
            f.write("\n".join(lines) + "\n")
        return cnf


class _SelfSigned:
    """Stands in for the issuer while a root is minted with explicit validity dates."""

    def __init__(self, name, cert, key):
        self.name, self.cert, self.key = name, cert, key
