"""Suite scheduler: scheduling throughput in the manner of kube-scheduler's scheduler_perf
(SchedulingBasic): N nodes and M pods are created through the API server, and the figure is
pods per second from the first pod created to the last one bound.

The API server is ``corral server --disable-scheduler --disable-controller-manager`` (SQLite
on disk under /var/tmp, or a one-member etcd on tmpfs through ``--datastore-endpoint``): as in
scheduler_perf, which runs an API server and the scheduler and no controller manager (ours
would also watch every pod through the server and, with no kubelet to renew the nodes' Leases,
mark them all unreachable after 40 s); the scheduler is ``corral
scheduler --kubeconfig`` in its own process (one core each on a 2-core machine, as the
scale-out deployment runs it); the bench process creates the objects (64 requests in flight)
and counts bindings through a watch of bound pods (``spec.nodeName!=``). Nodes are
scheduler_perf's default node (4 cpu, 32Gi, 110 pods, Ready), pods its default pod (100m cpu,
500Mi). Each node is created with its podCIDR (a /24 of the server's --cluster-cidr, as
``kubelet --pod-cidr`` or a cloud would give it). A warm-up pod is bound before timing
starts, so the scheduler has listed every node. Each bind is one API call.

kube-scheduler is not installed here: its own CI floor for this test at 5000 nodes (about 680
pods/s, on far larger machines) and the goal (1000 pods/s) are the references in the notes.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .model import Status, SuiteResult, Table

IN_FLIGHT = 64
GOAL = 1000.0  # pods/s at 5000 nodes with SQLite (issue 16)
KUBE_FLOOR = 680.0  # kube-scheduler's scheduler_perf threshold, SchedulingBasic 5000 nodes
NS = "sched-bench"
CLUSTER_CIDR = "10.128.0.0/9"  # a /24 for each of 32768 nodes (the default /16 holds 256)


@dataclass(frozen=True, slots=True)
class SchedParams:
    sizes: tuple[tuple[int, int], ...]  # (nodes, pods)
    timeout: float  # seconds for all pods to be bound


FULL = SchedParams(sizes=((500, 10_000), (5000, 10_000)), timeout=600.0)
QUICK = SchedParams(sizes=((5, 20),), timeout=60.0)


def node_body(name: str, index: int | None = None) -> dict[str, Any]:
    """A Node; with ``index``, the index-th /24 of CLUSTER_CIDR as its podCIDR."""
    spec: dict[str, Any] = {}
    if index is not None:
        net = ipaddress.ip_network(CLUSTER_CIDR)
        cidr = str(ipaddress.ip_network((int(net.network_address) + index * 256, 24)))
        spec = {"podCIDR": cidr, "podCIDRs": [cidr]}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": spec,
    }


NODE_STATUS = {
    "capacity": {"cpu": "4", "memory": "32Gi", "pods": "110"},
    "allocatable": {"cpu": "4", "memory": "32Gi", "pods": "110"},
    "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
}


def pod_body(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "bench"}},
        "spec": {
            "containers": [
                {
                    "name": "pause",
                    "image": "registry.k8s.io/pause:3.9",
                    "resources": {"requests": {"cpu": "100m", "memory": "500Mi"}},
                }
            ]
        },
    }


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (and its reaped children) from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    return sum(int(x) for x in fields[11:15]) / ticks


async def _bounded(n: int, fn: Any) -> None:
    it = iter(range(n))

    async def worker() -> None:
        for i in it:
            await fn(i)

    await asyncio.gather(*(worker() for _ in range(min(IN_FLIGHT, n))))


async def measure(
    kubeconfig: Path, nodes: int, pods: int, timeout: float, server_pid: int = 0
) -> dict[str, float]:
    """Against a server with no scheduler: make ``nodes`` nodes, start ``corral scheduler``,
    bind a warm-up pod, then time ``pods`` pods from the first create to the last bind."""
    from orchestrator.client import AlreadyExists, ApiClient, Conflict, load_kubeconfig
    from orchestrator.client.rest import NAMESPACES, NODES, PODS
    from testkit.kubeserver import CORRAL

    # A connection for each create in flight and one for the watch of bound pods: with the
    # watch holding one of IN_FLIGHT, one creator waited for a free connection and, on a
    # loaded machine, lost it to the others for the client's whole timeout (60 s).
    async with ApiClient(load_kubeconfig(kubeconfig), max_connections=IN_FLIGHT + 1) as c:
        try:
            await c.create(NAMESPACES, None, {"metadata": {"name": NS}})
        except AlreadyExists:
            pass

        async def make_node(i: int) -> None:
            name = f"node-{i:05d}"
            made = await c.create(NODES, None, node_body(name, i))
            while True:  # the controllers may write the new Node first (podCIDR, taints)
                made["status"] = NODE_STATUS
                try:
                    await c.update_status(NODES, None, made)
                    return
                except Conflict:
                    made = await c.get(NODES, None, name)

        await _bounded(nodes, make_node)
        sched = subprocess.Popen(
            [CORRAL, "scheduler", "--kubeconfig", str(kubeconfig)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            bound: set[str] = set()
            done = asyncio.Event()
            first_bind: dict[str, float] = {}
            _, rv = await c.list_all(PODS, NS)
            ready = asyncio.Event()

            async def watch() -> None:
                ready.set()
                async for ev in c.watch(  # bound pods only: a binding shows as ADDED
                    PODS,
                    NS,
                    resource_version=rv,
                    field_selector="spec.nodeName!=",
                    timeout_seconds=3600,
                ):
                    o = ev.object
                    name = (o.get("metadata") or {}).get("name")
                    if (o.get("spec") or {}).get("nodeName") and name not in bound:
                        bound.add(name)
                        first_bind.setdefault("t", time.perf_counter())
                        if len(bound) == pods + 1:
                            done.set()

            watcher = asyncio.create_task(watch())
            await ready.wait()
            await c.create(PODS, NS, pod_body("warmup"))
            deadline = time.monotonic() + timeout
            while "warmup" not in bound:
                if time.monotonic() > deadline or sched.poll() is not None:
                    raise RuntimeError("corral scheduler did not bind the warm-up pod")
                await asyncio.sleep(0.05)
            cpu0 = cpu_seconds(sched.pid)
            srv0 = cpu_seconds(server_pid) if server_pid else 0.0
            t0 = time.perf_counter()
            await _bounded(pods, lambda i: c.create(PODS, NS, pod_body(f"pod-{i:05d}")))
            t_created = time.perf_counter()
            try:
                await asyncio.wait_for(done.wait(), max(1.0, deadline - time.monotonic()))
            except TimeoutError:
                raise RuntimeError(f"{len(bound) - 1} of {pods} pods bound in time") from None
            t1 = time.perf_counter()
            cpu1 = cpu_seconds(sched.pid)
            srv1 = cpu_seconds(server_pid) if server_pid else 0.0
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        finally:
            sched.send_signal(signal.SIGTERM)
            try:
                sched.wait(timeout=30)
            except subprocess.TimeoutExpired:
                sched.kill()
                sched.wait()
    return {
        "pods_per_s": pods / (t1 - t0),
        "creates_per_s": pods / (t_created - t0),
        "wall_s": t1 - t0,
        "scheduler_cpu_s": cpu1 - cpu0,
        "server_cpu_s": srv1 - srv0,
    }


ROWS = (
    ("pods/s (create to bind)", "pods_per_s", "{:.0f}"),
    ("pods created/s", "creates_per_s", "{:.0f}"),
    ("wall (s)", "wall_s", "{:.1f}"),
    ("scheduler CPU (s)", "scheduler_cpu_s", "{:.1f}"),
    ("API server CPU (s)", "server_cpu_s", "{:.1f}"),
)


def label(store: str, nodes: int, pods: int) -> str:
    return f"{store} {nodes} nodes / {pods} pods"


def table(results: dict[str, dict[str, float]], skipped: dict[str, str], p: SchedParams) -> Table:
    labels = list(results) + list(skipped)
    rows = []
    for title, key, fmt in ROWS:
        row = [title]
        for lab in labels:
            row.append(fmt.format(results[lab][key]) if lab in results else "-")
        rows.append(tuple(row))
    goal_row = ["vs goal 1000 pods/s"]
    floor_row = ["vs kube-scheduler CI floor 680 pods/s"]
    for lab in labels:
        r = results.get(lab)
        goal_row.append(f"{r['pods_per_s'] / GOAL:.2f}x" if r else "-")
        floor_row.append(f"{r['pods_per_s'] / KUBE_FLOOR:.2f}x" if r else "-")
    rows += [tuple(goal_row), tuple(floor_row)]
    notes = [
        "corral server --disable-scheduler --disable-controller-manager (as scheduler_perf:"
        " an API server and the scheduler) + corral scheduler in its own process; "
        f"{IN_FLIGHT} creates in flight from the bench process; every bind is one API call",
        "nodes: 4 cpu, 32Gi, 110 pods, Ready, created with their podCIDR; pods: 100m cpu,"
        " 500Mi (scheduler_perf's defaults)",
        "SQLite on disk (synchronous=FULL); etcd 1 member with its data on tmpfs",
        f"kube-scheduler is not installed here: {KUBE_FLOOR:.0f} pods/s is its scheduler_perf"
        " threshold for SchedulingBasic at 5000 nodes (other hardware), a reference only",
    ]
    notes += [f"{lab}: {why}" for lab, why in skipped.items()]
    return Table(
        title="scheduling throughput",
        columns=("", *labels),
        rows=tuple(rows),
        notes=tuple(notes),
        data={"results": results, "skipped": skipped},
    )


def _run_one(endpoint: str, nodes: int, pods: int, timeout: float) -> dict[str, float]:
    from testkit.kubeserver import API_ONLY, Server

    root = Path(tempfile.mkdtemp(prefix="cbsched-", dir="/var/tmp"))
    extra: tuple[str, ...] = (*API_ONLY, "--cluster-cidr", CLUSTER_CIDR)
    if endpoint:
        extra += ("--datastore-endpoint", endpoint)
    srv = Server(root, extra=extra)
    try:
        srv.start()
        pid = srv.proc.pid if srv.proc is not None else 0
        return asyncio.run(measure(srv.kubeconfig, nodes, pods, timeout, pid))
    finally:
        srv.stop()
        shutil.rmtree(root, ignore_errors=True)


def run_all(p: SchedParams) -> Table:
    results: dict[str, dict[str, float]] = {}
    skipped: dict[str, str] = {}
    for nodes, pods in p.sizes:
        results[label("sqlite", nodes, pods)] = _run_one("", nodes, pods, p.timeout)
    from testkit.etcdcluster import EtcdCluster, EtcdMissing

    for nodes, pods in p.sizes:
        lab = label("etcd", nodes, pods)
        cluster = EtcdCluster(1)
        try:
            cluster.start()
        except EtcdMissing as e:
            skipped[lab] = str(e)
            continue
        try:
            results[lab] = _run_one(cluster.url, nodes, pods, p.timeout)
        finally:
            cluster.stop()
    return table(results, skipped, p)


def scheduler_suite(quick: bool) -> SuiteResult:
    from .suites import SUITES

    t = run_all(QUICK if quick else FULL)
    return SuiteResult("scheduler", SUITES["scheduler"], Status.OK, tables=(t,))
