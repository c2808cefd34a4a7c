"""Graceful stop (CONTRACT.md "Shutdown"): on SIGTERM/SIGINT the proxy stops accepting, closes idle
keep-alive connections at once, lets in-flight requests finish within drain_timeout_ms, cuts what is
left after it with a logged warning, and exits 0."""

import signal
import threading
import time
import unittest

from harness import client
from lifecycle_fixture import LifecycleTestCase, connection_refused, wait_until


class InFlight:
    """One request on its own thread; `response` or `error` once done, `finished_at` (monotonic)."""

    def __init__(self, ctx, port, target, timeout=15.0):
        self.response = None
        self.error = None
        self.finished_at = None
        self._thread = threading.Thread(target=self._run, args=(ctx, port, target, timeout),
                                        daemon=True)
        self._thread.start()

    def _run(self, ctx, port, target, timeout):
        try:
            self.response = client.request(ctx, port, "GET", target, timeout=timeout)
        except Exception as e:  # noqa: BLE001 - the test inspects it
            self.error = e
        self.finished_at = time.monotonic()

    def alive(self):
        return self._thread.is_alive()

    def join(self, timeout):
        self._thread.join(timeout)
        return not self._thread.is_alive()


class ShutdownTest(LifecycleTestCase):
    def drain_warnings(self, proxy):
        return [r for r in self.stderr_records(proxy)
                if r.get("level") in ("warn", "warning") and "drain" in r.get("msg", "")]

    def test_in_flight_request_completes_and_new_connections_are_refused(self):
        self.up.route("/fhir/Patient/slow", delay=1.5)
        proxy = self.start_proxy(self.config(drain_timeout_ms=10000))
        ctx = self.ctx()
        self.assertEqual(client.request(ctx, proxy.port, "GET", "/fhir/Patient/warm").status, 200)
        slow = InFlight(ctx, proxy.port, "/fhir/Patient/slow")
        self.up.wait_for_requests(2)
        signalled = time.monotonic()
        proxy.signal(signal.SIGTERM)
        # Stops accepting while the request is still in flight.
        self.assertTrue(wait_until(lambda: connection_refused(proxy.port), 1.0),
                        "new connections still accepted after SIGTERM")
        self.assertTrue(slow.alive(), "the in-flight request ended before the listener closed")
        self.assertIsNotNone(client.handshake_error(ctx, proxy.port, timeout=2))
        self.assertTrue(slow.join(10))
        self.assertIsNone(slow.error)
        self.assertEqual(slow.response.status, 200)
        self.assertEqual(slow.response.json()["target"], "/fhir/Patient/slow")
        self.assertEqual((slow.response.header("Connection") or "").lower(), "close")
        self.assertEqual(proxy.proc.wait(10), 0)
        # The proxy waited for the request rather than the other way round.
        self.assertGreaterEqual(time.monotonic() - signalled, 1.0)
        self.assertEqual(self.drain_warnings(proxy), [])
        self.assertEqual(len(self.up.requests), 2)

    def test_idle_keep_alive_connections_close_at_once(self):
        self.up.route("/fhir/Patient/slow", delay=2.5)
        proxy = self.start_proxy(self.config(drain_timeout_ms=10000))
        ctx = self.ctx()
        used = client.Connection(ctx, proxy.port)  # one response done, now idle
        self.addCleanup(used.close)
        self.assertEqual(used.request("GET", "/fhir/Patient/1").status, 200)
        fresh = client.Connection(ctx, proxy.port)  # handshake done, no request yet
        self.addCleanup(fresh.close)
        # An in-flight request keeps the process (and the drain) going meanwhile.
        slow = InFlight(ctx, proxy.port, "/fhir/Patient/slow")
        self.up.wait_for_requests(2)
        signalled = time.monotonic()
        proxy.signal(signal.SIGTERM)
        self.assertTrue(used.is_closed_by_peer(timeout=5))
        self.assertTrue(fresh.is_closed_by_peer(timeout=5))
        closed_after = time.monotonic() - signalled
        self.assertLess(closed_after, 1.5, "idle connections were not closed at once")
        self.assertTrue(slow.alive(), "the in-flight request should still be running")
        self.assertTrue(slow.join(10))
        self.assertEqual(slow.response.status, 200, slow.error)
        self.assertEqual(proxy.proc.wait(10), 0)

    def test_response_already_streaming_at_sigterm_finishes_then_the_connection_closes(self):
        # The response head has gone out (without "Connection: close") when the signal arrives; the
        # body completes, and then the connection must not linger as an idle keep-alive one.
        self.up.route("/fhir/Binary/slow-body", body=b"b" * 5000, body_delay=1.0)
        proxy = self.start_proxy(self.config(drain_timeout_ms=8000))
        with client.Connection(self.ctx(), proxy.port) as c:
            c.send_raw(client.build_request("GET", "/fhir/Binary/slow-body", port=proxy.port))
            reader = c._reader
            self.assertEqual(reader.line().split(b" ")[1], b"200")  # the head is through
            signalled = time.monotonic()
            proxy.signal(signal.SIGTERM)
            headers = []
            while True:
                line = reader.line()
                if not line:
                    break
                headers.append(line.decode("latin-1").lower())
            self.assertIn("content-length: 5000", headers)
            self.assertEqual(reader.exact(5000), b"b" * 5000)
            self.assertTrue(c.is_closed_by_peer(timeout=5))
            self.assertLess(time.monotonic() - signalled, 4.0)
        self.assertEqual(proxy.proc.wait(5), 0)
        self.assertLess(time.monotonic() - signalled, 4.0, "the drain waited for an idle connection")
        self.assertEqual(self.drain_warnings(proxy), [])

    def test_request_longer_than_drain_timeout_is_cut_with_a_warning(self):
        self.up.route("/fhir/Patient/hang", hang=True)
        proxy = self.start_proxy(self.config(drain_timeout_ms=500))
        hung = InFlight(self.ctx(), proxy.port, "/fhir/Patient/hang", timeout=10)
        self.up.wait_for_requests(1)
        signalled = time.monotonic()
        proxy.signal(signal.SIGTERM)
        self.assertTrue(hung.join(8))
        self.assertIsNone(hung.response, "a hung request got a response")
        self.assertIsInstance(hung.error, (client.ResponseError, OSError))
        cut_after = hung.finished_at - signalled
        self.assertGreaterEqual(cut_after, 0.4)
        self.assertLess(cut_after, 3.0)
        self.assertEqual(proxy.proc.wait(5), 0)
        self.assertTrue(self.drain_warnings(proxy), proxy.stderr_text())

    def test_sigint_stops_an_idle_proxy_cleanly(self):
        proxy = self.start_proxy()
        self.assertEqual(client.request(self.ctx(), proxy.port, "GET", "/fhir/Patient/1").status, 200)
        proxy.signal(signal.SIGINT)
        self.assertEqual(proxy.proc.wait(5), 0)
        self.assertTrue(connection_refused(proxy.port))


if __name__ == "__main__":
    unittest.main()
