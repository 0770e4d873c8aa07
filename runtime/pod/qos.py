"""The kubelet's resource policy for a pod: QoS class, cgroup parents, oom_score_adj, cgroup values.

Each function follows the kubelet code it names, integer arithmetic included:

- ``pod_qos``: ``GetPodQOS`` (pkg/apis/core/v1/helper/qos): requests and limits of cpu and
  memory are summed over all containers (init containers too), zero values ignored.
  BestEffort when nothing is set; Guaranteed when every container has non-zero cpu and memory
  limits and the summed requests equal the summed limits; else Burstable.
- ``qos_cgroup_parent``/``pod_cgroup_path``: the cgroupfs names of the kubelet's QoS
  hierarchy (``kubepods``, ``kubepods/burstable``, ``kubepods/besteffort``, then
  ``pod<uid>``), and the systemd driver's ``.slice`` spelling of the same tree.
- ``oom_score_adj``: ``GetContainerOOMScoreAdjust`` (pkg/kubelet/qos/policy.go).
- ``milli_cpu_to_shares``/``milli_cpu_to_quota``, ``container_cgroup_values`` and
  ``pod_cgroup_values``: pkg/kubelet/cm/helpers_linux.go and the kuberuntime's
  ``calculateLinuxResources``.

Version note: this implements the policy as issue #5 states it (Guaranteed -998, Burstable
floor 2), which is the kubelet's before Kubernetes 1.21; since then the kubelet uses -997 for
Guaranteed, and so a Burstable floor of 3. ``GUARANTEED_OOM_SCORE_ADJ`` is the one constant to
change; the floor follows from it as in the kubelet.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runtime.pod.manifest import Container, Pod, Quantity

__all__ = [
    "BEST_EFFORT_OOM_SCORE_ADJ",
    "GUARANTEED_OOM_SCORE_ADJ",
    "MAX_SHARES",
    "MIN_QUOTA",
    "MIN_SHARES",
    "QUOTA_PERIOD",
    "CgroupValues",
    "QOSClass",
    "container_cgroup_values",
    "container_cgroups_path",
    "container_oom_score_adj",
    "milli_cpu_to_quota",
    "milli_cpu_to_shares",
    "oom_score_adj",
    "pod_cgroup_name",
    "pod_cgroups_path",
    "pod_cgroup_path",
    "pod_cgroup_values",
    "pod_qos",
    "qos_cgroup_parent",
    "qos_dir",
]


class QOSClass(StrEnum):
    GUARANTEED = "Guaranteed"
    BURSTABLE = "Burstable"
    BEST_EFFORT = "BestEffort"


GUARANTEED_OOM_SCORE_ADJ = -998
BEST_EFFORT_OOM_SCORE_ADJ = 1000

MIN_SHARES = 2
MAX_SHARES = 262144
SHARES_PER_CPU = 1024
MILLI_CPU_TO_CPU = 1000
QUOTA_PERIOD = 100000  # microseconds: 100 ms
MIN_QUOTA = 1000  # 1 ms, the kubelet's MinQuotaPeriod

ROOT_CGROUP = "kubepods"


# ============================================================================= QoS class


def pod_qos(pod: Pod) -> QOSClass:
    """The pod's QoS class, as ``GetPodQOS`` computes it."""
    requests: dict[str, Fraction] = {}
    limits: dict[str, Fraction] = {}
    guaranteed = True
    for c in pod.spec.containers + pod.spec.init_containers:
        res = c.resources
        for name, q in (("cpu", res.requests.cpu), ("memory", res.requests.memory)):
            if q is not None and q.value > 0:
                requests[name] = requests.get(name, Fraction(0)) + q.value
        found = set()
        for name, q in (("cpu", res.limits.cpu), ("memory", res.limits.memory)):
            if q is not None and q.value > 0:
                found.add(name)
                limits[name] = limits.get(name, Fraction(0)) + q.value
        if found != {"cpu", "memory"}:
            guaranteed = False
    if not requests and not limits:
        return QOSClass.BEST_EFFORT
    if guaranteed and all(limits.get(name) == value for name, value in requests.items()):
        if len(requests) == len(limits):
            return QOSClass.GUARANTEED
    return QOSClass.BURSTABLE


# ============================================================================= cgroup names


def qos_cgroup_parent(qos: QOSClass, systemd: bool = False) -> str:
    """The QoS-level cgroup, relative to the cgroup root: Guaranteed pods sit directly under
    ``kubepods``. With ``systemd``, the slice path the kubelet's systemd driver uses."""
    if qos is QOSClass.GUARANTEED:
        return "kubepods.slice" if systemd else ROOT_CGROUP
    level = "burstable" if qos is QOSClass.BURSTABLE else "besteffort"
    if systemd:
        return f"kubepods.slice/kubepods-{level}.slice"
    return f"{ROOT_CGROUP}/{level}"


def pod_cgroup_name(uid: str) -> str:
    """The pod cgroup's own (cgroupfs) name: ``pod<uid>``."""
    return "pod" + uid


_QOS_DIRS = {
    QOSClass.GUARANTEED: "",
    QOSClass.BURSTABLE: "burstable",
    QOSClass.BEST_EFFORT: "besteffort",
}


def qos_dir(qos: QOSClass) -> str:
    """The QoS-level directory below the cgroup parent ("" for Guaranteed)."""
    return _QOS_DIRS[qos]


def pod_cgroups_path(cgroup_parent: str, qos: QOSClass, uid: str) -> str:
    """The pod's cgroup below the runtime's ``cgroup_parent``: ``<parent>/[<qos>/]pod<uid>``."""
    parts = [cgroup_parent.rstrip("/") or "/", qos_dir(qos), f"pod{uid}"]
    return posixpath.normpath(posixpath.join(*[p for p in parts if p]))


def container_cgroups_path(cgroup_parent: str, qos: QOSClass, uid: str, name: str) -> str:
    return posixpath.join(pod_cgroups_path(cgroup_parent, qos, uid), name)


def pod_cgroup_path(qos: QOSClass, uid: str, systemd: bool = False) -> str:
    """The pod's cgroup path relative to the cgroup root, e.g. ``kubepods/burstable/pod<uid>``;
    with ``systemd``, ``kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice``
    (the systemd driver turns the uid's '-' into '_', as '-' separates slice levels)."""
    parent = qos_cgroup_parent(qos, systemd)
    if not systemd:
        return f"{parent}/{pod_cgroup_name(uid)}"
    prefix = parent.rpartition("/")[2].removesuffix(".slice")
    return f"{parent}/{prefix}-pod{uid.replace('-', '_')}.slice"


# ============================================================================= oom_score_adj


def oom_score_adj(qos: QOSClass, memory_request: int, memory_capacity: int) -> int:
    """A container's oom_score_adj from its pod's QoS class, its memory request in bytes and
    the machine's memory capacity in bytes (``GetContainerOOMScoreAdjust``)."""
    if qos is QOSClass.GUARANTEED:
        return GUARANTEED_OOM_SCORE_ADJ
    if qos is QOSClass.BEST_EFFORT:
        return BEST_EFFORT_OOM_SCORE_ADJ
    if memory_capacity <= 0:
        raise ValueError(f"memory capacity must be positive, not {memory_capacity}")
    # Go's int64 division truncates toward zero; both operands are non-negative here.
    adjust = 1000 - (1000 * memory_request) // memory_capacity
    # A Guaranteed pod using 100% of memory has an OOM score of 10: stay above that ...
    if adjust < 1000 + GUARANTEED_OOM_SCORE_ADJ:
        return 1000 + GUARANTEED_OOM_SCORE_ADJ
    # ... and below BestEffort.
    if adjust == BEST_EFFORT_OOM_SCORE_ADJ:
        return adjust - 1
    return adjust


def container_oom_score_adj(pod: Pod, container: Container, memory_capacity: int) -> int:
    """``oom_score_adj`` for one container of ``pod`` on a machine with that much memory."""
    memory = _bytes(container.resources.requests.memory)
    return oom_score_adj(pod_qos(pod), memory, memory_capacity)


# ============================================================================= cgroup values


def milli_cpu_to_shares(milli_cpu: int) -> int:
    """cpu.shares for a cpu request in millicores: 1024 per core, at least 2 (0 means 2, the
    kernel's real minimum, not Docker's "unset" 1024), at most 262144."""
    if milli_cpu == 0:
        return MIN_SHARES
    shares = (milli_cpu * SHARES_PER_CPU) // MILLI_CPU_TO_CPU
    return max(MIN_SHARES, min(shares, MAX_SHARES))


def milli_cpu_to_quota(milli_cpu: int, period: int = QUOTA_PERIOD) -> int:
    """CFS quota in microseconds for a cpu limit in millicores over ``period``; 0 (no quota)
    for no limit, else at least 1 ms."""
    if milli_cpu == 0:
        return 0
    return max((milli_cpu * period) // MILLI_CPU_TO_CPU, MIN_QUOTA)


@dataclass(frozen=True, slots=True)
class CgroupValues:
    """Values for an OCI ``linux.resources`` (cgroup v1 units; the cgroup drivers convert
    shares to a v2 cpu.weight). None means leave unset."""

    cpu_shares: int | None = None
    cpu_quota: int | None = None
    cpu_period: int | None = None
    memory_limit: int | None = None


def _milli(q: Quantity | None) -> int:
    return 0 if q is None else q.milli()


def _bytes(q: Quantity | None) -> int:
    return 0 if q is None else q.ceil()


def container_cgroup_values(container: Container) -> CgroupValues:
    """A container's cgroup values, as the kubelet asks the runtime for them: shares from the
    cpu request (the limit when there is no request), quota from the cpu limit, memory limit."""
    res = container.resources
    request = res.requests.cpu if res.requests.cpu is not None else res.limits.cpu
    quota = milli_cpu_to_quota(_milli(res.limits.cpu))
    memory = _bytes(res.limits.memory)
    return CgroupValues(
        cpu_shares=milli_cpu_to_shares(_milli(request)),
        cpu_quota=quota or None,
        cpu_period=QUOTA_PERIOD if quota else None,
        memory_limit=memory or None,
    )


def _pod_totals(pod: Pod) -> tuple[int, int, int]:
    """cpu request (milli), cpu limit (milli) and memory limit (bytes) of the whole pod: the sum
    over app containers, or the largest init container's value if that is larger (init
    containers run one at a time, before the app containers), plus the pod's overhead."""
    totals = [0, 0, 0]
    for c in pod.spec.containers:
        r = c.resources
        totals[0] += _milli(r.requests.cpu)
        totals[1] += _milli(r.limits.cpu)
        totals[2] += _bytes(r.limits.memory)
    for c in pod.spec.init_containers:
        r = c.resources
        values = (_milli(r.requests.cpu), _milli(r.limits.cpu), _bytes(r.limits.memory))
        totals = [max(t, v) for t, v in zip(totals, values, strict=True)]
    # the pod's overhead: added to the request, and to each limit that is set (kube's
    # PodRequests and PodLimits)
    over = pod.spec.overhead
    totals[0] += _milli(over.cpu)
    if totals[1]:
        totals[1] += _milli(over.cpu)
    if totals[2]:
        totals[2] += _bytes(over.memory)
    return totals[0], totals[1], totals[2]


def pod_cgroup_values(pod: Pod) -> CgroupValues:
    """The pod cgroup's values (``ResourceConfigForPod``): Guaranteed gets shares, quota and a
    memory limit; Burstable gets shares, plus quota only when every app container has a cpu
    limit and a memory limit only when every one has a memory limit; BestEffort gets 2 shares."""
    qos = pod_qos(pod)
    if qos is QOSClass.BEST_EFFORT:
        return CgroupValues(cpu_shares=MIN_SHARES)
    cpu_request, cpu_limit, memory_limit = _pod_totals(pod)
    shares = milli_cpu_to_shares(cpu_request)
    quota = milli_cpu_to_quota(cpu_limit)
    cpu_declared = memory_declared = True
    if qos is QOSClass.BURSTABLE:
        for c in pod.spec.containers:
            if not _milli(c.resources.limits.cpu):
                cpu_declared = False
            if not _bytes(c.resources.limits.memory):
                memory_declared = False
    return CgroupValues(
        cpu_shares=shares,
        cpu_quota=quota if cpu_declared and quota else None,
        cpu_period=QUOTA_PERIOD if cpu_declared and quota else None,
        memory_limit=memory_limit if memory_declared and memory_limit else None,
    )
