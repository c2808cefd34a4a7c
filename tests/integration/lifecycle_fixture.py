"""Shared set-up of the streaming, reload, shutdown, timeout and fd-leak integration tests.

LifecycleTestCase mints one PKI per test class (a server CA with a server certificate, a
DirectTrust-like root with an intermediate, one client), gives every test its own EchoUpstream, and
starts the real binary on demand with start_proxy(). Helpers read the proxy's memory and open file
descriptors from /proc, and RawUpstream serves hand-written responses (framing the EchoUpstream
cannot produce: close-delimited bodies, stalls in the middle of a body).
"""

import json
import os
import shutil
import socket
import tempfile
import threading
import time
import unittest

from harness import binary_path, client
from harness.pki import Pki
from harness.proxy import ProxyProcess, proxy_config
from harness.upstream import EchoUpstream

# Hospital clients may do anything except read /fhir/Secret*: one allowed and one denied path.
POLICY = {"default": "deny", "rules": [
    {"name": "no-secrets", "effect": "deny", "when": {"path": ["/fhir/Secret*"]}},
    {"name": "hospital", "effect": "allow", "when": {"subject": {"O": ["Example Hospital"]}}},
]}


def proc_status(pid):
    """{field: kB} of the numeric memory fields of /proc/PID/status (VmRSS, VmHWM, ...)."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            name, _, value = line.partition(":")
            parts = value.split()
            if len(parts) == 2 and parts[1] == "kB":
                out[name] = int(parts[0])
    return out


def fd_count(pid):
    """How many file descriptors the process has open."""
    return len(os.listdir("/proc/%d/fd" % pid))


def _tcp_sockets(pid):
    """{inode: (local_port, remote_port)} of the TCP sockets in the process's network namespace."""
    out = {}
    for table in ("tcp", "tcp6"):
        try:
            with open("/proc/%d/net/%s" % (pid, table)) as f:
                next(f)
                for line in f:
                    cols = line.split()
                    local, remote, inode = cols[1], cols[2], cols[9]
                    out[inode] = (int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16))
        except FileNotFoundError:
            pass
    return out


def open_fds(pid):
    """The process's open descriptors as {"socket": {inode: (local_port, remote_port) or None},
    "other": [link target, ...]}. None: a socket that is not TCP (or not yet bound). A socket that
    closes while this runs is left out."""
    links = {}
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            links[fd] = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except FileNotFoundError:
            continue  # closed meanwhile
    tcp = _tcp_sockets(pid)
    sockets, other = {}, []
    for fd, target in links.items():
        if not target.startswith("socket:["):
            other.append(target)
            continue
        inode = target[8:-1]
        if inode not in tcp:
            try:
                if os.readlink("/proc/%d/fd/%s" % (pid, fd)) != target:
                    continue  # closed (and maybe reused) after the listing
            except FileNotFoundError:
                continue
        sockets[inode] = tcp.get(inode)
    return {"socket": sockets, "other": sorted(other)}


def wait_until(predicate, timeout, interval=0.05):
    """Polls `predicate` until it returns a true value or `timeout` seconds pass; returns the last
    value it returned."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def connection_refused(port, timeout=0.5):
    """Whether a TCP connect to 127.0.0.1:port is refused (False when it is accepted)."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=timeout).close()
        return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False


class RawUpstream:
    """A one-request-per-connection upstream whose responses are written by `respond(sock, head)`
    (head: the request head bytes). Connections are served on daemon threads; stop() releases any
    respond() waiting on `self.release` and closes everything."""

    def __init__(self, respond):
        self.respond = respond
        self.release = threading.Event()
        self.requests = []  # request heads as received
        self._lock = threading.Lock()
        self._conns = []
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="raw-upstream", daemon=True)
        self._thread.start()

    def _accept(self):
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        conn.settimeout(30)
        head = b""
        try:
            while b"\r\n\r\n" not in head:
                data = conn.recv(65536)
                if not data:
                    return
                head += data
            with self._lock:
                self.requests.append(head)
            self.respond(conn, head)
        except OSError:
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def stop(self):
        self._stop.set()
        self.release.set()
        self._thread.join(5)
        self._listener.close()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class LifecycleTestCase(unittest.TestCase):
    """Base class: class-level PKI; a fresh EchoUpstream (self.up) per test; proxies per test.

    Class attributes: binary, tmp, pki, server_ca, server, root, ca, bundle, client (a hospital
    client certificate under ca).
    """

    @classmethod
    def setUpClass(cls):
        cls.binary = binary_path()
        cls.tmp = tempfile.mkdtemp(prefix="fmp-life-")
        cls.pki = Pki(os.path.join(cls.tmp, "pki"))
        cls.server_ca = cls.pki.root("server-ca", subject={"CN": "Test Server CA"})
        cls.server = cls.pki.server(cls.server_ca)
        cls.root = cls.pki.root("dt-root", subject={"C": "US", "O": "DirectTrust Test",
                                                   "CN": "DirectTrust Test Root"})
        cls.ca = cls.pki.intermediate("dt-ca", cls.root, subject={"C": "US", "O": "DirectTrust Test",
                                                                 "CN": "Example DirectTrust CA"})
        cls.bundle = cls.pki.bundle("dt-bundle", cls.root, cls.ca)
        cls.client = cls.pki.client("ehr-client", cls.ca)
        cls._count = 0

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.up = EchoUpstream().start()
        self.addCleanup(self.up.stop)

    def ctx(self):
        """A TLS context presenting the hospital client certificate."""
        return client.tls_context(cert=self.client.chain, key=self.client.key, ca=self.server_ca.cert)

    def config(self, upstream_url=None, upstream_settings=None, **overrides):
        """proxy.yaml for this class's PKI; upstream_settings are merged into `upstream` (e.g.
        response_timeout_ms), overrides replace top-level keys."""
        cfg = proxy_config(self.server, [("directtrust", self.bundle)],
                           upstream_url or self.up.url, **overrides)
        cfg["upstream"].update(upstream_settings or {})
        return cfg

    def start_proxy(self, config=None, policy=None, workdir=None):
        """Starts the proxy (stopped at test clean-up) and returns its ProxyProcess."""
        type(self)._count += 1
        workdir = workdir or os.path.join(self.tmp, "proxy-%d" % self._count)
        proxy = ProxyProcess(self.binary, workdir, config or self.config(),
                             POLICY if policy is None else policy)
        proxy.start()
        self.addCleanup(proxy.stop)
        return proxy

    def stderr_records(self, proxy):
        """The proxy's stderr log as a list of dicts (one JSON object per line)."""
        out = []
        for line in proxy.stderr_text().splitlines():
            line = line.strip()
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out
