"""Each controller is a small pure function from resources to an ordered list of (file, value).

The ``*_v1`` functions produce cgroup v1 knobs, the ``*_v2`` functions cgroup v2 knobs; the
drivers (``V1Manager``, ``V2Manager``) pick which ones to call and where to write. A function
returns [] when the resources ask nothing of its controller, so a driver can tell "not asked"
from "asked of a controller the host lacks". Where the kernel's current state decides the
write order (v1 memory vs memsw), the driver reads it and passes it in.

Zero means "unset" for the numeric fields the OCI spec inherited from Go (memory limit, swap,
reservation, shares, quota, period, weights), as in runc.
"""

from __future__ import annotations

import errno
from collections.abc import Mapping, Sequence

from runtime.config import DeviceRule
from runtime.errors import CgroupError

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (ms of each command)
if TYPE_CHECKING:  # the rarely used part of the model is imported only when a config has it
    from runtime.config import (
        CPU,
        BlockIO,
        HugepageLimit,
        Memory,
        Network,
        Pids,
        ThrottleDevice,
    )

Writes = list[tuple[str, str]]

#: Device rules a runtime appends after the spec's own (runc's AllowedDevices): mknod of any
#: device, and the standard character devices every container gets.
DEFAULT_DEVICE_RULES: tuple[DeviceRule, ...] = (
    DeviceRule(allow=True, type="c", major=None, minor=None, access="m"),
    DeviceRule(allow=True, type="b", major=None, minor=None, access="m"),
    DeviceRule(allow=True, type="c", major=1, minor=3, access="rwm"),  # /dev/null
    DeviceRule(allow=True, type="c", major=1, minor=8, access="rwm"),  # /dev/random
    DeviceRule(allow=True, type="c", major=1, minor=7, access="rwm"),  # /dev/full
    DeviceRule(allow=True, type="c", major=5, minor=0, access="rwm"),  # /dev/tty
    DeviceRule(allow=True, type="c", major=1, minor=5, access="rwm"),  # /dev/zero
    DeviceRule(allow=True, type="c", major=1, minor=9, access="rwm"),  # /dev/urandom
    DeviceRule(allow=True, type="c", major=5, minor=1, access="rwm"),  # /dev/console
    DeviceRule(allow=True, type="c", major=136, minor=None, access="rwm"),  # /dev/pts/*
    DeviceRule(allow=True, type="c", major=5, minor=2, access="rwm"),  # /dev/ptmx
    DeviceRule(allow=True, type="c", major=10, minor=200, access="rwm"),  # /dev/net/tun
)


def _invalid(knob: str, detail: str) -> CgroupError:
    return CgroupError(knob, errno.EINVAL, detail)


def _limit(value: int) -> str:
    """A v2 limit: -1 (or any negative) is "max"."""
    return "max" if value < 0 else str(value)


# ----------------------------------------------------------------------------- memory


def memory_v1(mem: Memory | None, *, current_limit: int = 0, has_memsw: bool = False) -> Writes:
    """memory.* for v1. ``current_limit`` is memory.limit_in_bytes now; ``has_memsw`` says
    whether memory.memsw.limit_in_bytes exists (swap accounting is on).

    The kernel insists limit <= memsw at every moment, so, as runc does: when both are set and
    swap is unlimited or above the current limit, memsw goes first; otherwise memory goes first.
    """
    if mem is None:
        return []
    limit = mem.limit or 0
    swap = mem.swap or 0
    if limit == -1 and swap == 0 and has_memsw:
        swap = -1  # unlimited memory with swap unset means unlimited memory+swap too
    if swap and not has_memsw:
        if swap != -1:
            raise CgroupError(
                "memory.memsw.limit_in_bytes",
                errno.EOPNOTSUPP,
                "memory.memsw (swap accounting) not available: cannot limit swap",
            )
        swap = 0  # "unlimited swap" is what we already have
    out: Writes = []
    mem_w = ("memory.limit_in_bytes", str(limit))
    swap_w = ("memory.memsw.limit_in_bytes", str(swap))
    if limit and swap:
        if swap == -1 or current_limit < swap:
            out += [swap_w, mem_w]
        else:
            out += [mem_w, swap_w]
    elif limit:
        out.append(mem_w)
    elif swap:
        out.append(swap_w)
    if mem.reservation:
        out.append(("memory.soft_limit_in_bytes", str(mem.reservation)))
    if mem.kernel:
        out.append(("memory.kmem.limit_in_bytes", str(mem.kernel)))
    if mem.kernel_tcp:
        out.append(("memory.kmem.tcp.limit_in_bytes", str(mem.kernel_tcp)))
    if mem.swappiness is not None:
        if not 0 <= mem.swappiness <= 100:
            raise _invalid("memory.swappiness", f"invalid swappiness {mem.swappiness} (0-100)")
        out.append(("memory.swappiness", str(mem.swappiness)))
    if mem.disable_oom_killer:
        out.append(("memory.oom_control", "1"))
    if mem.use_hierarchy:
        # Kernels >= 5.x are always hierarchical and refuse "0"; only "1" is ever written.
        out.append(("memory.use_hierarchy", "1"))
    return out


def swap_v2(swap: int, limit: int) -> int:
    """Spec swap (memory+swap) to memory.swap.max (swap alone); -1 is unlimited, 0 unset.

    runc's ConvertMemorySwapToCgroupV2Value.
    """
    if limit == -1 and swap == 0:
        return -1
    if swap in (-1, 0):
        return swap
    if limit in (0, -1):
        raise _invalid("memory.swap.max", "unable to set swap limit without memory limit")
    if limit < 0:
        raise _invalid("memory.max", f"invalid memory value: {limit}")
    if swap < limit:
        raise _invalid("memory.swap.max", "memory+swap limit should be >= memory limit")
    return swap - limit


def memory_v2(mem: Memory | None, *, has_swap: bool = True) -> Writes:
    """memory.swap.max, memory.max, memory.low for v2.

    Kernel memory, swappiness, use_hierarchy and disable_oom_killer have no v2 equivalent and
    are ignored (as runc and crun do). Without swap accounting (no memory.swap.max), "max" and 0
    are silently skipped, any other swap limit is an error.
    """
    if mem is None:
        return []
    limit = mem.limit or 0
    swap_spec = mem.swap or 0
    swap = swap_v2(swap_spec, limit)
    out: Writes = []
    swap_value = ""
    if swap != 0:
        swap_value = _limit(swap)
    elif swap_spec > 0:
        swap_value = "0"  # memory == memory+swap: no swap at all
    if swap_value:
        if has_swap:
            out.append(("memory.swap.max", swap_value))
        elif swap_value not in ("max", "0"):
            raise CgroupError(
                "memory.swap.max",
                errno.EOPNOTSUPP,
                "memory.swap.max (swap accounting) not available: cannot limit swap",
            )
    if limit:
        out.append(("memory.max", _limit(limit)))
    if mem.reservation:
        out.append(("memory.low", _limit(mem.reservation)))
    return out


# ----------------------------------------------------------------------------- cpu


def cpu_v1(cpu: CPU | None) -> Writes:
    """cpu.* for v1, in runc's order: shares, period, burst, quota, then rt period and runtime.

    The period goes before the quota (a quota is checked against the current period); if the
    kernel refuses one of them with EINVAL the writer retries it after the others.
    """
    if cpu is None:
        return []
    out: Writes = []
    if cpu.shares:
        out.append(("cpu.shares", str(cpu.shares)))
    if cpu.period:
        out.append(("cpu.cfs_period_us", str(cpu.period)))
    if cpu.burst is not None:
        out.append(("cpu.cfs_burst_us", str(cpu.burst)))
    if cpu.quota:
        out.append(("cpu.cfs_quota_us", str(cpu.quota)))
    if cpu.realtime_period:
        out.append(("cpu.rt_period_us", str(cpu.realtime_period)))
    if cpu.realtime_runtime:
        out.append(("cpu.rt_runtime_us", str(cpu.realtime_runtime)))
    if cpu.idle is not None:
        out.append(("cpu.idle", str(cpu.idle)))
    return out


def shares_to_weight(shares: int) -> int:
    """v1 cpu.shares [2, 262144] to v2 cpu.weight [1, 10000], the formula runc and crun use."""
    if shares == 0:
        return 0
    shares = min(max(shares, 2), 262144)
    return 1 + ((shares - 2) * 9999) // 262142


def cpu_v2(cpu: CPU | None) -> Writes:
    """cpu.idle, cpu.weight, cpu.max ("quota period", "max period" or just the quota), and
    cpu.max.burst.

    Realtime limits do not exist in v2: asking for them is an error.
    """
    if cpu is None:
        return []
    if cpu.realtime_period or cpu.realtime_runtime:
        raise CgroupError(
            "cpu.rt_runtime_us",
            errno.EOPNOTSUPP,
            "realtime cpu limits are not supported on cgroup v2",
        )
    out: Writes = []
    if cpu.idle is not None:
        out.append(("cpu.idle", str(cpu.idle)))
    if cpu.shares and not cpu.idle:  # an idle cgroup has no weight; the kernel refuses it
        out.append(("cpu.weight", str(shares_to_weight(cpu.shares))))
    if cpu.quota or cpu.period:
        value = str(cpu.quota) if cpu.quota and cpu.quota > 0 else "max"
        if cpu.period:
            value += f" {cpu.period}"
        out.append(("cpu.max", value))
    if cpu.burst is not None:
        out.append(("cpu.max.burst", str(cpu.burst)))
    return out


def cpuset(cpu: CPU | None) -> Writes:
    """cpuset.cpus and cpuset.mems (same names in v1 and v2)."""
    if cpu is None:
        return []
    out: Writes = []
    if cpu.cpus:
        out.append(("cpuset.cpus", cpu.cpus))
    if cpu.mems:
        out.append(("cpuset.mems", cpu.mems))
    return out


# ----------------------------------------------------------------------------- pids


def pids(p: Pids | None) -> Writes:
    """pids.max (same in v1 and v2); 0 or negative means unlimited ("max")."""
    if p is None:
        return []
    return [("pids.max", str(p.limit) if p.limit > 0 else "max")]


# ----------------------------------------------------------------------------- block io


def _throttles(bio: BlockIO) -> list[tuple[str, Sequence[ThrottleDevice]]]:
    return [
        ("read_bps_device", bio.throttle_read_bps_device),
        ("write_bps_device", bio.throttle_write_bps_device),
        ("read_iops_device", bio.throttle_read_iops_device),
        ("write_iops_device", bio.throttle_write_iops_device),
    ]


def _no_leaf_weight(field: str, knob: str) -> CgroupError:
    return CgroupError(
        f"apply linux.resources.blockIO.{field}",
        errno.EOPNOTSUPP,
        f"{knob} does not exist on this kernel: leaf weights were a feature of the CFQ I/O "
        "scheduler (removed in Linux 5.0); BFQ has no equivalent",
    )


def _no_weight(field: str) -> CgroupError:
    return CgroupError(
        f"apply linux.resources.blockIO.{field}",
        errno.EOPNOTSUPP,
        "blkio.weight does not exist on this kernel, nor blkio.bfq.weight: proportional I/O "
        "weights need the BFQ I/O scheduler (CFQ was removed in Linux 5.0), not loaded here",
    )


def blkio_v1(
    bio: BlockIO | None, *, bfq: bool = False, leaf: bool = True, weights: bool = True
) -> Writes:
    """blkio.* for v1, one write per device line. With the BFQ scheduler (``bfq``: the
    blkio.bfq.weight file exists) weights go to blkio.bfq.weight[_device], as in runc.
    Leaf weights exist only with CFQ (``leaf``: blkio.leaf_weight exists), weights only with
    CFQ or BFQ (``weights``); asking for them without is an error naming the field and the
    file, before anything is written."""
    if bio is None:
        return []
    prefix = "blkio.bfq." if bfq else "blkio."
    out: Writes = []
    if not weights:
        if bio.weight:
            raise _no_weight("weight")
        for i, wd in enumerate(bio.weight_device):
            if wd.weight:
                raise _no_weight(f"weightDevice[{i}].weight")
    if bio.weight:
        out.append((prefix + "weight", str(bio.weight)))
    if bio.leaf_weight:
        if not leaf:
            raise _no_leaf_weight("leafWeight", "blkio.leaf_weight")
        out.append(("blkio.leaf_weight", str(bio.leaf_weight)))
    for i, wd in enumerate(bio.weight_device):
        if wd.weight:
            out.append((prefix + "weight_device", f"{wd.major}:{wd.minor} {wd.weight}"))
        if wd.leaf_weight:
            if not leaf:
                raise _no_leaf_weight(f"weightDevice[{i}].leafWeight", "blkio.leaf_weight_device")
            out.append(("blkio.leaf_weight_device", f"{wd.major}:{wd.minor} {wd.leaf_weight}"))
    for kind, devices in _throttles(bio):
        for td in devices:
            out.append((f"blkio.throttle.{kind}", f"{td.major}:{td.minor} {td.rate}"))
    return out


def blkio_weight_to_io_weight(weight: int) -> int:
    """v1 blkio.weight [10, 1000] to v2 io.weight [1, 10000], runc's conversion."""
    if weight == 0:
        return 0
    return 1 + (weight - 10) * 9999 // 990


_IO_MAX_KEYS = {
    "read_bps_device": "rbps",
    "write_bps_device": "wbps",
    "read_iops_device": "riops",
    "write_iops_device": "wiops",
}


def io_v2(bio: BlockIO | None, *, bfq: bool = False) -> Writes:
    """io.weight (converted) or io.bfq.weight (as is), per-device weights, and one io.max line
    per device ("8:0 rbps=N wbps=N riops=N wiops=N" with the keys that are set).

    Leaf weights have no v2 equivalent and are ignored.
    """
    if bio is None:
        return []
    out: Writes = []
    if bio.weight:
        if bfq:
            out.append(("io.bfq.weight", str(bio.weight)))
        else:
            out.append(("io.weight", str(blkio_weight_to_io_weight(bio.weight))))
    for wd in bio.weight_device:
        if wd.weight:
            if bfq:
                out.append(("io.bfq.weight", f"{wd.major}:{wd.minor} {wd.weight}"))
            else:
                weight = blkio_weight_to_io_weight(wd.weight)
                out.append(("io.weight", f"{wd.major}:{wd.minor} {weight}"))
    lines: dict[tuple[int, int], list[str]] = {}
    for kind, devices in _throttles(bio):
        for td in devices:
            lines.setdefault((td.major, td.minor), []).append(f"{_IO_MAX_KEYS[kind]}={td.rate}")
    for (major, minor), keys in lines.items():
        out.append(("io.max", f"{major}:{minor} " + " ".join(keys)))
    return out


# ----------------------------------------------------------------------------- hugetlb


def _page_size(limit: HugepageLimit) -> str:
    size = limit.page_size
    if not size or not size.isalnum():
        raise _invalid("hugetlb", f"invalid hugepage size {size!r}")
    return size


def hugetlb_v1(limits: Sequence[HugepageLimit]) -> Writes:
    return [(f"hugetlb.{_page_size(h)}.limit_in_bytes", str(h.limit)) for h in limits]


def hugetlb_v2(limits: Sequence[HugepageLimit]) -> Writes:
    return [(f"hugetlb.{_page_size(h)}.max", _limit(h.limit)) for h in limits]


# ----------------------------------------------------------------------------- network (v1)


def net_cls(net: Network | None) -> Writes:
    """net_cls.classid (v1 only; cgroup v2 has no such controller). 0 means unset."""
    if net is None or not net.class_id:
        return []
    return [("net_cls.classid", str(net.class_id))]


def net_prio(net: Network | None) -> Writes:
    """One net_prio.ifpriomap line ("eth0 5") per interface (v1 only)."""
    if net is None:
        return []
    return [("net_prio.ifpriomap", f"{p.name} {p.priority}") for p in net.priorities]


# ----------------------------------------------------------------------------- devices (v1)


def device_rule(rule: DeviceRule) -> str:
    """ "c 1:3 rwm"; a None major or minor is the wildcard "*"."""
    if rule.type not in ("a", "b", "c"):
        raise _invalid("devices", f"invalid device type {rule.type!r}")
    if not rule.access or any(ch not in "rwm" for ch in rule.access):
        raise _invalid("devices", f"invalid device access {rule.access!r}")
    major = "*" if rule.major is None or rule.major < 0 else str(rule.major)
    minor = "*" if rule.minor is None or rule.minor < 0 else str(rule.minor)
    return f"{rule.type} {major}:{minor} {rule.access}"


def devices_v1(rules: Sequence[DeviceRule]) -> Writes:
    """devices.deny "a" (start from nothing), then each rule in order to devices.allow or
    devices.deny. An empty list leaves the cgroup as inherited. The caller appends
    DEFAULT_DEVICE_RULES after the spec's rules."""
    if not rules:
        return []
    out: Writes = [("devices.deny", "a")]
    for rule in rules:
        out.append(("devices.allow" if rule.allow else "devices.deny", device_rule(rule)))
    return out


# ----------------------------------------------------------------------------- unified (v2)


def unified_v2(entries: Mapping[str, str]) -> Writes:
    """linux.resources.unified: each key is a file in the cgroup, written as given, last."""
    out: Writes = []
    for name, value in entries.items():
        if not name or "/" in name or ".." in name:
            raise _invalid("unified", f"invalid cgroup file name {name!r}")
        out.append((name, value))
    return out
