"""No descriptor or connection leaks: after 300 requests with mixed outcomes (allowed, denied,
malformed, failed handshakes, upstream resets and truncations, clients leaving before or during the
response) the proxy's open file descriptors return to the baseline plus its pooled upstream
connections (at most max_idle_connections), and fhir_mtls_proxy_active_connections returns to 0."""

import socket
import ssl
import struct
import time
import unittest

from harness import client
from lifecycle_fixture import LifecycleTestCase, open_fds, wait_until

MAX_IDLE = 4
TOTAL = 300


class FdLeakTest(LifecycleTestCase):
    def test_mixed_outcomes_leave_no_descriptor_behind(self):
        self.up.route("/fhir/Patient/reset", reset=True)
        self.up.route("/fhir/Patient/cut", stream_bytes=200_000, close_mid_response=True)
        self.up.route("/fhir/Patient/slow", delay=0.2)
        self.up.route("/fhir/Binary/big", stream_bytes=8 * 1024 * 1024,
                      content_type="application/octet-stream")
        proxy = self.start_proxy(self.config(upstream_settings={"max_idle_connections": MAX_IDLE}))
        pid = proxy.pid

        def fds():
            """The descriptors by kind; scrapes of the metrics endpoint (which this test makes) are
            left out."""
            snap = open_fds(pid)
            kinds = {"other": len(snap["other"]), "non_tcp": 0, "listening": 0, "downstream": 0,
                     "upstream": 0, "unexpected": []}
            for inode, ports in snap["socket"].items():
                if ports is None:
                    kinds["non_tcp"] += 1
                elif ports[1] == 0:
                    kinds["listening"] += 1
                elif ports[0] == proxy.metrics_port:
                    continue
                elif ports[0] == proxy.port:
                    kinds["downstream"] += 1
                elif ports[1] == self.up.port:
                    kinds["upstream"] += 1
                else:
                    kinds["unexpected"].append(ports)
            return kinds

        # The start-up probe's connection is gone once active_connections is 0 and its socket is
        # closed. Both are waited for: under load the metric can read 0 before a worker has even
        # accepted the probe, whose socket then shows up in the snapshot.
        def quiet():
            return (proxy.metric("fhir_mtls_proxy_active_connections") == 0
                    and fds()["downstream"] == 0)

        self.assertTrue(wait_until(quiet, 5), fds())
        baseline = fds()
        self.assertEqual((baseline["downstream"], baseline["upstream"], baseline["listening"]),
                         (0, 0, 2), baseline)  # the proxy's and the metrics listener
        ctx = self.ctx()
        anonymous = client.tls_context(ca=self.server_ca.cert)
        port = proxy.port
        outcomes = {}

        def allowed(i):
            return client.request(ctx, port, "GET", "/fhir/Patient/%d" % i).status

        def keep_alive(i):
            with client.Connection(ctx, port) as c:
                a = c.request("GET", "/fhir/Patient/%d" % i).status
                b = c.request("GET", "/fhir/Secret/%d" % i).status
            return (a, b)

        def denied(i):
            return client.request(ctx, port, "GET", "/fhir/Secret/%d" % i).status

        def malformed(i):
            data = client.raw(ctx, port, b"GET /fhir/Patient/1 HTTP/1.1\r\nHost: localhost\r\n"
                                         b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
            return client.parse_responses(data)[0].status

        def no_certificate(i):
            return type(client.handshake_error(anonymous, port)).__name__

        def upstream_reset(i):
            return client.request(ctx, port, "GET", "/fhir/Patient/reset").status

        def upstream_truncates(i):
            try:
                client.request(ctx, port, "GET", "/fhir/Patient/cut")
                return "complete"
            except (client.ResponseError, OSError) as e:
                return type(e).__name__

        def leaves_mid_response(i):
            sock = client.connect(ctx, port)
            try:
                sock.sendall(client.build_request("GET", "/fhir/Binary/big", port=port))
                got = 0
                while got < 64 * 1024:
                    data = sock.recv(16384)
                    if not data:
                        break
                    got += len(data)
                if i % 2:  # half of them with a TCP RST instead of a FIN
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return "left after %s" % (got >= 64 * 1024)
            finally:
                sock.close()

        def leaves_before_response(i):
            sock = client.connect(ctx, port)
            sock.sendall(client.build_request("GET", "/fhir/Patient/slow", port=port))
            sock.close()
            return "left"

        def leaves_mid_head(i):
            sock = client.connect(ctx, port)
            sock.sendall(b"GET /fhir/Patient/1 HTTP/1.1\r\nHo")
            sock.close()
            return "left"

        kinds = [allowed, keep_alive, denied, malformed, no_certificate, upstream_reset,
                 upstream_truncates, leaves_mid_response, leaves_before_response, leaves_mid_head]
        started = time.monotonic()
        for i in range(TOTAL):
            self.assertLess(time.monotonic() - started, 75, "load loop too slow")
            kind = kinds[i % len(kinds)]
            try:
                result = kind(i)
            except (OSError, client.ResponseError, ssl.SSLError) as e:
                result = "error " + type(e).__name__
            outcomes.setdefault(kind.__name__, {}).setdefault(result, 0)
            outcomes[kind.__name__][result] += 1

        # Every kind behaved as intended (so the mix really covers each outcome).
        self.assertEqual(set(outcomes["allowed"]), {200}, outcomes)
        self.assertEqual(set(outcomes["keep_alive"]), {(200, 403)}, outcomes)
        self.assertEqual(set(outcomes["denied"]), {403}, outcomes)
        self.assertEqual(set(outcomes["malformed"]), {400}, outcomes)
        self.assertNotIn("NoneType", outcomes["no_certificate"], outcomes)
        self.assertEqual(set(outcomes["upstream_reset"]), {502}, outcomes)
        self.assertNotIn("complete", outcomes["upstream_truncates"], outcomes)
        self.assertEqual(set(outcomes["leaves_mid_response"]), {"left after True"}, outcomes)

        def settled():
            idle = proxy.metric("fhir_mtls_proxy_upstream_idle_connections") or 0
            active = proxy.metric("fhir_mtls_proxy_active_connections")
            expected = dict(baseline, upstream=idle)
            return active == 0 and fds() == expected

        ok = wait_until(settled, 15, interval=0.2)
        idle = proxy.metric("fhir_mtls_proxy_upstream_idle_connections") or 0
        state = "fds %r (baseline %r), idle upstream %s, active %s, outcomes %r" % (
            fds(), baseline, idle, proxy.metric("fhir_mtls_proxy_active_connections"), outcomes)
        self.assertTrue(ok, state)
        self.assertLessEqual(idle, MAX_IDLE, state)
        self.assertTrue(proxy.running())
        # Still serving, and the pooled connections are usable.
        self.assertEqual(client.request(ctx, port, "GET", "/fhir/Patient/after").status, 200)
        self.assertLess(time.monotonic() - started, 90)

    def test_metrics_scrapes_leave_no_socket_open(self):
        # The metrics endpoint's connections are made by the proxy with bufferevents that own their
        # sockets (so libevent closes each only after removing its events): every one must still be
        # closed, whether the scraper closes ("Connection: close"), keeps it alive, or leaves early.
        proxy = self.start_proxy(self.config())
        pid = proxy.pid

        def scrape_sockets():
            return [p for p in open_fds(pid)["socket"].values()
                    if p is not None and p[0] == proxy.metrics_port and p[1] != 0]

        for _ in range(30):
            self.assertIn("fhir_mtls_proxy_", proxy.metrics_text())  # urllib: Connection: close
        for _ in range(5):
            with socket.create_connection(("127.0.0.1", proxy.metrics_port), timeout=5) as s:
                s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                self.assertTrue(s.recv(65536).startswith(b"HTTP/1.1 200"))
                # kept alive: the client closes it
            with socket.create_connection(("127.0.0.1", proxy.metrics_port), timeout=5) as s:
                s.sendall(b"GET /metr")  # leaves in the middle of a request
        self.assertTrue(wait_until(lambda: scrape_sockets() == [], 10), scrape_sockets())


if __name__ == "__main__":
    unittest.main()
