"""The kubelet: a real ``corral server`` and ``corral agent``s joined with the join token, the
agent's pods in a network namespace the test made (``--node-netns``), images from the agent's
images directory, kubectl (1.32 and 1.20) as the user. No scheduler: manifests set
spec.nodeName.

The module's finalizer stops the agent, removes every pod it left in the runtime, collects,
and checks that nothing is left: no mount below the tmp directory, no pod cgroup, no monitor
or container process, no IPAM lease; then the namespace and the server go."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.kubelet.agent import AgentConfig, pod_options
from runtime.pod import api
from runtime.pod.prepare import mounts_under
from testkit.imagebuild import config_for, docker_files, tar_tree, write_tar
from testkit.kubeagent import Agent
from testkit.net import free_port
from testkit.netns import NodeNs, node_netns
from testkit.wait import until as wait_until
from tests.conftest import leftover_cgroups
from tests.kubeserver import KUBECTL_120, KUBECTL_CURRENT, Kubectl, Server

pytestmark = pytest.mark.root

IMAGE = "corral-test:latest"
NODE = "node-a"
WAIT = 120.0  # seconds: a generous bound for a condition, never an assertion on speed
ADOPT_PODS = int(os.environ.get("CORRAL_TEST_ADOPT_PODS", "20"))


def until(what: str, cond: Callable[[], Any], timeout: float = WAIT) -> Any:
    return wait_until(what, cond, timeout, 0.2)


def alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


class Cluster:
    def __init__(self, server: Server, agent: Agent, netns: NodeNs, home: Path) -> None:
        self.server = server
        self.agent = agent
        self.netns = netns
        self.home = home
        self.pids: set[int] = set()

    def kubectl(self, version: str = "1.32") -> Kubectl:
        binary = KUBECTL_CURRENT if version == "1.32" else KUBECTL_120
        if not os.access(binary, os.X_OK):
            pytest.skip(f"kubectl {version} not found at {binary} (scripts/setup.sh)")
        home = self.home / version
        home.mkdir(exist_ok=True)
        return Kubectl(binary, home, self.server.kubeconfig, version)

    @property
    def opts(self) -> api.PodOptions:
        cfg = AgentConfig(
            server="",
            token="",
            data_dir=self.agent.data_dir,
            node_netns=self.agent.node_netns,
            cgroup_parent=self.agent.cgroup_parent,
        )
        return pod_options(cfg, self.agent.data_dir / "network.json")

    def runtime_pods(self) -> list[api.PodStatus]:
        out = api.list_pods(self.opts)
        for st in out:
            self.pids.update(p for p in [st.monitor_pid] + [c.pid for c in st.all_containers] if p)
        return out

    def pod(self, name: str, ns: str = "default") -> dict[str, Any]:
        code, body = self.server.json("GET", f"/api/v1/namespaces/{ns}/pods/{name}")
        return body if code == 200 else {}

    def wait_running(self, name: str, ns: str = "default") -> dict[str, Any]:
        def ready() -> dict[str, Any] | None:
            p = self.pod(name, ns)
            st = p.get("status") or {}
            cs = st.get("containerStatuses") or []
            if st.get("phase") == "Running" and cs and all(c.get("ready") for c in cs):
                return p
            return None

        try:
            return until(f"pod {ns}/{name} to be Running and ready", ready)
        except AssertionError:
            pod = self.pod(name, ns)
            uid = (pod.get("metadata") or {}).get("uid", "?")
            monitor = [  # the pod's monitor log, wherever the runtime keeps the pod now
                f"{log}: {log.read_text(errors='replace')[-2000:]}"
                for log in self.agent.data_dir.glob(f"**/{uid}/monitor.log")
            ]
            raise AssertionError(
                f"pod {ns}/{name}: {json.dumps(pod.get('status'))}\n"
                f"agent log: {self.agent.log.read_text()[-3000:]}\n"
                f"monitor log: {monitor or 'none found'}"
            ) from None

    def delete_all_pods(self) -> None:
        k = self.kubectl()
        k.run("delete", "pods", "--all", "--all-namespaces", "--wait=false", check=False)
        until(
            "every pod to be gone", lambda: not self.server.json("GET", "/api/v1/pods")[1]["items"]
        )


def manifest(name: str, script: str = "", **spec: Any) -> dict[str, Any]:
    # A shell that stops at once on SIGTERM (pid 1 ignores it otherwise).
    script = script or "trap 'exit 0' TERM; while true; do sleep 0.2; done"
    containers = spec.pop("containers", None) or [
        {"name": "app", "image": IMAGE, "command": ["sh", "-c", script]}
    ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"nodeName": NODE, "containers": containers, **spec},
    }


@contextlib.contextmanager
def cluster_context(
    rootfs: Path, tmp: Path, agent_extra: tuple[str, ...] = (), preload_image: bool = True
) -> Iterator[Cluster]:
    """A server and an agent (node NODE, its own network namespace) for a test module; the
    agent gets ``agent_extra`` and, with ``preload_image``, IMAGE in its images directory.
    On the way out it checks that nothing is left (see the module doc)."""
    from runtime.pod.monitor import monitor_path

    try:
        monitor_path()
    except FileNotFoundError as e:
        pytest.skip(f"the pod monitor is not built yet: {e}")
    tag = f"ckl{uuid.uuid4().hex[:6]}"
    server = Server(tmp / "server")
    server.start()
    netns = node_netns()
    agent = Agent(
        f"https://127.0.0.1:{server.port}",
        server.data_dir / "token",
        tmp / "agent",
        NODE,
        netns.path,
        tag,
        extra=("--kubelet-port", str(free_port()), *agent_extra),
    )
    agent.images_dir.mkdir(parents=True)
    if preload_image:
        layer = tar_tree(rootfs)
        files, _ = docker_files([layer], config_for([layer], Cmd=["sh"]), repo_tags=[IMAGE])
        write_tar(agent.images_dir / "corral-test.tar", files)
    c = Cluster(server, agent, netns, tmp / "home")
    c.home.mkdir()
    try:
        agent.start()
        yield c
    finally:
        problems: dict[str, Any] = {}
        try:
            if agent.proc is not None and agent.proc.poll() is None:
                try:  # the agent's own way out: stop, remove, delete for good
                    c.delete_all_pods()
                except AssertionError as e:
                    problems["pods the agent did not delete"] = str(e)
            agent.kill()
            for st in c.runtime_pods():
                api.remove(st.uid, c.opts, force=True)
            gc = api.gc(c.opts)
            problems["gc errors"] = gc.errors
            problems["mounts"] = mounts_under(tmp)
            problems["cgroups"] = [
                os.path.join(d, x)
                for top in leftover_cgroups(tag)
                for d, dirs, _ in os.walk(top)
                for x in dirs
            ]
            problems["processes"] = sorted(p for p in c.pids if alive(p))
            from runtime.network import NodeNetwork, load_config

            net = NodeNetwork(load_config(agent.data_dir / "network.json"), netns.path)
            problems["addresses"] = net.ipam.allocations()
        finally:
            for mp in mounts_under(tmp):
                subprocess.run(["umount", "-l", mp], check=False)
            for path in sorted(leftover_cgroups(tag), key=len, reverse=True):
                try:
                    os.rmdir(path)
                except OSError:
                    pass
            netns.close()
            server.stop()
        left = {k: v for k, v in problems.items() if v}
        assert not left, f"left behind: {left}"


@pytest.fixture(scope="module")
def cluster(rootfs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with cluster_context(rootfs, tmp_path_factory.mktemp("kubelet")) as c:
        yield c


# ============================================================================= joining


def test_a_wrong_token_gets_a_clear_error_and_no_node(cluster: Cluster, tmp_path: Path) -> None:
    good = (cluster.server.data_dir / "token").read_text().strip()
    wrong_secret = good.rsplit("::server:", 1)[0] + "::server:not-the-secret"
    wrong_ca = "K10" + "0" * 64 + "::server:" + good.rsplit("::server:", 1)[1]
    for token, says in (
        (wrong_secret, "the join token was refused"),
        (wrong_ca, "does not match the join token"),
    ):
        intruder = Agent(
            cluster.agent.server_url,
            cluster.agent.token_file,
            tmp_path / "x",
            "intruder",
            cluster.netns.path,
            "x",
        )
        argv = intruder.argv(token)
        p = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert p.returncode == 1, p
        assert says in p.stderr, p.stderr
        assert not (intruder.data_dir / "cred" / "client-kubelet.key").exists()
    code, _ = cluster.server.json("GET", "/api/v1/nodes/intruder")
    assert code == 404


def test_the_agent_credentials_are_a_node_certificate(cluster: Cluster) -> None:
    from cryptography import x509

    cred = cluster.agent.data_dir / "cred"
    for f in ("client-kubelet.key", "client-kubelet.crt", "server-ca.crt"):
        assert (cred / f).stat().st_mode & 0o777 == 0o600, f
    cert = x509.load_pem_x509_certificate((cred / "client-kubelet.crt").read_bytes())
    assert cert.subject.rfc4514_string() == f"CN=system:node:{NODE},O=system:nodes"
    # the cluster-wide reader of its NetworkPolicy enforcement (k3s' system:k3s-controller)
    for f in ("client-controller.key", "client-controller.crt"):
        assert (cred / f).stat().st_mode & 0o777 == 0o600, f
    cert = x509.load_pem_x509_certificate((cred / "client-controller.crt").read_bytes())
    assert cert.subject.rfc4514_string() == "CN=system:corral-controller"


def test_corral_server_runs_its_own_agent_unless_disabled(tmp_path: Path) -> None:
    """k3s style: one command, one node (no pod is run here: its pods would use the host's
    network namespace)."""
    # on the host's network namespace: no nftables rules of its own (proxy, policies)
    server = Server(
        tmp_path / "own", agent=True, extra=("--disable-proxy", "--disable-network-policy")
    )
    server.start()
    try:
        node = socket.gethostname().lower()

        def ready() -> bool:
            code, body = server.json("GET", f"/api/v1/nodes/{node}")
            if code != 200:
                return False
            conds = {c["type"]: c["status"] for c in body["status"].get("conditions") or []}
            return conds.get("Ready") == "True"

        until("the server's own node", ready)
        _, body = server.json("GET", f"/api/v1/nodes/{node}")
        assert body["metadata"]["labels"]["node-role.kubernetes.io/control-plane"] == "true"
        assert (server.data_dir / "agent" / "cred" / "client-kubelet.crt").exists()
    finally:
        assert server.stop() == 0


# ============================================================================= the node


@pytest.mark.parametrize("version", ["1.32", "1.20"])
def test_node_registered_ready_with_lease(cluster: Cluster, version: str) -> None:
    k = cluster.kubectl(version)
    out = k.run("get", "nodes", "-o", "wide").stdout.splitlines()
    assert out[0].split()[:7] == [
        "NAME", "STATUS", "ROLES", "AGE", "VERSION", "INTERNAL-IP", "EXTERNAL-IP",
    ]  # fmt: skip
    row = next(line.split() for line in out[1:] if line.split()[0] == NODE)
    assert row[1] == "Ready" and row[5] == "127.0.0.1", out
    assert row[-1].startswith("corral://"), out
    node = json.loads(k.run("get", "node", NODE, "-o", "json").stdout)
    st = node["status"]
    assert set(st["capacity"]) >= {"cpu", "memory", "pods", "ephemeral-storage"}
    assert st["capacity"]["pods"] == "110"
    assert int(st["capacity"]["cpu"]) >= 1
    conds = {c["type"]: c for c in st["conditions"]}
    assert conds["Ready"]["status"] == "True"
    for typ in ("MemoryPressure", "DiskPressure", "PIDPressure"):
        assert conds[typ]["status"] == "False" and conds[typ]["lastHeartbeatTime"]
    assert {a["type"] for a in st["addresses"]} == {"InternalIP", "Hostname"}
    info = st["nodeInfo"]
    assert info["kernelVersion"] == os.uname().release
    assert info["operatingSystem"] == "linux" and info["architecture"]
    labels = node["metadata"]["labels"]
    assert labels["kubernetes.io/hostname"] == NODE and labels["kubernetes.io/os"] == "linux"

    def images() -> list[dict[str, Any]]:
        _, body = cluster.server.json("GET", f"/api/v1/nodes/{NODE}")
        return body["status"].get("images") or []

    until("the node's images in its status", lambda: any(IMAGE in i["names"] for i in images()))
    assert all(i["sizeBytes"] > 0 for i in images())
    described = k.run("describe", "node", NODE).stdout
    for text in ("Ready", "KubeletReady", "MemoryPressure", "Capacity:", "Allocatable:",
                 "Container Runtime Version:  corral://", "InternalIP:  127.0.0.1"):  # fmt: skip
        assert text in described, (text, described)
    # The kubelet's node events (by the node's name as uid, as describe asks for them):
    # Starting, each pressure condition's first value, and Ready once the network is.
    rows = described.split("\nEvents:", 1)[1].splitlines()[3:]
    events = {(r.split()[1], r.split(None, 4)[4]) for r in rows if r.strip()}
    assert {
        ("Starting", "Starting kubelet."),
        *((e, f"Node {NODE} status is now: {e}") for e in (
            "NodeHasSufficientMemory", "NodeHasNoDiskPressure", "NodeHasSufficientPID",
            "NodeReady",
        )),
    } <= events, described  # fmt: skip
    lease = json.loads(k.run("get", "lease", "-n", "kube-node-lease", NODE, "-o", "json").stdout)
    assert lease["spec"]["holderIdentity"] == NODE
    first = lease["spec"]["renewTime"]

    def renewed() -> bool:
        _, body = cluster.server.json(
            "GET", f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{NODE}"
        )
        return body["spec"]["renewTime"] != first

    until("the node lease to be renewed", renewed, timeout=40)


def test_cordon_and_uncordon_are_node_events(cluster: Cluster) -> None:
    """The kubelet records its node's spec.unschedulable changes as kube's does: ``kubectl
    describe node`` after a cordon lists NodeNotSchedulable, after the uncordon
    NodeSchedulable."""
    k = cluster.kubectl()
    for verb, event in (("cordon", "NodeNotSchedulable"), ("uncordon", "NodeSchedulable")):
        k.run(verb, NODE)
        until(
            f"the {event} event",
            lambda e=event: (
                f"{e}  " in k.run("describe", "node", NODE).stdout.split("Events:")[1]
                and f"Node {NODE} status is now: {e}" in k.run("describe", "node", NODE).stdout
            ),
        )


# ============================================================================= pods


@pytest.mark.parametrize("version", ["1.32", "1.20"])
def test_apply_runs_the_pod_and_reports_its_status(cluster: Cluster, version: str) -> None:
    k = cluster.kubectl(version)
    name = f"web-{version.replace('.', '')}"
    m = manifest(name)
    m["spec"]["containers"][0]["resources"] = {
        "requests": {"cpu": "10m", "memory": "16Mi"},
        "limits": {"cpu": "10m", "memory": "16Mi"},
    }
    k.run("apply", "-f", "-", input=json.dumps(m))
    pod = cluster.wait_running(name)
    st = pod["status"]
    assert st["hostIP"] == "127.0.0.1" and st["hostIPs"] == [{"ip": "127.0.0.1"}]
    assert st["podIP"].startswith("10.42.0.") and st["podIPs"] == [{"ip": st["podIP"]}]
    assert st["qosClass"] == "Guaranteed"
    assert st["startTime"]
    conds = {c["type"]: c for c in st["conditions"]}
    for typ in ("PodScheduled", "Initialized", "ContainersReady", "Ready"):
        assert conds[typ]["status"] == "True" and conds[typ]["lastTransitionTime"], typ
    (cs,) = st["containerStatuses"]
    assert cs["name"] == "app" and cs["ready"] and cs["started"] and cs["restartCount"] == 0
    assert "running" in cs["state"] and cs["state"]["running"]["startedAt"]
    assert cs["image"] == IMAGE and cs["imageID"].startswith("sha256:")
    (rt,) = [p for p in cluster.runtime_pods() if p.name == name]
    assert rt.uid == pod["metadata"]["uid"]
    assert cs["containerID"] == f"corral://{rt.uid}/app/0"
    assert alive(rt.containers[0].pid)
    out = k.run("get", "pod", name, "-o", "wide").stdout
    assert "Running" in out and "1/1" in out and NODE in out and st["podIP"] in out

    def described() -> str | None:
        text = k.run("describe", "pod", name).stdout
        return text if all(r in text for r in ("Pulled", "Created", "Started")) else None

    until("Pulled, Created and Started events", described)
    k.run("delete", "pod", name)  # waits for the kubelet to delete it for good
    assert cluster.pod(name) == {}
    assert not [p for p in cluster.runtime_pods() if p.name == name]


def test_graceful_deletion_stops_the_pod_and_removes_it(cluster: Cluster, tmp_path: Path) -> None:
    k = cluster.kubectl()
    # The handler takes a second: only a stop that grants the grace period lets it finish.
    script = "trap 'sleep 1; echo bye > /out/said; exit 0' TERM; while true; do sleep 0.2; done"
    m = manifest("graceful", script, volumes=[{"name": "out", "hostPath": {"path": str(tmp_path)}}])
    m["spec"]["containers"][0]["volumeMounts"] = [{"name": "out", "mountPath": "/out"}]
    k.run("apply", "-f", "-", input=json.dumps(m))
    pod = cluster.wait_running("graceful")
    (rt,) = [p for p in cluster.runtime_pods() if p.name == "graceful"]
    pid = rt.containers[0].pid
    assert alive(pid)
    k.run("delete", "pod", "graceful", "--wait=false")
    meta = cluster.pod("graceful").get("metadata") or {}
    assert meta.get("deletionTimestamp"), "a pod bound to a node waits for its kubelet"
    until("the pod to be deleted for good", lambda: cluster.pod("graceful") == {})
    assert not alive(pid)
    assert (tmp_path / "said").read_text() == "bye\n", "SIGTERM, then the grace period"
    assert not [p for p in cluster.runtime_pods() if p.name == "graceful"]
    selector = f"involvedObject.uid={pod['metadata']['uid']}"

    def reasons() -> set[str]:
        out = k.run("get", "events", "--field-selector", selector, "-o", "json").stdout
        return {e["reason"] for e in json.loads(out)["items"]}

    until("a Killing event", lambda: "Killing" in reasons())
    # Deleted for good once: a sync before the watch brings the deletion asks nothing more
    # (a node may not touch a pod the API no longer has).
    said = [ln for ln in cluster.agent.log.read_text().splitlines() if "graceful" in ln]
    assert not [ln for ln in said if "forbidden" in ln], "\n".join(said)


def test_a_pre_stop_hook_runs_before_the_signal(cluster: Cluster, tmp_path: Path) -> None:
    """preStop exec runs in the container, to its end, before SIGTERM; a failed one is a
    FailedPreStopHook event and the stop goes on."""
    k = cluster.kubectl()
    script = "trap 'echo term >> /out/order; exit 0' TERM; while true; do sleep 0.2; done"
    m = manifest("prestop", script, volumes=[{"name": "out", "hostPath": {"path": str(tmp_path)}}])
    c0 = m["spec"]["containers"][0]
    c0["volumeMounts"] = [{"name": "out", "mountPath": "/out"}]
    hook = ["sh", "-c", "sleep 1; echo hook >> /out/order"]
    c0["lifecycle"] = {"preStop": {"exec": {"command": hook}}}
    m["spec"]["terminationGracePeriodSeconds"] = 10
    bad = manifest("badhook", "trap 'exit 0' TERM; while true; do sleep 0.2; done")
    bad["spec"]["containers"][0]["lifecycle"] = {"preStop": {"exec": {"command": ["false"]}}}
    for obj in (m, bad):
        k.run("apply", "-f", "-", input=json.dumps(obj))
    cluster.wait_running("prestop")
    uid = cluster.wait_running("badhook")["metadata"]["uid"]
    k.run("delete", "pod", "prestop", "badhook", "--wait=false")
    until("the pods deleted", lambda: cluster.pod("prestop") == {} == cluster.pod("badhook"))
    assert (tmp_path / "order").read_text() == "hook\nterm\n"

    def reasons() -> set[str]:
        out = k.run("get", "events", "--field-selector", f"involvedObject.uid={uid}", "-o", "json")
        return {e["reason"] for e in json.loads(out.stdout)["items"]}

    until("a FailedPreStopHook event", lambda: "FailedPreStopHook" in reasons())
    # a handler the kubelet does not run reaches the node runtime, which names it
    m = manifest("poststart", "sleep 600")
    m["spec"]["containers"][0]["lifecycle"] = {"postStart": {"exec": {"command": ["true"]}}}
    k.run("apply", "-f", "-", input=json.dumps(m))

    def refused() -> str:
        st = cluster.pod("poststart").get("status") or {}
        text = json.dumps(st)
        return text if "lifecycle" in text else ""

    assert "not supported by corral" in until("the refusal", refused)
    k.run("delete", "pod", "poststart", "--wait=false")


def test_a_missing_image_gives_err_image_pull_then_back_off(cluster: Cluster) -> None:
    k = cluster.kubectl()
    m = manifest("noimage", containers=[{"name": "app", "image": "no-such-image:1.0"}])
    k.run("apply", "-f", "-", input=json.dumps(m))
    reasons: set[str] = set()

    def seen_both() -> bool:
        cs = (cluster.pod("noimage").get("status") or {}).get("containerStatuses") or []
        if cs:
            reasons.add(cs[0]["state"].get("waiting", {}).get("reason", ""))
        return {"ErrImagePull", "ImagePullBackOff"} <= reasons

    until("ErrImagePull, then ImagePullBackOff", seen_both)
    assert cluster.pod("noimage")["status"]["phase"] == "Pending"
    assert not [p for p in cluster.runtime_pods() if p.name == "noimage"]
    text = k.run("describe", "pod", "noimage").stdout
    assert 'Failed to pull image "no-such-image:1.0"' in text and "BackOff" in text
    uid = cluster.pod("noimage")["metadata"]["uid"]

    def pull_failures() -> list[dict[str, Any]]:
        out = k.run("get", "events", "--field-selector", f"involvedObject.uid={uid}", "-o", "json")
        return [
            e for e in json.loads(out.stdout)["items"]
            if e["message"].startswith("Failed to pull image")
        ]  # fmt: skip

    # the retry after the back-off fails again: counted on the same Event, as kubelets do
    until("a repeated pull failure", lambda: any(e["count"] >= 2 for e in pull_failures()))
    assert len(pull_failures()) == 1
    k.run("delete", "pod", "noimage")


def test_a_pod_the_node_cannot_make_says_why(cluster: Cluster, tmp_path: Path) -> None:
    k = cluster.kubectl()
    missing = tmp_path / "not-there"
    m = manifest("nohost", volumes=[{"name": "h", "hostPath": {"path": str(missing),
                                                               "type": "Directory"}}])  # fmt: skip
    m["spec"]["containers"][0]["volumeMounts"] = [{"name": "h", "mountPath": "/h"}]
    m2 = manifest("nofield")
    m2["spec"]["containers"][0]["lifecycle"] = {"postStart": {"exec": {"command": ["true"]}}}
    k.run("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                "items": [m, m2]}))  # fmt: skip

    def waiting(name: str) -> dict[str, Any]:
        cs = (cluster.pod(name).get("status") or {}).get("containerStatuses") or [{}]
        return cs[0].get("state", {}).get("waiting") or {}

    until("CreateContainerError", lambda: waiting("nohost").get("reason") == "CreateContainerError")
    assert (
        "volume h" in waiting("nohost")["message"] and str(missing) in waiting("nohost")["message"]
    )
    until("CreateContainerConfigError",
          lambda: waiting("nofield").get("reason") == "CreateContainerConfigError")  # fmt: skip
    assert "lifecycle" in waiting("nofield")["message"]  # a field the node does not implement
    assert not [p for p in cluster.runtime_pods() if p.name in ("nohost", "nofield")]
    k.run("delete", "pod", "nohost", "nofield")


def _runtime_class(name: str, handler: str, **extra: Any) -> dict[str, Any]:
    return {"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
            "metadata": {"name": name}, "handler": handler, **extra}  # fmt: skip


@pytest.mark.skipif(not shutil.which("runc"), reason="runc is not installed")
@pytest.mark.parametrize("version", ["1.32", "1.20"])
def test_a_runtime_class_picks_the_pods_runtime(cluster: Cluster, version: str) -> None:
    """RuntimeClass (node.k8s.io/v1): kubectl's columns; the handler is immutable; a pod
    naming one gets its overhead and scheduling (RuntimeClass admission) and runs through the
    OCI runtime its handler names on the node (runc holds the container); a class that is
    not there is refused at admission, a handler the node lacks is FailedCreatePodSandBox."""
    k = cluster.kubectl(version)
    sel = {"kubernetes.io/hostname": NODE}
    classes = [
        _runtime_class(
            "rc-runc",
            "runc",
            overhead={"podFixed": {"memory": "16Mi"}},
            scheduling={"nodeSelector": sel},
        ),  # fmt: skip
        _runtime_class("rc-gvisor", "gvisor"),
    ]
    k.run("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                "items": classes}))  # fmt: skip
    try:
        lines = k.run("get", "runtimeclasses").stdout.splitlines()
        assert lines[0].split() == ["NAME", "HANDLER", "AGE"], lines
        assert ["rc-runc", "runc"] in [line.split()[:2] for line in lines[1:]], lines
        p = k.run("patch", "runtimeclass", "rc-gvisor", "--type", "merge", "-p",
                  '{"handler":"other"}', check=False)  # fmt: skip
        assert p.returncode != 0 and "handler: Invalid value" in p.stderr, p.stderr
        assert "field is immutable" in p.stderr, p.stderr
        gone = manifest("rc-none", runtimeClassName="rc-missing")
        p = k.run("apply", "-f", "-", input=json.dumps(gone), check=False)
        assert p.returncode != 0, p
        assert 'pod rejected: RuntimeClass "rc-missing" not found' in p.stderr, p.stderr
        pods = [manifest("rc-pod", runtimeClassName="rc-runc"),
                manifest("rc-bad", runtimeClassName="rc-gvisor")]  # fmt: skip
        k.run("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                    "items": pods}))  # fmt: skip
        pod = cluster.wait_running("rc-pod")
        assert pod["spec"]["overhead"] == {"memory": "16Mi"}, pod["spec"]
        assert pod["spec"]["nodeSelector"] == sel, pod["spec"]
        root = cluster.agent.data_dir / "pods" / "run" / pod["metadata"]["uid"] / "runtime"
        state = subprocess.run(["runc", "--root", str(root), "state", "app"],
                               capture_output=True, text=True)  # fmt: skip
        assert state.returncode == 0 and json.loads(state.stdout)["status"] == "running", state

        def waiting() -> dict[str, Any]:
            cs = (cluster.pod("rc-bad").get("status") or {}).get("containerStatuses") or [{}]
            return cs[0].get("state", {}).get("waiting") or {}

        until("ContainerCreating", lambda: waiting().get("reason") == "ContainerCreating")
        want = (
            "Failed to create pod sandbox: rpc error: code = Unknown desc = failed to get"
            ' sandbox runtime: no runtime for "gvisor" is configured'
        )
        assert waiting().get("message") == want, waiting()
        text = k.run("describe", "pod", "rc-bad").stdout
        assert "FailedCreatePodSandBox" in text and 'no runtime for "gvisor"' in text, text
        assert not [p for p in cluster.runtime_pods() if p.name == "rc-bad"]
    finally:
        k.run("delete", "pod", "rc-pod", "rc-bad", "--ignore-not-found", "--wait=true")
        k.run("delete", "runtimeclass", "rc-runc", "rc-gvisor", "--ignore-not-found")


def test_an_image_dropped_in_the_images_dir_is_imported_and_used(
    cluster: Cluster, rootfs: Path
) -> None:
    k = cluster.kubectl()
    image = f"late-{uuid.uuid4().hex[:6]}:1.0"
    m = manifest("late", containers=[{"name": "app", "image": image,
                                      "command": ["sh", "-c", "sleep 3600"]}])  # fmt: skip
    k.run("apply", "-f", "-", input=json.dumps(m))
    until("ErrImagePull", lambda: "ErrImagePull" in json.dumps(cluster.pod("late")))
    layer = tar_tree(rootfs)
    files, _ = docker_files([layer], config_for([layer], Cmd=["sh"]), repo_tags=[image])
    tmp = cluster.agent.root / "late.tar.part"
    write_tar(tmp, files)
    os.rename(tmp, cluster.agent.images_dir / "late.tar")  # appears whole
    pod = cluster.wait_running("late")
    assert pod["status"]["containerStatuses"][0]["image"] == image
    assert api.image_id(image, cluster.opts) is not None
    k.run("delete", "pod", "late", "--grace-period=1")


def test_api_volumes_and_their_updates(cluster: Cluster) -> None:
    k = cluster.kubectl()
    objects = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "settings"},
            "data": {"greeting": "hello"},
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "creds"},
            "data": {"password": base64.b64encode(b"s3cret").decode()},
        },
    ]
    k.run("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                "items": objects}))  # fmt: skip
    labels_item = {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}
    name_item = {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}
    m = manifest(
        "withconfig",
        volumes=[
            {"name": "cfg", "configMap": {"name": "settings"}},
            {"name": "sec", "secret": {"secretName": "creds"}},
            {"name": "info", "downwardAPI": {"items": [labels_item]}},
            {
                "name": "all",
                "projected": {
                    "sources": [
                        {"configMap": {"name": "settings"}},
                        {"downwardAPI": {"items": [name_item]}},
                    ]
                },
            },
        ],
    )
    m["metadata"]["labels"] = {"app": "demo"}
    m["spec"]["containers"][0]["volumeMounts"] = [
        {"name": "cfg", "mountPath": "/etc/cfg"},
        {"name": "sec", "mountPath": "/etc/sec"},
        {"name": "info", "mountPath": "/etc/podinfo"},
        {"name": "all", "mountPath": "/etc/all"},
    ]
    k.run("apply", "-f", "-", input=json.dumps(m))
    pod = cluster.wait_running("withconfig")
    uid = pod["metadata"]["uid"]

    def cat(path: str) -> bytes:
        cmd = ["cat", path]
        return api.exec_in(uid, cluster.opts, cmd, stdout=subprocess.PIPE).stdout

    assert cat("/etc/cfg/greeting") == b"hello"
    assert cat("/etc/sec/password") == b"s3cret"
    link = api.exec_in(uid, cluster.opts, ["readlink", "/etc/cfg/greeting"], stdout=subprocess.PIPE)
    assert link.stdout.strip() == b"..data/greeting"
    # the agent's copy of the secret is on a tmpfs, never on its disk
    sources = cluster.agent.data_dir / "volume-sources" / uid / "secret"
    assert os.path.ismount(sources)
    assert (
        "tmpfs"
        in subprocess.run(
            ["stat", "-f", "-c", "%T", str(sources)], capture_output=True, text=True
        ).stdout
    )
    assert cat("/etc/podinfo/labels") == b'app="demo"'
    assert cat("/etc/all/greeting") == b"hello" and cat("/etc/all/name") == b"withconfig"
    k.run("apply", "-f", "-", input=json.dumps({**objects[0], "data": {"greeting": "bye"}}))
    until("the configMap update in the mounted file", lambda: cat("/etc/cfg/greeting") == b"bye")
    until("the update in the projected volume", lambda: cat("/etc/all/greeting") == b"bye")
    more = {**objects[0], "data": {"greeting": "bye", "extra": "new key"}}
    k.run("apply", "-f", "-", input=json.dumps(more))
    until("a new key in the volume", lambda: cat("/etc/cfg/extra") == b"new key")
    k.run("label", "pod", "withconfig", "tier=front")
    until(
        "the new label in the downwardAPI volume",
        lambda: cat("/etc/podinfo/labels") == b'app="demo"\ntier="front"',
    )
    k.run("delete", "pod", "withconfig")
    assert not os.path.exists(sources.parent), "the pod's sources outlived it"
    k.run("delete", "configmap", "settings")
    k.run("delete", "secret", "creds")


# ============================================================================= logs


@pytest.mark.parametrize("version", ["1.32", "1.20"])
def test_kubectl_logs_through_the_kubelet(cluster: Cluster, version: str) -> None:
    k = cluster.kubectl(version)
    name = f"talker-{version.replace('.', '')}"
    script = (
        "trap 'exit 0' TERM; echo first; echo second; echo third; i=0;"
        " while true; do sleep 0.3; i=$((i+1)); echo tick $i; done"
    )
    k.run("apply", "-f", "-", input=json.dumps(manifest(name, script)))
    cluster.wait_running(name)
    until("three lines", lambda: "third" in k.run("logs", name).stdout)
    out = k.run("logs", name).stdout.splitlines()
    assert out[:3] == ["first", "second", "third"]
    assert k.run("logs", name, "--tail=1").stdout.count("\n") == 1
    stamped = k.run("logs", name, "--timestamps", "--tail=3").stdout.splitlines()
    assert len(stamped) == 3 and all(
        line.split(" ", 1)[0].endswith("Z") and line.split(" ", 1)[0][:4].isdigit()
        for line in stamped
    )
    assert k.run("logs", name, "-c", "app", "--limit-bytes=6").stdout == "first\n"
    missing = k.run("logs", name, "-c", "nope", check=False)
    assert missing.returncode != 0 and "nope" in missing.stderr
    # sinceSeconds further back than datetime goes: every line (it was a 500 from the kubelet's
    # OverflowError); a sinceTime that is no time: 400 from the API server
    log = f"/api/v1/namespaces/default/pods/{name}/log"
    code, _, body = cluster.server.request("GET", f"{log}?sinceSeconds={2**62}")
    assert code == 200 and body.splitlines()[:3] == [b"first", b"second", b"third"], body
    code, _, body = cluster.server.request("GET", f"{log}?sinceTime=yesterday")
    assert code == 400 and json.loads(body)["reason"] == "BadRequest", body
    # follow: lines written after kubectl started arrive while it runs
    proc = k.popen("logs", "-f", name, "--tail=1")
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("tick"), first
        n = int(first.split()[1])
        later = proc.stdout.readline()
        assert later.strip() == f"tick {n + 1}", later
    finally:
        proc.kill()
        proc.wait()
    k.run("delete", "pod", name)


def test_the_kubelet_port_refuses_other_clients(cluster: Cluster) -> None:
    import ssl
    import urllib.error
    import urllib.request

    port = int(cluster.agent.extra[cluster.agent.extra.index("--kubelet-port") + 1])
    cred = cluster.agent.data_dir / "cred"
    ctx = ssl.create_default_context(cafile=str(cred / "server-ca.crt"))
    ctx.load_cert_chain(cred / "client-kubelet.crt", cred / "client-kubelet.key")  # a node's
    url = f"https://127.0.0.1:{port}/containerLogs/default/x/app"
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(url, context=ctx, timeout=30)
    assert e.value.code == 403
    anonymous = ssl.create_default_context(cafile=str(cred / "server-ca.crt"))
    with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(url, context=anonymous, timeout=30)


# ============================================================================= adoption


def test_pods_survive_kill_9_of_the_agent_and_are_adopted(cluster: Cluster) -> None:
    k = cluster.kubectl()
    docs = [manifest(f"keep-{i}") for i in range(ADOPT_PODS)]
    k.run("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                "items": docs}))  # fmt: skip
    for d in docs:
        cluster.wait_running(d["metadata"]["name"])

    def snapshot() -> dict[str, tuple[str, int, int | None, str | None]]:
        out = {}
        for p in cluster.runtime_pods():
            c = p.containers[0]
            out[p.name] = (p.uid, c.restart_count, c.pid, c.started_at)
        return out

    before = snapshot()
    api_before = {d["metadata"]["name"]: cluster.pod(d["metadata"]["name"]) for d in docs}
    missing = sorted(set(api_before) - set(before))
    assert not missing, (
        f"running in the API but not in the runtime: {missing}\n"
        + "\n".join(json.dumps(api_before[n].get("status")) for n in missing)
        + f"\nagent log: {cluster.agent.log.read_text()[-6000:]}"
    )
    cluster.agent.kill()
    assert all(alive(v[2]) for v in before.values()), "pods died with their agent"
    cluster.agent.start()
    # A resync of every pod: the agent reported them again (a change in the API would show),
    # and nothing in the runtime was made or started again.
    time.sleep(3)
    after = snapshot()
    assert after == before
    for name, old in api_before.items():
        new = cluster.pod(name)
        assert new["metadata"]["uid"] == old["metadata"]["uid"]
        (cs_old,), (cs_new,) = (
            old["status"]["containerStatuses"],
            new["status"]["containerStatuses"],
        )
        assert cs_new["containerID"] == cs_old["containerID"]
        assert cs_new["restartCount"] == cs_old["restartCount"] == 0
        assert new["status"]["phase"] == "Running"
    # A clean stop (SIGTERM) leaves them running too.
    assert cluster.agent.stop() == 0
    assert all(alive(v[2]) for v in before.values()), "pods died with a stopped agent"
    cluster.agent.start()
    time.sleep(3)
    assert snapshot() == before
    # Both restarts used the credentials got at the first join.
    log = cluster.server.log.read_text()
    assert log.count(f"issued node credentials for {NODE} ") == 1, log
    # The adopted pods are the agent's: it still stops them.
    cluster.delete_all_pods()
    assert not cluster.runtime_pods()
    assert not any(alive(v[2]) for v in before.values())


def test_the_agent_rides_out_a_restart_of_the_server(cluster: Cluster) -> None:
    k = cluster.kubectl()
    assert cluster.server.stop() == 0
    time.sleep(2)
    cluster.server.start()  # same data, same port
    k.run("apply", "-f", "-", input=json.dumps(manifest("after-restart")))
    cluster.wait_running("after-restart")

    def renewed_since_restart() -> bool:
        _, body = cluster.server.json(
            "GET", f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{NODE}"
        )
        renew = body["spec"]["renewTime"]
        return renew > time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(started))

    started = time.time()
    until("the lease renewed against the new server", renewed_since_restart, timeout=40)
    k.run("delete", "pod", "after-restart")


# ============================================================================= pod CIDR


def test_a_pod_cidr_given_to_the_node_is_taken(cluster: Cluster) -> None:
    """Last in the module: the node's pods get addresses from the new range from then on."""
    code, _ = cluster.server.json(
        "PATCH",
        f"/api/v1/nodes/{NODE}",
        {"spec": {"podCIDR": "10.42.7.0/24", "podCIDRs": ["10.42.7.0/24"]}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert code == 200
    config = cluster.agent.data_dir / "network.json"
    until("the agent to take the podCIDR", lambda: "10.42.7.0/24" in config.read_text())
    k = cluster.kubectl()
    k.run("apply", "-f", "-", input=json.dumps(manifest("ranged")))
    pod = cluster.wait_running("ranged")
    assert pod["status"]["podIP"].startswith("10.42.7."), pod["status"]["podIP"]
    k.run("delete", "pod", "ranged")
