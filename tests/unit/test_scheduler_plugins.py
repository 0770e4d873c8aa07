"""The scheduler's pure part: filters, scores, messages, preemption, the cache's algorithm and
the scheduling queue, as table cases over plain Kubernetes objects (no server)."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.scheduler.cache import Cache
from orchestrator.scheduler.plugins import (
    FitError,
    NodeInfo,
    cycle_state,
    filter_node,
    fit_message,
    num_nodes_to_find,
    pod_info,
    pod_requests,
    preempt,
    resource_score,
    resource_scores,
    score_nodes,
)
from orchestrator.scheduler.queue import SchedulingQueue

Obj = dict[str, Any]
GI = 1024**3


def node(
    name: str = "n1",
    cpu: str = "4",
    memory: str = "8Gi",
    pods: str = "110",
    labels: dict[str, str] | None = None,
    taints: list[Obj] | None = None,
    unschedulable: bool = False,
    ready: str | None = "True",
    extra: dict[str, str] | None = None,
) -> Obj:
    alloc = {"cpu": cpu, "memory": memory, "pods": pods, **(extra or {})}
    conds = [] if ready is None else [{"type": "Ready", "status": ready}]
    return {
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
        "spec": {"taints": taints or [], "unschedulable": unschedulable},
        "status": {"allocatable": alloc, "capacity": alloc, "conditions": conds},
    }


def container(cpu: str | None = None, memory: str | None = None, **kw: Any) -> Obj:
    req = {}
    if cpu:
        req["cpu"] = cpu
    if memory:
        req["memory"] = memory
    return {"name": "c", "image": "x", "resources": {"requests": req}, **kw}


def pod(
    name: str = "p",
    cpu: str | None = None,
    memory: str | None = None,
    ns: str = "default",
    labels: dict[str, str] | None = None,
    owner: str = "",
    priority: int = 0,
    **spec: Any,
) -> Obj:
    meta: Obj = {"name": name, "namespace": ns, "uid": f"uid-{name}", "labels": labels or {}}
    if owner:
        meta["ownerReferences"] = [{"uid": owner, "controller": True, "kind": "ReplicaSet"}]
    body = {"containers": [container(cpu, memory)], "priority": priority, **spec}
    return {"metadata": meta, "spec": body}


def info(n: Obj, *pods_on: Obj) -> NodeInfo:
    ni = NodeInfo(n)
    for p in pods_on:
        ni.add_pod(pod_info(p))
    return ni


def reasons(p: Obj, n: NodeInfo, others: list[NodeInfo] | None = None) -> list[str]:
    pi = pod_info(p)
    every = others if others is not None else [n]
    anti = any(x.anti_affinity_pods for x in every)
    return filter_node(pi, n, cycle_state(pi, every, anti))


# ------------------------------------------------------------------ requests


@pytest.mark.parametrize(
    "spec, want",
    [
        ({"containers": [container("1", "1Gi"), container("500m")]}, {"cpu": 1500, "memory": GI}),
        # init containers: the larger of the app sum and the largest init container
        (
            {
                "initContainers": [container("2"), container("1", "2Gi")],
                "containers": [container("500m", "1Gi"), container("500m", "512Mi")],
            },
            {"cpu": 2000, "memory": 2 * GI},
        ),
        # a sidecar (restartPolicy Always) runs beside the later init containers and the app
        (
            {
                "initContainers": [container("1", restartPolicy="Always"), container("2")],
                "containers": [container("500m")],
            },
            {"cpu": 3000},
        ),
        # overhead is added on top
        (
            {"containers": [container("1")], "overhead": {"cpu": "250m", "memory": "64Mi"}},
            {"cpu": 1250, "memory": 64 * 1024**2},
        ),
        ({"containers": [container()]}, {}),
    ],
)
def test_pod_requests(spec: Obj, want: dict[str, int]) -> None:
    assert pod_requests(spec) == want


# ------------------------------------------------------------------ filters


@pytest.mark.parametrize(
    "p, n, on_node, want",
    [
        (pod(cpu="1"), node(cpu="2"), [], []),
        (pod(cpu="3"), node(cpu="2"), [], ["Insufficient cpu"]),
        (pod(cpu="1"), node(cpu="2"), [pod("o", cpu="1500m")], ["Insufficient cpu"]),
        (pod(cpu="5", memory="9Gi"), node(), [], ["Insufficient cpu", "Insufficient memory"]),
        (pod(), node(pods="1"), [pod("o")], ["Too many pods"]),
        (
            pod(containers=[{"name": "c", "resources": {"requests": {"example.com/gpu": "2"}}}]),
            node(extra={"example.com/gpu": "1"}),
            [],
            ["Insufficient example.com/gpu"],
        ),
        (
            pod(containers=[container("1")], initContainers=[container("3")]),
            node(cpu="2"),
            [],
            ["Insufficient cpu"],
        ),
    ],
)
def test_resources_fit(p: Obj, n: Obj, on_node: list[Obj], want: list[str]) -> None:
    assert reasons(p, info(n, *on_node)) == want


AFF = "node(s) didn't match Pod's node affinity/selector"


def _req(*exprs: Obj, fields: list[Obj] | None = None) -> Obj:
    term: Obj = {"matchExpressions": list(exprs)}
    if fields:
        term = {"matchFields": fields}
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}
        }
    }


@pytest.mark.parametrize(
    "spec, labels, ok",
    [
        ({"nodeName": "n1"}, {}, True),
        ({"nodeSelector": {"disk": "ssd"}}, {"disk": "ssd"}, True),
        ({"nodeSelector": {"disk": "ssd"}}, {"disk": "hdd"}, False),
        (
            {"affinity": _req({"key": "disk", "operator": "In", "values": ["ssd"]})},
            {"disk": "ssd"},
            True,
        ),
        ({"affinity": _req({"key": "disk", "operator": "In", "values": ["ssd"]})}, {}, False),
        ({"affinity": _req({"key": "disk", "operator": "NotIn", "values": ["ssd"]})}, {}, True),
        (
            {"affinity": _req({"key": "disk", "operator": "NotIn", "values": ["ssd"]})},
            {"disk": "ssd"},
            False,
        ),
        ({"affinity": _req({"key": "gpu", "operator": "Exists"})}, {"gpu": ""}, True),
        ({"affinity": _req({"key": "gpu", "operator": "DoesNotExist"})}, {"gpu": ""}, False),
        (
            {"affinity": _req({"key": "cores", "operator": "Gt", "values": ["4"]})},
            {"cores": "8"},
            True,
        ),
        (
            {"affinity": _req({"key": "cores", "operator": "Gt", "values": ["4"]})},
            {"cores": "4"},
            False,
        ),
        (
            {"affinity": _req({"key": "cores", "operator": "Lt", "values": ["4"]})},
            {"cores": "2"},
            True,
        ),
        (
            {"affinity": _req({"key": "cores", "operator": "Lt", "values": ["4"]})},
            {"cores": "x"},
            False,
        ),
        (
            {
                "affinity": _req(
                    fields=[{"key": "metadata.name", "operator": "In", "values": ["n1"]}]
                )
            },
            {},
            True,
        ),
        (
            {
                "affinity": _req(
                    fields=[{"key": "metadata.name", "operator": "In", "values": ["n2"]}]
                )
            },
            {},
            False,
        ),
    ],
)
def test_node_name_selector_affinity(spec: Obj, labels: dict[str, str], ok: bool) -> None:
    got = reasons(pod(**spec), info(node(labels=labels)))
    assert got == ([] if ok else [AFF])


def test_node_name_mismatch() -> None:
    assert reasons(pod(nodeName="n2"), info(node())) == [
        "node(s) didn't match the requested node name"
    ]


def _taint(key: str, value: str = "", effect: str = "NoSchedule") -> Obj:
    return {"key": key, "value": value, "effect": effect}


@pytest.mark.parametrize(
    "taints, tolerations, want",
    [
        ([_taint("k", "v")], [], ["node(s) had untolerated taint {k: v}"]),
        ([_taint("k", "v", "NoExecute")], [], ["node(s) had untolerated taint {k: v}"]),
        ([_taint("k", "v", "PreferNoSchedule")], [], []),
        ([_taint("k", "v")], [{"key": "k", "operator": "Equal", "value": "v"}], []),
        (
            [_taint("k", "v")],
            [{"key": "k", "value": "w"}],
            ["node(s) had untolerated taint {k: v}"],
        ),
        ([_taint("k", "v")], [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}], []),
        (
            [_taint("k", "v")],
            [{"key": "k", "operator": "Exists", "effect": "NoExecute"}],
            ["node(s) had untolerated taint {k: v}"],
        ),
        ([_taint("a"), _taint("b")], [{"operator": "Exists"}], []),
        (
            [_taint("a"), _taint("b")],
            [{"key": "a", "operator": "Exists"}],
            ["node(s) had untolerated taint {b: }"],
        ),
    ],
)
def test_taints_and_tolerations(taints: list[Obj], tolerations: list[Obj], want: list[str]) -> None:
    assert reasons(pod(tolerations=tolerations), info(node(taints=taints))) == want


@pytest.mark.parametrize(
    "tolerations, ok",
    [
        ([], False),
        (
            [
                {
                    "key": "node.kubernetes.io/unschedulable",
                    "operator": "Exists",
                    "effect": "NoSchedule",
                }
            ],
            True,
        ),
    ],
)
def test_unschedulable_node(tolerations: list[Obj], ok: bool) -> None:
    got = reasons(pod(tolerations=tolerations), info(node(unschedulable=True)))
    assert got == ([] if ok else ["node(s) were unschedulable"])


@pytest.mark.parametrize(
    "ready, want",
    [
        ("True", []),
        ("False", ["node(s) had untolerated taint {node.kubernetes.io/not-ready: }"]),
        (None, ["node(s) had untolerated taint {node.kubernetes.io/not-ready: }"]),
        ("Unknown", ["node(s) had untolerated taint {node.kubernetes.io/unreachable: }"]),
    ],
)
def test_node_not_ready_is_tainted(ready: str | None, want: list[str]) -> None:
    assert reasons(pod(), info(node(ready=ready))) == want
    tolerant = pod(tolerations=[{"operator": "Exists"}])
    assert reasons(tolerant, info(node(ready=ready))) == []


def _ports(*ports: Obj) -> Obj:
    return {"containers": [{"name": "c", "image": "x", "ports": list(ports)}]}


@pytest.mark.parametrize(
    "want, have, ok",
    [
        ({"containerPort": 80, "hostPort": 8080}, {"containerPort": 80, "hostPort": 8080}, False),
        ({"containerPort": 80, "hostPort": 8080}, {"containerPort": 80, "hostPort": 8081}, True),
        (
            {"containerPort": 80, "hostPort": 8080, "protocol": "UDP"},
            {"containerPort": 80, "hostPort": 8080},
            True,
        ),
        (
            {"containerPort": 80, "hostPort": 8080, "hostIP": "10.0.0.1"},
            {"containerPort": 80, "hostPort": 8080, "hostIP": "10.0.0.2"},
            True,
        ),
        (
            {"containerPort": 80, "hostPort": 8080, "hostIP": "10.0.0.1"},
            {"containerPort": 80, "hostPort": 8080},
            False,
        ),
        ({"containerPort": 80}, {"containerPort": 80}, True),
    ],
)
def test_host_ports(want: Obj, have: Obj, ok: bool) -> None:
    got = reasons(pod(**_ports(want)), info(node(), pod("o", **_ports(have))))
    assert got == ([] if ok else ["node(s) didn't have free ports for the requested pod ports"])


ZONE = "topology.kubernetes.io/zone"


def _spread(max_skew: int, key: str, when: str = "DoNotSchedule") -> list[Obj]:
    return [
        {
            "maxSkew": max_skew,
            "topologyKey": key,
            "whenUnsatisfiable": when,
            "labelSelector": {"matchLabels": {"app": "web"}},
        }
    ]


def test_topology_spread_filter() -> None:
    web = {"app": "web"}
    a = info(node("a", labels={ZONE: "z1"}), pod("w1", labels=web), pod("w2", labels=web))
    b = info(node("b", labels={ZONE: "z2"}))
    c = info(node("c"))  # no zone label
    nodes = [a, b, c]
    p = pod(labels=web, topologySpreadConstraints=_spread(1, ZONE))
    assert reasons(p, a, nodes) == ["node(s) didn't match pod topology spread constraints"]
    assert reasons(p, b, nodes) == []
    assert reasons(p, c, nodes) == [
        "node(s) didn't match pod topology spread constraints (missing required label)"
    ]
    # maxSkew 3: two more on z1 is still within the skew
    p3 = pod(labels=web, topologySpreadConstraints=_spread(3, ZONE))
    assert reasons(p3, a, nodes) == []
    # hostname spreading; pods of other namespaces do not count
    h = pod(labels=web, ns="other", topologySpreadConstraints=_spread(1, "kubernetes.io/hostname"))
    assert reasons(h, a, nodes) == []
    # ScheduleAnyway never filters; it scores the emptier domain higher
    soft = pod(labels=web, topologySpreadConstraints=_spread(1, ZONE, "ScheduleAnyway"))
    assert reasons(soft, a, nodes) == []
    pi = pod_info(soft)
    st = cycle_state(pi, nodes, False)
    sa, sb = score_nodes(pi, [a, b], st)
    assert sb > sa


def _pod_term(labels: dict[str, str], key: str) -> Obj:
    return {"labelSelector": {"matchLabels": labels}, "topologyKey": key}


def test_inter_pod_affinity() -> None:
    db = {"app": "db"}
    a = info(node("a", labels={ZONE: "z1"}), pod("db1", labels=db))
    b = info(node("b", labels={ZONE: "z2"}))
    nodes = [a, b]
    near = pod(
        affinity={
            "podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [_pod_term(db, ZONE)]}
        }
    )
    assert reasons(near, a, nodes) == []
    assert reasons(near, b, nodes) == ["node(s) didn't match pod affinity rules"]
    away = pod(
        affinity={
            "podAntiAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [_pod_term(db, ZONE)]
            }
        }
    )
    assert reasons(away, a, nodes) == ["node(s) didn't match pod anti-affinity rules"]
    assert reasons(away, b, nodes) == []
    # the first pod of a group that wants to be with its own kind goes anywhere
    first = pod(
        labels={"app": "cache"},
        affinity={
            "podAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [
                    _pod_term({"app": "cache"}, ZONE)
                ]
            }
        },
    )
    assert reasons(first, b, nodes) == []


def test_existing_pods_anti_affinity() -> None:
    lonely = pod(
        "lonely",
        affinity={
            "podAntiAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [
                    _pod_term({"app": "web"}, "kubernetes.io/hostname")
                ]
            }
        },
    )
    a = info(node("a"), lonely)
    b = info(node("b"))
    nodes = [a, b]
    web = pod(labels={"app": "web"})
    assert reasons(web, a, nodes) == ["node(s) didn't satisfy existing pods anti-affinity rules"]
    assert reasons(web, b, nodes) == []
    assert reasons(pod(labels={"app": "db"}), a, nodes) == []


def test_preferred_pod_affinity_scores() -> None:
    db = {"app": "db"}
    a = info(node("a", labels={ZONE: "z1"}), pod("db1", labels=db))
    b = info(node("b", labels={ZONE: "z2"}))
    pref = {
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 100, "podAffinityTerm": _pod_term(db, ZONE)}
        ]
    }
    for kind, a_wins in (("podAffinity", True), ("podAntiAffinity", False)):
        pi = pod_info(pod(affinity={kind: pref}))
        sa, sb = score_nodes(pi, [a, b], cycle_state(pi, [a, b], False))
        assert (sa > sb) == a_wins, kind


# ------------------------------------------------------------------ scores


def test_least_allocated_and_balanced() -> None:
    busy = info(node("busy"), pod("o", cpu="3", memory="6Gi"))
    idle = info(node("idle"))
    pi = pod_info(pod(cpu="500m", memory="1Gi"))
    s_busy, s_idle = score_nodes(pi, [busy, idle])
    assert s_idle > s_busy
    # balanced: a node where cpu and memory would be used alike wins over a lopsided one
    cpu_heavy = info(node("cpuh"), pod("o", cpu="3"))
    even = info(node("even"), pod("o", cpu="1500m", memory="3Gi"))
    s_heavy, s_even = score_nodes(pi, [cpu_heavy, even])
    assert s_even > s_heavy


def test_owner_spread() -> None:
    a = info(node("a"), pod("r1", owner="rs1"), pod("r2", owner="rs1"))
    b = info(node("b"), pod("x1", owner="other"), pod("x2", owner="other"))
    pi = pod_info(pod(owner="rs1"))
    sa, sb = score_nodes(pi, [a, b])
    assert sb > sa


def test_preferred_node_affinity_and_prefer_no_schedule() -> None:
    a = info(node("a", labels={"disk": "ssd"}))
    b = info(node("b"))
    pref = {
        "nodeAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 50,
                    "preference": {
                        "matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]
                    },
                }
            ]
        }
    }
    sa, sb = score_nodes(pod_info(pod(affinity=pref)), [a, b])
    assert sa > sb
    tainted = info(node("t", taints=[_taint("k", "v", "PreferNoSchedule")]))
    clean = info(node("c"))
    st, sc = score_nodes(pod_info(pod()), [tainted, clean])
    assert sc > st
    tolerant = pod_info(pod(tolerations=[{"key": "k", "operator": "Exists"}]))
    st, sc = score_nodes(tolerant, [tainted, clean])
    assert st == sc


# ------------------------------------------------------------------ sampling and messages


@pytest.mark.parametrize(
    "n, pct, want",
    [
        (0, 0, 0),
        (50, 0, 50),
        (100, 0, 100),
        (500, 0, 230),
        (5000, 0, 500),
        (10000, 0, 500),
        (5000, 50, 2500),
        (200, 10, 100),
    ],
)
def test_num_nodes_to_find(n: int, pct: int, want: int) -> None:
    assert num_nodes_to_find(n, pct) == want


def test_fit_message_as_kube_scheduler() -> None:
    msg = fit_message(
        3,
        {
            "a": ["Insufficient cpu"],
            "b": ["Insufficient cpu", "Insufficient memory"],
            "c": ["node(s) had untolerated taint {k: v}"],
        },
        "preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.",
    )
    assert msg == (
        "0/3 nodes are available: 1 Insufficient memory, 1 node(s) had untolerated taint"
        " {k: v}, 2 Insufficient cpu. preemption: 0/3 nodes are available: 3 Preemption is"
        " not helpful for scheduling.."
    )
    assert fit_message(0, {}) == "no nodes available to schedule pods"


def test_cache_schedule_fit_error_and_sampling() -> None:
    cache = Cache()
    cache.set_node(node("small", cpu="1"))
    cache.set_node(node("tainted", taints=[_taint("k", "v")]))
    cache.set_node(node("full", cpu="2"))
    cache.add_pod(pod_info(pod("o", cpu="2")), "full")
    with pytest.raises(FitError) as e:
        cache.schedule(pod_info(pod(cpu="1500m")))
    assert str(e.value) == (
        "0/3 nodes are available: 1 node(s) had untolerated taint {k: v}, 2 Insufficient cpu."
    )
    cache.set_node(node("big", cpu="8"))
    assert cache.schedule(pod_info(pod(cpu="1500m"))).node == "big"
    # assume takes the room; forget gives it back
    p = pod_info(pod("a", cpu="7"))
    cache.assume(p, "big")
    with pytest.raises(FitError):
        cache.schedule(pod_info(pod(cpu="1500m")))
    cache.forget(p.key)
    assert cache.schedule(pod_info(pod(cpu="1500m"))).node == "big"
    # 1000 nodes: kube's adaptive percentage (42%) bounds how many are filtered
    many = Cache()
    for i in range(1000):
        many.set_node(node(f"n{i}"))
    placed = many.schedule(pod_info(pod(cpu="1")))
    assert placed.feasible == 420 and placed.evaluated == 420


def test_preemption_picks_the_node_with_fewest_victims() -> None:
    a = info(node("a", cpu="2"), pod("a1", cpu="1", priority=1), pod("a2", cpu="1", priority=1))
    b = info(node("b", cpu="2"), pod("b1", cpu="1", priority=2), pod("b2", cpu="1", priority=5))
    c = info(node("c", cpu="2"), pod("c1", cpu="2", priority=100))
    nodes = {"a": a, "b": b, "c": c}
    hi = pod_info(pod("hi", cpu="1", priority=10))
    err = FitError(hi, 3, {n: ["Insufficient cpu"] for n in nodes})
    cand = preempt(hi, err, nodes, False)
    # a: one victim of priority 1 (b's cheapest victim has priority 2; c's is not lower)
    assert cand is not None and cand.node == "a"
    assert [v.priority for v in cand.victims] == [1]
    # nothing lower to evict anywhere
    low = pod_info(pod("low", cpu="1", priority=0))
    err = FitError(low, 3, {n: ["Insufficient cpu"] for n in nodes})
    assert preempt(low, err, nodes, False) is None
    assert str(err) == (
        "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available:"
        " 3 No preemption victims found for incoming pod.."
    )
    never = pod_info(pod("n", cpu="1", priority=10, preemptionPolicy="Never"))
    err = FitError(never, 3, {n: ["Insufficient cpu"] for n in nodes})
    assert preempt(never, err, nodes, False) is None
    assert str(err).endswith("preemption: not eligible due to preemptionPolicy=Never.")


# ------------------------------------------------------------------ the queue


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_queue_priority_backoff_and_unschedulable() -> None:
    clock = Clock()
    q = SchedulingQueue(clock)
    q.add("ns/low", 0)
    clock.t += 1
    q.add("ns/high", 10)
    q.add("ns/low2", 0)
    assert [q.pop_nowait(), q.pop_nowait(), q.pop_nowait()] == ["ns/high", "ns/low", "ns/low2"]
    # a failed pod waits for an event, then for its backoff (1 s, doubling, up to 10 s)
    q.unschedulable_pod("ns/low")
    assert q.pop_nowait() is None and "ns/low" in q.unschedulable
    q.move_all()
    assert q.pop_nowait() is None  # still backing off
    clock.t += 1.01
    assert q.pop_nowait() == "ns/low"
    q.unschedulable_pod("ns/low")
    q.move_all()
    clock.t += 1.5
    assert q.pop_nowait() is None  # second attempt: 2 s
    clock.t += 0.6
    assert q.pop_nowait() == "ns/low"
    for _ in range(6):
        q.unschedulable_pod("ns/low")
        q.move_all()
        clock.t += 10.01
        assert q.pop_nowait() == "ns/low"
    # an event during the attempt sends the pod to backoff, not to wait for another event
    q.move_all()
    q.unschedulable_pod("ns/low")
    assert "ns/low" not in q.unschedulable
    clock.t += 10.01
    assert q.pop_nowait() == "ns/low"
    q.done("ns/low")
    q.move_all()
    clock.t += 20
    assert q.pop_nowait() is None


def test_fast_path_places_as_the_general_path() -> None:
    """The vectorized path (pods only resources tell apart) picks the node the per-node
    filters and scores pick, pod after pod, with sampling, owners, taints and full nodes."""
    import random

    rnd = random.Random(7)
    caches = [Cache(fast=True), Cache(fast=False)]
    for i in range(300):
        n = node(
            f"n{i:03d}",
            cpu=str(rnd.choice([1, 2, 4, 8])),
            memory=f"{rnd.choice([1, 2, 8, 32])}Gi",
            pods=str(rnd.choice([1, 3, 110])),
            taints=[_taint("k", "v")] if rnd.random() < 0.1 else [],
            unschedulable=rnd.random() < 0.05,
        )
        for c in caches:
            c.set_node(n)
    placed: list[list[str]] = [[], []]
    for j in range(400):
        p = pod(
            f"p{j}",
            cpu=rnd.choice([None, "100m", "500m", "2"]),
            memory=rnd.choice([None, "64Mi", "1Gi"]),
            owner=rnd.choice(["", "rs1", "rs2"]),
            tolerations=[{"operator": "Exists"}] if rnd.random() < 0.2 else [],
        )
        for k, c in enumerate(caches):
            pi = pod_info(p)
            try:
                where = c.schedule(pi)
            except FitError as e:
                placed[k].append(str(e))
                continue
            placed[k].append(f"{where.node} {where.evaluated} {where.feasible}")
            c.assume(pi, where.node)
    assert placed[0] == placed[1]
    assert any(x.startswith("0/300") for x in placed[0]) or len(set(placed[0])) > 100


def test_fast_path_follows_binds_forgets_and_node_changes() -> None:
    """The fast path keeps each pod shape's verdicts over every node and computes again only
    the nodes written since: after assumes, forgets, pods removed, nodes resized, added and
    deleted, it still places as the general path, pod after pod."""
    import random

    rnd = random.Random(11)
    caches = [Cache(fast=True), Cache(fast=False)]
    names = [f"n{i:03d}" for i in range(150)]

    def put_node(name: str) -> None:
        n = node(
            name,
            cpu=str(rnd.choice([1, 2, 4])),
            memory=f"{rnd.choice([1, 2, 8])}Gi",
            pods=str(rnd.choice([2, 5, 110])),
        )
        for c in caches:
            c.set_node(n)

    for name in names:
        put_node(name)
    placed: list[list[str]] = [[], []]
    assumed: list[str] = []
    for j in range(600):
        r = rnd.random()
        if r < 0.05 and assumed:  # a bind failed, or a pod went
            key = assumed.pop(rnd.randrange(len(assumed)))
            for c in caches:
                c.forget(key) if rnd.random() < 0.5 else c.remove_pod(key)
        elif r < 0.08:  # a node resized
            put_node(rnd.choice(names))
        elif r < 0.10:  # a node deleted, another added
            gone = names.pop(rnd.randrange(len(names)))
            for c in caches:
                c.remove_node(gone)
            names.append(f"m{j:03d}")
            put_node(names[-1])
        p = pod(
            f"p{j}",
            cpu=rnd.choice(["100m", "500m"]),
            memory=rnd.choice(["64Mi", "1Gi"]),
        )
        for k, c in enumerate(caches):
            pi = pod_info(p)
            try:
                where = c.schedule(pi)
            except FitError as e:
                placed[k].append(str(e))
                continue
            placed[k].append(f"{where.node} {where.evaluated} {where.feasible}")
            c.assume(pi, where.node)
        if not placed[0][-1].startswith("0/"):
            assumed.append(pi.key)
    assert placed[0] == placed[1]
    assert sum(x.startswith("0/") for x in placed[0]) < 500  # most pods were placed


def test_one_node_resource_score_is_the_columns_score() -> None:
    """``resource_score`` (one node, Python numbers) gives what ``resource_scores`` (numpy
    columns) gives: empty, full, overcommitted nodes and nodes without capacity too."""
    import random

    import numpy as np

    rnd = random.Random(3)
    rows = [(0, 0, 0, 0), (4000, 0, 0, 0), (0, 1 << 35, 0, 0), (4000, 1 << 35, 4000, 1 << 35)]
    rows += [(4000, 1 << 35, 5000, 1 << 30), (1, 1, 0, 0)]
    for _ in range(2000):
        cap_c, cap_m = rnd.choice([0, 1, 1000, 4000, 96000]), rnd.choice([0, 1 << 20, 1 << 35])
        rows.append(
            (cap_c, cap_m, rnd.randrange(0, 2 * cap_c + 2), rnd.randrange(0, 2 * cap_m + 2))
        )
    for cpu, mem in ((0, 0), (100, 200 << 20), (2000, 1 << 30)):
        cols = [np.array([r[i] for r in rows], dtype=np.int64) for i in range(4)]
        want = resource_scores(cpu, mem, *cols)
        got = [resource_score(cpu, mem, *r) for r in rows]
        assert got == [int(x) for x in want]


def test_nominated_pods_keep_their_room() -> None:
    cache = Cache()
    cache.set_node(node("n1", cpu="2"))
    waiting = pod_info(pod("urgent", cpu="2", priority=10))
    cache.nominate(waiting, "n1")
    with pytest.raises(FitError) as e:
        cache.schedule(pod_info(pod("low", cpu="1", priority=5)))
    assert str(e.value) == "0/1 nodes are available: 1 Insufficient cpu."
    assert cache.schedule(pod_info(pod("higher", cpu="1", priority=20))).node == "n1"
    assert cache.schedule(waiting).node == "n1"  # not in its own way
    cache.unnominate(waiting.key)
    assert cache.schedule(pod_info(pod("low", cpu="1", priority=5))).node == "n1"


def test_node_status_updates_keep_the_node_only_verdicts() -> None:
    cache = Cache()
    cache.set_node(node("n1", labels={"disk": "ssd"}))
    cache.set_node(node("n2"))
    p = pod_info(pod(nodeSelector={"disk": "ssd"}))
    assert cache.schedule(p).node == "n1"
    epoch = cache.node_epoch
    cache.set_node(node("n1", cpu="8", labels={"disk": "ssd"}))  # a status update
    assert cache.node_epoch == epoch and cache.schedule(p).node == "n1"
    cache.set_node(node("n1", cpu="8"))  # the label goes: the verdicts are made again
    assert cache.node_epoch == epoch + 1
    with pytest.raises(FitError):
        cache.schedule(p)
    cache.set_node(node("n2", labels={"disk": "ssd"}, ready="False"))
    with pytest.raises(FitError) as e:
        cache.schedule(p)
    assert "not-ready" in str(e.value)


@pytest.mark.parametrize(
    "extra, blocked",
    [
        ({}, False),  # the term looks at its own pod's namespace only
        ({"namespaces": ["team-a"]}, True),
        ({"namespaceSelector": {}}, True),  # every namespace
        ({"namespaceSelector": {"matchLabels": {"tier": "db"}}}, True),
        ({"namespaceSelector": {"matchLabels": {"tier": "web"}}}, False),
    ],
)
def test_pod_anti_affinity_namespaces(extra: Obj, blocked: bool) -> None:
    term = {**_pod_term({"app": "db"}, "kubernetes.io/hostname"), **extra}
    p = pod_info(
        pod(
            ns="default",
            affinity={
                "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}
            },
        )
    )
    a = info(node("a"), pod("db", ns="team-a", labels={"app": "db"}))
    st = cycle_state(p, [a], False, {"team-a": {"tier": "db"}, "default": {}})
    got = filter_node(p, a, st)
    assert got == (["node(s) didn't match pod anti-affinity rules"] if blocked else [])


def test_no_second_preemption_while_victims_terminate() -> None:
    going = pod("a1", cpu="2", priority=1)
    going["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    a = info(node("a", cpu="2"), going)
    b = info(node("b", cpu="2"), pod("b1", cpu="2", priority=1))
    nodes = {"a": a, "b": b}
    waiting = pod("hi", cpu="1", priority=10)
    waiting["status"] = {"nominatedNodeName": "a"}
    hi = pod_info(waiting)
    err = FitError(hi, 2, {n: ["Insufficient cpu"] for n in nodes})
    assert preempt(hi, err, nodes, False) is None
    assert str(err).endswith(
        "preemption: not eligible due to a terminating pod on the nominated node."
    )
    fresh = pod_info(pod("hi", cpu="1", priority=10))
    cand = preempt(
        fresh, FitError(fresh, 2, {n: ["Insufficient cpu"] for n in nodes}), nodes, False
    )
    assert cand is not None
