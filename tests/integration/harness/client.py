"""TLS client helpers for talking to the proxy: contexts, one-shot requests, keep-alive
connections, raw bytes, and a minimal HTTP/1.1 response reader (Content-Length, chunked, or
until close).

    ctx = tls_context(cert=client.chain, key=client.key, ca=server_ca.cert)
    status, headers, body = request(ctx, proxy.port, "GET", "/fhir/Patient/1")
    with Connection(ctx, proxy.port) as c:
        r1 = c.request("GET", "/fhir/Patient/1")
        r2 = c.request("GET", "/fhir/Patient/2")
"""

import json
import socket
import ssl
import time
from typing import NamedTuple
from . import headers as header_lookup

SERVER_HOSTNAME = "localhost"


def tls_context(cert=None, key=None, ca=None, min_version=None, max_version=None):
    """A client SSLContext verifying the server against `ca` (a PEM path) for hostname localhost.

    cert: the client chain PEM (leaf first) or leaf; key: its key (default: in `cert`). No cert:
    an anonymous client. min_version / max_version: "1.2" or "1.3".
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    if ca:
        ctx.load_verify_locations(cafile=ca)
    if cert:
        ctx.load_cert_chain(cert, key)
    versions = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
    if min_version:
        ctx.minimum_version = versions[min_version]
    if max_version:
        ctx.maximum_version = versions[max_version]
    return ctx


class Response(NamedTuple):
    """A response: unpacks as (status, headers, body); headers are [(name, value)] in wire order."""

    status: int
    headers: list
    body: bytes

    def header(self, name):
        """The first value of header `name` (any case), or None."""
        return header_lookup.first(self.headers, name)

    def header_all(self, name):
        """Every value of header `name` (any case), in wire order."""
        return header_lookup.every(self.headers, name)

    def json(self):
        """The body parsed as JSON."""
        return json.loads(self.body)


class ResponseError(Exception):
    """The response could not be read: EOF, bad framing or timeout (message says which)."""


def connect(ctx, port, timeout=10.0, host="127.0.0.1", session=None):
    """A TLS socket to host:port with the handshake done (server name localhost), offering
    `session` (an ssl.SSLSession of ctx) for resumption."""
    raw = socket.create_connection((host, port), timeout=timeout)
    try:
        return ctx.wrap_socket(raw, server_hostname=SERVER_HOSTNAME, session=session)
    except BaseException:
        raw.close()
        raise


def build_request(method, target, headers=None, body=None, port=None):
    """Request bytes. headers: [(name, value)] or dict, sent as given; Host (localhost[:port]) and
    Content-Length (when body is not None) are added unless present in any case."""
    items = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    names = {n.lower() for n, _ in items}
    if "host" not in names:
        items.insert(0, ("Host", SERVER_HOSTNAME if port is None else "%s:%d" % (SERVER_HOSTNAME, port)))
    if body is not None:
        if isinstance(body, str):
            body = body.encode()
        if "content-length" not in names and "transfer-encoding" not in names:
            items.append(("Content-Length", str(len(body))))
    head = "%s %s HTTP/1.1\r\n" % (method, target)
    head += "".join("%s: %s\r\n" % (n, v) for n, v in items)
    return head.encode("latin-1") + b"\r\n" + (body or b"")


class _SocketReader:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.eof = False

    def _fill(self):
        if self.eof:
            return False
        try:
            data = self.sock.recv(65536)
        except ssl.SSLZeroReturnError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def line(self):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line, self.buf = self.buf[:i + 1], self.buf[i + 1:]
                return line.rstrip(b"\r\n")
            if not self._fill():
                raise ResponseError("connection closed before the end of a line (got %r)" % self.buf)

    def exact(self, n):
        while len(self.buf) < n:
            if not self._fill():
                raise ResponseError("connection closed after %d of %d body bytes" % (len(self.buf), n))
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def rest(self):
        while self._fill():
            pass
        data, self.buf = self.buf, b""
        return data


def read_response(reader, method="GET"):
    """Reads one response (skipping 1xx) from a _SocketReader; returns a Response."""
    while True:
        status_line = reader.line()
        parts = status_line.decode("latin-1").split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/"):
            raise ResponseError("bad status line %r" % status_line)
        status = int(parts[1])
        headers = []
        while True:
            line = reader.line()
            if not line:
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers.append((name, value.strip()))
        if 100 <= status < 200 and status != 101:
            continue
        break
    resp = Response(status, headers, b"")
    te = (resp.header("transfer-encoding") or "").lower()
    if method == "HEAD" or status in (204, 304):
        body = b""
    elif te.endswith("chunked"):
        parts = []
        while True:
            size = int(reader.line().split(b";")[0].strip(), 16)
            if size == 0:
                while reader.line():  # trailers
                    pass
                break
            parts.append(reader.exact(size))
            reader.exact(2)
        body = b"".join(parts)
    elif resp.header("content-length") is not None:
        body = reader.exact(int(resp.header("content-length")))
    else:
        body = reader.rest()
    return Response(status, headers, body)


class Connection:
    """One TLS connection for several requests (keep-alive). Raises ssl/OS errors from the
    handshake (e.g. a rejected client certificate) on construction or on the first request."""

    def __init__(self, ctx, port, timeout=10.0, session=None):
        self.port = port
        self.sock = connect(ctx, port, timeout, session=session)
        self._reader = _SocketReader(self.sock)

    def request(self, method, target, headers=None, body=None):
        """Sends one request and reads its response."""
        self.send_raw(build_request(method, target, headers, body, self.port))
        return self.read_response(method)

    def send_raw(self, data):
        """Sends bytes as they are."""
        self.sock.sendall(data)

    def read_response(self, method="GET"):
        """Reads the next response on this connection."""
        try:
            return read_response(self._reader, method)
        except socket.timeout as e:
            raise ResponseError("timed out waiting for a response") from e

    def is_closed_by_peer(self, timeout=5.0):
        """Whether the server closes the connection within `timeout` (EOF or reset) without
        sending anything further. Bytes received instead return False (and are kept)."""
        old = self.sock.gettimeout()
        self.sock.settimeout(timeout)
        try:
            if self._reader.buf:
                return False
            return not self._reader._fill()
        except socket.timeout:
            return False
        except (ConnectionError, ssl.SSLError, OSError):
            return True
        finally:
            try:
                self.sock.settimeout(old)
            except OSError:
                pass

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def request(ctx, port, method, target, headers=None, body=None, timeout=10.0):
    """One request over a new connection; returns Response (status, headers, body)."""
    with Connection(ctx, port, timeout) as c:
        return c.request(method, target, headers, body)


def raw(ctx, port, data, timeout=5.0):
    """Sends raw bytes over a new TLS connection and returns every byte received until the server
    closes or `timeout` passes without data."""
    sock = connect(ctx, port, timeout)
    received = b""
    try:
        sock.sendall(data)
        while True:
            try:
                chunk = sock.recv(65536)
            except (socket.timeout, ssl.SSLZeroReturnError, ConnectionError):
                break
            except ssl.SSLError:
                break
            if not chunk:
                break
            received += chunk
    finally:
        sock.close()
    return received


def parse_responses(data, method="GET"):
    """Every complete response in `data` (bytes from raw()), in order."""
    reader = _SocketReader.__new__(_SocketReader)
    reader.sock, reader.buf, reader.eof = None, data, True
    out = []
    while reader.buf:
        try:
            out.append(read_response(reader, method))
        except ResponseError:
            break
    return out


def handshake_error(ctx, port, timeout=5.0):
    """Tries a TLS connection and one GET /fhir/metadata; returns None when a response arrives, or
    the exception (ssl.SSLError, ConnectionResetError, ResponseError...) when the server rejects
    the connection. With TLS 1.3 a rejected client certificate surfaces only on the first read,
    hence the request."""
    try:
        with Connection(ctx, port, timeout) as c:
            c.request("GET", "/fhir/metadata")
        return None
    except (ssl.SSLError, OSError, ResponseError) as e:
        return e


def wait_for_port(port, timeout=10.0, host="127.0.0.1"):
    """Waits until host:port accepts TCP; returns whether it did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False
