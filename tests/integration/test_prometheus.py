"""The metrics, the Grafana dashboard and the alert rules against a real Prometheus.

One proxy (echo upstream, one trust community with a CRL) is scraped every second by a real
Prometheus (Debian package `prometheus`, on 127.0.0.1 only, storage in a temp dir) that loads
deploy/prometheus/alerts.yml. setUpClass drives a known mix of traffic over several scrapes: allowed,
denied and shadow-matched requests, a handshake with an untrusted certificate, a good and a failed
reload, an upstream error (upstream stopped -> 502), and requests with client-controlled markers in
the path, query and certificate subject. The tests then check, through Prometheus's HTTP API:

- every expression of every dashboard panel returns data (no empty panel, no misspelled metric);
- every rule of alerts.yml is healthy (parsed and evaluated without error);
- the counters equal the traffic sent, exactly;
- promtool accepts the rules and the proxy's /metrics output;
- no client-controlled value (subject, path, query) appears anywhere in /metrics.
"""

import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

from harness import binary_path, client, source_dir
from harness.pki import Pki
from harness.proxy import ProxyProcess, free_port, metric_value, parse_metrics, proxy_config
from harness.upstream import EchoUpstream

JOB = "fhir-mtls-proxy"
PREFIX = "fhir_mtls_proxy_"
SETTLE_TIMEOUT = 20.0  # bound on each wait for Prometheus to catch up (scrapes run every second)

POLICY = {
    "default": "deny",
    "rules": [
        {"name": "shadow-watch-observation", "effect": "deny", "mode": "shadow",
         "when": {"fhir": {"resource": ["Observation"]}}},
        {"name": "shadow-try-encounter", "effect": "allow", "mode": "shadow",
         "when": {"fhir": {"resource": ["Encounter"]}}},
        {"name": "deny-delete", "effect": "deny", "when": {"method": ["DELETE"]}},
        {"name": "read-patient", "effect": "allow",
         "when": {"fhir": {"resource": ["Patient"], "interaction": ["read"]}}},
        {"name": "search-observation", "effect": "allow",
         "when": {"fhir": {"resource": ["Observation"], "interaction": ["search"]}}},
    ],
}
RELOADED_POLICY = {"default": "deny", "rules": POLICY["rules"] + [
    {"name": "added-by-reload", "effect": "allow", "when": {"path": ["/fhir/never/*"]}}]}


class Traffic:
    """Sends requests and tallies what the metrics must say about them."""

    def __init__(self, port):
        self.port = port
        self.requests = {}      # (decision, rule) -> count, shadow decisions included
        self.fhir = {}          # (interaction, resource, decision) -> count
        self.responses = {}     # code class -> count
        self.handshakes_ok = 0
        self.decided = 0        # requests with an enforced decision (request_duration observations)
        self.forwarded = 0      # successful upstream exchanges (upstream_duration observations)

    @staticmethod
    def _add(table, key, n=1):
        table[key] = table.get(key, 0) + n

    def send(self, ctx, method, path, status, decision, rule, fhir, shadow=()):
        """One request on a new connection; asserts its status and records the expected counts.
        fhir: (interaction, resource label); shadow: [(shadow decision, rule)]."""
        r = client.request(ctx, self.port, method, path)
        if r.status != status:
            raise AssertionError("%s %s: status %d, expected %d: %r" % (method, path, r.status, status,
                                                                         r.body[:300]))
        self.handshakes_ok += 1
        self.decided += 1
        self._add(self.requests, (decision, rule))
        for s in shadow:
            self._add(self.requests, s)
        self._add(self.fhir, fhir + (decision,))
        self._add(self.responses, "%dxx" % (status // 100))
        if 200 <= status < 300:
            self.forwarded += 1

    def enforced_total(self):
        return sum(n for (d, _), n in self.requests.items() if d in ("allow", "deny"))


class Prometheus:
    """A prometheus server on 127.0.0.1:PORT scraping one target every second."""

    def __init__(self, workdir, target, rule_file):
        self.dir = workdir
        self.port = free_port()
        self.base = "http://127.0.0.1:%d" % self.port
        self.config_path = os.path.join(workdir, "prometheus.yml")
        self.log_path = os.path.join(workdir, "prometheus.log")
        with open(self.config_path, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
                    "rule_files:\n  - %s\n"
                    "scrape_configs:\n  - job_name: %s\n    static_configs:\n"
                    "      - targets: [\"%s\"]\n" % (json.dumps(rule_file), JOB, target))
        self.proc = None

    def start(self, timeout=30.0):
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [shutil.which("prometheus"), "--config.file=" + self.config_path,
             "--web.listen-address=127.0.0.1:%d" % self.port,
             "--storage.tsdb.path=" + os.path.join(self.dir, "data")],
            cwd=self.dir, stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("prometheus exited with %d:\n%s" % (self.proc.returncode, self.log()))
            try:
                with urllib.request.urlopen(self.base + "/-/ready", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("prometheus not ready within %.0fs:\n%s" % (timeout, self.log()))

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if getattr(self, "_log", None) and not self._log.closed:
            self._log.close()

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")[-4000:]
        except FileNotFoundError:
            return ""

    def _get(self, path, params=None):
        url = self.base + path + ("?" + urllib.parse.urlencode(params) if params else "")
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:  # 400/422: a bad expression; the body says why
            return json.loads(e.read() or b"{}")

    def query(self, expr):
        """(result list, error or None) of an instant query at now."""
        body = self._get("/api/v1/query", {"query": expr})
        if body.get("status") != "success":
            return [], "%s: %s" % (body.get("errorType"), body.get("error"))
        data = body["data"]
        if data["resultType"] in ("vector", "matrix"):
            return data["result"], None
        return [data["result"]], None  # scalar / string

    def value(self, expr):
        """The single value of `expr` as a float; None when the result is empty."""
        result, error = self.query(expr)
        if error:
            raise AssertionError("%s: %s" % (expr, error))
        if not result:
            return None
        if len(result) != 1:
            raise AssertionError("%s: %d series, expected one: %r" % (expr, len(result), result))
        return float(result[0]["value"][1])

    def wait_value(self, expr, expected, timeout=SETTLE_TIMEOUT):
        """Polls until `expr` equals `expected` (bounded); returns the last value seen."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.value(expr)
            if got == expected or time.monotonic() >= deadline:
                return got
            time.sleep(0.2)

    def rules(self):
        return self._get("/api/v1/rules")["data"]["groups"]


def dashboard_targets(dashboard):
    """[(panel title, expr)] of every panel target, rows' nested panels included."""
    out = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                if t.get("expr"):
                    out.append((p.get("title", "?"), t["expr"]))
            walk(p.get("panels", []))

    walk(dashboard.get("panels", []))
    return out


def substitute(expr, target):
    """The expression as Grafana would send it with job / instance set to the test's target."""
    values = {"__rate_interval": "1m", "__interval": "15s", "__range": "1h", "job": JOB,
              # Grafana escapes regex metacharacters and then backslashes for the PromQL string.
              "instance": re.escape(target).replace("\\", "\\\\")}
    for name, value in values.items():
        expr = expr.replace("${%s}" % name, value).replace("$" + name, value)
    return expr


class PrometheusIntegrationTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        binary = binary_path()
        for tool in ("prometheus", "promtool"):
            if shutil.which(tool) is None:
                raise unittest.SkipTest("%s not installed (Debian package prometheus; "
                                        "deploy/install-deps.sh installs it)" % tool)
        cls.started = time.monotonic()
        cls.src = source_dir()
        cls.alerts_path = os.path.join(cls.src, "deploy", "prometheus", "alerts.yml")
        cls.dashboard_path = os.path.join(cls.src, "deploy", "grafana", "fhir-mtls-proxy-dashboard.json")
        cls.tmp = tempfile.mkdtemp(prefix="fmp-prometheus-")
        cls.addClassCleanup(shutil.rmtree, cls.tmp, True)

        pki = Pki(os.path.join(cls.tmp, "pki"))
        server_ca = pki.root("server-ca")
        community = pki.root("dt-root", subject={"O": "Example DirectTrust", "CN": "Example DirectTrust CA"})
        crl = pki.crl(community)
        good = pki.client("ehr-client", community)
        cls.markers = {
            "subject": "cnmarker" + secrets.token_hex(6),
            "san": "sanmarker" + secrets.token_hex(6),
            "stranger": "strangermarker" + secrets.token_hex(6),
            "path": "EvilResource123",
            # A well-formed type name that is not an R4 resource: classified, labelled "other".
            "type": "EvilType" + "".join(secrets.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(10)),
            "query": "secret",
        }
        marked = pki.client("marked", community,
                            subject={"O": "Example Hospital", "OU": cls.markers["subject"],
                                     "CN": cls.markers["subject"]},
                            sans=["URI:https://apps.example.org/" + cls.markers["san"]])
        stranger = pki.client("stranger", pki.root("other-root"),
                              subject={"O": "Example Hospital", "CN": cls.markers["stranger"]})

        cls.upstream = EchoUpstream().start()
        cls.addClassCleanup(cls.upstream.stop)
        cfg = proxy_config(pki.server(server_ca), [("directtrust", pki.bundle("dt", community), [crl])],
                           cls.upstream.url)
        cls.proxy = ProxyProcess(binary, os.path.join(cls.tmp, "proxy"), cfg, POLICY).start()
        cls.addClassCleanup(cls.proxy.stop)
        cls.target = "127.0.0.1:%d" % cls.proxy.metrics_port

        cls.prom = Prometheus(cls.tmp, cls.target, cls.alerts_path)
        cls.addClassCleanup(cls.prom.stop)
        cls.prom.start()
        prom = cls.prom
        if prom.wait_value('up{job="%s"}' % JOB, 1.0) != 1.0:
            raise AssertionError("prometheus never scraped the proxy:\n" + prom.log())

        def ctx(cert):
            return client.tls_context(cert=cert.chain, key=cert.key, ca=server_ca.cert)

        t = cls.traffic = Traffic(cls.proxy.port)
        decided = "sum(%srequests_total{decision=~\"allow|deny\"})" % PREFIX

        def settle(what):
            got = prom.wait_value(decided, float(t.enforced_total()))
            if got != t.enforced_total():
                raise AssertionError("%s: prometheus saw %r decided requests, sent %d" % (
                    what, got, t.enforced_total()))

        # Round 1: allowed, denied, shadow-matched.
        g = ctx(good)
        for i in range(3):
            t.send(g, "GET", "/fhir/Patient/%d" % i, 200, "allow", "read-patient", ("read", "Patient"))
        for _ in range(2):
            t.send(g, "GET", "/fhir/Observation?code=1234-5", 200, "allow", "search-observation",
                   ("search", "Observation"), shadow=[("shadow_deny", "shadow-watch-observation")])
        t.send(g, "DELETE", "/fhir/Patient/1", 403, "deny", "deny-delete", ("delete", "Patient"))
        settle("round 1")

        # Reloads: a good one (one rule more) and a failed one (the old state keeps serving).
        cls.proxy.write_config(policy=RELOADED_POLICY)
        cls.reload_results = [cls.proxy.reload()]
        cls.proxy.write_config(policy="default: maybe\n")
        cls.reload_results.append(cls.proxy.reload())

        # Round 2: more of each, a failing handshake, client-controlled markers.
        t.send(g, "DELETE", "/fhir/Observation/9", 403, "deny", "deny-delete", ("delete", "Observation"),
               shadow=[("shadow_deny", "shadow-watch-observation")])
        t.send(g, "GET", "/fhir/Encounter/7", 403, "deny", "default", ("read", "Encounter"),
               shadow=[("shadow_allow", "shadow-try-encounter")])
        t.send(g, "GET", "/fhir/Patient/42", 200, "allow", "read-patient", ("read", "Patient"))
        m = ctx(marked)
        # Digits make it no resource type name: an unknown interaction at system level.
        t.send(m, "GET", "/fhir/%s/x" % cls.markers["path"], 403, "deny", "default", ("unknown", "system"))
        t.send(m, "GET", "/fhir/%s/1" % cls.markers["type"], 403, "deny", "default", ("read", "other"))
        t.send(m, "GET", "/fhir/Patient?x=%s" % cls.markers["query"], 403, "deny", "default",
               ("search", "Patient"))
        cls.handshake_error = client.handshake_error(ctx(stranger), cls.proxy.port)
        settle("round 2")

        # Upstream error: the FHIR server goes away; an allowed request gets 502.
        cls.upstream.stop()
        t.send(g, "GET", "/fhir/Patient/5", 502, "allow", "read-patient", ("read", "Patient"))
        settle("upstream error")
        # Two more scrapes, so every series (some are created on first use) has two samples in range.
        scrapes = 'count_over_time(up{job="%s"}[1h])' % JOB
        n = prom.value(scrapes)
        prom.wait_value(scrapes, n + 2)
        cls.metrics_text = cls.proxy.metrics_text()
        cls.audit = cls.proxy.audit_lines(wait_for=t.decided)

    @classmethod
    def tearDownClass(cls):
        print("\n[test_prometheus] setup + tests took %.1fs" % (time.monotonic() - cls.started))

    # --- (a) the dashboard ---------------------------------------------------------------------

    def test_every_dashboard_panel_returns_data(self):
        with open(self.dashboard_path) as f:
            dashboard = json.load(f)
        self.assertGreaterEqual(dashboard.get("schemaVersion", 0), 36)
        names = [v["name"] for v in dashboard["templating"]["list"]]
        self.assertIn("instance", names)
        ds = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]
        self.assertEqual([(v["name"], v["query"]) for v in ds], [("DS_PROMETHEUS", "prometheus")])
        targets = dashboard_targets(dashboard)
        self.assertGreaterEqual(len(targets), 20)
        not_filtered = sorted({title for title, expr in targets if "$instance" not in expr})
        self.assertEqual(not_filtered, [], "panels ignoring the $instance variable")

        deadline = time.monotonic() + SETTLE_TIMEOUT
        while True:
            offending = []
            for title, expr in targets:
                query = substitute(expr, self.target)
                if "$" in query:
                    offending.append("%s: unknown template variable in %s" % (title, query))
                    continue
                result, error = self.prom.query(query)
                if error or not result:
                    offending.append("%s: %s -> %s" % (title, query, error or "no data"))
            if not offending or time.monotonic() >= deadline:
                break
            time.sleep(0.5)
        self.assertEqual(offending, [], "dashboard panels without data:\n" + "\n".join(offending))

    def test_dashboard_variables_and_annotations_resolve(self):
        with open(self.dashboard_path) as f:
            dashboard = json.load(f)
        # Query variables (label_values(SELECTOR, LABEL)) offer this proxy's job and instance.
        found = {}
        for v in dashboard["templating"]["list"]:
            if v["type"] != "query":
                continue
            query = v["query"] if isinstance(v["query"], str) else v["query"]["query"]
            m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query.strip())
            self.assertIsNotNone(m, "%s: %s" % (v["name"], query))
            result, error = self.prom.query(substitute(m.group(1), self.target))
            self.assertIsNone(error, "%s: %s" % (v["name"], query))
            found[v["name"]] = {s["metric"].get(m.group(2)) for s in result}
        self.assertEqual(found, {"job": {JOB}, "instance": {self.target}})
        # Annotation queries parse (they select events, so they may well be empty).
        exprs = [a["expr"] for a in dashboard["annotations"]["list"] if a.get("expr")]
        self.assertTrue(exprs)
        for expr in exprs:
            self.assertIsNone(self.prom.query(substitute(expr, self.target))[1], expr)

    def test_dashboard_shows_every_metric_family(self):
        with open(self.dashboard_path) as f:
            text = f.read()
        families = sorted(set(re.findall(r"^# TYPE (%s\w+) " % PREFIX, self.metrics_text, re.M)))
        self.assertGreaterEqual(len(families), 10)
        missing = [name for name in families if name not in text]
        self.assertEqual(missing, [], "metric families no dashboard panel shows")

    def test_dashboard_panel_values_match_traffic(self):
        # Spot checks that the panels compute what they claim (not only that they return data).
        days = self.prom.value('max(%scertificate_expiry_timestamp_seconds{cert="server"} - time()) / 86400'
                               % PREFIX)
        self.assertTrue(360 < days < 366, days)  # pki.server: 365 days
        crl = self.prom.value('max(%scertificate_expiry_timestamp_seconds{cert="crl:directtrust"} - time())'
                              % PREFIX)
        self.assertTrue(29 * 86400 < crl <= 30 * 86400, crl)  # pki.crl: nextUpdate in 30 days
        since = self.prom.value("time() - max(%spolicy_last_reload_timestamp_seconds)" % PREFIX)
        self.assertTrue(0 <= since < 120, since)

    # --- (b) the alert rules -------------------------------------------------------------------

    def test_every_alert_rule_is_healthy(self):
        with open(self.alerts_path) as f:
            text = f.read()
        declared = re.findall(r"^\s*- (?:alert|record): (\S+)", text, re.M)
        self.assertGreaterEqual(len(declared), 10)
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while True:
            rules = [r for g in self.prom.rules() for r in g["rules"]]
            unhealthy = ["%s: health=%s lastError=%r" % (r["name"], r.get("health"), r.get("lastError"))
                         for r in rules if r.get("health") != "ok" or r.get("lastError")]
            if not unhealthy and len(rules) == len(declared) or time.monotonic() >= deadline:
                break
            time.sleep(0.5)
        self.assertEqual(sorted(r["name"] for r in rules), sorted(declared))
        self.assertEqual(unhealthy, [])
        alerts = [r for r in rules if r["type"] == "alerting"]
        for r in alerts:
            for key in ("summary", "description", "runbook"):
                self.assertTrue(r["annotations"].get(key), "%s has no %s" % (r["name"], key))
        names = {r["name"] for r in alerts}
        for wanted in ("FhirProxyDown", "FhirProxyDenySpike", "FhirProxyHandshakeFailureSpike",
                       "FhirProxyUpstreamErrors", "FhirProxyCertificateExpiringSoon",
                       "FhirProxyCrlStale", "FhirProxyCrlExpiringSoon", "FhirProxyReloadFailed",
                       "FhirProxyAuditEventsDropped", "FhirProxyAuditWriteErrors"):
            self.assertIn(wanted, names)
        # The reload failure happened within the last 15 minutes: its alert is active.
        reload_rule = next(r for r in alerts if r["name"] == "FhirProxyReloadFailed")
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while reload_rule["state"] == "inactive" and time.monotonic() < deadline:
            time.sleep(0.5)
            reload_rule = next(r for g in self.prom.rules() for r in g["rules"]
                               if r["name"] == "FhirProxyReloadFailed")
        self.assertIn(reload_rule["state"], ("pending", "firing"))
        # Nothing here is near expiry, stale or down.
        quiet = {r["name"]: r["state"] for r in alerts if r["name"] in (
            "FhirProxyDown", "FhirProxyCertificateExpiringSoon", "FhirProxyCrlStale",
            "FhirProxyCrlExpiringSoon", "FhirProxyAuditEventsDropped")}
        self.assertEqual(set(quiet.values()), {"inactive"}, quiet)

    def test_promtool_checks_the_rules(self):
        r = subprocess.run([shutil.which("promtool"), "check", "rules", self.alerts_path],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout)
        self.assertIn("SUCCESS", r.stdout)

    def test_promtool_checks_the_metrics_output(self):
        r = subprocess.run([shutil.which("promtool"), "check", "metrics"], input=self.metrics_text,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
        self.assertEqual((r.returncode, r.stdout), (0, ""))

    # --- (c) counters equal the traffic --------------------------------------------------------

    def assertSeries(self, metric, labels, expected):
        sel = ",".join('%s="%s"' % kv for kv in sorted(labels.items()))
        got = self.prom.value("sum(%s%s{%s})" % (PREFIX, metric, sel))
        self.assertEqual(got, float(expected), "%s{%s}" % (metric, sel))
        direct = metric_value(self.metrics_text, PREFIX + metric, labels) or 0.0
        self.assertEqual(direct, float(expected), "/metrics %s{%s}" % (metric, sel))

    def test_counters_match_the_traffic(self):
        t = self.traffic
        self.assertEqual(self.reload_results, ["success", "failure"])
        # Every (decision, rule) series, zeros included, equals what was sent.
        series = {(s["metric"]["decision"], s["metric"]["rule"]): float(s["value"][1])
                  for s in self.prom.query("%srequests_total" % PREFIX)[0]}
        expected = {k: float(v) for k, v in t.requests.items()}
        nonzero = {k: v for k, v in series.items() if v}
        self.assertEqual(nonzero, expected)
        rules = {r["name"] for r in RELOADED_POLICY["rules"]} | {"default"}
        self.assertEqual({rule for _, rule in series}, rules)
        for decision in ("allow", "deny", "shadow_allow", "shadow_deny"):
            self.assertSeries("requests_total", {"decision": decision},
                              sum(n for (d, _), n in t.requests.items() if d == decision))
        self.assertEqual(t.requests[("deny", "deny-delete")], 2)  # the table itself, sanity

        fhir = {(s["metric"]["interaction"], s["metric"]["resource"], s["metric"]["decision"]):
                float(s["value"][1]) for s in self.prom.query("%sfhir_requests_total" % PREFIX)[0]}
        self.assertEqual(fhir, {k: float(v) for k, v in t.fhir.items()})

        for cls_ in ("2xx", "3xx", "4xx", "5xx"):
            self.assertSeries("responses_total", {"code_class": cls_}, t.responses.get(cls_, 0))
        self.assertSeries("tls_handshakes_total", {"result": "success"}, t.handshakes_ok)
        self.assertSeries("tls_handshakes_total", {"result": "failure", "reason": "untrusted"}, 1)
        self.assertSeries("tls_sessions_resumed_total", {}, 0)  # every request: a new session
        self.assertSeries("upstream_errors_total", {}, 1)
        self.assertSeries("upstream_errors_total", {"kind": "connect"}, 1)
        self.assertSeries("policy_reloads_total", {"result": "success"}, 1)
        self.assertSeries("policy_reloads_total", {"result": "failure"}, 1)
        self.assertSeries("policy_rules", {}, len(RELOADED_POLICY["rules"]))
        self.assertSeries("request_duration_seconds_count", {}, t.decided)
        self.assertSeries("upstream_duration_seconds_count", {}, t.forwarded)
        self.assertSeries("audit_dropped_total", {}, 0)
        self.assertSeries("audit_write_errors_total", {}, 0)
        self.assertEqual(len(self.audit), t.decided)
        self.assertIsNotNone(self.handshake_error)
        # Every client connection was closed (the proxy may take a moment to notice).
        self.assertEqual(self.prom.wait_value("sum(%sactive_connections)" % PREFIX, 0.0), 0.0)
        # Expiry series: the server, the trust community, its CRL; nothing else.
        certs = sorted(s["metric"]["cert"] for s in
                       self.prom.query("%scertificate_expiry_timestamp_seconds" % PREFIX)[0])
        self.assertEqual(certs, ["crl:directtrust", "server", "trust:directtrust"])

    # --- 4. no client-controlled value in a label ----------------------------------------------

    def test_no_client_controlled_value_in_metrics(self):
        # The marked requests did reach a decision with their identity and path (so the markers
        # had every chance to leak)...
        subjects = " ".join(str(a.get("subject")) for a in self.audit)
        paths = " ".join(str(a.get("path")) for a in self.audit)
        self.assertIn(self.markers["subject"], subjects)
        self.assertIn(self.markers["path"], paths)
        # ...and none of them, nor the untrusted client's name, is anywhere in /metrics.
        leaked = {k: v for k, v in self.markers.items() if v.lower() in self.metrics_text.lower()}
        self.assertEqual(leaked, {}, "client-controlled values in /metrics")
        # Label values come from bounded sets: the resource label of the bogus type is "other".
        resources = {l.get("resource") for n, l, _ in parse_metrics(self.metrics_text)
                     if n == PREFIX + "fhir_requests_total"}
        self.assertEqual(resources, {"Patient", "Observation", "Encounter", "other", "system"})


if __name__ == "__main__":
    unittest.main()
