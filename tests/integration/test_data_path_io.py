"""The proxy's data path at the socket level (README, Design: "Few system calls per request").

Pins what the write-through and read-ahead changes must keep true:
- answers written to the client with SSL_write directly, and handed to libevent once the socket is
  full, leave complete and in order (pipelined small answers; a large download then a pipelined
  one, read by a client with a small receive buffer);
- with TLS read-ahead, records OpenSSL already holds are read without the socket signalling again
  (many records in one TCP write, a record split across writes, a request sent with the client's
  Finished), for TLS 1.2 and 1.3;
- upstream responses topped up past libevent's 4 KiB read cap arrive byte-exact, and a response
  cut by a reset mid-body reaches the client truncated, never complete-looking.
"""

import os
import socket
import ssl
import struct

from datapath_fixture import ALLOW_ALL, ProxyTestCase, sha256
from harness import client
from harness.upstream import pattern_sha256
from lifecycle_fixture import RawUpstream, wait_until

TIMEOUT = 20.0  # every socket read / wait in this file is bounded by this
ECHO_PREFIX = "/fhir/Patient/"
# The echo answer carries the target in a header and has an empty body: the EchoUpstream writes a
# body with a second send, which Nagle holds ~40 ms behind the head on a kept-alive connection,
# and hundreds of pipelined answers would cost seconds each.
ECHO_HEADER = "X-Echo-Target"
BIG, MID = 12_000_000, 300_000


def get(target, close=False):
    """A GET request's bytes (Connection: close when `close`)."""
    return client.build_request("GET", target, {"Connection": "close"} if close else None)


def pipeline(targets):
    """GET requests for `targets` back to back; the last asks the proxy to close afterwards, so the
    answers end with the connection."""
    return b"".join(get(t, close=(i == len(targets) - 1)) for i, t in enumerate(targets))


def small_window_connection(ctx, port, rcvbuf):
    """A TLS connection to the proxy whose receive buffer is set to `rcvbuf` before connecting (so
    the window the proxy sees stays that small)."""
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    raw.settimeout(TIMEOUT)
    try:
        raw.connect(("127.0.0.1", port))
        return ctx.wrap_socket(raw, server_hostname=client.SERVER_HOSTNAME)
    except BaseException:
        raw.close()
        raise


def read_until_closed(sock, chunk=65536):
    """Every byte received, `chunk` at most per read, until the peer closes (EOF, close_notify or
    reset). A read timing out fails the test: the peer was expected to close."""
    data = bytearray()
    while True:
        try:
            got = sock.recv(chunk)
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError, ConnectionResetError):
            break
        except socket.timeout:
            raise AssertionError("the proxy neither sent more nor closed (%d bytes so far)"
                                 % len(data))
        if not got:
            break
        data += got
    return bytes(data)


def proxy_send_queue(proxy_port, client_port):
    """Bytes the proxy has written to its socket towards the client at `client_port` that the
    client has not acknowledged (tx_queue in /proc/net/tcp), or None when there is no such
    socket."""
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            cols = line.split()
            local, remote = cols[1].rsplit(":", 1)[1], cols[2].rsplit(":", 1)[1]
            if int(local, 16) == proxy_port and int(remote, 16) == client_port:
                return int(cols[4].split(":")[0], 16)
    return None


class MemoryBioClient:
    """A TLS client whose records the test sends itself: TLS runs on ssl.MemoryBIO objects over a
    plain socket, so records can be batched, split and combined with handshake messages in single
    TCP writes."""

    def __init__(self, ctx, port, session=None, finish_handshake=True):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        try:
            self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
            self.tls = ctx.wrap_bio(self.incoming, self.outgoing,
                                    server_hostname=client.SERVER_HOSTNAME, session=session)
            while True:
                try:
                    self.tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    self.send(self.pending())
                    self._receive()
            if finish_handshake:
                self.send(self.pending())
        except BaseException:
            self.sock.close()
            raise

    def pending(self):
        """The TLS bytes produced and not yet sent (a handshake flight, records)."""
        return self.outgoing.read()

    def records(self, plaintext):
        """`plaintext` as TLS record bytes (not sent)."""
        self.tls.write(plaintext)
        return self.pending()

    def send(self, data):
        if data:
            self.sock.sendall(data)

    def _receive(self):
        data = self.sock.recv(65536)
        if not data:
            self.incoming.write_eof()
            return False
        self.incoming.write(data)
        return True

    def read_responses(self, count):
        """Reads plaintext until `count` complete responses have arrived; returns them."""
        plain = b""
        while True:
            try:
                while True:
                    got = self.tls.read(65536)
                    if not got:
                        break
                    plain += got
            except (ssl.SSLWantReadError, ssl.SSLZeroReturnError, ssl.SSLEOFError):
                pass
            responses = client.parse_responses(plain)
            if len(responses) >= count:
                return responses
            try:
                if not self._receive():
                    return responses
            except socket.timeout:
                raise AssertionError("%d of %d answers before the timeout"
                                     % (len(responses), count))

    def close(self):
        self.sock.close()


class ClientConnectionDataPathTest(ProxyTestCase):
    """One proxy for the class; the echo upstream answers ECHO_PREFIX* with the target."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.leaf = cls.client_cert("data-path")
        cls.up.route(ECHO_PREFIX + "*", handler=lambda req: (200, [(ECHO_HEADER, req.target)], b""))
        cls.up.route("/fhir/Binary/big", stream_bytes=BIG, content_type="application/octet-stream")
        cls.up.route("/fhir/Binary/mid", stream_bytes=MID, content_type="application/octet-stream")
        cls.proxy = cls.make_proxy(ALLOW_ALL)

    @classmethod
    def tearDownClass(cls):
        cls.proxy.stop()
        super().tearDownClass()

    def assert_echoes(self, responses, targets):
        self.assertEqual([(r.status, r.header(ECHO_HEADER)) for r in responses],
                         [(200, t) for t in targets])

    # --- answers written through to the client -------------------------------------------------

    def test_pipelined_answers_reach_a_small_window_client_complete_and_in_order(self):
        targets = ["%s%d" % (ECHO_PREFIX, i) for i in range(300)]
        before = len(self.up.requests)
        sock = small_window_connection(self.ctx(self.leaf), self.proxy.port, 4096)
        self.addCleanup(sock.close)
        sock.sendall(pipeline(targets))
        # Nothing is read until the proxy has forwarded every request, so answers pile up against
        # the client's closed window; then they are read 512 bytes at a time.
        self.up.wait_for_requests(before + len(targets), timeout=TIMEOUT)
        responses = client.parse_responses(read_until_closed(sock, chunk=512))
        self.assert_echoes(responses, targets)
        self.assertEqual(responses[-1].header("Connection"), "close")

    def test_large_download_then_pipelined_answer_survive_the_hand_over_to_libevent(self):
        # (receive buffer, bytes per read, fill the proxy's socket before reading). Filling first
        # makes SSL_write block for sure, so the rest of the download and the pipelined answer
        # wait in libevent's output. The slow readers that start at once make the proxy switch
        # between writing directly and through libevent many times while the socket drains; an
        # answer written directly past bytes still queued would show up in one of them (not in
        # every run: that interleaving is up to the event loop).
        for rcvbuf, chunk, fill_first in ((8192, 16384, True), (8192, 512, False),
                                          (16384, 1024, False), (65536, 1024, False)):
            with self.subTest(rcvbuf=rcvbuf, read=chunk, fill_first=fill_first):
                self.download_big_then_mid(rcvbuf, chunk, fill_first)

    def download_big_then_mid(self, rcvbuf, chunk, fill_first):
        sock = small_window_connection(self.ctx(self.leaf), self.proxy.port, rcvbuf)
        self.addCleanup(sock.close)
        client_port = sock.getsockname()[1]
        sock.sendall(get("/fhir/Binary/big") + get("/fhir/Binary/mid", close=True))
        if fill_first:
            # Nothing is read until the proxy's socket towards the client is full and stays so.
            last = [None]

            def socket_full():
                queued, previous = proxy_send_queue(self.proxy.port, client_port), last[0]
                last[0] = queued
                return queued is not None and queued >= 256 << 10 and queued == previous

            self.assertTrue(wait_until(socket_full, TIMEOUT, interval=0.2),
                            "the proxy never filled its socket (queued: %r)" % last[0])
        responses = client.parse_responses(read_until_closed(sock, chunk))
        self.assertEqual([(r.status, len(r.body)) for r in responses], [(200, BIG), (200, MID)])
        self.assertEqual(sha256(responses[0].body), pattern_sha256(BIG))
        self.assertEqual(sha256(responses[1].body), pattern_sha256(MID))

    # --- TLS read-ahead --------------------------------------------------------------------------

    def versioned_ctx(self, version):
        return client.tls_context(cert=self.leaf.chain, key=self.leaf.key, ca=self.server_ca.cert,
                                  min_version=version, max_version=version)

    def raw_tls(self, version, ctx=None, **kwargs):
        """A MemoryBioClient connected to the proxy with TLS `version` only."""
        c = MemoryBioClient(ctx or self.versioned_ctx(version), self.proxy.port, **kwargs)
        self.addCleanup(c.close)
        return c

    def test_many_records_in_one_tcp_write_are_all_answered(self):
        targets = ["%srecords-%d" % (ECHO_PREFIX, i) for i in range(60)]
        for version in ("1.2", "1.3"):
            with self.subTest(tls=version):
                c = self.raw_tls(version)
                # One TLS record per request, all in one TCP write: OpenSSL reads them in one go
                # and holds all but the first; the socket never signals them again.
                c.send(b"".join(c.records(get(t)) for t in targets))
                self.assert_echoes(c.read_responses(len(targets)), targets)

    def test_record_split_across_tcp_writes_is_answered_once_complete(self):
        first, second = ECHO_PREFIX + "split-1", ECHO_PREFIX + "split-2"
        for version in ("1.2", "1.3"):
            with self.subTest(tls=version):
                c = self.raw_tls(version)
                r1, r2 = c.records(get(first)), c.records(get(second))
                c.send(r1 + r2[:7])  # the second record's header and two bytes of it
                self.assert_echoes(c.read_responses(1), [first])
                c.send(r2[7:])
                self.assert_echoes(c.read_responses(1), [second])

    def test_request_sent_with_the_clients_finished_is_answered(self):
        # TLS 1.3: the client's Finished ends every handshake. TLS 1.2: it ends a resumed one, so a
        # first connection provides the session.
        for version in ("1.2", "1.3"):
            with self.subTest(tls=version):
                ctx, session = self.versioned_ctx(version), None
                if version == "1.2":
                    session = self.raw_tls(version, ctx).tls.session  # ticket sent in the handshake
                c = self.raw_tls(version, ctx, session=session, finish_handshake=False)
                if version == "1.2":
                    self.assertTrue(c.tls.session_reused,
                                    "no TLS 1.2 resumption (this case needs the proxy's ticket)")
                target = ECHO_PREFIX + "with-finished-" + version
                c.send(c.pending() + c.records(get(target)))
                self.assert_echoes(c.read_responses(1), [target])


class UpstreamResponseReadTest(ProxyTestCase):
    """A hand-written upstream (RawUpstream: one request per connection) behind one proxy."""

    BODY = os.urandom(1 << 20)
    CUT_AT = 300_000

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.leaf = cls.client_cert("upstream-reads")
        cls.raw_up = RawUpstream(cls.respond)
        try:
            cls.proxy = cls.make_proxy(ALLOW_ALL, upstream_url=cls.raw_up.url)
        except BaseException:
            cls.raw_up.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.proxy.stop()
        cls.raw_up.stop()
        super().tearDownClass()

    @classmethod
    def respond(cls, sock, head):
        target = head.split(b" ", 2)[1]
        if target == b"/fhir/Binary/eof":
            # No framing: the body ends with the connection. Head, body and FIN in one go.
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n"
                         + cls.BODY)
            return
        length_head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(cls.BODY)
        if target == b"/fhir/Binary/reset":
            sock.sendall(length_head + cls.BODY[:cls.CUT_AT])
            # Closed with SO_LINGER 0 (by RawUpstream, after this returns): a TCP RST mid-body.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return
        sock.sendall(length_head + cls.BODY)

    def fetch(self, target):
        """(head, body) of the response to GET `target`, read until the proxy closes."""
        sock = client.connect(self.ctx(self.leaf), self.proxy.port, timeout=TIMEOUT)
        self.addCleanup(sock.close)
        sock.sendall(get(target))
        head, sep, body = read_until_closed(sock).partition(b"\r\n\r\n")
        self.assertEqual(sep, b"\r\n\r\n", head[:300])
        return head.split(b"\r\n"), body

    def test_eof_delimited_response_arrives_byte_exact(self):
        head, body = self.fetch("/fhir/Binary/eof")
        self.assertEqual(head[0], b"HTTP/1.1 200 OK")
        self.assertNotIn(b"content-length", b"\n".join(head).lower())
        self.assertEqual((len(body), sha256(body)), (len(self.BODY), sha256(self.BODY)))

    def test_reset_mid_body_gives_a_truncated_body_and_a_closed_connection(self):
        head, body = self.fetch("/fhir/Binary/reset")  # returns only once the proxy closed
        self.assertEqual(head[0], b"HTTP/1.1 200 OK")
        self.assertIn(b"Content-Length: %d" % len(self.BODY), head)
        self.assertLessEqual(len(body), self.CUT_AT)  # never more than the upstream sent
        self.assertEqual(body, self.BODY[:len(body)])  # what did arrive is exact
        # The proxy goes on serving: a new connection gets a whole response.
        resp = client.request(self.ctx(self.leaf), self.proxy.port, "GET", "/fhir/Binary/whole",
                              timeout=TIMEOUT)
        self.assertEqual((resp.status, sha256(resp.body)), (200, sha256(self.BODY)))
