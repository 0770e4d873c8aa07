"""Facts about this host that a pod's bundles are built from: memory capacity, the last
capability, the lowest oom_score_adj this process may give, where the kernel reports a
container's OOM kills."""

from __future__ import annotations

import errno
import os
from collections.abc import Mapping

__all__ = [
    "CAP_SYS_RESOURCE",
    "cap_last",
    "memory_capacity",
    "min_oom_score_adj",
    "oom_file",
    "oom_file_below",
    "oom_file_in",
]


def memory_capacity() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    raise OSError(errno.EIO, "no MemTotal in /proc/meminfo")


CAP_SYS_RESOURCE = 24


def min_oom_score_adj() -> int:
    """-1000, or 0 when this process lacks CAP_SYS_RESOURCE (then the kernel refuses negative
    oom_score_adj values to it and to the runtime it starts)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return -1000 if int(line.split()[1], 16) >> CAP_SYS_RESOURCE & 1 else 0
    return 0


def cap_last() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return 40


def oom_file(cgroups_path: str, cid: str) -> str | None:
    from runtime import cgroups

    try:
        paths = cgroups.manager_for(cgroups_path, cid).paths()
    except Exception:  # noqa: BLE001 - no memory controller: no OOM reason
        return None
    return oom_file_in(paths)


def oom_file_below(pod_paths: Mapping[str, str], name: str) -> str | None:
    """``oom_file`` of the container cgroup ``name`` below a pod cgroup whose directories
    (hierarchy -> path, as pod.json records them) are known: no mountinfo to read."""
    return oom_file_in({k: os.path.join(v, name) for k, v in pod_paths.items()})


def oom_file_in(paths: Mapping[str, str]) -> str | None:
    """The file where the kernel reports OOM kills of the cgroup at ``paths``."""
    if "memory" in paths:
        return os.path.join(paths["memory"], "memory.oom_control")
    if "" in paths and not any(k for k in paths if k):
        return os.path.join(paths[""], "memory.events")
    return None
