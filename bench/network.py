"""Suite network: one pod's network set up and torn down, per pod, with pyroute2 imported.

Everything happens in network namespaces made here (``OwnedNetns``: anonymous, held by an fd):
a "node" namespace holding the bridge, and a fresh "pod" namespace per cycle. The machine's
own namespace is never touched. Corral's ``NodeNetwork`` (bridge, veth, on-disk IPAM, routes)
is compared with the CNI reference plugins ``bridge`` + ``host-local`` (and ``loopback``) run
through ``runtime.network.cni``, as podman and the kubelet's CNI runtimes do.

Namespace creation is not timed (a pod runtime makes the namespace with the pod anyway). Wall
time is per pod; CPU is this process (all threads) plus the children it reaped (CNI plugins,
firewall tools). Peak RSS is not measured here (0).
"""

from __future__ import annotations

import ipaddress
import os
import resource
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .model import CaseResult, RunnerResult, Sample, Status, SuiteResult
from .stats import interleaved_rounds, ratios

if TYPE_CHECKING:
    from .spawn import Params

CNI_DIRS = ("/usr/lib/cni", "/opt/cni/bin", "/usr/libexec/cni")
CNI_PLUGINS = ("bridge", "host-local", "loopback")
POD_CIDR = "10.251.0.0/24"
CNI_CIDR = "10.252.0.0/24"


@dataclass(frozen=True, slots=True)
class Phases:
    """One pod's cycle: a sample for setup, one for teardown."""

    setup: Sample
    teardown: Sample

    @property
    def total(self) -> Sample:
        s, t = self.setup, self.teardown
        return Sample(s.wall_s + t.wall_s, s.cpu_s + t.cpu_s, max(s.maxrss_kib, t.maxrss_kib))


class Clock:
    """Wall and CPU time (this process's threads plus reaped children) between marks."""

    @staticmethod
    def now() -> tuple[float, float]:
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return time.perf_counter(), time.process_time() + kids.ru_utime + kids.ru_stime

    @staticmethod
    def since(mark: tuple[float, float]) -> Sample:
        wall, cpu = Clock.now()
        return Sample(wall_s=wall - mark[0], cpu_s=cpu - mark[1], maxrss_kib=0)


Cycle = Callable[[int], Phases]


def cni_conflist(ipam_dir: str) -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",
        "name": "corral-bench",
        "plugins": [
            {"type": "loopback"},
            {
                "type": "bridge",
                "bridge": "cni-bench0",
                "isGateway": True,
                "ipMasq": False,
                "ipam": {
                    "type": "host-local",
                    "dataDir": ipam_dir,
                    "ranges": [[{"subnet": CNI_CIDR}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
        ],
    }


def cni_plugin_dir() -> str | None:
    for d in CNI_DIRS:
        if all(os.access(os.path.join(d, p), os.X_OK) for p in CNI_PLUGINS):
            return d
    return None


@contextmanager
def corral_cycle(work: Path) -> Iterator[Cycle]:
    """A node namespace with Corral's bridge (made untimed); yields one pod's timed cycle."""
    from runtime.network import NetworkConfig, NodeNetwork, OwnedNetns

    with ExitStack() as stack:
        node_ns = stack.enter_context(OwnedNetns())
        cfg = NetworkConfig(pod_cidr=ipaddress.IPv4Network(POD_CIDR), state_dir=work / "corral")
        node = NodeNetwork(cfg, node_ns.ns)
        node.ensure()

        def finish() -> None:
            node.gc([])
            node.destroy()

        stack.callback(finish)

        def cycle(i: int) -> Phases:
            with OwnedNetns() as pod_ns:
                mark = Clock.now()
                node.setup_pod(f"bench-{i}", pod_ns.ns, [])
                setup = Clock.since(mark)
                mark = Clock.now()
                node.teardown_pod(f"bench-{i}")
                return Phases(setup, Clock.since(mark))

        yield cycle


@contextmanager
def cni_cycle(work: Path, plugin_dir: str) -> Iterator[Cycle]:
    """The same with the CNI plugins: ADD then DEL for a pod in a fresh namespace."""
    from runtime.network import OwnedNetns
    from runtime.network.cni import CniBackend, CniNetwork

    with OwnedNetns() as node_ns:
        net = CniNetwork.from_conflist(cni_conflist(str(work / "cni-ipam")))
        cni = CniBackend(net, (plugin_dir,), work / "cni-cache", node_netns=node_ns.ns)

        def cycle(i: int) -> Phases:
            with OwnedNetns() as pod_ns:
                mark = Clock.now()
                cni.add(f"bench-{i}", pod_ns.ns)
                setup = Clock.since(mark)
                mark = Clock.now()
                cni.delete(f"bench-{i}", pod_ns.ns)
                return Phases(setup, Clock.since(mark))

        yield cycle


@dataclass
class Collected:
    """Per runner, in round order: what each measured cycle took."""

    labels: list[str]
    phases: dict[str, list[Phases]] = field(default_factory=dict)


def collect(cycles: list[tuple[str, Cycle]], rounds: int, warmup: int) -> Collected:
    """Warm-up cycles of each, then ``rounds`` interleaved rounds (A B, B A, ...)."""
    by_label = dict(cycles)
    n = 0
    for _label, cycle in cycles:
        for _ in range(warmup):
            cycle(n)
            n += 1
    out = Collected([label for label, _ in cycles])
    out.phases = {label: [] for label in out.labels}
    for order in interleaved_rounds(out.labels, rounds):
        for label in order:
            out.phases[label].append(by_label[label](n))
            n += 1
    return out


def cases(c: Collected, warmup: int, notes: tuple[str, ...] = ()) -> list[CaseResult]:
    """Three cases from the same cycles: setup, teardown and the two together."""
    out = []
    for title, pick in (
        ("pod network setup", lambda ph: ph.setup),
        ("pod network teardown", lambda ph: ph.teardown),
        ("pod network setup + teardown", lambda ph: ph.total),
    ):
        runners = tuple(
            RunnerResult(label, tuple(pick(ph) for ph in c.phases[label])) for label in c.labels
        )
        out.append(CaseResult(title, warmup, 1, runners, ratios(runners), notes))
    return out


def network_suite(p: Params) -> SuiteResult:
    import pyroute2  # noqa: F401  (its import cost is not per pod)

    from .suites import SUITES

    notes: list[str] = []
    work = Path(tempfile.mkdtemp(prefix="corral-bench-net-", dir="/run"))
    try:
        with ExitStack() as stack:
            cycles: list[tuple[str, Cycle]] = [
                ("corral (NodeNetwork)", stack.enter_context(corral_cycle(work)))
            ]
            plugin_dir = cni_plugin_dir()
            if plugin_dir is None:
                notes.append("CNI plugins bridge/host-local/loopback not found: not measured.")
            else:
                cycles.append(
                    ("CNI bridge + host-local", stack.enter_context(cni_cycle(work, plugin_dir)))
                )
            collected = collect(cycles, p.runs, p.warmup)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    note = (
        "Per pod, in namespaces the bench made (never the machine's own); namespace creation "
        "is not timed; CPU includes CNI plugin processes; peak RSS is not measured (0)."
    )
    return SuiteResult(
        name="network",
        description=SUITES["network"],
        status=Status.OK,
        reason="; ".join(notes),
        cases=tuple(cases(collected, p.warmup, (note,))),
    )
