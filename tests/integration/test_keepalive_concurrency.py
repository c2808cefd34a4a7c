"""Connections: keep-alive with a pooled upstream, pipelining, many concurrent TLS clients, and the
HTTP/1.0 / Connection: close rules."""

import threading
import unittest

from datapath_fixture import ALLOW_ALL, ProxyTestCase
from harness import client

POLICY = {"default": "deny", "rules": [
    {"name": "no-encounter", "effect": "deny", "when": {"fhir": {"resource": ["Encounter"]}}},
    {"name": "allow-rest", "effect": "allow"},
]}

CONCURRENT_CLIENTS = 200
REQUESTS_PER_CLIENT = 3


class KeepAliveTest(ProxyTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.leaf = cls.client_cert("ka-client")
        cls.up.route("/fhir/Basic/upstream-closes", close=True)
        cls.proxy = cls.make_proxy(POLICY, workers=2)

    @classmethod
    def tearDownClass(cls):
        cls.proxy.stop()
        super().tearDownClass()

    def conn(self):
        c = client.Connection(self.ctx(self.leaf), self.proxy.port)
        self.addCleanup(c.close)
        return c

    def test_100_requests_on_one_connection_use_pooled_upstream_connections(self):
        before = len(self.up.requests)
        accepted = self.up.connections_accepted
        c = self.conn()
        for i in range(100):
            r = c.request("GET", "/fhir/Patient/%d" % i)
            self.assertEqual(r.status, 200)
            self.assertEqual(r.json()["target"], "/fhir/Patient/%d" % i)
        got = self.up.wait_for_requests(before + 100)[before:]
        self.assertEqual([q.target for q in got], ["/fhir/Patient/%d" % i for i in range(100)])
        # Sequential requests reuse one pooled upstream connection (at most a couple are opened).
        self.assertLessEqual(len({q.conn_id for q in got}), 2)
        self.assertLessEqual(self.up.connections_accepted - accepted, 2)

    def test_pipelined_requests_answered_in_order(self):
        before = len(self.up.requests)
        c = self.conn()
        data = b"".join(client.build_request("GET", "/fhir/Patient/p%d" % i) for i in range(3))
        data += client.build_request("POST", "/fhir/Observation", [("Content-Type", "application/fhir+json")],
                                     b'{"resourceType":"Observation"}')
        c.send_raw(data)  # one write
        targets = [c.read_response().json()["target"] for _ in range(4)]
        self.assertEqual(targets, ["/fhir/Patient/p0", "/fhir/Patient/p1", "/fhir/Patient/p2",
                                   "/fhir/Observation"])
        got = self.up.wait_for_requests(before + 4)[before:]
        self.assertEqual([q.target for q in got], targets)
        self.assertEqual(got[3].body, b'{"resourceType":"Observation"}')

    def test_pipelined_denied_request_between_allowed_ones(self):
        before = len(self.up.requests)
        c = self.conn()
        c.send_raw(client.build_request("GET", "/fhir/Patient/a") +
                   client.build_request("GET", "/fhir/Encounter/b") +
                   client.build_request("GET", "/fhir/Patient/c"))
        first, second, third = (c.read_response() for _ in range(3))
        self.assertEqual(first.json()["target"], "/fhir/Patient/a")
        self.assert_outcome(second, 403, "forbidden", "no-encounter")
        self.assertEqual(third.json()["target"], "/fhir/Patient/c")
        got = self.up.wait_for_requests(before + 2)[before:]
        self.assertEqual([q.target for q in got], ["/fhir/Patient/a", "/fhir/Patient/c"])

    def test_http10_without_keep_alive_closes_after_the_response(self):
        c = self.conn()
        c.send_raw(b"GET /fhir/Patient/10 HTTP/1.0\r\n\r\n")
        r = c.read_response()
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["target"], "/fhir/Patient/10")
        self.assertTrue(c.is_closed_by_peer())

    def test_connection_close_is_honoured(self):
        before = len(self.up.requests)
        c = self.conn()
        self.assertEqual(c.request("GET", "/fhir/Patient/1").status, 200)
        r = c.request("GET", "/fhir/Patient/2", [("Connection", "close")])
        self.assertEqual(r.status, 200)
        self.assertEqual((r.header("Connection") or "").lower(), "close")
        self.assertTrue(c.is_closed_by_peer())
        got = self.up.wait_for_requests(before + 2)[before:]
        # Connection: close is hop-by-hop: the upstream connection stays reusable.
        self.assertEqual(got[1].header_all("Connection"), [])

    def test_request_after_connection_close_is_not_served(self):
        before = len(self.up.requests)
        c = self.conn()
        c.send_raw(client.build_request("GET", "/fhir/Patient/last", [("Connection", "close")]) +
                   client.build_request("GET", "/fhir/Patient/ignored"))
        self.assertEqual(c.read_response().json()["target"], "/fhir/Patient/last")
        self.assertTrue(c.is_closed_by_peer())
        self.assert_upstream_untouched(before + 1, self.proxy, self.ctx(self.leaf))

    def test_upstream_closing_does_not_close_the_client_connection(self):
        before = len(self.up.requests)
        c = self.conn()
        r = c.request("GET", "/fhir/Basic/upstream-closes")
        self.assertEqual(r.status, 200)
        self.assertNotEqual((r.header("Connection") or "").lower(), "close")
        self.assertEqual(c.request("GET", "/fhir/Patient/after").status, 200)
        got = self.up.wait_for_requests(before + 2)[before:]
        self.assertNotEqual(got[0].conn_id, got[1].conn_id)


class ConcurrencyTest(ProxyTestCase):
    def test_200_concurrent_tls_connections(self):
        leaf = self.client_cert("many-client")
        proxy = self.start_proxy(ALLOW_ALL, workers=2)
        ctx = self.ctx(leaf)
        before = len(self.up.requests)
        barrier = threading.Barrier(CONCURRENT_CLIENTS, timeout=60)
        results = [None] * CONCURRENT_CLIENTS

        def worker(n):
            try:
                with client.Connection(ctx, proxy.port, timeout=30) as c:
                    barrier.wait()  # every connection is open (handshake done) at once
                    got = []
                    for k in range(REQUESTS_PER_CLIENT):
                        r = c.request("GET", "/fhir/Patient/c%d-%d" % (n, k))
                        got.append((r.status, r.json()["target"]))
                    results[n] = got
            except Exception as e:  # recorded and asserted below
                results[n] = e
                barrier.abort()

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(CONCURRENT_CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        for n, got in enumerate(results):
            self.assertEqual(got, [(200, "/fhir/Patient/c%d-%d" % (n, k))
                                   for k in range(REQUESTS_PER_CLIENT)], "client %d" % n)
        total = CONCURRENT_CLIENTS * REQUESTS_PER_CLIENT
        got = self.up.wait_for_requests(before + total)[before:]
        self.assertEqual(len(got), total)
        self.assertEqual(sorted(q.target for q in got),
                         sorted("/fhir/Patient/c%d-%d" % (n, k) for n in range(CONCURRENT_CLIENTS)
                                for k in range(REQUESTS_PER_CLIENT)))
        for q in got:
            self.assertEqual(q.header_all("X-Client-Cert-SHA256"), [leaf.fingerprint_sha256])
        self.assertEqual(proxy.metric("fhir_mtls_proxy_requests_total",
                                      {"decision": "allow", "rule": "allow-all"}), total)


if __name__ == "__main__":
    unittest.main()
