"""Request smuggling and parser confusion: a table of raw requests sent over mTLS.

Each variant is an attack (or a valid-but-unusual request) followed by a pipelined request on the
same connection. For every variant the test checks, from the client's side, the statuses it got (a
rejection is a FHIR OperationOutcome: 400 structure, 431/413 too-long) and that the connection was
closed after a 400; and from the upstream's side, through a relay that records the raw bytes the
proxy sent upstream, exactly which requests arrived (none, or one normalised request: its method,
target, framing headers and body), that nothing smuggled inside an attack ever reached the upstream
as a request, and that chunk extensions and trailers were not passed on.

Decisions where RFC 9112 leaves room (documented in the README's Security section):
- `Transfer-Encoding` is accepted only as exactly `chunked` (any case, optional whitespace around the
  value: ` chunked` and a tab before it are valid OWS). `chunked, identity`, `identity, chunked`,
  `xchunked`, two TE headers, TE with any Content-Length, TE in HTTP/1.0: 400.
- Content-Length must be digits only (leading zeros are digits: `0005` is 5, forwarded as `5`);
  `+5`, `-1`, `0x5`, a list, two headers (even equal): 400.
- A chunk size that overflows, is not hex, or alone declares more than max_body_bytes: 400 / 413.
- Chunk extensions are valid: the body is forwarded re-chunked without them. Trailers are dropped.
- absolute-form, asterisk-form, CONNECT, Upgrade (h2c), the HTTP/2 preface: 400.
- `Expect: 100-continue` is answered by the proxy and not forwarded; other expectations: 400.
"""

import json
import re
import time
import unittest

from datapath_fixture import ALLOW_ALL, FHIR_JSON, MARKER_PATH, ProxyTestCase
from harness import client
from sniffing_relay import SniffingRelay

MAX_HEADER_BYTES = 4096
MAX_BODY_BYTES = 1000

CRLF = b"\r\n"
# A request line anywhere in the bytes sent upstream (also right after a body).
REQUEST_LINE = re.compile(rb"(?:GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS|CONNECT|PRI|TRACE) [^ \r\n]+ HTTP/[0-9.]+")
HOST = b"Host: localhost\r\n"


def smuggled(tag):
    """A complete request that must never reach the upstream as a request."""
    return b"GET /fhir/Basic/" + tag + b"-SMUGGLED HTTP/1.1\r\nHost: localhost\r\n\r\n"


def after(tag, close=True):
    """The request pipelined after each attack (closes the connection so the read ends)."""
    return (b"GET /fhir/Basic/" + tag + b"-after HTTP/1.1\r\nHost: localhost\r\n" +
            (b"Connection: close\r\n" if close else b"") + b"\r\n")


def post(tag, headers, body):
    return b"POST /fhir/Basic/" + tag + b" HTTP/1.1\r\n" + HOST + b"".join(
        h + CRLF for h in headers) + CRLF + body


def chunked_body(*pieces, trailer=b""):
    out = b""
    for p in pieces:
        out += b"%x\r\n%s\r\n" % (len(p), p)
    return out + b"0\r\n" + trailer + CRLF


def fwd(method, target, body=b"", chunked=None, absent=(), present=(), host="localhost"):
    """An expected upstream request. chunked: True (Transfer-Encoding: chunked, no Content-Length),
    False (Content-Length: len(body), or none for an empty body), None (not checked). host: the
    Host it must carry (UPSTREAM: the upstream's authority, added for an HTTP/1.0 request)."""
    return {"method": method, "target": target, "body": body, "chunked": chunked,
            "absent": absent, "present": present, "host": host}


UPSTREAM = object()


def after_fwd(tag):
    return fwd("GET", "/fhir/Basic/%s-after" % tag, b"", False)


# Each builder takes the variant's tag (bytes) and returns (raw bytes, expected statuses,
# expected upstream requests, bytes that must not appear upstream). The tag keeps every variant's
# targets distinct.
def v(name, build):
    return (name, build)


VARIANTS = [
    # --- CL.TE / TE.CL ---------------------------------------------------------------------------
    v("cl_te", lambda t: (post(t, [b"Content-Length: %d" % len(b"0\r\n\r\n" + smuggled(t)),
                                   b"Transfer-Encoding: chunked"], b"0\r\n\r\n" + smuggled(t)) +
                          after(t), [400], [], [])),
    v("te_cl", lambda t: (post(t, [b"Transfer-Encoding: chunked", b"Content-Length: 4"],
                               b"%x\r\n" % len(smuggled(t)) + smuggled(t) + b"\r\n0\r\n\r\n") +
                          after(t), [400], [], [])),
    v("te_cl_lowercase", lambda t: (post(t, [b"transfer-encoding: chunked", b"content-length: 3"],
                                         b"0\r\n\r\n" + smuggled(t)) + after(t), [400], [], [])),
    v("te_chunked_cl_zero", lambda t: (post(t, [b"Content-Length: 0", b"Transfer-Encoding: chunked"],
                                            b"5\r\nhello\r\n0\r\n\r\n") + after(t), [400], [], [])),
    # --- TE.TE obfuscations ------------------------------------------------------------------------
    v("te_xchunked", lambda t: (post(t, [b"Transfer-Encoding: xchunked"],
                                     chunked_body(smuggled(t))) + after(t), [400], [], [])),
    v("te_leading_space_ows_valid", lambda t: (
        post(t, [b"Transfer-Encoding:    chunked"], chunked_body(b"hello")) + after(t), [200, 200],
        [fwd("POST", "/fhir/Basic/%s" % t.decode(), b"hello", True), after_fwd(t.decode())], [])),
    v("te_tab_before_value_valid", lambda t: (
        post(t, [b"Transfer-Encoding:\tchunked"], chunked_body(b"hello")) + after(t), [200, 200],
        [fwd("POST", "/fhir/Basic/%s" % t.decode(), b"hello", True), after_fwd(t.decode())], [])),
    v("te_trailing_space_valid", lambda t: (
        post(t, [b"Transfer-Encoding: chunked   "], chunked_body(b"hi")) + after(t), [200, 200],
        [fwd("POST", "/fhir/Basic/%s" % t.decode(), b"hi", True), after_fwd(t.decode())], [])),
    # Valid OWS, but http_parser reads a tab after the token as part of it: refused (fail closed).
    v("te_trailing_tab", lambda t: (post(t, [b"Transfer-Encoding: chunked\t"],
                                         chunked_body(smuggled(t))) + after(t), [400], [], [])),
    v("te_uppercase_valid", lambda t: (
        post(t, [b"Transfer-Encoding: CHUNKED"], chunked_body(b"hel", b"lo")) + after(t), [200, 200],
        [fwd("POST", "/fhir/Basic/%s" % t.decode(), b"hello", True), after_fwd(t.decode())], [])),
    v("te_chunked_identity", lambda t: (post(t, [b"Transfer-Encoding: chunked, identity"],
                                             chunked_body(smuggled(t))) + after(t), [400], [], [])),
    v("te_identity_chunked", lambda t: (post(t, [b"Transfer-Encoding: identity, chunked"],
                                             chunked_body(smuggled(t))) + after(t), [400], [], [])),
    v("te_duplicated", lambda t: (post(t, [b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked"],
                                       chunked_body(smuggled(t))) + after(t), [400], [], [])),
    v("te_duplicated_with_identity", lambda t: (
        post(t, [b"Transfer-Encoding: identity", b"Transfer-Encoding: chunked"],
             chunked_body(smuggled(t))) + after(t), [400], [], [])),
    v("te_space_before_colon", lambda t: (post(t, [b"Transfer-Encoding : chunked"],
                                               chunked_body(smuggled(t))) + after(t), [400], [], [])),
    v("te_vertical_tab", lambda t: (post(t, [b"Transfer-Encoding: chunked\x0b"],
                                         chunked_body(smuggled(t))) + after(t), [400], [], [])),
    v("te_form_feed_before", lambda t: (post(t, [b"Transfer-Encoding:\x0cchunked"],
                                             chunked_body(smuggled(t))) + after(t), [400], [], [])),
    v("te_obs_fold", lambda t: (post(t, [b"Transfer-Encoding:", b" chunked"],
                                     chunked_body(smuggled(t))) + after(t), [400], [], [])),
    v("te_nul", lambda t: (post(t, [b"Transfer-Encoding: chunked\x00"],
                                chunked_body(smuggled(t))) + after(t), [400], [], [])),
    v("te_underscore_name", lambda t: (post(t, [b"Transfer_Encoding: chunked"],
                                            chunked_body(smuggled(t))) + after(t), [400], [], [])),
    v("cl_underscore_name", lambda t: (post(t, [b"Content_Length: %d" % len(smuggled(t))],
                                            smuggled(t)) + after(t), [400], [], [])),
    v("te_http10", lambda t: (b"POST /fhir/Basic/" + t + b" HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n" +
                              chunked_body(smuggled(t)) + after(t), [400], [], [])),
    # --- Content-Length ----------------------------------------------------------------------------
    v("cl_conflicting", lambda t: (post(t, [b"Content-Length: 2", b"Content-Length: 7"], b"{}") +
                                   after(t), [400], [], [])),
    v("cl_duplicate_equal", lambda t: (post(t, [b"Content-Length: 2", b"content-length: 2"], b"{}") +
                                       after(t), [400], [], [])),
    v("cl_list", lambda t: (post(t, [b"Content-Length: 2, 2"], b"{}") + after(t), [400], [], [])),
    v("cl_plus_sign", lambda t: (post(t, [b"Content-Length: +5"], b"hello") + after(t), [400], [], [])),
    v("cl_negative", lambda t: (post(t, [b"Content-Length: -1"], b"hello") + after(t), [400], [], [])),
    v("cl_hex", lambda t: (post(t, [b"Content-Length: 0x5"], b"hello") + after(t), [400], [], [])),
    v("cl_inner_space", lambda t: (post(t, [b"Content-Length: 1 0"], b"0123456789") + after(t),
                                   [400], [], [])),
    v("cl_overflow", lambda t: (post(t, [b"Content-Length: 184467440737095516160"], b"hello") +
                                after(t), [400], [], [])),
    v("cl_leading_zeros_valid", lambda t: (
        post(t, [b"Content-Length: 0005"], b"hello") + after(t), [200, 200],
        [fwd("POST", "/fhir/Basic/%s" % t.decode(), b"hello", False), after_fwd(t.decode())], [])),
    v("cl_over_max_body", lambda t: (post(t, [b"Content-Length: %d" % (MAX_BODY_BYTES + 1)],
                                          b"x" * (MAX_BODY_BYTES + 1)) + after(t), [413], [], [])),
    v("cl_body_holds_a_request_valid", lambda t: (
        post(t, [b"Content-Length: %d" % len(smuggled(t))], smuggled(t)) + after(t), [200, 200],
        [fwd("POST", "/fhir/Basic/%s" % t.decode(), smuggled(t), False), after_fwd(t.decode())],
        None)),  # the smuggled bytes do go upstream, as the body
    v("cl_listed_in_connection_valid", lambda t: (
        post(t, [b"Connection: Content-Length", b"Content-Length: 5"], b"hello") + after(t),
        [200, 200], [fwd("POST", "/fhir/Basic/%s" % t.decode(), b"hello", False),
                     after_fwd(t.decode())], [])),
    # --- chunk sizes, extensions, trailers ---------------------------------------------------------
    v("chunk_size_overflow", lambda t: (post(t, [b"Transfer-Encoding: chunked"],
                                             b"1ffffffffffffffff\r\n" + smuggled(t) + b"\r\n0\r\n\r\n") +
                                        after(t), [400], [], [])),
    v("chunk_size_over_max_body", lambda t: (post(t, [b"Transfer-Encoding: chunked"],
                                                  b"fffffff\r\n" + smuggled(t)) + after(t),
                                             [413], [], [])),
    v("chunk_size_negative", lambda t: (post(t, [b"Transfer-Encoding: chunked"],
                                             b"-5\r\nhello\r\n0\r\n\r\n") + after(t), [400], [], [])),
    v("chunk_size_0x_prefix", lambda t: (post(t, [b"Transfer-Encoding: chunked"],
                                              b"0x5\r\nhello\r\n0\r\n\r\n") + after(t), [400], [], [])),
    v("chunk_size_not_hex", lambda t: (post(t, [b"Transfer-Encoding: chunked"],
                                            b"g\r\nhello\r\n0\r\n\r\n") + after(t), [400], [], [])),
    v("chunk_data_longer_than_size", lambda t: (post(t, [b"Transfer-Encoding: chunked"],
                                                     b"3\r\nhello\r\n0\r\n\r\n") + after(t),
                                                [400], [], [])),
    v("chunk_missing_crlf_after_data", lambda t: (
        post(t, [b"Transfer-Encoding: chunked"], b"5\r\nhelloXX" + smuggled(t)) + after(t),
        [400], [], [])),
    v("chunk_extension_valid", lambda t: (
        post(t, [b"Transfer-Encoding: chunked"],
             b"5;ext-name=ext-value\r\nhello\r\n3;quoted=\"a b\"\r\nabc\r\n0;last=1\r\n\r\n") +
        after(t), [200, 200],
        [fwd("POST", "/fhir/Basic/%s" % t.decode(), b"helloabc", True), after_fwd(t.decode())],
        [b"ext-name", b"ext-value", b"quoted", b"last=1"])),
    v("trailers_dropped", lambda t: (
        post(t, [b"Transfer-Encoding: chunked", b"Trailer: X-Client-Subject-DN"],
             chunked_body(b"hello", trailer=b"X-Client-Subject-DN: CN=spoofed\r\n"
                                            b"Content-Length: 99\r\nX-Trailer-Marker: yes\r\n")) +
        after(t), [200, 200],
        [fwd("POST", "/fhir/Basic/%s" % t.decode(), b"hello", True, absent=["Trailer"]),
         after_fwd(t.decode())],
        [b"CN=spoofed", b"X-Trailer-Marker", b"Content-Length: 99"])),
    # --- header bytes ------------------------------------------------------------------------------
    v("nul_in_header_value", lambda t: (b"GET /fhir/Basic/" + t + b" HTTP/1.1\r\n" + HOST +
                                        b"X-A: a\x00b\r\n\r\n" + after(t), [400], [], [])),
    v("cr_in_header_value", lambda t: (b"GET /fhir/Basic/" + t + b" HTTP/1.1\r\n" + HOST +
                                       b"X-A: a\rTransfer-Encoding: chunked\r\n\r\n" + after(t),
                                       [400], [], [])),
    v("lf_in_header_value", lambda t: (b"GET /fhir/Basic/" + t + b" HTTP/1.1\r\n" + HOST +
                                       b"X-A: a\nContent-Length: 5\r\n\r\nhello" + after(t),
                                       [400], [], [])),
    v("header_name_bad_char", lambda t: (b"GET /fhir/Basic/" + t + b" HTTP/1.1\r\n" + HOST +
                                         b"X<A>: b\r\n\r\n" + after(t), [400], [], [])),
    v("header_name_non_ascii", lambda t: (b"GET /fhir/Basic/" + t + b" HTTP/1.1\r\n" + HOST +
                                          b"X-\xc3\xa9: b\r\n\r\n" + after(t), [400], [], [])),
    v("header_name_empty", lambda t: (b"GET /fhir/Basic/" + t + b" HTTP/1.1\r\n" + HOST +
                                      b": b\r\n\r\n" + after(t), [400], [], [])),
    v("header_without_colon", lambda t: (b"GET /fhir/Basic/" + t + b" HTTP/1.1\r\n" + HOST +
                                         b"NoColonHere\r\n\r\n" + after(t), [400], [], [])),
    v("header_too_large", lambda t: (b"GET /fhir/Basic/" + t + b" HTTP/1.1\r\n" + HOST +
                                     b"X-Big: " + b"a" * MAX_HEADER_BYTES + b"\r\n\r\n" + after(t),
                                     [431], [], [])),
    # --- request line ------------------------------------------------------------------------------
    v("overlong_request_line", lambda t: (b"GET /fhir/Basic/" + t + b"/" + b"a" * (MAX_HEADER_BYTES + 10) +
                                          b" HTTP/1.1\r\n" + HOST + b"\r\n" + after(t), [431], [], [])),
    v("absolute_form", lambda t: (b"GET http://evil.example/fhir/Basic/" + t + b" HTTP/1.1\r\n" + HOST +
                                  b"\r\n" + after(t), [400], [], [])),
    v("asterisk_form", lambda t: (b"OPTIONS * HTTP/1.1\r\n" + HOST + b"\r\n" + after(t), [400], [], [])),
    v("connect", lambda t: (b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n" +
                            smuggled(t), [400], [], [])),
    v("lowercase_method", lambda t: (b"get /fhir/Basic/" + t + b" HTTP/1.1\r\n" + HOST + b"\r\n" +
                                     after(t), [400], [], [])),
    v("http09_style", lambda t: (b"GET /fhir/Basic/" + t + b"\r\n\r\n" + after(t), [400], [], [])),
    v("bad_version", lambda t: (b"GET /fhir/Basic/" + t + b" HTTP/1.1x\r\n" + HOST + b"\r\n" + after(t),
                                [400], [], [])),
    v("http2_preface", lambda t: (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + smuggled(t), [400], [], [])),
    v("upgrade_h2c", lambda t: (b"GET /fhir/Basic/" + t + b" HTTP/1.1\r\n" + HOST +
                                b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
                                b"HTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n" + smuggled(t), [400], [], [])),
    v("upgrade_websocket", lambda t: (b"GET /fhir/Basic/" + t + b" HTTP/1.1\r\n" + HOST +
                                      b"Connection: Upgrade\r\nUpgrade: websocket\r\n"
                                      b"Sec-WebSocket-Version: 13\r\n"
                                      b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n" +
                                      smuggled(t), [400], [], [])),
    v("host_twice", lambda t: (b"GET /fhir/Basic/" + t + b" HTTP/1.1\r\n" + HOST +
                               b"Host: evil.example\r\n\r\n" + after(t), [400], [], [])),
    v("missing_host", lambda t: (b"GET /fhir/Basic/" + t + b" HTTP/1.1\r\nX-A: b\r\n\r\n" + after(t),
                                 [400], [], [])),
    v("leading_empty_lines_valid", lambda t: (
        b"\r\n\r\nGET /fhir/Basic/" + t + b" HTTP/1.1\r\n" + HOST + b"\r\n" + after(t), [200, 200],
        [fwd("GET", "/fhir/Basic/%s" % t.decode(), b"", False), after_fwd(t.decode())], [])),
    # --- Expect, HTTP/1.0, hop-by-hop --------------------------------------------------------------
    v("expect_100_continue_valid", lambda t: (
        post(t, [b"Expect: 100-continue", b"Content-Length: 5"], b"hello") + after(t), [200, 200],
        [fwd("POST", "/fhir/Basic/%s" % t.decode(), b"hello", False, absent=["Expect"]),
         after_fwd(t.decode())], [])),
    v("expect_unknown", lambda t: (post(t, [b"Expect: 200-ok", b"Content-Length: 5"], b"hello") +
                                   after(t), [400], [], [])),
    v("http10_keep_alive_valid", lambda t: (
        b"GET /fhir/Basic/" + t + b" HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" + after(t),
        [200, 200], [fwd("GET", "/fhir/Basic/%s" % t.decode(), b"", False, absent=["Connection"],
                         host=UPSTREAM), after_fwd(t.decode())], [])),
    v("http10_without_keep_alive_ends_connection", lambda t: (
        b"GET /fhir/Basic/" + t + b" HTTP/1.0\r\n\r\n" + after(t), [200],
        [fwd("GET", "/fhir/Basic/%s" % t.decode(), b"", False, host=UPSTREAM)], [])),
    v("connection_close_then_pipelined", lambda t: (
        b"GET /fhir/Basic/" + t + b" HTTP/1.1\r\n" + HOST + b"Connection: close\r\n\r\n" + smuggled(t),
        [200], [fwd("GET", "/fhir/Basic/%s" % t.decode(), b"", False)], [])),
    v("connection_lists_host", lambda t: (
        b"GET /fhir/Basic/" + t + b" HTTP/1.1\r\n" + HOST + b"Connection: Host, X-Forwarded-For\r\n\r\n" +
        after(t), [200, 200],
        [fwd("GET", "/fhir/Basic/%s" % t.decode(), b"", False, present=[("Host", "localhost")]),
         after_fwd(t.decode())], [])),
    v("te_header_hop_by_hop", lambda t: (
        b"GET /fhir/Basic/" + t + b" HTTP/1.1\r\n" + HOST + b"TE: trailers\r\nKeep-Alive: 5\r\n\r\n" +
        after(t), [200, 200],
        [fwd("GET", "/fhir/Basic/%s" % t.decode(), b"", False, absent=["TE", "Keep-Alive"]),
         after_fwd(t.decode())], [])),
]


class AdversarialHttpTest(ProxyTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.leaf = cls.client_cert("adv-client")
        cls.relay = SniffingRelay(cls.up.port)
        cls.proxy = cls.make_proxy(
            ALLOW_ALL, upstream_url=cls.relay.url,
            limits={"max_header_bytes": MAX_HEADER_BYTES, "max_body_bytes": MAX_BODY_BYTES})

    @classmethod
    def tearDownClass(cls):
        cls.proxy.stop()
        cls.relay.stop()
        super().tearDownClass()

    def exchange(self, data, timeout=5.0):
        """Sends `data` on a new connection; returns (bytes received, closed by the server)."""
        sock = client.connect(self.ctx(self.leaf), self.proxy.port, timeout)
        received, closed = b"", False
        try:
            sock.sendall(data)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    chunk = sock.recv(65536)
                except (ConnectionError, client.ssl.SSLZeroReturnError):
                    closed = True
                    break
                except (OSError, client.ssl.SSLError):
                    break
                if not chunk:
                    closed = True
                    break
                received += chunk
        finally:
            sock.close()
        return received, closed

    def check_variant(self, index, name, build):
        tag = b"v%d" % index
        data, statuses, expected, forbidden = build(tag)
        before = len(self.up.requests)
        mark = self.relay.mark()
        received, closed = self.exchange(data)
        responses = client.parse_responses(received)
        self.assertEqual([r.status for r in responses], statuses,
                         "%s: got %r" % (name, received[:600]))
        self.assertTrue(closed, "%s: connection left open" % name)
        for r in responses:
            if r.status >= 400:
                self.assertEqual(r.header("Content-Type"), FHIR_JSON, name)
                body = json.loads(r.body)
                self.assertEqual(body["resourceType"], "OperationOutcome", name)
                code = {400: "structure", 413: "too-long", 431: "too-long"}[r.status]
                self.assertEqual(body["issue"][0]["code"], code, name)
                self.assertEqual(r.header("Connection"), "close", name)
        # What a 400/413/431 leaves behind: the connection closes, nothing after it is processed.
        if statuses and statuses[-1] >= 400:
            self.assertEqual(len(responses), len(statuses), name)

        # Flush: a marker over a new connection arrives after anything forwarded before it.
        r = client.request(self.ctx(self.leaf), self.proxy.port, "GET", MARKER_PATH)
        self.assertEqual(r.status, 200, name)
        got = self.up.wait_for_requests(before + 1)[before:]
        self.assertEqual(got[-1].target, MARKER_PATH, name)
        got = got[:-1]
        self.assertEqual([(q.method, q.target) for q in got],
                         [(e["method"], e["target"]) for e in expected], name)
        for q, e in zip(got, expected):
            self.assertEqual(q.version, "HTTP/1.1", name)
            self.assertEqual(q.body, e["body"], name)
            self.assertEqual(q.trailers, [], name)
            te = q.header_all("Transfer-Encoding")
            cl = q.header_all("Content-Length")
            if e["chunked"] is True:
                self.assertEqual((te, cl), (["chunked"], []), name)
            elif e["chunked"] is False:
                self.assertEqual(te, [], name)
                if e["body"]:
                    self.assertEqual(cl, [str(len(e["body"]))], name)
                else:
                    self.assertIn(cl, ([], ["0"]), name)
            host = "127.0.0.1:%d" % self.relay.port if e["host"] is UPSTREAM else e["host"]
            self.assertEqual(q.header_all("Host"), [host], name)
            for h in e["absent"]:
                self.assertEqual(q.header_all(h), [], "%s: %s forwarded" % (name, h))
            for h, value in e["present"]:
                self.assertEqual(q.header_all(h), [value], name)
        sent = self.relay.sent_since(mark)
        if forbidden is not None:
            self.assertNotIn(b"SMUGGLED", sent, "%s: smuggled bytes reached the upstream" % name)
            for f in forbidden:
                self.assertNotIn(f, sent, "%s: %r reached the upstream" % (name, f))
        # Every request line the upstream saw is one of the expected ones (or the marker): no
        # partially forwarded attack either.
        lines = REQUEST_LINE.findall(sent)
        expected_lines = [("%s %s HTTP/1.1" % (e["method"], e["target"])).encode() for e in expected]
        expected_lines.append(b"GET " + MARKER_PATH.encode() + b" HTTP/1.1")
        if forbidden is not None:
            self.assertEqual(lines, expected_lines, name)

    def test_variants(self):
        self.assertGreaterEqual(len(VARIANTS), 40)
        names = [n for n, _ in VARIANTS]
        self.assertEqual(len(names), len(set(names)))
        for i, (name, build) in enumerate(VARIANTS):
            with self.subTest(variant=name):
                self.check_variant(i, name, build)
        self.assertTrue(self.proxy.running())

    def test_pipelined_valid_requests_after_rejected_one_on_other_connection(self):
        # A 400 on one connection does not disturb another connection's pipelined requests.
        with client.Connection(self.ctx(self.leaf), self.proxy.port) as good:
            good.send_raw(b"GET /fhir/Basic/p1 HTTP/1.1\r\nHost: localhost\r\n\r\n"
                          b"GET /fhir/Basic/p2 HTTP/1.1\r\nHost: localhost\r\n\r\n")
            bad, closed = self.exchange(b"POST /fhir/Basic/x HTTP/1.1\r\nHost: localhost\r\n"
                                        b"Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
            self.assertEqual([r.status for r in client.parse_responses(bad)], [400])
            self.assertTrue(closed)
            self.assertEqual(good.read_response().json()["target"], "/fhir/Basic/p1")
            self.assertEqual(good.read_response().json()["target"], "/fhir/Basic/p2")


if __name__ == "__main__":
    unittest.main()
