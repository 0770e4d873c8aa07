"""Suite density: what a running pod costs in memory, and how many pods a node takes.

1. **Per-pod memory with N pods running** (N = ``--density``, 50): N pods (one busybox
   ``sleep`` container each, no pod network) started one after another; then each pod's
   Corral monitor's RSS and PSS from ``/proc/<pid>/smaps_rollup``. Compared with podman's
   per-container ``conmon`` (a podman pod has two containers, the infra one and the app one,
   so two conmons per pod, plus the infra container's process, which Corral does not have:
   its monitor holds the pod's namespaces itself). Also the node's used memory (MemTotal -
   MemAvailable) after minus before, per pod: everything a pod costs (processes, mounts,
   cgroups, kernel objects), but also whatever else the machine did meanwhile.
2. **Pods started until the first failure or the cap** (``--max-pods``, 500): Corral pods
   started one after another through the library (each waited for until it runs, as in the
   pod suite), the first N of them being the ones measured in 1. At checkpoints: the start
   latencies since the previous checkpoint (p50, p99), the monitors' memory per pod and the
   node's used memory delta per pod.

podman runs first (its pods are removed before Corral starts any); everything is removed at
the end, also on failure, ^C or SIGTERM.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .memory import Rollup, node_used_kib, read_rollup
from .model import Status, SuiteResult, Table
from .pod import CorralLib, PodmanRunner, Started
from .podenv import PodEnv, Podman, pod_env
from .report import fmt_ms
from .stats import percentiles

if TYPE_CHECKING:
    from .spawn import Params

SETTLE = 0.5  # seconds between the last start and the memory readings


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The node after ``pods`` pods were started (and all run)."""

    pods: int
    latencies_s: tuple[float, ...]  # of the pods started since the previous checkpoint
    monitors: tuple[Rollup, ...]
    node_delta_kib: int
    elapsed_s: float


def checkpoints(max_pods: int, density: int, count: int = 10) -> list[int]:
    """The pod counts at which the ramp takes a reading: ``count`` even steps up to
    ``max_pods``, and ``density``."""
    step = max(1, max_pods // count)
    return sorted({*range(step, max_pods + 1, step), max_pods, min(density, max_pods)})


def _kib(values: Sequence[float]) -> tuple[str, str, str]:
    return (f"{statistics.median(values):,.0f}", f"{min(values):,.0f}", f"{max(values):,.0f}")


def memory_row(what: str, per: Sequence[Rollup], node_delta_kib: int, pods: int) -> tuple[str, ...]:
    """One row of the per-pod memory table: N, RSS and PSS median/min/max (KiB), the node's
    used memory delta per pod (MiB)."""
    if not per:
        return (what, "0", "", "", "", "", "", "", "")
    rss = _kib([r.rss_kib for r in per])
    pss = _kib([r.pss_kib for r in per])
    node = f"{node_delta_kib / pods / 1024:.2f}" if pods else "n/a"
    return (what, str(len(per)), *rss, *pss, node)


MEMORY_COLUMNS = (
    "process", "N", "RSS median KiB", "RSS min KiB", "RSS max KiB", "PSS median KiB",
    "PSS min KiB", "PSS max KiB", "node used Δ per pod MiB",
)  # fmt: skip
RAMP_COLUMNS = (
    "pods running", "started in this step", "start p50 ms", "start p99 ms",
    "monitor RSS per pod KiB", "monitor PSS per pod KiB", "node used Δ per pod MiB",
    "elapsed s",
)  # fmt: skip


def ramp_row(c: Checkpoint) -> tuple[str, ...]:
    lat = percentiles(c.latencies_s) if c.latencies_s else None
    n = len(c.monitors)
    return (
        str(c.pods),
        str(len(c.latencies_s)),
        fmt_ms(lat.p50) if lat else "",
        fmt_ms(lat.p99) if lat else "",
        f"{sum(r.rss_kib for r in c.monitors) / n:,.0f}" if n else "",
        f"{sum(r.pss_kib for r in c.monitors) / n:,.0f}" if n else "",
        f"{c.node_delta_kib / c.pods / 1024:.2f}" if c.pods else "",
        f"{c.elapsed_s:.0f}",
    )


def _rollups(pids: Sequence[int]) -> list[Rollup]:
    out = []
    for pid in pids:
        try:
            out.append(read_rollup(pid))
        except (OSError, ValueError) as e:
            print(f"bench: density: smaps_rollup of {pid}: {e}", file=sys.stderr)
    return out


def _monitor_pids(runner: CorralLib) -> list[int]:
    from runtime.pod import api

    return [st.monitor_pid for st in api.list_pods(runner.opts) if st.monitor_pid]


@dataclass
class PodmanFigures:
    conmons: list[Rollup]
    per_pod: list[Rollup]  # two conmons and the infra process, summed per pod
    node_delta_kib: int
    pods: int


def podman_density(e: PodEnv, pm: Podman, count: int) -> PodmanFigures:
    runner = PodmanRunner(e, pm, network=False)
    before = node_used_kib()
    for _ in range(count):
        runner.start(e.name("pd"))
    time.sleep(SETTLE)
    delta = node_used_kib() - before
    ids = pm.query("ps", "-a", "-q").split()
    fmt = "{{.State.ConmonPid}} {{.State.Pid}} {{.IsInfra}} {{.Pod}}"
    lines = pm.query("inspect", "--format", fmt, *ids).splitlines() if ids else []
    conmons: list[Rollup] = []
    per_pod: dict[str, list[Rollup]] = {}
    for line in lines:
        conmon, pid, infra, pod = line.split()
        c = _rollups([int(conmon)])
        conmons += c
        per_pod.setdefault(pod, []).extend(c)
        if infra == "true":
            per_pod[pod] += _rollups([int(pid)])
    pm.query("pod", "rm", "-a", "-f", "-t", "0")
    summed = [
        Rollup(sum(r.rss_kib for r in rs), sum(r.pss_kib for r in rs)) for rs in per_pod.values()
    ]
    return PodmanFigures(conmons, summed, delta, count)


@dataclass
class Ramp:
    points: list[Checkpoint]
    at_density: list[Rollup]
    density_node_delta_kib: int
    outcome: str
    remove_s: float
    removed: int


def corral_ramp(e: PodEnv, density: int, max_pods: int) -> Ramp:
    from runtime.errors import CorralError
    from runtime.pod import api

    runner = CorralLib(e, e.corral_opts("pods-density", False))
    marks = set(checkpoints(max_pods, density))
    points: list[Checkpoint] = []
    at_density: list[Rollup] = []
    density_delta = 0
    outcome = f"all {max_pods} pods started (the cap)"
    before = node_used_kib()
    t0 = time.monotonic()
    since: list[float] = []
    started: list[Started] = []
    for i in range(1, max_pods + 1):
        try:
            s = runner.start(e.name("d"))
            started.append(s)
            (end,) = runner.wait_running([s])
        except (CorralError, OSError) as ex:
            outcome = f"pod {i} failed: {ex}"
            i -= 1
            break
        since.append(end - s.t0)
        if i in marks:
            time.sleep(SETTLE)
            mons = _rollups(_monitor_pids(runner))
            delta = node_used_kib() - before
            points.append(Checkpoint(i, tuple(since), tuple(mons), delta, time.monotonic() - t0))
            since = []
            if i == min(density, max_pods):
                at_density, density_delta = mons, delta
    if since or (points and points[-1].pods != i):
        mons = _rollups(_monitor_pids(runner))
        delta = node_used_kib() - before
        points.append(Checkpoint(i, tuple(since), tuple(mons), delta, time.monotonic() - t0))
    if not at_density and points:
        at_density, density_delta = list(points[-1].monitors), points[-1].node_delta_kib
    t1 = time.monotonic()
    removed = 0
    for st in api.list_pods(runner.opts):
        api.remove(st.uid, runner.opts, force=True)
        removed += 1
    return Ramp(points, at_density, density_delta, outcome, time.monotonic() - t1, removed)


def density_suite(p: Params) -> SuiteResult:
    from .suites import SUITES

    density = p.density
    max_pods = max(p.max_pods, density)
    with pod_env(network=False) as e:
        pm_fig = podman_density(e, e.podman, density) if e.podman is not None else None
        ramp = corral_ramp(e, density, max_pods)
    n_density = len(ramp.at_density)
    rows = [memory_row("corral-monitor (one per pod)", ramp.at_density,
                       ramp.density_node_delta_kib, n_density)]  # fmt: skip
    data: dict[str, object] = {
        "corral_monitor": [[r.rss_kib, r.pss_kib] for r in ramp.at_density],
        "corral_node_delta_kib": ramp.density_node_delta_kib,
    }
    notes = [
        "RSS and PSS from /proc/<pid>/smaps_rollup, read with every pod running; node used Δ "
        "is MemTotal - MemAvailable after minus before, divided by the pods (it includes the "
        "containers, mounts and cgroups, and whatever else ran on the machine meanwhile). "
        "No pod network.",
    ]
    if pm_fig is None:
        rows.append(("podman", "0", f"not run: {e.podman_skipped}", "", "", "", "", "", ""))
    else:
        label = e.podman.label if e.podman else "podman"
        rows.append(memory_row(f"{label}: conmon (one per container)", pm_fig.conmons,
                               pm_fig.node_delta_kib, pm_fig.pods))  # fmt: skip
        rows.append(memory_row(f"{label}: 2 conmons + infra process, per pod", pm_fig.per_pod,
                               pm_fig.node_delta_kib, pm_fig.pods))  # fmt: skip
        data["podman_conmon"] = [[r.rss_kib, r.pss_kib] for r in pm_fig.conmons]
        data["podman_per_pod"] = [[r.rss_kib, r.pss_kib] for r in pm_fig.per_pod]
        data["podman_node_delta_kib"] = pm_fig.node_delta_kib
        notes.append(
            "A podman pod is an infra container (busybox `sleep`: no pause image offline) and "
            "the app container, each with its conmon; Corral's monitor holds the pod's "
            "namespaces itself. podman's pods were started, measured and removed before "
            "Corral's. " + " ".join(e.notes)
        )
    tables = [
        Table(f"per-pod memory with {n_density} pods running", MEMORY_COLUMNS, tuple(rows),
              tuple(notes), data),
        Table(
            f"Corral pods started one after another until the first failure or {max_pods}",
            RAMP_COLUMNS,
            tuple(ramp_row(c) for c in ramp.points),
            (f"Outcome: {ramp.outcome}. Removing the {ramp.removed} pods afterwards took "
             f"{ramp.remove_s:.1f} s ({fmt_ms(ramp.remove_s / max(ramp.removed, 1))} ms per "
             "pod, api.remove one after another). Start latency as in the pod suite (library, "
             "no network); per-pod memory is the mean over the pods running.",),
            {"checkpoints": [
                {"pods": c.pods, "latencies_s": list(c.latencies_s),
                 "monitors": [[r.rss_kib, r.pss_kib] for r in c.monitors],
                 "node_delta_kib": c.node_delta_kib, "elapsed_s": c.elapsed_s}
                for c in ramp.points],
             "outcome": ramp.outcome, "remove_s": ramp.remove_s},
        ),
    ]  # fmt: skip
    return SuiteResult(
        name="density", description=SUITES["density"], status=Status.OK, tables=tuple(tables)
    )
