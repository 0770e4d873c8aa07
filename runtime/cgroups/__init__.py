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

from .controllers import DEFAULT_DEVICE_RULES
from .factory import SYSTEMD_REFUSED, manager_for, manager_from_paths
from .layout import (
    CgroupMount,
    Layout,
    detect_layout,
    parse_mountinfo,
    parse_proc_cgroup,
    statfs_type,
    v1_hierarchies,
)
from .manager import CgroupManager, Stats, V1Manager, V2Manager

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
    "statfs_type",
    "v1_hierarchies",
]
