"""Build the right manager for a container's cgroupsPath, or reopen one from its saved paths."""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence

from runtime.errors import CgroupError

from .layout import (
    UNIFIED_DIR,
    CgroupMount,
    Layout,
    cgroup_dir,
    detect_layout,
    own_path,
    read_self_cgroup,
    v1_hierarchies,
)
from .manager import CgroupManager, V1Manager, V2Manager, manager_from_paths

__all__ = ["SYSTEMD_REFUSED", "manager_for", "manager_from_paths"]

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (ms of each command)
if TYPE_CHECKING:
    from corral_common import hostsys

SYSTEMD_REFUSED = (
    "systemd cgroup driver is not supported (no systemd on this host); use a cgroupfs path"
)


def _check_path(path: str) -> str:
    if len(path.split(":")) == 3:
        raise CgroupError("cgroupsPath", errno.EINVAL, SYSTEMD_REFUSED)
    if "\0" in path or any(part == ".." for part in path.split("/")):
        raise CgroupError("cgroupsPath", errno.EINVAL, f"invalid cgroups path {path!r}")
    return path


def manager_for(
    cgroups_path: str | None,
    container_id: str,
    *,
    root: str = "/sys/fs/cgroup",
    layout: Layout | None = None,
    self_cgroup: dict[str, str] | None = None,
    mountinfo: str | Sequence[hostsys.MountInfo] | None = None,
) -> CgroupManager:
    """The manager for a container.

    An absolute ``cgroups_path`` ("/libpod_parent/libpod-ID") is used as is below the root of
    every hierarchy. A relative one, or none (then ``container_id`` is the relative path), goes
    below this process's own cgroup in each hierarchy (``self_cgroup``, default
    /proc/self/cgroup), which may differ per controller; on a unified host, below the *parent*
    of our own cgroup, as runc does: our cgroup has a process in it (us), and the kernel lets
    no cgroup with processes enable controllers for its children. The systemd form
    "slice:prefix:name" is refused. ``mountinfo`` (text or records; default
    /proc/self/mountinfo) locates the v1 hierarchies.
    """
    path = _check_path(cgroups_path or container_id)
    if not path.strip("/"):
        raise CgroupError("cgroupsPath", errno.EINVAL, "refusing to manage a hierarchy's root")
    if layout is None:
        layout = detect_layout(root)
    if self_cgroup is None and not path.startswith("/"):
        self_cgroup = read_self_cgroup()
    own = self_cgroup or {}
    if layout is Layout.UNIFIED:
        mount = CgroupMount("cgroup2", root)
        base = own.get("")
        if base is not None and not path.startswith("/"):
            base = os.path.dirname(base.rstrip("/")) or "/"
        return V2Manager(cgroup_dir(mount, base, path), root)
    dirs: dict[str, str] = {}
    for mount in v1_hierarchies(root, mountinfo):
        directory = cgroup_dir(mount, own_path(own, sorted(mount.controllers)), path)
        for controller in mount.controllers:
            dirs[controller] = directory
    unified = None
    if layout is Layout.HYBRID:
        unified = cgroup_dir(
            CgroupMount("cgroup2", os.path.join(root, UNIFIED_DIR)), own.get(""), path
        )
    return V1Manager(dirs, unified)
