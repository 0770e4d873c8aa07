"""Suite cluster: the cluster as a whole, on the one-machine cluster of ``corral cluster up``
(testkit.cluster: a ``corral server`` and three ``corral agent`` nodes in network namespaces of
their own, the pods' cgroups below this process's cgroup).

- **startup**: ``kubectl apply`` of a Deployment of ``replicas`` pods (100), timed from before
  the fork of kubectl to the last pod Ready; per pod, from the watch event that first shows it
  (made by the ReplicaSet controller) to the one that shows it Ready (a watch the bench holds
  from before the apply), and, from the API afterwards, creationTimestamp -> the Ready
  condition's lastTransitionTime (whole seconds: the API's timestamps have no fraction).
- **churn**: ``churn`` bare pods (1000) created through the API (32 requests in flight),
  scheduled, started, then deleted, in waves of ``wave`` (250: a 2-core machine does not hold a
  thousand running pods well); the server's and the agents' CPU time over the churn (user +
  system, /proc) and their RSS sampled every 0.5 s (peak).
- **idle**: the server's and each agent's RSS with the nodes Ready, no pod, after a pause.
- **failover**: a three-member etcd (Debian's etcd-server, testkit.etcdcluster) with two
  ``corral server`` processes (the second joined with the first one's token) and a Node made
  through the API; SIGKILL of the server holding the kube-scheduler Lease, then the time until
  the survivor holds that Lease and until a pod created right after the kill is bound; in
  ``failovers`` rounds (5), each with servers and etcd of its own: the kill falls anywhere in
  the leader's renew period, so the median and the worst round are reported and the worst is
  judged.

No peer runs here (k3s is not installed): the figures stand beside the issue's goals (pod
startup p99 <= 1 s at 100 pods on 3 nodes, server idle RSS <= 100 MB, agent <= 40 MB,
failover <= 15 s), each said met or missed.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from .kubelet import KUBECTL, _rss_kib
from .model import Status, SuiteResult, Table
from .scheduler import NODE_STATUS, cpu_seconds, node_body
from .stats import percentile

NS = "bench-cluster"
IN_FLIGHT = 32
NODES = 3
# The goals.
GOAL_STARTUP_P99_S = 1.0
GOAL_SERVER_IDLE_MB = 100.0
GOAL_AGENT_IDLE_MB = 40.0
GOAL_FAILOVER_S = 15.0
# Pods that stop at once on SIGTERM (a shell as pid 1 ignores it) and use no CPU meanwhile.
SCRIPT = "trap 'exit 0' TERM; sleep 3600 & wait"


@dataclass(frozen=True)
class ClusterParams:
    replicas: int
    churn: int
    wave: int
    idle_pause: float  # seconds the cluster settles before its idle RSS is read
    timeout: float  # seconds a phase may take: longer is a failure, not a figure
    failovers: int  # rounds of the failover case (the kill falls anywhere in a renew period)


FULL = ClusterParams(
    replicas=100, churn=1000, wave=250, idle_pause=10.0, timeout=900.0, failovers=5
)
QUICK = ClusterParams(replicas=3, churn=6, wave=3, idle_pause=1.0, timeout=300.0, failovers=1)


def pod_spec() -> dict[str, Any]:
    from testkit.cluster import IMAGE

    return {
        "terminationGracePeriodSeconds": 5,
        "containers": [
            {
                "name": "app",
                "image": IMAGE,
                "imagePullPolicy": "Never",
                "command": ["sh", "-c", SCRIPT],
            }
        ],
    }


def deployment(replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "startup", "namespace": NS},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "startup"}},
            "template": {"metadata": {"labels": {"app": "startup"}}, "spec": pod_spec()},
        },
    }


def is_ready(pod: dict[str, Any]) -> bool:
    conds = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def api_startup_s(pod: dict[str, Any]) -> float | None:
    """creationTimestamp -> the Ready condition's lastTransitionTime (None: not Ready)."""
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready" and c.get("status") == "True" and c.get("lastTransitionTime"):
            return _ts(c["lastTransitionTime"]) - _ts(pod["metadata"]["creationTimestamp"])
    return None


class PodWatch:
    """The times (wall clock, as the events arrive) at which a watch on NS first showed each
    pod, showed it Ready, showed it deleted."""

    def __init__(self) -> None:
        self.seen: dict[str, float] = {}
        self.ready: dict[str, float] = {}
        self.gone: dict[str, float] = {}
        self.node: dict[str, str] = {}  # the node each pod was bound to
        self.changed = asyncio.Event()

    async def run(self, client: Any, started: asyncio.Event) -> None:
        from orchestrator.client import ClientError, Gone
        from orchestrator.client.rest import PODS

        _, rv = await client.list_all(PODS, NS)
        started.set()
        while True:
            try:
                async for ev in client.watch(PODS, NS, resource_version=rv, timeout_seconds=3600):
                    now = time.time()
                    meta = ev.object.get("metadata") or {}
                    rv = str(meta.get("resourceVersion") or rv)
                    if ev.type == "BOOKMARK":
                        continue
                    name = str(meta.get("name"))
                    self.seen.setdefault(name, now)
                    if node := (ev.object.get("spec") or {}).get("nodeName"):
                        self.node[name] = str(node)
                    if ev.type == "DELETED":
                        self.gone.setdefault(name, now)
                    elif is_ready(ev.object):
                        self.ready.setdefault(name, now)
                    self.changed.set()
            except Gone:
                _, rv = await client.list_all(PODS, NS)
            except ClientError:
                await asyncio.sleep(0.2)

    async def until(self, what: str, cond: Callable[[], bool], timeout: float) -> float:
        """Wait for ``cond`` (checked at each event); the wall clock when it held."""
        deadline = time.monotonic() + timeout
        while not cond():
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"cluster suite: {what} not reached in {timeout:.0f} s")
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), min(left, 1.0))
            except TimeoutError:
                pass
        return time.time()


class Sampler:
    """RSS of some processes every ``period`` seconds, in a thread: the peak of each."""

    def __init__(self, pids: dict[str, int], period: float = 0.5) -> None:
        self.pids = pids
        self.peak: dict[str, int] = dict.fromkeys(pids, 0)
        self.period = period
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for label, pid in self.pids.items():
                try:
                    self.peak[label] = max(self.peak[label], _rss_kib(pid))
                except OSError:
                    pass
            self._stop.wait(self.period)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _ppids() -> dict[int, int]:
    """Every process's parent, from /proc."""
    out = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = Path(f"/proc/{d}/stat").read_text()
            except OSError:
                continue
            out[int(d)] = int(stat.rpartition(")")[2].split()[1])
    return out


def descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (children, theirs, ...)."""
    parents = _ppids()
    out: list[int] = []
    todo = [pid]
    while todo:
        kids = [c for c, pp in parents.items() if pp == todo[-1]]
        todo.pop()
        out += kids
        todo += kids
    return out


def tree_rss_kib(pid: int) -> tuple[int, list[int]]:
    """VmRSS of ``pid`` plus that of every process below it (the memory it holds, children
    included: a child kept for some work is the process's memory too), and those processes."""
    kids = descendants(pid)
    total = _rss_kib(pid)
    for k in kids:
        try:
            total += _rss_kib(k)
        except OSError:
            pass
    return total, kids


def _status(pid: int) -> dict[str, int]:
    """VmRSS, RssAnon, RssFile (KiB) and Threads of /proc/PID/status."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "Threads"):
            out[key] = int(value.split()[0])
    return out


def _mib(kib: float) -> str:
    return f"{kib / 1024:.1f} MiB"


def _goal(value: float, goal: float, unit: str, judge: bool = True) -> str:
    """The goal, and (unless --quick, which judges nothing) whether ``value`` meets it."""
    if not judge:
        return f"<= {goal:g} {unit} (--quick: not judged)"
    return f"<= {goal:g} {unit}: {'met' if value <= goal else 'missed'} ({value / goal:.2f}x)"


def _mb(kib: float) -> float:
    """KiB as MB (10^6 bytes: the unit the goals are written in)."""
    return kib * 1024 / 1e6


async def _bounded(n: int, fn: Callable[[int], Any]) -> None:
    it = iter(range(n))

    async def worker() -> None:
        for i in it:
            await fn(i)

    await asyncio.gather(*(worker() for _ in range(min(IN_FLIGHT, n))))


async def measure_cluster(
    kubeconfig: Path, pids: dict[str, int], cp: ClusterParams, home: Path
) -> dict[str, Any]:
    """Startup, churn and idle figures against a running cluster whose nodes are Ready."""
    from orchestrator.client import AlreadyExists, ApiClient, load_kubeconfig
    from orchestrator.client.rest import DEPLOYMENTS, NAMESPACES, PODS

    out: dict[str, Any] = {}
    # idle: nodes Ready, no pod
    await asyncio.sleep(cp.idle_pause)
    out["idle_kib"] = {label: tree_rss_kib(pid)[0] for label, pid in pids.items()}
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "KUBECONFIG": str(kubeconfig)}
    async with ApiClient(load_kubeconfig(kubeconfig), max_connections=IN_FLIGHT) as c:
        try:
            await c.create(NAMESPACES, None, {"metadata": {"name": NS}})
        except AlreadyExists:
            pass
        w = PodWatch()
        started = asyncio.Event()
        watcher = asyncio.create_task(w.run(c, started))
        try:
            await started.wait()
            # ---- startup: kubectl apply of a Deployment until every pod is Ready
            t0 = time.time()
            p = await asyncio.to_thread(
                subprocess.run,
                [KUBECTL, "apply", "-f", "-"],
                input=json.dumps(deployment(cp.replicas)),
                capture_output=True,
                text=True,
                env=env,
                timeout=cp.timeout,
            )
            if p.returncode != 0:
                raise OSError(f"kubectl apply: {p.stderr.strip()}")
            end = await w.until(
                f"{cp.replicas} pods Ready",
                lambda: sum(1 for n in w.ready if n.startswith("startup-")) >= cp.replicas,
                cp.timeout,
            )
            pods, _ = await c.list_all(PODS, NS, label_selector="app=startup")
            names = [x["metadata"]["name"] for x in pods]
            out["startup_total_s"] = end - t0
            out["startup_watch_s"] = sorted(w.ready[n] - w.seen[n] for n in names)
            out["startup_api_s"] = sorted(
                s for s in (api_startup_s(x) for x in pods) if s is not None
            )
            out["startup_nodes"] = len({x["spec"].get("nodeName") for x in pods})
            await c.delete(DEPLOYMENTS, NS, "startup", propagation="Foreground")
            await w.until(
                "the Deployment's pods deleted",
                lambda: all(n in w.gone for n in names),
                cp.timeout,
            )
            # ---- churn: waves of bare pods created, Ready, deleted, gone
            cpu0 = {label: cpu_seconds(pid) for label, pid in pids.items()}
            t0 = time.time()
            with Sampler(pids) as sampler:
                for first in range(0, cp.churn, cp.wave):
                    batch = [f"churn-{i:05d}" for i in range(first, min(first + cp.wave, cp.churn))]

                    async def make(i: int, batch: list[str] = batch) -> None:
                        body = {"metadata": {"name": batch[i]}, "spec": pod_spec()}
                        await c.create(PODS, NS, body)

                    async def remove(i: int, batch: list[str] = batch) -> None:
                        await c.delete(PODS, NS, batch[i])

                    await _bounded(len(batch), make)
                    await w.until(
                        f"{batch[0]}..{batch[-1]} Ready",
                        lambda batch=batch: all(n in w.ready for n in batch),
                        cp.timeout,
                    )
                    await _bounded(len(batch), remove)
                    await w.until(
                        f"{batch[0]}..{batch[-1]} gone",
                        lambda batch=batch: all(n in w.gone for n in batch),
                        cp.timeout,
                    )
            out["churn_s"] = time.time() - t0
            out["churn_cpu_s"] = {
                label: cpu_seconds(pid) - cpu0[label] for label, pid in pids.items()
            }
            out["churn_peak_kib"] = dict(sampler.peak)
            out["churn_pods_per_node"] = dict(
                Counter(w.node.get(f"churn-{i:05d}", "?") for i in range(cp.churn))
            )
        finally:
            watcher.cancel()
            try:
                await watcher
            except asyncio.CancelledError:
                pass
    return out


def measure_failover(work: Path, timeout: float) -> dict[str, float]:
    """Two servers on a three-member etcd: SIGKILL the kube-scheduler leader; seconds until the
    survivor holds the Lease and until a pod created after the kill is bound. Raises
    testkit.etcdcluster.EtcdMissing without etcd."""
    from testkit.kubeserver import Server, lease_holder, servers_on_etcd

    with servers_on_etcd(work) as (_etcd, servers):
        first = servers[0]
        code, made = first.json("POST", "/api/v1/nodes", node_body("failover-node"))
        if code != 201:
            raise OSError(f"create the node: {code} {made}")
        deadline = time.monotonic() + timeout
        while True:  # the node's status (a controller may write it meanwhile: 409, again)
            code, node = first.json("GET", "/api/v1/nodes/failover-node")
            node["status"] = NODE_STATUS
            if first.json("PUT", "/api/v1/nodes/failover-node/status", node)[0] == 200:
                break
            if time.monotonic() > deadline:
                raise TimeoutError("failover: the node's status could not be written")

        def wait(what: str, cond: Callable[[], Any]) -> Any:
            end = time.monotonic() + timeout
            while time.monotonic() < end:
                got = cond()
                if got:
                    return got
                time.sleep(0.05)
            raise TimeoutError(f"failover: {what} not reached in {timeout:.0f} s")

        def leader() -> Server | None:
            who = lease_holder(first, "kube-scheduler")
            return next((s for s in servers if s.proc and f"_{s.proc.pid}_" in who), None)

        victim = wait("a kube-scheduler leader", leader)
        survivor = next(s for s in servers if s is not victim)
        assert survivor.proc is not None
        pod = {"metadata": {"name": "after-failover"}, "spec": pod_spec()}
        t0 = time.monotonic()
        victim.kill()
        code, body = survivor.json("POST", "/api/v1/namespaces/default/pods", pod)
        if code != 201:
            raise OSError(f"create a pod through the survivor: {code} {body}")
        own = f"_{survivor.proc.pid}_"
        wait(
            "the survivor holding the Lease",
            lambda: own in lease_holder(survivor, "kube-scheduler"),
        )
        lease_s = time.monotonic() - t0

        def bound() -> bool:
            code, p = survivor.json("GET", "/api/v1/namespaces/default/pods/after-failover")
            return code == 200 and bool((p.get("spec") or {}).get("nodeName"))

        wait("the pod bound", bound)
        return {"lease_s": lease_s, "bound_s": time.monotonic() - t0}


def tables(
    res: dict[str, Any],
    failover: dict[str, list[float]] | None,
    why: str,
    cp: ClusterParams,
    judge: bool = True,
) -> tuple[Table, ...]:
    """The suite's four tables from the figures of measure_cluster and measure_failover
    (None: not run, ``why``); ``judge``: say whether each goal is met (not with --quick)."""
    watch = res["startup_watch_s"]
    api = res["startup_api_s"]
    p99 = percentile(watch, 99)
    rows = [
        ("kubectl apply -> all Ready", f"{res['startup_total_s']:.2f} s", ""),
        ("per pod p50 (watch: created -> Ready)", f"{percentile(watch, 50):.3f} s", ""),
        ("per pod p99 (watch: created -> Ready)", f"{p99:.3f} s",
         _goal(p99, GOAL_STARTUP_P99_S, "s", judge)),
        ("per pod p50 (API: creationTimestamp -> Ready, whole s)",
         f"{percentile(api, 50):.0f} s", ""),
        ("per pod p99 (API: creationTimestamp -> Ready, whole s)",
         f"{percentile(api, 99):.0f} s", ""),
        ("nodes the pods ran on", str(res["startup_nodes"]), ""),
    ]  # fmt: skip
    startup = Table(
        f"Pod startup: a Deployment of {cp.replicas} replicas on {NODES} nodes",
        ("", "figure", "goal"),
        tuple(rows),
        (
            "Watch figures: the arrival of the event first showing the pod (made by the "
            "ReplicaSet controller) to the one showing it Ready; the image is on the nodes.",
            f"Goal: p99 <= {GOAL_STARTUP_P99_S:g} s (Kubernetes' SLO is 5 s).",
        ),
        {"total_s": res["startup_total_s"], "watch_s": watch, "api_s": api},
    )
    agents = sorted(k for k in res["idle_kib"] if k != "server")
    on_node = {a: int(res["churn_pods_per_node"].get(a, 0)) for a in agents}
    churn_rows = [
        ("pods created, Ready, deleted, gone", str(cp.churn), ""),
        ("waves (pods running at once)", f"{-(-cp.churn // cp.wave)} x {cp.wave}", ""),
        ("wall", f"{res['churn_s']:.1f} s", f"{cp.churn / res['churn_s']:.1f} pods/s"),
        ("server CPU", f"{res['churn_cpu_s']['server']:.1f} s",
         f"{1000 * res['churn_cpu_s']['server'] / cp.churn:.1f} ms/pod"),
        *((f"{a} CPU ({on_node[a]} pods ran there)", f"{res['churn_cpu_s'][a]:.1f} s",
           f"{1000 * res['churn_cpu_s'][a] / max(on_node[a], 1):.1f} ms/pod") for a in agents),
        ("server peak RSS", _mib(res["churn_peak_kib"]["server"]), ""),
        *((f"{a} peak RSS", _mib(res["churn_peak_kib"][a]), "") for a in agents),
    ]  # fmt: skip
    churn = Table(
        f"Churn: {cp.churn} pods in waves of {cp.wave}",
        ("", "figure", "per pod"),
        tuple(churn_rows),
        (
            f"Bare pods created through the API ({IN_FLIGHT} in flight), scheduled, started, "
            "deleted; each wave waits for all Ready, then for all gone. In waves: this 2-core "
            f"machine is not asked to hold all {cp.churn} pods running at once.",
            "CPU: user + system time of the process (every thread) over the whole churn, per "
            "pod of the churn (the server) or per pod the node ran (an agent); the pods' "
            "monitors and containers are not counted (they are not the agent's).",
        ),
        {
            "wall_s": res["churn_s"],
            "cpu_s": res["churn_cpu_s"],
            "peak_kib": res["churn_peak_kib"],
            "pods_per_node": res["churn_pods_per_node"],
        },
    )
    server_idle = _mb(res["idle_kib"]["server"])
    idle = Table(
        "Idle memory (VmRSS, nodes Ready, no pod)",
        ("process", "RSS", "goal"),
        (
            (
                "corral server",
                _mib(res["idle_kib"]["server"]),
                _goal(server_idle, GOAL_SERVER_IDLE_MB, "MB", judge),
            ),
            *(
                (
                    f"corral agent ({a})",
                    _mib(res["idle_kib"][a]),
                    _goal(_mb(res["idle_kib"][a]), GOAL_AGENT_IDLE_MB, "MB", judge),
                )
                for a in agents
            ),
        ),  # fmt: skip
        (
            "Read after the nodes were Ready and a pause, before any pod; the goals are in MB "
            "(10^6 bytes), the figures in MiB.",
            "k3s' server idles at about 500 MB (the issue's reference; not measured here).",
        ),
        {"idle_kib": res["idle_kib"]},
    )
    if failover is None:
        rows_f: tuple[tuple[str, ...], ...] = (("failover", "skipped", why),)
    else:
        rows_f = tuple(
            (f"{what} (median / worst of {len(failover[key])})",
             f"{percentile(failover[key], 50):.1f} s / {max(failover[key]):.1f} s",
             _goal(max(failover[key]), GOAL_FAILOVER_S, "s", judge))
            for key, what in (
                ("lease_s", "kill -> the survivor holds the kube-scheduler Lease"),
                ("bound_s", "kill -> a pod created after the kill is bound"),
            )
        )  # fmt: skip
    fo = Table(
        "Failover: two servers on a three-member etcd, the leader killed (SIGKILL)",
        ("", "figure", "goal"),
        rows_f,
        (
            "The Leases last 15 s (kube-scheduler's default leaseDuration): a killed leader's "
            "Lease must expire before the survivor can take it.",
        ),
        {k: list(v) for k, v in (failover or {}).items()},
    )
    return startup, churn, idle, fo


def cluster_suite(p: Any) -> SuiteResult:
    from testkit.cluster import image_dir, one_machine_cluster
    from testkit.etcdcluster import EtcdMissing
    from testkit.rootfs import cached_rootfs

    from .spawn import ROOTFS_CACHE
    from .suites import SUITES

    cp = QUICK if p.quick else FULL
    if shutil.which(KUBECTL) is None:
        return SuiteResult("cluster", SUITES["cluster"], Status.SKIPPED, f"no kubectl ({KUBECTL})")
    with ExitStack() as stack:
        work = Path(tempfile.mkdtemp(prefix="cbc-", dir="/var/tmp"))
        stack.callback(shutil.rmtree, work, True)
        images = image_dir(cached_rootfs(Path(ROOTFS_CACHE)), work / "images")
        home = work / "home"
        home.mkdir()
        with one_machine_cluster(work, nodes=NODES, images=images) as state:
            assert state.server is not None
            pids = {"server": state.server.pid}
            pids.update({n.name: n.proc.pid for n in state.nodes if n.proc is not None})
            res = asyncio.run(measure_cluster(state.kubeconfig, pids, cp, home))
        failover: dict[str, list[float]] | None = None
        why = ""
        try:
            rounds = [
                measure_failover(work / f"failover-{i}", cp.timeout) for i in range(cp.failovers)
            ]
            failover = {key: [r[key] for r in rounds] for key in ("lease_s", "bound_s")}
        except EtcdMissing as e:
            why = str(e)
    return SuiteResult(
        name="cluster",
        description=SUITES["cluster"],
        status=Status.OK,
        reason=f"failover not run: {why}" if failover is None else "",
        tables=tables(res, failover, why, cp, judge=not p.quick),
    )


def idle_table(res: dict[str, Any], pause: float, judge: bool) -> Table:
    """The cluster-idle suite's table from ``measure_idle``'s figures."""
    rows = []
    for label, f in res.items():
        proc = "corral server" if label == "server" else f"corral agent ({label})"
        goal = GOAL_SERVER_IDLE_MB if label == "server" else GOAL_AGENT_IDLE_MB
        rows.append(
            (
                proc,
                _mib(f["tree_kib"]),
                _mib(f["RssAnon"]),
                _mib(f["RssFile"]),
                str(f["Threads"]),
                str(len(f["children"])),
                _goal(_mb(f["tree_kib"]), goal, "MB", judge),
            )
        )
    return Table(
        "Idle memory (VmRSS, nodes Ready, no pod)",
        ("process", "RSS (with children)", "anon", "file", "threads", "children", "goal"),
        tuple(rows),
        (
            f"Read {pause:g} s after the {NODES} nodes were Ready, before any pod: VmRSS of the "
            "process plus that of every process below it (children: how many there were); "
            "anon and file: the process's own RssAnon and RssFile (file-backed pages, the "
            "interpreter and the shared libraries, are shared with other processes). The "
            "goals are in MB (10^6 bytes), the figures in MiB.",
        ),
        {"idle": res},
    )


def measure_idle(pids: dict[str, int]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for label, pid in pids.items():
        tree, kids = tree_rss_kib(pid)
        out[label] = {"tree_kib": tree, "children": kids, **_status(pid)}
    return out


def cluster_idle_suite(p: Any) -> SuiteResult:
    """The idle part of the cluster suite alone (a minute, where the whole suite takes long):
    the same one-machine cluster, read after the same pause, with children and a breakdown."""
    from testkit.cluster import image_dir, one_machine_cluster
    from testkit.rootfs import cached_rootfs

    from .spawn import ROOTFS_CACHE
    from .suites import SUITES

    cp = QUICK if p.quick else FULL
    with ExitStack() as stack:
        work = Path(tempfile.mkdtemp(prefix="cbidle-", dir="/var/tmp"))
        stack.callback(shutil.rmtree, work, True)
        images = image_dir(cached_rootfs(Path(ROOTFS_CACHE)), work / "images")
        with one_machine_cluster(work, nodes=NODES, images=images) as state:
            assert state.server is not None
            pids = {"server": state.server.pid}
            pids.update({n.name: n.proc.pid for n in state.nodes if n.proc is not None})
            time.sleep(cp.idle_pause)
            res = measure_idle(pids)
    return SuiteResult(
        name="cluster-idle",
        description=SUITES["cluster-idle"],
        status=Status.OK,
        tables=(idle_table(res, cp.idle_pause, judge=not p.quick),),
    )
