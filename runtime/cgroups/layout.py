"""Which cgroup layout the host has, where the v1 hierarchies are, and where this process sits.

Everything here is decided once, when a manager is built. Tests point ``root`` at a temporary
directory and inject ``fs_type`` (and mountinfo text), so no function needs a real cgroupfs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (ms of each command)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from corral_common import hostsys

# as corral_common.hostsys, which lifecycle commands that detect nothing do not import
CGROUP2_SUPER_MAGIC = 0x63677270
CGROUP_SUPER_MAGIC = 0x0027E0EB
TMPFS_MAGIC = 0x01021994

#: Name of the cgroup2 mount inside a hybrid root (systemd's convention).
UNIFIED_DIR = "unified"


class Layout:
    """The three layouts, compared by identity (``layout is Layout.HYBRID``). A plain class
    with three instances rather than an enum.Enum: enum is some 2 ms of every create's start."""

    __slots__ = ("value",)
    UNIFIED: Layout  # cgroup2 mounted at the root
    HYBRID: Layout  # v1 controllers, plus a controller-less cgroup2 mount at root/unified
    LEGACY: Layout  # v1 only

    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"<Layout.{self.value.upper()}: {self.value!r}>"


Layout.UNIFIED = Layout("unified")
Layout.HYBRID = Layout("hybrid")
Layout.LEGACY = Layout("legacy")


def statfs_type(path: str) -> int:
    """f_type of statfs(2) on ``path`` (the filesystem magic number), through the host seam."""
    from corral_common import hostsys

    return hostsys.host().statfs_type(path)


def _mounts(mountinfo: str | Sequence[hostsys.MountInfo] | None) -> Sequence[hostsys.MountInfo]:
    """``mountinfo`` text or records; None: this process's (none where it cannot be read)."""
    from corral_common import hostsys

    if isinstance(mountinfo, str):
        return hostsys.parse_mountinfo(mountinfo)
    if mountinfo is None:
        try:
            # every line a cgroup question needs has "cgroup" in it: the cgroup and cgroup2
            # mounts, and /sys/fs/cgroup itself (a tmpfs on v1 and hybrid hosts)
            return hostsys.host().mountinfo(contains="cgroup")
        except OSError:
            return []
    return mountinfo


_FS_MAGIC = {"cgroup2": CGROUP2_SUPER_MAGIC, "cgroup": CGROUP_SUPER_MAGIC, "tmpfs": TMPFS_MAGIC}


def fs_magic(path: str, mountinfo: str | Sequence[hostsys.MountInfo] | None = None) -> int:
    """statfs_type(path) for the filesystems detect_layout asks about, without ctypes (whose
    import costs a create 3 ms): /proc/self/mountinfo gives each mount's st_dev ("major:minor",
    the same for every mount of one filesystem) and type. Other types, and a device that is not
    listed, are answered by statfs_type."""
    st = os.stat(path)
    dev = f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    for m in _mounts(mountinfo):
        if m.dev == dev:
            if m.fstype in _FS_MAGIC:
                return _FS_MAGIC[m.fstype]
            break
    return statfs_type(path)


def read_mounts() -> Sequence[hostsys.MountInfo]:
    """This process's mounts (through the host seam), read once for the several questions one
    operation asks (the layout, then the v1 hierarchies): each read parses all of mountinfo."""
    return _mounts(None)


def detect_layout(
    root: str = "/sys/fs/cgroup",
    fs_type: Callable[[str], int] = fs_magic,
    mountinfo: Sequence[hostsys.MountInfo] | None = None,
) -> Layout:
    """Decide the layout like runc and systemd do: from the filesystem magic of root and of
    root/unified. Tests inject ``fs_type``; ``mountinfo`` (the default ``fs_magic`` only),
    mounts read already."""
    if mountinfo is not None and fs_type is fs_magic:
        mounts = mountinfo

        def fs_type(path: str) -> int:
            return fs_magic(path, mounts)

    magic = fs_type(root)
    if magic == CGROUP2_SUPER_MAGIC:
        return Layout.UNIFIED
    if magic == TMPFS_MAGIC:
        try:
            if fs_type(os.path.join(root, UNIFIED_DIR)) == CGROUP2_SUPER_MAGIC:
                return Layout.HYBRID
        except OSError:
            pass
    return Layout.LEGACY


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """Parse /proc/<pid>/cgroup: ``{"cpu": "/x", "cpuacct": "/x", "name=systemd": "/", "": "/"}``.

    A v1 line lists its hierarchy's controllers comma-separated ("4:cpu,cpuacct:/x"); each gets a
    key. The cgroup2 line ("0::/x") has key "".
    """
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if not controllers:
            out[""] = path
            continue
        for name in controllers.split(","):
            if name:
                out[name] = path
    return out


def read_self_cgroup() -> dict[str, str]:
    with open("/proc/self/cgroup", encoding="utf-8") as f:
        return parse_proc_cgroup(f.read())


@dataclass(frozen=True, slots=True)
class CgroupMount:
    """One cgroup filesystem mount; ``root`` is the cgroup shown at the mount point (usually /)."""

    fstype: str  # "cgroup" (v1) or "cgroup2"
    mountpoint: str
    root: str = "/"
    controllers: frozenset[str] = frozenset()  # v1 only; includes "name=systemd" style names


# v1 super options that are not controllers.
_NOT_CONTROLLERS = frozenset(
    {
        "rw",
        "ro",
        "none",
        "all",
        "noprefix",
        "clone_children",
        "xattr",
        "cpuset_v2_mode",
        "favordynmods",
        "nofavordynmods",
    }
)


def parse_mountinfo(text: str | Sequence[hostsys.MountInfo]) -> list[CgroupMount]:
    """The cgroup and cgroup2 mounts in /proc/<pid>/mountinfo (text or records), in mount
    order."""
    mounts: list[CgroupMount] = []
    for m in _mounts(text):
        if m.fstype not in ("cgroup", "cgroup2"):
            continue
        controllers: frozenset[str] = frozenset()
        if m.fstype == "cgroup":
            controllers = frozenset(
                o
                for o in m.super_options.split(",")
                if o and o not in _NOT_CONTROLLERS and ("=" not in o or o.startswith("name="))
            )
        mounts.append(CgroupMount(m.fstype, m.mountpoint, m.root, controllers))
    return mounts


def _under(path: str, root: str) -> bool:
    root = os.path.normpath(root)
    path = os.path.normpath(path)
    return path == root or path.startswith(root.rstrip("/") + "/")


def _scan_v1(root: str) -> list[CgroupMount]:
    """Fallback for a root that is not in mountinfo (tests): one directory per hierarchy.

    A directory's name lists its controllers ("cpu,cpuacct"); "systemd" is the named
    "name=systemd" hierarchy; symlinks (cpu -> cpu,cpuacct) and "unified" are skipped.
    """
    mounts: list[CgroupMount] = []
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError:
        return mounts
    for entry in entries:
        if entry.name == UNIFIED_DIR or entry.is_symlink() or not entry.is_dir():
            continue
        if entry.name == "systemd":
            names = frozenset({"name=systemd"})
        else:
            names = frozenset(n for n in entry.name.split(",") if n)
        mounts.append(CgroupMount("cgroup", entry.path, "/", names))
    return mounts


def v1_hierarchies(
    root: str = "/sys/fs/cgroup", mountinfo: str | Sequence[hostsys.MountInfo] | None = None
) -> list[CgroupMount]:
    """The v1 hierarchies mounted under ``root``, one entry per hierarchy.

    Read from ``mountinfo`` text (default /proc/self/mountinfo); if no cgroup mount lies under
    ``root`` (a fake root in tests), the directories of ``root`` are used instead.
    """
    seen: set[frozenset[str]] = set()
    found: list[CgroupMount] = []
    for m in parse_mountinfo(_mounts(mountinfo)):
        if m.fstype != "cgroup" or not _under(m.mountpoint, root) or not m.controllers:
            continue
        if m.controllers in seen:  # the same hierarchy mounted twice
            continue
        seen.add(m.controllers)
        found.append(m)
    return found or _scan_v1(root)


def cgroup_dir(mount: CgroupMount, own: str | None, path: str) -> str:
    """The directory for cgroup ``path`` in ``mount``.

    An absolute ``path`` is taken from the mount point; a relative one goes below ``own`` (this
    process's cgroup in the hierarchy, as /proc/self/cgroup shows it), which is first made
    relative to the mount's root when the mount shows only a subtree.
    """
    if path.startswith("/"):
        return os.path.normpath(os.path.join(mount.mountpoint, path.lstrip("/")))
    base = own or "/"
    mroot = mount.root.rstrip("/")
    if mroot and (base == mroot or base.startswith(mroot + "/")):
        base = base[len(mroot) :] or "/"
    return os.path.normpath(os.path.join(mount.mountpoint, base.lstrip("/"), path))


def own_path(self_cgroup: dict[str, str], keys: Iterable[str]) -> str | None:
    for key in keys:
        if key in self_cgroup:
            return self_cgroup[key]
    return None
