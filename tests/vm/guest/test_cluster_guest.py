"""The cluster on a unified cgroup v2 host: ``corral server`` with its own agent (a node on the
VM, as ``k3s server``) runs Deployments of Guaranteed, Burstable and BestEffort pods, and the
pod cgroups are the kubelet's on v2.

These run inside the test VM (tests/vm/test_cgroup_v2.py boots it and runs tests/vm/guest/
there); elsewhere they skip. The VM is the node: the agent's pods go to the cgroup root's
``kubepods`` tree (as a kubelet's do, not below the test's cgroup) and its pod network is the
VM's own. One server for the module, kubectl (the host's, seen by the guest) as the user; the
guest is slow, so each test checks several things on the same pods.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from testkit.imagebuild import config_for, docker_files, tar_tree, write_tar
from testkit.wait import until
from tests.kubeserver import KUBECTL_CURRENT, Kubectl, Server
from tests.vm.guest import why_not_unified_v2

ROOT = Path("/sys/fs/cgroup")
KUBEPODS = ROOT / "kubepods"
IMAGE = "corral-test:latest"
MiB = 1 << 20
# Generous bounds for the emulated guest (17-45x slower than the host); never a speed check.
START = 600.0
WAIT = 600.0

pytestmark = [
    pytest.mark.root,
    pytest.mark.cgroup_v2,
    pytest.mark.skipif(why_not_unified_v2() is not None, reason=why_not_unified_v2() or ""),
    pytest.mark.skipif(not os.access(KUBECTL_CURRENT, os.X_OK), reason="kubectl not found"),
]

# Each container prints its own cgroup's limits (a cgroup namespace: /sys/fs/cgroup is its
# cgroup), then waits for SIGTERM.
SCRIPT = (
    "echo memory.max=$(cat /sys/fs/cgroup/memory.max) cpu.max=$(cat /sys/fs/cgroup/cpu.max); "
    "trap 'exit 0' TERM; while true; do sleep 1; done"
)


def deployment(name: str, replicas: int, resources: dict[str, Any]) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "terminationGracePeriodSeconds": 5,
                    "containers": [
                        {
                            "name": "app",
                            "image": IMAGE,
                            "imagePullPolicy": "Never",
                            "command": ["sh", "-c", SCRIPT],
                            "resources": resources,
                        }
                    ],
                },
            },
        },
    }


# name: (replicas, resources, QoS class, the pod cgroup's parent, memory.max, cpu.max)
CASES: dict[str, tuple[int, dict[str, Any], str, Path, str, str]] = {
    "guaranteed": (
        2,
        {"limits": {"cpu": "250m", "memory": "48Mi"}},  # requests default to the limits
        "Guaranteed",
        KUBEPODS,
        str(48 * MiB),
        "25000 100000",
    ),
    "burstable": (
        1,
        {
            "requests": {"cpu": "100m", "memory": "16Mi"},
            "limits": {"cpu": "500m", "memory": "96Mi"},
        },
        "Burstable",
        KUBEPODS / "burstable",
        str(96 * MiB),
        "50000 100000",
    ),
    "besteffort": (1, {}, "BestEffort", KUBEPODS / "besteffort", "max", "max 100000"),
}
# The container's own limits: the same as its pod's (one container per pod).


def shares_to_weight(shares: int) -> int:
    """cgroup v1 cpu.shares [2, 262144] to v2 cpu.weight [1, 10000], as runc and the kubelet."""
    return 1 + ((shares - 2) * 9999) // 262142


class Cluster:
    def __init__(self, server: Server, kubectl: Kubectl, manifest: Path) -> None:
        self.server = server
        self.kubectl = kubectl
        self.manifest = manifest

    def pods(self) -> list[dict[str, Any]]:
        code, body = self.server.json("GET", "/api/v1/namespaces/default/pods")
        assert code == 200, body
        return body["items"]

    def log_tail(self) -> str:
        return self.server.log.read_text(errors="replace")[-4000:]


@pytest.fixture(scope="module")
def cluster(rootfs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("cluster")
    server = Server(tmp / "server", agent=True, start_deadline=START)
    # The server's agent imports the archives in <data-dir>/agent/images when it starts.
    images = server.data_dir / "agent" / "images"
    images.mkdir(parents=True)
    layer = tar_tree(rootfs)
    files, _ = docker_files([layer], config_for([layer], Cmd=["sh"]), repo_tags=[IMAGE])
    write_tar(images / "corral-test.tar", files)
    manifest = tmp / "deployments.yaml"
    manifest.write_text(
        yaml.safe_dump_all(deployment(n, case[0], case[1]) for n, case in CASES.items())
    )
    home = tmp / "home"
    home.mkdir()
    server.start()
    c = Cluster(server, Kubectl(KUBECTL_CURRENT, home, server.kubeconfig, "1.32"), manifest)
    try:
        yield c
    finally:
        # What a failed test left: the agent deletes the pods (monitors, cgroups) before the
        # server stops.
        try:
            c.kubectl.run("delete", "--ignore-not-found", "-f", str(manifest), check=False)
            until("every pod gone", lambda: not c.pods(), WAIT, 1.0)
        finally:
            server.stop()


def _ready(pod: dict[str, Any]) -> bool:
    st = pod.get("status") or {}
    cs = st.get("containerStatuses") or []
    return st.get("phase") == "Running" and bool(cs) and all(c.get("ready") for c in cs)


def _running_pods(c: Cluster) -> dict[str, list[dict[str, Any]]]:
    """The Deployments' pods by Deployment, once every replica is Running and ready."""
    want = sum(case[0] for case in CASES.values())

    def all_ready() -> list[dict[str, Any]] | None:
        pods = [p for p in c.pods() if not p["metadata"].get("deletionTimestamp")]
        return pods if len(pods) == want and all(_ready(p) for p in pods) else None

    try:
        pods = until("every replica Running and ready", all_ready, WAIT, 1.0)
    except AssertionError:
        raise AssertionError(
            json.dumps([p.get("status") for p in c.pods()], indent=1) + "\n" + c.log_tail()
        ) from None
    by_app: dict[str, list[dict[str, Any]]] = {n: [] for n in CASES}
    for p in pods:
        by_app[p["metadata"]["labels"]["app"]].append(p)
    return by_app


def _pod_cgroups() -> list[Path]:
    return [Path(d) for d, _, _ in os.walk(KUBEPODS) if os.path.basename(d).startswith("pod")]


def test_deployments_with_limits_are_scheduled_and_run(cluster: Cluster) -> None:
    k = cluster.kubectl
    assert (
        "deployment.apps/guaranteed created" in k.run("apply", "-f", str(cluster.manifest)).stdout
    )
    by_app = _running_pods(cluster)
    nodes = json.loads(k.run("get", "nodes", "-o", "json").stdout)["items"]
    assert len(nodes) == 1
    node = nodes[0]
    assert node["spec"].get("podCIDR"), node  # from the nodeipam controller
    for name, (replicas, _, qos, _, _, _) in CASES.items():
        assert len(by_app[name]) == replicas, by_app
        for pod in by_app[name]:
            assert pod["spec"]["nodeName"] == node["metadata"]["name"]  # the scheduler bound it
            assert pod["status"]["qosClass"] == qos, (name, pod["status"])
            assert pod["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"
    deploys = json.loads(k.run("get", "deployments", "-o", "json").stdout)["items"]
    ready = {d["metadata"]["name"]: d["status"].get("readyReplicas") for d in deploys}
    assert ready == {n: case[0] for n, case in CASES.items()}


def test_pod_cgroups_are_the_kubelets_qos_tree(cluster: Cluster) -> None:
    by_app = _running_pods(cluster)
    # The QoS parents: kubepods, and burstable and besteffort in it, every controller a pod
    # cgroup's limits need handed down to them.
    for parent in (KUBEPODS, KUBEPODS / "burstable", KUBEPODS / "besteffort"):
        assert parent.is_dir(), parent
    for parent in (ROOT, KUBEPODS, KUBEPODS / "burstable", KUBEPODS / "besteffort"):
        enabled = set((parent / "cgroup.subtree_control").read_text().split())
        assert {"cpu", "memory"} <= enabled, (parent, enabled)
    pod_dirs = set()
    for name, (_, resources, _, parent, memory_max, cpu_max) in CASES.items():
        for pod in by_app[name]:
            uid = pod["metadata"]["uid"]
            cg = parent / f"pod{uid}"
            assert cg.is_dir(), f"{name}: no {cg}; kubepods has {sorted(os.listdir(KUBEPODS))}"
            pod_dirs.add(cg)
            assert (cg / "memory.max").read_text().strip() == memory_max, name
            assert (cg / "cpu.max").read_text().strip() == cpu_max, name
            request = resources.get("requests", resources.get("limits", {})).get("cpu")
            shares = int(request.removesuffix("m")) * 1024 // 1000 if request else 2
            assert (cg / "cpu.weight").read_text().strip() == str(shares_to_weight(shares))
            # The container's processes are in a cgroup of the pod's, with the same limits.
            containers = [
                d for d in cg.iterdir() if d.is_dir() and (d / "cgroup.procs").read_text()
            ]
            assert containers, f"{name}: no process below {cg}"
            for d in containers:
                assert (d / "memory.max").read_text().strip() == memory_max, d
                assert (d / "cpu.max").read_text().strip() == cpu_max, d
    # Only these pods' cgroups: none elsewhere in the tree.
    assert set(_pod_cgroups()) == pod_dirs


def test_containers_see_their_own_limits(cluster: Cluster) -> None:
    by_app = _running_pods(cluster)
    for name, (_, _, _, _, memory_max, cpu_max) in CASES.items():
        pod = by_app[name][0]["metadata"]["name"]
        line = until(
            f"the log of {pod}",
            lambda pod=pod: cluster.kubectl.run("logs", pod, check=False).stdout.strip(),
            WAIT,
            1.0,
        )
        assert line.splitlines()[0] == f"memory.max={memory_max} cpu.max={cpu_max}", name


def test_scaling_down_and_deleting_remove_the_pod_cgroups(cluster: Cluster) -> None:
    by_app = _running_pods(cluster)
    k = cluster.kubectl
    k.run("scale", "deployment/guaranteed", "--replicas=1")
    before = {p["metadata"]["uid"] for p in by_app["guaranteed"]}

    def one_left() -> bool:
        pods = [p for p in cluster.pods() if p["metadata"]["labels"]["app"] == "guaranteed"]
        gone = before - {p["metadata"]["uid"] for p in pods}
        return len(pods) == 1 and len(gone) == 1 and not (KUBEPODS / f"pod{gone.pop()}").exists()

    until("one guaranteed pod left and the other's cgroup removed", one_left, WAIT, 1.0)
    k.run("delete", "-f", str(cluster.manifest))
    until("every pod gone", lambda: not cluster.pods(), WAIT, 1.0)
    until("every pod cgroup removed", lambda: not _pod_cgroups(), WAIT, 1.0)
