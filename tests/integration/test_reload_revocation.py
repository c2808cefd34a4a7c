"""A reload reaches connections that are already open (review finding): a certificate revoked by a
new CRL, or a trust community removed, refuses the next request on a kept-alive connection; and an
allowed request whose client disappears before the answer is still audited."""

import socket
import unittest

from harness import client
from harness.proxy import proxy_config
from lifecycle_fixture import LifecycleTestCase


class LiveRevocationTest(LifecycleTestCase):
    def crl_config(self, crl_root, crl_ca):
        cfg = proxy_config(self.server, [("directtrust", self.bundle, [crl_root, crl_ca])],
                           self.up.url, watch=False)
        return cfg

    def test_revoked_by_reload_refuses_the_kept_connection(self):
        crl_root = self.pki.crl(self.root, name="live-root")
        crl_ca = self.pki.crl(self.ca, name="live-ca")
        proxy = self.start_proxy(self.crl_config(crl_root, crl_ca))
        # Two connections with the same certificate (they share its derived identity): refusing
        # one must not depend on the other, and both close after their 401.
        with client.Connection(self.ctx(), proxy.port) as kept, \
                client.Connection(self.ctx(), proxy.port) as twin:
            for conn in (kept, twin):
                self.assertEqual(conn.request("GET", "/fhir/Patient/1").status, 200)
            # The intermediate's new CRL lists this client; the files keep their names.
            self.pki.crl(self.ca, revoked=[self.client], name="live-ca")
            self.assertEqual(proxy.reload(), "success")
            before = len(self.up.requests)
            for conn in (kept, twin):
                r = conn.request("GET", "/fhir/Patient/2")
                self.assertEqual(r.status, 401)
                self.assertEqual(r.json()["issue"][0]["code"], "security")
                self.assertIn("revoked", r.json()["issue"][0]["diagnostics"])
                self.assertEqual(r.header("Connection"), "close")
                self.assertTrue(conn.is_closed_by_peer())
            self.assertEqual(len(self.up.requests), before)  # never forwarded
        # A new connection is refused in the handshake (require mode).
        self.assertIsNotNone(client.handshake_error(self.ctx(), proxy.port))

    def test_trust_community_removed_by_reload(self):
        proxy = self.start_proxy(self.config(watch=False))
        other = self.pki.root("other-root", subject={"CN": "Other Root"})
        with client.Connection(self.ctx(), proxy.port) as kept:
            self.assertEqual(kept.request("GET", "/fhir/Patient/1").status, 200)
            cfg = dict(proxy.config)
            cfg["tls"] = dict(cfg["tls"], trust=[{"name": "other", "ca": other.cert}])
            proxy.write_config(cfg)
            self.assertEqual(proxy.reload(), "success")
            before = len(self.up.requests)
            r = kept.request("GET", "/fhir/Patient/2")
            self.assertEqual(r.status, 401)
            self.assertEqual(len(self.up.requests), before)  # never forwarded

    def test_renamed_identity_headers_reach_kept_connections(self):
        proxy = self.start_proxy(self.config(watch=False))
        with client.Connection(self.ctx(), proxy.port) as first, \
                client.Connection(self.ctx(), proxy.port) as second:
            for conn in (first, second):
                before = len(self.up.requests)
                self.assertEqual(conn.request("GET", "/fhir/Patient/1").status, 200)
                req = self.up.wait_for_requests(before + 1)[before]
                self.assertEqual(len(req.header_all("X-Client-Subject-DN")), 1)
                self.assertEqual(req.header_all("Client-Cert"), [])
            cfg = dict(proxy.config)
            cfg["identity_headers"] = {"subject": "X-Partner-DN", "rfc9440": True}
            proxy.write_config(cfg)
            self.assertEqual(proxy.reload(), "success")
            for conn in (second, first):
                before = len(self.up.requests)
                self.assertEqual(conn.request("GET", "/fhir/Patient/2").status, 200)
                req = self.up.wait_for_requests(before + 1)[before]
                self.assertEqual(req.header_all("X-Client-Subject-DN"), [])
                self.assertEqual(len(req.header_all("X-Partner-DN")), 1)
                self.assertEqual(len(req.header_all("Client-Cert")), 1)
                self.assertEqual(len(req.header_all("Client-Cert-Chain")), 1)

    def test_anonymous_kept_connection_stays_anonymous_across_a_rename(self):
        policy = {"default": "deny", "rules": [
            {"name": "metadata", "effect": "allow", "when": {"path": ["/fhir/metadata"]}}]}
        cfg = self.config(watch=False)
        cfg["tls"] = dict(cfg["tls"], client_cert="request")
        proxy = self.start_proxy(cfg, policy)
        identity = ("X-Client-Subject-DN", "X-Partner-DN", "X-Client-Cert-SHA256", "Client-Cert",
                    "X-Client-Trust-Community")
        anonymous = client.tls_context(ca=self.server_ca.cert)
        with client.Connection(anonymous, proxy.port) as kept:
            for renamed in (False, True):
                if renamed:
                    cfg = dict(proxy.config)
                    cfg["identity_headers"] = {"subject": "X-Partner-DN", "rfc9440": True}
                    proxy.write_config(cfg)
                    self.assertEqual(proxy.reload(), "success")
                before = len(self.up.requests)
                self.assertEqual(kept.request("GET", "/fhir/metadata").status, 200)
                req = self.up.wait_for_requests(before + 1)[before]
                self.assertEqual([n for n in identity if req.header_all(n)], [], renamed)
                r = kept.request("GET", "/fhir/Patient/1")
                self.assertEqual(r.status, 401, renamed)
                self.assertEqual(r.json()["issue"][0]["code"], "login")

    def test_client_gone_before_the_answer_is_audited(self):
        self.up.route("/fhir/Patient/slow", delay=1.0)
        proxy = self.start_proxy(self.config(watch=False))
        conn = client.Connection(self.ctx(), proxy.port)
        conn.send_raw(b"DELETE /fhir/Patient/slow HTTP/1.1\r\nHost: localhost\r\n\r\n")
        self.up.wait_for_requests(1)
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        conn.close()

        def mine(a):
            return a.get("path") == "/fhir/Patient/slow"
        records = [a for a in proxy.audit_lines(wait_for=1, match=mine, timeout=10) if mine(a)]
        self.assertEqual(len(records), 1, records)
        self.assertEqual(records[0]["decision"], "allow")
        self.assertEqual(records[0]["method"], "DELETE")
        self.assertEqual(records[0]["status"], 499)


if __name__ == "__main__":
    unittest.main()
