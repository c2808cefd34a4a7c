"""`fhir-mtls-proxy explain` with the example PKI (certs-example/mint.sh), conf/proxy.yaml and a
policy owned by this test (so rule names here do not drift with the example policy)."""

import hashlib
import json
import os
import ssl
import unittest

from cli_fixture import ExampleSetup
from harness.pki import Pki, der_oid

POLICY = """\
default: deny
hipaa_extensions: ["1.3.6.1.4.1.99999.1"]
rules:
  - name: no-deletes
    effect: deny
    when:
      fhir:
        interaction: [delete]
  - name: trial-shadow-search
    effect: deny
    mode: shadow
    when:
      fhir:
        interaction: [search]
  - name: hospital-read
    effect: allow
    when:
      trust: [directtrust]
      hipaa: [covered-entity]
      subject: { O: ["Example Hospital"] }
      fhir:
        interaction: [read, search]
  - name: hospital-bundles
    effect: allow
    when:
      trust: [directtrust]
      hipaa: [covered-entity]
      fhir:
        interaction: [batch, transaction]
  - name: hospital-create-patient
    effect: allow
    when:
      trust: [directtrust]
      hipaa: [covered-entity]
      fhir:
        resource: [Patient]
        interaction: [create]
"""

IDENTITY_KEYS = {"present", "subject", "issuer", "san_uri", "san_dns", "san_email", "san_ip",
                 "cert_policies", "hipaa", "notes", "serial_hex", "fingerprint_sha256", "not_before",
                 "not_after", "not_before_utc", "not_after_utc", "trust", "leaf_pem", "chain_der_b64"}
REQUEST_KEYS = {"method", "path", "interaction", "resource", "id", "version", "operation", "entries",
                "bundle_error"}

EHR_DN = "CN=ehr-client,OU=Clinical Applications,O=Example Hospital,C=US"


def fingerprint(pem_path):
    with open(pem_path) as f:
        return hashlib.sha256(ssl.PEM_cert_to_DER_cert(f.read())).hexdigest()


class ExplainTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.s = ExampleSetup()
        cls.s.policy_text = POLICY
        cls.s.write()

    @classmethod
    def tearDownClass(cls):
        cls.s.cleanup()

    def explain(self, cert, path, *extra):
        return self.s.run("explain", "--config", self.s.proxy_yaml, "--cert", self.s.cert(cert),
                          "--path", path, *extra)

    def explain_json(self, cert, path, *extra, expect=None):
        r = self.explain(cert, path, "--json", *extra)
        if expect is not None:
            self.assertEqual(r.returncode, expect, r.stdout + r.stderr)
        return r.returncode, json.loads(r.stdout)

    def body(self, name, obj):
        path = os.path.join(self.s.dir, name)
        with open(path, "w") as f:
            json.dump(obj, f)
        return path

    # --- decisions -------------------------------------------------------------------------------

    def test_allow_prints_readable_sections(self):
        r = self.explain("covered-entity.pem", "/fhir/Patient/123")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        out = r.stdout
        sections = [out.index(s + "\n") for s in
                    ("Verification", "Identity", "Request", "Decision", "Shadow")]
        self.assertEqual(sections, sorted(sections))
        self.assertIn("  subject:      " + EHR_DN + "\n", out)
        self.assertIn("  HIPAA:        covered-entity\n", out)
        self.assertIn("  trust:        directtrust\n", out)
        self.assertIn("  interaction:  read\n", out)
        self.assertIn("  id:           123\n", out)
        self.assertIn("  effect:       allow\n", out)
        self.assertIn("  rule:         hospital-read\n", out)
        self.assertIn("  result:       ok (trust community directtrust)\n", out)

    def test_deny_by_rule(self):
        r = self.explain("covered-entity.pem", "/fhir/Patient/123", "--method", "DELETE")
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn("  effect:       deny\n", r.stdout)
        self.assertIn("  rule:         no-deletes\n", r.stdout)

    def test_deny_by_default(self):
        code, out = self.explain_json("patient-app.pem", "/fhir/Patient/1", expect=2)
        self.assertTrue(out["verification"]["ok"])
        self.assertEqual(out["decision"]["effect"], "deny")
        self.assertEqual(out["decision"]["rule"], "default")

    def test_json_structure(self):
        code, out = self.explain_json("covered-entity.pem", "/fhir/Patient?family=Doe", expect=0)
        self.assertEqual(set(out), {"identity", "verification", "request", "decision", "shadow"})
        ident = out["identity"]
        self.assertEqual(set(ident), IDENTITY_KEYS)
        self.assertTrue(ident["present"])
        self.assertEqual(ident["subject"]["dn"], EHR_DN)
        self.assertIn({"type": "O", "value": "Example Hospital"}, ident["subject"]["attributes"])
        self.assertEqual(ident["issuer"]["dn"], "CN=Example DirectTrust CA,O=Example DirectTrust,C=US")
        self.assertEqual(ident["san_uri"], ["https://apps.example-hospital.org/ehr-client"])
        self.assertEqual(ident["hipaa"], ["covered-entity"])
        self.assertIn("1.3.6.1.4.1.41179.1.3", ident["cert_policies"])
        self.assertEqual(ident["trust"], "directtrust")
        self.assertEqual(ident["fingerprint_sha256"], fingerprint(self.s.cert("covered-entity-cert.pem")))
        self.assertEqual(len(ident["chain_der_b64"]), 1)
        self.assertTrue(ident["leaf_pem"].startswith("-----BEGIN CERTIFICATE-----"))
        self.assertRegex(ident["not_after_utc"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        self.assertEqual(out["verification"],
                         {"ok": True, "reason": "none", "community": "directtrust", "message": ""})
        req = out["request"]
        self.assertEqual(set(req), REQUEST_KEYS)
        self.assertEqual((req["method"], req["path"], req["interaction"], req["resource"]),
                         ("GET", "/fhir/Patient", "search", "Patient"))
        self.assertEqual(out["decision"], {"effect": "allow", "rule": "hospital-read",
                                           "mode": "enforce", "reason": out["decision"]["reason"]})
        self.assertIn("hospital-read", out["decision"]["reason"])
        self.assertEqual(out["shadow"], [{"rule": "trial-shadow-search", "effect": "deny"}])

    def test_method_defaults_to_get_and_head_is_read_like_get(self):
        _, out = self.explain_json("covered-entity.pem", "/fhir/Observation/9", expect=0)
        self.assertEqual(out["request"]["method"], "GET")
        _, out = self.explain_json("covered-entity.pem", "/fhir/Observation/9", "--method", "HEAD",
                                   expect=0)
        self.assertEqual(out["request"]["method"], "HEAD")
        self.assertEqual(out["request"]["interaction"], "read")

    # --- certificates that fail verification -------------------------------------------------------

    def test_expired_certificate_shows_identity_and_denies(self):
        code, out = self.explain_json("expired.pem", "/fhir/Patient/1", expect=2)
        self.assertEqual(out["identity"]["subject"]["dn"],
                         "CN=expired-client,OU=Clinical Applications,O=Example Hospital,C=US")
        self.assertEqual(out["identity"]["not_after_utc"], "2021-01-01T00:00:00Z")
        self.assertEqual(out["identity"]["trust"], "")  # never trusted
        self.assertFalse(out["verification"]["ok"])
        self.assertEqual(out["verification"]["reason"], "expired")
        self.assertEqual(out["decision"]["effect"], "deny")
        self.assertIn("expired", out["decision"]["reason"])
        self.assertEqual(out["shadow"], [])
        r = self.explain("expired.pem", "/fhir/Patient/1")
        self.assertEqual(r.returncode, 2)
        self.assertIn("  result:       failed: expired", r.stdout)
        self.assertIn("  subject:      CN=expired-client", r.stdout)

    def test_revoked_certificate(self):
        code, out = self.explain_json("revoked.pem", "/fhir/Patient/1", expect=2)
        self.assertEqual(out["verification"]["reason"], "revoked")
        self.assertIn("revoked", out["decision"]["reason"])

    def test_unknown_ca(self):
        code, out = self.explain_json("unknown-ca.pem", "/fhir/Patient/1", expect=2)
        self.assertEqual(out["verification"]["reason"], "untrusted")
        # Same subject and SANs as the real EHR client: shown, but nothing is granted.
        self.assertEqual(out["identity"]["subject"]["dn"], EHR_DN)
        self.assertEqual(out["decision"]["effect"], "deny")
        self.assertIn("untrusted", out["decision"]["reason"])

    # --- requests ----------------------------------------------------------------------------------

    def test_bundle_with_a_forbidden_entry_is_denied(self):
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
            {"request": {"method": "DELETE", "url": "Patient/7"}},
        ]}
        code, out = self.explain_json("covered-entity.pem", "/fhir", "--method", "POST", "--body",
                                      self.body("bad-bundle.json", bundle), expect=2)
        req = out["request"]
        self.assertEqual(req["interaction"], "transaction")
        self.assertEqual([e["interaction"] for e in req["entries"]], ["create", "delete"])
        self.assertEqual(set(req["entries"][1]), REQUEST_KEYS)
        self.assertEqual(out["decision"]["effect"], "deny")
        self.assertEqual(out["decision"]["rule"], "no-deletes")

    def test_bundle_with_allowed_entries(self):
        bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
            {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
            {"request": {"method": "GET", "url": "Patient/7"}},
        ]}
        r = self.explain("covered-entity.pem", "/fhir", "--method", "POST", "--body",
                         self.body("good-bundle.json", bundle))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("  interaction:  batch\n", r.stdout)
        self.assertIn("    1. POST /fhir/Patient -> create Patient\n", r.stdout)
        self.assertIn("    2. GET /fhir/Patient/7 -> read Patient id=7\n", r.stdout)

    def test_bundle_that_is_not_json_is_denied(self):
        path = os.path.join(self.s.dir, "garbage.json")
        with open(path, "w") as f:
            f.write("{not json")
        code, out = self.explain_json("covered-entity.pem", "/fhir", "--method", "POST", "--body",
                                      path, expect=2)
        self.assertNotEqual(out["request"]["bundle_error"], "")

    def test_encoded_slash_is_rejected_as_400(self):
        r = self.explain("covered-entity.pem", "/fhir/Patient%2F123")
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn("  rejected:     400 structure: ", r.stdout)
        code, out = self.explain_json("covered-entity.pem", "/fhir/Patient%2F123", expect=2)
        self.assertNotEqual(out["request"]["error"], "")
        self.assertEqual(out["request"]["target"], "/fhir/Patient%2F123")
        self.assertEqual(out["decision"]["effect"], "deny")
        self.assertTrue(out["decision"]["reason"].startswith("400 structure: "))

    def test_dot_segment_is_rejected_as_400(self):
        code, out = self.explain_json("covered-entity.pem", "/fhir/Patient/%2e%2e/Observation",
                                      expect=2)
        self.assertTrue(out["decision"]["reason"].startswith("400 structure: "))

    # --- errors ------------------------------------------------------------------------------------

    def test_argument_errors(self):
        cases = [
            ["--config", self.s.proxy_yaml, "--cert", self.s.cert("covered-entity.pem")],
            ["--config", self.s.proxy_yaml, "--path", "/fhir/metadata"],
            ["--cert", self.s.cert("covered-entity.pem"), "--path", "/fhir/metadata"],
            ["--config", self.s.proxy_yaml, "--cert", self.s.cert("covered-entity.pem"), "--path",
             "/fhir/metadata", "--verbose"],
            ["--config", self.s.proxy_yaml, "--cert", self.s.cert("covered-entity.pem"), "--path",
             "/fhir/metadata", "--method", "GE T"],
        ]
        for args in cases:
            r = self.s.run("explain", *args)
            self.assertEqual(r.returncode, 1, args)
            self.assertIn("usage: fhir-mtls-proxy explain", r.stderr)
            self.assertEqual(r.stdout, "")

    def test_unreadable_certificate_or_body(self):
        r = self.explain("nothing-here.pem", "/fhir/metadata")
        self.assertEqual(r.returncode, 1)
        self.assertIn("--cert", r.stderr)
        r = self.explain("covered-entity.key", "/fhir/metadata")
        self.assertEqual(r.returncode, 1)
        r = self.explain("covered-entity.pem", "/fhir", "--method", "POST", "--body",
                         os.path.join(self.s.dir, "no-body.json"))
        self.assertEqual(r.returncode, 1)
        self.assertIn("--body", r.stderr)

    def test_invalid_configuration(self):
        broken = os.path.join(self.s.dir, "broken.yaml")
        with open(broken, "w") as f:
            f.write(self.s.proxy_text + "surprise: 1\n")
        lines = (self.s.proxy_text + "surprise: 1\n").count("\n")
        r = self.s.run("explain", "--config", broken, "--cert", self.s.cert("covered-entity.pem"),
                       "--path", "/fhir/metadata")
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stderr, '%s:%d:1: unknown key "surprise"\n' % (broken, lines))


class ExplainNotesTest(unittest.TestCase):
    """A malformed HIPAA extension is ignored (never grants) and explain says so."""

    @classmethod
    def setUpClass(cls):
        cls.s = ExampleSetup()
        cls.s.policy_text = POLICY
        cls.s.write()
        pki = Pki(os.path.join(cls.s.dir, "notes"))
        root = pki.root("notes-root", subject={"CN": "Notes Root"})
        # An INTEGER where an OID, a string or a SEQUENCE of them is expected.
        cls.leaf = pki.client("odd-client", root, policies=[],
                              extra_ext_der={"1.3.6.1.4.1.99999.1": "020105"})
        cls.good = pki.client("fine-client", root, policies=[],
                              extra_ext_der={"1.3.6.1.4.1.99999.1": der_oid("1.3.6.1.4.1.41179.2.1")})

    @classmethod
    def tearDownClass(cls):
        cls.s.cleanup()

    def run_explain(self, cert, *extra):
        return self.s.run("explain", "--config", self.s.proxy_yaml, "--cert", cert, "--path",
                          "/fhir/Patient/1", *extra)

    def test_malformed_extension_is_noted(self):
        r = self.run_explain(self.leaf.cert, "--json")
        self.assertEqual(r.returncode, 2)  # untrusted root anyway
        out = json.loads(r.stdout)
        self.assertEqual(out["identity"]["hipaa"], [])
        self.assertEqual(len(out["identity"]["notes"]), 1, out["identity"]["notes"])
        r = self.run_explain(self.leaf.cert)
        self.assertIn("  note:         ", r.stdout)

    def test_wellformed_extension_gives_a_category(self):
        r = self.run_explain(self.good.cert, "--json")
        out = json.loads(r.stdout)
        self.assertEqual(out["identity"]["hipaa"], ["covered-entity"])
        self.assertEqual(out["identity"]["notes"], [])


if __name__ == "__main__":
    unittest.main()
