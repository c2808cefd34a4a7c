"""Path confusion: with a policy that allows ONLY Patient reads, no request target, however encoded,
reaches another resource or interaction.

Each row is sent raw over mTLS on its own connection. The row says what the client must get (200 for
a genuine Patient read, 400 structure for a target the contract refuses, 403 for anything the
policy does not allow, 431 for an overlong target). Whatever the status, every request the upstream
receives is checked with an independent, naive decoder (percent-decode everything, split on '/'):
it must be a GET/HEAD of /fhir/Patient/<id>, and it must be exactly the target that was sent (the
proxy forwards the target as received).
"""

import json
import re
import unittest
import urllib.parse

from datapath_fixture import FHIR_JSON, ProxyTestCase
from harness import client

MAX_HEADER_BYTES = 4096

POLICY = {"default": "deny", "rules": [
    {"name": "patient-read", "effect": "allow",
     "when": {"fhir": {"resource": ["Patient"], "interaction": ["read"]}}},
]}

OK, BAD, DENY, LONG = 200, 400, 403, 431

# (method, target, expected status, extra header lines)
ROWS = [
    # Genuine Patient reads, however spelt.
    ("GET", "/fhir/Patient/1", OK),
    ("GET", "/fhir/Patient/1?_format=json", OK),
    ("GET", "/fhir/Patient/1/", OK),
    ("GET", "/fhir/Patient/%31", OK),
    ("GET", "/fhir/%50atient/1", OK),
    ("GET", "/fhir/Patient/1?x=/../../Observation/1", OK),
    ("GET", "/fhir/Patient/1%2e%2e", OK),  # the id "1.." (not a dot segment)
    ("HEAD", "/fhir/Patient/1", OK),
    # Dot segments, encoded or not, and encoded separators: 400.
    ("GET", "/fhir/Patient/1/../../Observation/1", BAD),
    ("GET", "/fhir/Observation/1/../../Patient/1", BAD),
    ("GET", "/fhir/Patient%2f..%2fObservation/1", BAD),
    ("GET", "/fhir/Patient%2F..%2FObservation/1", BAD),
    ("GET", "/fhir/./Observation/1", BAD),
    ("GET", "/fhir/Patient/%2e%2e/%2e%2e/Observation/1", BAD),
    ("GET", "/fhir/Patient/.%2E/Observation/1", BAD),
    ("GET", "/fhir/Patient/1/%2E%2E/%2e%2e/Observation/1", BAD),
    ("GET", "/fhir/Patient/1/..", BAD),
    ("GET", "/fhir/Patient/1/%2e", BAD),
    ("GET", "/fhir/Patient/1/%2e%2e%2fObservation", BAD),
    ("GET", "/fhir/Patient%5c..%5cObservation/1", BAD),
    ("GET", "/fhir/Patient\\..\\Observation/1", BAD),
    ("GET", "/fhir//Observation/1", BAD),
    ("GET", "//fhir/Observation/1", BAD),
    ("GET", "/fhir/Patient//1", BAD),
    # Fragments, NUL, bad escapes, raw non-ASCII, other target forms: 400.
    ("GET", "/fhir/Patient/1#/../../Observation/1", BAD),
    ("GET", "/fhir/Observation/1#Patient", BAD),
    ("GET", "/fhir/Patient/1%00/../../Observation/1", BAD),
    ("GET", "/fhir/Patient/%2", BAD),
    ("GET", "/fhir/Patient/1%ZZ", BAD),
    ("GET", "/fhir/Patient/%%32e", BAD),
    ("GET", "/fhir/P\xe4tient/1", BAD),
    ("GET", "http://localhost/fhir/Observation/1", BAD),
    ("GET", "http://localhost/fhir/Patient/1", BAD),
    ("OPTIONS", "*", BAD),
    # A method override would make the upstream do what the proxy never decided: 400.
    ("GET", "/fhir/Patient/1", BAD, ["X-HTTP-Method-Override: DELETE"]),
    ("GET", "/fhir/Patient/1", BAD, ["X-HTTP-Method: PUT"]),
    ("GET", "/fhir/Patient/1", BAD, ["X-Method-Override: DELETE"]),
    # Other resources, other interactions, look-alikes: 403.
    ("GET", "/fhir/Observation/1", DENY),
    ("GET", "/FHIR/Observation/1", DENY),
    ("GET", "/FHIR/Patient/1", DENY),
    ("GET", "/Fhir/Patient/1", DENY),
    ("GET", "/fhirPatient/1", DENY),
    ("GET", "/fhir/patient/1", DENY),
    ("GET", "/fhir/PATIENT/1", DENY),
    ("GET", "/fhir/%4Fbservation/1", DENY),
    ("GET", "/fhir/Patient;x/1", DENY),
    ("GET", "/fhir/Patient/1;jsessionid=x", DENY),
    # "..;" is ".." to Tomcat/Jetty (the parameter is dropped before resolving): refused.
    ("GET", "/fhir/Patient/..;/Observation/1", BAD),
    ("GET", "/fhir/metadata/..;/Patient/1", BAD),
    ("GET", "/fhir/Patient/.;x/1", BAD),
    ("GET", "/fhir/Patient/1;/../Observation", BAD),
    ("GET", "/fhir/Patient%C3%A4/1", DENY),
    ("GET", "/fhir/Patient%EF%BC%8F..%EF%BC%8FObservation/1", DENY),
    ("GET", "/fhir/Patient/1%3F_id=2", DENY),
    ("GET", "/fhir/Patient/1%23x", DENY),
    ("GET", "/fhir/Patient/" + "a" * 65, DENY),
    ("GET", "/fhir/Patient/1/_history", DENY),
    ("GET", "/fhir/Patient/1/_history/2", DENY),
    ("GET", "/fhir/Patient/1/Observation", DENY),
    ("GET", "/fhir/Patient/1/$everything", DENY),
    ("GET", "/fhir/Patient/$everything", DENY),
    ("GET", "/fhir/Patient?_id=1", DENY),
    ("GET", "/fhir/Patient", DENY),
    ("GET", "/fhir/Patient/_search", DENY),
    ("GET", "/fhir/Observation/1?_target=Patient/1", DENY),
    ("GET", "/fhir/metadata", DENY),
    ("GET", "/fhir", DENY),
    ("GET", "/fhir/$export", DENY),
    ("POST", "/fhir/Patient/1", DENY),
    ("PUT", "/fhir/Patient/1", DENY),
    ("DELETE", "/fhir/Patient/1", DENY),
    ("PATCH", "/fhir/Patient/1", DENY),
    # Overlong target: 431.
    ("GET", "/fhir/Patient/" + "1" * (MAX_HEADER_BYTES + 1), LONG),
]

GENUINE = re.compile(r"^/fhir/Patient/[A-Za-z0-9.\-]{1,64}/?$")


def naive_view(target):
    """What a lenient upstream might make of a target: path before '?' or '#', fully
    percent-decoded, backslashes as slashes, dot segments resolved."""
    path = re.split(r"[?#]", target, maxsplit=1)[0]
    path = urllib.parse.unquote(path, errors="replace").replace("\\", "/")
    out = []
    for seg in path.split("/"):
        if seg == "..":
            if out:
                out.pop()
        elif seg not in (".",):
            out.append(seg)
    return "/".join(out)


class PathConfusionTest(ProxyTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.leaf = cls.client_cert("path-client")
        cls.proxy = cls.make_proxy(POLICY, limits={"max_header_bytes": MAX_HEADER_BYTES})

    @classmethod
    def tearDownClass(cls):
        cls.proxy.stop()
        super().tearDownClass()

    def send(self, method, target, extra):
        head = "%s %s HTTP/1.1\r\nHost: localhost\r\n%sConnection: close\r\n\r\n" % (
            method, target, "".join(h + "\r\n" for h in extra))
        data = client.raw(self.ctx(self.leaf), self.proxy.port, head.encode("latin-1"))
        return client.parse_responses(data, method)

    def test_table(self):
        self.assertGreaterEqual(len(ROWS), 30)
        for i, row in enumerate(ROWS):
            method, target, status = row[:3]
            extra = row[3] if len(row) > 3 else []
            with self.subTest(i=i, method=method, target=target[:80], headers=extra):
                before = len(self.up.requests)
                responses = self.send(method, target, extra)
                self.assertEqual([r.status for r in responses], [status])
                r = responses[0]
                if status != OK:
                    self.assertEqual(r.header("Content-Type"), FHIR_JSON)
                    if method != "HEAD":
                        code = {BAD: "structure", DENY: "forbidden", LONG: "too-long"}[status]
                        self.assertEqual(json.loads(r.body)["issue"][0]["code"], code)
                # Flush with a genuine read over a new connection, then look at what arrived.
                marker = "/fhir/Patient/marker-%d" % i
                m = client.request(self.ctx(self.leaf), self.proxy.port, "GET", marker)
                self.assertEqual(m.status, 200)
                got = self.up.wait_for_requests(before + 1)[before:]
                self.assertEqual(got[-1].target, marker)
                got = got[:-1]
                self.assertEqual([(q.method, q.target) for q in got],
                                 [(method, target)] if status == OK else [])
        # Everything the upstream ever received is a genuine Patient read, even to a lenient reader.
        for q in self.up.requests:
            self.assertIn(q.method, ("GET", "HEAD"), q)
            self.assertRegex(naive_view(q.target), GENUINE)
            self.assertNotIn("Observation", q.path)
            for h in ("X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"):
                self.assertEqual(q.header_all(h), [])


if __name__ == "__main__":
    unittest.main()
