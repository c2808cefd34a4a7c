"""TLS configuration scan of the listener with sslscan (Debian package `sslscan`, installed by
deploy/install-deps.sh): min_version "1.2" with an ECDSA and with an RSA server key, and "1.3".

sslscan presents a trusted client certificate (--certs/--pk): under `client_cert: require` a TLS 1.2
handshake without one fails before the cipher could be seen as accepted. Asserted: SSLv2, SSLv3,
TLS 1.0 and 1.1 disabled (and TLS 1.2 too with min_version 1.3); every accepted cipher is an AEAD
(AES-GCM or ChaCha20-Poly1305) and, below TLS 1.3, an ECDHE one: no CBC, RC4, 3DES, NULL, EXPORT,
anonymous or static-RSA suite; no renegotiation; no compression (checked from a client too, as
Debian's sslscan cannot test compression); not vulnerable to Heartbleed. The results are printed
and summarised in the README's Security section.
"""

import re
import shutil
import subprocess
import unittest
import xml.etree.ElementTree as ET

from harness import client
from lifecycle_fixture import LifecycleTestCase

# Every cipher the listener may accept (IANA names for TLS 1.3, OpenSSL names below it).
ALLOWED = re.compile(r"^(TLS_AES_(128_GCM_SHA256|256_GCM_SHA384)|TLS_CHACHA20_POLY1305_SHA256|"
                     r"ECDHE-(ECDSA|RSA)-(AES(128-GCM-SHA256|256-GCM-SHA384)|CHACHA20-POLY1305))$")
WEAK = re.compile(r"CBC|RC4|DES|NULL|EXP|anon|ADH|AECDH|MD5|PSK|SRP|CAMELLIA|ARIA|SEED|IDEA")


class TlsScanTest(LifecycleTestCase):
    @classmethod
    def setUpClass(cls):
        if shutil.which("sslscan") is None:
            raise unittest.SkipTest("sslscan is not installed (deploy/install-deps.sh installs it)")
        super().setUpClass()
        cls.server_rsa = cls.pki.server(cls.server_ca, name="server-rsa", key_alg="rsa")

    def scan(self, min_version, server=None):
        cfg = self.config()
        if server is not None:
            cfg["tls"]["cert"], cfg["tls"]["key"] = server.chain, server.key
        cfg["tls"]["min_version"] = min_version
        proxy = self.start_proxy(cfg)
        done = subprocess.run(["sslscan", "--no-colour", "--xml=-", "--certs=" + self.client.chain,
                               "--pk=" + self.client.key, "127.0.0.1:%d" % proxy.port],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
        self.assertEqual(done.returncode, 0, done.stderr)
        xml = done.stdout[done.stdout.index(b"<?xml"):]
        test = ET.fromstring(xml).find("ssltest")
        self.assertIsNotNone(test, xml[:2000])
        protocols = {"%s%s" % (p.get("type"), p.get("version")): p.get("enabled") == "1"
                     for p in test.findall("protocol")}
        ciphers = [(c.get("sslversion"), c.get("cipher"), c.get("strength"))
                   for c in test.findall("cipher")]
        reneg = test.find("renegotiation")
        heartbleed = [h.get("vulnerable") for h in test.findall("heartbleed")]
        compression = test.find("compression")
        print("\nsslscan min_version %s, %s key: protocols %s; ciphers %s; renegotiation %s" % (
            min_version, "RSA" if server is not None else "ECDSA",
            sorted(k for k, v in protocols.items() if v),
            ["%s %s" % (v, c) for v, c, _ in ciphers], dict(reneg.attrib) if reneg is not None else None))
        return proxy, protocols, ciphers, reneg, heartbleed, compression

    def check_common(self, proxy, protocols, ciphers, reneg, heartbleed, compression):
        for old in ("ssl2", "ssl3", "tls1.0", "tls1.1"):
            self.assertIs(protocols.get(old), False, "%s not reported disabled: %r" % (old, protocols))
        self.assertTrue(protocols.get("tls1.3"), protocols)
        self.assertTrue(ciphers, "sslscan saw no accepted cipher")
        for version, name, strength in ciphers:
            self.assertRegex(name, ALLOWED, "%s %s" % (version, name))
            self.assertNotRegex(name, WEAK)
            self.assertNotIn(strength, ("null", "anonymous", "weak", "medium"), name)
            if version != "TLSv1.3":
                self.assertTrue(name.startswith("ECDHE-"), name)
        self.assertIsNotNone(reneg)
        self.assertEqual(reneg.get("supported"), "0", reneg.attrib)
        self.assertTrue(heartbleed)
        self.assertEqual(set(heartbleed), {"0"})
        if compression is not None:
            self.assertEqual(compression.get("supported"), "0")
        # Compression, from a client that offers it (OpenSSL's default): the session has none.
        for max_version in ("1.2", "1.3"):
            if max_version == "1.2" and not protocols.get("tls1.2"):
                continue
            ctx = client.tls_context(cert=self.client.chain, key=self.client.key,
                                     ca=self.server_ca.cert, max_version=max_version)
            with client.Connection(ctx, proxy.port) as c:
                self.assertIsNone(c.sock.compression())
                self.assertEqual(c.request("GET", "/fhir/Patient/1").status, 200)

    def test_min_version_1_2_ecdsa(self):
        result = self.scan("1.2")
        self.check_common(*result)
        protocols, ciphers = result[1], result[2]
        self.assertTrue(protocols.get("tls1.2"), protocols)
        tls12 = {c for v, c, _ in ciphers if v == "TLSv1.2"}
        self.assertTrue(tls12)
        self.assertTrue(all(c.startswith("ECDHE-ECDSA-") for c in tls12), tls12)

    def test_min_version_1_2_rsa(self):
        result = self.scan("1.2", server=self.server_rsa)
        self.check_common(*result)
        tls12 = {c for v, c, _ in result[2] if v == "TLSv1.2"}
        self.assertTrue(tls12)
        self.assertTrue(all(c.startswith("ECDHE-RSA-") for c in tls12), tls12)

    def test_min_version_1_3(self):
        result = self.scan("1.3")
        self.check_common(*result)
        protocols, ciphers = result[1], result[2]
        self.assertIs(protocols.get("tls1.2"), False, protocols)
        self.assertEqual({v for v, _, _ in ciphers}, {"TLSv1.3"})


if __name__ == "__main__":
    unittest.main()
