"""Trust communities and revocation (CONTRACT.md proxy config `tls.trust`, "Settled details:
Revocation"): each client is told its own community, rules select by community, and CRLs are
checked over the whole chain, failing closed on a missing or stale CRL."""

import time
import unittest

from datapath_fixture import MARKER_RULE, ProxyTestCase
from harness import client
from harness.proxy import ProxyError

HANDSHAKES = "fhir_mtls_proxy_tls_handshakes_total"
# A CRL minted with nextUpdate this far ahead goes stale while the proxy runs.
STALE_AFTER_SECONDS = 5

POLICY = {"default": "deny", "rules": [
    MARKER_RULE,
    {"name": "alpha-only", "effect": "allow",
     "when": {"trust": ["alpha"], "fhir": {"resource": ["Patient"]}}},
    {"name": "any-community-observation", "effect": "allow",
     "when": {"fhir": {"resource": ["Observation"]}}},
]}


def wait_metric(proxy, labels, value, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        got = proxy.metric(HANDSHAKES, labels) or 0
        if got >= value or time.monotonic() >= deadline:
            return got
        time.sleep(0.05)


class TwoCommunitiesTest(ProxyTestCase):
    """alpha: a root with an intermediate; beta: a root issuing leaves directly."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.alpha_root = cls.pki.root("alpha-root", subject={"O": "Alpha", "CN": "Alpha Root"})
        cls.alpha_ca = cls.pki.intermediate("alpha-ca", cls.alpha_root,
                                            subject={"O": "Alpha", "CN": "Alpha Issuing CA"})
        cls.beta_root = cls.pki.root("beta-root", subject={"O": "Beta", "CN": "Beta Root"})
        cls.alpha_client = cls.client_cert("alpha-client", cls.alpha_ca)
        cls.beta_client = cls.client_cert("beta-client", cls.beta_root)
        cls.proxy = cls.make_proxy(POLICY, trust=[
            ("alpha", cls.pki.bundle("alpha", cls.alpha_root, cls.alpha_ca)),
            ("beta", cls.pki.bundle("beta", cls.beta_root))])

    @classmethod
    def tearDownClass(cls):
        cls.proxy.stop()
        super().tearDownClass()

    def forwarded(self, cert, target):
        before = len(self.up.requests)
        r = client.request(self.ctx(cert), self.proxy.port, "GET", target)
        self.assertEqual(r.status, 200, r.body[:300])
        return self.up.wait_for_requests(before + 1)[before]

    def test_each_client_is_told_its_own_community(self):
        a = self.forwarded(self.alpha_client, "/fhir/Observation/1")
        b = self.forwarded(self.beta_client, "/fhir/Observation/1")
        self.assertEqual(a.header_all("X-Client-Trust-Community"), ["alpha"])
        self.assertEqual(b.header_all("X-Client-Trust-Community"), ["beta"])
        self.assertEqual(a.header("X-Client-Issuer-DN"), "CN=Alpha Issuing CA,O=Alpha")
        self.assertEqual(b.header("X-Client-Issuer-DN"), "CN=Beta Root,O=Beta")

    def test_trust_rule_admits_only_its_community(self):
        a = self.forwarded(self.alpha_client, "/fhir/Patient/1")
        self.assertEqual(a.header("X-Policy-Rule"), "alpha-only")
        before = len(self.up.requests)
        r = client.request(self.ctx(self.beta_client), self.proxy.port, "GET", "/fhir/Patient/1")
        self.assert_outcome(r, 403, "forbidden", "no rule matched")
        self.assert_upstream_untouched(before, self.proxy, self.ctx(self.beta_client))

    def test_a_client_of_neither_community_is_refused(self):
        other = self.client_cert("gamma-client", self.pki.root("gamma-root"))
        self.assertIsNotNone(client.handshake_error(self.ctx(other), self.proxy.port))
        self.assertGreaterEqual(wait_metric(self.proxy, {"result": "failure", "reason": "untrusted"}, 1), 1)

    def test_intermediate_of_one_community_does_not_vouch_in_the_other(self):
        # A leaf of alpha's intermediate sent without the intermediate: only alpha's bundle holds
        # it (the proxy has it), so the chain still builds in alpha and in no other community.
        r = client.request(client.tls_context(cert=self.alpha_client.cert, key=self.alpha_client.key,
                                              ca=self.server_ca.cert),
                           self.proxy.port, "GET", "/fhir/Observation/2")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["target"], "/fhir/Observation/2")
        headers = dict((n.lower(), v) for n, v in r.json()["headers"])
        self.assertEqual(headers["x-client-trust-community"], "alpha")


class RevocationTest(ProxyTestCase):
    """One proxy per CRL set-up, client_cert: require: a refused client ends the handshake and is
    counted with its reason; an accepted one reaches the upstream."""

    def community(self, name, with_intermediate=True):
        root = self.pki.root(name + "-root", subject={"O": name, "CN": name + " Root"})
        ca = self.pki.intermediate(name + "-ca", root, subject={"O": name, "CN": name + " CA"}) \
            if with_intermediate else None
        bundle = self.pki.bundle(name, *([root, ca] if ca else [root]))
        return root, ca, bundle

    def assert_refused(self, proxy, cert, reason):
        labels = {"result": "failure", "reason": reason}
        count = proxy.metric(HANDSHAKES, labels) or 0
        err = client.handshake_error(self.ctx(cert), proxy.port)
        self.assertIsNotNone(err, "%s was accepted" % cert.name)
        self.assertEqual(wait_metric(proxy, labels, count + 1), count + 1, proxy.metrics_text())

    def assert_accepted(self, proxy, cert):
        before = len(self.up.requests)
        r = client.request(self.ctx(cert), proxy.port, "GET", "/fhir/Observation/1")
        self.assertEqual(r.status, 200, r.body[:300])
        self.assertEqual(self.up.wait_for_requests(before + 1)[before].header("X-Client-Cert-SHA256"),
                         cert.fingerprint_sha256)

    def test_revoked_leaf_is_refused(self):
        root, ca, bundle = self.community("rl")
        good = self.client_cert("rl-good", ca)
        bad = self.client_cert("rl-bad", ca)
        crls = [self.pki.crl(root), self.pki.crl(ca, revoked=[bad])]
        proxy = self.start_proxy(POLICY, trust=[("rl", bundle, crls)])
        self.assert_accepted(proxy, good)
        self.assert_refused(proxy, bad, "revoked")

    def test_revoked_intermediate_is_refused(self):
        root, ca, bundle = self.community("ri")
        leaf = self.client_cert("ri-leaf", ca)
        crls = [self.pki.crl(root, revoked=[ca]), self.pki.crl(ca)]
        proxy = self.start_proxy(POLICY, trust=[("ri", bundle, crls)])
        self.assert_refused(proxy, leaf, "revoked")

    def refused_or_not_started(self, trust, cert, reason):
        """Fail closed either way: the proxy refuses to load the community (start-up error naming
        the CRL problem) or it serves and refuses the client with `reason`."""
        try:
            proxy = self.start_proxy(POLICY, trust=trust)
        except ProxyError as e:
            self.assertIn("CRL", str(e))
            return
        self.assert_refused(proxy, cert, reason)

    def test_intermediate_without_a_crl_fails_closed(self):
        root, ca, bundle = self.community("nc")
        leaf = self.client_cert("nc-leaf", ca)
        self.refused_or_not_started([("nc", bundle, [self.pki.crl(root)])], leaf, "other")

    def test_client_sent_intermediate_without_a_crl_fails_closed(self):
        # The trust bundle holds only the root (and its CRL); the client sends the intermediate in
        # its chain. The proxy cannot know that CA when loading, so the check happens per handshake.
        root, ca, _ = self.community("sent")
        leaf = self.client_cert("sent-leaf", ca)
        direct = self.client_cert("sent-direct", root)
        proxy = self.start_proxy(POLICY, trust=[("sent", self.pki.bundle("sent-root-only", root),
                                                 [self.pki.crl(root)])])
        self.assert_accepted(proxy, direct)
        self.assert_refused(proxy, leaf, "other")

    def test_stale_crl_fails_closed(self):
        root, ca, bundle = self.community("st")
        leaf = self.client_cert("st-leaf", ca)
        crls = [self.pki.crl(root), self.pki.crl(ca, next_update_days=-1)]
        self.refused_or_not_started([("st", bundle, crls)], leaf, "other")

    def test_crl_going_stale_while_running_fails_closed(self):
        root, ca, bundle = self.community("aging")
        leaf = self.client_cert("aging-leaf", ca)
        crls = [self.pki.crl(root), self.pki.crl(ca, next_update_days=STALE_AFTER_SECONDS / 86400.0)]
        proxy = self.start_proxy(POLICY, trust=[("aging", bundle, crls)])
        self.assert_accepted(proxy, leaf)
        # Bounded wait for the CRL's nextUpdate to pass, then the same client is refused.
        deadline = time.monotonic() + STALE_AFTER_SECONDS + 15
        labels = {"result": "failure", "reason": "other"}
        while client.handshake_error(self.ctx(leaf), proxy.port) is None:
            self.assertLess(time.monotonic(), deadline, "still accepted after the CRL went stale")
            time.sleep(0.25)
        self.assertGreaterEqual(wait_metric(proxy, labels, 1), 1, proxy.metrics_text())

    def test_der_crl_works(self):
        root, ca, bundle = self.community("der")
        good = self.client_cert("der-good", ca)
        bad = self.client_cert("der-bad", ca)
        crls = [self.pki.crl(root, der=True), self.pki.crl(ca, revoked=[bad], der=True)]
        self.assertTrue(all(c.endswith(".der") for c in crls))
        proxy = self.start_proxy(POLICY, trust=[("der", bundle, crls)])
        self.assert_accepted(proxy, good)
        self.assert_refused(proxy, bad, "revoked")

    def test_crls_of_one_community_do_not_affect_another(self):
        root, ca, bundle = self.community("strict")
        plain_root, _, plain_bundle = self.community("plain", with_intermediate=False)
        plain_client = self.client_cert("plain-client", plain_root)
        revoked = self.client_cert("strict-bad", ca)
        crls = [self.pki.crl(root), self.pki.crl(ca, revoked=[revoked])]
        proxy = self.start_proxy(POLICY, trust=[("strict", bundle, crls), ("plain", plain_bundle)])
        self.assert_accepted(proxy, plain_client)
        self.assert_refused(proxy, revoked, "revoked")

    def test_revoked_in_request_mode_is_401_not_anonymous(self):
        root, ca, bundle = self.community("rq")
        bad = self.client_cert("rq-bad", ca)
        crls = [self.pki.crl(root), self.pki.crl(ca, revoked=[bad])]
        policy = dict(POLICY, rules=POLICY["rules"] + [
            {"name": "open-metadata", "effect": "allow", "when": {"path": ["/fhir/metadata"]}}])
        proxy = self.start_proxy(policy, client_cert="request", trust=[("rq", bundle, crls)])
        before = len(self.up.requests)
        r = client.request(self.ctx(bad), proxy.port, "GET", "/fhir/metadata")
        self.assert_outcome(r, 401, "security", "revoked")
        self.assert_upstream_untouched(before, proxy)


if __name__ == "__main__":
    unittest.main()
