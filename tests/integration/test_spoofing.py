"""A client can never choose what the FHIR server sees: identity, certificate and X-Forwarded-*
headers sent by the client are removed in any case and any number of copies, before the proxy sets
its own (CONTRACT.md "What reaches the FHIR server")."""

import base64
import unittest

from datapath_fixture import HIPAA_COVERED_ENTITY, MARKER_RULE, ProxyTestCase
from harness import client

POLICY = {"default": "deny", "rules": [
    MARKER_RULE,
    {"name": "metadata-open", "effect": "allow", "when": {"path": ["/fhir/metadata"]}},
    {"name": "hospital", "effect": "allow", "when": {"subject": {"O": ["Example Hospital"]}}},
]}

FAKE_DN = "CN=admin,O=Evil Corp"
FAKE = "forged-by-client"

# Names under the default configuration.
DEFAULT_NAMES = {"subject": "X-Client-Subject-DN", "issuer": "X-Client-Issuer-DN",
                 "san_uri": "X-Client-SAN-URI", "hipaa": "X-Client-HIPAA-Category",
                 "fingerprint": "X-Client-Cert-SHA256", "trust": "X-Client-Trust-Community",
                 "rule": "X-Policy-Rule"}
CUSTOM_NAMES = {"subject": "SSL-Client-Subject", "issuer": "SSL-Client-Issuer",
                "san_uri": "SSL-Client-URI", "hipaa": "SSL-Client-HIPAA",
                "fingerprint": "SSL-Client-Fingerprint", "trust": "SSL-Client-Community",
                "rule": "Authz-Rule"}
CERT_HEADERS = ("X-Forwarded-Client-Cert", "Client-Cert", "Client-Cert-Chain")


def spoofed(names):
    """Headers a hostile client sends: every identity header in several cases and copies, the
    certificate headers and the X-Forwarded-* family."""
    out = [(names["subject"], FAKE_DN), (names["subject"].lower(), FAKE_DN),
           (names["subject"].upper(), FAKE_DN),
           (names["san_uri"].upper(), "https://evil.example/a"),
           (names["san_uri"].upper(), "https://evil.example/b"),
           (names["rule"], "admin-rule"), (names["rule"].swapcase(), "admin-rule"),
           (names["issuer"], FAKE), (names["hipaa"], "covered-entity"),
           (names["fingerprint"], "00" * 32), (names["trust"], "directtrust"),
           ("X-Forwarded-Client-Cert", "Hash=" + "00" * 32 + ";Subject=\"" + FAKE_DN + "\""),
           ("x-forwarded-client-cert", "By=spoof"),
           ("Client-Cert", ":" + base64.b64encode(b"not a certificate").decode() + ":"),
           ("CLIENT-CERT", ":AAAA:"),
           ("Client-Cert-Chain", ":AAAA:, :BBBB:"),
           ("X-Forwarded-For", "10.1.2.3"), ("x-forwarded-for", "10.9.9.9"),
           ("X-Forwarded-Proto", "http"), ("X-Forwarded-Host", "evil.example"),
           ("Forwarded", "for=10.1.2.3;proto=http;by=evil"), ("FORWARDED", "for=10.4.4.4")]
    return out


class SpoofingChecks:
    """Mixed into a ProxyTestCase: one proxy per class, configured by IDENTITY_HEADERS."""

    IDENTITY_HEADERS = None
    NAMES = DEFAULT_NAMES

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.leaf = cls.client_cert("spoof-client",
                                   subject={"O": "Example Hospital", "CN": "spoof-client"},
                                   sans=["URI:https://apps.example.org/real"],
                                   policies=[HIPAA_COVERED_ENTITY])
        extra = {"identity_headers": cls.IDENTITY_HEADERS} if cls.IDENTITY_HEADERS else {}
        cls.proxy = cls.make_proxy(POLICY, **extra)

    @classmethod
    def tearDownClass(cls):
        cls.proxy.stop()
        super().tearDownClass()

    def send(self, headers, target="/fhir/Patient/1", cert="leaf"):
        before = len(self.up.requests)
        ctx = self.ctx(self.leaf if cert == "leaf" else cert)
        r = client.request(ctx, self.proxy.port, "GET", target, headers)
        self.assertEqual(r.status, 200, r.body[:300])
        return self.up.wait_for_requests(before + 1)[before]

    def assert_only_proxy_values(self, req):
        n = self.NAMES
        expected = {n["subject"]: "CN=spoof-client,O=Example Hospital",
                    n["issuer"]: self.ca.subject_dn,
                    n["san_uri"]: "https://apps.example.org/real",
                    n["hipaa"]: "covered-entity",
                    n["fingerprint"]: self.leaf.fingerprint_sha256,
                    n["trust"]: "directtrust",
                    n["rule"]: "hospital",
                    "X-Forwarded-For": "127.0.0.1",
                    "X-Forwarded-Proto": "https",
                    "X-Forwarded-Host": "localhost:%d" % self.proxy.port}
        for name, value in expected.items():
            self.assertEqual(req.header_all(name), [value], name)
        self.assertEqual(req.header_all("Forwarded"), [])
        xfcc = bool(self.IDENTITY_HEADERS and self.IDENTITY_HEADERS.get("xfcc"))
        rfc9440 = bool(self.IDENTITY_HEADERS and self.IDENTITY_HEADERS.get("rfc9440"))
        got_xfcc = req.header_all("X-Forwarded-Client-Cert")
        if xfcc:
            self.assertEqual(len(got_xfcc), 1)
            self.assertTrue(got_xfcc[0].startswith("Hash=" + self.leaf.fingerprint_sha256 + ";"))
            self.assertNotIn("Evil", got_xfcc[0])
        else:
            self.assertEqual(got_xfcc, [])
        got_cert = req.header_all("Client-Cert")
        got_chain = req.header_all("Client-Cert-Chain")
        if rfc9440:
            self.assertEqual(len(got_cert), 1)
            self.assertEqual(base64.b64decode(got_cert[0].strip(":")), self.leaf.der())
            self.assertEqual(len(got_chain), 1)
            self.assertEqual(base64.b64decode(got_chain[0].strip(":")), self.ca.der())
        else:
            self.assertEqual((got_cert, got_chain), ([], []))
        for _, value in req.headers:
            self.assertNotIn("Evil", value)
            self.assertNotIn("10.", value)
            self.assertNotIn(FAKE, value)
            self.assertNotIn("evil.example", value)

    def test_spoofed_headers_replaced(self):
        self.assert_only_proxy_values(self.send(spoofed(self.NAMES)))

    def test_spoofed_headers_with_odd_spacing_replaced(self):
        n = self.NAMES
        req = self.send([(n["subject"], "  " + FAKE_DN + "  "), (n["rule"], "\tadmin"),
                         (n["fingerprint"], ""), (n["trust"], "")])
        self.assert_only_proxy_values(req)

    def test_connection_header_cannot_remove_proxy_headers(self):
        # A client naming identity headers in Connection hopes the proxy drops its own copies
        # as hop-by-hop; they must be set regardless, and the Connection header not forwarded.
        n = self.NAMES
        tokens = ", ".join([n["subject"], n["rule"], n["fingerprint"], "X-Forwarded-For",
                            "X-Forwarded-Proto", "X-Forwarded-Host"] + list(CERT_HEADERS))
        req = self.send([("Connection", "keep-alive, " + tokens), (n["subject"], FAKE_DN)])
        self.assert_only_proxy_values(req)
        self.assertEqual(req.header_all("Connection"), [])

    def test_spoofed_headers_on_a_kept_alive_connection(self):
        before = len(self.up.requests)
        with client.Connection(self.ctx(self.leaf), self.proxy.port) as c:
            for _ in range(3):
                self.assertEqual(c.request("GET", "/fhir/Patient/1", spoofed(self.NAMES)).status, 200)
        for req in self.up.wait_for_requests(before + 3)[before:]:
            self.assert_only_proxy_values(req)


class DefaultNamesTest(SpoofingChecks, ProxyTestCase):
    """Default names, xfcc and rfc9440 off."""

    def test_underscore_variants_are_removed_too(self):
        # Many servers (CGI/WSGI, PHP, some gateways) map "X_Client_Subject_DN" and
        # "X-Client-Subject-DN" to the same variable: a client must not reach the server that way.
        req = self.send([("X_Client_Subject_DN", FAKE_DN), ("x_policy_rule", "admin"),
                         ("Client_Cert", ":AAAA:"), ("X_Forwarded_For", "10.1.2.3")])
        for name in ("X_Client_Subject_DN", "x_policy_rule", "Client_Cert", "X_Forwarded_For"):
            self.assertEqual(req.header_all(name), [], name)
        self.assert_only_proxy_values(req)


class CertificateHeadersEnabledTest(SpoofingChecks, ProxyTestCase):
    IDENTITY_HEADERS = {"xfcc": True, "rfc9440": True}


class CustomNamesTest(SpoofingChecks, ProxyTestCase):
    """identity_headers renamed (and the certificate headers on)."""

    IDENTITY_HEADERS = dict(CUSTOM_NAMES, xfcc=True, rfc9440=True)
    NAMES = CUSTOM_NAMES

    def test_default_names_are_not_injected(self):
        req = self.send([])
        for name in DEFAULT_NAMES.values():
            self.assertEqual(req.header_all(name), [], name)
        self.assert_only_proxy_values(req)


class AnonymousSpoofingTest(ProxyTestCase):
    """client_cert: request and no certificate: the identity headers a client sends never reach
    the server, and the proxy adds none but X-Policy-Rule."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.proxy = cls.make_proxy(POLICY, client_cert="request",
                                   identity_headers={"xfcc": True, "rfc9440": True})

    @classmethod
    def tearDownClass(cls):
        cls.proxy.stop()
        super().tearDownClass()

    def test_anonymous_client_cannot_inject_identity(self):
        before = len(self.up.requests)
        r = client.request(self.ctx(None), self.proxy.port, "GET", "/fhir/metadata",
                           spoofed(DEFAULT_NAMES))
        self.assertEqual(r.status, 200, r.body[:300])
        req = self.up.wait_for_requests(before + 1)[before]
        for key, name in DEFAULT_NAMES.items():
            if key != "rule":
                self.assertEqual(req.header_all(name), [], name)
        self.assertEqual(req.header_all("X-Policy-Rule"), ["metadata-open"])
        for name in CERT_HEADERS + ("Forwarded",):
            self.assertEqual(req.header_all(name), [], name)
        self.assertEqual(req.header_all("X-Forwarded-For"), ["127.0.0.1"])
        self.assertEqual(req.header_all("X-Forwarded-Proto"), ["https"])

    def test_anonymous_spoofed_subject_does_not_match_a_subject_rule(self):
        before = len(self.up.requests)
        r = client.request(self.ctx(None), self.proxy.port, "GET", "/fhir/Patient/1",
                           [("X-Client-Subject-DN", "CN=x,O=Example Hospital")])
        self.assert_outcome(r, 401, "login")
        self.assert_upstream_untouched(before, self.proxy)


if __name__ == "__main__":
    unittest.main()
