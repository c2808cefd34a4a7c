"""ProxyProcess: runs the real fhir-mtls-proxy with generated proxy.yaml and policy.yaml.

    cfg = proxy_config(server=server_cert, trust=[("directtrust", bundle, [crl])], upstream=up.url)
    with ProxyProcess(binary_path(), workdir, cfg, policy) as proxy:
        request(ctx, proxy.port, "GET", "/fhir/Patient/1")
        proxy.audit_lines()

`config` is a dict in the shape of proxy.yaml (CONTRACT.md). ProxyProcess fills in what a test
rarely cares about: `listen` and `metrics.listen` on free ports, `policy` (the written policy file),
and `audit.path` (a file in workdir) unless the dict sets them. `policy` is YAML text or a dict.
"""

import json
import os
import re
import signal as signals
import socket
import subprocess
import time
import urllib.request

from .client import wait_for_port


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- a small YAML emitter (block style, every string double-quoted) -----------------------------

_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


def _scalar(value):
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (int, float)):
        return repr(value)
    # A JSON string is a valid YAML double-quoted scalar.
    return json.dumps(str(value), ensure_ascii=False)


def _key(key):
    key = str(key)
    return key if _PLAIN_KEY.match(key) and key not in ("true", "false", "null", "yes", "no", "on",
                                                        "off", "y", "n") else json.dumps(key)


def to_yaml(value, indent=0):
    """YAML text for dicts, lists and scalars (strings are always quoted, so "1.2" stays a string)."""
    pad = " " * indent
    if isinstance(value, dict):
        if not value:
            return pad + "{}\n"
        out = ""
        for k, v in value.items():
            if isinstance(v, (dict, list)) and v:
                out += "%s%s:\n%s" % (pad, _key(k), to_yaml(v, indent + 2))
            else:
                out += "%s%s: %s\n" % (pad, _key(k), to_yaml(v, 0).strip())
        return out
    if isinstance(value, (list, tuple)):
        if not value:
            return pad + "[]\n"
        out = ""
        for item in value:
            if isinstance(item, (dict, list, tuple)) and item:
                body = to_yaml(item, indent + 2)
                out += "%s- %s" % (pad, body[indent + 2:])
            else:
                out += "%s- %s\n" % (pad, to_yaml(item, 0).strip())
        return out
    return pad + _scalar(value) + "\n"


def proxy_config(server, trust, upstream, server_key=None, client_cert="require", **overrides):
    """A proxy.yaml dict for the common case.

    server: a pki.Cert (its chain and key) or a (chain_path, key_path) pair; trust: a list of
    (name, ca_bundle_path) or (name, ca_bundle_path, [crl paths]); upstream: the URL
    ("http://127.0.0.1:PORT"). overrides: top-level keys replacing or adding to the result (e.g.
    limits={...}, identity_headers={...}, workers=2).
    """
    if isinstance(server, tuple):
        cert, key = server
    else:
        cert, key = server.chain, server.key
    entries = []
    for t in trust:
        entry = {"name": t[0], "ca": t[1]}
        if len(t) > 2 and t[2]:
            entry["crl"] = list(t[2])
        entries.append(entry)
    cfg = {
        "workers": 1,
        "drain_timeout_ms": 5000,
        # Tests reload with SIGHUP and count reloads exactly; the file watcher (default on in the
        # proxy) would add reloads of its own. test_watch_reload turns it on explicitly.
        "watch": False,
        "tls": {"cert": cert, "key": server_key or key, "client_cert": client_cert, "trust": entries},
        "upstream": {"url": upstream, "connect_timeout_ms": 2000, "response_timeout_ms": 10000},
        "fhir_base": "/fhir",
    }
    cfg.update(overrides)
    return cfg


class ProxyError(RuntimeError):
    """The proxy did not start (or stop) as expected; the message includes its stderr."""


class ProxyProcess:
    """The proxy binary running `run --config WORKDIR/proxy.yaml` in `workdir`.

    Attributes after start(): port, metrics_port, pid, config (the dict written), config_path,
    policy_path, stdout_path, stderr_path, audit_path (None when audit goes to stdout).
    """

    def __init__(self, binary, workdir, config, policy, start_timeout=15.0, env=None):
        self.binary = binary
        self.workdir = os.path.abspath(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.config_path = os.path.join(self.workdir, "proxy.yaml")
        self.policy_path = os.path.join(self.workdir, "policy.yaml")
        self.stdout_path = os.path.join(self.workdir, "proxy.stdout")
        self.stderr_path = os.path.join(self.workdir, "proxy.stderr")
        self.start_timeout = start_timeout
        self.env = env
        self.proc = None
        self.port = None
        self.metrics_port = None
        self.audit_path = None
        self.config = None
        self.write_config(config, policy)

    # --- files ---------------------------------------------------------------------------------

    def write_config(self, config=None, policy=None):
        """(Re)writes proxy.yaml and/or policy.yaml (None: keep that file). Keeps the ports already
        chosen unless `config` sets them. Use before reload()."""
        if policy is not None:
            text = policy if isinstance(policy, str) else to_yaml(policy)
            with open(self.policy_path, "w") as f:
                f.write(text)
        if config is not None:
            cfg = dict(config)
            if "listen" not in cfg:
                self.port = self.port or free_port()
                cfg["listen"] = "127.0.0.1:%d" % self.port
            else:
                self.port = int(str(cfg["listen"]).rsplit(":", 1)[1])
            metrics = dict(cfg.get("metrics") or {})
            if "listen" not in metrics:
                self.metrics_port = self.metrics_port or free_port()
                metrics["listen"] = "127.0.0.1:%d" % self.metrics_port
            else:
                self.metrics_port = int(str(metrics["listen"]).rsplit(":", 1)[1])
            cfg["metrics"] = metrics
            cfg.setdefault("policy", self.policy_path)
            audit = dict(cfg.get("audit") or {})
            audit.setdefault("path", os.path.join(self.workdir, "audit.log"))
            cfg["audit"] = audit
            self.audit_path = None if audit["path"] == "-" else audit["path"]
            self.config = cfg
            with open(self.config_path, "w") as f:
                f.write(to_yaml(cfg))

    def write_config_text(self, text):
        """Writes proxy.yaml verbatim (the caller is responsible for listen/metrics ports)."""
        with open(self.config_path, "w") as f:
            f.write(text)

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self):
        """Starts the process and waits (bounded) until the listen port accepts TCP."""
        self._stdout = open(self.stdout_path, "wb")
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen([self.binary, "run", "--config", self.config_path],
                                     cwd=self.workdir, stdout=self._stdout, stderr=self._stderr,
                                     stdin=subprocess.DEVNULL, env=self.env)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ProxyError("proxy exited with %d during start-up:\n%s" % (
                    self.proc.returncode, self.stderr_text()))
            if wait_for_port(self.port, timeout=0.2):
                return self
        self.stop()
        raise ProxyError("proxy did not listen on %d within %.0fs:\n%s" % (
            self.port, self.start_timeout, self.stderr_text()))

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def running(self):
        """Whether the process is still alive."""
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        """Sends a signal to the process."""
        self.proc.send_signal(sig)

    def reload(self, wait=True, timeout=10.0):
        """Sends SIGHUP. With wait, waits until fhir_mtls_proxy_policy_reloads_total (success +
        failure) grows and returns "success" or "failure"; without, returns None at once."""
        before = self._reload_counts() if wait else None
        self.proc.send_signal(signals.SIGHUP)
        if not wait:
            return None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            now = self._reload_counts()
            if now["success"] > before["success"]:
                return "success"
            if now["failure"] > before["failure"]:
                return "failure"
            if not self.running():
                raise ProxyError("proxy exited during reload:\n" + self.stderr_text())
            time.sleep(0.05)
        raise ProxyError("reload not observed in metrics within %.0fs:\n%s" % (timeout,
                                                                               self.stderr_text()))

    def stop(self, timeout=15.0, sig=signals.SIGTERM):
        """Sends `sig` (SIGTERM), waits up to `timeout`, then SIGKILLs; returns the exit code
        (negative: killed by that signal). Idempotent. Raises ProxyError (once) when the process
        left a sanitizer report on stderr (ASan/UBSan/TSan builds, tests/run.sh)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for f in (getattr(self, "_stdout", None), getattr(self, "_stderr", None)):
            if f and not f.closed:
                f.close()
        if not getattr(self, "_sanitizer_checked", False):
            self._sanitizer_checked = True
            check_sanitizer_report("proxy (exit %s)" % self.proc.returncode, self.stderr_text())
        return self.proc.returncode

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # --- output --------------------------------------------------------------------------------

    def stderr_text(self):
        """Everything the process wrote to stderr so far."""
        return _read(self.stderr_path)

    def stdout_text(self):
        """Everything the process wrote to stdout so far."""
        return _read(self.stdout_path)

    def audit_lines(self, wait_for=0, timeout=5.0, match=None):
        """The audit log as a list of dicts (from audit.path, or the JSON lines of stdout when it
        is "-"). wait_for=N polls (bounded) until at least N records exist — N records for which
        match(record) is true when `match` is given (the proxy writes audit events in batches, a
        few milliseconds after the response)."""
        deadline = time.monotonic() + timeout
        while True:
            text = _read(self.audit_path) if self.audit_path else self.stdout_text()
            records = []
            for line in text.splitlines():
                line = line.strip()
                if line.startswith("{"):
                    try:
                        records.append(json.loads(line))
                    except ValueError:
                        pass
            matching = records if match is None else [r for r in records if match(r)]
            if len(matching) >= wait_for or time.monotonic() >= deadline:
                return records
            time.sleep(0.05)

    def metrics_text(self, timeout=5.0):
        """GET http://127.0.0.1:METRICS_PORT/metrics as text."""
        url = "http://127.0.0.1:%d/metrics" % self.metrics_port
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.read().decode()

    def metric(self, name, labels=None):
        """The value of the sample `name` whose labels include `labels` (dict), summed over
        matching series; None when no series matches."""
        return metric_value(self.metrics_text(), name, labels)

    def _reload_counts(self):
        try:
            text = self.metrics_text()
        except OSError:
            text = ""
        return {r: metric_value(text, "fhir_mtls_proxy_policy_reloads_total", {"result": r}) or 0
                for r in ("success", "failure")}


_SAMPLE = re.compile(r'^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)')
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """Prometheus text format -> list of (name, {label: value}, float)."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            continue
        labels = {k: v.replace('\\"', '"').replace("\\\\", "\\") for k, v in _LABEL.findall(m.group(2) or "")}
        out.append((m.group(1), labels, float(m.group(3))))
    return out


def metric_value(text, name, labels=None):
    """Sum of the samples called `name` whose labels include `labels`; None if there are none."""
    total, found = 0.0, False
    for n, l, v in parse_metrics(text):
        if n == name and all(l.get(k) == str(val) for k, val in (labels or {}).items()):
            total += v
            found = True
    return total if found else None


def run_command(binary, *args, cwd=None, timeout=60.0, env=None):
    """Runs the binary with `args` (e.g. "check", "--config", path); returns CompletedProcess with
    text stdout/stderr."""
    done = subprocess.run([binary] + list(args), cwd=cwd, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=timeout, env=env)
    check_sanitizer_report("%s (exit %d)" % (" ".join(args[:1]), done.returncode), done.stderr)
    return done


def check_sanitizer_report(what, stderr):
    """Raises ProxyError when `stderr` holds an ASan/UBSan/LSan/TSan report: under the sanitizer
    builds (tests/run.sh) a report fails the test even if the behaviour looked right."""
    if "Sanitizer" in stderr:
        raise ProxyError("sanitizer report from %s:\n%s" % (what, stderr))


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")
    except FileNotFoundError:
        return ""
