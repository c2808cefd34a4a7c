"""What a rejected client gets: every row of CONTRACT.md's rejection table (status, issue code,
Content-Type, OperationOutcome shape), the upstream never contacted for a denied or malformed
request, TLS handshake failures under `client_cert: require` with their metric reason, and the
connection after a rejection (kept for a bodyless 401/403, closed after a 400)."""

import socket
import time
import unittest

from datapath_fixture import MARKER_RULE, ProxyTestCase
from harness import client
from harness.proxy import free_port

MAX_HEADER_BYTES = 4096
MAX_BODY_BYTES = 1000

POLICY = {"default": "deny", "rules": [
    MARKER_RULE,
    {"name": "no-delete", "effect": "deny", "when": {"method": ["DELETE"]}},
    {"name": "metadata-open", "effect": "allow", "when": {"path": ["/fhir/metadata"]}},
    {"name": "hospital-clinical", "effect": "allow",
     "when": {"subject": {"O": ["Example Hospital"]},
              "fhir": {"resource": ["Patient", "Observation", "Basic"]}}},
    {"name": "hospital-bundles", "effect": "allow",
     "when": {"subject": {"O": ["Example Hospital"]},
              "fhir": {"interaction": ["batch", "transaction"]}}},
]}

BUNDLE = (b'{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET",'
          b'"url":"Patient/1"}}]}')


def wait_metric(proxy, name, labels, value, timeout=5.0):
    """Polls (bounded) until metric `name`{labels} reaches `value`; returns the last value seen."""
    deadline = time.monotonic() + timeout
    while True:
        got = proxy.metric(name, labels) or 0
        if got >= value or time.monotonic() >= deadline:
            return got
        time.sleep(0.05)


class PolicyAndLimitsTest(ProxyTestCase):
    """client_cert: require; 403, 400, 431, 413, 502 (reset), 504 on one proxy."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.leaf = cls.client_cert("rej-client")
        cls.up.route("/fhir/Basic/slow", delay=5.0)
        cls.up.route("/fhir/Basic/reset", reset=True)
        cls.proxy = cls.make_proxy(
            POLICY,
            limits={"max_header_bytes": MAX_HEADER_BYTES, "max_body_bytes": MAX_BODY_BYTES},
            upstream={"url": cls.up.url, "connect_timeout_ms": 2000, "response_timeout_ms": 500})

    @classmethod
    def tearDownClass(cls):
        cls.proxy.stop()
        super().tearDownClass()

    def conn(self):
        c = client.Connection(self.ctx(self.leaf), self.proxy.port)
        self.addCleanup(c.close)
        return c

    def raw_rejected(self, data, status, code):
        """Sends raw bytes on a new connection; asserts the rejection, that the connection is closed
        after it, and that the upstream received nothing."""
        before = len(self.up.requests)
        c = self.conn()
        c.send_raw(data)
        r = c.read_response()
        self.assert_outcome(r, status, code)
        self.assertTrue(c.is_closed_by_peer(), "connection left open after %d" % status)
        self.assert_upstream_untouched(before, self.proxy, self.ctx(self.leaf))
        return r

    # --- 403 ---------------------------------------------------------------------------------

    def test_403_explicit_deny_names_the_rule(self):
        before = len(self.up.requests)
        r = client.request(self.ctx(self.leaf), self.proxy.port, "DELETE", "/fhir/Patient/1")
        body = self.assert_outcome(r, 403, "forbidden", "no-delete")
        self.assertNotIn("no rule matched", body["issue"][0]["diagnostics"])
        self.assert_upstream_untouched(before, self.proxy, self.ctx(self.leaf))

    def test_403_default_says_no_rule_matched(self):
        before = len(self.up.requests)
        r = client.request(self.ctx(self.leaf), self.proxy.port, "GET", "/fhir/Encounter/1?secret=1")
        self.assert_outcome(r, 403, "forbidden", "no rule matched")
        self.assert_upstream_untouched(before, self.proxy, self.ctx(self.leaf))

    def test_403_keeps_the_connection_for_the_next_request(self):
        before = len(self.up.requests)
        c = self.conn()
        self.assert_outcome(c.request("GET", "/fhir/Encounter/1"), 403, "forbidden")
        self.assert_outcome(c.request("DELETE", "/fhir/Patient/1"), 403, "forbidden", "no-delete")
        r = c.request("GET", "/fhir/Patient/7")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["target"], "/fhir/Patient/7")
        got = self.up.wait_for_requests(before + 1)[before:]
        self.assertEqual([q.target for q in got], ["/fhir/Patient/7"])

    def test_403_with_an_unread_body_closes_the_connection(self):
        # The body of a denied request is not read, so the connection cannot carry another request.
        c = self.conn()
        c.send_raw(client.build_request("POST", "/fhir/Encounter", [("Content-Type", "application/fhir+json")],
                                        b'{"resourceType":"Encounter"}'))
        self.assert_outcome(c.read_response(), 403, "forbidden")
        self.assertTrue(c.is_closed_by_peer())

    # --- 400 ---------------------------------------------------------------------------------

    def test_400_bare_lf(self):
        self.raw_rejected(b"GET /fhir/Patient/1 HTTP/1.1\nHost: localhost\n\n", 400, "structure")

    def test_400_bare_lf_inside_otherwise_crlf_head(self):
        self.raw_rejected(b"GET /fhir/Patient/1 HTTP/1.1\r\nHost: localhost\nX-A: b\r\n\r\n",
                          400, "structure")

    def test_400_content_length_with_transfer_encoding(self):
        self.raw_rejected(b"POST /fhir/Patient HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n"
                          b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "structure")

    def test_400_duplicate_content_length(self):
        self.raw_rejected(b"POST /fhir/Patient HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n"
                          b"Content-Length: 2\r\n\r\n{}", 400, "structure")

    def test_400_differing_content_length(self):
        self.raw_rejected(b"POST /fhir/Patient HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n"
                          b"content-length: 7\r\n\r\n{}", 400, "structure")

    def test_400_non_numeric_content_length(self):
        self.raw_rejected(b"POST /fhir/Patient HTTP/1.1\r\nHost: localhost\r\nContent-Length: +2\r\n"
                          b"\r\n{}", 400, "structure")

    def test_400_transfer_encoding_not_ending_in_chunked(self):
        self.raw_rejected(b"POST /fhir/Patient HTTP/1.1\r\nHost: localhost\r\n"
                          b"Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", 400, "structure")

    def test_400_bad_chunk_size_buffered_bundle(self):
        self.raw_rejected(b"POST /fhir HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/fhir+json\r\n"
                          b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n", 400, "structure")

    def test_400_bad_chunk_size_streamed_body(self):
        self.raw_rejected(b"POST /fhir/Patient HTTP/1.1\r\nHost: localhost\r\n"
                          b"Content-Type: application/fhir+json\r\nTransfer-Encoding: chunked\r\n\r\n"
                          b"2x\r\n{}\r\n0\r\n\r\n", 400, "structure")

    def test_400_overflowing_chunk_size(self):
        self.raw_rejected(b"POST /fhir HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
                          b"fffffffffffffffffffff\r\n{}\r\n0\r\n\r\n", 400, "structure")

    def test_400_obs_fold(self):
        self.raw_rejected(b"GET /fhir/Patient/1 HTTP/1.1\r\nHost: localhost\r\nX-A: one\r\n two\r\n\r\n",
                          400, "structure")

    def test_400_whitespace_before_colon(self):
        self.raw_rejected(b"GET /fhir/Patient/1 HTTP/1.1\r\nHost: localhost\r\nX-Client-Subject-DN : x\r\n\r\n",
                          400, "structure")

    def test_400_encoded_slash(self):
        self.raw_rejected(b"GET /fhir/Patient%2F1 HTTP/1.1\r\nHost: localhost\r\n\r\n", 400, "structure")

    def test_400_dot_segments(self):
        for target in (b"/fhir/../x", b"/fhir/Patient/./1", b"/fhir/%2e%2e/Patient/1",
                       b"/fhir/Patient/.%2E/Encounter/1"):
            with self.subTest(target=target):
                self.raw_rejected(b"GET " + target + b" HTTP/1.1\r\nHost: localhost\r\n\r\n",
                                  400, "structure")

    def test_400_empty_segment(self):
        for target in (b"//fhir/Patient/1", b"/fhir//Patient/1", b"/fhir/Patient/1//"):
            with self.subTest(target=target):
                self.raw_rejected(b"GET " + target + b" HTTP/1.1\r\nHost: localhost\r\n\r\n",
                                  400, "structure")

    def test_400_encoded_nul(self):
        self.raw_rejected(b"GET /fhir/Patient/1%00 HTTP/1.1\r\nHost: localhost\r\n\r\n", 400, "structure")

    def test_400_after_a_good_request_closes_the_kept_alive_connection(self):
        c = self.conn()
        self.assertEqual(c.request("GET", "/fhir/Patient/1").status, 200)
        c.send_raw(b"GET /fhir/Patient/2 HTTP/1.1\r\nHost: localhost\r\nX-A: one\r\n two\r\n\r\n")
        self.assert_outcome(c.read_response(), 400, "structure")
        self.assertTrue(c.is_closed_by_peer())

    # --- 431 / 413 ---------------------------------------------------------------------------

    def test_431_headers_too_large(self):
        big = b"X-Filler: " + b"a" * (MAX_HEADER_BYTES + 100) + b"\r\n"
        self.raw_rejected(b"GET /fhir/Patient/1 HTTP/1.1\r\nHost: localhost\r\n" + big + b"\r\n",
                          431, "too-long")

    def test_431_many_small_headers(self):
        many = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 40) for i in range(200))
        self.raw_rejected(b"GET /fhir/Patient/1 HTTP/1.1\r\nHost: localhost\r\n" + many + b"\r\n",
                          431, "too-long")

    def test_head_just_under_the_limit_passes(self):
        head = b"GET /fhir/Patient/1 HTTP/1.1\r\nHost: localhost\r\n"
        filler_len = MAX_HEADER_BYTES - len(head) - len(b"X-Filler: \r\n\r\n") - 1
        data = head + b"X-Filler: " + b"a" * filler_len + b"\r\n\r\n"
        self.assertLess(len(data), MAX_HEADER_BYTES)
        c = self.conn()
        c.send_raw(data)
        self.assertEqual(c.read_response().status, 200)

    def test_413_content_length_over_the_limit(self):
        self.raw_rejected(b"POST /fhir/Patient HTTP/1.1\r\nHost: localhost\r\n"
                          b"Content-Length: %d\r\n\r\n" % (MAX_BODY_BYTES + 1), 413, "too-long")

    def test_413_reaches_a_client_that_keeps_sending_its_body(self):
        # The proxy answers on the head and closes; the client goes on sending its megabyte for a
        # while and only then reads. Closed gently (lingering close), the socket takes and drops
        # those bytes instead of resetting the connection, so the answer is still there to read.
        c = self.conn()
        c.send_raw(b"POST /fhir/Patient HTTP/1.1\r\nHost: localhost\r\n"
                   b"Content-Type: application/fhir+json\r\nContent-Length: 2000000\r\n\r\n")
        time.sleep(0.3)  # the 413 and the proxy's close are out by now
        for _ in range(32):
            c.send_raw(b"x" * 32768)
            time.sleep(0.01)
        self.assert_outcome(c.read_response(), 413, "too-long")
        self.assertTrue(c.is_closed_by_peer())

    def test_413_chunked_bundle_over_the_limit(self):
        chunk = b"a" * 600
        body = b"%x\r\n%s\r\n" % (len(chunk), chunk) * 2 + b"0\r\n\r\n"
        self.raw_rejected(b"POST /fhir HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/fhir+json\r\n"
                          b"Transfer-Encoding: chunked\r\n\r\n" + body, 413, "too-long")

    def test_413_chunked_streamed_body_over_the_limit(self):
        chunk = b"a" * 600
        body = b"%x\r\n%s\r\n" % (len(chunk), chunk) * 2 + b"0\r\n\r\n"
        self.raw_rejected(b"POST /fhir/Patient HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/fhir+json\r\n"
                          b"Transfer-Encoding: chunked\r\n\r\n" + body, 413, "too-long")

    def test_body_at_the_limit_passes(self):
        body = b"b" * MAX_BODY_BYTES
        r = client.request(self.ctx(self.leaf), self.proxy.port, "POST", "/fhir/Basic", body=body)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["body_length"], MAX_BODY_BYTES)

    # --- 502 / 504 ---------------------------------------------------------------------------

    def test_502_upstream_resets(self):
        r = client.request(self.ctx(self.leaf), self.proxy.port, "GET", "/fhir/Basic/reset")
        self.assert_outcome(r, 502, "transient")

    def test_504_upstream_too_slow(self):
        before = len(self.up.requests)
        r = client.request(self.ctx(self.leaf), self.proxy.port, "GET", "/fhir/Basic/slow")
        # The upstream would answer 200 after 5 s; 504 proves the proxy gave up first.
        self.assert_outcome(r, 504, "timeout")
        # The request did reach the upstream (it was allowed), then the proxy gave up on it.
        self.assertEqual(self.up.wait_for_requests(before + 1)[before].target, "/fhir/Basic/slow")
        self.assertEqual(self.proxy.metric("fhir_mtls_proxy_upstream_errors_total", {"kind": "timeout"}), 1)

    def test_502_504_keep_the_connection(self):
        c = self.conn()
        self.assert_outcome(c.request("GET", "/fhir/Basic/reset"), 502, "transient")
        self.assertEqual(c.request("GET", "/fhir/Patient/1").status, 200)


class UpstreamDownTest(ProxyTestCase):
    """The upstream's port is closed: 502 transient, counted as a connect error."""

    def test_502_upstream_port_closed(self):
        leaf = self.client_cert("down-client")
        port = free_port()
        proxy = self.start_proxy(POLICY, upstream={"url": "http://127.0.0.1:%d" % port,
                                                   "connect_timeout_ms": 2000,
                                                   "response_timeout_ms": 2000})
        r = client.request(self.ctx(leaf), proxy.port, "GET", "/fhir/Patient/1")
        self.assert_outcome(r, 502, "transient")
        self.assertEqual(proxy.metric("fhir_mtls_proxy_upstream_errors_total", {"kind": "connect"}), 1)
        # A denied request is not even tried against the (dead) upstream: 403, not 502.
        r = client.request(self.ctx(leaf), proxy.port, "GET", "/fhir/Encounter/1")
        self.assert_outcome(r, 403, "forbidden")
        self.assertEqual(proxy.metric("fhir_mtls_proxy_upstream_errors_total", {"kind": "connect"}), 1)


class RequestModeCertificateTest(ProxyTestCase):
    """client_cert: request: 401 login (anonymous, not allowed), 401 security (untrusted, revoked,
    not yet valid) and 401 expired; the upstream never sees these requests."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.good = cls.client_cert("req-good")
        cls.revoked = cls.client_cert("req-revoked")
        cls.expired = cls.client_cert("req-expired", expired=True)
        cls.future = cls.client_cert("req-future", not_yet_valid=True)
        cls.stranger = cls.client_cert("req-stranger", cls.pki.root("stranger-root"))
        crls = [cls.pki.crl(cls.ca, revoked=[cls.revoked]), cls.pki.crl(cls.root)]
        cls.proxy = cls.make_proxy(POLICY, client_cert="request",
                                   trust=[("directtrust", cls.bundle, crls)])

    @classmethod
    def tearDownClass(cls):
        cls.proxy.stop()
        super().tearDownClass()

    def rejected(self, cert, status, code, diagnostics=None):
        before = len(self.up.requests)
        r = client.request(self.ctx(cert), self.proxy.port, "GET", "/fhir/Patient/1")
        self.assert_outcome(r, status, code, diagnostics)
        self.assert_upstream_untouched(before, self.proxy, self.ctx(self.good))
        return r

    def test_good_certificate_is_served(self):
        self.assertEqual(client.request(self.ctx(self.good), self.proxy.port, "GET",
                                        "/fhir/Patient/1").status, 200)

    def test_401_login_for_anonymous(self):
        r = self.rejected(None, 401, "login")
        self.assertIsNotNone(r.header("WWW-Authenticate"))

    def test_401_security_untrusted(self):
        self.rejected(self.stranger, 401, "security", "untrusted")

    def test_401_security_revoked(self):
        self.rejected(self.revoked, 401, "security", "revoked")

    def test_401_security_not_yet_valid(self):
        self.rejected(self.future, 401, "security")

    def test_401_expired(self):
        self.rejected(self.expired, 401, "expired")

    def test_invalid_certificate_is_not_downgraded_to_anonymous(self):
        # /fhir/metadata is open to anonymous clients, but not to a client whose certificate failed.
        self.assertEqual(client.request(self.ctx(None), self.proxy.port, "GET", "/fhir/metadata").status, 200)
        for cert, code in ((self.stranger, "security"), (self.revoked, "security"),
                           (self.expired, "expired")):
            with self.subTest(cert=cert.name):
                r = client.request(self.ctx(cert), self.proxy.port, "GET", "/fhir/metadata")
                self.assert_outcome(r, 401, code)

    def test_401_login_keeps_the_connection(self):
        before = len(self.up.requests)
        with client.Connection(self.ctx(None), self.proxy.port) as c:
            self.assert_outcome(c.request("GET", "/fhir/Patient/1"), 401, "login")
            self.assertEqual(c.request("GET", "/fhir/metadata").status, 200)
        got = self.up.wait_for_requests(before + 1)[before:]
        self.assertEqual([q.target for q in got], ["/fhir/metadata"])

    def test_401_security_keeps_the_connection_but_every_request_fails(self):
        with client.Connection(self.ctx(self.stranger), self.proxy.port) as c:
            self.assert_outcome(c.request("GET", "/fhir/Patient/1"), 401, "security")
            self.assert_outcome(c.request("GET", "/fhir/metadata"), 401, "security")

    def test_handshake_metrics_count_the_reasons(self):
        for cert in (self.stranger, self.revoked, self.expired, self.future):
            client.request(self.ctx(cert), self.proxy.port, "GET", "/fhir/metadata")
        name = "fhir_mtls_proxy_tls_handshakes_total"
        for reason in ("untrusted", "revoked", "expired", "not_yet_valid"):
            with self.subTest(reason=reason):
                self.assertGreaterEqual(
                    wait_metric(self.proxy, name, {"result": "failure", "reason": reason}, 1), 1)


class RequireModeHandshakeTest(ProxyTestCase):
    """client_cert: require: a missing or invalid certificate ends the handshake, counted with its
    reason; the upstream never sees anything."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.good = cls.client_cert("hs-good")
        cls.revoked = cls.client_cert("hs-revoked")
        cls.expired = cls.client_cert("hs-expired", expired=True)
        cls.future = cls.client_cert("hs-future", not_yet_valid=True)
        cls.stranger = cls.client_cert("hs-stranger", cls.pki.root("hs-stranger-root"))
        crls = [cls.pki.crl(cls.ca, revoked=[cls.revoked]), cls.pki.crl(cls.root)]
        cls.proxy = cls.make_proxy(POLICY, client_cert="require",
                                   trust=[("directtrust", cls.bundle, crls)])

    @classmethod
    def tearDownClass(cls):
        cls.proxy.stop()
        super().tearDownClass()

    def refused(self, cert, reason):
        name = "fhir_mtls_proxy_tls_handshakes_total"
        labels = {"result": "failure", "reason": reason}
        count = self.proxy.metric(name, labels) or 0
        before = len(self.up.requests)
        err = client.handshake_error(self.ctx(cert), self.proxy.port)
        self.assertIsNotNone(err, "handshake with %r succeeded" % (cert,))
        self.assertEqual(wait_metric(self.proxy, name, labels, count + 1), count + 1)
        self.assert_upstream_untouched(before, self.proxy, self.ctx(self.good))

    def test_good_certificate_completes(self):
        self.assertIsNone(client.handshake_error(self.ctx(self.good), self.proxy.port))

    def test_missing_certificate(self):
        self.refused(None, "no_certificate")

    def test_untrusted_certificate(self):
        self.refused(self.stranger, "untrusted")

    def test_expired_certificate(self):
        self.refused(self.expired, "expired")

    def test_not_yet_valid_certificate(self):
        self.refused(self.future, "not_yet_valid")

    def test_revoked_certificate(self):
        self.refused(self.revoked, "revoked")

    def test_plain_http_on_the_tls_port_is_refused(self):
        s = socket.create_connection(("127.0.0.1", self.proxy.port), timeout=5)
        try:
            s.sendall(b"GET /fhir/metadata HTTP/1.1\r\nHost: localhost\r\n\r\n")
            data = b""
            while True:
                try:
                    chunk = s.recv(4096)
                except (ConnectionError, socket.timeout):
                    break
                if not chunk:
                    break
                data += chunk
            self.assertNotIn(b"HTTP/1.1 200", data)
        finally:
            s.close()


if __name__ == "__main__":
    unittest.main()
