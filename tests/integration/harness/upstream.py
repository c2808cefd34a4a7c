"""EchoUpstream: a scriptable HTTP/1.1 upstream on 127.0.0.1 that records every request.

Raw sockets and a small strict parser, so the test sees exactly what the proxy sent: header names
in their case, duplicates, order, and the body bytes (Content-Length or chunked, de-chunked).

    with EchoUpstream() as up:
        up.route("/fhir/Binary/big", stream_bytes=50_000_000)
        up.route("/fhir/slow", delay=2.0)
        ... proxy to f"http://127.0.0.1:{up.port}" ...
        req = up.wait_for_requests(1)[0]
        assert req.header("X-Client-Subject-DN") == "CN=..."

Default response: 200 application/json {"method", "target", "headers": [[name, value], ...],
"body_length", "body_sha256"}. Per-path behaviours are set with route(); see Behaviour.
"""

import hashlib
import json
import socket
import struct
import threading
import time
from . import headers as header_lookup

MAX_HEAD_BYTES = 256 * 1024
MAX_BODY_BYTES = 256 * 1024 * 1024


def pattern_bytes(n, offset=0):
    """n deterministic bytes of the pattern the upstream streams (byte i is (i * 7 + i // 256) % 251)."""
    return bytes(((i * 7 + i // 256) % 251) for i in range(offset, offset + n))


_BLOCK = 64 * 1024


_PERIOD = 251 * 256
_cycle = []


def _pattern_blocks(n):
    # The pattern repeats every 251 * 256 bytes: one cached period makes large bodies cheap.
    period = _PERIOD
    if not _cycle:
        _cycle.append(pattern_bytes(period))
    cycle = _cycle[0]
    sent = 0
    while sent < n:
        start = sent % period
        take = min(_BLOCK, n - sent, period - start)
        yield cycle[start:start + take]
        sent += take


def pattern_sha256(n):
    """Hex SHA-256 of pattern_bytes(n), computed without holding the body in memory."""
    h = hashlib.sha256()
    for block in _pattern_blocks(n):
        h.update(block)
    return h.hexdigest()


class Request:
    """One request as received: method, target, version, headers [(name, value)] in wire order and
    case, body bytes (de-chunked), chunked (bool), trailers [(name, value)], conn_id (which upstream
    connection carried it: equal ids mean the proxy reused a connection), time (monotonic)."""

    def __init__(self, method, target, version, headers, body, chunked, trailers, conn_id):
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.body = body
        self.chunked = chunked
        self.trailers = trailers
        self.conn_id = conn_id
        self.time = time.monotonic()

    @property
    def path(self):
        """The target without the query string."""
        return self.target.split("?", 1)[0]

    def header(self, name):
        """The first value of header `name` (any case), or None."""
        return header_lookup.first(self.headers, name)

    def header_all(self, name):
        """Every value of header `name` (any case), in wire order."""
        return header_lookup.every(self.headers, name)

    def __repr__(self):
        return "Request(%s %s, %d headers, %d body bytes)" % (self.method, self.target,
                                                              len(self.headers), len(self.body))


class Behaviour:
    """How the upstream answers a path. Every field optional:

    status (200), body (bytes; None: the JSON echo), headers ([(name, value)] added to the response),
    content_type ("application/json"), chunked (send the body chunked, chunk_size bytes per chunk),
    stream_bytes (N: the body is pattern_bytes(N), streamed; sha256 = pattern_sha256(N)),
    delay (seconds before the response head), body_delay (seconds between head and body),
    close_mid_response (send the head and about half the body, then close), reset (answer the
    request with a TCP RST), hang (never answer; released by stop()), close (send
    "Connection: close" and close after the response), handler (callable(Request) ->
    (status, [(name, value)], body bytes) overriding the above).
    """

    FIELDS = ("status", "body", "headers", "content_type", "chunked", "chunk_size", "stream_bytes",
              "delay", "body_delay", "close_mid_response", "reset", "hang", "close", "handler")

    def __init__(self, status=200, body=None, headers=(), content_type="application/json",
                 chunked=False, chunk_size=8192, stream_bytes=None, delay=0.0, body_delay=0.0,
                 close_mid_response=False, reset=False, hang=False, close=False, handler=None):
        self.status = status
        self.body = body
        self.headers = list(headers)
        self.content_type = content_type
        self.chunked = chunked
        self.chunk_size = chunk_size
        self.stream_bytes = stream_bytes
        self.delay = delay
        self.body_delay = body_delay
        self.close_mid_response = close_mid_response
        self.reset = reset
        self.hang = hang
        self.close = close
        self.handler = handler


class _BadRequest(Exception):
    pass


class _Reader:
    """Buffered reads from a socket; None / short results mean EOF."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            return False
        self.buf += data
        return True

    def read_head(self):
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                head, self.buf = self.buf[:end], self.buf[end + 4:]
                return head
            if len(self.buf) > MAX_HEAD_BYTES:
                raise _BadRequest("head too large")
            if not self._fill():
                if self.buf:
                    raise _BadRequest("EOF inside the head")
                return None

    def read_line(self):
        while b"\r\n" not in self.buf:
            if len(self.buf) > MAX_HEAD_BYTES or not self._fill():
                raise _BadRequest("EOF or overlong line")
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def read_exact(self, n):
        while len(self.buf) < n:
            if not self._fill():
                raise _BadRequest("EOF inside the body")
        data, self.buf = self.buf[:n], self.buf[n:]
        return data


class EchoUpstream:
    """A threaded HTTP/1.1 server on 127.0.0.1 (port 0: a free one) with keep-alive.

    Thread-safe: requests are recorded under a lock as soon as their body has been read.
    reset_on_connect=True answers every new connection with a TCP RST before reading anything.
    ssl_context: a server-side ssl.SSLContext to serve HTTPS (an https upstream); url then says
    https and peer_certs records each client certificate (DER) the proxy presented.
    """

    def __init__(self, port=0, reset_on_connect=False, idle_timeout=30.0, ssl_context=None):
        self._lock = threading.Condition()
        self._requests = []
        self._routes = []  # (pattern, Behaviour); pattern ending in "*" is a prefix
        self._default = Behaviour()
        self._stop = threading.Event()
        self._threads = []
        self._conns = set()
        self._next_conn_id = 0
        self.connections_accepted = 0
        self.reset_on_connect = reset_on_connect
        self.idle_timeout = idle_timeout
        self.ssl_context = ssl_context
        self.peer_certs = []  # DER client certificates seen by a TLS upstream, in order
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", port))
        self.port = self._listener.getsockname()[1]
        self._accept_thread = None

    @property
    def url(self):
        """http://127.0.0.1:PORT"""
        return "%s://127.0.0.1:%d" % ("https" if self.ssl_context else "http", self.port)

    # --- configuration -------------------------------------------------------------------------

    def route(self, pattern, behaviour=None, **fields):
        """Answer requests whose path (no query) equals `pattern` (or starts with it when it ends in
        "*") with a Behaviour (given, or built from keyword fields). Later routes win."""
        b = behaviour or Behaviour(**fields)
        with self._lock:
            self._routes.insert(0, (pattern, b))
        return b

    def set_default(self, behaviour=None, **fields):
        """The behaviour for paths no route matches (initially the JSON echo)."""
        self._default = behaviour or Behaviour(**fields)

    def clear_routes(self):
        with self._lock:
            self._routes = []

    # --- observation ---------------------------------------------------------------------------

    @property
    def requests(self):
        """A snapshot list of every Request received so far."""
        with self._lock:
            return list(self._requests)

    def clear(self):
        """Forget the recorded requests."""
        with self._lock:
            self._requests = []

    def wait_for_requests(self, count, timeout=10.0):
        """Waits until at least `count` requests are recorded; returns the snapshot (raises
        TimeoutError listing what arrived otherwise)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self._requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("expected %d upstream requests, got %d: %r" % (
                        count, len(self._requests), self._requests))
                self._lock.wait(left)
            return list(self._requests)

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self):
        self._listener.listen(128)
        self._listener.settimeout(0.2)
        self._accept_thread = threading.Thread(target=self._accept_loop, name="echo-accept",
                                               daemon=True)
        self._accept_thread.start()
        return self

    def stop(self):
        """Stops accepting, closes every connection (releasing hung handlers), joins threads."""
        self._stop.set()
        if self._accept_thread is not None:
            self._accept_thread.join(5)
        try:
            self._listener.close()
        except OSError:
            pass
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in list(self._threads):
            t.join(5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # --- internals -----------------------------------------------------------------------------

    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                self.connections_accepted += 1
                self._next_conn_id += 1
                conn_id = self._next_conn_id
            if self.reset_on_connect:
                _reset(conn)
                continue
            t = threading.Thread(target=self._serve, args=(conn, conn_id), name="echo-conn",
                                 daemon=True)
            self._threads = [x for x in self._threads if x.is_alive()] + [t]
            t.start()

    def _behaviour(self, path):
        with self._lock:
            for pattern, b in self._routes:
                if pattern.endswith("*") and path.startswith(pattern[:-1]) or path == pattern:
                    return b
        return self._default

    def _serve(self, conn, conn_id):
        with self._lock:
            self._conns.add(conn)
        conn.settimeout(self.idle_timeout)
        try:
            if self.ssl_context is not None:
                tls = self.ssl_context.wrap_socket(conn, server_side=True)
                with self._lock:
                    self._conns.discard(conn)
                    self._conns.add(tls)
                conn = tls
                peer = conn.getpeercert(binary_form=True)
                if peer:
                    with self._lock:
                        self.peer_certs.append(peer)
        except (OSError, socket.timeout):
            with self._lock:
                self._conns.discard(conn)
            conn.close()
            return
        reader = _Reader(conn)
        try:
            while not self._stop.is_set():
                req = self._read_request(reader, conn_id)
                if req is None:
                    return
                with self._lock:
                    self._requests.append(req)
                    self._lock.notify_all()
                if not self._respond(conn, req, self._behaviour(req.path)):
                    return
        except _BadRequest:
            _send(conn, b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        except (OSError, socket.timeout):
            pass
        finally:
            with self._lock:
                self._conns.discard(conn)
            try:
                conn.close()
            except OSError:
                pass

    def _read_request(self, reader, conn_id):
        head = reader.read_head()
        if head is None:
            return None
        lines = head.split(b"\r\n")
        try:
            method, target, version = lines[0].decode("latin-1").split(" ")
        except ValueError:
            raise _BadRequest("bad request line %r" % lines[0])
        headers = []
        for line in lines[1:]:
            name, sep, value = line.decode("latin-1").partition(":")
            if not sep or not name or name != name.strip():
                raise _BadRequest("bad header line %r" % line)
            headers.append((name, value.strip(" \t")))
        lower = [(n.lower(), v) for n, v in headers]
        te = [v.lower() for n, v in lower if n == "transfer-encoding"]
        cl = [v for n, v in lower if n == "content-length"]
        body, chunked, trailers = b"", False, []
        if te:
            if cl or te[-1].split(",")[-1].strip() != "chunked":
                raise _BadRequest("bad framing")
            chunked = True
            parts = []
            total = 0
            while True:
                size_line = reader.read_line().split(b";", 1)[0].strip()
                try:
                    size = int(size_line, 16)
                except ValueError:
                    raise _BadRequest("bad chunk size %r" % size_line)
                if size == 0:
                    break
                total += size
                if total > MAX_BODY_BYTES:
                    raise _BadRequest("body too large")
                parts.append(reader.read_exact(size))
                if reader.read_exact(2) != b"\r\n":
                    raise _BadRequest("bad chunk end")
            while True:
                line = reader.read_line()
                if not line:
                    break
                n, _, v = line.decode("latin-1").partition(":")
                trailers.append((n, v.strip()))
            body = b"".join(parts)
        elif cl:
            if len(set(cl)) != 1 or not cl[0].isdigit() or int(cl[0]) > MAX_BODY_BYTES:
                raise _BadRequest("bad Content-Length")
            body = reader.read_exact(int(cl[0]))
        return Request(method, target, version, headers, body, chunked, trailers, conn_id)

    def _respond(self, conn, req, b):
        """Sends the response; returns whether the connection stays open."""
        if b.delay:
            if self._stop.wait(b.delay):
                return False
        if b.hang:
            self._stop.wait()
            return False
        if b.reset:
            _reset(conn)
            return False
        status, extra, content_type = b.status, list(b.headers), b.content_type
        body_iter, length = None, None
        if b.handler is not None:
            status, extra, body = b.handler(req)
            content_type = None
            body_iter, length = [body], len(body)
        elif b.stream_bytes is not None:
            body_iter, length = _pattern_blocks(b.stream_bytes), b.stream_bytes
        else:
            body = b.body
            if body is None:
                body = json.dumps({"method": req.method, "target": req.target,
                                   "headers": [[n, v] for n, v in req.headers],
                                   "body_length": len(req.body),
                                   "body_sha256": hashlib.sha256(req.body).hexdigest()}).encode()
            body_iter, length = [body], len(body)
        connection = (req.header("connection") or "").lower()
        if req.version == "HTTP/1.0":
            keep_alive = not b.close and connection == "keep-alive"
        else:
            keep_alive = not b.close and connection != "close"
        head = ["HTTP/1.1 %d %s" % (status, _REASONS.get(status, "Status"))]
        if content_type and not any(n.lower() == "content-type" for n, _ in extra):
            head.append("Content-Type: " + content_type)
        head += ["%s: %s" % (n, v) for n, v in extra]
        no_body = req.method == "HEAD" or status in (204, 304) or 100 <= status < 200
        user_framed = any(n.lower() in ("content-length", "transfer-encoding") for n, _ in extra)
        if not user_framed and not no_body:
            head.append("Transfer-Encoding: chunked" if b.chunked else "Content-Length: %d" % length)
        if not keep_alive:
            head.append("Connection: close")
        conn.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        if no_body:
            return keep_alive
        if b.body_delay and self._stop.wait(b.body_delay):
            return False
        sent = 0
        limit = length // 2 if b.close_mid_response else None
        for block in body_iter:
            if limit is not None and sent + len(block) >= limit:
                part = block[:max(0, limit - sent)]
                conn.sendall((b"%x\r\n" % len(block) if b.chunked else b"") + part)
                return False
            if b.chunked:
                for i in range(0, len(block), b.chunk_size):
                    piece = block[i:i + b.chunk_size]
                    conn.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            else:
                conn.sendall(block)
            sent += len(block)
            if self._stop.is_set():
                return False
        if b.chunked:
            conn.sendall(b"0\r\n\r\n")
        return keep_alive


def _send(conn, data):
    try:
        conn.sendall(data)
    except OSError:
        pass


def _reset(conn):
    """Closes with SO_LINGER 0: the peer sees a TCP RST."""
    try:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()
    except OSError:
        pass


_REASONS = {200: "OK", 201: "Created", 204: "No Content", 301: "Moved Permanently", 304: "Not Modified",
            400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            410: "Gone", 412: "Precondition Failed", 422: "Unprocessable Entity",
            500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}
