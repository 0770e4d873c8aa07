"""Cgroups: one interface (``CgroupManager``), two drivers (``V1Manager``, ``V2Manager``).

Typical use::

    mgr = manager_for(spec.linux.cgroups_path, cid)
    mgr.create()
    mgr.apply(resources)          # resources.devices + DEFAULT_DEVICE_RULES
    mgr.add_pid(pid)
    state["cgroup_paths"] = mgr.paths()
    ...
    manager_from_paths(state["cgroup_paths"]).destroy()
"""

from __future__ import annotations

from .factory import SYSTEMD_REFUSED, manager_for, manager_from_paths
from .layout import (
    CgroupMount,
    Layout,
    detect_layout,
    parse_mountinfo,
    parse_proc_cgroup,
    read_mounts,
    statfs_type,
    v1_hierarchies,
)
from .manager import CgroupManager, V1Manager, V2Manager
from .prime import prime_attach

__all__ = [
    "DEFAULT_DEVICE_RULES",
    "SYSTEMD_REFUSED",
    "CgroupManager",
    "CgroupMount",
    "Layout",
    "Stats",
    "V1Manager",
    "V2Manager",
    "detect_layout",
    "manager_for",
    "manager_from_paths",
    "parse_mountinfo",
    "parse_proc_cgroup",
    "prime_attach",
    "read_mounts",
    "statfs_type",
    "v1_hierarchies",
]

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (ms of each command)
if TYPE_CHECKING:
    from typing import Any

    from .controllers import DEFAULT_DEVICE_RULES
    from .stats import Stats


def __getattr__(name: str) -> Any:
    # Imported on first use: the controllers bring in the config model, which commands that
    # never apply limits do not need, and only `events` reads stats.
    if name == "DEFAULT_DEVICE_RULES":
        from .controllers import DEFAULT_DEVICE_RULES

        return DEFAULT_DEVICE_RULES
    if name == "Stats":
        from .stats import Stats

        return Stats
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
