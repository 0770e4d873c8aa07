"""The memory the kubelet's eviction manager weighs: the node's capacity and working set, and
each pod's and container's working set, from the cgroups the pods run in.

The working set is usage less the inactive page cache (``memory.stat`` inactive_file; v1 counts
the hierarchy's, ``total_inactive_file``), as cAdvisor and the kubelet count it. The node is
the pods' parent cgroup (``PodOptions.cgroup_parent``) when it has a memory limit below the
machine's memory (a node confined to a cgroup), else the machine: ``/proc/meminfo``'s
MemTotal, and in use MemTotal - MemFree - Inactive(file), what the root cgroup's usage less its
inactive file pages comes to."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runtime.pod.prepare import PodOptions
from runtime.pod.qos import QOSClass, container_cgroups_path, pod_cgroups_path
from runtime.pod.status import PodStatus

if TYPE_CHECKING:
    from runtime.cgroups.stats import Stats

__all__ = [
    "MemoryUse",
    "PodMemory",
    "PodUsage",
    "ResourceUse",
    "Usage",
    "memory_use",
    "resource_use",
]


@dataclass(frozen=True)
class PodMemory:
    working_set: int  # bytes, the pod's cgroup
    containers: dict[str, int] = field(default_factory=dict)  # name -> bytes


@dataclass(frozen=True)
class MemoryUse:
    capacity: int  # bytes
    working_set: int  # bytes
    cgroup: str  # the cgroup whose limit is the capacity; "" for the machine's memory
    pods: dict[str, PodMemory] = field(default_factory=dict)  # uid -> its memory

    @property
    def available(self) -> int:
        return self.capacity - self.working_set


def _meminfo() -> dict[str, int]:
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            key, _, rest = line.partition(":")
            parts = rest.split()
            if parts and parts[0].isdigit():
                out[key] = int(parts[0]) * 1024
    return out


# How long the cgroup mounts, layout and this process's cgroup, once read, serve the looks
# that follow (the eviction manager looks every 2 s; mountinfo grows with the node's pods)
LAYOUT_TTL = 60.0
_layout: list[Any] = []  # [monotonic time read, mounts, layout, own cgroup]
_layout_mu = threading.Lock()


def _cgroup_view() -> tuple[Any, Any, dict[str, str]]:
    """(the cgroup mounts, the layout, this process's cgroups), read again after
    LAYOUT_TTL seconds. OSError when they cannot be read."""
    from runtime import cgroups
    from runtime.cgroups.layout import read_self_cgroup

    with _layout_mu:
        if _layout and time.monotonic() - _layout[0] < LAYOUT_TTL:
            return _layout[1], _layout[2], _layout[3]
        mounts = cgroups.read_mounts()
        layout = cgroups.detect_layout(mountinfo=mounts)
        own = read_self_cgroup()
        # the cgroup hierarchies only: each manager looks through them again
        mounts = [m for m in mounts if m.fstype in ("cgroup", "cgroup2")]
        _layout[:] = [time.monotonic(), mounts, layout, own]
        return mounts, layout, own


def _stats_reader() -> Callable[[str], Stats | None]:
    """A function of a cgroup ``path`` (cgroupsPath form) -> its counters, None when it
    cannot be read. The cgroup layout, the mounts and this process's own cgroup are read once
    for all the paths one look asks about, and kept LAYOUT_TTL seconds (each read parses all
    of mountinfo, which grows with the node's pods)."""
    from runtime import cgroups

    try:
        mounts, layout, own = _cgroup_view()
    except OSError:
        return lambda path: None

    def stats(path: str) -> Stats | None:
        try:
            mgr = cgroups.manager_for(
                path, "memory", layout=layout, self_cgroup=own, mountinfo=mounts
            )
            return mgr.stats()
        except Exception:  # noqa: BLE001 - no such cgroup: unknown
            return None

    return stats


def _working_sets() -> Callable[[str], tuple[int | None, int | None]]:
    """A function of a cgroup ``path`` -> its (working set, limit), Nones where unknown."""
    read = _stats_reader()

    def working_set(path: str) -> tuple[int | None, int | None]:
        st = read(path)
        return (None, None) if st is None else (st.memory_working_set, st.memory_limit)

    return working_set


def memory_use(opts: PodOptions, pods: Iterable[PodStatus]) -> MemoryUse:
    """The node's memory and that of ``pods`` (the runtime's pods of ``opts``)."""
    info = _meminfo()
    total = info.get("MemTotal", 0)
    capacity, used, where = total, 0, ""
    _working_set = _working_sets()
    parent_ws, limit = _working_set(opts.cgroup_parent)
    if limit is not None and 0 < limit < total and parent_ws is not None:
        capacity, used, where = limit, parent_ws, opts.cgroup_parent
    else:
        used = total - info.get("MemFree", 0) - info.get("Inactive(file)", 0)
    out: dict[str, PodMemory] = {}
    for st in pods:
        try:
            qos = QOSClass(st.qos_class)
        except ValueError:
            continue
        ws, _ = _working_set(pod_cgroups_path(opts.cgroup_parent, qos, st.uid))
        if ws is None:
            continue
        containers = {}
        for c in st.containers:
            cws, _ = _working_set(container_cgroups_path(opts.cgroup_parent, qos, st.uid, c.name))
            if cws is not None:
                containers[c.name] = cws
        out[st.uid] = PodMemory(ws, containers)
    return MemoryUse(capacity, max(used, 0), where, out)


# ============================================================================= CPU and memory


@dataclass(frozen=True)
class Usage:
    """One cgroup's (or the node's) cumulative CPU time and its memory working set, None
    where unknown, as the kubelet's resource metrics report them."""

    cpu_ns: int | None
    working_set: int | None


@dataclass(frozen=True)
class PodUsage:
    usage: Usage  # the pod's cgroup
    containers: dict[str, Usage] = field(default_factory=dict)  # name -> its cgroup's


@dataclass(frozen=True)
class ResourceUse:
    time: float  # epoch seconds the counters were read at
    node: Usage
    pods: dict[str, PodUsage] = field(default_factory=dict)  # uid -> its usage


def _machine_cpu_ns() -> int | None:
    """The machine's CPU time in use since boot (``/proc/stat``'s first line, idle and
    iowait aside), in nanoseconds."""
    import os

    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    ticks = [int(x) for x in fields[1:9]]  # user nice system idle iowait irq softirq steal
    busy = sum(ticks) - ticks[3] - ticks[4]
    return busy * (1_000_000_000 // os.sysconf("SC_CLK_TCK"))


def resource_use(opts: PodOptions, pods: Iterable[PodStatus]) -> ResourceUse:
    """The node's CPU time and working set (the pods' parent cgroup when it is confined, as
    ``memory_use`` counts, else the machine) and each of ``pods``' and their containers'."""
    now = time.time()
    read = _stats_reader()
    mem = memory_use(opts, [])
    if mem.cgroup:
        parent = read(mem.cgroup)
        node = Usage(parent.cpu_usage_ns if parent else None, mem.working_set)
    else:
        node = Usage(_machine_cpu_ns(), mem.working_set)
    out: dict[str, PodUsage] = {}
    for st in pods:
        try:
            qos = QOSClass(st.qos_class)
        except ValueError:
            continue
        pst = read(pod_cgroups_path(opts.cgroup_parent, qos, st.uid))
        if pst is None:
            continue
        containers = {}
        for c in st.containers:
            cst = read(container_cgroups_path(opts.cgroup_parent, qos, st.uid, c.name))
            if cst is not None:
                containers[c.name] = Usage(cst.cpu_usage_ns, cst.memory_working_set)
        out[st.uid] = PodUsage(Usage(pst.cpu_usage_ns, pst.memory_working_set), containers)
    return ResourceUse(now, node, out)
