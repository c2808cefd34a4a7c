"""Install and package (README "Deployment"): the `cmake --install` layout, the systemd unit
(`systemd-analyze verify`, its sandboxing score, the Type=notify protocol the proxy speaks), and the
.deb built by CPack: `dpkg -i` on this Debian 12 host, `fhir-mtls-proxy check` of the shipped
configuration after minting the example PKI (also as the service account), then `dpkg --purge`.

The .deb part needs root (CI runs it as root) and skips with a message otherwise, or when a
fhir-mtls-proxy package is already installed (it is never touched). `cpack` runs CMake's preinstall
step, which is quick after the full build CI does first (it rebuilds whatever is out of date).
"""

import glob
import grp
import os
import pwd
import re
import shutil
import socket
import stat
import subprocess
import tempfile
import unittest

from harness import binary_path, source_dir
from harness.pki import Pki
from harness.proxy import ProxyProcess, proxy_config
from harness.upstream import EchoUpstream

PKG = "fhir-mtls-proxy"
UNIT = os.path.join("deploy", "systemd", "fhir-mtls-proxy.service")


def run(args, timeout=120, **kwargs):
    return subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout, **kwargs)


def build_dir():
    """The CMake build directory of $FMP_BINARY (BUILD/proxy/fhir-mtls-proxy)."""
    return os.path.dirname(os.path.dirname(os.path.abspath(binary_path())))


def unit_for(binary, tmp):
    """A copy of the unit whose ExecStart/ExecStartPre name `binary` (systemd-analyze verify needs
    the executables to exist)."""
    with open(os.path.join(source_dir(), UNIT)) as f:
        text = f.read().replace("/usr/bin/fhir-mtls-proxy", binary)
    path = os.path.join(tmp, "fhir-mtls-proxy.service")
    with open(path, "w") as f:
        f.write(text)
    return path


def unit_settings():
    """{key: [values]} of the [Service] section of the unit in the repository."""
    out, section = {}, None
    with open(os.path.join(source_dir(), UNIT)) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("["):
                section = line
                continue
            key, _, value = line.partition("=")
            if section == "[Service]":
                out.setdefault(key, []).append(value)
    return out


class SystemdUnitTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="fmp-unit-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def test_unit_settings(self):
        s = unit_settings()
        self.assertEqual(s["Type"], ["notify"])
        self.assertEqual(s["ExecReload"], ["/bin/kill -HUP $MAINPID"])
        self.assertEqual(s["User"], [PKG])
        self.assertEqual(s["ProtectSystem"], ["strict"])
        self.assertEqual(s["NoNewPrivileges"], ["yes"])
        self.assertEqual(s["CapabilityBoundingSet"], ["CAP_NET_BIND_SERVICE"])
        self.assertIn("check --config /etc/fhir-mtls-proxy/proxy.yaml", s["ExecStartPre"][0])
        self.assertNotIn("DynamicUser", s)  # the key's group must exist before the service starts

    def test_systemd_analyze_verify_and_security(self):
        if not shutil.which("systemd-analyze"):
            self.skipTest("systemd-analyze is not installed")
        unit = unit_for(binary_path(), self.tmp)
        r = run(["systemd-analyze", "verify", unit])
        self.assertEqual(r.returncode, 0, r.stdout)
        self.assertEqual(r.stdout.strip(), "", r.stdout)  # not even a warning
        r = run(["systemd-analyze", "security", "--offline=yes", "--no-pager", unit])
        m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", r.stdout)
        self.assertTrue(m, r.stdout)
        self.assertLessEqual(float(m.group(1)), 2.0, r.stdout)  # "OK" in systemd's scale

    def test_notify_protocol(self):
        # What systemd sees with Type=notify: READY=1 once listening, RELOADING=1 then READY=1 around
        # a reload, STOPPING=1 on SIGTERM. A datagram socket stands in for $NOTIFY_SOCKET.
        pki = Pki(os.path.join(self.tmp, "pki"))
        server_ca = pki.root("server-ca")
        root = pki.root("dt-root")
        sock_path = os.path.join(self.tmp, "notify.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(sock.close)
        sock.bind(sock_path)
        sock.settimeout(15)
        env = dict(os.environ, NOTIFY_SOCKET=sock_path)
        with EchoUpstream() as up:
            cfg = proxy_config(pki.server(server_ca), [("dt", root.cert)], up.url)
            with ProxyProcess(binary_path(), os.path.join(self.tmp, "w"), cfg,
                              {"default": "deny"}, env=env) as proxy:
                self.assertEqual(sock.recv(4096), b"READY=1")
                self.assertEqual(proxy.reload(), "success")
                self.assertEqual(sock.recv(4096), b"RELOADING=1")
                self.assertEqual(sock.recv(4096), b"READY=1")
                self.assertEqual(proxy.stop(), 0)
                self.assertEqual(sock.recv(4096), b"STOPPING=1")


class InstallLayoutTest(unittest.TestCase):
    """`cmake --install` into a staging directory (DESTDIR), as the package does."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="fmp-install-")
        cls.stage = os.path.join(cls.tmp, "stage")
        env = dict(os.environ, DESTDIR=cls.stage)
        r = run(["cmake", "--install", build_dir(), "--prefix", "/usr"], env=env)
        if r.returncode != 0:
            raise AssertionError("cmake --install failed:\n" + r.stdout)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, True)

    def staged(self, path):
        return os.path.join(self.stage, path.lstrip("/"))

    def test_layout(self):
        for path, mode in [("/usr/bin/fhir-mtls-proxy", 0o755),
                           ("/etc/fhir-mtls-proxy/proxy.yaml", 0o640),
                           ("/etc/fhir-mtls-proxy/policy.yaml", 0o640),
                           ("/etc/logrotate.d/fhir-mtls-proxy", 0o644),
                           ("/lib/systemd/system/fhir-mtls-proxy.service", 0o644),
                           ("/usr/share/fhir-mtls-proxy/mint-example-pki.sh", 0o755),
                           ("/usr/share/fhir-mtls-proxy/mint.sh", 0o755),
                           ("/usr/share/doc/fhir-mtls-proxy/README.md", 0o644)]:
            st = os.stat(self.staged(path))
            self.assertEqual(stat.S_IMODE(st.st_mode), mode, path)
        r = run([self.staged("/usr/bin/fhir-mtls-proxy"), "--version"])
        self.assertEqual(r.returncode, 0, r.stdout)

    def test_shipped_config_passes_check_with_the_example_pki(self):
        # The shipped proxy.yaml names /etc/fhir-mtls-proxy/...: point it at a minted copy.
        pki_dir = os.path.join(self.tmp, "example-pki")
        r = run([self.staged("/usr/share/fhir-mtls-proxy/mint.sh"), pki_dir], timeout=300)
        self.assertEqual(r.returncode, 0, r.stdout)
        etc = self.staged("/etc/fhir-mtls-proxy")
        with open(os.path.join(etc, "proxy.yaml")) as f:
            text = f.read()
        self.assertIn("/etc/fhir-mtls-proxy/example-pki/", text)
        text = text.replace("/etc/fhir-mtls-proxy/example-pki", pki_dir)
        text = text.replace("/etc/fhir-mtls-proxy/policy.yaml", os.path.join(etc, "policy.yaml"))
        conf = os.path.join(self.tmp, "proxy.yaml")
        with open(conf, "w") as f:
            f.write(text)
        r = run([self.staged("/usr/bin/fhir-mtls-proxy"), "check", "--config", conf])
        self.assertEqual(r.returncode, 0, r.stdout)


@unittest.skipUnless(hasattr(os, "geteuid") and os.geteuid() == 0,
                     "the .deb test installs a package: run as root (CI does)")
class DebPackageTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        for tool in ("dpkg", "dpkg-deb", "cpack", "dpkg-shlibdeps"):
            if not shutil.which(tool):
                raise unittest.SkipTest("%s is not installed" % tool)
        q = run(["dpkg-query", "-W", "-f", "${Status}", PKG])
        if "installed" in q.stdout and "not-installed" not in q.stdout:
            raise unittest.SkipTest("a %s package is already installed; not touching it" % PKG)
        cls.tmp = tempfile.mkdtemp(prefix="fmp-deb-")
        r = run(["cpack", "-G", "DEB", "-B", cls.tmp], cwd=build_dir(), timeout=900)
        debs = glob.glob(os.path.join(cls.tmp, "%s_*.deb" % PKG))
        if r.returncode != 0 or len(debs) != 1:
            raise AssertionError("cpack failed:\n" + r.stdout)
        cls.deb = debs[0]

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, True)

    def purge(self):
        run(["dpkg", "--purge", PKG])

    def test_metadata(self):
        r = run(["dpkg-deb", "-f", self.deb, "Depends", "Package", "Architecture"])
        self.assertEqual(r.returncode, 0, r.stdout)
        # From dpkg-shlibdeps: the shared libraries the binary links.
        for lib in ("libc6", "libssl3", "libevent-core-2.1-7", "libyaml-cpp0.7", "libhttp-parser2.9"):
            self.assertIn(lib, r.stdout)
        r = run(["dpkg-deb", "--ctrl-tarfile", self.deb])
        self.assertEqual(r.returncode, 0)
        conffiles = run(["sh", "-c", "dpkg-deb --info '%s' conffiles" % self.deb]).stdout.split()
        self.assertIn("/etc/fhir-mtls-proxy/proxy.yaml", conffiles)
        self.assertIn("/etc/fhir-mtls-proxy/policy.yaml", conffiles)

    def test_install_check_purge(self):
        self.addCleanup(self.purge)
        r = run(["dpkg", "-i", self.deb], timeout=300)
        self.assertEqual(r.returncode, 0, r.stdout)
        self.assertIn("install ok installed",
                      run(["dpkg-query", "-W", "-f", "${Status}", PKG]).stdout)
        binary = "/usr/bin/fhir-mtls-proxy"
        conf = "/etc/fhir-mtls-proxy/proxy.yaml"
        # The account and the ownership postinst sets up.
        user = pwd.getpwnam(PKG)
        self.assertEqual(grp.getgrgid(user.pw_gid).gr_name, PKG)
        st = os.stat("/etc/fhir-mtls-proxy")
        self.assertEqual((st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)), (0, user.pw_gid, 0o750))
        self.assertEqual(stat.S_IMODE(os.stat(conf).st_mode), 0o640)

        # Before the example PKI exists, check fails and names the file at its proxy.yaml line.
        r = run([binary, "check", "--config", conf])
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertRegex(r.stdout, re.escape(conf) + r":\d+:\d+: .*server-chain\.pem")

        r = run(["/usr/share/fhir-mtls-proxy/mint-example-pki.sh"], timeout=300)
        self.assertEqual(r.returncode, 0, r.stdout)
        r = run([binary, "check", "--config", conf])
        self.assertEqual(r.returncode, 0, r.stdout)
        # The service account can read everything it needs (group permissions), and only that.
        if shutil.which("runuser"):
            r = run(["runuser", "-u", PKG, "--", binary, "check", "--config", conf])
            self.assertEqual(r.returncode, 0, r.stdout)
        key = "/etc/fhir-mtls-proxy/example-pki/server.key"
        self.assertEqual(stat.S_IMODE(os.stat(key).st_mode), 0o640)

        if shutil.which("systemd-analyze"):
            r = run(["systemd-analyze", "verify", "/lib/systemd/system/fhir-mtls-proxy.service"])
            self.assertEqual(r.returncode, 0, r.stdout)

        r = run(["dpkg", "--purge", PKG], timeout=300)
        self.assertEqual(r.returncode, 0, r.stdout)
        for path in (binary, conf, "/lib/systemd/system/fhir-mtls-proxy.service",
                     "/etc/fhir-mtls-proxy", "/usr/share/fhir-mtls-proxy"):
            self.assertFalse(os.path.exists(path), path)


if __name__ == "__main__":
    unittest.main()
