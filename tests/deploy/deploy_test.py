#!/usr/bin/env python3
"""Checks deploy/ (Kubernetes manifests, container image recipe, systemd units)
against itself, the shipped configs and the binaries actually built, and
round-trips scripts/install in a staged root.

    deploy_test.py CHECK --source-root DIR --agent BIN --proxy BIN --ctl BIN --build-root DIR

CHECK is one of:
  manifests  every manifest parses; kinds, apiVersions, selectors, ports, volumes,
             probes, security contexts, images, ConfigMaps vs configs/, sluicectl
             analyze of what the pods mount; the Dockerfile and the systemd units
  flags      every flag the manifests, units and env files pass to a binary is in
             that binary's --help
  probes     the egress gateway's exec probe scripts, run against a real HTTP
             server: 200 passes, 503 and a closed port fail
  install    scripts/install --root TMP, reinstall, --uninstall (+ --purge), with
             the file list, contents, user and leftovers checked at each step

Exit 0 pass, 1 fail, 77 skip (python3-yaml missing outside CI; under CI=true
a missing python3-yaml fails).
"""

import argparse
import hashlib
import http.server
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading

try:
    import yaml
except ImportError:  # reported in main()
    yaml = None

NAMESPACE = "istio-system"
PROXY_UID = 1337
API_VERSIONS = {
    "ServiceAccount": "v1",
    "ConfigMap": "v1",
    "Service": "v1",
    "DaemonSet": "apps/v1",
    "Deployment": "apps/v1",
    "PodDisruptionBudget": "policy/v1",
}
BINARY_NAMES = ("sluice-agent", "sluice-proxy", "sluicectl")


class Checker:
    def __init__(self, args):
        self.args = args
        self.src = args.source_root
        self.errors = []
        self.binaries = {"sluice-agent": args.agent, "sluice-proxy": args.proxy, "sluicectl": args.ctl}

    def fail(self, msg):
        self.errors.append(msg)

    def expect(self, cond, msg):
        if not cond:
            self.fail(msg)
        return cond

    def path(self, *parts):
        return os.path.join(self.src, *parts)

    # ------------------------------------------------------------ loading

    def kube_dir(self):
        return self.path("deploy", "kubernetes")

    def load_kustomization(self):
        with open(os.path.join(self.kube_dir(), "kustomization.yaml")) as f:
            return yaml.safe_load(f)

    def load_docs(self):
        """(file, doc) for every document of every manifest the kustomization lists."""
        docs = []
        for name in self.load_kustomization().get("resources", []):
            with open(os.path.join(self.kube_dir(), name)) as f:
                try:
                    for doc in yaml.safe_load_all(f):
                        if doc is not None:
                            docs.append((name, doc))
                except yaml.YAMLError as e:
                    raise ManifestError(f"deploy/kubernetes/{name}: {e}")
        return docs

    def find(self, docs, kind, name):
        for _, d in docs:
            if d.get("kind") == kind and d.get("metadata", {}).get("name") == name:
                return d
        return None

    @staticmethod
    def containers(workload):
        return workload["spec"]["template"]["spec"].get("containers", [])

    @staticmethod
    def flag_values(args, flag):
        """Values of --flag=V and --flag V in an argument list."""
        out = []
        for i, a in enumerate(args):
            if a.startswith(flag + "="):
                out.append(a[len(flag) + 1:])
            elif a == flag and i + 1 < len(args):
                out.append(args[i + 1])
        return out

    def binary_of(self, container):
        cmd = container.get("command") or []
        return os.path.basename(cmd[0]) if cmd else None

    # ------------------------------------------------------------ manifests

    def check_manifests(self):
        kdir = self.kube_dir()
        kust = self.load_kustomization()
        self.expect(kust.get("namespace") == NAMESPACE, "kustomization namespace is not istio-system")
        listed = set(kust.get("resources", []))
        on_disk = {f for f in os.listdir(kdir) if f.endswith(".yaml") and f != "kustomization.yaml"}
        self.expect(listed == on_disk, f"kustomization resources {sorted(listed)} != manifests on disk {sorted(on_disk)}")

        docs = self.load_docs()
        for fname, d in docs:
            kind = d.get("kind")
            where = f"{fname}: {kind} {d.get('metadata', {}).get('name')}"
            self.expect(kind in API_VERSIONS, f"{where}: unexpected kind")
            self.expect(d.get("apiVersion") == API_VERSIONS.get(kind), f"{where}: apiVersion {d.get('apiVersion')}")
            self.expect(d.get("metadata", {}).get("name"), f"{where}: no metadata.name")
            self.expect(d.get("metadata", {}).get("namespace") == NAMESPACE, f"{where}: namespace is not {NAMESPACE}")
        names = [(d["kind"], d["metadata"]["name"]) for _, d in docs]
        self.expect(len(names) == len(set(names)), f"duplicate resources: {names}")

        for kind, name in [("ServiceAccount", "sluice-agent"), ("ServiceAccount", "istio-egressgateway-service-account"),
                           ("DaemonSet", "sluice-node"), ("Deployment", "istio-egressgateway"),
                           ("Service", "istio-egressgateway"), ("ConfigMap", "istio"),
                           ("ConfigMap", "sluice-istio-resources"), ("ConfigMap", "sluice-install-options")]:
            self.expect(self.find(docs, kind, name) is not None, f"missing {kind} {name}")
        if self.errors:
            return

        images = set()
        for _, d in docs:
            if d["kind"] in ("DaemonSet", "Deployment"):
                self.check_workload(docs, d, images)
        self.check_images(kust, images)
        self.check_node(docs, self.find(docs, "DaemonSet", "sluice-node"))
        self.check_gateway(docs)
        self.check_configmaps(docs)
        self.check_dockerfile(docs)
        self.check_units()

    def check_workload(self, docs, w, images):
        name = f"{w['kind']} {w['metadata']['name']}"
        spec = w["spec"]
        tmpl_labels = spec["template"]["metadata"].get("labels", {})
        sel = spec["selector"].get("matchLabels", {})
        self.expect(sel and all(tmpl_labels.get(k) == v for k, v in sel.items()),
                    f"{name}: selector {sel} does not match template labels {tmpl_labels}")
        pod = spec["template"]["spec"]
        self.expect(not pod.get("hostPID"), f"{name}: hostPID is not needed")
        sa = pod.get("serviceAccountName")
        self.expect(self.find(docs, "ServiceAccount", sa) is not None, f"{name}: service account {sa} not defined")

        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        used = set()
        for c in self.containers(w):
            cname = f"{name}/{c['name']}"
            images.add(c.get("image"))
            for m in c.get("volumeMounts", []):
                used.add(m["name"])
                self.expect(m["name"] in volumes, f"{cname}: mount {m['name']} has no volume")
            res = c.get("resources", {})
            for r in ("cpu", "memory"):
                self.expect(r in res.get("requests", {}), f"{cname}: no {r} request")
            self.expect("memory" in res.get("limits", {}), f"{cname}: no memory limit")
            self.expect(self.binary_of(c) in BINARY_NAMES, f"{cname}: command {c.get('command')} is not a Sluice binary")
            # $(VAR) in args must come from the container's env.
            env = {e["name"] for e in c.get("env", [])}
            for a in c.get("args", []):
                for var in re.findall(r"\$\((\w+)\)", a):
                    self.expect(var in env, f"{cname}: {a} uses $({var}), not in env")
        for v in volumes:
            self.expect(v in used, f"{name}: volume {v} is not mounted")
        for v in volumes.values():
            if "configMap" in v:
                cm = v["configMap"]["name"]
                self.expect(self.find(docs, "ConfigMap", cm) is not None, f"{name}: ConfigMap {cm} not defined")
            if "secret" in v:
                # Istio 1.4's secret naming: istio.<service account>.
                self.expect(v["secret"]["secretName"] == f"istio.{sa}",
                            f"{name}: secret {v['secret']['secretName']} is not istio.{sa}")

    def check_images(self, kust, images):
        version = None
        with open(self.path("meson.build")) as f:
            m = re.search(r"version\s*:\s*'([^']+)'", f.read())
            version = m.group(1) if m else None
        self.expect(len(images) == 1, f"containers use different images: {sorted(images)}")
        image = next(iter(images))
        name, _, tag = image.partition(":")
        self.expect(tag == version, f"image tag {tag} != project version {version}")
        entries = kust.get("images", [])
        self.expect(any(e.get("name") == name for e in entries), f"kustomization images has no entry for {name}")
        for e in entries:
            if "newTag" in e:
                self.expect(str(e["newTag"]) == version, f"kustomization newTag {e['newTag']} != {version}")

    def security(self, pod, c):
        """Effective runAsUser/runAsNonRoot (container over pod) and the container context."""
        psc, csc = pod.get("securityContext", {}), c.get("securityContext", {})
        merged = dict(psc)
        merged.update(csc)
        return merged, csc

    def check_proxy_container(self, name, pod, c):
        sc, csc = self.security(pod, c)
        self.expect(sc.get("runAsUser") == PROXY_UID, f"{name}: runAsUser {sc.get('runAsUser')} != {PROXY_UID}")
        self.expect(sc.get("runAsGroup") == PROXY_UID, f"{name}: runAsGroup != {PROXY_UID}")
        self.expect(sc.get("runAsNonRoot") is True, f"{name}: runAsNonRoot not set")
        self.expect(not csc.get("privileged"), f"{name}: must not be privileged")
        self.expect(csc.get("allowPrivilegeEscalation") is False, f"{name}: allowPrivilegeEscalation not false")
        self.expect(csc.get("readOnlyRootFilesystem") is True, f"{name}: root filesystem not read-only")
        caps = csc.get("capabilities", {})
        self.expect(caps.get("drop") == ["ALL"], f"{name}: capabilities not dropped")
        added = set(caps.get("add", []))
        self.expect(added <= {"NET_ADMIN", "NET_BIND_SERVICE"}, f"{name}: adds {added}")
        marks = self.flag_values(c.get("args", []), "--mark")
        # Without NET_ADMIN there is no SO_MARK: the mark must be off, the uid exempts.
        if "NET_ADMIN" not in added:
            self.expect(marks == ["0"], f"{name}: --mark {marks} without NET_ADMIN (pass --mark=0)")
        admin = self.flag_values(c.get("args", []), "--admin-port")
        self.expect(len(admin) == 1, f"{name}: no single --admin-port")
        return admin[0] if admin else None

    def check_node(self, docs, ds):
        pod = ds["spec"]["template"]["spec"]
        self.expect(pod.get("hostNetwork") is True, "sluice-node: hostNetwork is needed (proxy on the node address)")
        cs = {c["name"]: c for c in self.containers(ds)}
        self.expect(set(cs) == {"agent", "proxy"}, f"sluice-node containers {sorted(cs)}")
        agent, proxy = cs.get("agent"), cs.get("proxy")
        if not agent or not proxy:
            return
        self.expect(self.binary_of(agent) == "sluice-agent", "sluice-node/agent does not run sluice-agent")
        self.expect(self.binary_of(proxy) == "sluice-proxy", "sluice-node/proxy does not run sluice-proxy")
        asc = agent.get("securityContext", {})
        self.expect(asc.get("privileged") is True, "sluice-node/agent: not privileged")
        self.expect(asc.get("runAsUser") == 0, "sluice-node/agent: runAsUser 0 needed (image default is 1337)")
        mounts = {m["name"]: m for m in agent.get("volumeMounts", [])}
        vols = {v["name"]: v for v in pod.get("volumes", [])}
        bpf = [m for m in mounts.values() if m["mountPath"] == "/sys/fs/bpf"]
        self.expect(len(bpf) == 1 and bpf[0].get("mountPropagation") == "Bidirectional",
                    "sluice-node/agent: /sys/fs/bpf must be mounted Bidirectional")
        if bpf:
            self.expect(vols[bpf[0]["name"]].get("hostPath", {}).get("path") == "/sys/fs/bpf",
                        "sluice-node: bpffs volume is not hostPath /sys/fs/bpf")
        cg = [m for m in mounts.values() if vols.get(m["name"], {}).get("hostPath", {}).get("path") == "/sys/fs/cgroup"]
        self.expect(len(cg) == 1 and cg[0].get("readOnly") is True, "sluice-node/agent: host cgroup2 read-only mount")
        aargs = agent.get("args", [])
        for cgroup in self.flag_values(aargs, "--cgroup"):
            self.expect(cg and cgroup.startswith(cg[0]["mountPath"] + "/"),
                        f"sluice-node/agent: --cgroup {cgroup} is not under the host cgroup mount")
        for cm in ("install-options",):
            self.expect(cm in mounts, f"sluice-node/agent: no {cm} mount")
        for conf in self.flag_values(aargs, "--config"):
            self.expect(any(m["mountPath"] == conf for m in mounts.values()), f"sluice-node/agent: --config {conf} not mounted")

        admin = self.check_proxy_container("sluice-node/proxy", pod, proxy)
        pargs = proxy.get("args", [])
        self.expect(self.flag_values(pargs, "--role") == ["sidecar"], "sluice-node/proxy: --role sidecar")
        pmounts = {m["mountPath"] for m in proxy.get("volumeMounts", [])}
        for conf in self.flag_values(pargs, "--config") + self.flag_values(pargs, "--certs"):
            self.expect(conf in pmounts, f"sluice-node/proxy: {conf} not mounted")
        self.expect("/etc/certs" in pmounts, "sluice-node/proxy: mesh certificates not at /etc/certs")

        # The redirect target: downward-API node address, same port on both sides.
        for c in (agent, proxy):
            env = {e["name"]: e for e in c.get("env", [])}
            self.expect(env.get("HOST_IP", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "status.hostIP",
                        f"sluice-node/{c['name']}: HOST_IP not from status.hostIP")
        self.expect(self.flag_values(aargs, "--proxy-ipv4") == ["$(HOST_IP)"], "agent --proxy-ipv4 is not $(HOST_IP)")
        listen = self.flag_values(pargs, "--listen")
        port = self.flag_values(aargs, "--proxy-port")
        self.expect(len(listen) == 1 and listen[0].startswith("$(HOST_IP):"), f"proxy --listen {listen}")
        if listen and port:
            self.expect(listen[0].rsplit(":", 1)[1] == port[0], f"proxy listens on {listen[0]}, agent redirects to {port[0]}")
            cports = [p for p in proxy.get("ports", []) if str(p["containerPort"]) == port[0]]
            self.expect(len(cports) == 1 and cports[0].get("hostPort") == cports[0]["containerPort"],
                        f"sluice-node/proxy: containerPort/hostPort {port[0]} not declared")
        self.expect(self.flag_values(aargs, "--uid") in ([], [str(PROXY_UID)]), "agent --uid is not the proxy's uid")

        # Probes: kubelet's HTTP probes on the node's loopback (hostNetwork).
        for probe, path in (("readinessProbe", "/ready"), ("livenessProbe", "/healthz")):
            g = proxy.get(probe, {}).get("httpGet")
            self.expect(g is not None, f"sluice-node/proxy: {probe} is not httpGet")
            if g:
                self.expect(g.get("host") == "127.0.0.1", f"sluice-node/proxy: {probe} host {g.get('host')}")
                self.expect(str(g.get("port")) == admin, f"sluice-node/proxy: {probe} port {g.get('port')} != admin {admin}")
                self.expect(g.get("path") == path, f"sluice-node/proxy: {probe} path {g.get('path')}")

    def gateways(self, docs):
        """The Gateway resources in the resources ConfigMap."""
        cm = self.find(docs, "ConfigMap", "sluice-istio-resources")
        out = []
        for text in cm["data"].values():
            out += [d for d in yaml.safe_load_all(text) if d and d.get("kind") == "Gateway"]
        return out

    def gateway_ports(self, docs):
        return {s["port"]["number"] for g in self.gateways(docs) for s in g["spec"]["servers"]}

    def gateway_selectors(self, docs):
        return [g["spec"].get("selector", {}) for g in self.gateways(docs)]

    def check_gateway(self, docs):
        dep = self.find(docs, "Deployment", "istio-egressgateway")
        svc = self.find(docs, "Service", "istio-egressgateway")
        pdb = self.find(docs, "PodDisruptionBudget", "istio-egressgateway")
        self.expect(dep["spec"].get("replicas") == 2, "istio-egressgateway: 2 replicas")
        labels = dep["spec"]["template"]["metadata"]["labels"]
        for k, v in (("app", "istio-egressgateway"), ("istio", "egressgateway")):
            self.expect(labels.get(k) == v, f"istio-egressgateway pods lack {k}: {v}")
            self.expect(dep["metadata"]["labels"].get(k) == v, f"istio-egressgateway Deployment lacks {k}: {v}")
            self.expect(svc["metadata"]["labels"].get(k) == v, f"istio-egressgateway Service lacks {k}: {v}")
        sel = svc["spec"]["selector"]
        self.expect(all(labels.get(k) == v for k, v in sel.items()), f"Service selector {sel} misses the gateway pods")
        node_labels = self.find(docs, "DaemonSet", "sluice-node")["spec"]["template"]["metadata"]["labels"]
        self.expect(not all(node_labels.get(k) == v for k, v in sel.items()), "Service selector also selects sluice-node")
        if pdb:
            psel = pdb["spec"]["selector"]["matchLabels"]
            self.expect(all(labels.get(k) == v for k, v in psel.items()), "PDB selector misses the gateway pods")
        want = [("http2", 80), ("https", 443), ("tls", 15443)]  # the walkthrough's Service
        got = [(p["name"], p["port"]) for p in svc["spec"]["ports"]]
        self.expect(got == want, f"Service ports {got} != {want}")
        for p in svc["spec"]["ports"]:
            self.expect(p.get("targetPort") == p["port"], f"Service port {p['name']}: targetPort {p.get('targetPort')}")

        pod = dep["spec"]["template"]["spec"]
        cs = self.containers(dep)
        self.expect(len(cs) == 1, "istio-egressgateway: one container")
        c = cs[0]
        self.expect(self.binary_of(c) == "sluice-proxy", "istio-egressgateway does not run sluice-proxy")
        args = c.get("args", [])
        self.expect(self.flag_values(args, "--role") == ["gateway"], "istio-egressgateway: --role gateway")
        # The gateway serves the Gateways whose selector its --label values
        # match, and those must be its pod's labels (what Istio matches).
        gw_labels = dict(l.split("=", 1) for l in self.flag_values(args, "--label"))
        self.expect(all(labels.get(k) == v for k, v in gw_labels.items()),
                    f"istio-egressgateway: --label {gw_labels} are not its pod labels")
        for sel in self.gateway_selectors(docs):
            self.expect(all(gw_labels.get(k) == v for k, v in sel.items()),
                        f"istio-egressgateway: --label {gw_labels} does not match Gateway selector {sel}")
        self.expect(self.flag_values(args, "--namespace") == ["$(POD_NAMESPACE)"], "--namespace from the downward API")
        admin = self.check_proxy_container("istio-egressgateway", pod, c)
        cports = {p["containerPort"]: p.get("name") for p in c.get("ports", [])}
        self.expect(set(cports) == {80, 443, 15443}, f"gateway containerPorts {sorted(cports)}")
        for p in svc["spec"]["ports"]:
            self.expect(p["targetPort"] in cports, f"Service targetPort {p['targetPort']} not a containerPort")
        for gp in self.gateway_ports(docs):
            self.expect(gp in cports, f"Gateway server port {gp} not a containerPort")
        # Ports below 1024 as a non-root user: the namespaced sysctl, not a capability.
        sysctls = {s["name"]: s["value"] for s in pod.get("securityContext", {}).get("sysctls", [])}
        if any(p < 1024 for p in cports):
            added = set(c.get("securityContext", {}).get("capabilities", {}).get("add", []))
            self.expect(sysctls.get("net.ipv4.ip_unprivileged_port_start") == "0" or "NET_BIND_SERVICE" in added,
                        "gateway binds ports < 1024 as non-root without ip_unprivileged_port_start=0")
        mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
        for conf in self.flag_values(args, "--config") + self.flag_values(args, "--certs"):
            self.expect(conf in mounts, f"istio-egressgateway: {conf} not mounted")
        self.expect("/etc/certs" in mounts, "istio-egressgateway: Gateway certificates not at /etc/certs")
        certs = [v for v in pod["volumes"] if "secret" in v]
        self.expect(certs and not certs[0]["secret"].get("optional", False), "gateway certificates must be required")
        for probe, path in (("readinessProbe", "/ready"), ("livenessProbe", "/healthz")):
            cmd = c.get(probe, {}).get("exec", {}).get("command", [])
            script = cmd[-1] if cmd else ""
            self.expect(cmd[:2] == ["/bin/bash", "-c"], f"istio-egressgateway {probe}: not a bash exec probe")
            self.expect(f"/dev/tcp/127.0.0.1/{admin}" in script, f"istio-egressgateway {probe}: not on admin port {admin}")
            self.expect(f"GET {path} " in script, f"istio-egressgateway {probe}: not {path}")

    def check_configmaps(self, docs):
        istio = self.find(docs, "ConfigMap", "istio")
        with open(self.path("configs", "mesh", "istio-configmap-allow-any.yaml")) as f:
            shipped = yaml.safe_load(f)
        self.expect(istio["data"] == shipped["data"], "ConfigMap istio differs from configs/mesh/istio-configmap-allow-any.yaml")
        self.expect("mode: ALLOW_ANY" in istio["data"]["mesh"], "the walkthrough's grep for 'mode: ALLOW_ANY' would fail")
        res = self.find(docs, "ConfigMap", "sluice-istio-resources")
        wdir = self.path("configs", "walkthrough")
        for key, text in res["data"].items():
            p = os.path.join(wdir, key)
            self.expect(os.path.exists(p), f"sluice-istio-resources/{key}: not in configs/walkthrough")
            if os.path.exists(p):
                with open(p) as f:
                    self.expect(f.read() == text, f"sluice-istio-resources/{key} differs from configs/walkthrough/{key}")
        for want in ("serviceentry-cnn.yaml", "egress-gateway.yaml", "virtualservice-cnn.yaml"):
            self.expect(want in res["data"], f"sluice-istio-resources lacks {want}")

        # What the pods mount, laid out as kubelet does (..data link), must
        # pass `sluicectl analyze` together.
        with tempfile.TemporaryDirectory() as tmp:
            dirs = []
            for name in ("istio", "sluice-istio-resources", "sluice-install-options"):
                cm = self.find(docs, "ConfigMap", name)
                d = os.path.join(tmp, name)
                ts = os.path.join(d, "..2024_01_01_00_00_00.000000001")
                os.makedirs(ts)
                for key, text in cm["data"].items():
                    with open(os.path.join(ts, key), "w") as f:
                        f.write(text)
                os.symlink(os.path.basename(ts), os.path.join(d, "..data"))
                for key in cm["data"]:
                    os.symlink(os.path.join("..data", key), os.path.join(d, key))
                dirs.append(d)
            r = subprocess.run([self.binaries["sluicectl"], "analyze", "-o", "json"] + dirs,
                               capture_output=True, text=True)
            self.expect(r.returncode == 0, f"sluicectl analyze of the mounted ConfigMaps: exit {r.returncode}\n{r.stdout}{r.stderr}")
            self.expect('"resources": 0' not in r.stdout, "sluicectl read no resources from the ConfigMaps")

    def check_dockerfile(self, docs):
        with open(self.path("deploy", "image", "Dockerfile")) as f:
            text = f.read()
        stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, re.M)
        self.expect(len(stages) == 2, f"Dockerfile stages {stages}")
        if len(stages) == 2:
            self.expect(stages[0][0] == "debian:bookworm" and stages[0][1] == "build", f"build stage {stages[0]}")
            self.expect(stages[1][0] == "debian:bookworm-slim", f"runtime stage {stages[1]}")
        installs = re.findall(r"apt-get install[^\n]*?((?:\\\n[^\n]*)+)", text)
        pkgs = [set(re.findall(r"[a-z0-9][a-z0-9.+-]+", re.sub(r"&&.*", "", i.replace("\\\n", " ")))) for i in installs]
        self.expect(len(pkgs) == 2, "Dockerfile: one apt-get install per stage")
        if len(pkgs) != 2:
            return
        build_pkgs, runtime_pkgs = pkgs
        with open(self.path("scripts", "setup")) as f:
            setup = f.read()
        setup_pkgs = set(re.findall(r"[a-z0-9][a-z0-9.+-]+", re.search(r"PACKAGES=\(([^)]*)\)", setup).group(1)))
        self.expect(build_pkgs <= setup_pkgs, f"build stage packages not in scripts/setup: {sorted(build_pkgs - setup_pkgs)}")
        # Every shared library the binaries link comes from a runtime package.
        if shutil.which("dpkg") and shutil.which("ldd"):
            base = {"libc6", "libgcc-s1"}  # in every Debian image
            links = {}  # library path -> binaries
            for name, binary in self.binaries.items():
                out = subprocess.run(["ldd", binary], capture_output=True, text=True).stdout
                for lib in re.findall(r"=>\s+(/\S+)", out):
                    links.setdefault(lib, set()).add(name)
            # One dpkg query for all; merged /usr means a library may be
            # registered under /usr/lib or /lib.
            candidates = {}
            for lib in links:
                real = os.path.realpath(lib)
                for c in {lib, real, "/usr" + real if not real.startswith("/usr/") else real[4:]}:
                    candidates[c] = lib
            r = subprocess.run(["dpkg", "-S"] + sorted(candidates), capture_output=True, text=True)
            owner = {}
            for line in r.stdout.splitlines():
                pkg, _, path = line.partition(": ")
                if path in candidates:
                    owner[candidates[path]] = pkg.split(":")[0]
            for lib, names in sorted(links.items()):
                if lib not in owner:
                    continue  # not from a package (e.g. a library of this build)
                self.expect(owner[lib] in runtime_pkgs | base,
                            f"{', '.join(sorted(names))} links {lib} from {owner[lib]}, not in the runtime stage")
        self.expect("ca-certificates" in runtime_pkgs, "runtime: ca-certificates (TLS to external services)")
        self.expect(re.search(r"useradd[^\n]*(\\\n[^\n]*)*--uid 1337", text) is not None, "Dockerfile: no user with uid 1337")
        self.expect(re.search(r"^USER 1337(:1337)?$", text, re.M) is not None, "Dockerfile: default USER is not 1337")
        for _, d in docs:
            if d["kind"] in ("DaemonSet", "Deployment"):
                for c in self.containers(d):
                    self.expect(f"/out{c['command'][0]}" in text, f"Dockerfile does not install {c['command'][0]}")

    # ------------------------------------------------------------ systemd

    def read_unit(self, name):
        sections, cur = {}, None
        with open(self.path("deploy", "systemd", name)) as f:
            for line in f:
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                if line.startswith("["):
                    cur = sections.setdefault(line.strip("[]"), {})
                    continue
                k, _, v = line.partition("=")
                cur.setdefault(k, []).append(v)
        return sections

    def read_env(self, name):
        env = {}
        with open(self.path("deploy", "systemd", name)) as f:
            for line in f:
                line = line.strip()
                if line and not line.startswith("#"):
                    k, _, v = line.partition("=")
                    env[k] = v
        return env

    def unit_commands(self):
        """(unit, binary, args) for every ExecStart, with $VARS from its EnvironmentFile expanded."""
        out = []
        sdir = self.path("deploy", "systemd")
        for u in sorted(os.listdir(sdir)):
            if not u.endswith(".service"):
                continue
            s = self.read_unit(u)["Service"]
            env = {}
            for ef in s.get("EnvironmentFile", []):
                env.update(self.read_env(os.path.basename(ef)))
            for cmd in s.get("ExecStart", []):
                words = cmd.split()
                args = []
                for w in words[1:]:
                    m = re.fullmatch(r"\$(\w+)", w)
                    if m:
                        self.expect(m.group(1) in env, f"{u}: ${m.group(1)} not set by its EnvironmentFile")
                        args += env.get(m.group(1), "").split()
                    else:
                        args.append(w)
                out.append((u, words[0], args))
        return out

    def check_units(self):
        sdir = self.path("deploy", "systemd")
        files = set(os.listdir(sdir))
        for want in ("sluice-agent.service", "sluice-proxy.service", "sluice-egressgateway.service", "sluice.slice",
                     "sluice-workloads.slice", "agent.env", "proxy.env", "egressgateway.env"):
            self.expect(want in files, f"deploy/systemd/{want} missing")
        for u, binary, args in self.unit_commands():
            self.expect(binary.startswith("@BINDIR@/") and os.path.basename(binary) in BINARY_NAMES,
                        f"{u}: ExecStart {binary} is not @BINDIR@/<sluice binary>")
            s = self.read_unit(u)["Service"]
            for ef in s.get("EnvironmentFile", []):
                self.expect(ef.startswith("@SYSCONFDIR@/sluice/") and os.path.basename(ef) in files,
                            f"{u}: EnvironmentFile {ef} is not one of ours")
        cmds = {u: (b, a) for u, b, a in self.unit_commands()}
        agent_args = cmds["sluice-agent.service"][1]
        proxy_args = cmds["sluice-proxy.service"][1]
        gw_args = cmds["sluice-egressgateway.service"][1]
        for u in ("sluice-proxy.service", "sluice-egressgateway.service"):
            s = self.read_unit(u)["Service"]
            self.expect(s.get("User") == ["sluice-proxy"], f"{u}: User is not sluice-proxy")
            self.expect(s.get("Slice") == ["sluice.slice"], f"{u}: not in sluice.slice (SO_ORIGINAL_DST needs an attached cgroup)")
            self.expect(s.get("NoNewPrivileges") == ["yes"], f"{u}: NoNewPrivileges")
        self.expect(self.read_unit("sluice-proxy.service")["Service"].get("CapabilityBoundingSet") == [""],
                    "sluice-proxy.service: must have no capabilities")
        self.expect(self.flag_values(proxy_args, "--mark") == ["0"], "sluice-proxy.service: --mark 0 (no CAP_NET_ADMIN)")
        cgroups = self.flag_values(agent_args, "--cgroup")
        self.expect(cgroups == [] or "sluice.slice" in cgroups, f"agent --cgroup {cgroups} does not cover sluice.slice")
        port = (self.flag_values(agent_args, "--proxy-port") or ["15001"])[0]
        for l in self.flag_values(proxy_args, "--listen"):
            self.expect(l.rsplit(":", 1)[1] == port, f"sluice-proxy.service listens on {l}, the agent redirects to {port}")
        a1 = self.flag_values(proxy_args, "--admin-port")
        a2 = self.flag_values(gw_args, "--admin-port")
        self.expect(a1 and a2 and a1 != a2, f"VM admin ports collide: proxy {a1}, gateway {a2}")
        self.expect(self.flag_values(gw_args, "--role") == ["gateway"], "sluice-egressgateway.service: --role gateway")
        agent_unit = self.read_unit("sluice-agent.service")["Unit"]
        self.expect("sluice.slice" in " ".join(agent_unit.get("Requires", [])), "sluice-agent.service must require sluice.slice")

    # ------------------------------------------------------------ flags

    def help_flags(self, binary):
        out = subprocess.run([binary, "--help"], capture_output=True, text=True)
        text = out.stdout + out.stderr
        flags = set(re.findall(r"(?m)^\s+(?:-\w,)?(--[a-z0-9][a-z0-9-]*)", text))
        subcommands = set()
        if "Subcommands:" in text:
            for line in text.split("Subcommands:", 1)[1].splitlines():
                m = re.match(r"^\s{2}(\w[\w-]*)\s", line)
                if m:
                    subcommands.add(m.group(1))
        return flags, subcommands

    def check_flags(self):
        uses = []  # (where, binary name, args)
        for fname, d in self.load_docs():
            if d["kind"] in ("DaemonSet", "Deployment"):
                for c in self.containers(d):
                    uses.append((f"{fname} {d['metadata']['name']}/{c['name']}", self.binary_of(c), c.get("args", [])))
        for u, binary, args in self.unit_commands():
            uses.append((f"deploy/systemd/{u}", os.path.basename(binary), args))
        helps = {name: self.help_flags(path) for name, path in self.binaries.items()}
        missing = {}
        for where, name, args in uses:
            flags, subs = helps[name]
            self.expect(flags, f"{name} --help lists no flags")
            for i, a in enumerate(args):
                if a.startswith("--"):
                    flag = a.split("=", 1)[0]
                    if flag not in flags:
                        missing.setdefault((name, flag), []).append(where)
                elif i == 0 and not a.startswith("-"):
                    self.expect(a in subs, f"{where}: {name} has no subcommand {a}")
        for (name, flag), wheres in sorted(missing.items()):
            self.fail(f"{name} has no {flag} (its --help does not list it); used by: {', '.join(sorted(set(wheres)))}")

    # ------------------------------------------------------------ probes

    def check_probes(self):
        if not shutil.which("bash"):
            self.fail("bash not found: the gateway's probes need it")
            return
        dep = self.find(self.load_docs(), "Deployment", "istio-egressgateway")
        c = self.containers(dep)[0]
        admin = self.flag_values(c["args"], "--admin-port")[0]
        state = {"/ready": 200, "/healthz": 200}

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                code = state.get(self.path, 404)
                body = b"x\n"
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

            def handle(self):
                # The probe reads the status line and closes: a reset while
                # the body is written is expected.
                try:
                    super().handle()
                except (ConnectionResetError, BrokenPipeError):
                    pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        port = server.server_address[1]
        t = threading.Thread(target=server.serve_forever, daemon=True)
        t.start()
        try:
            for probe, path in (("readinessProbe", "/ready"), ("livenessProbe", "/healthz")):
                cmd = list(c[probe]["exec"]["command"])
                cmd[-1] = cmd[-1].replace(f"/dev/tcp/127.0.0.1/{admin}", f"/dev/tcp/127.0.0.1/{port}")
                cmd[0] = shutil.which("bash")
                state[path] = 200
                r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
                self.expect(r.returncode == 0, f"{probe} fails against a 200: {r.stderr}")
                state[path] = 503
                r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
                self.expect(r.returncode != 0, f"{probe} passes against a 503")
                state[path] = 200
        finally:
            server.shutdown()
            server.server_close()
        # A closed port: the probe must fail, not hang.
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
        s.close()
        cmd = list(c["readinessProbe"]["exec"]["command"])
        cmd[-1] = cmd[-1].replace(f"/dev/tcp/127.0.0.1/{admin}", f"/dev/tcp/127.0.0.1/{closed}")
        cmd[0] = shutil.which("bash")
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        self.expect(r.returncode != 0, "readinessProbe passes with nothing listening")

    # ------------------------------------------------------------ install

    def run_install(self, root, *extra, ok=True):
        cmd = [self.path("scripts", "install"), "--root", root, "--build-dir", self.args.build_root] + list(extra)
        r = subprocess.run(cmd, capture_output=True, text=True)
        if ok:
            self.expect(r.returncode == 0, f"{' '.join(cmd)}: exit {r.returncode}\n{r.stdout}{r.stderr}")
        return r

    @staticmethod
    def tree(root):
        out = set()
        for dirpath, dirnames, filenames in os.walk(root):
            for n in dirnames + filenames:
                out.add(os.path.relpath(os.path.join(dirpath, n), root))
        return out

    @staticmethod
    def digest(p):
        with open(p, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()

    def check_install(self):
        if os.geteuid() != 0:
            # useradd/groupadd --prefix need root; outside CI this is a skip.
            raise SkipTest("scripts/install round trip: needs root (useradd --prefix)")
        expected_files = {
            "usr/local/bin/sluice-agent", "usr/local/bin/sluice-proxy", "usr/local/bin/sluicectl",
            "usr/local/lib/systemd/system/sluice-agent.service", "usr/local/lib/systemd/system/sluice-proxy.service",
            "usr/local/lib/systemd/system/sluice-egressgateway.service", "usr/local/lib/systemd/system/sluice.slice",
            "usr/local/lib/systemd/system/sluice-workloads.slice", "usr/local/share/doc/sluice/README.md",
            "etc/sluice/agent.env", "etc/sluice/proxy.env", "etc/sluice/egressgateway.env",
            "var/lib/sluice/install-manifest",
        } | {f"etc/sluice/config/{f}" for f in os.listdir(self.path("configs", "default"))}
        shadow = {"etc/passwd", "etc/group", "etc/shadow", "etc/gshadow"}
        with tempfile.TemporaryDirectory() as root:
            os.makedirs(os.path.join(root, "etc"))
            for f in shadow:
                with open(os.path.join(root, f), "w") as out:
                    out.write("root:x:0:0:root:/root:/bin/bash\n" if f == "etc/passwd" else
                              "root:x:0:\n" if f == "etc/group" else "root:*::::::\n" if f == "etc/shadow" else "root:*::\n")
            before = self.tree(root)

            self.run_install(root)
            after = self.tree(root)
            files = {p for p in after - before if os.path.isfile(os.path.join(root, p))}
            # useradd/groupadd keep backups (passwd- ...) as on any system.
            files = {p for p in files if not any(p == s + "-" for s in shadow)}
            self.expect(files == expected_files,
                        f"installed files: extra {sorted(files - expected_files)}, missing {sorted(expected_files - files)}")
            for name, built in self.binaries.items():
                p = os.path.join(root, "usr/local/bin", name)
                self.expect(os.access(p, os.X_OK) and self.digest(p) == self.digest(built), f"{p} is not the built {name}")
            for u in os.listdir(os.path.join(root, "usr/local/lib/systemd/system")):
                with open(os.path.join(root, "usr/local/lib/systemd/system", u)) as f:
                    text = f.read()
                self.expect("@" not in text.replace("@.", ""), f"{u}: unsubstituted placeholder")
                for b in re.findall(r"^ExecStart=(\S+)", text, re.M):
                    self.expect(os.path.exists(root + b), f"{u}: ExecStart {b} not installed")
                for e in re.findall(r"^EnvironmentFile=(\S+)", text, re.M):
                    self.expect(os.path.exists(root + e), f"{u}: EnvironmentFile {e} not installed")
            with open(os.path.join(root, "etc/passwd")) as f:
                self.expect("sluice-proxy:x:1337:1337:" in f.read(), "user sluice-proxy (1337:1337) not created")
            with open(os.path.join(root, "etc/group")) as f:
                self.expect("sluice-proxy:x:1337:" in f.read(), "group sluice-proxy (1337) not created")
            self.check_units_with_systemd(root)

            # Reinstall: same files, same manifest; a locally changed config survives.
            with open(os.path.join(root, "var/lib/sluice/install-manifest")) as f:
                manifest = f.read()
            proxy_env = os.path.join(root, "etc/sluice/proxy.env")
            with open(proxy_env, "a") as f:
                f.write("# changed locally\n")
            self.run_install(root)
            self.expect(self.tree(root) == after, "reinstall changed the file list")
            with open(proxy_env) as f:
                self.expect(f.read().endswith("# changed locally\n"), "reinstall overwrote a changed config file")
            with open(os.path.join(root, "var/lib/sluice/install-manifest")) as f:
                self.expect(f.read() == manifest, "reinstall changed the manifest")

            # Uninstall keeps the changed file (and what holds it), removes the rest.
            r = self.run_install(root, "--uninstall")
            self.expect("kept /etc/sluice/proxy.env" in r.stdout, f"--uninstall did not report the kept file:\n{r.stdout}")
            left = {p for p in self.tree(root) - before if not any(p == s + "-" for s in shadow)}
            want_left = {"etc/sluice", "etc/sluice/proxy.env", "var", "var/lib", "var/lib/sluice",
                         "var/lib/sluice/install-manifest"}
            self.expect(left == want_left, f"after --uninstall: {sorted(left)}, expected {sorted(want_left)}")
            with open(os.path.join(root, "etc/passwd")) as f:
                self.expect("sluice-proxy" not in f.read(), "--uninstall left the user")
            with open(os.path.join(root, "etc/group")) as f:
                self.expect("sluice-proxy" not in f.read(), "--uninstall left the group")

            self.run_install(root, "--uninstall", "--purge")
            left = {p for p in self.tree(root) - before if not any(p == s + "-" for s in shadow)}
            self.expect(left == set(), f"after --uninstall --purge: {sorted(left)}")
            r = self.run_install(root, "--uninstall", ok=False)
            self.expect(r.returncode == 1 and "nothing to uninstall" in r.stderr, "uninstalling twice must say so")

        # --prefix moves binaries, units and docs; the units point at it.
        with tempfile.TemporaryDirectory() as root:
            self.run_install(root, "--prefix", "/opt/sluice")
            unit = os.path.join(root, "opt/sluice/lib/systemd/system/sluice-proxy.service")
            self.expect(os.path.exists(unit), "--prefix /opt/sluice: units not under it")
            if os.path.exists(unit):
                with open(unit) as f:
                    self.expect("ExecStart=/opt/sluice/bin/sluice-proxy " in f.read(), "--prefix: ExecStart not rewritten")
            self.expect(not os.path.exists(os.path.join(root, "usr")), "--prefix /opt/sluice still wrote /usr")
            r = self.run_install(root, "--uninstall")
            self.expect(self.tree(root) == set(), f"--prefix round trip left {sorted(self.tree(root))}")

        r = subprocess.run([self.path("scripts", "install"), "--bogus"], capture_output=True, text=True)
        self.expect(r.returncode == 2, "an unknown option must exit 2")

    def check_units_with_systemd(self, root):
        """systemd-analyze verify on the installed units, paths pointed into the staged root."""
        sa = shutil.which("systemd-analyze")
        if not sa:
            print("systemd-analyze not found: unit verification skipped")
            return
        with tempfile.TemporaryDirectory() as tmp:
            udir = os.path.join(root, "usr/local/lib/systemd/system")
            names = sorted(os.listdir(udir))
            for u in names:
                with open(os.path.join(udir, u)) as f:
                    text = f.read()
                text = text.replace("=/usr/local/bin/", f"={root}/usr/local/bin/").replace("=/etc/sluice/", f"={root}/etc/sluice/")
                with open(os.path.join(tmp, u), "w") as f:
                    f.write(text)
            r = subprocess.run([sa, "verify"] + [os.path.join(tmp, u) for u in names], capture_output=True, text=True,
                               env=dict(os.environ, SYSTEMD_LOG_LEVEL="notice"), timeout=120)
            out = (r.stdout + r.stderr).strip()
            self.expect(r.returncode == 0 and not out, f"systemd-analyze verify: exit {r.returncode}\n{out}")


class SkipTest(Exception):
    pass


class ManifestError(Exception):
    pass


def main():
    p = argparse.ArgumentParser()
    p.add_argument("check", choices=["manifests", "flags", "probes", "install"])
    p.add_argument("--source-root", required=True)
    p.add_argument("--build-root", required=True)
    p.add_argument("--agent", required=True)
    p.add_argument("--proxy", required=True)
    p.add_argument("--ctl", required=True)
    args = p.parse_args()
    in_ci = os.environ.get("CI") == "true"
    if yaml is None and args.check != "install":
        print("python3-yaml is missing: apt-get install python3-yaml", file=sys.stderr)
        return 1 if in_ci else 77
    c = Checker(args)
    try:
        getattr(c, "check_" + args.check)()
    except SkipTest as e:
        print(f"skip: {e}", file=sys.stderr)
        return 1 if in_ci else 77
    except ManifestError as e:
        c.fail(str(e))
    for e in c.errors:
        print("FAIL: " + e, file=sys.stderr)
    if c.errors:
        print(f"{len(c.errors)} problem(s) in check '{args.check}'", file=sys.stderr)
        return 1
    print(f"ok: {args.check}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
