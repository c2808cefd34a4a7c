"""The proxy listening on the IPv6 loopback ("[::1]:PORT" in proxy.yaml): a client connecting over
IPv6 gets through with its identity, and the upstream sees X-Forwarded-For ::1. Skipped when the
machine has no IPv6 loopback."""

import json
import shutil
import socket
import subprocess
import tempfile
import time
import unittest

from harness import binary_path, client
from harness.pki import Pki
from harness.proxy import ProxyError, ProxyProcess, proxy_config
from harness.upstream import EchoUpstream


def ipv6_loopback_port():
    """A TCP port on [::1] that was free a moment ago, or None when there is no IPv6 loopback."""
    if not socket.has_ipv6:
        return None
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
            return s.getsockname()[1]
    except OSError:
        return None


def hold_ipv4_port(port):
    """A socket bound (not listening) to 127.0.0.1:port, or None when that port is taken. While it
    is held nothing can listen there, so a connection to it is refused."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", port))
        return s
    except OSError:
        s.close()
        return None


def exchange_v6(ctx, port, request_bytes, timeout=10.0):
    """Sends `request_bytes` over a new TLS connection to [::1]:port (server name localhost) and
    returns (the peer address, every response received until the server closes)."""
    raw = socket.create_connection(("::1", port), timeout=timeout)
    with ctx.wrap_socket(raw, server_hostname=client.SERVER_HOSTNAME) as sock:
        peer = sock.getpeername()[0]
        sock.sendall(request_bytes)
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return peer, client.parse_responses(data)


class Ipv6ProxyProcess(ProxyProcess):
    """ProxyProcess whose start-up wait polls [::1] (the harness polls 127.0.0.1)."""

    def start(self):
        self._stdout = open(self.stdout_path, "wb")
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen([self.binary, "run", "--config", self.config_path], cwd=self.workdir,
                                     stdout=self._stdout, stderr=self._stderr, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ProxyError("proxy exited with %d during start-up:\n%s" % (self.proc.returncode,
                                                                               self.stderr_text()))
            if client.wait_for_port(self.port, timeout=0.2, host="::1"):
                return self
        self.stop()
        raise ProxyError("proxy did not listen on [::1]:%d:\n%s" % (self.port, self.stderr_text()))


class Ipv6ListenTest(unittest.TestCase):
    def setUp(self):
        for _ in range(20):
            self.port = ipv6_loopback_port()
            if self.port is None:
                self.skipTest("this machine has no IPv6 loopback (::1)")
            held = hold_ipv4_port(self.port)
            if held is not None:
                self.addCleanup(held.close)
                break
        else:
            self.fail("no port free on both ::1 and 127.0.0.1")
        self.binary = binary_path()
        self.tmp = tempfile.mkdtemp(prefix="fmp-ipv6-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        pki = Pki(self.tmp)
        self.server_ca = pki.root("server-ca")
        root = pki.root("dt-root")
        ca = pki.intermediate("dt-ca", root, subject={"CN": "Example DirectTrust CA"})
        self.good = pki.client("ehr-client", ca)
        self.bundle = pki.bundle("dt", root, ca)
        self.server = pki.server(self.server_ca)  # SAN DNS:localhost, IP:127.0.0.1, IP:::1

    def test_request_over_ipv6(self):
        policy = {"default": "deny", "rules": [
            {"name": "hospital", "effect": "allow", "when": {"subject": {"O": ["Example Hospital"]}}}]}
        with EchoUpstream() as up:
            cfg = proxy_config(self.server, [("directtrust", self.bundle)], up.url,
                               listen="[::1]:%d" % self.port)
            with Ipv6ProxyProcess(self.binary, self.tmp, cfg, policy) as proxy:
                self.assertEqual(proxy.port, self.port)
                ctx = client.tls_context(cert=self.good.chain, key=self.good.key, ca=self.server_ca.cert)
                host = "[::1]:%d" % self.port
                # A client-supplied X-Forwarded-For is replaced, never appended to.
                peer, [response] = exchange_v6(ctx, self.port, client.build_request(
                    "GET", "/fhir/Patient/1?_format=json",
                    [("Host", host), ("X-Forwarded-For", "203.0.113.9"), ("Connection", "close")]))
                self.assertEqual(peer, "::1")
                self.assertEqual(response.status, 200, response.body)

                [forwarded] = up.wait_for_requests(1)
                self.assertEqual(forwarded.target, "/fhir/Patient/1?_format=json")
                self.assertEqual(forwarded.header_all("X-Forwarded-For"), ["::1"])
                self.assertEqual(forwarded.header("X-Forwarded-Proto"), "https")
                self.assertEqual(forwarded.header("X-Forwarded-Host"), host)
                self.assertEqual(forwarded.header("Host"), host)
                self.assertEqual(forwarded.header("X-Client-Subject-DN"), self.good.subject_dn)
                self.assertEqual(forwarded.header("X-Policy-Rule"), "hospital")
                # The echo body is what the upstream received, relayed unchanged.
                self.assertEqual(json.loads(response.body)["target"], "/fhir/Patient/1?_format=json")

                [record] = proxy.audit_lines(wait_for=1)
                self.assertEqual(record["decision"], "allow")
                self.assertEqual(record["subject"], self.good.subject_dn)
                self.assertRegex(record["client"], r"^\[::1\]:[0-9]+$")  # unambiguous address:port
                self.assertEqual(proxy.stop(), 0)

    def test_ipv6_listener_takes_no_ipv4_connections(self):
        """Listening on [::1] means exactly that: 127.0.0.1 on the same port is not served (setUp
        holds that IPv4 port bound, so a proxy that also listened there could not even start)."""
        policy = {"default": "allow"}
        with EchoUpstream() as up:
            cfg = proxy_config(self.server, [("directtrust", self.bundle)], up.url,
                               listen="[::1]:%d" % self.port)
            with Ipv6ProxyProcess(self.binary, self.tmp, cfg, policy) as proxy:
                ctx = client.tls_context(cert=self.good.chain, key=self.good.key, ca=self.server_ca.cert)
                _, responses = exchange_v6(ctx, self.port, client.build_request(
                    "GET", "/fhir/metadata", [("Connection", "close")]))
                self.assertEqual([r.status for r in responses], [200])
                with self.assertRaises(OSError):
                    socket.create_connection(("127.0.0.1", self.port), timeout=2).close()
                self.assertEqual(proxy.stop(), 0)


if __name__ == "__main__":
    unittest.main()
