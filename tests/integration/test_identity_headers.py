"""What reaches the FHIR server: the identity headers' exact values, XFCC and RFC 9440 headers,
X-Forwarded-*, and the request itself unchanged (CONTRACT.md "What reaches the FHIR server",
"Settled details: Header values")."""

import base64
import hashlib
import ssl
import unittest

from datapath_fixture import (HIPAA_BUSINESS_ASSOCIATE, HIPAA_COVERED_ENTITY, LOA_3,
                              ProxyTestCase, sha256)
from harness import client

POLICY = {"default": "deny", "rules": [
    {"name": "deny-delete", "effect": "deny", "when": {"method": ["DELETE"]}},
    {"name": "hospital-apps", "effect": "allow",
     "when": {"trust": ["directtrust"], "subject": {"O": ["Example Hospital"]}}},
]}

URI_PLAIN = "https://apps.example.org/ehr"
URI_COMMA = "urn:example:ehr,v2"
IDENTITY_NAMES = ("X-Client-Subject-DN", "X-Client-Issuer-DN", "X-Client-SAN-URI",
                  "X-Client-HIPAA-Category", "X-Client-Cert-SHA256", "X-Client-Trust-Community",
                  "X-Policy-Rule")


class IdentityHeadersTest(ProxyTestCase):
    """Default header names, xfcc and rfc9440 off."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.leaf = cls.client_cert(
            "ehr-client",
            subject={"C": "US", "O": "Example Hospital", "OU": "Clinical Applications",
                     "CN": "ehr-client"},
            sans=["URI:" + URI_PLAIN, "URI:" + URI_COMMA, "DNS:ehr.example.org"],
            policies=[HIPAA_COVERED_ENTITY, HIPAA_BUSINESS_ASSOCIATE, LOA_3])
        cls.bare = cls.client_cert("bare-client",
                                   subject={"O": "Example Hospital", "CN": "bare-client"},
                                   sans=["DNS:bare.example.org"], policies=[])
        cls.proxy = cls.make_proxy(POLICY)

    @classmethod
    def tearDownClass(cls):
        cls.proxy.stop()
        super().tearDownClass()

    def forward(self, cert, method="GET", target="/fhir/Patient/1", headers=None, body=None):
        before = len(self.up.requests)
        r = client.request(self.ctx(cert), self.proxy.port, method, target, headers, body)
        self.assertEqual(r.status, 200, r.body[:300])
        return self.up.wait_for_requests(before + 1)[before]

    def test_every_identity_header_has_its_exact_value_once(self):
        req = self.forward(self.leaf)
        expected = {
            "X-Client-Subject-DN": "CN=ehr-client,OU=Clinical Applications,O=Example Hospital,C=US",
            "X-Client-Issuer-DN": "CN=Example DirectTrust CA,O=DirectTrust Test,C=US",
            "X-Client-SAN-URI": URI_PLAIN + ", urn:example:ehr%2Cv2",
            "X-Client-HIPAA-Category": "covered-entity, business-associate",
            "X-Client-Cert-SHA256": self.leaf.fingerprint_sha256,
            "X-Client-Trust-Community": "directtrust",
            "X-Policy-Rule": "hospital-apps",
        }
        for name, value in expected.items():
            self.assertEqual(req.header_all(name), [value], name)
        # The harness computes the fingerprint independently (hashlib over the DER).
        self.assertEqual(req.header("X-Client-Cert-SHA256"),
                         hashlib.sha256(self.leaf.der()).hexdigest())
        self.assertEqual(req.header("X-Client-Subject-DN"), self.leaf.subject_dn)
        self.assertEqual(req.header("X-Client-Issuer-DN"), self.ca.subject_dn)

    def test_each_connection_forwards_its_own_certificate_identity(self):
        # A worker derives an identity once per certificate chain and shares it between
        # connections: interleaved connections of different certificates, one of them a
        # reissue with the very same subject DN (another key, another fingerprint), must each
        # forward exactly their own.
        twin = self.client_cert(
            "ehr-client-reissued",
            subject={"C": "US", "O": "Example Hospital", "OU": "Clinical Applications",
                     "CN": "ehr-client"},
            sans=["URI:" + URI_PLAIN], policies=[HIPAA_COVERED_ENTITY])
        self.assertEqual(twin.subject_dn, self.leaf.subject_dn)
        self.assertNotEqual(twin.fingerprint_sha256, self.leaf.fingerprint_sha256)
        certs = [self.leaf, self.bare, self.leaf, twin, self.bare, twin]
        conns = [client.Connection(self.ctx(c), self.proxy.port) for c in certs]
        try:
            for round_ in range(2):
                for i in (3, 0, 5, 1, 2, 4):
                    before = len(self.up.requests)
                    self.assertEqual(conns[i].request("GET", "/fhir/Patient/%d" % i).status, 200)
                    req = self.up.wait_for_requests(before + 1)[before]
                    self.assertEqual(req.header_all("X-Client-Cert-SHA256"),
                                     [certs[i].fingerprint_sha256], (round_, i))
                    self.assertEqual(req.header_all("X-Client-Subject-DN"), [certs[i].subject_dn])
                    hipaa = req.header_all("X-Client-HIPAA-Category")
                    self.assertEqual(hipaa, [] if certs[i] is self.bare else
                                     ["covered-entity"] if certs[i] is twin else
                                     ["covered-entity, business-associate"], (round_, i))
        finally:
            for c in conns:
                c.close()

    def test_headers_with_empty_values_are_not_sent(self):
        req = self.forward(self.bare)
        self.assertEqual(req.header_all("X-Client-SAN-URI"), [])
        self.assertEqual(req.header_all("X-Client-HIPAA-Category"), [])
        self.assertEqual(req.header("X-Client-Subject-DN"), "CN=bare-client,O=Example Hospital")
        self.assertEqual(req.header("X-Client-Cert-SHA256"), self.bare.fingerprint_sha256)
        for name, value in req.headers:
            self.assertNotEqual(value, "", name)

    def test_xfcc_and_rfc9440_are_off_by_default(self):
        req = self.forward(self.leaf)
        for name in ("X-Forwarded-Client-Cert", "Client-Cert", "Client-Cert-Chain"):
            self.assertEqual(req.header_all(name), [], name)

    def test_forwarded_headers(self):
        req = self.forward(self.leaf)
        host = "localhost:%d" % self.proxy.port
        self.assertEqual(req.header_all("Host"), [host])
        self.assertEqual(req.header_all("X-Forwarded-For"), ["127.0.0.1"])
        self.assertEqual(req.header_all("X-Forwarded-Proto"), ["https"])
        self.assertEqual(req.header_all("X-Forwarded-Host"), [host])
        req = self.forward(self.leaf, headers=[("Host", "fhir.example.org")])
        self.assertEqual(req.header_all("Host"), ["fhir.example.org"])
        self.assertEqual(req.header_all("X-Forwarded-Host"), ["fhir.example.org"])

    def test_method_target_query_and_body_unchanged(self):
        body = b'{"resourceType":"Patient","id":"1","name":[{"family":"\xc3\x9cml\\u00e4ut"}]}\n' * 50
        target = "/fhir/Patient/1?_format=json&x=%20a%2Cb&y=1"
        req = self.forward(self.leaf, "PUT", target,
                           headers=[("Content-Type", "application/fhir+json"),
                                    ("X-Custom", "kept as is")], body=body)
        self.assertEqual((req.method, req.target), ("PUT", target))
        self.assertEqual(sha256(req.body), sha256(body))
        self.assertEqual(req.header_all("Content-Length"), [str(len(body))])
        self.assertEqual(req.header_all("Content-Type"), ["application/fhir+json"])
        self.assertEqual(req.header_all("X-Custom"), ["kept as is"])
        req = self.forward(self.leaf, "GET", "/fhir/Observation?code=http://loinc.org|1234-5&_count=2")
        self.assertEqual(req.target, "/fhir/Observation?code=http://loinc.org|1234-5&_count=2")

    def test_chunked_body_arrives_complete(self):
        chunks = [b"{\"resourceType\":", b"\"Observation\",", b"\"status\":\"final\"}"]
        raw = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
        before = len(self.up.requests)
        with client.Connection(self.ctx(self.leaf), self.proxy.port) as c:
            c.send_raw(b"POST /fhir/Observation HTTP/1.1\r\nHost: localhost\r\n"
                       b"Content-Type: application/fhir+json\r\nTransfer-Encoding: chunked\r\n\r\n" + raw)
            self.assertEqual(c.read_response().status, 200)
        req = self.up.wait_for_requests(before + 1)[before]
        self.assertEqual(req.body, b"".join(chunks))
        self.assertEqual(req.method, "POST")


class CertificateHeadersTest(ProxyTestCase):
    """xfcc: true and rfc9440: true."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.leaf = cls.client_cert(
            "xfcc-client", subject={"O": "Example Hospital", "CN": "xfcc \"client\""},
            sans=["URI:" + URI_PLAIN, "DNS:xfcc.example.org"])
        cls.proxy = cls.make_proxy(POLICY, identity_headers={"xfcc": True, "rfc9440": True})

    @classmethod
    def tearDownClass(cls):
        cls.proxy.stop()
        super().tearDownClass()

    def forwarded(self):
        before = len(self.up.requests)
        r = client.request(self.ctx(self.leaf), self.proxy.port, "GET", "/fhir/Patient/1")
        self.assertEqual(r.status, 200, r.body[:300])
        return self.up.wait_for_requests(before + 1)[before]

    def test_xfcc_has_hash_and_subject(self):
        values = self.forwarded().header_all("X-Forwarded-Client-Cert")
        self.assertEqual(len(values), 1)
        fields = values[0].split(";")
        self.assertIn("Hash=" + self.leaf.fingerprint_sha256, fields)
        # RFC 4514 escapes the quotes in the DN; XFCC quoting escapes '\\' and '"' once more.
        dn = self.leaf.subject_dn
        self.assertEqual(dn, 'CN=xfcc \\"client\\",O=Example Hospital')
        self.assertIn('Subject="%s"' % dn.replace("\\", "\\\\").replace('"', '\\"'), fields)
        # Quoted like Subject (Envoy does too), so a SAN cannot add fields of its own.
        self.assertIn('URI="%s"' % URI_PLAIN, fields)
        self.assertIn('DNS="xfcc.example.org"', fields)
        self.assertEqual(fields[0], "Hash=" + self.leaf.fingerprint_sha256)

    def test_rfc9440_client_cert_is_the_leaf_der(self):
        req = self.forwarded()
        values = req.header_all("Client-Cert")
        self.assertEqual(len(values), 1)
        value = values[0]
        self.assertTrue(value.startswith(":") and value.endswith(":"), value[:40])
        self.assertEqual(base64.b64decode(value[1:-1], validate=True), self.leaf.der())

    def test_rfc9440_chain_holds_the_intermediate(self):
        chain = self.forwarded().header_all("Client-Cert-Chain")
        self.assertEqual(len(chain), 1)
        items = [i.strip() for i in chain[0].split(",")]
        self.assertEqual(len(items), 1, chain[0][:80])
        self.assertTrue(items[0].startswith(":") and items[0].endswith(":"))
        self.assertEqual(base64.b64decode(items[0][1:-1], validate=True), self.ca.der())
        self.assertNotEqual(self.ca.der(), self.leaf.der())

    def test_a_resumed_session_forwards_the_same_certificate_headers(self):
        # The session cache keeps the client's certificate and intermediates, so resumption changes
        # nothing upstream. The client closes without close_notify, as many HTTP clients do: its
        # session stays resumable.
        names = ("X-Forwarded-Client-Cert", "Client-Cert", "Client-Cert-Chain") + IDENTITY_NAMES
        resumed = "fhir_mtls_proxy_tls_sessions_resumed_total"
        for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            resumed_before = self.proxy.metric(resumed)
            ctx = self.ctx(self.leaf)
            ctx.maximum_version = version
            seen = []
            session = None
            for _ in range(3):
                before = len(self.up.requests)
                conn = client.Connection(ctx, self.proxy.port, session=session)
                try:
                    self.assertEqual(conn.request("GET", "/fhir/Patient/1").status, 200)
                    reused, session = conn.sock.session_reused, conn.sock.session
                finally:
                    conn.sock.close()  # no close_notify
                req = self.up.wait_for_requests(before + 1)[before]
                seen.append((reused, [req.header_all(n) for n in names]))
            self.assertEqual([r for r, _ in seen], [False, True, True], version)
            self.assertEqual(self.proxy.metric(resumed), resumed_before + 2, version)
            self.assertEqual(seen[1][1], seen[0][1], version)
            self.assertEqual(seen[2][1], seen[0][1], version)
            self.assertEqual(len(seen[0][1][2]), 1)  # the chain header is there

    def test_identity_headers_still_present(self):
        req = self.forwarded()
        self.assertEqual(req.header_all("X-Client-Subject-DN"), [self.leaf.subject_dn])
        self.assertEqual(req.header_all("X-Client-Cert-SHA256"), [self.leaf.fingerprint_sha256])


if __name__ == "__main__":
    unittest.main()
