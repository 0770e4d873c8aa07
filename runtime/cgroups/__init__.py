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

from corral_common.lazy import lazy_names

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (ms of each command)
if TYPE_CHECKING:
    from .controllers import DEFAULT_DEVICE_RULES
    from .factory import SYSTEMD_REFUSED, manager_for
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
    from .manager import CgroupManager, V1Manager, V2Manager, manager_from_paths
    from .prime import prime_attach
    from .stats import Stats

# Each name is imported from its module on first use: `kill` and `delete` reopen a manager from
# its saved paths (the manager module alone), without the layout detection (enum, dataclasses)
# that only `create` needs; the controllers bring in the config model, which commands that never
# apply limits do not need; and only `events` reads stats.
_HOME = {
    "DEFAULT_DEVICE_RULES": "controllers",
    "SYSTEMD_REFUSED": "factory",
    "manager_for": "factory",
    "CgroupMount": "layout",
    "Layout": "layout",
    "detect_layout": "layout",
    "parse_mountinfo": "layout",
    "parse_proc_cgroup": "layout",
    "read_mounts": "layout",
    "statfs_type": "layout",
    "v1_hierarchies": "layout",
    "CgroupManager": "manager",
    "V1Manager": "manager",
    "V2Manager": "manager",
    "manager_from_paths": "manager",
    "prime_attach": "prime",
    "Stats": "stats",
}


__getattr__ = lazy_names(__name__, _HOME, globals())


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
