"""Timeouts (CONTRACT.md "Settled details"): header_timeout_ms from accept (the TLS handshake
included) and from the end of each response on a kept-alive connection; upstream connect and
response timeouts, including a response that stalls in the middle of its body."""

import select
import socket
import ssl
import time
import unittest

from harness import client
from lifecycle_fixture import LifecycleTestCase, RawUpstream, wait_until

HEADER_TIMEOUT_MS = 500


def closed_within(sock, timeout):
    """Reads until the peer closes (EOF or reset) or `timeout` passes; returns (closed, bytes)."""
    sock.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                return True, data
            data += chunk
    except socket.timeout:
        return False, data
    except (ConnectionError, ssl.SSLError, OSError):
        return True, data
    return False, data


def client_hello(ctx):
    """The first flight of a TLS handshake from `ctx` (a ClientHello record), as bytes."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname=client.SERVER_HOSTNAME)
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


class HeaderTimeoutTest(LifecycleTestCase):
    def setUp(self):
        super().setUp()
        self.proxy = self.start_proxy(self.config(limits={"header_timeout_ms": HEADER_TIMEOUT_MS,
                                                          "idle_timeout_ms": 30000}))

    def assert_closed_in_time(self, sock, started, allow_408=False):
        closed, data = closed_within(sock, 5.0)
        elapsed = time.monotonic() - started
        self.assertTrue(closed, "still open after 5 s (received %r)" % data[:200])
        self.assertGreaterEqual(elapsed, 0.3, "closed before header_timeout_ms")
        self.assertLess(elapsed, 3.0)
        if data:
            self.assertTrue(allow_408, "unexpected bytes %r" % data[:200])
            [resp] = client.parse_responses(data)
            self.assertEqual(resp.status, 408)
            self.assertEqual(resp.json()["issue"][0]["code"], "timeout")
        return data

    def test_silent_tcp_client_is_closed(self):
        before = self.proxy.metric("fhir_mtls_proxy_tls_handshakes_total", {"result": "failure"}) or 0
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", self.proxy.port), timeout=5) as s:
            self.assert_closed_in_time(s, started)
        after = self.proxy.metric("fhir_mtls_proxy_tls_handshakes_total", {"result": "failure"}) or 0
        self.assertEqual(after, before + 1)

    def test_half_a_client_hello_is_closed(self):
        hello = client_hello(self.ctx())
        self.assertGreater(len(hello), 20)
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", self.proxy.port), timeout=5) as s:
            s.sendall(hello[:len(hello) // 2])
            closed, data = closed_within(s, 5.0)
        elapsed = time.monotonic() - started
        self.assertTrue(closed)
        self.assertGreaterEqual(elapsed, 0.3)
        self.assertLess(elapsed, 3.0)
        self.assertNotIn(b"HTTP/1.1", data)

    def test_tls_client_that_sends_nothing_is_closed(self):
        started = time.monotonic()
        sock = client.connect(self.ctx(), self.proxy.port)
        with sock:
            self.assert_closed_in_time(sock, started)

    def test_half_a_request_head_is_closed(self):
        started = time.monotonic()
        sock = client.connect(self.ctx(), self.proxy.port)
        with sock:
            sock.sendall(b"GET /fhir/Patient/1 HTTP/1.1\r\nHost: loc")
            self.assert_closed_in_time(sock, started, allow_408=True)
        self.assertEqual(self.up.requests, [])

    def test_a_head_trickling_in_does_not_extend_the_deadline(self):
        # Bytes keep arriving, but the head never completes: the deadline still holds.
        started = time.monotonic()
        sock = client.connect(self.ctx(), self.proxy.port)
        with sock:
            sock.sendall(b"GET /fhir/Patient/1 HTTP/1.1\r\n")
            closed = False
            for i in range(30):  # at most ~3 s
                try:
                    sock.sendall(b"X-Slow-%d: 1\r\n" % i)
                except (ConnectionError, ssl.SSLError, OSError):
                    closed = True
                    break
                readable, _, _ = select.select([sock], [], [], 0.1)
                if readable:
                    closed = True
                    break
            elapsed = time.monotonic() - started
        self.assertTrue(closed, "the connection outlived header_timeout_ms by far")
        self.assertLess(elapsed, 2.5)
        self.assertEqual(self.up.requests, [])

    def test_idle_keep_alive_is_closed_after_the_timeout_from_the_last_response(self):
        with client.Connection(self.ctx(), self.proxy.port) as c:
            self.assertEqual(c.request("GET", "/fhir/Patient/1").status, 200)
            ended = time.monotonic()
            self.assertTrue(c.is_closed_by_peer(timeout=5))
            elapsed = time.monotonic() - ended
        self.assertGreaterEqual(elapsed, 0.3)
        self.assertLess(elapsed, 3.0)

    def test_slow_upstream_is_not_cut_by_the_header_timeout(self):
        # Once the head is complete, header_timeout_ms no longer applies: the upstream may take longer.
        self.up.route("/fhir/Patient/slow", delay=1.2)
        with client.Connection(self.ctx(), self.proxy.port) as c:
            self.assertEqual(c.request("GET", "/fhir/Patient/slow").status, 200)
            self.assertEqual(c.request("GET", "/fhir/Patient/2").status, 200)

    def test_slow_request_body_is_not_cut_by_the_header_timeout(self):
        body = b"0123456789" * 10
        with client.Connection(self.ctx(), self.proxy.port) as c:
            c.send_raw(client.build_request("POST", "/fhir/Binary", headers=[
                ("Content-Type", "application/octet-stream"), ("Content-Length", str(len(body)))],
                port=self.proxy.port))
            for i in range(0, len(body), 25):  # four pieces over ~1.2 s
                c.send_raw(body[i:i + 25])
                time.sleep(0.4)
            r = c.read_response()
        self.assertEqual(r.status, 200, r.body[:200])
        self.assertEqual(r.json()["body_length"], len(body))


class KeepAliveRearmTest(LifecycleTestCase):
    def test_each_response_restarts_the_header_timeout(self):
        # Requests 0.3 s apart over 1.5 s on one connection with a 1 s timeout: the timer runs from the
        # end of each response, not from accept.
        proxy = self.start_proxy(self.config(limits={"header_timeout_ms": 1000}))
        with client.Connection(self.ctx(), proxy.port) as c:
            started = time.monotonic()
            for i in range(6):
                self.assertEqual(c.request("GET", "/fhir/Patient/%d" % i).status, 200)
                time.sleep(0.3)
            self.assertGreater(time.monotonic() - started, 1.5)
        reqs = self.up.wait_for_requests(6)
        self.assertEqual(len(reqs), 6)


class IdleConnectionTest(LifecycleTestCase):
    """A connection idle before its first request, or for 100 ms between requests, waits on its
    socket without a bufferevent (README "Idle connections"). These check that such a connection
    comes back whole, and that both deadlines still hold while it waits."""

    def test_idle_timeout_closes_a_connection_waiting_between_requests(self):
        proxy = self.start_proxy(self.config(limits={"header_timeout_ms": 30000,
                                                     "idle_timeout_ms": 700}))
        with client.Connection(self.ctx(), proxy.port) as c:
            self.assertEqual(c.request("GET", "/fhir/Patient/1").status, 200)
            ended = time.monotonic()
            self.assertTrue(c.is_closed_by_peer(timeout=5))
            elapsed = time.monotonic() - ended
        self.assertGreaterEqual(elapsed, 0.5, "closed before idle_timeout_ms")
        self.assertLess(elapsed, 3.0, "idle_timeout_ms not applied to the idle connection")
        self.assertTrue(wait_until(lambda: any(
            r.get("msg") == "client connection idle timeout" for r in self.stderr_records(proxy)), 5))

    def test_idle_timeout_closes_a_connection_that_never_sends_a_request(self):
        proxy = self.start_proxy(self.config(limits={"header_timeout_ms": 30000,
                                                     "idle_timeout_ms": 700}))
        started = time.monotonic()
        with client.connect(self.ctx(), proxy.port) as sock:  # handshake done, then silence
            closed, data = closed_within(sock, 5.0)
        elapsed = time.monotonic() - started
        self.assertTrue(closed)
        self.assertEqual(data, b"")
        self.assertGreaterEqual(elapsed, 0.5)
        self.assertLess(elapsed, 3.0)

    def test_connection_idle_after_the_handshake_serves_requests(self):
        with client.Connection(self.ctx(), self.proxy_port()) as c:
            time.sleep(0.3)
            self.assertEqual(c.request("GET", "/fhir/Patient/1").status, 200)
            time.sleep(0.3)
            self.assertEqual(c.request("GET", "/fhir/Patient/2").status, 200)
        self.assertEqual([r.path for r in self.up.wait_for_requests(2)],
                         ["/fhir/Patient/1", "/fhir/Patient/2"])

    def test_pipelined_requests_after_a_pause_are_all_answered(self):
        with client.Connection(self.ctx(), self.proxy_port()) as c:
            self.assertEqual(c.request("GET", "/fhir/Patient/0").status, 200)
            time.sleep(0.3)
            c.send_raw(b"".join(client.build_request("GET", "/fhir/Patient/%d" % i,
                                                     port=self.proxy_port()) for i in (1, 2, 3)))
            statuses = [c.read_response().status for _ in range(3)]
        self.assertEqual(statuses, [200, 200, 200])
        self.assertEqual([r.path for r in self.up.wait_for_requests(4)],
                         ["/fhir/Patient/%d" % i for i in range(4)])

    def test_streamed_body_after_a_pause_arrives_whole(self):
        body = bytes(range(256)) * 1024  # 256 KiB: beyond the read-ahead, streamed upstream
        with client.Connection(self.ctx(), self.proxy_port()) as c:
            self.assertEqual(c.request("GET", "/fhir/Patient/0").status, 200)
            time.sleep(0.3)
            r = c.request("POST", "/fhir/Binary", headers=[
                ("Content-Type", "application/octet-stream")], body=body)
        self.assertEqual(r.status, 200, r.body[:200])
        self.assertEqual(r.json()["body_length"], len(body))

    def test_stop_closes_idle_connections_at_once(self):
        proxy = self.start_proxy(self.config(limits={"header_timeout_ms": 30000,
                                                     "idle_timeout_ms": 30000}))
        conns = [client.Connection(self.ctx(), proxy.port) for _ in range(3)]
        for c in conns:
            self.addCleanup(c.close)
            self.assertEqual(c.request("GET", "/fhir/Patient/1").status, 200)
        idle_since_handshake = client.connect(self.ctx(), proxy.port)
        self.addCleanup(idle_since_handshake.close)
        time.sleep(0.3)
        started = time.monotonic()
        proxy.stop()
        self.assertLess(time.monotonic() - started, 5.0)
        for c in conns:
            self.assertTrue(c.is_closed_by_peer(timeout=2))
        self.assertTrue(closed_within(idle_since_handshake, 2.0)[0])

    def test_a_kept_connection_keeps_its_head_limit_when_it_waits_across_a_reload(self):
        # Limits apply to new connections (README "Reload"). A connection accepted with
        # max_header_bytes 64 KiB that waits (and gives its buffers back) across a reload to 8 KiB
        # still takes a 40 KB head, and a new connection gets 431 for it.
        proxy = self.start_proxy(self.config(watch=False, limits={"max_header_bytes": 65536}))
        big = [("X-Big", "b" * 40_000)]
        with client.Connection(self.ctx(), proxy.port) as c:
            self.assertEqual(c.request("GET", "/fhir/Patient/1").status, 200)
            cfg = self.config(watch=False, limits={"max_header_bytes": 8192})
            cfg["listen"] = "127.0.0.1:%d" % proxy.port
            proxy.write_config(config=cfg)
            self.assertEqual(proxy.reload(), "success")
            time.sleep(0.3)
            r = c.request("GET", "/fhir/Patient/2", headers=big)
            self.assertEqual(r.status, 200, r.body[:300])
        r = client.request(self.ctx(), proxy.port, "GET", "/fhir/Patient/3", headers=big)
        self.assertEqual(r.status, 431)

    def proxy_port(self):
        if not hasattr(self, "_proxy"):
            self._proxy = self.start_proxy()
        return self._proxy.port


class UpstreamTimeoutTest(LifecycleTestCase):
    def test_response_stalling_mid_body_closes_the_client_and_others_are_served(self):
        def respond(sock, head):
            if b" /fhir/Binary/stall " in head:
                sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                             b"Content-Length: 200000\r\n\r\n" + b"s" * 100_000)
                self.raw_up.release.wait(30)  # stalls until the test ends
                return
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n"
                         b"Connection: close\r\n\r\nok")

        self.raw_up = RawUpstream(respond)
        self.addCleanup(self.raw_up.stop)
        proxy = self.start_proxy(self.config(
            self.raw_up.url,
            upstream_settings={"connect_timeout_ms": 1000, "response_timeout_ms": 1500}))
        errors = {"kind": "timeout"}
        stalled = client.Connection(self.ctx(), proxy.port, timeout=10)
        self.addCleanup(stalled.close)
        stalled.send_raw(client.build_request("GET", "/fhir/Binary/stall", port=proxy.port))
        reader = stalled._reader
        self.assertEqual(reader.line().split(b" ")[1], b"200")
        started = time.monotonic()
        # While that response is stalled, other clients are served.
        self.assertEqual(client.request(self.ctx(), proxy.port, "GET", "/fhir/Patient/1").body, b"ok")
        with self.assertRaises(client.ResponseError) as cm:
            self._read_rest(reader)
        elapsed = time.monotonic() - started
        self.assertIn("closed", str(cm.exception))
        self.assertGreaterEqual(elapsed, 1.0)
        self.assertLess(elapsed, 6.0)
        self.assertTrue(wait_until(
            lambda: proxy.metric("fhir_mtls_proxy_upstream_errors_total", errors) == 1, 5))
        # And afterwards.
        for i in range(3):
            self.assertEqual(client.request(self.ctx(), proxy.port, "GET", "/fhir/Patient/x").status, 200)
        self.assertTrue(wait_until(
            lambda: proxy.metric("fhir_mtls_proxy_active_connections") == 0, 5))

    @staticmethod
    def _read_rest(reader):
        while reader.line():  # the rest of the head
            pass
        return reader.exact(200_000)

    def test_connect_timeout_answers_502(self):
        # A listener whose accept queue is full: the kernel drops further SYNs, so connect() hangs.
        blackhole = socket.socket()
        self.addCleanup(blackhole.close)
        blackhole.bind(("127.0.0.1", 0))
        blackhole.listen(0)
        port = blackhole.getsockname()[1]
        fillers = []
        hanging = False
        for _ in range(4):
            s = socket.socket()
            s.setblocking(False)
            self.addCleanup(s.close)
            s.connect_ex(("127.0.0.1", port))
            fillers.append(s)
            _, writable, _ = select.select([], [s], [], 0.3)
            if not writable:
                hanging = True
                break
        if not hanging:
            self.skipTest("cannot make a connect() hang on this kernel")
        url = "http://127.0.0.1:%d" % port
        proxy = self.start_proxy(self.config(url, upstream_settings={"connect_timeout_ms": 600,
                                                                     "response_timeout_ms": 10000}))
        started = time.monotonic()
        r = client.request(self.ctx(), proxy.port, "GET", "/fhir/Patient/1", timeout=10)
        elapsed = time.monotonic() - started
        self.assertEqual(r.status, 502, r.body)
        self.assertEqual(r.json()["issue"][0]["code"], "transient")
        self.assertGreaterEqual(elapsed, 0.5)
        self.assertLess(elapsed, 5.0, "connect_timeout_ms was not applied")
        self.assertEqual(proxy.metric("fhir_mtls_proxy_upstream_errors_total", {"kind": "connect"}), 1)


if __name__ == "__main__":
    unittest.main()
