"""Batch/transaction Bundles posted at the FHIR base (CONTRACT.md policy files, FHIR classification):
every entry must itself be allowed or the whole Bundle is denied, naming the entry's rule; allowed
Bundles reach the server byte-identical."""

import json
import unittest

from datapath_fixture import MARKER_RULE, ProxyTestCase, sha256
from harness import client

POLICY = {"default": "deny", "rules": [
    MARKER_RULE,
    {"name": "deny-delete", "effect": "deny", "when": {"method": ["DELETE"]}},
    {"name": "read-patient", "effect": "allow",
     "when": {"fhir": {"resource": ["Patient"], "interaction": ["read", "search"]}}},
    {"name": "write-observation", "effect": "allow",
     "when": {"fhir": {"resource": ["Observation"], "interaction": ["create", "update"]}}},
    {"name": "bundles", "effect": "allow", "when": {"fhir": {"interaction": ["batch", "transaction"]}}},
]}


def bundle(kind, *entries, pretty=False):
    """Bundle JSON bytes; entries are (method, url) pairs (POST/PUT get a resource)."""
    items = []
    for method, url in entries:
        entry = {"fullUrl": "urn:uuid:%08d" % len(items), "request": {"method": method, "url": url}}
        if method in ("POST", "PUT"):
            entry["resource"] = {"resourceType": url.split("/")[0].split("?")[0], "status": "final",
                                 "code": {"text": "caf\u00e9, \"quoted\""}}
        items.append(entry)
    doc = {"resourceType": "Bundle", "type": kind, "entry": items}
    return json.dumps(doc, indent=2 if pretty else None, ensure_ascii=False).encode()


class BundleTest(ProxyTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.leaf = cls.client_cert("bundle-client")
        cls.proxy = cls.make_proxy(POLICY)

    @classmethod
    def tearDownClass(cls):
        cls.proxy.stop()
        super().tearDownClass()

    def post(self, body, headers=None, target="/fhir"):
        hdrs = [("Content-Type", "application/fhir+json")] + list(headers or [])
        return client.request(self.ctx(self.leaf), self.proxy.port, "POST", target, hdrs, body)

    def assert_forwarded_identical(self, body, resp, before):
        self.assertEqual(resp.status, 200, resp.body[:300])
        req = self.up.wait_for_requests(before + 1)[before]
        self.assertEqual((req.method, req.target), ("POST", "/fhir"))
        self.assertEqual(sha256(req.body), sha256(body))
        self.assertEqual(req.header_all("Content-Length"), [str(len(body))])
        self.assertEqual(req.header("X-Policy-Rule"), "bundles")
        return req

    def test_allowed_transaction_is_forwarded_byte_identical(self):
        body = bundle("transaction", ("GET", "Patient/1"), ("POST", "Observation"),
                      ("PUT", "Observation/9"), ("GET", "Patient?name=smith"), pretty=True)
        before = len(self.up.requests)
        self.assert_forwarded_identical(body, self.post(body), before)

    def test_allowed_batch_is_forwarded(self):
        body = bundle("batch", ("GET", "Patient/1"), ("GET", "Patient/2"))
        before = len(self.up.requests)
        self.assert_forwarded_identical(body, self.post(body), before)

    def test_explicitly_denied_entry_denies_the_bundle_naming_its_rule(self):
        body = bundle("transaction", ("GET", "Patient/1"), ("DELETE", "Patient/1"),
                      ("POST", "Observation"))
        before = len(self.up.requests)
        r = self.post(body)
        self.assert_outcome(r, 403, "forbidden", "deny-delete")
        self.assert_upstream_untouched(before, self.proxy, self.ctx(self.leaf))

    def test_unmatched_entry_denies_the_bundle_with_no_rule_matched(self):
        body = bundle("batch", ("GET", "Patient/1"), ("GET", "Encounter/5"))
        before = len(self.up.requests)
        r = self.post(body)
        self.assert_outcome(r, 403, "forbidden", "no rule matched")
        self.assert_upstream_untouched(before, self.proxy, self.ctx(self.leaf))

    def test_last_entry_is_checked_too(self):
        entries = [("GET", "Patient/%d" % i) for i in range(50)] + [("POST", "Encounter")]
        before = len(self.up.requests)
        r = self.post(bundle("transaction", *entries))
        self.assert_outcome(r, 403, "forbidden", "no rule matched")
        self.assert_upstream_untouched(before, self.proxy, self.ctx(self.leaf))

    def test_invalid_json_bundle_is_denied(self):
        for body in (b'{"resourceType":"Bundle","type":"transaction","entry":[{"request":',
                     b'not json at all',
                     b'{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"DELETE"}}]}',
                     b'{"resourceType":"Bundle","type":"transaction","entry":"Patient/1"}'):
            with self.subTest(body=body[:40]):
                before = len(self.up.requests)
                r = self.post(body)
                # A Bundle that cannot be checked is a policy denial (fail closed), not a 400.
                self.assert_outcome(r, 403, "forbidden", "no rule matched")
                self.assert_upstream_untouched(before, self.proxy, self.ctx(self.leaf))

    def test_chunked_bundle_is_forwarded_identical(self):
        body = bundle("batch", ("GET", "Patient/1"), ("POST", "Observation"))
        pieces = [body[i:i + 17] for i in range(0, len(body), 17)]
        chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
        before = len(self.up.requests)
        with client.Connection(self.ctx(self.leaf), self.proxy.port) as c:
            c.send_raw(b"POST /fhir HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/fhir+json\r\n"
                       b"Transfer-Encoding: chunked\r\n\r\n" + chunked)
            r = c.read_response()
        self.assertEqual(r.status, 200, r.body[:300])
        req = self.up.wait_for_requests(before + 1)[before]
        self.assertEqual(sha256(req.body), sha256(body))

    def test_expect_100_continue_with_a_bundle(self):
        body = bundle("transaction", ("GET", "Patient/1"), ("POST", "Observation"))
        before = len(self.up.requests)
        with client.Connection(self.ctx(self.leaf), self.proxy.port) as c:
            c.send_raw(b"POST /fhir HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/fhir+json\r\n"
                       b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
            # The client waits for the interim response before sending the body.
            self.assertEqual(c._reader.line(), b"HTTP/1.1 100 Continue")
            self.assertEqual(c._reader.line(), b"")
            c.send_raw(body)
            r = c.read_response()
            req = self.assert_forwarded_identical(body, r, before)
            self.assertEqual(req.header_all("Expect"), [])
            # The connection is still usable.
            self.assertEqual(c.request("GET", "/fhir/Patient/1").status, 200)

    def test_expect_100_continue_with_a_denied_bundle(self):
        body = bundle("transaction", ("DELETE", "Patient/1"))
        before = len(self.up.requests)
        with client.Connection(self.ctx(self.leaf), self.proxy.port) as c:
            c.send_raw(b"POST /fhir HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/fhir+json\r\n"
                       b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
            self.assertEqual(c._reader.line(), b"HTTP/1.1 100 Continue")
            self.assertEqual(c._reader.line(), b"")
            c.send_raw(body)
            self.assert_outcome(c.read_response(), 403, "forbidden", "deny-delete")
        self.assert_upstream_untouched(before, self.proxy, self.ctx(self.leaf))

    def test_bundle_and_then_plain_requests_on_one_connection(self):
        allowed = bundle("batch", ("GET", "Patient/1"))
        denied = bundle("batch", ("DELETE", "Patient/1"))
        hdrs = [("Content-Type", "application/fhir+json")]
        with client.Connection(self.ctx(self.leaf), self.proxy.port) as c:
            self.assertEqual(c.request("POST", "/fhir", hdrs, allowed).status, 200)
            # The body was read in full before deciding, so a denial keeps the connection.
            self.assert_outcome(c.request("POST", "/fhir", hdrs, denied), 403, "forbidden")
            self.assertEqual(c.request("GET", "/fhir/Patient/3").status, 200)


if __name__ == "__main__":
    unittest.main()
