"""Bodies through the proxy, both ways, compared by SHA-256: Content-Length, chunked and
close-delimited responses, large request bodies, HEAD, and a 256 MiB response read by a slow client
while the proxy's memory is sampled (CONTRACT.md: "Responses stream back unchanged ... including
large and chunked bodies"; bounded memory through backpressure)."""

import hashlib
import os
import re
import socket
import ssl
import struct
import threading
import time
import unittest

from harness import client
from harness.upstream import pattern_sha256
from lifecycle_fixture import LifecycleTestCase, RawUpstream, proc_status

MIB = 1024 * 1024


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def chunked(body, sizes):
    """`body` in chunked framing, chunk sizes cycling through `sizes`."""
    out, i, k = [], 0, 0
    while i < len(body):
        n = sizes[k % len(sizes)]
        piece = body[i:i + n]
        out.append(b"%x\r\n%s\r\n" % (len(piece), piece))
        i += n
        k += 1
    out.append(b"0\r\n\r\n")
    return b"".join(out)


def read_head(sock):
    """Reads a response head from `sock`; returns (status, headers [(name, value)], leftover bytes)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            raise client.ResponseError("EOF before the end of the response head: %r" % buf)
        buf += data
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = [(n, v.strip()) for n, _, v in (line.partition(":") for line in lines[1:])]
    return int(lines[0].split(" ")[1]), headers, rest


def header(headers, name):
    for n, v in headers:
        if n.lower() == name.lower():
            return v
    return None


class ResponseStreamingTest(LifecycleTestCase):
    def test_content_length_response_is_relayed_intact(self):
        self.up.route("/fhir/Binary/cl", stream_bytes=MIB,
                      content_type="application/octet-stream", headers=[("ETag", 'W/"7"')])
        proxy = self.start_proxy()
        with client.Connection(self.ctx(), proxy.port) as c:
            r = c.request("GET", "/fhir/Binary/cl")
            self.assertEqual(r.status, 200)
            self.assertEqual(r.header("Content-Length"), str(MIB))
            self.assertIsNone(r.header("Transfer-Encoding"))
            self.assertEqual((r.header("Content-Type"), r.header("ETag")),
                             ("application/octet-stream", 'W/"7"'))
            self.assertEqual(sha256(r.body), pattern_sha256(MIB))
            # The connection is still in step: a second response on it is read correctly.
            again = c.request("GET", "/fhir/Binary/cl")
            self.assertEqual(sha256(again.body), pattern_sha256(MIB))

    def test_chunked_responses_with_odd_chunk_sizes_are_relayed_intact(self):
        cases = [(1, 5000), (7, 100_003), (4093, MIB + 3), (65521, 3 * MIB + 1)]
        bodies = {}
        for size, length in cases:
            body = os.urandom(length)
            bodies[size] = body
            self.up.route("/fhir/Binary/chunked-%d" % size, body=body, chunked=True,
                          chunk_size=size, content_type="application/octet-stream")
        proxy = self.start_proxy()
        with client.Connection(self.ctx(), proxy.port, timeout=30) as c:
            for size, _ in cases:
                r = c.request("GET", "/fhir/Binary/chunked-%d" % size)
                self.assertEqual(r.status, 200)
                self.assertEqual((r.header("Transfer-Encoding") or "").lower(), "chunked")
                self.assertIsNone(r.header("Content-Length"))
                self.assertEqual(len(r.body), len(bodies[size]), "chunk size %d" % size)
                self.assertEqual(sha256(r.body), sha256(bodies[size]), "chunk size %d" % size)

    def test_chunk_extensions_and_trailers_pass_through(self):
        body = b"chunk-one|" + b"x" * 3000 + b"|chunk-three"

        def respond(sock, head):
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                         b"Transfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n"
                         b"a;name=one\r\nchunk-one|\r\n"
                         + b"%x\r\n" % 3000 + b"x" * 3000 + b"\r\n"
                         b"c\r\n|chunk-three\r\n"
                         b"0\r\nX-Checksum: " + sha256(body).encode() + b"\r\n\r\n")

        raw_up = RawUpstream(respond)
        self.addCleanup(raw_up.stop)
        proxy = self.start_proxy(self.config(raw_up.url))
        data = client.raw(self.ctx(), proxy.port,
                          b"GET /fhir/Binary/t HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        [resp] = client.parse_responses(data)
        self.assertEqual((resp.status, resp.body), (200, body))
        self.assertIn(b"\r\n0\r\nX-Checksum: " + sha256(body).encode() + b"\r\n\r\n", data)

    def test_close_delimited_response_is_relayed_until_the_upstream_closes(self):
        length = 2 * MIB + 17
        body = os.urandom(length)

        def respond(sock, head):
            # No Content-Length, no Transfer-Encoding: the body ends when the connection does.
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n")
            for i in range(0, length, 100_000):
                sock.sendall(body[i:i + 100_000])

        raw_up = RawUpstream(respond)
        self.addCleanup(raw_up.stop)
        proxy = self.start_proxy(self.config(raw_up.url))
        with client.Connection(self.ctx(), proxy.port, timeout=20) as c:
            r = c.request("GET", "/fhir/Binary/eof")
            self.assertEqual(r.status, 200)
            self.assertIsNone(r.header("Content-Length"))
            self.assertIsNone(r.header("Transfer-Encoding"))
            self.assertEqual((r.header("Connection") or "").lower(), "close")
            self.assertEqual(len(r.body), length)
            self.assertEqual(sha256(r.body), sha256(body))
        # The proxy keeps serving.
        self.assertEqual(len(raw_up.requests), 1)

    def test_only_a_complete_close_delimited_response_ends_with_close_notify(self):
        # A close-delimited body ends when the connection does; TLS close_notify is how the client
        # tells that end from a cut. The upstream either closes (complete) or resets mid-body.
        def respond(sock, head):
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n")
            sock.sendall(b"z" * 10_000)
            if b"/cut" in head.split(b"\r\n", 1)[0]:
                time.sleep(0.5)  # the proxy relays what came so far
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

        raw_up = RawUpstream(respond)
        self.addCleanup(raw_up.stop)
        proxy = self.start_proxy(self.config(raw_up.url))

        def fetch(path):
            raw = socket.create_connection(("127.0.0.1", proxy.port), timeout=20)
            with self.ctx().wrap_socket(raw, server_hostname=client.SERVER_HOSTNAME,
                                        suppress_ragged_eofs=False) as tls:
                tls.sendall(client.build_request("GET", path, port=proxy.port))
                data = b""
                try:
                    while True:
                        chunk = tls.recv(65536)
                        if not chunk:
                            return data, "close_notify"
                        data += chunk
                except (ssl.SSLEOFError, ConnectionResetError) as e:
                    return data, type(e).__name__

        data, end = fetch("/fhir/Binary/whole")
        self.assertTrue(data.startswith(b"HTTP/1.1 200 "), data[:80])
        self.assertTrue(data.endswith(b"z" * 10_000))
        self.assertEqual(end, "close_notify")
        data, end = fetch("/fhir/Binary/cut")
        self.assertTrue(data.startswith(b"HTTP/1.1 200 "), data[:80])
        self.assertNotEqual(end, "close_notify", "a cut response must not look complete")

    def test_head_gets_headers_without_a_body_and_the_connection_stays_usable(self):
        self.up.route("/fhir/Binary/h", body=b"y" * 1000, headers=[("Content-Length", "1000"),
                                                                   ("ETag", '"h1"')])
        self.up.route("/fhir/Binary/hc", body=b"", headers=[("Transfer-Encoding", "chunked")])
        proxy = self.start_proxy()
        with client.Connection(self.ctx(), proxy.port) as c:
            r = c.request("HEAD", "/fhir/Binary/h")
            self.assertEqual(r.status, 200)
            self.assertEqual((r.header("Content-Length"), r.header("ETag")), ("1000", '"h1"'))
            self.assertEqual(r.body, b"")
            r = c.request("HEAD", "/fhir/Binary/hc")
            self.assertEqual((r.status, (r.header("Transfer-Encoding") or "").lower()), (200, "chunked"))
            # Nothing was sent after the heads: the next response parses from its status line.
            after = c.request("GET", "/fhir/Patient/after-head")
            self.assertEqual(after.status, 200)
            self.assertEqual(after.json()["target"], "/fhir/Patient/after-head")
        methods = [q.method for q in self.up.wait_for_requests(3)]
        self.assertEqual(methods, ["HEAD", "HEAD", "GET"])


    def test_bodiless_statuses_keep_the_connection_in_step(self):
        self.up.route("/fhir/Patient/204", status=204, body=b"")
        self.up.route("/fhir/Patient/304", status=304, body=b"", headers=[("ETag", '"v3"')])
        proxy = self.start_proxy()
        with client.Connection(self.ctx(), proxy.port) as c:
            r = c.request("DELETE", "/fhir/Patient/204")
            self.assertEqual((r.status, r.body), (204, b""))
            r = c.request("GET", "/fhir/Patient/304", headers={"If-None-Match": '"v3"'})
            self.assertEqual((r.status, r.header("ETag"), r.body), (304, '"v3"', b""))
            self.assertEqual(c.request("GET", "/fhir/Patient/next").json()["target"], "/fhir/Patient/next")

    def test_pipelined_requests_get_intact_responses_in_order(self):
        self.up.route("/fhir/Binary/p1", stream_bytes=MIB + 5, content_type="application/octet-stream")
        p3 = self.up.route("/fhir/Binary/p3", body=os.urandom(70_000), chunked=True, chunk_size=999,
                           content_type="application/octet-stream")
        proxy = self.start_proxy()
        wire = [client.build_request("GET", t, port=proxy.port) for t in (
            "/fhir/Binary/p1", "/fhir/Patient/p2", "/fhir/Binary/p3", "/fhir/Patient/p4")]
        with client.Connection(self.ctx(), proxy.port, timeout=20) as c:
            c.send_raw(wire[0] + wire[1])  # two in one TLS record,
            c.send_raw(wire[2])            # then one record each
            c.send_raw(wire[3])
            r1, r2, r3, r4 = (c.read_response() for _ in range(4))
        self.assertEqual(sha256(r1.body), pattern_sha256(MIB + 5))
        self.assertEqual(r2.json()["target"], "/fhir/Patient/p2")
        self.assertEqual(r3.body, p3.body)
        self.assertEqual(r4.json()["target"], "/fhir/Patient/p4")


class RequestStreamingTest(LifecycleTestCase):
    def test_content_length_request_body_reaches_the_upstream_byte_identical(self):
        body = os.urandom(5 * MIB)
        proxy = self.start_proxy()
        with client.Connection(self.ctx(), proxy.port, timeout=30) as c:
            r = c.request("POST", "/fhir/Binary", headers={"Content-Type": "application/octet-stream"},
                          body=body)
        self.assertEqual(r.status, 200, r.body[:300])
        self.assertEqual((r.json()["body_length"], r.json()["body_sha256"]), (len(body), sha256(body)))
        [req] = self.up.wait_for_requests(1)
        self.assertEqual(req.header("Content-Length"), str(len(body)))
        self.assertFalse(req.chunked)

    def test_chunked_request_body_reaches_the_upstream_byte_identical(self):
        body = os.urandom(3 * MIB)
        wire = chunked(body, [1, 3, 4093, 10007, 65537, 300_000])
        proxy = self.start_proxy()
        with client.Connection(self.ctx(), proxy.port, timeout=30) as c:
            c.send_raw(client.build_request(
                "POST", "/fhir/Binary", headers=[("Content-Type", "application/octet-stream"),
                                                 ("Transfer-Encoding", "chunked")], port=proxy.port)
                       + wire)
            r = c.read_response()
            self.assertEqual(r.status, 200, r.body[:300])
            self.assertEqual((r.json()["body_length"], r.json()["body_sha256"]), (len(body), sha256(body)))
            # The same connection carries the next request.
            self.assertEqual(c.request("GET", "/fhir/Patient/1").status, 200)
        req = self.up.wait_for_requests(1)[0]
        self.assertTrue(req.chunked)
        self.assertIsNone(req.header("Content-Length"))
        self.assertEqual(sha256(req.body), sha256(body))


class BoundedMemoryTest(LifecycleTestCase):
    SIZE = 256 * MIB
    LIMIT_KB = 64 * 1024

    def test_huge_response_to_a_slow_client_keeps_the_proxy_small(self):
        self.up.route("/fhir/Binary/huge", stream_bytes=self.SIZE,
                      content_type="application/octet-stream")
        proxy = self.start_proxy()
        pid = proxy.pid
        baseline = proc_status(pid)
        samples = []
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                try:
                    samples.append(proc_status(pid))
                except (FileNotFoundError, ProcessLookupError):
                    return
                stop.wait(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        self.addCleanup(stop.set)
        digest = hashlib.sha256()
        received = 0
        started = time.monotonic()
        sock = client.connect(self.ctx(), proxy.port, timeout=30)
        try:
            sock.sendall(client.build_request("GET", "/fhir/Binary/huge", port=proxy.port))
            status, headers, rest = read_head(sock)
            self.assertEqual(status, 200)
            self.assertEqual(header(headers, "Content-Length"), str(self.SIZE))
            digest.update(rest)
            received += len(rest)
            # Slow phase: small reads with pauses; the upstream can send much faster, so without
            # backpressure the proxy would buffer the difference.
            slow_until = time.monotonic() + 2.5
            while received < self.SIZE and time.monotonic() < slow_until:
                data = sock.recv(2048)
                if not data:
                    break
                digest.update(data)
                received += len(data)
                time.sleep(0.004)
            slow_bytes = received
            # Fast phase: the rest as quickly as possible.
            while received < self.SIZE:
                data = sock.recv(min(1 << 20, self.SIZE - received))
                if not data:
                    break
                digest.update(data)
                received += len(data)
        finally:
            sock.close()
        elapsed = time.monotonic() - started
        stop.set()
        sampler.join(5)
        final = proc_status(pid)
        self.assertEqual(received, self.SIZE)
        self.assertEqual(digest.hexdigest(), pattern_sha256(self.SIZE))
        self.assertLess(slow_bytes, self.SIZE // 4, "the slow phase was not slow")
        self.assertGreater(len(samples), 10)
        peak_rss = max(s["VmRSS"] for s in samples)
        msg = "baseline RSS %d kB, peak sampled RSS %d kB, VmHWM %d kB, %.1fs" % (
            baseline["VmRSS"], peak_rss, final["VmHWM"], elapsed)
        self.assertLess(peak_rss, self.LIMIT_KB, msg)
        self.assertLess(final["VmHWM"], self.LIMIT_KB, msg)
        # The proxy is still serving.
        self.assertEqual(client.request(self.ctx(), proxy.port, "GET", "/fhir/Patient/1").status, 200)

    def test_large_upload_to_a_slow_upstream_keeps_the_proxy_small(self):
        size = 96 * MIB
        upstream_view = {}

        def respond(sock, head):
            # Reads the body slowly at first, then fast; answers with its length and hash.
            head, rest = head.split(b"\r\n\r\n", 1)
            length = int(re.search(rb"(?im)^content-length:\s*(\d+)", head).group(1))
            digest = hashlib.sha256(rest)
            got = len(rest)
            slow_until = time.monotonic() + 2.0
            while got < length:
                data = sock.recv(2048 if time.monotonic() < slow_until else 1 << 20)
                if not data:
                    break
                digest.update(data)
                got += len(data)
                if time.monotonic() < slow_until:
                    time.sleep(0.004)
            upstream_view["length"], upstream_view["sha256"] = got, digest.hexdigest()
            body = b'{"ok":true}'
            sock.sendall(b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))

        raw_up = RawUpstream(respond)
        self.addCleanup(raw_up.stop)
        cfg = self.config(raw_up.url, limits={"max_body_bytes": 128 * MIB})
        proxy = self.start_proxy(cfg)
        pid = proxy.pid
        samples = []
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                try:
                    samples.append(proc_status(pid)["VmRSS"])
                except (FileNotFoundError, ProcessLookupError):
                    return
                stop.wait(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        self.addCleanup(stop.set)
        block = os.urandom(MIB)
        expected = hashlib.sha256()
        with client.Connection(self.ctx(), proxy.port, timeout=30) as c:
            c.send_raw(client.build_request("POST", "/fhir/Binary", headers=[
                ("Content-Type", "application/octet-stream"), ("Content-Length", str(size))],
                port=proxy.port))
            for i in range(size // MIB):
                piece = block[i:] + block[:i]  # every MiB different
                expected.update(piece)
                c.send_raw(piece)
            r = c.read_response()
        stop.set()
        sampler.join(5)
        self.assertEqual(r.status, 201, r.body[:300])
        self.assertEqual(upstream_view, {"length": size, "sha256": expected.hexdigest()})
        hwm = proc_status(pid)["VmHWM"]
        msg = "peak sampled RSS %d kB, VmHWM %d kB" % (max(samples), hwm)
        self.assertLess(max(samples), self.LIMIT_KB, msg)
        self.assertLess(hwm, self.LIMIT_KB, msg)


if __name__ == "__main__":
    unittest.main()
