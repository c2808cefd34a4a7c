"""SIGHUP reloads (CONTRACT.md "Reload"): a new policy decides new requests, a broken one changes
nothing and is logged with FILE:LINE:COL, reloads under load drop no request, and a rotated server
certificate is served to new handshakes."""

import hashlib
import json
import os
import re
import shutil
import threading
import time
import unittest

from harness import client
from harness.upstream import EchoUpstream, pattern_sha256
from lifecycle_fixture import POLICY, LifecycleTestCase

RELOADS = "fhir_mtls_proxy_policy_reloads_total"

ALLOW = {"default": "deny", "rules": [
    {"name": "hospital", "effect": "allow", "when": {"subject": {"O": ["Example Hospital"]}}}]}

DENY_PATIENTS = {"default": "deny", "rules": [
    {"name": "no-patients", "effect": "deny", "when": {"path": ["/fhir/Patient/*"]}},
    {"name": "hospital", "effect": "allow", "when": {"subject": {"O": ["Example Hospital"]}}}]}

# Patient always allowed; Observation denied by the first, allowed by the second.
NO_OBSERVATIONS = {"default": "deny", "rules": [
    {"name": "no-observations", "effect": "deny", "when": {"path": ["/fhir/Observation*"]}},
    {"name": "hospital", "effect": "allow", "when": {"subject": {"O": ["Example Hospital"]}}}]}

# A YAML syntax error on line 4 (an unclosed flow sequence).
BROKEN = 'default: deny\nrules:\n  - name: "hospital"\n    effect: [allow\n    when: {}\n'


class PolicyReloadTest(LifecycleTestCase):
    def start_proxy(self, config=None, policy=None, workdir=None):
        # SIGHUP only: the file watcher (`watch`, on by default) would also reload on each write.
        return super().start_proxy(config or self.config(watch=False), policy, workdir)

    def reloads(self, proxy, result):
        return proxy.metric(RELOADS, {"result": result}) or 0

    def test_new_policy_decides_new_requests(self):
        proxy = self.start_proxy(policy=ALLOW)
        self.assertEqual(proxy.metric("fhir_mtls_proxy_policy_rules"), 1)
        before = self.reloads(proxy, "success")
        with client.Connection(self.ctx(), proxy.port) as kept:
            self.assertEqual(kept.request("GET", "/fhir/Patient/1").status, 200)
            proxy.write_config(policy=DENY_PATIENTS)
            self.assertEqual(proxy.reload(), "success")
            self.assertEqual(self.reloads(proxy, "success"), before + 1)
            self.assertEqual(self.reloads(proxy, "failure"), 0)
            self.assertEqual(proxy.metric("fhir_mtls_proxy_policy_rules"), 2)
            # A new connection and a connection kept from before the reload both get the new policy.
            fresh = client.request(self.ctx(), proxy.port, "GET", "/fhir/Patient/1")
            self.assertEqual(fresh.status, 403)
            self.assertIn("no-patients", fresh.json()["issue"][0]["diagnostics"])
            self.assertEqual(kept.request("GET", "/fhir/Patient/2").status, 403)
            self.assertEqual(kept.request("GET", "/fhir/Observation/2").status, 200)
        self.assertEqual([q.target for q in self.up.requests], ["/fhir/Patient/1", "/fhir/Observation/2"])

    def test_broken_policy_keeps_the_old_one_and_names_the_position(self):
        proxy = self.start_proxy(policy=ALLOW)
        proxy.write_config(policy=BROKEN)
        self.assertEqual(proxy.reload(), "failure")
        self.assertEqual(self.reloads(proxy, "failure"), 1)
        self.assertEqual(self.reloads(proxy, "success"), 0)
        # The old policy keeps deciding.
        self.assertEqual(client.request(self.ctx(), proxy.port, "GET", "/fhir/Patient/1").status, 200)
        self.assertEqual(client.request(self.ctx(), proxy.port, "GET", "/fhir/Secret/1").status, 200)
        self.assertEqual(proxy.metric("fhir_mtls_proxy_policy_rules"), 1)
        # stderr: JSON lines, one of them naming policy.yaml:LINE:COL.
        records = self.stderr_records(proxy)
        positions = []
        for rec in records:
            for value in rec.values():
                m = re.search(r"policy\.yaml:(\d+):(\d+)", str(value))
                if m:
                    positions.append((int(m.group(1)), int(m.group(2)), rec))
        self.assertTrue(positions, proxy.stderr_text())
        line, col, rec = positions[0]
        self.assertIn(line, (4, 5, 6), rec)  # where the parser notices the unclosed sequence
        self.assertGreaterEqual(col, 1)
        self.assertIn(rec.get("level"), ("error", "warn", "warning"), rec)
        self.assertIn(proxy.policy_path + ":", str(list(rec.values())))
        # A good policy afterwards applies.
        proxy.write_config(policy=DENY_PATIENTS)
        self.assertEqual(proxy.reload(), "success")
        self.assertEqual(client.request(self.ctx(), proxy.port, "GET", "/fhir/Patient/1").status, 403)

    def test_reloads_under_load_drop_no_request(self):
        proxy = self.start_proxy(policy=NO_OBSERVATIONS)
        stop = threading.Event()
        failures = []
        statuses = {"Patient": {}, "Observation": {}}
        lock = threading.Lock()
        ctx = self.ctx()

        def load(index):
            deadline = time.monotonic() + 8.0  # hard bound; normally stopped by `stop`
            conn = None
            n = 0
            try:
                while not stop.is_set() and time.monotonic() < deadline and n < 3000:
                    if conn is None or n % 10 == 0:  # a new connection every 10 requests
                        if conn is not None:
                            conn.close()
                        conn = client.Connection(ctx, proxy.port, timeout=10)
                    kind = "Patient" if n % 2 == 0 else "Observation"
                    n += 1
                    try:
                        r = conn.request("GET", "/fhir/%s/%d-%d" % (kind, index, n))
                    except Exception as e:  # noqa: BLE001 - every failure is recorded
                        with lock:
                            failures.append("%s %d: %r" % (kind, n, e))
                        conn.close()
                        conn = None
                        continue
                    ok = r.status == 200 or (kind == "Observation" and r.status == 403 and
                                             r.json()["issue"][0]["code"] == "forbidden")
                    with lock:
                        statuses[kind][r.status] = statuses[kind].get(r.status, 0) + 1
                        if not ok:
                            failures.append("%s %d: %d %r" % (kind, n, r.status, r.body[:200]))
            finally:
                if conn is not None:
                    conn.close()

        threads = [threading.Thread(target=load, args=(i,), daemon=True) for i in range(4)]
        for t in threads:
            t.start()
        started = time.monotonic()
        results = []
        try:
            good = [ALLOW, NO_OBSERVATIONS]
            for i in range(20):
                proxy.write_config(policy=BROKEN if i % 2 else good[(i // 2) % 2])
                results.append(proxy.reload())
            # Keep the load on for at least 2 s in all.
            while time.monotonic() - started < 2.0:
                time.sleep(0.05)
        finally:
            stop.set()
            for t in threads:
                t.join(15)
        self.assertEqual(failures, [])
        self.assertEqual(results, ["success", "failure"] * 10)
        self.assertEqual(self.reloads(proxy, "success"), 10)
        self.assertEqual(self.reloads(proxy, "failure"), 10)
        total = sum(statuses["Patient"].values()) + sum(statuses["Observation"].values())
        self.assertGreater(total, 100, statuses)
        self.assertEqual(set(statuses["Patient"]), {200}, statuses)
        # Both policies were in force at some point of the run.
        self.assertEqual(set(statuses["Observation"]), {200, 403}, statuses)
        # The last good policy (index 18: NO_OBSERVATIONS) decides afterwards.
        self.assertEqual(client.request(ctx, proxy.port, "GET", "/fhir/Observation/x").status, 403)
        self.assertEqual(client.request(ctx, proxy.port, "GET", "/fhir/Patient/x").status, 200)
        self.assertTrue(proxy.running())



class ConfigReloadTest(LifecycleTestCase):
    """SIGHUP re-reads proxy.yaml too: what can change applies to new requests; requests in flight
    keep the configuration they started with."""

    def test_in_flight_requests_survive_a_reload_that_moves_the_upstream(self):
        size = 24 * 1024 * 1024
        self.up.route("/fhir/Binary/long", stream_bytes=size, content_type="application/octet-stream")
        self.up.route("/fhir/Patient/slow", delay=1.0)
        other = EchoUpstream().start()
        self.addCleanup(other.stop)
        proxy = self.start_proxy(self.config(watch=False))
        # Warm the pool with a connection to the first upstream.
        self.assertEqual(client.request(self.ctx(), proxy.port, "GET", "/fhir/Patient/0").status, 200)
        slow_result = {}

        def slow():
            try:
                slow_result["r"] = client.request(self.ctx(), proxy.port, "GET", "/fhir/Patient/slow")
            except Exception as e:  # noqa: BLE001
                slow_result["e"] = e

        t = threading.Thread(target=slow, daemon=True)
        sock = client.connect(self.ctx(), proxy.port, timeout=20)
        self.addCleanup(sock.close)
        sock.sendall(client.build_request("GET", "/fhir/Binary/long", port=proxy.port))
        t.start()
        self.up.wait_for_requests(3)
        # Reloads while both are in flight: a broken one, then one pointing at the other upstream.
        proxy.write_config(policy="rules: [\n")
        self.assertEqual(proxy.reload(), "failure")
        proxy.write_config(config=self.config(other.url, watch=False), policy=POLICY)
        self.assertEqual(proxy.reload(), "success")
        digest, got, buf = hashlib.sha256(), 0, b""
        while b"\r\n\r\n" not in buf:
            buf += sock.recv(65536)
        head, rest = buf.split(b"\r\n\r\n", 1)
        self.assertIn(b"Content-Length: %d" % size, head)
        digest.update(rest)
        got = len(rest)
        while got < size:
            data = sock.recv(1 << 20)
            if not data:
                break
            digest.update(data)
            got += len(data)
        self.assertEqual((got, digest.hexdigest()), (size, pattern_sha256(size)))
        t.join(10)
        self.assertNotIn("e", slow_result)
        self.assertEqual(slow_result["r"].status, 200)
        # New requests go to the new upstream only (the pooled connection to the old one is not reused).
        for i in range(3):
            r = client.request(self.ctx(), proxy.port, "GET", "/fhir/Patient/new-%d" % i)
            self.assertEqual(r.status, 200)
        self.assertEqual([q.target for q in other.requests], ["/fhir/Patient/new-%d" % i for i in range(3)])
        self.assertEqual(len(self.up.requests), 3)

    def test_limits_apply_to_new_connections_and_fixed_settings_warn(self):
        proxy = self.start_proxy(self.config(watch=False))
        body = b"z" * 4096
        self.assertEqual(client.request(self.ctx(), proxy.port, "POST", "/fhir/Binary", body=body).status, 200)
        cfg = self.config(watch=False, workers=2, limits={"max_body_bytes": 1024})
        cfg["listen"] = "127.0.0.1:%d" % proxy.port
        proxy.write_config(config=cfg)
        self.assertEqual(proxy.reload(), "success")
        r = client.request(self.ctx(), proxy.port, "POST", "/fhir/Binary", body=body)
        self.assertEqual(r.status, 413)
        self.assertEqual(r.json()["issue"][0]["code"], "too-long")
        self.assertEqual(client.request(self.ctx(), proxy.port, "POST", "/fhir/Binary", body=b"s").status, 200)
        # workers cannot change while running: kept, with a warning.
        warnings = [rec for rec in self.stderr_records(proxy)
                    if rec.get("level") in ("warn", "warning") and "workers" in json.dumps(rec)]
        self.assertTrue(warnings, proxy.stderr_text())


class CertificateReloadTest(LifecycleTestCase):
    def peer_fingerprint(self, conn):
        return hashlib.sha256(conn.sock.getpeercert(binary_form=True)).hexdigest()

    def test_rotated_server_certificate_is_served_to_new_handshakes(self):
        new = self.pki.server(self.server_ca, name="server-rotated", days=30)
        workdir = os.path.join(self.tmp, "cert-reload")
        os.makedirs(workdir)
        chain, key = os.path.join(workdir, "server.pem"), os.path.join(workdir, "server.key")
        shutil.copy(self.server.chain, chain)
        shutil.copy(self.server.key, key)
        proxy = self.start_proxy(self.config(tls={"cert": chain, "key": key, "client_cert": "require",
                                                  "trust": [{"name": "directtrust", "ca": self.bundle}]},
                                                 watch=False),
                                 workdir=workdir)
        expiry = {"cert": "server"}
        old_expiry = proxy.metric("fhir_mtls_proxy_certificate_expiry_timestamp_seconds", expiry)
        kept = client.Connection(self.ctx(), proxy.port)
        self.addCleanup(kept.close)
        self.assertEqual(self.peer_fingerprint(kept), self.server.fingerprint_sha256)
        self.assertEqual(kept.request("GET", "/fhir/Patient/1").status, 200)

        # A key that does not match the new certificate: the reload fails, the old pair serves.
        shutil.copy(new.chain, chain)
        self.assertEqual(proxy.reload(), "failure")
        with client.Connection(self.ctx(), proxy.port) as c:
            self.assertEqual(self.peer_fingerprint(c), self.server.fingerprint_sha256)
            self.assertEqual(c.request("GET", "/fhir/Patient/2").status, 200)

        # The matching key: new handshakes get the new certificate.
        shutil.copy(new.key, key)
        self.assertEqual(proxy.reload(), "success")
        with client.Connection(self.ctx(), proxy.port) as c:
            self.assertEqual(self.peer_fingerprint(c), new.fingerprint_sha256)
            self.assertEqual(c.request("GET", "/fhir/Patient/3").status, 200)
        new_expiry = proxy.metric("fhir_mtls_proxy_certificate_expiry_timestamp_seconds", expiry)
        self.assertLess(new_expiry, old_expiry - 300 * 86400)
        # The connection from before the rotation keeps working on its own handshake.
        self.assertEqual(self.peer_fingerprint(kept), self.server.fingerprint_sha256)
        self.assertEqual(kept.request("GET", "/fhir/Patient/4").status, 200)
        # TLS 1.2 and 1.3 handshakes alike.
        for version in ("1.2", "1.3"):
            ctx = client.tls_context(cert=self.client.chain, key=self.client.key,
                                     ca=self.server_ca.cert, min_version=version, max_version=version)
            with client.Connection(ctx, proxy.port) as c:
                self.assertEqual(self.peer_fingerprint(c), new.fingerprint_sha256, version)
                self.assertEqual(c.request("GET", "/fhir/Patient/5").status, 200)


if __name__ == "__main__":
    unittest.main()
