"""`fhir-mtls-proxy check --config FILE` against the example PKI (certs-example/mint.sh) and the
example configuration (conf/), each test breaking one thing and asserting the exact FILE:LINE:COL."""

import os
import unittest

from cli_fixture import ExampleSetup, position
from harness.pki import Pki


class CheckTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.s = ExampleSetup()

    @classmethod
    def tearDownClass(cls):
        cls.s.cleanup()

    def setUp(self):
        self.s.write()

    def check(self, proxy_text=None, policy_text=None):
        self.s.write(proxy_text, policy_text)
        return self.s.run("check", "--config", self.s.proxy_yaml)

    def error_lines(self, result):
        return [l for l in result.stderr.splitlines() if ": warning: " not in l]

    def assert_single_error(self, result, line, column, *parts, file=None):
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertEqual(result.stdout, "")
        errors = self.error_lines(result)
        self.assertEqual(len(errors), 1, result.stderr)
        prefix = "%s:%d:%d: " % (file or self.s.proxy_yaml, line, column)
        self.assertTrue(errors[0].startswith(prefix), "%r does not start with %r" % (errors[0], prefix))
        for part in parts:
            self.assertIn(part, errors[0])

    def test_valid_example_configuration(self):
        r = self.check()
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "%s: ok (2 trust communities, %d policy rules)\n"
                         % (self.s.proxy_yaml, self.s.rule_count()))
        self.assertEqual(self.error_lines(r), [])

    def test_missing_server_certificate(self):
        text = self.s.proxy_text.replace("server-chain.pem", "missing-chain.pem")
        line, col = position(text, "  cert:", self.s.pki)
        r = self.check(text)
        self.assert_single_error(r, line, col, "tls.cert", "missing-chain.pem",
                                 "No such file or directory")

    def test_key_not_matching_certificate(self):
        text = self.s.proxy_text.replace("/server.key", "/covered-entity.key")
        line, col = position(text, "  key:", self.s.pki)
        r = self.check(text)
        self.assert_single_error(r, line, col, "tls.key", "does not match the certificate",
                                 "CN=localhost")

    def test_key_of_the_second_certificate_of_the_chain(self):
        # Chain written CA first: the key matches certificate 2, and check says the order is wrong.
        with open(self.s.cert("server-leaf.pem")) as f:
            leaf = f.read()
        with open(self.s.cert("server-ca.pem")) as f:
            ca = f.read()
        reversed_chain = os.path.join(self.s.dir, "reversed-chain.pem")
        with open(reversed_chain, "w") as f:
            f.write(ca + leaf)
        text = self.s.proxy_text.replace(self.s.cert("server-chain.pem"), reversed_chain)
        line, col = position(text, "  key:", self.s.pki)
        self.assert_single_error(self.check(text), line, col, "matches certificate 2 of the chain")

    def test_unparseable_key(self):
        bad = os.path.join(self.s.dir, "bad.key")
        with open(bad, "w") as f:
            f.write("-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n")
        text = self.s.proxy_text.replace(self.s.cert("server.key"), bad)
        line, col = position(text, "  key:", bad)
        self.assert_single_error(self.check(text), line, col, "tls.key: cannot parse")

    def test_unknown_key(self):
        text = self.s.proxy_text.replace("  min_version: \"1.2\"\n",
                                         "  min_version: \"1.2\"\n  min_versoin: \"1.3\"\n")
        line, _ = position(text, "min_versoin", "min_versoin")
        r = self.check(text)
        self.assert_single_error(r, line, 3)
        self.assertIn('unknown key "tls.min_versoin"', r.stderr)

    def test_wrong_type_is_quoted(self):
        text = self.s.proxy_text.replace("workers: 1\n", "workers: many\n")
        line, col = position(text, "workers:", "many")
        self.assert_single_error(self.check(text), line, col, 'workers: expected an integer',
                                 '"many"')

    def test_bad_policy_file_keeps_its_own_position(self):
        policy = self.s.policy_text.replace("  - name: no-deletes\n    effect: deny\n",
                                            "  - name: no-deletes\n    effect: maybe\n")
        self.assertNotEqual(policy, self.s.policy_text)
        line, col = position(policy, "effect: maybe", "maybe")
        r = self.check(None, policy)
        self.assert_single_error(r, line, col, '"maybe"', file=self.s.policy_yaml)

    def test_missing_policy_file_is_reported_at_proxy_yaml(self):
        text = self.s.proxy_text.replace(self.s.policy_yaml, self.s.policy_yaml + ".gone")
        line, col = position(text, "policy:", self.s.dir)
        self.assert_single_error(self.check(text), line, col, "policy: cannot read",
                                 "No such file or directory")

    def test_missing_ca_bundle(self):
        text = self.s.proxy_text.replace("carequality-ca.pem", "nowhere-ca.pem")
        line, col = position(text, "nowhere-ca.pem", self.s.pki)
        self.assert_single_error(self.check(text), line, col, "nowhere-ca.pem")

    def test_missing_crl(self):
        text = self.s.proxy_text.replace("carequality.crl.pem", "nowhere.crl.pem")
        line, col = position(text, "nowhere.crl.pem", self.s.pki)
        self.assert_single_error(self.check(text), line, col, "nowhere.crl.pem")

    def test_ca_without_a_crl_when_the_community_lists_crls(self):
        root_crl = "        - %s/directtrust-root.crl.pem\n" % self.s.pki
        self.assertIn(root_crl, self.s.proxy_text)
        text = self.s.proxy_text.replace(root_crl, "")
        line, col = position(text, "directtrust.crl.pem", self.s.pki)
        self.assert_single_error(self.check(text), line, col, "no CRL issued by CA",
                                 "Example DirectTrust Root CA")

    def test_expired_server_certificate(self):
        text = (self.s.proxy_text.replace("server-chain.pem", "expired-cert.pem")
                .replace("/server.key", "/expired.key"))
        line, col = position(text, "  cert:", self.s.pki)
        self.assert_single_error(self.check(text), line, col, "tls.cert: server certificate",
                                 "expired on 2021-01-01T00:00:00Z")

    def test_several_errors_are_all_reported(self):
        text = (self.s.proxy_text.replace("server-chain.pem", "missing-chain.pem")
                .replace("carequality-ca.pem", "nowhere-ca.pem"))
        r = self.check(text)
        self.assertEqual(r.returncode, 1)
        self.assertEqual(len(self.error_lines(r)), 2, r.stderr)

    def test_unreadable_config(self):
        r = self.s.run("check", "--config", os.path.join(self.s.dir, "none.yaml"))
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stderr, "%s:1:1: cannot read the file: No such file or directory\n"
                         % os.path.join(self.s.dir, "none.yaml"))

    def test_usage_errors(self):
        for args in ([], ["--config"], ["--conf", "x"], ["x.yaml"],
                     ["--config", "a", "--config", "b"]):
            r = self.s.run("check", *args)
            self.assertEqual(r.returncode, 1, args)
            self.assertIn("usage: fhir-mtls-proxy check --config FILE", r.stderr)
            self.assertEqual(r.stdout, "")


class CheckDatesTest(unittest.TestCase):
    """Expiry warnings and stale CRLs, with a PKI minted by the test harness (explicit dates)."""

    @classmethod
    def setUpClass(cls):
        cls.s = ExampleSetup()
        cls.pki = Pki(os.path.join(cls.s.dir, "dates"))
        server_ca = cls.pki.root("server-ca", subject={"CN": "Dates Server CA"})
        cls.soon = cls.pki.server(server_ca, name="soon", days=10)
        cls.root = cls.pki.root("dt-root", subject={"CN": "Dates Root"})
        cls.stale_crl = cls.pki.crl(cls.root, next_update_days=-1)
        cls.fresh_crl = cls.pki.crl(cls.root, name="fresh")

    @classmethod
    def tearDownClass(cls):
        cls.s.cleanup()

    def config(self, cert, key, crl):
        return (
            'listen: "127.0.0.1:8443"\n'
            "tls:\n"
            "  cert: %s\n"
            "  key: %s\n"
            "  trust:\n"
            "    - name: dates\n"
            "      ca: %s\n"
            "      crl: [%s]\n"
            "upstream:\n"
            '  url: "http://127.0.0.1:8080"\n'
            "policy: %s\n" % (cert, key, self.root.cert, crl, self.s.policy_yaml))

    def run_check(self, text):
        self.s.write(text)
        return self.s.run("check", "--config", self.s.proxy_yaml)

    def test_server_certificate_expiring_soon_is_a_warning(self):
        r = self.run_check(self.config(self.soon.chain, self.soon.key, self.fresh_crl))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("ok (1 trust community, %d policy rules)" % self.s.rule_count(), r.stdout)
        self.assertRegex(r.stderr, r"^%s:3:9: warning: tls\.cert: server certificate \"CN=localhost\" "
                         r"in \".*\" expires in (9|10) days \(" % self.s.proxy_yaml)

    def test_crl_past_next_update_is_an_error(self):
        r = self.run_check(self.config(self.soon.chain, self.soon.key, self.stale_crl))
        self.assertEqual(r.returncode, 1)
        errors = [l for l in r.stderr.splitlines() if ": warning: " not in l]
        self.assertEqual(len(errors), 1, r.stderr)
        self.assertTrue(errors[0].startswith("%s:8:13: tls.trust \"dates\": CRL" % self.s.proxy_yaml),
                        errors[0])
        self.assertIn("past its next update", errors[0])


if __name__ == "__main__":
    unittest.main()
