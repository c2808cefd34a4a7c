"""Shared set-up of the request-level integration tests (identity headers, spoofing, rejections,
trust communities, bundles, keep-alive, anonymous access).

ProxyTestCase mints a PKI once per test class (a server CA and server certificate, a DirectTrust-like
root with an intermediate), runs an EchoUpstream, and starts the real binary on demand with
start_proxy(). Everything lives in one temporary directory removed after the class.
"""

import hashlib
import json
import os
import shutil
import tempfile
import unittest

from harness import binary_path, client
from harness.pki import HIPAA_BUSINESS_ASSOCIATE, HIPAA_COVERED_ENTITY, LOA_3, Pki
from harness.proxy import ProxyError, ProxyProcess, proxy_config
from harness.upstream import EchoUpstream

FHIR_JSON = "application/fhir+json"

ALLOW_ALL = {"default": "deny", "rules": [{"name": "allow-all", "effect": "allow"}]}

MARKER_PATH = "/fhir/Basic/marker"
# A path-only rule: it matches anonymous clients as well as every certificate.
MARKER_RULE = {"name": "marker", "effect": "allow", "when": {"path": [MARKER_PATH]}}


def sha256(data):
    return hashlib.sha256(data).hexdigest()


class ProxyTestCase(unittest.TestCase):
    """Base class: class-level PKI and upstream; per-test (or per-class) proxies.

    Attributes set by setUpClass: tmp, pki, server_ca, server, root, ca (intermediate under root),
    bundle (trust bundle path: root + ca), up (a started EchoUpstream).
    """

    @classmethod
    def setUpClass(cls):
        cls.binary = binary_path()
        cls.tmp = tempfile.mkdtemp(prefix="fmp-dp-")
        cls.pki = Pki(os.path.join(cls.tmp, "pki"))
        cls.server_ca = cls.pki.root("server-ca", subject={"CN": "Test Server CA"})
        cls.server = cls.pki.server(cls.server_ca)
        cls.root = cls.pki.root("dt-root", subject={"C": "US", "O": "DirectTrust Test",
                                                   "CN": "DirectTrust Test Root"})
        cls.ca = cls.pki.intermediate("dt-ca", cls.root,
                                      subject={"C": "US", "O": "DirectTrust Test",
                                               "CN": "Example DirectTrust CA"})
        cls.bundle = cls.pki.bundle("dt-bundle", cls.root, cls.ca)
        cls.up = EchoUpstream().start()
        cls._proxy_count = 0

    @classmethod
    def tearDownClass(cls):
        cls.up.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    # --- helpers -------------------------------------------------------------------------------

    @classmethod
    def make_proxy(cls, policy, trust=None, client_cert="require", upstream_url=None, **overrides):
        """A started ProxyProcess (the caller stops it). trust defaults to one community
        "directtrust" with cls.bundle; upstream= (a dict) replaces the whole upstream section."""
        cls._proxy_count += 1
        workdir = os.path.join(cls.tmp, "proxy-%d" % cls._proxy_count)
        upstream = overrides.pop("upstream", None)
        cfg = proxy_config(cls.server, trust or [("directtrust", cls.bundle)],
                           upstream_url or cls.up.url, client_cert=client_cert, **overrides)
        if upstream is not None:
            cfg["upstream"] = upstream
        proxy = ProxyProcess(cls.binary, workdir, cfg, policy)
        try:
            return proxy.start()
        except ProxyError:
            proxy.stop()  # closes its output files
            raise

    def start_proxy(self, policy, **kwargs):
        """make_proxy() stopped at the end of the test."""
        p = self.make_proxy(policy, **kwargs)
        self.addCleanup(p.stop)
        return p

    @classmethod
    def client_cert(cls, name, issuer=None, **kwargs):
        """A client leaf (default: under cls.ca, the harness's realistic identity)."""
        return cls.pki.client(name, issuer or cls.ca, **kwargs)

    @classmethod
    def ctx(cls, cert=None):
        """A client SSLContext presenting `cert` (its chain) or none."""
        if cert is None:
            return client.tls_context(ca=cls.server_ca.cert)
        return client.tls_context(cert=cert.chain, key=cert.key, ca=cls.server_ca.cert)

    def assert_outcome(self, resp, status, code, diagnostics=None):
        """resp is a FHIR OperationOutcome rejection with this status and issue code; diagnostics
        (if given) must appear in issue[0].diagnostics. Returns the parsed body."""
        self.assertEqual(resp.status, status, resp.body[:500])
        self.assertEqual(resp.header("Content-Type"), FHIR_JSON)
        body = json.loads(resp.body)
        self.assertEqual(body["resourceType"], "OperationOutcome")
        self.assertEqual(len(body["issue"]), 1)
        issue = body["issue"][0]
        self.assertEqual(issue["severity"], "error")
        self.assertEqual(issue["code"], code)
        self.assertIsInstance(issue["diagnostics"], str)
        if diagnostics is not None:
            self.assertIn(diagnostics, issue["diagnostics"])
        return body

    def assert_upstream_untouched(self, before, proxy, ctx=None):
        """Asserts the upstream received nothing since it had `before` requests. To not race with a
        wrongly forwarded request, a marker request (GET MARKER_PATH, allowed by MARKER_RULE, over
        a new connection presenting `ctx`) goes through the proxy first: everything the proxy
        forwarded before it has arrived once the marker has."""
        r = client.request(ctx or self.ctx(), proxy.port, "GET", MARKER_PATH)
        self.assertEqual(r.status, 200, r.body[:300])
        got = self.up.wait_for_requests(before + 1)[before:]
        self.assertEqual([q.target for q in got], [MARKER_PATH])

__all__ = ["ALLOW_ALL", "FHIR_JSON", "MARKER_PATH", "MARKER_RULE", "HIPAA_BUSINESS_ASSOCIATE", "HIPAA_COVERED_ENTITY", "LOA_3",
           "ProxyTestCase", "sha256"]
