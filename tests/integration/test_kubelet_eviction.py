"""Eviction under memory pressure: a real server and agent (``--eviction-hard``) whose pods'
parent cgroup (below this test's own cgroup) has a memory limit, a node confined to a cgroup.
A Guaranteed pod and a BestEffort pod run; then a Burstable pod fills an emptyDir in memory.
memory.available (the limit less the working set) falls below the threshold: the node reports
MemoryPressure and gets the memory-pressure taint, the BestEffort pod is evicted first (its
usage is over its request of nothing), then the Burstable one (the largest usage over request
of what is left); the Guaranteed pod, within its request, keeps running. With the pressure
gone (after the transition period), the condition and the taint go."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_kubelet import Cluster, cluster_context, manifest, until

pytestmark = pytest.mark.root

MI = 1024 * 1024
LIMIT = 320 * MI  # the pods' parent cgroup: the node's memory
THRESHOLD = "120Mi"
FILL = 230  # MiB the hog writes into its memory-backed emptyDir
HOG_REQUEST = "240Mi"  # above its usage: evicted after the BestEffort pod, before Guaranteed


def limit_pods_cgroup(parent: str, limit: int) -> None:
    """Create the agent's pod parent cgroup (relative: below this process's cgroup, as the
    agent started from here resolves it) with a memory limit."""
    from runtime import cgroups

    paths = cgroups.manager_for(parent, "node").paths()
    if "memory" in paths:
        where, knob = paths["memory"], "memory.limit_in_bytes"
    else:
        where, knob = paths[""], "memory.max"
    os.makedirs(where, exist_ok=True)
    if not os.path.exists(os.path.join(where, knob)):
        pytest.skip(f"no memory controller in {where}")
    Path(where, knob).write_text(str(limit))


@pytest.fixture(scope="module")
def cluster(rootfs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    extra = (
        "--eviction-hard",
        f"memory.available<{THRESHOLD}",
        "--eviction-pressure-transition-period",
        "5s",
    )
    with cluster_context(rootfs, tmp_path_factory.mktemp("eviction"), extra) as c:
        limit_pods_cgroup(c.agent.cgroup_parent, LIMIT)
        yield c


def apply(c: Cluster, obj: dict[str, Any]) -> None:
    c.kubectl().run("apply", "-f", "-", input=json.dumps(obj))


def node_state(c: Cluster) -> tuple[str, bool]:
    code, node = c.server.json("GET", f"/api/v1/nodes/{c.agent.name}")
    assert code == 200, node
    cond = {x["type"]: x for x in node["status"]["conditions"]}["MemoryPressure"]
    tainted = any(
        t["key"] == "node.kubernetes.io/memory-pressure" and t["effect"] == "NoSchedule"
        for t in (node.get("spec") or {}).get("taints") or []
    )
    return cond["status"], tainted


def evicted(c: Cluster, name: str) -> dict[str, Any] | None:
    st = c.pod(name).get("status") or {}
    return st if st.get("phase") == "Failed" and st.get("reason") == "Evicted" else None


def test_besteffort_then_burstable_evicted_guaranteed_keeps_running(cluster: Cluster) -> None:
    c = cluster
    tag = uuid.uuid4().hex[:4]
    guaranteed, idle, hog = f"guaranteed-{tag}", f"idle-{tag}", f"hog-{tag}"
    resources = {"cpu": "100m", "memory": "64Mi"}
    g = manifest(guaranteed)
    g["spec"]["containers"][0]["resources"] = {"requests": resources, "limits": resources}
    apply(c, g)
    apply(c, manifest(idle))
    running = c.wait_running(guaranteed)
    assert running["status"]["qosClass"] == "Guaranteed"
    assert c.wait_running(idle)["status"]["qosClass"] == "BestEffort"
    assert node_state(c) == ("False", False)

    fill = (
        f"dd if=/dev/zero of=/hog/fill bs=1048576 count={FILL} && "
        "trap 'exit 0' TERM; while true; do sleep 0.2; done"
    )
    h = manifest(
        hog,
        fill,
        volumes=[{"name": "mem", "emptyDir": {"medium": "Memory"}}],
    )
    h["spec"]["containers"][0]["resources"] = {"requests": {"memory": HOG_REQUEST}}
    h["spec"]["containers"][0]["volumeMounts"] = [{"name": "mem", "mountPath": "/hog"}]
    apply(c, h)

    seen: set[tuple[str, bool]] = set()

    def both_evicted() -> bool:
        seen.add(node_state(c))
        return evicted(c, idle) is not None and evicted(c, hog) is not None

    until("the BestEffort and the Burstable pod to be evicted", both_evicted)
    assert ("True", True) in seen or node_state(c) == ("True", True), seen
    first, second = evicted(c, idle), evicted(c, hog)
    assert first is not None and second is not None
    for st in (first, second):
        assert st["message"].startswith(
            f"The node was low on resource: memory. Threshold quantity: {THRESHOLD}, available: "
        ), st
        target = {x["type"]: x for x in st["conditions"]}["DisruptionTarget"]
        assert (target["status"], target["reason"]) == ("True", "TerminationByKubelet")
    # The kubelet names the containers using more than they requested: the idle pod's only.
    assert "Container app was using " in first["message"]
    assert "request is 0, has larger consumption of memory. " in first["message"]
    assert "Container" not in second["message"]
    # BestEffort before Burstable: the Burstable pod was still there when the idle one went
    # (its eviction message counts the hog's memory as used), and it went later.
    events = c.server.json("GET", "/api/v1/namespaces/default/events")[1]["items"]
    evictions = [
        e["involvedObject"]["name"]
        for e in sorted(
            events, key=lambda e: (e["firstTimestamp"], e["metadata"]["creationTimestamp"])
        )
        if e["reason"] == "Evicted" and e["involvedObject"]["name"] in (idle, hog)
    ]
    assert evictions == [idle, hog], evictions
    # The Guaranteed pod runs on, as it was.
    now = c.pod(guaranteed)
    assert now["status"]["phase"] == "Running"
    assert now["status"]["containerStatuses"][0]["restartCount"] == 0
    assert now["metadata"]["uid"] == running["metadata"]["uid"]
    # The evicted pods are gone from the node (their memory with them); the API keeps them.
    names = {st.name for st in c.runtime_pods()}
    assert idle not in names and hog not in names and guaranteed in names
    until(
        "MemoryPressure to be False and the taint gone", lambda: node_state(c) == ("False", False)
    )
    c.kubectl().run("delete", "pod", guaranteed, idle, hog, "--wait=false")
