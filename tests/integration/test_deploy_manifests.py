"""Container and Kubernetes files, checked without a Docker engine or a cluster (neither runs here):

- deploy/kubernetes/**.yaml: every document parses; each kustomization lists every manifest of its
  directory; probes, ports, volume mounts and Services refer to things that exist; every container
  is locked down (non-root, read-only root filesystem, ALL capabilities dropped, resources set);
  the FHIR server exposes no port; the ConfigMap's proxy.yaml and policy pass `fhir-mtls-proxy
  check` in the layout the Deployment mounts, with certificates minted by certs-example/mint.sh
  and placed where the kustomization's generators put them.
- deploy/docker/Dockerfile: the stages, a non-root USER, EXPOSE matching proxy.yaml, the runtime
  libraries covering what the binary links, and the HEALTHCHECK command run against a real proxy.

YAML: Python's standard library has no YAML parser and there is no PyPI here, so the manifests are
converted to JSON by Debian's /usr/bin/python3 with python3-yaml (deploy/install-deps.sh installs
it); the tests skip with a message when that interpreter cannot import yaml.
"""

import glob
import json
import os
import re
import shutil
import subprocess
import tempfile
import unittest

from harness import binary_path, source_dir
from harness.pki import Pki
from harness.proxy import ProxyProcess, proxy_config
from harness.upstream import EchoUpstream

SYSTEM_PYTHON = "/usr/bin/python3"
K8S = os.path.join("deploy", "kubernetes")
MOUNT_ROOT = "/etc/fhir-mtls-proxy"

_TO_JSON = ("import json, sys, yaml\n"
            "out = {}\n"
            "for path in sys.argv[1:]:\n"
            "    with open(path) as f:\n"
            "        out[path] = [d for d in yaml.safe_load_all(f) if d is not None]\n"
            "json.dump(out, sys.stdout)\n")


def load_yaml_files(paths):
    """{path: [documents]} parsed by Debian's python3-yaml (skips the test when unavailable)."""
    if not os.path.exists(SYSTEM_PYTHON):
        raise unittest.SkipTest("%s not found (needed for python3-yaml)" % SYSTEM_PYTHON)
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import yaml"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=30)
    if probe.returncode != 0:
        raise unittest.SkipTest("%s cannot import yaml: apt-get install python3-yaml" % SYSTEM_PYTHON)
    r = subprocess.run([SYSTEM_PYTHON, "-c", _TO_JSON] + list(paths), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=60)
    if r.returncode != 0:
        raise AssertionError("YAML parse error:\n" + r.stderr)
    return json.loads(r.stdout)


def dockerfile_instructions(path):
    """[(INSTRUCTION, arguments)] with continuations joined and comments dropped."""
    out, pending = [], ""
    with open(path) as f:
        for raw in f:
            line = raw.rstrip("\n")
            if not pending and (not line.strip() or line.lstrip().startswith("#")):
                continue
            if line.endswith("\\"):
                pending += line[:-1] + " "
                continue
            line = pending + line
            pending = ""
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def stages(instructions):
    """[(FROM arguments, [instructions of the stage])]."""
    out = []
    for ins, args in instructions:
        if ins == "FROM":
            out.append((args, []))
        elif out:
            out[-1][1].append((ins, args))
    return out


def port_of(address):
    return int(str(address).rsplit(":", 1)[1])


class Manifests:
    """Every document under deploy/kubernetes, indexed by kind and name."""

    def __init__(self):
        root = os.path.join(source_dir(), K8S)
        self.root = root
        self.files = sorted(glob.glob(os.path.join(root, "**", "*.yaml"), recursive=True))
        self.docs = load_yaml_files(self.files)

    def all(self, kind=None, skip_kustomization=True):
        for path, docs in self.docs.items():
            for d in docs:
                if skip_kustomization and d.get("kind") == "Kustomization":
                    continue
                if kind is None or d.get("kind") == kind:
                    yield path, d

    def one(self, kind, name):
        found = [d for _, d in self.all(kind) if d["metadata"]["name"] == name]
        if len(found) != 1:
            raise AssertionError("%d %s named %s" % (len(found), kind, name))
        return found[0]


class KubernetesManifestTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.m = Manifests()
        cls.kustomization = cls.m.docs[os.path.join(cls.m.root, "kustomization.yaml")][0]
        cls.deployment = cls.m.one("Deployment", "fhir-server")
        cls.pod = cls.deployment["spec"]["template"]
        cls.containers = {c["name"]: c for c in cls.pod["spec"]["containers"]}
        cls.proxy = cls.containers["fhir-mtls-proxy"]
        cls.proxy_yaml_text = cls.m.one("ConfigMap", "fhir-mtls-proxy-config")["data"]["proxy.yaml"]
        cls.proxy_yaml = load_yaml_text(cls.proxy_yaml_text)

    def test_every_document_has_kind_and_name(self):
        kinds = set()
        for path, d in self.m.all():
            self.assertIn("apiVersion", d, path)
            self.assertIn("kind", d, path)
            self.assertTrue(d.get("metadata", {}).get("name"), path)
            kinds.add(d["kind"])
        self.assertTrue({"Namespace", "ConfigMap", "Deployment", "Service", "PodDisruptionBudget",
                         "NetworkPolicy", "ServiceMonitor"} <= kinds, kinds)

    def test_each_kustomization_lists_every_manifest_of_its_directory(self):
        kustomizations = [p for p in self.m.files if os.path.basename(p) == "kustomization.yaml"]
        self.assertEqual(len(kustomizations), 2, kustomizations)
        for k in kustomizations:
            d = os.path.dirname(k)
            listed = self.m.docs[k][0].get("resources", [])
            for r in listed:
                self.assertTrue(os.path.exists(os.path.join(d, r)), "%s lists missing %s" % (k, r))
            here = sorted(os.path.basename(p) for p in glob.glob(os.path.join(d, "*.yaml"))
                          if os.path.basename(p) != "kustomization.yaml")
            self.assertEqual(sorted(r for r in listed if r.endswith(".yaml")), here, k)
        monitoring = self.m.docs[os.path.join(self.m.root, "monitoring", "kustomization.yaml")][0]
        self.assertIn("../", monitoring["resources"])

    def test_generated_names_and_images(self):
        self.assertTrue(self.kustomization["generatorOptions"]["disableNameSuffixHash"])
        images = {i["name"] for i in self.kustomization["images"]}
        self.assertEqual(images, {c["image"] for c in self.containers.values()})

    def test_probes_ports_and_mounts_refer_to_what_exists(self):
        volumes = {v["name"]: v for v in self.pod["spec"]["volumes"]}
        config_maps = {d["metadata"]["name"] for _, d in self.m.all("ConfigMap")}
        config_maps |= {g["name"] for g in self.kustomization.get("configMapGenerator", [])}
        secrets = {g["name"] for g in self.kustomization.get("secretGenerator", [])}
        used = set()
        for c in self.containers.values():
            port_names = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                http = c.get(probe, {}).get("httpGet")
                if http:
                    self.assertIn(http["port"], port_names, (c["name"], probe))
            for vm in c.get("volumeMounts", []):
                self.assertIn(vm["name"], volumes, c["name"])
                used.add(vm["name"])
        self.assertEqual(used, set(volumes))  # no unused volume
        for v in volumes.values():
            if "configMap" in v:
                self.assertIn(v["configMap"]["name"], config_maps)
            if "secret" in v:
                self.assertIn(v["secret"]["secretName"], secrets)
        # Probes of the proxy: /healthz (liveness) and /readyz (readiness) on the metrics port.
        self.assertEqual(self.proxy["livenessProbe"]["httpGet"]["path"], "/healthz")
        self.assertEqual(self.proxy["readinessProbe"]["httpGet"]["path"], "/readyz")
        self.assertEqual(self.proxy["readinessProbe"]["httpGet"]["port"], "metrics")
        # No ConfigMap/Secret mounted with subPath: those never receive updates.
        for c in self.containers.values():
            for vm in c.get("volumeMounts", []):
                self.assertNotIn("subPath", vm, c["name"])

    def test_ports_match_the_proxy_configuration(self):
        ports = {p["name"]: p["containerPort"] for p in self.proxy["ports"]}
        self.assertEqual(ports["https"], port_of(self.proxy_yaml["listen"]))
        self.assertEqual(ports["metrics"], port_of(self.proxy_yaml["metrics"]["listen"]))
        ann = self.pod["metadata"]["annotations"]
        self.assertEqual(ann["prometheus.io/scrape"], "true")
        self.assertEqual(int(ann["prometheus.io/port"]), ports["metrics"])
        self.assertEqual(ann["prometheus.io/path"], "/metrics")
        # The FHIR server is reachable only through the proxy: no container port, and the proxy
        # forwards to loopback.
        self.assertNotIn("ports", self.containers["fhir-server"])
        self.assertRegex(self.proxy_yaml["upstream"]["url"], r"^http://127\.0\.0\.1:\d+$")
        with open(os.path.join(source_dir(), "deploy", "demo", "fhir-server", "server.mjs")) as f:
            self.assertIn("const HOST = '127.0.0.1';", f.read())

    def test_services(self):
        labels = self.pod["metadata"]["labels"]
        port_names = {p["name"] for p in self.proxy["ports"]}
        services = list(self.m.all("Service"))
        self.assertEqual(len(services), 2)
        for path, svc in services:
            for k, v in svc["spec"]["selector"].items():
                self.assertEqual(labels.get(k), v, path)
            for p in svc["spec"]["ports"]:
                self.assertIn(p["targetPort"], port_names, path)
        public = self.m.one("Service", "fhir-api")
        self.assertEqual([p["targetPort"] for p in public["spec"]["ports"]], ["https"])
        metrics = self.m.one("Service", "fhir-mtls-proxy-metrics")
        self.assertEqual(metrics["spec"]["clusterIP"], "None")
        sm = self.m.one("ServiceMonitor", "fhir-mtls-proxy")
        for k, v in sm["spec"]["selector"]["matchLabels"].items():
            self.assertEqual(metrics["metadata"]["labels"].get(k), v)
        self.assertEqual({e["port"] for e in sm["spec"]["endpoints"]},
                         {p["name"] for p in metrics["spec"]["ports"]})
        np = self.m.one("NetworkPolicy", "fhir-server")
        allowed = {p["port"] for rule in np["spec"]["ingress"] for p in rule["ports"]}
        self.assertEqual(allowed, {"https", "metrics"})

    def test_security_context_and_resources(self):
        spec = self.pod["spec"]
        self.assertTrue(spec["securityContext"]["runAsNonRoot"])
        self.assertNotEqual(spec["securityContext"]["runAsUser"], 0)
        self.assertEqual(spec["securityContext"]["seccompProfile"]["type"], "RuntimeDefault")
        self.assertFalse(spec["automountServiceAccountToken"])
        for c in self.containers.values():
            sc = c["securityContext"]
            self.assertTrue(sc["runAsNonRoot"], c["name"])
            self.assertTrue(sc["readOnlyRootFilesystem"], c["name"])
            self.assertFalse(sc["allowPrivilegeEscalation"], c["name"])
            self.assertEqual(sc["capabilities"]["drop"], ["ALL"], c["name"])
            self.assertNotIn("add", sc["capabilities"], c["name"])
            self.assertIn("memory", c["resources"]["limits"], c["name"])
            self.assertTrue({"cpu", "memory"} <= set(c["resources"]["requests"]), c["name"])
        ns = self.m.one("Namespace", "fhir")
        self.assertEqual(ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"], "restricted")
        drain_s = self.proxy_yaml.get("drain_timeout_ms", 10000) / 1000
        self.assertGreater(spec["terminationGracePeriodSeconds"], drain_s + 5)

    def test_configmap_proxy_yaml_is_the_image_default(self):
        with open(os.path.join(source_dir(), "deploy", "docker", "proxy.yaml")) as f:
            self.assertEqual(self.proxy_yaml_text, f.read())

    def test_configuration_passes_check_in_the_mounted_layout(self):
        binary = binary_path()
        tmp = tempfile.mkdtemp(prefix="fmp-k8s-")
        self.addCleanup(shutil.rmtree, tmp, True)
        pki_dir = os.path.join(tmp, "pki")
        r = subprocess.run([os.path.join(source_dir(), "certs-example", "mint.sh"), pki_dir],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
        self.assertEqual(r.returncode, 0, r.stdout)
        root = os.path.join(tmp, "mnt")
        mounts = {}  # volume source name -> mount path (under root)
        volumes = {v["name"]: v for v in self.pod["spec"]["volumes"]}
        for vm in self.proxy["volumeMounts"]:
            v = volumes[vm["name"]]
            source = (v.get("configMap") or {}).get("name") or (v.get("secret") or {}).get("secretName")
            self.assertTrue(vm["mountPath"].startswith(MOUNT_ROOT + "/"), vm)
            mounts[source] = os.path.join(root, vm["mountPath"][len(MOUNT_ROOT) + 1:])
            os.makedirs(mounts[source])
        # ConfigMaps written out as the kubelet does (one file per key); generators from pki/.
        for _, cm in self.m.all("ConfigMap"):
            for key, text in cm["data"].items():
                if cm["metadata"]["name"] == "fhir-mtls-proxy-config":
                    text = text.replace(MOUNT_ROOT, root)
                with open(os.path.join(mounts[cm["metadata"]["name"]], key), "w") as f:
                    f.write(text)
        for gen in self.kustomization["secretGenerator"] + self.kustomization["configMapGenerator"]:
            for entry in gen["files"]:
                key, _, src = entry.partition("=")
                self.assertTrue(src.startswith("pki/"), entry)
                shutil.copy(os.path.join(pki_dir, src[len("pki/"):]), os.path.join(mounts[gen["name"]], key))
        args = self.proxy["args"]
        config = args[args.index("--config") + 1]
        self.assertTrue(config.startswith(MOUNT_ROOT + "/"))
        conf_path = os.path.join(root, config[len(MOUNT_ROOT) + 1:])
        r = subprocess.run([binary, "check", "--config", conf_path], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout)
        # The check is real: without the trust ConfigMap it fails.
        shutil.rmtree(mounts["fhir-mtls-proxy-trust"])
        r = subprocess.run([binary, "check", "--config", conf_path], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=60)
        self.assertEqual(r.returncode, 1, r.stdout)


def load_yaml_text(text):
    tmp = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
    try:
        tmp.write(text)
        tmp.close()
        return load_yaml_files([tmp.name])[tmp.name][0]
    finally:
        os.unlink(tmp.name)


def linked_packages(binary):
    """The Debian packages providing the shared libraries `binary` links (ldd + dpkg -S)."""
    r = subprocess.run(["ldd", binary], stdout=subprocess.PIPE, text=True, timeout=30)
    packages = set()
    for line in r.stdout.splitlines():
        m = re.search(r"=> (/\S+)", line)
        if not m:
            continue
        path = m.group(1)
        candidates = {path, os.path.realpath(path)}
        for c in list(candidates):
            candidates.add(c[4:] if c.startswith("/usr/") else "/usr" + c)
        for c in candidates:
            q = subprocess.run(["dpkg", "-S", c], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               text=True, timeout=30)
            if q.returncode == 0:
                packages.add(q.stdout.split(":", 1)[0].strip())
                break
    return packages


class DockerfileTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.path = os.path.join(source_dir(), "deploy", "docker", "Dockerfile")
        cls.stages = stages(dockerfile_instructions(cls.path))
        with open(os.path.join(source_dir(), "deploy", "docker", "proxy.yaml")) as f:
            cls.conf_text = f.read()
        cls.listen = int(re.search(r'^listen: "[^"]*:(\d+)"', cls.conf_text, re.M).group(1))
        cls.metrics = int(re.search(r'^metrics:\n  listen: "[^"]*:(\d+)"', cls.conf_text, re.M).group(1))

    def final(self, ins):
        return [a for i, a in self.stages[-1][1] if i == ins]

    def test_stages(self):
        self.assertEqual(len(self.stages), 2)
        build_from, build = self.stages[0]
        self.assertEqual(build_from, "debian:12 AS build")
        runs = " ".join(a for i, a in build if i == "RUN")
        self.assertIn("deploy/install-deps.sh", runs)
        self.assertIn("cmake --build", runs)
        self.assertEqual(self.stages[1][0], "debian:12-slim AS runtime")
        copies = self.final("COPY")
        self.assertIn("--from=build /build/proxy/fhir-mtls-proxy /usr/bin/fhir-mtls-proxy", copies)
        # Nothing of the build toolchain in the runtime stage.
        runtime_runs = " ".join(self.final("RUN"))
        for tool in ("build-essential", "cmake", "-dev ", "clang", "install-deps.sh"):
            self.assertNotIn(tool, runtime_runs)

    def test_user_is_numeric_and_not_root(self):
        users = self.final("USER")
        self.assertEqual(len(users), 1)
        uid = users[0].split(":")[0]
        self.assertTrue(uid.isdigit() and int(uid) != 0, users)

    def test_expose_matches_the_configuration(self):
        exposed = {int(p) for a in self.final("EXPOSE") for p in a.split()}
        self.assertEqual(exposed, {self.listen, self.metrics})
        cmd = json.loads(self.final("CMD")[0])
        self.assertEqual(json.loads(self.final("ENTRYPOINT")[0]), ["/usr/bin/fhir-mtls-proxy"])
        config = cmd[cmd.index("--config") + 1]
        self.assertIn("deploy/docker/proxy.yaml " + config, self.final("COPY"))

    def test_runtime_libraries_cover_the_binary(self):
        if not shutil.which("dpkg") or not shutil.which("ldd"):
            self.skipTest("dpkg/ldd not available")
        needed = linked_packages(binary_path()) - {"libc6", "libstdc++6", "libgcc-s1"}  # in slim
        self.assertTrue(needed, "no package found for the binary's libraries")
        installed = " ".join(self.final("RUN")).split()
        self.assertEqual(sorted(needed - set(installed)), [])

    def test_healthcheck_command_against_a_running_proxy(self):
        checks = self.final("HEALTHCHECK")
        self.assertEqual(len(checks), 1)
        m = re.search(r"CMD (\[.*\])$", checks[0])
        self.assertTrue(m, checks[0])
        argv = json.loads(m.group(1))
        self.assertTrue(os.path.exists(argv[0]), argv)  # bash, present in debian:12-slim too
        self.assertIn("/readyz", argv[-1])
        token = "/dev/tcp/127.0.0.1/%d " % self.metrics
        self.assertIn(token, argv[-1])
        tmp = tempfile.mkdtemp(prefix="fmp-health-")
        self.addCleanup(shutil.rmtree, tmp, True)
        pki = Pki(os.path.join(tmp, "pki"))
        ca = pki.root("ca")
        with EchoUpstream() as up:
            cfg = proxy_config(pki.server(ca), [("dt", ca.cert)], up.url)
            with ProxyProcess(binary_path(), os.path.join(tmp, "w"), cfg, {"default": "deny"}) as p:
                cmd = argv[:-1] + [argv[-1].replace(token, "/dev/tcp/127.0.0.1/%d " % p.metrics_port)]
                r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=10)
                self.assertEqual(r.returncode, 0, r.stdout)
                port = p.metrics_port
            # Stopped: unhealthy.
            cmd = argv[:-1] + [argv[-1].replace(token, "/dev/tcp/127.0.0.1/%d " % port)]
            r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=10)
            self.assertNotEqual(r.returncode, 0)

    def test_dockerignore_keeps_build_trees_out(self):
        with open(self.path + ".dockerignore") as f:
            ignored = f.read().split()
        for entry in ("build", "build-*", ".git", "**/node_modules"):
            self.assertIn(entry, ignored)

    def test_demo_fhir_server_dockerfile(self):
        path = os.path.join(source_dir(), "deploy", "demo", "fhir-server", "Dockerfile")
        st = stages(dockerfile_instructions(path))
        self.assertTrue(all(f.startswith("node:20") for f, _ in st))
        final = st[-1][1]
        users = [a for i, a in final if i == "USER"]
        self.assertEqual(len(users), 1)
        self.assertNotIn(users[0].split(":")[0], ("0", "root"))
        self.assertEqual(json.loads([a for i, a in final if i == "CMD"][0]), ["node", "server.mjs"])


if __name__ == "__main__":
    unittest.main()
