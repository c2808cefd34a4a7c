"""audit.format: fhir writes every decided request as a FHIR R4 AuditEvent, one JSON per line."""

import json
import time
import unittest

from harness import client
from lifecycle_fixture import LifecycleTestCase


class FhirAuditEventTest(LifecycleTestCase):
    def test_decisions_become_audit_events(self):
        proxy = self.start_proxy(self.config(watch=False, audit={"format": "fhir"}))
        self.assertEqual(client.request(self.ctx(), proxy.port, "GET", "/fhir/Patient/7?x=s3cret").status,
                         200)
        self.assertEqual(client.request(self.ctx(), proxy.port, "GET", "/fhir/Secret/1").status, 403)
        deadline = time.monotonic() + 5
        events = []
        while len(events) < 2 and time.monotonic() < deadline:
            with open(proxy.audit_path) as f:
                events = [json.loads(line) for line in f if line.strip()]
            time.sleep(0.05)
        self.assertEqual(len(events), 2, events)
        allowed, denied = events
        for e in events:
            self.assertEqual(e["resourceType"], "AuditEvent")
            self.assertEqual(e["type"]["code"], "rest")
            self.assertTrue(e["recorded"].endswith("Z"))
            self.assertIn(self.client.subject_dn, json.dumps(e["agent"]))
        self.assertEqual(allowed["outcome"], "0")
        self.assertEqual(denied["outcome"], "4")
        self.assertIn("/fhir/Patient/7", json.dumps(allowed))
        self.assertNotIn("s3cret", json.dumps(events))


if __name__ == "__main__":
    unittest.main()
