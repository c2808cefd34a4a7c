"""Shared set-up of the `check` and `explain` integration tests: the example PKI minted by
certs-example/mint.sh into a temporary directory, and copies of conf/proxy.yaml and conf/policy.yaml
rewritten to point at it. Tests then edit the copies to break one thing at a time."""

import os
import shutil
import subprocess
import tempfile

from harness import binary_path, source_dir


class ExampleSetup:
    """A minted example PKI plus editable copies of the example configuration.

    dir: the temporary directory; pki: where mint.sh wrote the certificates; proxy_yaml /
    policy_yaml: the configuration copies (absolute paths). Call cleanup() when done.
    """

    def __init__(self):
        self.binary = binary_path()
        self.source = source_dir()
        self.dir = tempfile.mkdtemp(prefix="fmp-cli-")
        self.pki = os.path.join(self.dir, "pki")
        mint = os.path.join(self.source, "certs-example", "mint.sh")
        subprocess.run(["bash", mint, self.pki], check=True, capture_output=True, timeout=120)
        with open(os.path.join(self.source, "conf", "proxy.yaml")) as f:
            self.proxy_text = f.read().replace("certs-example/out/", self.pki + "/")
        with open(os.path.join(self.source, "conf", "policy.yaml")) as f:
            self.policy_text = f.read()
        self.proxy_yaml = os.path.join(self.dir, "proxy.yaml")
        self.policy_yaml = os.path.join(self.dir, "policy.yaml")
        self.proxy_text = self.proxy_text.replace("policy: conf/policy.yaml",
                                                  "policy: " + self.policy_yaml)
        self.write()

    def rule_count(self):
        """The number of rules in the example policy (it may grow; the tests should not care)."""
        return sum(1 for l in self.policy_text.splitlines() if l.lstrip().startswith("- name:"))

    def cert(self, name):
        """Path of a file minted by mint.sh."""
        return os.path.join(self.pki, name)

    def write(self, proxy_text=None, policy_text=None):
        """Writes both configuration files (the pristine copies when not given)."""
        with open(self.proxy_yaml, "w") as f:
            f.write(self.proxy_text if proxy_text is None else proxy_text)
        with open(self.policy_yaml, "w") as f:
            f.write(self.policy_text if policy_text is None else policy_text)

    def run(self, *args):
        """Runs the binary with `args`; returns the CompletedProcess (text mode)."""
        return subprocess.run([self.binary] + list(args), capture_output=True, text=True,
                              timeout=60, cwd=self.dir)

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def position(text, needle, value):
    """(line, column), 1-based, of `value` on the first line of `text` containing `needle`."""
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            column = line.index(value) + 1
            return number, column
    raise AssertionError("%r not found" % needle)
