"""The scheduler against a real ``corral server`` with fake Node objects (made through the API,
no kubelet): each filter, a pod that fits nowhere and is placed once a node appears, the
messages kubectl shows, two schedulers racing, preemption, leader election and the standalone
``corral scheduler``."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.client import ApiClient, load_kubeconfig
from orchestrator.client.rest import EVENTS, LEASES, PODS
from orchestrator.scheduler import Scheduler, SchedulerConfig
from tests.kubeserver import (
    API_ONLY,
    CORRAL,
    KUBECTL_120,
    KUBECTL_CURRENT,
    NO_CONTROLLERS,
    Kubectl,
    Server,
)

pytestmark = pytest.mark.skipif(not Path("/usr/bin/openssl").exists(), reason="no openssl")

Obj = dict[str, Any]
WAIT = 60.0  # seconds to wait for what the scheduler must do before the test fails
NS = "default"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path / "srv", extra=NO_CONTROLLERS)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def bare_server(tmp_path: Path) -> Iterator[Server]:
    """A server without its own scheduler: the test runs the schedulers."""
    srv = Server(tmp_path / "srv", extra=API_ONLY)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def make_node(
    srv: Server,
    name: str,
    cpu: str = "4",
    memory: str = "8Gi",
    pods: str = "110",
    labels: dict[str, str] | None = None,
    taints: list[Obj] | None = None,
    unschedulable: bool = False,
    ready: str = "True",
) -> None:
    body: Obj = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
        "spec": {"taints": taints or [], "unschedulable": unschedulable},
    }
    code, made = srv.json("POST", "/api/v1/nodes", body)
    assert code == 201, made
    alloc = {"cpu": cpu, "memory": memory, "pods": pods}
    made["status"] = {
        "capacity": alloc,
        "allocatable": alloc,
        "conditions": [{"type": "Ready", "status": ready, "reason": "Test"}],
    }
    code, out = srv.json("PUT", f"/api/v1/nodes/{name}/status", made)
    assert code == 200, out


def make_pod(
    srv: Server,
    name: str,
    cpu: str | None = None,
    labels: dict[str, str] | None = None,
    **spec: Any,
) -> None:
    req = {"cpu": cpu} if cpu else {}
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {
            "containers": [{"name": "c", "image": "x", "resources": {"requests": req}}],
            **spec,
        },
    }
    code, out = srv.json("POST", f"/api/v1/namespaces/{NS}/pods", body)
    assert code == 201, out


def get_pod(srv: Server, name: str) -> Obj:
    code, pod = srv.json("GET", f"/api/v1/namespaces/{NS}/pods/{name}")
    assert code == 200, pod
    return pod  # type: ignore[no-any-return]


def wait_for(what: str, fn: Callable[[], Any], timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = fn()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def wait_bound(srv: Server, name: str) -> str:
    return str(
        wait_for(
            f"pod {name} bound", lambda: (get_pod(srv, name).get("spec") or {}).get("nodeName")
        )
    )


def scheduled_condition(pod: Obj) -> Obj | None:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "PodScheduled":
            return c  # type: ignore[no-any-return]
    return None


def wait_unschedulable(srv: Server, name: str) -> Obj:
    def cond() -> Obj | None:
        c = scheduled_condition(get_pod(srv, name))
        return c if c and c.get("status") == "False" else None

    return wait_for(f"pod {name} unschedulable", cond)  # type: ignore[no-any-return]


def events_of(srv: Server, name: str) -> list[Obj]:
    sel = f"involvedObject.name={name}"
    code, body = srv.json("GET", f"/api/v1/namespaces/{NS}/events?fieldSelector={sel}")
    assert code == 200
    return body["items"]  # type: ignore[no-any-return]


# ------------------------------------------------------------------ each filter

TAINT = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}
ZONE = "topology.kubernetes.io/zone"


def _term(labels: dict[str, str], key: str) -> Obj:
    return {"labelSelector": {"matchLabels": labels}, "topologyKey": key}


# name -> (nodes: name -> make_node kwargs, pods already bound: (name, node, kwargs),
#          the pod's kwargs, the node it must land on)
# The node the filter must rule out has the most room: least-allocated alone would pick it.
BIG = {"cpu": "16", "memory": "64Gi"}
CASES: dict[str, tuple[dict[str, Obj], list[tuple[str, str, Obj]], Obj, str]] = {
    "resources": ({"a": {"cpu": "1"}, "b": {"cpu": "4"}, "c": {"cpu": "2"}}, [], {"cpu": "3"}, "b"),
    "pod-count": ({"a": {"pods": "1", **BIG}, "b": {"pods": "2"}}, [("x", "a", {})], {}, "b"),
    "node-selector": (
        {"a": BIG, "b": {"labels": {"disk": "ssd"}}},
        [],
        {"nodeSelector": {"disk": "ssd"}},
        "b",
    ),
    "node-affinity": (
        {"a": {"labels": {"cores": "4"}, **BIG}, "b": {"labels": {"cores": "16"}}},
        [],
        {
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {
                                "matchExpressions": [
                                    {"key": "cores", "operator": "Gt", "values": ["8"]}
                                ]
                            }
                        ]
                    }
                }
            }
        },
        "b",
    ),
    "taints": ({"a": {"taints": [TAINT], **BIG}, "b": {}}, [], {}, "b"),
    "tolerations": (
        {"a": {"taints": [TAINT]}, "b": {"taints": [TAINT | {"value": "tpu"}], **BIG}},
        [],
        {"tolerations": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]},
        "a",
    ),
    "unschedulable": ({"a": {"unschedulable": True, **BIG}, "b": {}}, [], {}, "b"),
    "not-ready": ({"a": {"ready": "False", **BIG}, "b": {}}, [], {}, "b"),
    "host-ports": (
        {"a": {**BIG}, "b": {}},
        [
            (
                "web",
                "a",
                {
                    "containers": [
                        {
                            "name": "c",
                            "image": "x",
                            "ports": [{"containerPort": 80, "hostPort": 80}],
                        }
                    ]
                },
            )
        ],
        {
            "containers": [
                {"name": "c", "image": "x", "ports": [{"containerPort": 80, "hostPort": 80}]}
            ]
        },
        "b",
    ),
    "topology-spread": (
        {"a": {"labels": {ZONE: "z1"}, **BIG}, "b": {"labels": {ZONE: "z2"}}},
        [("w1", "a", {"labels": {"app": "web"}})],
        {
            "labels": {"app": "web"},
            "topologySpreadConstraints": [
                {
                    "maxSkew": 1,
                    "topologyKey": ZONE,
                    "whenUnsatisfiable": "DoNotSchedule",
                    "labelSelector": {"matchLabels": {"app": "web"}},
                }
            ],
        },
        "b",
    ),
    "pod-affinity": (
        {"a": {"labels": {ZONE: "z1"}, **BIG}, "b": {"labels": {ZONE: "z2"}}},
        [("db", "b", {"labels": {"app": "db"}})],
        {
            "affinity": {
                "podAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": [_term({"app": "db"}, ZONE)]
                }
            }
        },
        "b",
    ),
    "pod-anti-affinity": (
        {"a": {**BIG}, "b": {}},
        [("db", "a", {"labels": {"app": "db"}})],
        {
            "affinity": {
                "podAntiAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": [
                        _term({"app": "db"}, "kubernetes.io/hostname")
                    ]
                }
            }
        },
        "b",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_filter(server: Server, case: str) -> None:
    nodes, bound, spec, want = CASES[case]
    for name, kw in nodes.items():
        make_node(server, name, **kw)
    for name, node, kw in bound:
        make_pod(server, name, nodeName=node, **kw)
    make_pod(server, "p", **spec)
    assert wait_bound(server, "p") == want
    c = scheduled_condition(get_pod(server, "p"))
    assert c is not None and c["status"] == "True"


# ------------------------------------------------------------------ fits nowhere, then a node


MESSAGE = (
    "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu},"
    " 2 Insufficient cpu. preemption: 0/3 nodes are available: 1 Preemption is not helpful"
    " for scheduling, 2 No preemption victims found for incoming pod.."
)


@pytest.fixture(params=["1.32", "1.20"])
def kubectl(request: pytest.FixtureRequest, server: Server, tmp_path: Path) -> Kubectl:
    binary = KUBECTL_CURRENT if request.param == "1.32" else KUBECTL_120
    if not os.access(binary, os.X_OK):
        pytest.skip(f"kubectl {request.param} not found at {binary} (scripts/setup.sh)")
    home = tmp_path / f"home-{request.param}"
    home.mkdir()
    return Kubectl(binary, home, server.kubeconfig, request.param)


def test_fits_nowhere_then_a_node_appears(server: Server, kubectl: Kubectl) -> None:
    make_node(server, "small-1", cpu="1")
    make_node(server, "small-2", cpu="1")
    make_node(server, "gpu", cpu="8", taints=[TAINT])
    make_pod(server, "big", cpu="2")
    cond = wait_unschedulable(server, "big")
    assert cond["reason"] == "Unschedulable" and cond["message"] == MESSAGE
    ev = wait_for("FailedScheduling event", lambda: events_of(server, "big"))[0]
    assert ev["reason"] == "FailedScheduling" and ev["type"] == "Warning"
    assert ev["message"] == MESSAGE
    assert ev["source"]["component"] == "default-scheduler" and ev["count"] >= 1
    assert ev["involvedObject"]["kind"] == "Pod" and ev["involvedObject"]["uid"]
    out = kubectl.run("describe", "pod", "big", "-n", NS).stdout
    assert "FailedScheduling" in out and "default-scheduler" in out
    # describe prints the message on one line after the columns
    assert MESSAGE in " ".join(out.split()), out
    make_node(server, "large", cpu="4")
    assert wait_bound(server, "big") == "large"
    scheduled = wait_for(
        "Scheduled event",
        lambda: [e for e in events_of(server, "big") if e["reason"] == "Scheduled"],
    )
    assert scheduled[0]["message"] == f"Successfully assigned {NS}/big to large"
    out = kubectl.run("describe", "pod", "big", "-n", NS).stdout
    assert f"Successfully assigned {NS}/big to large" in out


def test_pod_deleted_frees_room(server: Server) -> None:
    make_node(server, "only", cpu="2")
    make_pod(server, "first", cpu="2")
    assert wait_bound(server, "first") == "only"
    make_pod(server, "second", cpu="2")
    cond = wait_unschedulable(server, "second")
    assert cond["message"].startswith("0/1 nodes are available: 1 Insufficient cpu.")
    # A node change that does not help: tried again, the same Event counts twice.
    code, _ = server.json(
        "PATCH",
        "/api/v1/nodes/only",
        {"metadata": {"labels": {"touched": "yes"}}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert code == 200

    def failed_twice() -> list[Obj]:
        evs = [e for e in events_of(server, "second") if e["reason"] == "FailedScheduling"]
        return evs if evs and evs[0]["count"] >= 2 else []

    evs = wait_for("FailedScheduling counted twice", failed_twice)
    assert len(evs) == 1 and evs[0]["firstTimestamp"] <= evs[0]["lastTimestamp"]
    code, _ = server.json(
        "DELETE", f"/api/v1/namespaces/{NS}/pods/first", {"gracePeriodSeconds": 0}
    )
    assert code == 200
    assert wait_bound(server, "second") == "only"


def test_other_scheduler_name_is_left_alone(server: Server) -> None:
    make_node(server, "n1")
    make_pod(server, "theirs", schedulerName="someone-else")
    make_pod(server, "ours")
    assert wait_bound(server, "ours") == "n1"
    assert not get_pod(server, "theirs")["spec"].get("nodeName")
    assert scheduled_condition(get_pod(server, "theirs")) is None


# ------------------------------------------------------------------ preemption


def _priority_class(srv: Server, name: str, value: int) -> None:
    body = {
        "apiVersion": "scheduling.k8s.io/v1",
        "kind": "PriorityClass",
        "metadata": {"name": name},
        "value": value,
    }
    code, out = srv.json("POST", "/apis/scheduling.k8s.io/v1/priorityclasses", body)
    assert code == 201, out


def test_preemption(server: Server) -> None:
    _priority_class(server, "low", 10)
    _priority_class(server, "high", 1000)
    make_node(server, "n1", cpu="2")
    make_pod(server, "victim", cpu="1500m", priorityClassName="low")
    make_pod(server, "bystander", cpu="500m", priorityClassName="high")
    assert wait_bound(server, "victim") == "n1"
    assert wait_bound(server, "bystander") == "n1"
    make_pod(server, "urgent", cpu="1", priorityClassName="high")
    assert get_pod(server, "urgent")["spec"]["priority"] == 1000
    # The victim is deleted gracefully: it waits for its kubelet, as a real one would.
    wait_for(
        "victim terminating",
        lambda: get_pod(server, "victim")["metadata"].get("deletionTimestamp"),
    )
    assert not get_pod(server, "bystander")["metadata"].get("deletionTimestamp")
    urgent = wait_for(
        "nominatedNodeName",
        lambda: (get_pod(server, "urgent").get("status") or {}).get("nominatedNodeName"),
    )
    assert urgent == "n1"
    assert any(e["reason"] == "Preempted" for e in events_of(server, "victim"))
    conds = {c["type"]: c for c in get_pod(server, "victim")["status"]["conditions"]}
    assert conds["DisruptionTarget"]["reason"] == "PreemptionByScheduler"
    assert conds["PodScheduled"]["status"] == "True"  # merged by type, not replaced
    # The kubelet's part: the victim's containers stopped, the pod goes.
    code, _ = server.json(
        "DELETE", f"/api/v1/namespaces/{NS}/pods/victim", {"gracePeriodSeconds": 0}
    )
    assert code == 200
    assert wait_bound(server, "urgent") == "n1"


def test_lower_priority_does_not_preempt(server: Server) -> None:
    _priority_class(server, "high", 1000)
    make_node(server, "n1", cpu="1")
    make_pod(server, "important", cpu="1", priorityClassName="high")
    assert wait_bound(server, "important") == "n1"
    make_pod(server, "common", cpu="1")
    cond = wait_unschedulable(server, "common")
    assert cond["message"] == (
        "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available:"
        " 1 No preemption victims found for incoming pod.."
    )
    assert not get_pod(server, "important")["metadata"].get("deletionTimestamp")


# ------------------------------------------------------------------ several schedulers


def _async(srv: Server, fn: Callable[[ApiClient], Any]) -> Any:
    async def main() -> Any:
        async with ApiClient(load_kubeconfig(srv.kubeconfig), max_connections=64) as c:
            return await fn(c)

    return asyncio.run(main())


def test_two_schedulers_racing_never_double_bind(bare_server: Server) -> None:
    n_nodes, n_pods = 10, 200
    for i in range(n_nodes):
        make_node(bare_server, f"n{i}", cpu="100")

    async def race(c: ApiClient) -> tuple[list[Scheduler], list[Obj], list[Obj]]:
        cfg = SchedulerConfig(leader_elect=False)
        scheds = [Scheduler(c, cfg), Scheduler(c, cfg)]
        tasks = [asyncio.create_task(s.run()) for s in scheds]
        await asyncio.sleep(0.5)

        async def create(i: int) -> None:
            body = {
                "metadata": {"name": f"p{i}"},
                "spec": {"containers": [{"name": "c", "image": "x"}]},
            }
            await c.create(PODS, NS, body)

        await asyncio.gather(*(create(i) for i in range(n_pods)))
        deadline = time.monotonic() + WAIT
        while True:
            pods, _ = await c.list_all(PODS, NS)
            if all(p["spec"].get("nodeName") for p in pods) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        for s in scheds:
            await s.wait_idle()
            if s.recorder is not None:
                await s.recorder.flush()
        await asyncio.sleep(1)  # the informers catch up with the last bindings
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        events, _ = await c.list_all(EVENTS, NS)
        return scheds, pods, events

    scheds, pods, events = _async(bare_server, race)
    assert len(pods) == n_pods and all(p["spec"].get("nodeName") for p in pods)
    # Each pod was bound once: one winner, the other scheduler's bind was refused (Conflict).
    assert sum(s.scheduled for s in scheds) == n_pods
    scheduled = [e for e in events if e["reason"] == "Scheduled"]
    assert sorted(e["involvedObject"]["name"] for e in scheduled) == sorted(
        f"p{i}" for i in range(n_pods)
    )
    truth = {f"{NS}/{p['metadata']['name']}": p["spec"]["nodeName"] for p in pods}
    for s in scheds:
        # The losers forgot their assumptions: each cache holds what the API says.
        assert not s.cache.assumed
        assert s.cache.pod_node == truth
    assert all(s.conflicts + s.scheduled > 0 for s in scheds)


def test_leader_election(bare_server: Server) -> None:
    make_node(bare_server, "n1")

    async def elect(c: ApiClient) -> tuple[str, str, str]:
        a = Scheduler(c, SchedulerConfig(identity="sched-a"))
        ta = asyncio.create_task(a.run())
        await asyncio.sleep(1)
        b = Scheduler(c, SchedulerConfig(identity="sched-b"))
        tb = asyncio.create_task(b.run())
        await c.create(
            PODS,
            NS,
            {"metadata": {"name": "one"}, "spec": {"containers": [{"name": "c", "image": "x"}]}},
        )
        # the binding's answer reaches the scheduler after the pod shows bound: wait for both
        # (cancelled at once, the scheduler would never count its bind)
        deadline = time.monotonic() + WAIT
        while not (await c.get(PODS, NS, "one"))["spec"].get("nodeName") or not a.scheduled:
            assert time.monotonic() < deadline, "a never scheduled"
            await asyncio.sleep(0.1)
        first = (await c.get(LEASES, "kube-system", "kube-scheduler"))["spec"]["holderIdentity"]
        ta.cancel()  # a stops and gives the lease up: b takes over
        await asyncio.gather(ta, return_exceptions=True)
        await c.create(
            PODS,
            NS,
            {"metadata": {"name": "two"}, "spec": {"containers": [{"name": "c", "image": "x"}]}},
        )
        deadline = time.monotonic() + WAIT
        while not (await c.get(PODS, NS, "two"))["spec"].get("nodeName") or not b.scheduled:
            assert time.monotonic() < deadline, "b never scheduled"
            await asyncio.sleep(0.1)
        second = (await c.get(LEASES, "kube-system", "kube-scheduler"))["spec"]["holderIdentity"]
        tb.cancel()
        await asyncio.gather(tb, return_exceptions=True)
        return first, second, f"{a.scheduled},{b.scheduled}"

    first, second, counts = _async(bare_server, elect)
    assert (first, second, counts) == ("sched-a", "sched-b", "1,1")


def test_standalone_scheduler_command(bare_server: Server, tmp_path: Path) -> None:
    make_node(bare_server, "n1")
    log = open(tmp_path / "sched.log", "wb")
    proc = subprocess.Popen(
        [CORRAL, "scheduler", "--kubeconfig", str(bare_server.kubeconfig)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        make_pod(bare_server, "p")
        assert wait_bound(bare_server, "p") == "n1"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    code, lease = bare_server.json(
        "GET", "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-scheduler"
    )
    assert code == 200
    assert not lease["spec"].get("holderIdentity"), json.dumps(lease)  # released on SIGTERM


def test_two_servers_over_etcd_elect_one_scheduler(tmp_path: Path) -> None:
    """Two ``corral server`` over one etcd, each with its in-process scheduler: one holds
    the kube-scheduler Lease and schedules; when it stops, the other takes over."""
    from testkit.etcdcluster import EtcdCluster, EtcdMissing

    etcd = EtcdCluster(1)
    try:
        etcd.start()
    except EtcdMissing as e:
        pytest.skip(str(e))
    servers: list[Server] = []
    try:
        for i in (1, 2):
            srv = Server(
                tmp_path / f"s{i}", extra=("--datastore-endpoint", etcd.url, *NO_CONTROLLERS)
            )
            srv.start()
            servers.append(srv)

        def holder(srv: Server) -> str:
            code, lease = srv.json(
                "GET", "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-scheduler"
            )
            return str((lease.get("spec") or {}).get("holderIdentity") or "") if code == 200 else ""

        make_node(servers[0], "n1")
        make_pod(servers[0], "first")
        assert wait_bound(servers[1], "first") == "n1"
        first = wait_for("a leader", lambda: holder(servers[1]))
        pids = {s.proc.pid: s for s in servers if s.proc is not None}
        leader = next(s for pid, s in pids.items() if f"_{pid}_" in first)
        other = next(s for s in servers if s is not leader)
        assert leader.stop() == 0  # SIGTERM: the lease is given up on the way out
        make_pod(other, "second")
        assert wait_bound(other, "second") == "n1"
        second = holder(other)
        assert second and second != first and f"_{other.proc.pid}_" in second  # type: ignore[union-attr]
    finally:
        for srv in servers:
            srv.stop()
        etcd.stop()


def test_priority_classes_and_admission(bare_server: Server, tmp_path: Path) -> None:
    srv = bare_server
    path = "/apis/scheduling.k8s.io/v1/priorityclasses"
    code, body = srv.json("GET", path)
    assert code == 200
    builtin = {i["metadata"]["name"]: i["value"] for i in body["items"]}
    assert builtin == {"system-node-critical": 2000001000, "system-cluster-critical": 2000000000}
    _priority_class(srv, "high", 1000)

    def pc(name: str, value: int, default: bool = False) -> tuple[int, Any]:
        body = {"metadata": {"name": name}, "value": value, "globalDefault": default}
        return srv.json("POST", path, body)

    code, out = pc("system-mine", 5)
    assert code == 422 and "reserved" in out["message"]
    code, out = pc("huge", 2_000_000_000)
    assert code == 422 and "maximum allowed value" in out["message"]
    assert pc("everyone", 7, default=True)[0] == 201
    code, out = pc("everyone-else", 8, default=True)
    assert code == 422 and "already marked as default" in out["message"]

    def create(name: str, **spec: Any) -> tuple[int, Any]:
        body = {
            "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "x"}], **spec},
        }
        return srv.json("POST", f"/api/v1/namespaces/{NS}/pods", body)

    code, pod = create("a", priorityClassName="high")
    assert code == 201
    assert (pod["spec"]["priority"], pod["spec"]["preemptionPolicy"]) == (
        1000,
        "PreemptLowerPriority",
    )
    code, pod = create("b")  # the global default
    assert code == 201
    assert (pod["spec"]["priorityClassName"], pod["spec"]["priority"]) == ("everyone", 7)
    code, out = create("c", priorityClassName="nope")
    assert code == 403
    assert out["message"] == 'pods "c" is forbidden: no PriorityClass with name nope was found'
    code, out = create("d", priorityClassName="high", priority=5)
    assert code == 403 and "must not be provided in pod spec" in out["message"]
    code, out = srv.json(
        "PATCH",
        f"{path}/high",
        {"value": 1},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert code == 422 and "may not be changed" in out["message"]
    k = Kubectl(KUBECTL_CURRENT, tmp_path, srv.kubeconfig, "1.32")
    if os.access(KUBECTL_CURRENT, os.X_OK):
        out = k.run("get", "priorityclasses").stdout.splitlines()
        assert out[0].split() == ["NAME", "VALUE", "GLOBAL-DEFAULT", "AGE", "PREEMPTIONPOLICY"]
        assert any(ln.split()[:3] == ["everyone", "7", "true"] for ln in out)


def test_kubectl_create_priorityclass(kubectl: Kubectl) -> None:
    """kubectl's typed create (protobuf from 1.32, JSON from 1.20), then a pod that uses it."""
    name = "pc-" + kubectl.version.replace(".", "-")
    out = kubectl.run(
        "create", "priorityclass", name, "--value=500", "--preemption-policy=Never"
    ).stdout
    assert out.strip() == f"priorityclass.scheduling.k8s.io/{name} created"
    got = json.loads(kubectl.run("get", "priorityclass", name, "-o", "json").stdout)
    assert (got["value"], got["preemptionPolicy"]) == (500, "Never")
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {"priorityClassName": name, "containers": [{"name": "c", "image": "x"}]},
    }
    kubectl.run("create", "-n", NS, "-f", "-", input=json.dumps(pod))
    got = json.loads(kubectl.run("get", "pod", "p", "-n", NS, "-o", "json").stdout)
    assert (got["spec"]["priority"], got["spec"]["preemptionPolicy"]) == (500, "Never")
