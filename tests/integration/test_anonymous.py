"""client_cert: request and no certificate (CONTRACT.md "Settled details: Anonymous"): a path-only
rule can open /fhir/metadata; such a request is forwarded with X-Policy-Rule and no identity
headers; no rule with an identity key matches it; everything else is 401 login."""

import unittest

from datapath_fixture import ProxyTestCase
from harness import client

POLICY = {"default": "deny", "rules": [
    {"name": "any-subject", "effect": "allow",
     "when": {"subject": {"CN": ["*"]}, "fhir": {"resource": ["Patient"]}}},
    {"name": "any-trust", "effect": "allow",
     "when": {"trust": ["directtrust"], "fhir": {"resource": ["Observation"]}}},
    {"name": "any-san", "effect": "allow", "when": {"san_uri": ["*"], "path": ["/fhir/Encounter/*"]}},
    {"name": "any-issuer", "effect": "allow", "when": {"issuer": {"CN": ["*"]}, "path": ["/fhir/Basic/*"]}},
    {"name": "public-metadata", "effect": "allow",
     "when": {"method": ["GET", "HEAD"], "path": ["/fhir/metadata"]}},
]}

IDENTITY_HEADERS = ("X-Client-Subject-DN", "X-Client-Issuer-DN", "X-Client-SAN-URI",
                    "X-Client-HIPAA-Category", "X-Client-Cert-SHA256", "X-Client-Trust-Community",
                    "X-Forwarded-Client-Cert", "Client-Cert", "Client-Cert-Chain")


class AnonymousTest(ProxyTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.leaf = cls.client_cert("anon-peer")
        cls.proxy = cls.make_proxy(POLICY, client_cert="request",
                                   identity_headers={"xfcc": True, "rfc9440": True})
        cls.anon = cls.ctx(None)

    @classmethod
    def tearDownClass(cls):
        cls.proxy.stop()
        super().tearDownClass()

    def forwarded(self, ctx, method, target):
        before = len(self.up.requests)
        r = client.request(ctx, self.proxy.port, method, target)
        self.assertEqual(r.status, 200, r.body[:300])
        return self.up.wait_for_requests(before + 1)[before]

    def test_metadata_is_open_and_forwarded_without_identity(self):
        req = self.forwarded(self.anon, "GET", "/fhir/metadata")
        self.assertEqual(req.target, "/fhir/metadata")
        self.assertEqual(req.header_all("X-Policy-Rule"), ["public-metadata"])
        for name in IDENTITY_HEADERS:
            self.assertEqual(req.header_all(name), [], name)
        self.assertEqual(req.header_all("X-Forwarded-For"), ["127.0.0.1"])
        self.assertEqual(req.header_all("X-Forwarded-Proto"), ["https"])

    def test_metadata_with_query_and_head(self):
        req = self.forwarded(self.anon, "GET", "/fhir/metadata?_format=json&mode=full")
        self.assertEqual(req.target, "/fhir/metadata?_format=json&mode=full")
        req = self.forwarded(self.anon, "HEAD", "/fhir/metadata")
        self.assertEqual((req.method, req.header("X-Policy-Rule")), ("HEAD", "public-metadata"))

    def test_other_paths_are_401_login(self):
        for method, target in (("GET", "/fhir/Patient/1"), ("GET", "/fhir/Observation?code=x"),
                               ("GET", "/fhir/Encounter/1"), ("GET", "/fhir/Basic/1"),
                               ("POST", "/fhir/metadata"), ("GET", "/fhir/metadata/extra"),
                               ("GET", "/fhir")):
            with self.subTest(method=method, target=target):
                before = len(self.up.requests)
                r = client.request(self.anon, self.proxy.port, method, target)
                self.assert_outcome(r, 401, "login")
                self.assertEqual(r.header("WWW-Authenticate"), "Mutual-TLS")
                got = self.forwarded(self.anon, "GET", "/fhir/metadata")
                self.assertEqual(self.up.requests[before:], [got])

    def test_denials_are_audited_with_an_empty_identity(self):
        client.request(self.anon, self.proxy.port, "GET", "/fhir/Patient/audited?secret=s3cr3t")
        def mine(a):
            return a.get("path") == "/fhir/Patient/audited"
        records = [a for a in self.proxy.audit_lines(wait_for=1, match=mine) if mine(a)]
        self.assertEqual(len(records), 1, records)
        rec = records[0]
        self.assertEqual((rec["decision"], rec["status"]), ("deny", 401))
        self.assertFalse(rec.get("subject"))
        self.assertFalse(rec.get("fingerprint"))
        self.assertNotIn("s3cr3t", repr(records))

    def test_a_certificate_on_the_same_proxy_gets_its_identity(self):
        ctx = self.ctx(self.leaf)
        req = self.forwarded(ctx, "GET", "/fhir/Patient/1")
        self.assertEqual(req.header("X-Policy-Rule"), "any-subject")
        self.assertEqual(req.header("X-Client-Subject-DN"), self.leaf.subject_dn)
        req = self.forwarded(ctx, "GET", "/fhir/metadata")
        self.assertEqual(req.header("X-Policy-Rule"), "public-metadata")
        self.assertEqual(req.header("X-Client-Cert-SHA256"), self.leaf.fingerprint_sha256)
        self.assertEqual(req.header("X-Client-Trust-Community"), "directtrust")

    def test_anonymous_and_certified_rules_on_one_anonymous_connection(self):
        with client.Connection(self.anon, self.proxy.port) as c:
            self.assertEqual(c.request("GET", "/fhir/metadata").status, 200)
            self.assert_outcome(c.request("GET", "/fhir/Patient/1"), 401, "login")
            self.assertEqual(c.request("GET", "/fhir/metadata").status, 200)

    def test_malformed_anonymous_request_is_400(self):
        before = len(self.up.requests)
        data = client.raw(self.anon, self.proxy.port,
                          b"GET /fhir/metadata/../Patient/1 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        [r] = client.parse_responses(data)
        self.assert_outcome(r, 400, "structure")
        got = self.forwarded(self.anon, "GET", "/fhir/metadata")
        self.assertEqual(self.up.requests[before:], [got])


class AnonymousEmptyWhenTest(ProxyTestCase):
    """A rule with no `when` matches every request, anonymous ones too (CONTRACT.md "Rules")."""

    def test_rule_without_when_matches_anonymous(self):
        proxy = self.start_proxy({"default": "deny", "rules": [{"name": "open", "effect": "allow"}]},
                                 client_cert="request")
        before = len(self.up.requests)
        r = client.request(self.ctx(None), proxy.port, "DELETE", "/fhir/Patient/1")
        self.assertEqual(r.status, 200)
        req = self.up.wait_for_requests(before + 1)[before]
        self.assertEqual(req.header_all("X-Policy-Rule"), ["open"])
        self.assertEqual(req.header_all("X-Client-Subject-DN"), [])

    def test_require_mode_never_serves_anonymous(self):
        proxy = self.start_proxy({"default": "allow"}, client_cert="require")
        self.assertIsNotNone(client.handshake_error(self.ctx(None), proxy.port))


if __name__ == "__main__":
    unittest.main()
