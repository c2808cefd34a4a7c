"""Live configuration files (`watch: true`, the default): the proxy reloads on its own when the
policy or a certificate changes on disk, however the file is replaced — an edit in place, an
editor's write-then-rename, a Kubernetes ConfigMap update (the atomic `..data` symlink swap) — under
load without failing a request; a broken edit keeps the old policy, names FILE:LINE:COL and counts
policy_reloads_total{result="failure"}; a certificate rotated by rename reaches new handshakes.

Every wait is bounded (poll the metrics until the reload is counted); nothing sleeps for timing."""

import hashlib
import os
import re
import shutil
import tempfile
import threading
import time
import unittest

from harness import binary_path, client
from harness.pki import Pki
from harness.proxy import ProxyProcess, proxy_config, to_yaml
from harness.upstream import EchoUpstream

RELOADS = "fhir_mtls_proxy_policy_reloads_total"
RULES = "fhir_mtls_proxy_policy_rules"

# Patient is always allowed; Observation is allowed by OPEN and denied by CLOSED.
OPEN = {"default": "deny", "rules": [
    {"name": "hospital", "effect": "allow", "when": {"subject": {"O": ["Example Hospital"]}}}]}
CLOSED = {"default": "deny", "rules": [
    {"name": "no-observations", "effect": "deny", "when": {"path": ["/fhir/Observation*"]}},
    {"name": "hospital", "effect": "allow", "when": {"subject": {"O": ["Example Hospital"]}}}]}
# A YAML error on line 4: an unclosed flow sequence.
BROKEN = 'default: deny\nrules:\n  - name: "hospital"\n    effect: [allow\n    when: {}\n'


def wait_until(predicate, timeout=10.0):
    """Polls `predicate` until it returns a true value (returned) or `timeout` passes (None)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    return None


def write_in_place(path, text):
    """Truncates and rewrites the file itself (same inode), like `cat > file` or a simple editor."""
    with open(path, "w") as f:
        f.write(text)


def write_and_rename(path, text):
    """Writes a temporary file beside `path` and renames it over `path` (vim, sed -i, cert-manager)."""
    tmp = path + ".tmp~"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


class ConfigMapDir:
    """A directory laid out as the kubelet lays out a mounted ConfigMap or Secret: the data in a
    hidden timestamped directory, `..data` a symlink to it, and each key a symlink `KEY ->
    ..data/KEY`. update() writes a new version and swaps `..data` atomically (rename of a symlink)."""

    def __init__(self, path):
        self.path = path
        self.version = 0
        os.makedirs(path)

    def update(self, files):
        self.version += 1
        old = os.path.realpath(os.path.join(self.path, "..data")) if self.version > 1 else None
        ts = "..2024_01_01_00_00_%02d.%d" % (self.version, os.getpid())
        os.mkdir(os.path.join(self.path, ts))
        for name, text in files.items():
            with open(os.path.join(self.path, ts, name), "w") as f:
                f.write(text)
        tmp = os.path.join(self.path, "..data_tmp")
        os.symlink(ts, tmp)
        os.replace(tmp, os.path.join(self.path, "..data"))
        for name in files:
            link = os.path.join(self.path, name)
            if not os.path.islink(link):
                os.symlink(os.path.join("..data", name), link)
        if old:
            shutil.rmtree(old)

    def file(self, name):
        return os.path.join(self.path, name)


class Load:
    """Client threads sending GET Patient / Observation over keep-alive connections (a new one every
    10 requests) until stop() (bounded: 20 s, 4000 requests per thread). Every request must get 200,
    or 403 forbidden for Observation; anything else (an error, a reset) is a failure."""

    def __init__(self, ctx, port, threads=3):
        self.ctx, self.port = ctx, port
        self.failures = []
        self.statuses = {"Patient": {}, "Observation": {}}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                         for i in range(threads)]
        for t in self._threads:
            t.start()

    def _run(self, index):
        deadline = time.monotonic() + 20.0
        conn, n = None, 0
        try:
            while not self._stop.is_set() and time.monotonic() < deadline and n < 4000:
                try:
                    if conn is None or n % 10 == 0:
                        if conn is not None:
                            conn.close()
                        conn = client.Connection(self.ctx, self.port, timeout=10)
                    kind = "Patient" if n % 2 == 0 else "Observation"
                    n += 1
                    r = conn.request("GET", "/fhir/%s/%d-%d" % (kind, index, n))
                except Exception as e:  # noqa: BLE001 - every failure is recorded
                    with self._lock:
                        self.failures.append("request %d: %r" % (n, e))
                    if conn is not None:
                        conn.close()
                    conn = None
                    continue
                ok = r.status == 200 or (kind == "Observation" and r.status == 403 and
                                         r.json()["issue"][0]["code"] == "forbidden")
                with self._lock:
                    self.statuses[kind][r.status] = self.statuses[kind].get(r.status, 0) + 1
                    if not ok:
                        self.failures.append("%s %d: %d %r" % (kind, n, r.status, r.body[:200]))
        finally:
            if conn is not None:
                conn.close()

    def total(self):
        with self._lock:
            return sum(sum(s.values()) for s in self.statuses.values())

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(30)


class WatchReloadTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.binary = binary_path()
        cls.tmp = tempfile.mkdtemp(prefix="fmp-watch-")
        pki = Pki(os.path.join(cls.tmp, "pki"))
        cls.server_ca = pki.root("server-ca")
        cls.server = pki.server(cls.server_ca)
        cls.server_new = pki.server(cls.server_ca, name="server-rotated", days=30)
        root = pki.root("dt-root", subject={"CN": "Example DirectTrust Root CA"})
        ca = pki.intermediate("dt-ca", root, subject={"CN": "Example DirectTrust CA"})
        cls.bundle = pki.bundle("dt-bundle", root, ca)
        cls.client = pki.client("ehr", ca)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, True)

    def setUp(self):
        self.workdir = tempfile.mkdtemp(prefix="w-", dir=self.tmp)
        self.up = EchoUpstream()
        self.up.start()
        self.addCleanup(self.up.stop)

    def ctx(self):
        return client.tls_context(cert=self.client.chain, key=self.client.key, ca=self.server_ca.cert)

    def start(self, policy_path=None, policy=OPEN, tls=None, **overrides):
        overrides.setdefault("watch", True)  # the proxy's default; the harness turns it off
        cfg = proxy_config(self.server, [("directtrust", self.bundle)], self.up.url, **overrides)
        if tls:
            cfg["tls"].update(tls)
        if policy_path:
            cfg["policy"] = policy_path
        proxy = ProxyProcess(self.binary, self.workdir, cfg, policy)
        proxy.start()
        self.addCleanup(proxy.stop)
        return proxy

    def reloads(self, proxy, result):
        return proxy.metric(RELOADS, {"result": result}) or 0

    def wait_reload(self, proxy, result, count):
        """Waits (bounded) until policy_reloads_total{result} reaches `count`."""
        got = wait_until(lambda: self.reloads(proxy, result) >= count or None)
        self.assertTrue(got, "no %s reload counted (want %d, have %r; success=%r failure=%r):\n%s" % (
            result, count, self.reloads(proxy, result), self.reloads(proxy, "success"),
            self.reloads(proxy, "failure"), proxy.stderr_text()[-3000:]))

    def observation_status(self, proxy):
        return client.request(self.ctx(), proxy.port, "GET", "/fhir/Observation/check").status

    def run_under_load(self, proxy, changes):
        """Applies each (change, expected Observation status) while Load runs; after each one waits
        for its reload to be counted and checks the new policy decides. Returns the Load."""
        load = Load(self.ctx(), proxy.port)
        try:
            self.assertTrue(wait_until(lambda: load.total() >= 20), "load did not start")
            for i, (change, expect) in enumerate(changes, start=1):
                change()
                self.wait_reload(proxy, "success", i)
                self.assertEqual(self.observation_status(proxy), expect, "after change %d" % i)
                seen = load.total()
                self.assertTrue(wait_until(lambda: load.total() >= seen + 20), "load stalled")
        finally:
            load.stop()
        self.assertEqual(load.failures, [])
        self.assertEqual(set(load.statuses["Patient"]), {200}, load.statuses)
        self.assertEqual(set(load.statuses["Observation"]), {200, 403}, load.statuses)
        # One reload per change: no event burst was counted twice, nothing failed.
        self.assertEqual(self.reloads(proxy, "success"), len(changes))
        self.assertEqual(self.reloads(proxy, "failure"), 0)
        self.assertTrue(proxy.running())
        return load

    def wait_for_log(self, proxy, text, timeout=5.0):
        deadline = time.monotonic() + timeout
        while text not in proxy.stderr_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        return proxy.stderr_text()

    def test_edit_in_place_under_load(self):
        proxy = self.start()
        # The watcher starts (and logs) just after the listeners: wait for its line.
        self.assertIn("watching the configuration files",
                      self.wait_for_log(proxy, "watching the configuration files"))
        self.assertEqual(self.observation_status(proxy), 200)
        self.run_under_load(proxy, [
            (lambda: write_in_place(proxy.policy_path, to_yaml(CLOSED)), 403),
            (lambda: write_in_place(proxy.policy_path, to_yaml(OPEN)), 200),
            (lambda: write_in_place(proxy.policy_path, to_yaml(CLOSED)), 403),
        ])
        self.assertEqual(proxy.metric(RULES), 2)

    def test_rename_over_under_load(self):
        proxy = self.start()
        self.run_under_load(proxy, [
            (lambda: write_and_rename(proxy.policy_path, to_yaml(CLOSED)), 403),
            (lambda: write_and_rename(proxy.policy_path, to_yaml(OPEN)), 200),
            (lambda: write_and_rename(proxy.policy_path, to_yaml(CLOSED)), 403),
        ])
        # The temporary files never triggered anything of their own and are gone.
        self.assertFalse(os.path.exists(proxy.policy_path + ".tmp~"))

    def test_configmap_symlink_swap_under_load(self):
        cm = ConfigMapDir(os.path.join(self.workdir, "policy-cm"))
        cm.update({"policy.yaml": to_yaml(OPEN), "README": "not a policy file\n"})
        proxy = self.start(policy_path=cm.file("policy.yaml"))
        self.assertEqual(self.observation_status(proxy), 200)
        self.run_under_load(proxy, [
            (lambda: cm.update({"policy.yaml": to_yaml(CLOSED), "README": "v2\n"}), 403),
            (lambda: cm.update({"policy.yaml": to_yaml(OPEN), "README": "v3\n"}), 200),
            (lambda: cm.update({"policy.yaml": to_yaml(CLOSED), "README": "v4\n"}), 403),
        ])

    def test_configmap_policy_directory(self):
        # `policy:` names the mounted directory itself; a key added to the ConfigMap is a new file.
        cm = ConfigMapDir(os.path.join(self.workdir, "policy-d"))
        cm.update({"10-base.yaml": to_yaml(OPEN)})
        proxy = self.start(policy_path=cm.path)
        deny_obs = to_yaml({"rules": [CLOSED["rules"][0]]})
        cm.update({"05-deny.yaml": deny_obs, "10-base.yaml": to_yaml(OPEN)})
        self.wait_reload(proxy, "success", 1)
        self.assertEqual(proxy.metric(RULES), 2)
        self.assertEqual(self.observation_status(proxy), 403)

    def test_broken_edit_keeps_the_old_policy(self):
        proxy = self.start()
        write_in_place(proxy.policy_path, BROKEN)
        self.wait_reload(proxy, "failure", 1)
        self.assertEqual(self.reloads(proxy, "success"), 0)
        self.assertEqual(proxy.metric(RULES), 1)
        self.assertEqual(self.observation_status(proxy), 200)  # the old policy decides
        m = re.search(re.escape(proxy.policy_path) + r":(\d+):(\d+): ", proxy.stderr_text())
        self.assertTrue(m, proxy.stderr_text())
        self.assertIn(int(m.group(1)), (4, 5, 6))
        # Fixing the file applies it.
        write_and_rename(proxy.policy_path, to_yaml(CLOSED))
        self.wait_reload(proxy, "success", 1)
        self.assertEqual(self.observation_status(proxy), 403)
        self.assertEqual(self.reloads(proxy, "failure"), 1)

    def test_broken_proxy_yaml_keeps_serving(self):
        proxy = self.start()
        with open(proxy.config_path) as f:
            good = f.read()
        write_and_rename(proxy.config_path, good + "unknown_key: 1\n")
        self.wait_reload(proxy, "failure", 1)
        self.assertRegex(proxy.stderr_text(), re.escape(proxy.config_path) + r":\d+:\d+: unknown key")
        self.assertEqual(self.observation_status(proxy), 200)

    def test_certificate_rotation_by_rename(self):
        tls_dir = os.path.join(self.workdir, "tls")
        os.makedirs(tls_dir)
        chain, key = os.path.join(tls_dir, "tls.crt"), os.path.join(tls_dir, "tls.key")
        shutil.copy(self.server.chain, chain)
        shutil.copy(self.server.key, key)
        proxy = self.start(tls={"cert": chain, "key": key})

        def served():
            with client.Connection(self.ctx(), proxy.port) as c:
                return hashlib.sha256(c.sock.getpeercert(binary_form=True)).hexdigest()

        kept = client.Connection(self.ctx(), proxy.port)
        self.addCleanup(kept.close)
        self.assertEqual(served(), self.server.fingerprint_sha256)
        # A cron job's rotation: new key and chain written beside, renamed over, key first.
        with open(self.server_new.key) as f:
            write_and_rename(key, f.read())
        with open(self.server_new.chain) as f:
            write_and_rename(chain, f.read())
        got = wait_until(lambda: served() == self.server_new.fingerprint_sha256)
        self.assertTrue(got, proxy.stderr_text()[-3000:])
        self.assertGreaterEqual(self.reloads(proxy, "success"), 1)
        # The connection from before keeps its handshake and keeps working.
        self.assertEqual(kept.request("GET", "/fhir/Patient/1").status, 200)
        self.assertEqual(hashlib.sha256(kept.sock.getpeercert(binary_form=True)).hexdigest(),
                         self.server.fingerprint_sha256)

    def test_certificate_rotation_in_a_secret_volume(self):
        # cert-manager's Secret mounted in a pod: tls.crt and tls.key change together (one swap).
        secret = ConfigMapDir(os.path.join(self.workdir, "secret"))
        with open(self.server.chain) as c, open(self.server.key) as k:
            secret.update({"tls.crt": c.read(), "tls.key": k.read()})
        proxy = self.start(tls={"cert": secret.file("tls.crt"), "key": secret.file("tls.key")})
        with open(self.server_new.chain) as c, open(self.server_new.key) as k:
            secret.update({"tls.crt": c.read(), "tls.key": k.read()})
        self.wait_reload(proxy, "success", 1)
        with client.Connection(self.ctx(), proxy.port) as c:
            fp = hashlib.sha256(c.sock.getpeercert(binary_form=True)).hexdigest()
        self.assertEqual(fp, self.server_new.fingerprint_sha256)
        self.assertEqual(self.reloads(proxy, "failure"), 0)  # never a half-rotated pair

    def test_watch_false_leaves_reloads_to_sighup(self):
        proxy = self.start(watch=False)
        self.assertNotIn("watching the configuration files", proxy.stderr_text())
        write_in_place(proxy.policy_path, to_yaml(CLOSED))
        self.assertEqual(proxy.reload(), "success")
        self.assertEqual(self.observation_status(proxy), 403)
        # Turning watch on by a reload starts watching.
        cfg = dict(proxy.config)
        cfg["watch"] = True
        proxy.write_config(cfg)
        self.assertEqual(proxy.reload(), "success")
        # The reload counter moves before the watcher is started and logs: wait for the log line.
        self.assertIn("watching the configuration files",
                      self.wait_for_log(proxy, "watching the configuration files"))
        write_in_place(proxy.policy_path, to_yaml(OPEN))
        self.wait_reload(proxy, "success", 3)
        self.assertEqual(self.observation_status(proxy), 200)


if __name__ == "__main__":
    unittest.main()
