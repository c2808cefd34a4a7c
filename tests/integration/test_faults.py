"""Fault injection: a misbehaving upstream, clients that leave mid-request, thousands of idle TLS
connections, a flood of handshakes with untrusted certificates, SIGHUP reloads under load, and an
audit log whose disk fails (audit.on_failure: deny | continue).

After every fault the proxy must still serve a good client and leak nothing: its open descriptors
return to the baseline (plus at most max_idle_connections pooled upstream connections),
fhir_mtls_proxy_active_connections returns to 0, and its resident memory stays near the baseline.

FMP_FAULTS_IDLE_CONNECTIONS sets the number of idle TLS connections (default 5000; 1000 under the
sanitizer builds). Three further rounds of 2/5 of that many check that memory stops growing.
"""

import os
import resource
import socket
import ssl
import struct
import subprocess
import threading
import time
import unittest

from harness import client
from harness.proxy import ProxyProcess
from harness.upstream import EchoUpstream
from lifecycle_fixture import POLICY, LifecycleTestCase, RawUpstream, fd_count, proc_status, wait_until

MAX_IDLE = 4
# Under the sanitizer builds (tests/run.sh sets ASAN_OPTIONS / TSAN_OPTIONS) every handshake costs
# several times more: 1000 there.
_SANITIZED = "ASAN_OPTIONS" in os.environ or "TSAN_OPTIONS" in os.environ
IDLE_CONNECTIONS = int(os.environ.get("FMP_FAULTS_IDLE_CONNECTIONS", "1000" if _SANITIZED else "5000"))
# Resident memory may grow this much over the warmed-up baseline after a fault (allocator caches,
# OpenSSL's per-thread state); a leak per connection or per request exceeds it quickly.
RSS_SLACK_KB = 48 * 1024


def raise_nofile(limit):
    """Raises this process's RLIMIT_NOFILE soft limit to at least `limit` (hard too, as root)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= limit:
        return soft
    want_hard = hard if hard == resource.RLIM_INFINITY or hard >= limit else limit
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, want_hard))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class FaultsTest(LifecycleTestCase):
    def start(self, upstream_url=None, upstream_settings=None, audit=None, limits=None):
        settings = {"max_idle_connections": MAX_IDLE, "response_timeout_ms": 2000}
        settings.update(upstream_settings or {})
        overrides = {}
        if limits:
            overrides["limits"] = limits
        cfg = self.config(upstream_url=upstream_url, upstream_settings=settings, **overrides)
        if audit is not None:
            cfg["audit"] = audit
        proxy = self.start_proxy(cfg)
        self.assertTrue(wait_until(lambda: proxy.metric("fhir_mtls_proxy_active_connections") == 0, 5))
        return proxy

    def warm_up(self, proxy, path="/fhir/Patient/warm", n=30):
        """A few requests so that pools, caches and OpenSSL state exist; returns the baseline."""
        for i in range(n):
            self.assertEqual(client.request(self.ctx(), proxy.port, "GET", "%s-%d" % (path, i)).status,
                             200)
        self.assertTrue(wait_until(lambda: proxy.metric("fhir_mtls_proxy_active_connections") == 0, 5))
        return {"fds": fd_count(proxy.pid), "rss": proc_status(proxy.pid)["VmRSS"]}

    def assert_recovered(self, proxy, baseline, what, rss_slack_kb=RSS_SLACK_KB):
        """The proxy still serves, and descriptors, connections and memory are back near baseline."""
        self.assertTrue(proxy.running(), what)
        r = client.request(self.ctx(), proxy.port, "GET", "/fhir/Patient/after-fault")
        self.assertEqual(r.status, 200, what)

        def settled():
            return (proxy.metric("fhir_mtls_proxy_active_connections") == 0 and
                    fd_count(proxy.pid) <= baseline["fds"] + MAX_IDLE)

        ok = wait_until(settled, 15, interval=0.1)
        self.assertTrue(ok, "%s: fds %d (baseline %d), active %s" % (
            what, fd_count(proxy.pid), baseline["fds"],
            proxy.metric("fhir_mtls_proxy_active_connections")))
        if _SANITIZED:
            return  # ASan's quarantine holds freed memory on purpose; its leak checker judges instead
        rss = proc_status(proxy.pid)["VmRSS"]
        self.assertLessEqual(rss, baseline["rss"] + rss_slack_kb,
                             "%s: RSS %d kB (baseline %d kB)" % (what, rss, baseline["rss"]))

    # --- the upstream misbehaves ------------------------------------------------------------------

    def test_upstream_faults(self):
        self.up.route("/fhir/Binary/cut", stream_bytes=2_000_000, close_mid_response=True,
                      content_type="application/octet-stream")
        self.up.route("/fhir/Binary/stall", body_delay=60.0)
        proxy = self.start(upstream_settings={"response_timeout_ms": 500})
        baseline = self.warm_up(proxy)

        # Closes mid-response: the client sees a truncated response, never a complete one.
        for _ in range(5):
            with self.assertRaises((client.ResponseError, OSError)):
                client.request(self.ctx(), proxy.port, "GET", "/fhir/Binary/cut")
        self.assert_recovered(proxy, baseline, "upstream closed mid-response")

        # Hangs after the head: the head is relayed, then the connection is cut once
        # response_timeout_ms passes without a byte (the socket timeout bounds the wait).
        resets_before = proxy.metric("fhir_mtls_proxy_upstream_errors_total", {"kind": "timeout"}) or 0
        with client.Connection(self.ctx(), proxy.port, timeout=15) as c:
            c.send_raw(client.build_request("GET", "/fhir/Binary/stall", port=proxy.port))
            reader = c._reader
            self.assertTrue(reader.line().startswith(b"HTTP/1.1 200"))
            while reader.line():  # the rest of the head
                pass
            self.assertEqual(reader.rest(), b"")  # no body byte, then the close
        self.assertGreater(proxy.metric("fhir_mtls_proxy_upstream_errors_total",
                                        {"kind": "timeout"}) or 0, resets_before)
        self.assert_recovered(proxy, baseline, "upstream hung after the head")

    def test_garbage_and_oversized_head_from_upstream_give_502(self):
        def garbage(sock, head):
            sock.sendall(b"SSH-2.0-OpenSSH_9.2\r\n\x00\x01\x02 not http at all\r\n\r\n")

        def oversized(sock, head):
            sock.sendall(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 200_000 + b"\r\nContent-Length: 0\r\n\r\n")

        def bad_framing(sock, head):
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!")

        for name, respond in (("garbage", garbage), ("oversized head", oversized),
                              ("conflicting Content-Length", bad_framing)):
            with self.subTest(name):
                raw_up = RawUpstream(respond)
                self.addCleanup(raw_up.stop)
                proxy = self.start(upstream_url=raw_up.url)
                # Baseline against the same raw upstream is not possible (it never answers well):
                # take it before any request.
                baseline = {"fds": fd_count(proxy.pid), "rss": proc_status(proxy.pid)["VmRSS"]}
                for _ in range(5):
                    r = client.request(self.ctx(), proxy.port, "GET", "/fhir/Patient/1")
                    self.assertEqual(r.status, 502, name)
                    self.assertEqual(r.json()["issue"][0]["code"], "transient")
                self.assertEqual(len(raw_up.requests), 5)
                self.assertTrue(proxy.running())
                self.assertTrue(wait_until(
                    lambda: proxy.metric("fhir_mtls_proxy_active_connections") == 0
                    and fd_count(proxy.pid) <= baseline["fds"], 10), name)
                proxy.stop()

    def test_upstream_resetting_on_connect_gives_502(self):
        rst = EchoUpstream(reset_on_connect=True).start()
        self.addCleanup(rst.stop)
        proxy = self.start(upstream_url=rst.url)
        baseline = {"fds": fd_count(proxy.pid), "rss": proc_status(proxy.pid)["VmRSS"]}
        for _ in range(20):
            r = client.request(self.ctx(), proxy.port, "GET", "/fhir/Patient/1")
            self.assertEqual(r.status, 502)
            self.assertEqual(r.json()["issue"][0]["code"], "transient")
        self.assertGreaterEqual(rst.connections_accepted, 20)
        self.assertTrue(wait_until(lambda: proxy.metric("fhir_mtls_proxy_active_connections") == 0
                                   and fd_count(proxy.pid) <= baseline["fds"], 10))
        self.assertTrue(proxy.running())

    # --- the client misbehaves --------------------------------------------------------------------

    def test_client_disconnects_mid_request_body_and_mid_response(self):
        self.up.route("/fhir/Binary/big", stream_bytes=20_000_000, content_type="application/octet-stream")
        proxy = self.start(limits={"max_body_bytes": 4_000_000})
        baseline = self.warm_up(proxy)
        for i in range(10):
            # Mid-request body: the head and part of the body went upstream, then the client left.
            sock = client.connect(self.ctx(), proxy.port)
            head = client.build_request("POST", "/fhir/Binary/upload-%d" % i,
                                        [("Content-Type", "application/octet-stream"),
                                         ("Content-Length", "3000000")], port=proxy.port)
            sock.sendall(head + b"x" * 200_000)
            if i % 2:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
            # Mid-response: 20 MB streaming, the client reads 100 kB and leaves.
            sock = client.connect(self.ctx(), proxy.port)
            sock.sendall(client.build_request("GET", "/fhir/Binary/big", port=proxy.port))
            got = 0
            while got < 100_000:
                data = sock.recv(65536)
                if not data:
                    break
                got += len(data)
            self.assertGreaterEqual(got, 100_000)
            if i % 2:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
        self.assert_recovered(proxy, baseline, "clients left mid-body and mid-response")
        # An abandoned upload never reached the upstream as a complete request.
        self.assertEqual([q.target for q in self.up.requests if "upload" in q.target], [])

    def open_idle(self, proxy, n, ctx, session):
        """n TLS connections that send nothing; resumes `session` (of `ctx`) so that the test's side
        stays cheap (the proxy still runs a handshake and holds TLS state and a bufferevent for
        each)."""
        idle = []
        try:
            for _ in range(n):
                raw = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
                idle.append(ctx.wrap_socket(raw, server_hostname=client.SERVER_HOSTNAME,
                                            session=session))
        except BaseException:
            self.close_all(idle)
            raise
        return idle

    def assert_get_ok(self, sock, port, path):
        """One GET on an open TLS socket, answered 200."""
        sock.sendall(client.build_request("GET", path, port=port))
        self.assertEqual(client.read_response(client._SocketReader(sock)).status, 200)

    @staticmethod
    def close_all(socks):
        for s in socks:
            try:
                s.close()
            except OSError:
                pass

    def start_for_idle(self, n):
        """A proxy that lets n connections sit idle far longer than a test (long header and idle
        timeouts, enough descriptors), warmed up; returns it, its baseline, a client context and a
        TLS 1.3 session of that context to resume."""
        if raise_nofile(n + 1000) < n + 200:
            self.skipTest("cannot raise RLIMIT_NOFILE for %d connections" % n)
        proxy = self.start(limits={"header_timeout_ms": 300000, "idle_timeout_ms": 300000,
                                   "max_connections": n + 100})
        # The harness starts the proxy with this process's limits: raise its own in place.
        subprocess.run(["prlimit", "--pid", str(proxy.pid), "--nofile=%d:%d" % (n + 1000, n + 1000)],
                       check=True, timeout=10)
        baseline = self.warm_up(proxy)
        ctx = self.ctx()
        with client.Connection(ctx, proxy.port) as first:
            self.assertEqual(first.request("GET", "/fhir/Patient/ticket").status, 200)
            session = first.sock.session  # carries the TLS 1.3 ticket once a response was read
        return proxy, baseline, ctx, session

    def test_idle_tls_connections(self):
        n = IDLE_CONNECTIONS
        proxy, baseline, ctx, session = self.start_for_idle(n)
        rss = []
        # Round 1: n connections. Rounds 2 to 4: fewer, which mostly fit in what round 1 made the
        # allocator keep, so a per-connection leak is what would keep them growing.
        m = n * 2 // 5
        for round_, count in enumerate((n, m, m, m)):
            started = time.monotonic()
            idle = self.open_idle(proxy, count, ctx, session)
            try:
                opened = time.monotonic() - started
                self.assertTrue(wait_until(
                    lambda: proxy.metric("fhir_mtls_proxy_active_connections") == count, 20),
                    proxy.metric("fhir_mtls_proxy_active_connections"))
                peak = proc_status(proxy.pid)["VmRSS"]
                # A good client is still served while they sit there...
                for i in range(5):
                    r = client.request(self.ctx(), proxy.port, "GET", "/fhir/Patient/idle-%d" % i)
                    self.assertEqual(r.status, 200)
                # ...and the idle connections themselves are still usable.
                for s in (idle[0], idle[count // 2], idle[-1]):
                    self.assert_get_ok(s, proxy.port, "/fhir/Patient/idle")
            finally:
                self.close_all(idle)
            self.assertTrue(wait_until(
                lambda: proxy.metric("fhir_mtls_proxy_active_connections") == 0, 20))
            self.assertTrue(wait_until(lambda: fd_count(proxy.pid) <= baseline["fds"] + MAX_IDLE, 10))
            rss.append((peak, proc_status(proxy.pid)["VmRSS"]))
            print("\nround %d: %d idle TLS connections opened in %.1f s; proxy RSS %d kB, %d kB at "
                  "the peak, %d kB after" % (round_ + 1, count, opened, baseline["rss"], peak,
                                              rss[-1][1]))
        # glibc's allocator keeps much of what round 1 took and settles over a few rounds
        # (measured: rounds of 2000 add 77, 25, 10, 3, 1.5, 0.8 ... MB, converging), so "back to
        # baseline" cannot be asked of RSS here. Instead the last round may not add a quarter of
        # what its connections took in round 1: a leak of a quarter of a connection's state would.
        per_connection = (rss[0][0] - baseline["rss"]) / n
        if not _SANITIZED:
            self.assertLessEqual(rss[3][1] - rss[2][1], per_connection * m / 4, rss)
        self.assert_recovered(proxy, baseline, "idle connections",
                              rss_slack_kb=rss[3][1] - baseline["rss"] + RSS_SLACK_KB)

    def test_keep_alive_connections_idle_after_requests_hold_no_tls_buffers(self):
        # OpenSSL's record buffers (~17 KiB each, the pages written resident) are given back as
        # soon as they are empty (SSL_MODE_RELEASE_BUFFERS), so connections idle after requests
        # hold none. n connections are opened (their handshake state is the reference), then each
        # makes two requests, one connection after the other, and all sit idle: the memory they
        # add is what requests leave behind. Measured: 0.1 KiB per connection; 11.6 KiB when a
        # build kept the buffers between requests.
        n = 150 if _SANITIZED else 300
        proxy, _, ctx, session = self.start_for_idle(n)
        idle = self.open_idle(proxy, n, ctx, session)
        try:
            self.assertTrue(wait_until(
                lambda: proxy.metric("fhir_mtls_proxy_active_connections") == n, 20))
            opened = proc_status(proxy.pid)["VmRSS"]
            for i, s in enumerate(idle):
                # Two requests, so that a connection keeping buffers between requests would.
                for _ in range(2):
                    self.assert_get_ok(s, proxy.port, "/fhir/Patient/kept-%d" % i)
            time.sleep(0.5)  # past every connection's park moment (100 ms idle)
            per_connection = (proc_status(proxy.pid)["VmRSS"] - opened) / n
            print("\n%d connections idle after two requests each: %.1f KiB more each" %
                  (n, per_connection))
            if not _SANITIZED:
                self.assertLess(per_connection, 6, "TLS buffers still held by idle connections?")
            # Still usable: another request on the first and the last connection.
            for s in (idle[0], idle[-1]):
                self.assert_get_ok(s, proxy.port, "/fhir/Patient/again")
        finally:
            self.close_all(idle)
        self.assertTrue(wait_until(
            lambda: proxy.metric("fhir_mtls_proxy_active_connections") == 0, 20))

    def test_handshake_flood_with_untrusted_certificates(self):
        rogue_root = self.pki.root("rogue-root", subject={"O": "Rogue", "CN": "Rogue Root"})
        rogue = self.pki.client("rogue-client", rogue_root)
        rogue_ctx = client.tls_context(cert=rogue.chain, key=rogue.key, ca=self.server_ca.cert)
        proxy = self.start()
        baseline = self.warm_up(proxy)
        failures_before = proxy.metric("fhir_mtls_proxy_tls_handshakes_total",
                                       {"result": "failure", "reason": "untrusted"}) or 0
        per_thread, threads_n = 75, 4
        rejected, accepted, good = [], [], []
        stop = threading.Event()

        def flood():
            for _ in range(per_thread):
                err = client.handshake_error(rogue_ctx, proxy.port)
                (accepted if err is None else rejected).append(err)

        def good_client():
            i = 0
            while not stop.is_set() and i < 2000:
                try:
                    good.append(client.request(self.ctx(), proxy.port, "GET",
                                               "/fhir/Patient/good-%d" % i).status)
                except (OSError, client.ResponseError) as e:
                    good.append(repr(e))
                i += 1

        g = threading.Thread(target=good_client)
        g.start()
        floods = [threading.Thread(target=flood) for _ in range(threads_n)]
        for t in floods:
            t.start()
        for t in floods:
            t.join(120)
        stop.set()
        g.join(30)
        self.assertEqual(accepted, [])
        self.assertEqual(len(rejected), per_thread * threads_n)
        self.assertGreater(len(good), 0)
        self.assertEqual(set(good), {200}, [x for x in good if x != 200][:5])
        self.assertTrue(wait_until(lambda: (proxy.metric(
            "fhir_mtls_proxy_tls_handshakes_total", {"result": "failure", "reason": "untrusted"}) or 0)
            >= failures_before + per_thread * threads_n, 10))
        print("\nhandshake flood: %d rejected, %d good requests served meanwhile" % (
            len(rejected), len(good)))
        self.assert_recovered(proxy, baseline, "handshake flood")

    def test_sighup_reloads_under_load(self):
        proxy = self.start()
        baseline = self.warm_up(proxy)
        results = []
        stop = threading.Event()

        def load(k):
            i = 0
            with client.Connection(self.ctx(), proxy.port) as keep:
                while not stop.is_set() and i < 20000:
                    try:
                        # Alternate a kept-alive connection and new connections (new handshakes
                        # pick up the reloaded TLS state).
                        if i % 2:
                            status = keep.request("GET", "/fhir/Patient/l%d-%d" % (k, i)).status
                        else:
                            status = client.request(self.ctx(), proxy.port, "GET",
                                                    "/fhir/Patient/n%d-%d" % (k, i)).status
                    except (OSError, client.ResponseError) as e:
                        status = repr(e)
                    results.append(status)
                    i += 1

        threads = [threading.Thread(target=load, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        outcomes = []
        started = time.monotonic()
        try:
            for _ in range(200):
                outcomes.append(proxy.reload(wait=True, timeout=10))
        finally:
            stop.set()
            for t in threads:
                t.join(30)
        print("\n200 reloads in %.1f s with %d requests meanwhile" % (time.monotonic() - started,
                                                                       len(results)))
        self.assertEqual(outcomes, ["success"] * 200)
        self.assertGreater(len(results), 200)
        self.assertEqual([r for r in results if r != 200], [])
        self.assert_recovered(proxy, baseline, "200 reloads")

    # --- the audit log's disk fails ---------------------------------------------------------------

    def audit_errors(self, proxy):
        return proxy.metric("fhir_mtls_proxy_audit_write_errors_total") or 0

    def test_unwritable_audit_log_denies_by_default(self):
        proxy = self.start(audit={"path": "/dev/full"})  # every write fails with ENOSPC
        # The log learns it is failing from its first write (queued off the data path), so the
        # first request may pass; from then on nothing is forwarded.
        client.request(self.ctx(), proxy.port, "GET", "/fhir/Patient/first")
        self.assertTrue(wait_until(lambda: self.audit_errors(proxy) >= 1, 10))
        before = len(self.up.requests)
        for i in range(10):
            r = client.request(self.ctx(), proxy.port, "GET", "/fhir/Patient/refused-%d" % i)
            self.assertEqual(r.status, 503, r.body)
            self.assertEqual(r.header("Content-Type"), "application/fhir+json")
            issue = r.json()["issue"][0]
            self.assertEqual(issue["code"], "transient")
            self.assertIn("audit log unavailable", issue["diagnostics"])
        # A kept-alive connection is refused request after request, and stays usable.
        with client.Connection(self.ctx(), proxy.port) as c:
            self.assertEqual(c.request("GET", "/fhir/Patient/k1").status, 503)
            self.assertEqual(c.request("GET", "/fhir/Patient/k2").status, 503)
        # A denied request is still a 403: the policy decides first.
        self.assertEqual(client.request(self.ctx(), proxy.port, "GET", "/fhir/Secret/1").status, 403)
        self.assertEqual(len(self.up.requests), before)
        self.assertTrue(proxy.running())
        self.assertIn("audit log unavailable", proxy.stderr_text())

    def test_unwritable_audit_log_with_continue_forwards_and_counts(self):
        proxy = self.start(audit={"path": "/dev/full", "on_failure": "continue"})
        for i in range(20):
            r = client.request(self.ctx(), proxy.port, "GET", "/fhir/Patient/c-%d" % i)
            self.assertEqual(r.status, 200)
        self.assertEqual(len([q for q in self.up.requests if q.target.startswith("/fhir/Patient/c-")]), 20)
        self.assertTrue(wait_until(lambda: self.audit_errors(proxy) >= 20, 10), self.audit_errors(proxy))

    def test_audit_disk_full_then_freed_recovers(self):
        if os.geteuid() != 0:
            self.skipTest("mounting a tmpfs needs root")
        mnt = os.path.join(self.tmp, "tiny-%d" % os.getpid())
        os.makedirs(mnt, exist_ok=True)
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", mnt],
                          capture_output=True).returncode != 0:
            self.skipTest("cannot mount a tmpfs here")
        self.addCleanup(subprocess.run, ["umount", "-l", mnt], capture_output=True)
        proxy = self.start(audit={"path": os.path.join(mnt, "audit.log")})
        self.assertEqual(client.request(self.ctx(), proxy.port, "GET", "/fhir/Patient/ok").status, 200)
        filler = os.path.join(mnt, "filler")
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)  # fill the disk
        try:
            while os.write(fd, b"\0" * 4096) > 0:
                pass
        except OSError:
            pass
        finally:
            os.close(fd)
        # Requests until the log notices (its first failing write), then 503.
        statuses = []
        for i in range(20):
            statuses.append(client.request(self.ctx(), proxy.port, "GET", "/fhir/Patient/f-%d" % i).status)
            if statuses[-1] == 503:
                break
        self.assertEqual(statuses[-1], 503, statuses)
        os.unlink(filler)  # free the disk: the next refusal's audit write succeeds
        self.assertTrue(wait_until(lambda: client.request(
            self.ctx(), proxy.port, "GET", "/fhir/Patient/recovered").status == 200, 10))
        with open(proxy.audit_path) as f:
            self.assertIn('"status":503', f.read())


if __name__ == "__main__":
    unittest.main()
