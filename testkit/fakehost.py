"""A recording fake of the host seam (``corral_common.hostsys.Host``) and of the cgroup
interface, so that lifecycle code (container create, pod prepare and teardown) is unit-tested
without root: mounts go into a mount table of its own, files are written for real (in the
test's temporary directories), and every call is recorded, in order, in ``calls``.

``fail(op, where)`` makes the next matching call raise, as the kernel would, so a test can
break a step in the middle and check what was undone, and in which order.
"""

from __future__ import annotations

import errno
import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from corral_common import hostsys


@dataclass
class _Failure:
    op: str
    where: str
    err: int
    times: int


@dataclass
class RecordingHost:
    """Records ``(op, path)`` for every call; mounts are simulated, writes are real.

    ``fs_types`` answers statfs for the paths it names (say, CGROUP2_SUPER_MAGIC for a fake
    cgroup root); other paths get the real answer. ``base`` is the mount table before any
    fake mount (default: empty)."""

    fs_types: dict[str, int] = field(default_factory=dict)
    base: Sequence[hostsys.MountInfo] = ()
    calls: list[tuple[str, str]] = field(default_factory=list)
    table: list[hostsys.MountInfo] = field(default_factory=list)
    _failures: list[_Failure] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1000))

    def fail(self, op: str, where: str = "", err: int = errno.EIO, times: int = 1) -> None:
        """The next ``times`` calls of ``op`` on a path containing ``where`` fail with ``err``."""
        self._failures.append(_Failure(op, where, err, times))

    def ops(self, *kinds: str) -> list[tuple[str, str]]:
        """The recorded calls of these kinds (all kinds when none is given)."""
        return [c for c in self.calls if not kinds or c[0] in kinds]

    def mounted(self) -> list[str]:
        return [m.mountpoint for m in self.table]

    def _call(self, op: str, path: str | os.PathLike[str], step: str) -> str:
        p = os.fspath(path)
        for f in self._failures:
            if f.op == op and f.where in p and f.times > 0:
                f.times -= 1
                self.calls.append((f"{op} failed", p))
                raise hostsys.HostError(step, f.err, p)
        self.calls.append((op, p))
        return p

    def _add(self, target: str, fstype: str, source: str, options: str = "") -> None:
        n = next(self._ids)
        self.table.append(
            hostsys.MountInfo(n, 1, f"fake:{n}", "/", target, "rw", (), fstype, source, options)
        )

    # -- hostsys.Host ---------------------------------------------------------------------

    def mount(
        self,
        source: str | None,
        target: str | os.PathLike[str],
        fstype: str | None,
        flags: int = 0,
        data: str | None = None,
        *,
        step: str | None = None,
    ) -> None:
        t = self._call("mount", target, step or f"mount {fstype} on {os.fspath(target)}")
        self._add(t, fstype or "none", source or "none", data or "")

    def bind_fd(self, fd: int, target: str | os.PathLike[str], recursive: bool = False) -> None:
        t = self._call("bind", target, f"bind mount on {os.fspath(target)}")
        self._add(t, "bind", os.readlink(f"/proc/self/fd/{fd}"))

    def mount_overlay(
        self,
        lowers: Sequence[str | os.PathLike[str]],
        upper: str | os.PathLike[str],
        work: str | os.PathLike[str],
        target: str | os.PathLike[str],
    ) -> None:
        t = self._call("overlay", target, f"mount overlay on {os.fspath(target)}")
        for d in (*lowers, upper, work):
            if not os.path.isdir(d):  # what the kernel checks first
                raise hostsys.HostError(f"mount overlay on {t}", errno.ENOENT, t)
        self._add(t, "overlay", "overlay", f"lowerdir={':'.join(map(os.fspath, lowers))}")

    def umount(self, target: str | os.PathLike[str]) -> bool:
        t = os.fspath(target)
        for i in range(len(self.table) - 1, -1, -1):
            if self.table[i].mountpoint == t:
                self._call("umount", t, f"umount {t}")
                del self.table[i]
                return True
        return False  # EINVAL: not a mount point

    def mountinfo(
        self, pid: int | str = "self", contains: str | None = None
    ) -> list[hostsys.MountInfo]:
        return [*self.base, *self.table]  # ``contains`` is a hint: all of them will do

    def statfs_type(self, path: str | os.PathLike[str]) -> int:
        p = os.fspath(path)
        if p in self.fs_types:
            return self.fs_types[p]
        return hostsys.statfs_type(p)

    def write_atomic(
        self,
        path: str | os.PathLike[str],
        data: str | bytes,
        mode: int = 0o600,
        *,
        durable: bool = True,
    ) -> None:
        p = self._call("write", path, f"write {os.fspath(path)}")
        hostsys.write_atomic(p, data, mode, durable=durable)


class RecordingCgroup:
    """A cgroup manager (``runtime.cgroups.CgroupManager``'s methods) that records its calls
    into ``host.calls`` as ``("cgroup <method>", path)`` and keeps no kernel object: ``made``
    says whether it exists. ``fail`` on the host with op ``cgroup <method>`` breaks a call."""

    def __init__(self, host: RecordingHost, path: str) -> None:
        self.host = host
        self.path = path
        self.made = False
        self.procs: list[int] = []

    def _rec(self, method: str) -> None:
        self.host._call(f"cgroup {method}", self.path, f"cgroup {method} {self.path}")

    def paths(self) -> dict[str, str]:
        return {"": self.path}

    def create(self) -> None:
        self._rec("create")
        self.made = True

    def apply(self, resources: object) -> None:
        self._rec("apply")

    def add_pid(self, pid: int) -> None:
        self._rec("add_pid")
        self.procs.append(pid)

    def pids(self) -> list[int]:
        return list(self.procs)

    def kill_all(self, sig: int) -> None:
        self._rec("kill_all")
        self.procs.clear()

    def exists(self) -> bool:
        return self.made

    def destroy(self) -> None:
        self._rec("destroy")
        self.made = False

    def is_frozen(self) -> bool:
        return False

    def oom_killed(self) -> int:
        return 0
