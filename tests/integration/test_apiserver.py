"""``corral server`` driven by kubectl 1.32 (the machine's) and 1.20 (Debian's
kubernetes-client): one server for the module, one namespace per kubectl version."""

from __future__ import annotations

import json
import os
import queue
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kubeserver import API_ONLY, KUBECTL_120, KUBECTL_CURRENT, Kubectl, Server

WAIT = 60.0  # seconds a watch may take to show an event before the test fails


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # The API server alone: these tests assert on the objects they make.
    srv = Server(tmp_path_factory.mktemp("apiserver"), extra=API_ONLY)
    srv.start()
    try:
        yield srv
    finally:
        rc = srv.stop()
    assert rc == 0, f"corral server did not stop cleanly on SIGTERM: {rc}"


@pytest.fixture(scope="module", params=["1.32", "1.20"])
def kubectl(
    request: pytest.FixtureRequest, server: Server, tmp_path_factory: pytest.TempPathFactory
) -> Kubectl:
    binary = KUBECTL_CURRENT if request.param == "1.32" else KUBECTL_120
    if not os.access(binary, os.X_OK):
        pytest.skip(f"kubectl {request.param} not found at {binary} (scripts/setup.sh)")
    home = tmp_path_factory.mktemp(f"home-{request.param}")
    k = Kubectl(binary, home, server.kubeconfig, request.param)
    ns = "k" + request.param.replace(".", "-")
    k.run("create", "namespace", ns) if request.param == "1.20" else k.run(
        "create",
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
    )
    k.ns = ns  # type: ignore[attr-defined]
    return k


def _pod(name: str, labels: dict[str, str] | None = None, image: str = "nginx:1.21") -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": labels or {"app": name}},
            "spec": {"containers": [{"name": "app", "image": image}]},
        }
    )


def _deployment(name: str, replicas: int, image: str) -> str:
    return f"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  labels: {{app: {name}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers:
      - name: app
        image: {image}
        ports: [{{containerPort: 80}}]
"""


def test_files_and_modes(server: Server) -> None:
    assert stat.S_IMODE(server.kubeconfig.stat().st_mode) == 0o600
    tls = server.data_dir / "tls"
    for key in tls.glob("*.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    assert stat.S_IMODE((server.data_dir / "token").stat().st_mode) == 0o600
    assert (server.data_dir / "token").read_text().startswith("K10")
    log = server.log.read_text()
    assert f"admin kubeconfig written to {server.kubeconfig}" in log


def test_anonymous_refused(server: Server) -> None:
    code, body = server.json("GET", "/api/v1/namespaces", client_cert=False)
    assert code == 401
    assert body["kind"] == "Status" and body["reason"] == "Unauthorized"
    code, body = server.json("GET", "/api/v1/namespaces")
    assert code == 200
    names = {i["metadata"]["name"] for i in body["items"]}
    assert {"default", "kube-system", "kube-public", "kube-node-lease"} <= names


def test_discovery(kubectl: Kubectl) -> None:
    out = kubectl.run("api-resources").stdout
    lines: dict[str, list[str]] = {}  # the first of a name: metrics.k8s.io has pods and nodes
    for ln in out.splitlines()[1:]:
        lines.setdefault(ln.split()[0], ln.split())
    assert "po" in lines["pods"] and "deploy" in lines["deployments"]
    assert "true" in lines["pods"] and "false" in lines["nodes"]
    assert "coordination.k8s.io/v1" in lines["leases"]
    out = kubectl.run("get", "all", "-n", kubectl.ns).stdout  # type: ignore[attr-defined]
    assert "the server doesn't have" not in out


def test_pod_crud(kubectl: Kubectl, tmp_path: Path) -> None:
    ns = kubectl.ns  # type: ignore[attr-defined]
    f = tmp_path / "pod.json"
    f.write_text(_pod("web"))
    assert kubectl.run("create", "-n", ns, "-f", str(f)).stdout.strip() == "pod/web created"
    p = kubectl.run("create", "-n", ns, "-f", str(f), check=False)
    assert p.returncode == 1
    assert (
        f'Error from server (AlreadyExists): error when creating "{f}": pods "web" already exists'
        in p.stderr
    )
    out = kubectl.run("get", "pods", "-n", ns, "-o", "wide").stdout.splitlines()
    assert out[0].split() == [
        "NAME",
        "READY",
        "STATUS",
        "RESTARTS",
        "AGE",
        "IP",
        "NODE",
        "NOMINATED",
        "NODE",
        "READINESS",
        "GATES",
    ]
    assert out[1].split()[:4] == ["web", "0/1", "Pending", "0"]
    pod = json.loads(kubectl.run("get", "pod", "web", "-n", ns, "-o", "json").stdout)
    meta = pod["metadata"]
    assert meta["uid"] and meta["creationTimestamp"] and int(meta["resourceVersion"]) > 0
    assert pod["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"  # defaulted
    assert pod["status"]["phase"] == "Pending"
    assert "name: web" in kubectl.run("get", "pod", "web", "-n", ns, "-o", "yaml").stdout

    kubectl.run("label", "pod", "web", "-n", ns, "tier=front")
    kubectl.run("annotate", "pod", "web", "-n", ns, "note=hello")
    assert kubectl.run(
        "get", "pods", "-n", ns, "-l", "tier=front", "-o", "name"
    ).stdout.split() == ["pod/web"]
    assert kubectl.run("get", "pods", "-n", ns, "-l", "tier!=front", "-o", "name").stdout == ""
    out = kubectl.run("get", "pods", "-A").stdout.splitlines()
    assert out[0].split()[0] == "NAMESPACE"
    assert any(ln.split()[:2] == [ns, "web"] for ln in out[1:])

    kubectl.run(
        "patch",
        "pod",
        "web",
        "-n",
        ns,
        "-p",
        '{"spec":{"containers":[{"name":"app","image":"nginx:1.22"}]}}',
    )
    kubectl.run(
        "patch",
        "pod",
        "web",
        "-n",
        ns,
        "--type=merge",
        "-p",
        '{"metadata":{"labels":{"merged":"yes"}}}',
    )
    kubectl.run(
        "patch",
        "pod",
        "web",
        "-n",
        ns,
        "--type=json",
        "-p",
        '[{"op":"add","path":"/metadata/labels/json","value":"yes"}]',
    )
    pod = json.loads(kubectl.run("get", "pod", "web", "-n", ns, "-o", "json").stdout)
    assert pod["spec"]["containers"][0]["image"] == "nginx:1.22"
    assert len(pod["spec"]["containers"]) == 1
    assert pod["metadata"]["labels"] == {
        "app": "web",
        "tier": "front",
        "merged": "yes",
        "json": "yes",
    }
    assert pod["metadata"]["annotations"] == {"note": "hello"}

    out = kubectl.run("describe", "pod", "web", "-n", ns).stdout
    assert "Name:" in out and "web" in out and "nginx:1.22" in out

    p = kubectl.run("get", "pod", "nosuch", "-n", ns, check=False)
    assert p.returncode == 1
    assert 'Error from server (NotFound): pods "nosuch" not found' in p.stderr

    assert kubectl.run("delete", "pod", "web", "-n", ns).stdout.strip() == 'pod "web" deleted'
    p = kubectl.run("get", "pod", "web", "-n", ns, check=False)
    assert 'pods "web" not found' in p.stderr


def test_apply_patches_changed_manifest(kubectl: Kubectl, tmp_path: Path) -> None:
    ns = kubectl.ns  # type: ignore[attr-defined]
    f = tmp_path / "deploy.yaml"
    f.write_text(_deployment("demo", 2, "nginx:1.20"))
    assert "deployment.apps/demo created" in kubectl.run("apply", "-n", ns, "-f", str(f)).stdout
    assert "unchanged" in kubectl.run("apply", "-n", ns, "-f", str(f)).stdout
    f.write_text(_deployment("demo", 4, "nginx:1.21"))
    assert "configured" in kubectl.run("apply", "-n", ns, "-f", str(f)).stdout
    d = json.loads(kubectl.run("get", "deploy", "demo", "-n", ns, "-o", "json").stdout)
    assert d["spec"]["replicas"] == 4
    assert d["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.21"
    assert d["spec"]["template"]["spec"]["containers"][0]["ports"] == [
        {"containerPort": 80, "protocol": "TCP"}
    ]
    assert d["metadata"]["generation"] == 2
    assert "kubectl.kubernetes.io/last-applied-configuration" in d["metadata"]["annotations"]
    out = kubectl.run("get", "deploy", "-n", ns, "-o", "wide").stdout.splitlines()
    assert out[0].split() == [
        "NAME",
        "READY",
        "UP-TO-DATE",
        "AVAILABLE",
        "AGE",
        "CONTAINERS",
        "IMAGES",
        "SELECTOR",
    ]
    assert out[1].split()[:4] == ["demo", "0/4", "0", "0"]
    assert out[1].split()[5:] == ["app", "nginx:1.21", "app=demo"]
    assert "scaled" in kubectl.run("scale", "deploy", "demo", "-n", ns, "--replicas=3").stdout
    d = json.loads(kubectl.run("get", "deploy", "demo", "-n", ns, "-o", "json").stdout)
    assert d["spec"]["replicas"] == 3
    out = kubectl.run("describe", "deploy", "demo", "-n", ns).stdout
    assert "Replicas:" in out and "3 desired" in out
    kubectl.run("delete", "-n", ns, "-f", str(f))
    assert kubectl.run("get", "deploy", "-n", ns, "-o", "name").stdout == ""


class Lines:
    """The lines a process prints, read by a thread (select() on a buffered pipe would miss
    lines already in the buffer)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.queue: queue.Queue[str | None] = queue.Queue()
        self.got: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.queue.put(line.rstrip("\n"))
        self.queue.put(None)

    def until(self, prefix: str) -> None:
        """Collect lines until one starts with ``prefix`` (or WAIT passes)."""
        deadline = time.monotonic() + WAIT
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.queue.get(timeout=left)
            except queue.Empty:
                return
            if line is None:
                return
            self.got.append(line)
            if line.startswith(prefix):
                return


def test_watch_sees_changes(kubectl: Kubectl) -> None:
    ns = kubectl.ns  # type: ignore[attr-defined]
    kubectl.run("create", "-n", ns, "-f", "-", input=_pod("watched"))
    watcher = kubectl.popen("get", "pods", "-n", ns, "-w", "--output-watch-events")
    lines = Lines(watcher)
    got = lines.got
    try:
        lines.until("ADDED")  # the initial list: the watch runs from here
        kubectl.run("label", "pod", "watched", "-n", ns, "seen=yes")
        kubectl.run("delete", "pod", "watched", "-n", ns)
        lines.until("DELETED")
    finally:
        watcher.kill()
        watcher.wait()
    events = [ln.split()[:3] for ln in got if not ln.startswith("EVENT")]
    assert events == [
        ["ADDED", "watched", "0/1"],
        ["MODIFIED", "watched", "0/1"],
        ["DELETED", "watched", "0/1"],
    ], got


def test_errors_print_as_kubernetes(kubectl: Kubectl, tmp_path: Path) -> None:
    ns = kubectl.ns  # type: ignore[attr-defined]
    bad = json.dumps(
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bad"}, "spec": {"containers": []}}
    )
    p = kubectl.run("create", "-n", ns, "-f", "-", input=bad, check=False)
    assert p.returncode == 1
    assert 'The Pod "bad" is invalid: spec.containers: Required value' in p.stderr, p.stderr

    p = kubectl.run("create", "-n", "nosuchns", "-f", "-", input=_pod("x"), check=False)
    assert 'namespaces "nosuchns" not found' in p.stderr

    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"a": "1"}}
    kubectl.run("create", "-n", ns, "-f", "-", input=json.dumps(cm))
    stale = json.loads(kubectl.run("get", "cm", "cfg", "-n", ns, "-o", "json").stdout)
    kubectl.run("label", "cm", "cfg", "-n", ns, "v=2")
    f = tmp_path / "cfg.json"
    stale["data"]["a"] = "2"
    f.write_text(json.dumps(stale))
    p = kubectl.run("replace", "-n", ns, "-f", str(f), check=False)
    assert p.returncode == 1
    assert (
        'Error from server (Conflict): error when replacing "' + str(f) + '": Operation cannot'
        ' be fulfilled on configmaps "cfg": the object has been modified; please apply your'
        " changes to the latest version and try again" in p.stderr
    ), p.stderr
    live = json.loads(kubectl.run("get", "cm", "cfg", "-n", ns, "-o", "json").stdout)
    assert live["data"] == {"a": "1"}
    kubectl.run("delete", "cm", "cfg", "-n", ns)


def test_tables(kubectl: Kubectl) -> None:
    out = kubectl.run("get", "ns").stdout.splitlines()
    assert out[0].split() == ["NAME", "STATUS", "AGE"]
    assert any(ln.split()[:2] == ["default", "Active"] for ln in out)
    ns = kubectl.ns  # type: ignore[attr-defined]
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "tbl"},
        "data": {"a": "1", "b": "2"},
    }
    kubectl.run("create", "-n", ns, "-f", "-", input=json.dumps(cm))
    out = kubectl.run("get", "cm", "tbl", "-n", ns).stdout.splitlines()
    assert out[0].split() == ["NAME", "DATA", "AGE"] and out[1].split()[:2] == ["tbl", "2"]
    lease = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "l1"},
        "spec": {"holderIdentity": "me"},
    }
    kubectl.run("create", "-n", ns, "-f", "-", input=json.dumps(lease))
    out = kubectl.run("get", "leases", "-n", ns).stdout.splitlines()
    assert out[0].split() == ["NAME", "HOLDER", "AGE"] and out[1].split()[:2] == ["l1", "me"]
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": f"node-{ns}"}}
    kubectl.run("create", "-f", "-", input=json.dumps(node))
    out = kubectl.run("get", "nodes").stdout.splitlines()
    assert out[0].split() == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    assert any(ln.split()[:3] == [f"node-{ns}", "Unknown", "<none>"] for ln in out)
    kubectl.run("delete", "node", f"node-{ns}")
    kubectl.run("delete", "cm", "tbl", "-n", ns)
    kubectl.run("delete", "lease", "l1", "-n", ns)
