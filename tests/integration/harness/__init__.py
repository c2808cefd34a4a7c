"""Integration-test harness for fhir-mtls-proxy (Python standard library only).

- pki:      Pki mints CAs, leaves and CRLs per test with the openssl CLI (EC P-256).
- upstream: EchoUpstream, a scriptable HTTP/1.1 upstream that records every request.
- proxy:    ProxyProcess runs the real binary with generated proxy.yaml / policy.yaml.
- client:   TLS client helpers: one-shot requests, keep-alive connections, raw bytes.

Tests run with cwd tests/integration and the environment FMP_BINARY (the built binary) and
FMP_SOURCE_DIR (the repository root); see binary_path() and source_dir().
"""

import os
import unittest


def binary_path():
    """The fhir-mtls-proxy binary from $FMP_BINARY; skips the test when it is not set or missing."""
    path = os.environ.get("FMP_BINARY", "")
    if not path or not os.path.isfile(path) or not os.access(path, os.X_OK):
        raise unittest.SkipTest("FMP_BINARY does not name an executable fhir-mtls-proxy (%r)" % path)
    return path


def source_dir():
    """The repository root from $FMP_SOURCE_DIR (default: two levels above this package's parent)."""
    default = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
    return os.environ.get("FMP_SOURCE_DIR", default)
