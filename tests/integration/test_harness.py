"""Self-test of the integration harness: the PKI it mints, the echo upstream, the TLS client and
the process runner. Runs without the proxy binary except for the last test case."""

import hashlib
import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest

from harness import binary_path
from harness import client
from harness.pki import (HIPAA_COVERED_ENTITY, LOA_3, Pki, der_oid, der_seq, der_utf8)
from harness.proxy import ProxyProcess, metric_value, proxy_config, to_yaml
from harness.upstream import EchoUpstream, pattern_sha256


def openssl(*args):
    return subprocess.run(["openssl"] + list(args), capture_output=True, text=True, timeout=30)


class PkiTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="fmp-harness-")
        cls.pki = Pki(cls.tmp)
        cls.root = cls.pki.root("root", subject={"C": "US", "O": "Example", "CN": "Example Root"})
        cls.ca = cls.pki.intermediate("ca", cls.root, subject={"C": "US", "CN": "Example DirectTrust CA"})
        cls.leaf = cls.pki.leaf(
            "leaf", cls.ca,
            subject={"C": "US", "O": "Example Hospital", "OU": "Apps", "CN": "ehr-client"},
            sans=["URI:https://apps.example.org/ehr,v2", "DNS:ehr.example.org", "email:a@example.org"],
            policies=[HIPAA_COVERED_ENTITY, LOA_3],
            extra_ext_der={"1.3.6.1.4.1.99999.1": der_seq(der_oid(HIPAA_COVERED_ENTITY), der_utf8("patient"))})
        cls.bundle = cls.pki.bundle("trust", cls.root, cls.ca)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def verify(self, cert, *extra):
        return openssl("verify", "-purpose", "sslclient", "-CAfile", self.bundle, *extra, cert)

    def test_chain_verifies_and_carries_the_identity(self):
        self.assertEqual(self.verify(self.leaf.cert).returncode, 0)
        text = openssl("x509", "-in", self.leaf.cert, "-noout", "-text").stdout
        self.assertIn("URI:https://apps.example.org/ehr,v2", text)
        self.assertIn("Policy: 1.3.6.1.4.1.41179.2.1", text)
        self.assertIn("TLS Web Client Authentication", text)
        self.assertIn("1.3.6.1.4.1.99999.1", text)
        self.assertEqual(self.leaf.subject_dn, "CN=ehr-client,OU=Apps,O=Example Hospital,C=US")
        fp = openssl("x509", "-in", self.leaf.cert, "-noout", "-fingerprint", "-sha256").stdout
        self.assertEqual(fp.strip().split("=", 1)[1].replace(":", "").lower(), self.leaf.fingerprint_sha256)
        with open(self.leaf.chain) as f:
            self.assertEqual(f.read().count("BEGIN CERTIFICATE"), 2)

    def test_crl_revokes_and_stale_crl_is_stale(self):
        victim = self.pki.leaf("victim", self.ca)
        crl = self.pki.crl(self.ca, revoked=[victim])
        root_crl = self.pki.crl(self.root)
        checked = self.verify(victim.cert, "-crl_check_all", "-CRLfile", crl, "-CRLfile", root_crl)
        self.assertIn("certificate revoked", checked.stderr)
        self.assertEqual(self.verify(self.leaf.cert, "-crl_check_all", "-CRLfile", crl,
                                     "-CRLfile", root_crl).returncode, 0)
        stale = self.pki.crl(self.ca, next_update_days=-1, name="stale")
        self.assertIn("CRL has expired", self.verify(self.leaf.cert, "-crl_check", "-CRLfile", stale).stderr)
        der = self.pki.crl(self.ca, der=True, name="der")
        self.assertEqual(openssl("crl", "-inform", "DER", "-in", der, "-noout").returncode, 0)

    def test_past_and_future_validity(self):
        expired = self.pki.leaf("expired", self.ca, expired=True)
        self.assertIn("certificate has expired", self.verify(expired.cert).stderr)
        future = self.pki.leaf("future", self.ca, not_yet_valid=True)
        self.assertIn("not yet valid", self.verify(future.cert).stderr)
        self.assertEqual(expired.not_after.year, 2021)

    def test_key_is_private(self):
        self.assertEqual(os.stat(self.leaf.key).st_mode & 0o077, 0)


class EchoUpstreamTest(unittest.TestCase):
    def setUp(self):
        self.up = EchoUpstream().start()
        self.addCleanup(self.up.stop)

    def http(self):
        c = http.client.HTTPConnection("127.0.0.1", self.up.port, timeout=10)
        self.addCleanup(c.close)
        return c

    def test_records_headers_in_order_with_duplicates_and_case(self):
        c = self.http()
        c.putrequest("POST", "/fhir/Patient?x=1", skip_accept_encoding=True)
        c.putheader("X-Dup", "one")
        c.putheader("x-dup", "two")
        c.putheader("Content-Length", "5")
        c.endheaders(b"hello")
        r = c.getresponse()
        echoed = r.read()
        self.assertEqual(r.status, 200)
        # keep-alive: a second request on the same connection.
        c.request("GET", "/fhir/metadata")
        c.getresponse().read()
        reqs = self.up.wait_for_requests(2)
        first = reqs[0]
        self.assertEqual((first.method, first.target, first.path), ("POST", "/fhir/Patient?x=1", "/fhir/Patient"))
        self.assertEqual(first.body, b"hello")
        self.assertEqual(first.header_all("X-DUP"), ["one", "two"])
        self.assertIn(("x-dup", "two"), first.headers)
        self.assertEqual(reqs[1].conn_id, first.conn_id)
        self.assertIn(["x-dup", "two"], json.loads(echoed)["headers"])

    def test_chunked_request_body_is_dechunked(self):
        c = self.http()
        c.request("POST", "/x", body=iter([b"abc", b"defg"]), encode_chunked=True,
                  headers={"Transfer-Encoding": "chunked"})
        c.getresponse().read()
        req = self.up.wait_for_requests(1)[0]
        self.assertTrue(req.chunked)
        self.assertEqual(req.body, b"abcdefg")

    def test_behaviours(self):
        self.up.route("/fixed", status=404, body=b'{"x":1}', headers=[("X-A", "1")])
        self.up.route("/big", stream_bytes=300_000)
        self.up.route("/chunked", body=b"z" * 20000, chunked=True, chunk_size=7000)
        self.up.route("/cut", stream_bytes=100_000, close_mid_response=True)
        self.up.route("/rst", reset=True)
        c = self.http()
        c.request("GET", "/fixed")
        r = c.getresponse()
        self.assertEqual((r.status, r.read(), r.getheader("X-A")), (404, b'{"x":1}', "1"))
        c.request("GET", "/big")
        self.assertEqual(hashlib.sha256(c.getresponse().read()).hexdigest(), pattern_sha256(300_000))
        c.request("GET", "/chunked")
        r = c.getresponse()
        self.assertEqual((r.getheader("Transfer-Encoding"), r.read()), ("chunked", b"z" * 20000))
        c.request("GET", "/cut")
        with self.assertRaises(http.client.IncompleteRead):
            c.getresponse().read()
        c = self.http()
        c.request("GET", "/rst")
        with self.assertRaises((ConnectionResetError, http.client.RemoteDisconnected)):
            c.getresponse()

    def test_hang_is_released_by_stop(self):
        self.up.route("/hang", hang=True)
        s = socket.create_connection(("127.0.0.1", self.up.port), timeout=10)
        s.sendall(b"GET /hang HTTP/1.1\r\nHost: x\r\n\r\n")
        self.up.wait_for_requests(1)
        self.up.stop()
        self.assertEqual(s.recv(10), b"")
        s.close()


class TlsClientTest(unittest.TestCase):
    """client.py against a TLS EchoUpstream that requires client certificates."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="fmp-harness-")
        pki = Pki(cls.tmp)
        cls.server_ca = pki.root("server-ca")
        server = pki.server(cls.server_ca)
        client_root = pki.root("client-root")
        cls.good = pki.client("good", pki.intermediate("client-ca", client_root))
        cls.stranger = pki.client("stranger", pki.root("other-root"))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(server.chain, server.key)
        ctx.load_verify_locations(client_root.cert)
        ctx.verify_mode = ssl.CERT_REQUIRED
        cls.up = EchoUpstream(ssl_context=ctx).start()

    @classmethod
    def tearDownClass(cls):
        cls.up.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def ctx(self, cert=None):
        return client.tls_context(cert=cert.chain if cert else None, key=cert.key if cert else None,
                                  ca=self.server_ca.cert)

    def test_request_and_keep_alive(self):
        r = client.request(self.ctx(self.good), self.up.port, "POST", "/fhir/Patient",
                           headers=[("X-Test", "1")], body=b"{}")
        self.assertEqual(r.status, 200)
        status, headers, body = r
        self.assertEqual(r.json()["method"], "POST")
        with client.Connection(self.ctx(self.good), self.up.port) as c:
            a = c.request("GET", "/a")
            b = c.request("HEAD", "/b")
            self.assertEqual((a.status, b.status, b.body), (200, 200, b""))
        reqs = self.up.requests
        self.assertEqual(reqs[-1].conn_id, reqs[-2].conn_id)
        self.assertEqual(reqs[-1].header("Host"), "localhost:%d" % self.up.port)

    def test_raw_and_parse(self):
        self.up.route("/chunky", body=b"q" * 100, chunked=True, chunk_size=30)
        data = client.raw(self.ctx(self.good), self.up.port,
                          b"GET /chunky HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        [resp] = client.parse_responses(data)
        self.assertEqual((resp.status, resp.body), (200, b"q" * 100))

    def test_rejected_client_certificates(self):
        self.assertIsNone(client.handshake_error(self.ctx(self.good), self.up.port))
        self.assertIsNotNone(client.handshake_error(self.ctx(self.stranger), self.up.port))
        self.assertIsNotNone(client.handshake_error(self.ctx(None), self.up.port))


FAKE_PROXY = textwrap.dedent("""\
    import re, signal, socket, sys
    text = open(sys.argv[sys.argv.index("--config") + 1]).read()
    port = int(re.search(r'^listen: "127.0.0.1:(\\d+)"', text, re.M).group(1))
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    signal.signal(signal.SIGHUP, lambda *a: print("reloading", file=sys.stderr, flush=True))
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    s.bind(("127.0.0.1", port)); s.listen(8)
    print("fake proxy up", file=sys.stderr, flush=True)
    while True:
        signal.pause()
    """)


class ProxyProcessTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="fmp-harness-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def test_yaml_and_metrics_helpers(self):
        text = to_yaml({"listen": "127.0.0.1:1", "tls": {"min_version": "1.2", "trust": [{"name": "a", "crl": []}]},
                        "identity_headers": {"xfcc": True}})
        self.assertEqual(text, 'listen: "127.0.0.1:1"\ntls:\n  min_version: "1.2"\n  trust:\n'
                               '    - name: "a"\n      crl: []\nidentity_headers:\n  xfcc: true\n')
        metrics = ('# TYPE x counter\nx{decision="allow",rule="a"} 2\nx{decision="deny",rule="b"} 3\n'
                   'y 1.5\n')
        self.assertEqual(metric_value(metrics, "x"), 5)
        self.assertEqual(metric_value(metrics, "x", {"decision": "deny"}), 3)
        self.assertEqual(metric_value(metrics, "y"), 1.5)
        self.assertIsNone(metric_value(metrics, "x", {"decision": "shadow_allow"}))

    def test_start_signal_stop_with_a_stand_in_binary(self):
        fake = os.path.join(self.tmp, "fake-proxy")
        with open(fake, "w") as f:
            f.write("#!%s\n%s" % (sys.executable, FAKE_PROXY))
        os.chmod(fake, 0o755)
        cfg = proxy_config(("chain.pem", "key.pem"), [("dt", "ca.pem", ["a.crl"])], "http://127.0.0.1:1")
        with ProxyProcess(fake, self.tmp, cfg, {"default": "deny", "rules": []}) as p:
            self.assertTrue(client.wait_for_port(p.port, 1))
            self.assertIn("fake proxy up", p.stderr_text())
            p.reload(wait=False)
            with open(p.config_path) as f:
                self.assertIn('policy: "%s"' % p.policy_path, f.read())
            # The stand-in handles SIGHUP asynchronously: a SIGTERM sent at once may end it first.
            deadline = time.monotonic() + 5
            while "reloading" not in p.stderr_text() and time.monotonic() < deadline:
                time.sleep(0.02)
            self.assertEqual(p.stop(), 0)
        self.assertIn("reloading", p.stderr_text())


class RealProxySmokeTest(unittest.TestCase):
    """The real binary through the harness: anonymous metadata allowed, a client identity forwarded."""

    def test_forwards_with_identity(self):
        binary = binary_path()
        tmp = tempfile.mkdtemp(prefix="fmp-harness-")
        self.addCleanup(shutil.rmtree, tmp, True)
        pki = Pki(tmp)
        server_ca = pki.root("server-ca")
        root = pki.root("dt-root")
        ca = pki.intermediate("dt-ca", root, subject={"CN": "Example DirectTrust CA"})
        good = pki.client("ehr-client", ca)
        policy = {"default": "deny", "rules": [
            {"name": "metadata", "effect": "allow", "when": {"path": ["/fhir/metadata"]}},
            {"name": "hospital", "effect": "allow", "when": {"subject": {"O": ["Example Hospital"]}}}]}
        with EchoUpstream() as up:
            cfg = proxy_config(pki.server(server_ca), [("directtrust", pki.bundle("dt", root, ca))],
                               up.url, client_cert="request")
            with ProxyProcess(binary, tmp, cfg, policy) as proxy:
                anon = client.tls_context(ca=server_ca.cert)
                self.assertEqual(client.request(anon, proxy.port, "GET", "/fhir/metadata").status, 200)
                ctx = client.tls_context(cert=good.chain, key=good.key, ca=server_ca.cert)
                r = client.request(ctx, proxy.port, "GET", "/fhir/Patient/1")
                self.assertEqual(r.status, 200, r.body)
                forwarded = up.wait_for_requests(2)[1]
                self.assertEqual(forwarded.header("X-Client-Subject-DN"), good.subject_dn)
                self.assertEqual(forwarded.header("X-Policy-Rule"), "hospital")
                audit = proxy.audit_lines(wait_for=2)
                self.assertEqual([a["rule"] for a in audit], ["metadata", "hospital"])
                self.assertEqual(proxy.metric("fhir_mtls_proxy_requests_total",
                                              {"decision": "allow", "rule": "hospital"}), 1)
                # reload: a broken policy keeps the old one; a valid one applies.
                proxy.write_config(policy="default: maybe\n")
                self.assertEqual(proxy.reload(), "failure")
                self.assertEqual(client.request(ctx, proxy.port, "GET", "/fhir/Patient/1").status, 200)
                proxy.write_config(policy={"default": "deny"})
                self.assertEqual(proxy.reload(), "success")
                self.assertEqual(client.request(ctx, proxy.port, "GET", "/fhir/Patient/1").status, 403)
                self.assertEqual(proxy.stop(), 0)


if __name__ == "__main__":
    unittest.main()
