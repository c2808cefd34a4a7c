"""The proxy in front of the real demo FHIR server (deploy/demo/fhir-server: Medplum's FHIR router,
in memory) with the shipped configuration (conf/proxy.yaml, conf/policy.yaml, the example PKI of
certs-example/mint.sh) and real FHIR clients: the curl CLI and the fhir-kit-client library.

Needs node (20.18 or later) and npm; the node packages are installed with `npm ci` when missing
(deploy/demo/fhir-server and tests/integration/fhir-client). Without node the test is skipped.
"""

import fcntl
import hashlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import unittest
import urllib.request
import uuid

from harness import binary_path, client, source_dir
from harness.proxy import ProxyProcess, free_port

HERE = os.path.dirname(os.path.abspath(__file__))
FHIR_CLIENT_DIR = os.path.join(HERE, "fhir-client")
FHIR_START_TIMEOUT = 60.0
NPM_TIMEOUT = 300.0
SUBJECT_EHR = "CN=ehr-client,OU=Clinical Applications,O=Example Hospital,C=US"


def npm_ci(directory):
    """`npm ci` in `directory` unless its node_modules is already installed. A lock (per directory,
    in the temp dir) keeps two test processes from installing into the same tree at once."""
    lock_path = os.path.join(tempfile.gettempdir(), "fmp-npm-ci-%s.lock" % hashlib.sha256(
        os.path.abspath(directory).encode()).hexdigest()[:16])
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.isfile(os.path.join(directory, "node_modules", ".package-lock.json")):
            return
        if shutil.which("npm") is None:
            raise unittest.SkipTest("npm is not installed (needed to install %s)" % directory)
        done = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=directory,
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=NPM_TIMEOUT)
        if done.returncode != 0:
            raise RuntimeError("npm ci in %s failed:\n%s" % (directory, done.stdout))


def rewrite(text, old, new):
    """`text` with every `old` replaced by `new`; fails when `old` does not occur (conf/ changed)."""
    if old not in text:
        raise AssertionError("conf/proxy.yaml no longer contains %r" % old)
    return text.replace(old, new)


class FhirServerTest(unittest.TestCase):
    """Starts the demo FHIR server, mints the example PKI and runs the proxy with conf/ once."""

    @classmethod
    def setUpClass(cls):
        binary = binary_path()
        if shutil.which("node") is None:
            raise unittest.SkipTest("node is not installed: the demo FHIR server needs Node.js 20+")
        if shutil.which("curl") is None:
            raise unittest.SkipTest("curl is not installed")
        src = source_dir()
        fhir_dir = os.path.join(src, "deploy", "demo", "fhir-server")
        npm_ci(fhir_dir)
        npm_ci(FHIR_CLIENT_DIR)

        cls.tmp = tempfile.mkdtemp(prefix="fmp-fhir-server-")
        cls.certs = os.path.join(cls.tmp, "pki")
        minted = subprocess.run(["bash", os.path.join(src, "certs-example", "mint.sh"), cls.certs],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
        if minted.returncode != 0:
            raise RuntimeError("certs-example/mint.sh failed:\n" + minted.stdout)

        cls.fhir = None
        cls.proxy = None
        try:
            cls._start_fhir_server(fhir_dir)
            cls._start_proxy(binary, src)
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def _start_fhir_server(cls, fhir_dir):
        cls.fhir_port = free_port()
        cls.fhir_log_path = os.path.join(cls.tmp, "fhir-server.log")
        cls._fhir_log = open(cls.fhir_log_path, "wb")
        env = dict(os.environ, PORT=str(cls.fhir_port))
        cls.fhir = subprocess.Popen(["node", "server.mjs"], cwd=fhir_dir, env=env, stdin=subprocess.DEVNULL,
                                    stdout=cls._fhir_log, stderr=subprocess.STDOUT)
        url = "http://127.0.0.1:%d/fhir/metadata" % cls.fhir_port
        deadline = time.monotonic() + FHIR_START_TIMEOUT
        while time.monotonic() < deadline:
            if cls.fhir.poll() is not None:
                raise RuntimeError("the FHIR server exited with %d:\n%s" % (cls.fhir.returncode,
                                                                            cls.fhir_log()))
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError("the FHIR server did not answer within %.0fs:\n%s" % (FHIR_START_TIMEOUT,
                                                                                 cls.fhir_log()))

    @classmethod
    def _start_proxy(cls, binary, src):
        """conf/proxy.yaml as shipped, with only the paths and ports rewritten; conf/policy.yaml as is."""
        with open(os.path.join(src, "conf", "proxy.yaml")) as f:
            text = f.read()
        port, metrics_port = free_port(), free_port()
        text = rewrite(text, "certs-example/out/", cls.certs + "/")
        text = rewrite(text, '"127.0.0.1:8443"', '"127.0.0.1:%d"' % port)
        text = rewrite(text, '"127.0.0.1:9464"', '"127.0.0.1:%d"' % metrics_port)
        text = rewrite(text, '"http://127.0.0.1:8080"', '"http://127.0.0.1:%d"' % cls.fhir_port)
        text = rewrite(text, "policy: conf/policy.yaml", "policy: " + os.path.join(src, "conf", "policy.yaml"))
        audit = os.path.join(cls.tmp, "audit.log")
        text = rewrite(text, 'path: "-"', 'path: "%s"' % audit)
        proxy = ProxyProcess(binary, os.path.join(cls.tmp, "proxy"), None, None)
        proxy.write_config_text(text)
        proxy.port, proxy.metrics_port, proxy.audit_path = port, metrics_port, audit
        cls.proxy = proxy.start()
        cls.base = "https://localhost:%d/fhir" % port

    @classmethod
    def tearDownClass(cls):
        if getattr(cls, "proxy", None):
            cls.proxy.stop()
        if getattr(cls, "fhir", None) and cls.fhir.poll() is None:
            cls.fhir.terminate()
            try:
                cls.fhir.wait(10)
            except subprocess.TimeoutExpired:
                cls.fhir.kill()
                cls.fhir.wait(5)
        if getattr(cls, "_fhir_log", None):
            cls._fhir_log.close()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def fhir_log(cls):
        with open(cls.fhir_log_path, errors="replace") as f:
            return f.read()

    # --- helpers -------------------------------------------------------------------------------

    def cert_args(self, who):
        if who == "anonymous":
            return []
        return ["--cert", os.path.join(self.certs, who + ".pem"),
                "--key", os.path.join(self.certs, who + ".key")]

    def curl(self, who, method, path, body=None):
        """The curl CLI through the proxy as `who` (an example PKI client name, or "anonymous").
        Returns (status, {lowercased header: value}, parsed JSON body or None)."""
        out = tempfile.mkdtemp(dir=self.tmp)
        head, payload = os.path.join(out, "head"), os.path.join(out, "body")
        port = self.proxy.port
        args = ["curl", "-sS", "--max-time", "20", "--cacert", os.path.join(self.certs, "server-ca.pem"),
                "--resolve", "localhost:%d:127.0.0.1" % port, "-X", method, "-D", head, "-o", payload,
                "-w", "%{http_code}"] + self.cert_args(who)
        stdin = None
        if body is not None:
            args += ["-H", "Content-Type: application/fhir+json", "--data-binary", "@-"]
            stdin = json.dumps(body)
        done = subprocess.run(args + [self.base + path], input=stdin, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, timeout=30)
        self.assertEqual(done.returncode, 0, "curl failed: %s" % done.stderr)
        headers = {}
        with open(head, encoding="latin-1") as f:
            for line in f.read().splitlines()[1:]:
                name, sep, value = line.partition(":")
                if sep:
                    headers[name.strip().lower()] = value.strip()
        with open(payload, "rb") as f:
            data = f.read()
        return int(done.stdout), headers, (json.loads(data) if data else None)

    def fhir_client(self, who, *extra):
        """tests/integration/fhir-client/client.mjs (fhir-kit-client) as `who`; its JSON result."""
        args = ["node", os.path.join(FHIR_CLIENT_DIR, "client.mjs"),
                "--base", "https://127.0.0.1:%d/fhir" % self.proxy.port,
                "--ca", os.path.join(self.certs, "server-ca.pem")] + self.cert_args(who) + list(extra)
        done = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
        self.assertEqual(done.returncode, 0, "client.mjs failed:\n%s%s" % (done.stdout, done.stderr))
        return json.loads(done.stdout)

    def assert_forbidden(self, status, headers, body, rule=None):
        self.assertEqual(status, 403, body)
        self.assertTrue(headers.get("content-type", "").startswith("application/fhir+json"), headers)
        self.assertEqual(body["resourceType"], "OperationOutcome")
        self.assertEqual(body["issue"][0]["code"], "forbidden")
        if rule:
            self.assertIn(rule, body["issue"][0]["diagnostics"])

    def search_ids(self, resource_type, query, who="covered-entity"):
        status, _, bundle = self.curl(who, "GET", "/%s?%s" % (resource_type, query))
        self.assertEqual(status, 200, bundle)
        self.assertEqual(bundle["resourceType"], "Bundle")
        return [e["resource"]["id"] for e in bundle.get("entry", [])]

    def server_saw(self, action):
        """Runs `action` and returns the FHIR server's log lines for the requests it received
        meanwhile. The log line of a request is written after its response, so a sentinel request
        (anonymous GET metadata?_sentinel=...) closes the window: once its line is there, every
        request forwarded before it has been logged too (one upstream server, requests in order)."""
        # A first sentinel opens the window: earlier requests may still be logging their lines.
        mark = self.sentinel_logged(0)
        action()
        end = self.sentinel_logged(mark)
        return self.fhir_log()[mark:end].splitlines()[:-1]

    def sentinel_logged(self, start):
        """Sends an anonymous GET metadata?_sentinel=... and returns the log offset just after
        its line, once it is there (every request forwarded before it is logged by then)."""
        sentinel = "_sentinel=" + uuid.uuid4().hex
        status, _, _ = self.curl("anonymous", "GET", "/metadata?" + sentinel)
        self.assertEqual(status, 200)
        deadline = time.monotonic() + 10
        while True:
            log = self.fhir_log()
            at = log.find(sentinel, start)
            if at >= 0:
                newline = log.find("\n", at)
                if newline >= 0:
                    return newline + 1
            self.assertLess(time.monotonic(), deadline, "the sentinel request was not logged")
            time.sleep(0.05)

    @staticmethod
    def family():
        return "Fmp" + uuid.uuid4().hex[:12]

    def patient(self, family):
        return {"resourceType": "Patient", "name": [{"family": family, "given": ["Jane"]}],
                "birthDate": "1980-04-01"}

    # --- (a) curl ------------------------------------------------------------------------------

    def test_curl_create_read_search(self):
        family = self.family()
        status, headers, created = self.curl("covered-entity", "POST", "/Patient", self.patient(family))
        self.assertEqual(status, 201, created)
        pid = created["id"]
        self.assertEqual(created["resourceType"], "Patient")
        self.assertEqual(headers.get("location"),
                         "/fhir/Patient/%s/_history/%s" % (pid, created["meta"]["versionId"]))

        status, headers, read = self.curl("covered-entity", "GET", "/Patient/" + pid)
        self.assertEqual(status, 200, read)
        self.assertEqual(read, created)
        self.assertEqual(headers.get("etag"), 'W/"%s"' % created["meta"]["versionId"])

        self.assertEqual(self.search_ids("Patient", "family=" + family), [pid])

        # The FHIR server saw the identity the proxy asserted, and the rule that allowed each request.
        log = self.fhir_log()
        self.assertIn('POST /fhir/Patient 201', log)
        self.assertIn('GET /fhir/Patient/%s 200' % pid, log)
        self.assertIn('subject="%s" rule="ehr-client-writes"' % SUBJECT_EHR, log)
        self.assertIn('subject="%s" rule="covered-entities-read-clinical"' % SUBJECT_EHR, log)

    def test_curl_patient_app_write_denied(self):
        family = self.family()
        answers = []
        seen = self.server_saw(lambda: answers.append(
            self.curl("patient-app", "POST", "/Patient", self.patient(family))))
        self.assert_forbidden(*answers[0], "no rule matched")
        self.assertEqual(seen, [])  # the FHIR server never saw the request
        self.assertEqual(self.search_ids("Patient", "family=" + family), [])
        # The same client may read (rule patient-apps-read-only).
        self.assertEqual(self.search_ids("Patient", "family=" + family, who="patient-app"), [])

    def test_curl_metadata_anonymous(self):
        status, headers, body = self.curl("anonymous", "GET", "/metadata")
        self.assertEqual(status, 200, body)
        self.assertEqual(body["resourceType"], "CapabilityStatement")
        self.assertEqual(body["fhirVersion"], "4.0.1")
        self.assertIn("Patient", [r["type"] for r in body["rest"][0]["resource"]])
        # Anything else needs a certificate: 401 login, and the server is not asked.
        answers = []
        seen = self.server_saw(lambda: answers.append(self.curl("anonymous", "GET", "/Patient?family=Doe")))
        status, headers, body = answers[0]
        self.assertEqual(status, 401, body)
        self.assertEqual(body["issue"][0]["code"], "login")
        self.assertEqual(seen, [])

    # --- (b) fhir-kit-client -------------------------------------------------------------------

    def test_fhir_kit_client(self):
        family = self.family()
        ehr = self.fhir_client("covered-entity", "--family", family)
        self.assertTrue(ehr["capabilities"]["ok"], ehr)
        self.assertEqual(ehr["capabilities"]["resource"]["resourceType"], "CapabilityStatement")
        self.assertTrue(ehr["create"]["ok"], ehr)
        self.assertEqual(ehr["create"]["status"], 201)
        pid = ehr["create"]["id"]
        self.assertTrue(ehr["read"]["ok"], ehr)
        self.assertEqual(ehr["read"]["resource"]["id"], pid)
        self.assertEqual(ehr["read"]["resource"]["name"][0]["family"], family)
        self.assertTrue(ehr["search"]["ok"], ehr)
        self.assertEqual(ehr["search"]["ids"], [pid])

        # The patient app: the create surfaces as a 403 OperationOutcome; reads still work.
        other = self.family()
        app = self.fhir_client("patient-app", "--family", other, "--read-id", pid)
        self.assertEqual(app["create"]["ok"], False, app)
        self.assertEqual(app["create"]["status"], 403, app)
        self.assertEqual(app["create"]["outcome"]["resourceType"], "OperationOutcome")
        self.assertEqual(app["create"]["outcome"]["issue"][0]["code"], "forbidden")
        self.assertTrue(app["read"]["ok"], app)
        self.assertEqual(app["read"]["resource"]["id"], pid)
        self.assertTrue(app["search"]["ok"], app)
        self.assertEqual(app["search"]["ids"], [])

        # Without a client certificate the library gets the proxy's 401 for the create.
        anon = self.fhir_client("anonymous", "--family", self.family())
        self.assertTrue(anon["capabilities"]["ok"], anon)
        self.assertEqual(anon["create"]["status"], 401, anon)
        self.assertEqual(anon["create"]["outcome"]["issue"][0]["code"], "login")

    # --- TLS session resumption, as HTTP clients do it on every new connection ------------------

    def resumed_request(self, ctx, path, session=None):
        """GET `path` over a new TLS connection made with `ctx`, offering `session` for resumption;
        returns (status, body JSON, the connection's session, whether it was resumed)."""
        raw = socket.create_connection(("127.0.0.1", self.proxy.port), timeout=10)
        with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as sock:
            sock.sendall(client.build_request("GET", "/fhir" + path, {"Connection": "close"}))
            data = b""
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
            [response] = client.parse_responses(data)
            return response.status, response.json(), sock.session, sock.session_reused

    def test_resumed_sessions_keep_what_the_handshake_proved(self):
        family = self.family()
        status, _, _ = self.curl("covered-entity", "POST", "/Patient", self.patient(family))
        self.assertEqual(status, 201)
        query = "/Patient?family=" + family
        ca = os.path.join(self.certs, "server-ca.pem")
        ehr = client.tls_context(cert=os.path.join(self.certs, "covered-entity.pem"),
                                 key=os.path.join(self.certs, "covered-entity.key"), ca=ca)
        status, body, session, reused = self.resumed_request(ehr, query)
        self.assertEqual((status, reused), (200, False), body)
        status, body, _, reused = self.resumed_request(ehr, query, session)
        self.assertTrue(reused, "the proxy issues session tickets; the second connection resumes")
        self.assertEqual(status, 200, body)
        self.assertEqual(len(body["entry"]), 1)
        self.assertEqual(body["entry"][0]["resource"]["name"][0]["family"], family)

        # An anonymous session proves nothing: resumed or not, it stays anonymous (metadata only,
        # 401 login otherwise), never "a certificate that failed".
        anonymous = client.tls_context(ca=ca)
        status, body, session, _ = self.resumed_request(anonymous, "/metadata")
        self.assertEqual(status, 200, body)
        status, body, _, _ = self.resumed_request(anonymous, "/metadata", session)
        self.assertEqual(status, 200, body)
        status, body, _, _ = self.resumed_request(anonymous, query, session)
        self.assertEqual(status, 401, body)
        self.assertEqual(body["issue"][0]["code"], "login")

    # --- (c) transaction Bundles ---------------------------------------------------------------

    def transaction(self, *entries):
        return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}

    def test_transaction_bundles(self):
        family = self.family()
        patient_ref = "urn:uuid:" + str(uuid.uuid4())
        allowed = self.transaction(
            {"fullUrl": patient_ref, "resource": self.patient(family),
             "request": {"method": "POST", "url": "Patient"}},
            {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "Heart rate"},
                          "subject": {"reference": patient_ref},
                          "valueQuantity": {"value": 72, "unit": "beats/min"}},
             "request": {"method": "POST", "url": "Observation"}})
        status, _, body = self.curl("covered-entity", "POST", "", allowed)
        self.assertEqual(status, 200, body)
        self.assertEqual(body["type"], "transaction-response")
        self.assertEqual([e["response"]["status"][:3] for e in body["entry"]], ["201", "201"], body)
        [pid] = self.search_ids("Patient", "family=" + family)
        self.assertEqual(len(self.search_ids("Observation", "subject=Patient/" + pid)), 1)

        # One forbidden entry (no client deletes: rule no-deletes) denies the whole Bundle.
        second = self.family()
        denied = self.transaction(
            {"fullUrl": "urn:uuid:" + str(uuid.uuid4()), "resource": self.patient(second),
             "request": {"method": "POST", "url": "Patient"}},
            {"request": {"method": "DELETE", "url": "Patient/" + pid}})
        answers = []
        seen = self.server_saw(lambda: answers.append(self.curl("covered-entity", "POST", "", denied)))
        self.assert_forbidden(*answers[0], "no-deletes")
        self.assertEqual(seen, [])
        self.assertEqual(self.search_ids("Patient", "family=" + second), [])
        self.assertEqual(self.search_ids("Patient", "family=" + family), [pid])

        # The same Bundle from a client that may not send Bundles at all.
        status, headers, body = self.curl("patient-app", "POST", "", allowed)
        self.assert_forbidden(status, headers, body)
        self.assertEqual(self.search_ids("Patient", "family=" + family), [pid])

        def bundle(a):
            return a.get("fhir_interaction") == "transaction"
        audit = [a for a in self.proxy.audit_lines(wait_for=3, match=bundle) if bundle(a)]
        self.assertEqual([(a["decision"], a["rule"]) for a in audit][-3:],
                         [("allow", "ehr-client-bundles"), ("deny", "no-deletes"), ("deny", "default")], audit)


if __name__ == "__main__":
    unittest.main()
