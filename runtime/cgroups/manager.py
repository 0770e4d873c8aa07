"""One cgroup interface, two drivers.

``CgroupManager`` is what the runtime uses; ``V1Manager`` drives legacy and hybrid hosts (a
directory per v1 hierarchy, plus one in the controller-less cgroup2 mount on hybrid hosts, as
runc does), ``V2Manager`` drives a unified cgroup2 host (one directory). The differences
between v1 and v2 live here and in the ``*_v1``/``*_v2`` controller functions, nowhere else.
"""

from __future__ import annotations

import abc
import errno
import os
import time
from _signal import SIGKILL  # not `signal`, which imports enum: kill and delete load this module

from runtime.errors import CgroupError

from .fs import (
    makedirs,
    parse_keyed,
    read_file,
    read_int,
    read_optional,
    read_pids,
    write_all,
    write_file,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (ms of each command)
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from runtime.config import Resources

    from . import controllers as ctl
    from . import layout as layout_
    from .stats import Stats

#: How long destroy() keeps retrying a busy cgroup, and freeze() waits for FROZEN.
DESTROY_TIMEOUT = 1.0
FREEZE_TIMEOUT = 2.0

# v1 memory limits at or above this are "unlimited" (PAGE_COUNTER_MAX pages).
_V1_UNLIMITED = 1 << 62


#: The field of linux.resources each controller applies, for error messages.
FIELDS = {
    "cpuset": "linux.resources.cpu",
    "devices": "linux.resources.devices",
    "memory": "linux.resources.memory",
    "cpu": "linux.resources.cpu",
    "pids": "linux.resources.pids",
    "blkio": "linux.resources.blockIO",
    "io": "linux.resources.blockIO",
    "hugetlb": "linux.resources.hugepageLimits",
    "net_cls": "linux.resources.network.classID",
    "net_prio": "linux.resources.network.priorities",
}


def _not_available(controller: str) -> CgroupError:
    """A limit asked of a controller this host does not have: fail naming the field and the
    controller, never drop the limit."""
    return CgroupError(
        f"apply {FIELDS.get(controller, controller)}",
        errno.EOPNOTSUPP,
        f"{controller} controller not available",
    )


def _unique(dirs: list[str]) -> list[str]:
    return list(dict.fromkeys(dirs))


def _rmdir_retry(path: str, deadline: float, unstick: Callable[[], None]) -> None:
    """rmdir a cgroup; while it is busy (processes still exiting, or frozen) thaw and back off
    until ``deadline``, then fail naming the directory. A directory already gone is fine."""
    delay = 0.005
    while True:
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno not in (errno.EBUSY, errno.ENOTEMPTY) or time.monotonic() >= deadline:
                detail = ""
                if exc.errno in (errno.EBUSY, errno.ENOTEMPTY):
                    detail = f"cgroup {path} is still in use (processes or child cgroups left)"
                raise CgroupError(f"rmdir {path}", exc.errno or errno.EIO, detail) from exc
        unstick()
        time.sleep(max(0.0, min(delay, deadline - time.monotonic())))
        delay = min(delay * 2, 0.1)


def _remove_tree(leaf: str, deadline: float, unstick: Callable[[], None]) -> None:
    """Remove ``leaf`` and any cgroups nested in it, deepest first."""
    if not os.path.isdir(leaf):
        return
    nested = [root for root, _dirs, _files in os.walk(leaf, topdown=False) if root != leaf]
    for path in nested:
        _rmdir_retry(path, deadline, unstick)
    _rmdir_retry(leaf, deadline, unstick)


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


class CgroupManager(abc.ABC):
    """The cgroup (set) of one container."""

    @abc.abstractmethod
    def create(self) -> None:
        """Make the directories (idempotent)."""

    @abc.abstractmethod
    def add_pid(self, pid: int) -> None:
        """Move ``pid`` into the cgroup(s)."""

    @abc.abstractmethod
    def apply(self, resources: Resources) -> None:
        """Write the limits ``resources`` asks for; raise if it asks for a missing controller."""

    @abc.abstractmethod
    def freeze(self) -> None: ...

    @abc.abstractmethod
    def thaw(self) -> None: ...

    @abc.abstractmethod
    def is_frozen(self) -> bool: ...

    @abc.abstractmethod
    def pids(self) -> list[int]:
        """Every process in the cgroup and its nested cgroups, sorted."""

    @abc.abstractmethod
    def stats(self) -> Stats: ...

    @abc.abstractmethod
    def oom_killed(self) -> int:
        """How many processes the OOM killer has killed in this cgroup."""

    @abc.abstractmethod
    def paths(self) -> dict[str, str]:
        """Hierarchy key (controller name, "name=systemd", "" for cgroup2) -> directory."""

    @abc.abstractmethod
    def destroy(self) -> None:
        """Remove the cgroup(s), nested cgroups first, then the parents this object created.

        Retries a busy cgroup for about DESTROY_TIMEOUT seconds (thawing it), then raises
        CgroupError naming the directory. Directories already gone are fine.
        """

    def exists(self) -> bool:
        """True while any of the cgroup's directories exists."""
        return any(os.path.isdir(d) for d in self._leaves())

    def kill_all(self, sig: int) -> None:
        """Signal every process. Where a freezer exists the cgroup is frozen while the pids are
        listed and signalled, so a forking process cannot escape; it is thawed afterwards if
        it was not frozen before, and always for SIGKILL (frozen tasks cannot die).
        An empty cgroup (the usual case when a stopped container is deleted) is left alone:
        with no process in it, nothing can fork into it while we look."""
        frozen_before = self._can_freeze() and self.is_frozen()
        if not self.pids():
            if frozen_before and sig == SIGKILL:
                self.thaw()
            return
        if self._can_freeze() and not frozen_before:
            self.freeze()
        try:
            for pid in self.pids():
                _kill(pid, sig)
        finally:
            if self._can_freeze() and (not frozen_before or sig == SIGKILL):
                self.thaw()

    # -- driver plumbing
    @abc.abstractmethod
    def _leaves(self) -> list[str]: ...

    @abc.abstractmethod
    def _can_freeze(self) -> bool: ...

    _created: list[str]

    def _unstick(self) -> None:
        try:
            if self._can_freeze():
                self.thaw()
        except CgroupError:
            pass

    def _destroy(self) -> None:
        deadline = time.monotonic() + DESTROY_TIMEOUT
        leaves = self._leaves()
        failures: list[CgroupError] = []
        for leaf in leaves:
            try:
                _remove_tree(leaf, deadline, self._unstick)
            except CgroupError as exc:
                failures.append(exc)
        # Parents this object created, deepest first; another container may still use them.
        for path in sorted(set(self._created) - set(leaves), key=len, reverse=True):
            try:
                os.rmdir(path)
            except OSError as exc:
                if exc.errno not in (errno.ENOENT, errno.EBUSY, errno.ENOTEMPTY):
                    failures.append(CgroupError.from_oserror(f"rmdir {path}", exc))
        if failures:
            raise failures[0]
        self._created = []


# ============================================================================ v1


class V1Manager(CgroupManager):
    """Legacy and hybrid hosts: one directory per mounted v1 hierarchy.

    ``dirs`` maps each controller (and "name=systemd") to its directory; co-mounted controllers
    such as cpu,cpuacct share one. ``unified`` is the directory in the hybrid cgroup2 mount:
    it is created and joined like runc does. A limit for a controller that no v1 hierarchy has
    but the cgroup2 mount does (hugetlb on some hybrid hosts) is applied there, with the v2
    knobs: see ``_UNIFIED_FALLBACK``.
    """

    #: v1 controller -> (the same controller's name in cgroup v2, the field of Resources it
    #: applies). Only controllers whose field is theirs alone: cpu and cpuset share one.
    _UNIFIED_FALLBACK = {
        "hugetlb": ("hugetlb", "hugepage_limits"),
        "pids": ("pids", "pids"),
        "memory": ("memory", "memory"),
        "blkio": ("io", "block_io"),
    }

    # Which hierarchy pids() reads: any holds every process; prefer ones always present.
    _PIDS_FROM = ("pids", "freezer", "memory", "devices", "cpu", "cpuacct", "cpuset", "blkio")

    def __init__(self, dirs: Mapping[str, str], unified: str | None = None) -> None:
        self._dirs = {key: os.path.normpath(path) for key, path in dirs.items() if key}
        self._unified = os.path.normpath(unified) if unified else None
        self._created = []

    def __repr__(self) -> str:
        return f"V1Manager({self.paths()!r})"

    def paths(self) -> dict[str, str]:
        out = dict(self._dirs)
        if self._unified:
            out[""] = self._unified
        return out

    def _leaves(self) -> list[str]:
        dirs = list(self._dirs.values())
        if self._unified:
            dirs.append(self._unified)
        return _unique(dirs)

    def _can_freeze(self) -> bool:
        return "freezer" in self._dirs

    def _require(self, controller: str) -> str:
        path = self._dirs.get(controller)
        if path is None:
            raise _not_available(controller)
        return path

    def create(self) -> None:
        for path in self._leaves():
            for made in makedirs(path):
                if made not in self._created:
                    self._created.append(made)
        if "cpuset" in self._dirs:
            _init_cpuset(self._dirs["cpuset"])

    def add_pid(self, pid: int) -> None:
        for path in self._leaves():
            write_file(os.path.join(path, "cgroup.procs"), str(pid))

    def apply(self, resources: Resources) -> None:
        """Write the v1 knobs. Everything is computed (and validated) before the first write.

        ``unified`` entries need cgroup v2 and are refused here.
        """
        from . import controllers as ctl  # and with it the config model: only apply needs it

        if resources.unified:
            raise CgroupError(
                "apply unified",
                errno.EOPNOTSUPP,
                "linux.resources.unified needs cgroup v2 controllers; this host uses v1",
            )
        mem_dir = self._dirs.get("memory")
        current_limit, has_memsw = 0, False
        if mem_dir is not None and resources.memory is not None:
            current_limit = read_int(os.path.join(mem_dir, "memory.limit_in_bytes")) or 0
            has_memsw = os.path.exists(os.path.join(mem_dir, "memory.memsw.limit_in_bytes"))
        blkio_dir = self._dirs.get("blkio")
        bfq = leaf = False
        weights = True
        if blkio_dir is not None and resources.block_io is not None:
            bfq = os.path.exists(os.path.join(blkio_dir, "blkio.bfq.weight"))
            leaf = os.path.exists(os.path.join(blkio_dir, "blkio.leaf_weight"))
            weights = bfq or os.path.exists(os.path.join(blkio_dir, "blkio.weight"))
        memory = ctl.memory_v1(resources.memory, current_limit=current_limit, has_memsw=has_memsw)
        cpu = ctl.cpu_v1(resources.cpu)
        plan = [
            ("cpuset", ctl.cpuset(resources.cpu)),
            ("devices", ctl.devices_v1(resources.devices)),
            ("memory", memory),
            ("cpu", cpu),
            ("pids", ctl.pids(resources.pids)),
            ("blkio", ctl.blkio_v1(resources.block_io, bfq=bfq, leaf=leaf, weights=weights)),
            ("hugetlb", ctl.hugetlb_v1(resources.hugepage_limits)),
            ("net_cls", ctl.net_cls(resources.network)),
            ("net_prio", ctl.net_prio(resources.network)),
        ]
        in_v1 = [(name, writes) for name, writes in plan if writes and name in self._dirs]
        elsewhere = [name for name, writes in plan if writes and name not in self._dirs]
        unified = self._unified_part(elsewhere) if elsewhere else None
        for name, writes in in_v1:
            write_all(self._dirs[name], writes)
        if unified is not None:
            unified.apply(self._unified_resources(resources, elsewhere))
        _check_shares(self._dirs.get("cpu"), cpu)

    def _unified_part(self, controllers: list[str]) -> V2Manager:
        """On a hybrid host, the cgroup2 directory as a V2Manager for the limits of
        ``controllers``, which no v1 hierarchy has: each must be one the cgroup2 mount has. It
        is enabled in the subtree_control of each ancestor, from the mount's root down, so
        the directory gets its knobs (only that controller, and only where it is not on yet).
        Anything else raises naming the field and the controller, before any limit is
        written."""
        unknown = [n for n in controllers if n not in self._UNIFIED_FALLBACK]
        if self._unified is None or unknown:
            raise _not_available((unknown or controllers)[0])
        root = self._unified
        while os.path.exists(os.path.join(os.path.dirname(root), "cgroup.controllers")):
            root = os.path.dirname(root)
        have = (read_optional(os.path.join(root, "cgroup.controllers")) or "").split()
        below = os.path.relpath(self._unified, root).split(os.sep)
        for name in controllers:
            v2name = self._UNIFIED_FALLBACK[name][0]
            if v2name not in have:
                raise _not_available(name)
            current = root
            for part in below:
                control = os.path.join(current, "cgroup.subtree_control")
                if v2name not in read_file(control).split():
                    try:
                        write_file(control, "+" + v2name)
                    except CgroupError as exc:
                        raise CgroupError(
                            f"apply {FIELDS.get(name, name)}",
                            exc.errno,
                            f"{name} is only in the cgroup2 hierarchy here, and {current} "
                            f"cannot enable it for its children ({exc})",
                        ) from exc
                current = os.path.join(current, part)
        return V2Manager(self._unified, root)

    def _unified_resources(self, resources: Resources, controllers: list[str]) -> Resources:
        """Only the fields of ``resources`` that ``controllers`` apply."""
        from runtime.config import Resources

        fields = {self._UNIFIED_FALLBACK[n][1] for n in controllers}
        return Resources(**{f: getattr(resources, f) for f in fields})

    # -- freezer
    def freeze(self) -> None:
        state = os.path.join(self._require("freezer"), "freezer.state")
        deadline = time.monotonic() + FREEZE_TIMEOUT
        while True:
            write_file(state, "FROZEN")
            if read_file(state).strip() == "FROZEN":
                return
            if time.monotonic() >= deadline:
                self.thaw()
                raise CgroupError(f"write {state}", errno.EBUSY, "timed out waiting for FROZEN")
            time.sleep(0.01)

    def thaw(self) -> None:
        write_file(os.path.join(self._require("freezer"), "freezer.state"), "THAWED")

    def is_frozen(self) -> bool:
        path = self._dirs.get("freezer")
        if path is None:
            return False
        return (read_optional(os.path.join(path, "freezer.state")) or "").strip() == "FROZEN"

    # -- processes
    def pids(self) -> list[int]:
        key = next((k for k in self._PIDS_FROM if k in self._dirs), None)
        if key is not None:
            return _tree_pids(self._dirs[key])
        leaves = self._leaves()
        return _tree_pids(leaves[0]) if leaves else []

    # -- accounting
    def stats(self) -> Stats:
        from .stats import Stats

        values: dict[str, int | None] = {}
        mem = self._dirs.get("memory")
        if mem is not None:
            usage = read_int(os.path.join(mem, "memory.usage_in_bytes"))
            limit = read_int(os.path.join(mem, "memory.limit_in_bytes"))
            memsw = read_int(os.path.join(mem, "memory.memsw.usage_in_bytes"))
            stat = parse_keyed(read_optional(os.path.join(mem, "memory.stat")))
            oom = parse_keyed(read_optional(os.path.join(mem, "memory.oom_control")))
            values.update(
                memory_usage=usage,
                memory_max_usage=read_int(os.path.join(mem, "memory.max_usage_in_bytes")),
                memory_limit=None if limit is None or limit >= _V1_UNLIMITED else limit,
                swap_usage=None if memsw is None or usage is None else max(memsw - usage, 0),
                memory_cache=stat.get("total_cache", stat.get("cache")),
                memory_inactive_file=stat.get("total_inactive_file", stat.get("inactive_file")),
                oom_kill=oom.get("oom_kill"),
            )
        acct = self._dirs.get("cpuacct")
        if acct is not None:
            user = read_int(os.path.join(acct, "cpuacct.usage_user"))
            system = read_int(os.path.join(acct, "cpuacct.usage_sys"))
            if user is None or system is None:  # older kernels: USER_HZ ticks only
                ticks = parse_keyed(read_optional(os.path.join(acct, "cpuacct.stat")))
                ns_per_tick = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
                if "user" in ticks:
                    user = ticks["user"] * ns_per_tick
                if "system" in ticks:
                    system = ticks["system"] * ns_per_tick
            values.update(
                cpu_usage_ns=read_int(os.path.join(acct, "cpuacct.usage")),
                cpu_user_ns=user,
                cpu_system_ns=system,
            )
        cpu = self._dirs.get("cpu")
        if cpu is not None:
            stat = parse_keyed(read_optional(os.path.join(cpu, "cpu.stat")))
            values.update(
                cpu_throttled_periods=stat.get("nr_throttled"),
                cpu_throttled_ns=stat.get("throttled_time"),
            )
        pids = self._dirs.get("pids")
        if pids is not None:
            values.update(
                pids_current=read_int(os.path.join(pids, "pids.current")),
                pids_limit=read_int(os.path.join(pids, "pids.max")),
            )
        return Stats(**values)

    def oom_killed(self) -> int:
        mem = self._dirs.get("memory")
        if mem is None:
            return 0
        return parse_keyed(read_optional(os.path.join(mem, "memory.oom_control"))).get(
            "oom_kill", 0
        )

    def destroy(self) -> None:
        self._destroy()


def _init_cpuset(leaf: str) -> None:
    """A new v1 cpuset cgroup starts with empty cpuset.cpus/mems and no task can join it: fill
    each empty level from its parent, top down, like runc's cpuset ensureParent."""
    names = ("cpuset.cpus", "cpuset.mems")
    chain: list[tuple[str, list[str]]] = []  # each level read once: (path, [cpus, mems])
    current = leaf
    while True:
        values = [read_file(os.path.join(current, name)).strip() for name in names]
        if all(values):
            break
        chain.append((current, values))
        parent = os.path.dirname(current)
        if parent == current:
            raise CgroupError(f"read {leaf}/cpuset.cpus", errno.ENOENT, "no ancestor has cpus")
        current = parent
    above = values
    for path, values in reversed(chain):
        for i, name in enumerate(names):
            if not values[i]:
                values[i] = above[i]
                write_file(os.path.join(path, name), values[i])
        above = values


def _check_shares(cpu_dir: str | None, writes: ctl.Writes) -> None:
    """The kernel clamps cpu.shares silently; say so like runc does."""
    wanted = dict(writes).get("cpu.shares")
    if cpu_dir is None or wanted is None:
        return
    path = os.path.join(cpu_dir, "cpu.shares")
    got = read_int(path)
    if got is None or got == int(wanted):
        return
    bound = "maximum" if int(wanted) > got else "minimum"
    raise CgroupError(f"write {path}", errno.EINVAL, f"the {bound} allowed cpu-shares is {got}")


def _tree_pids(top: str) -> list[int]:
    found: set[int] = set()
    for root, _dirs, _files in os.walk(top):
        found.update(read_pids(os.path.join(root, "cgroup.procs")))
    return sorted(found)


# ============================================================================ v2


class V2Manager(CgroupManager):
    """A unified host: one directory ``path`` in the cgroup2 mount at ``mountpoint``.

    Device rules are NOT applied: on cgroup v2 they need an eBPF program attached to the
    cgroup, which this runtime does not implement. ``apply`` skips them without an error.
    """

    def __init__(self, path: str, mountpoint: str) -> None:
        self._path = os.path.normpath(path)
        self._mountpoint = os.path.normpath(mountpoint)
        self._created = []

    def __repr__(self) -> str:
        return f"V2Manager({self._path!r})"

    def paths(self) -> dict[str, str]:
        return {"": self._path}

    def _leaves(self) -> list[str]:
        return [self._path]

    def _can_freeze(self) -> bool:
        return os.path.exists(os.path.join(self._path, "cgroup.freeze"))

    def _file(self, name: str) -> str:
        return os.path.join(self._path, name)

    def create(self) -> None:
        """mkdir -p, then enable every available controller in each ancestor's
        cgroup.subtree_control, from the mount's root down to the parent (skipping those already
        enabled). The cgroup itself is left a leaf, so processes may join it."""
        for made in makedirs(self._path):
            if made not in self._created:
                self._created.append(made)
        rel = os.path.relpath(self._path, self._mountpoint)
        if rel == "." or rel.startswith(".."):
            return
        current = self._mountpoint
        for part in rel.split(os.sep):
            _enable_controllers(current)
            current = os.path.join(current, part)

    def add_pid(self, pid: int) -> None:
        write_file(self._file("cgroup.procs"), str(pid))

    def available(self) -> set[str]:
        """Controllers this cgroup can use (its cgroup.controllers)."""
        return set((read_optional(self._file("cgroup.controllers")) or "").split())

    def apply(self, resources: Resources) -> None:
        """Write the v2 knobs, then the ``unified`` entries as given (they win).

        Device rules are skipped: v2 device control needs eBPF, not implemented here.
        """
        from . import controllers as ctl  # and with it the config model: only apply needs it

        mem = resources.memory
        plan = [
            ("cpuset", ctl.cpuset(resources.cpu)),
            ("memory", ctl.memory_v2(mem, has_swap=os.path.exists(self._file("memory.swap.max")))),
            ("cpu", ctl.cpu_v2(resources.cpu)),
            ("pids", ctl.pids(resources.pids)),
            ("io", ctl.io_v2(resources.block_io, bfq=os.path.exists(self._file("io.bfq.weight")))),
            ("hugetlb", ctl.hugetlb_v2(resources.hugepage_limits)),
            # No such controllers in v2: asking for them fails below, naming the field.
            ("net_cls", ctl.net_cls(resources.network)),
            ("net_prio", ctl.net_prio(resources.network)),
        ]
        unified = ctl.unified_v2(resources.unified)
        available = self.available()
        for name, writes in plan:
            if writes and name not in available:
                raise self._not_available(name)
        if mem is not None and mem.check_before_update and mem.limit and mem.limit > 0:
            usage = read_int(self._file("memory.current"))
            if usage is not None and mem.limit < usage:
                raise CgroupError(
                    f"write {self._file('memory.max')}",
                    errno.EBUSY,
                    f"rejecting memory limit {mem.limit} below current usage {usage}",
                )
        for _name, writes in plan:
            write_all(self._path, writes)
        write_all(self._path, unified)

    def _not_available(self, controller: str) -> CgroupError:
        """Say why, when it is the usual reason: a parent with processes in it."""
        err = _not_available(controller)
        parent = os.path.dirname(self._path)
        if os.path.exists(os.path.join(parent, "cgroup.type")) and read_pids(
            os.path.join(parent, "cgroup.procs")
        ):
            detail = (
                f"{err.detail}: {parent} has processes in it, so it cannot enable "
                "controllers for child cgroups (use a cgroupsPath below a cgroup without)"
            )
            return CgroupError(err.step, err.errno, detail)
        return err

    def freeze(self) -> None:
        write_file(self._file("cgroup.freeze"), "1")
        deadline = time.monotonic() + FREEZE_TIMEOUT
        while True:
            events = parse_keyed(read_optional(self._file("cgroup.events")))
            if events.get("frozen", 1) == 1:
                return
            if time.monotonic() >= deadline:
                self.thaw()
                raise CgroupError(
                    f"write {self._file('cgroup.freeze')}",
                    errno.EBUSY,
                    "timed out waiting for frozen",
                )
            time.sleep(0.01)

    def thaw(self) -> None:
        write_file(self._file("cgroup.freeze"), "0")

    def is_frozen(self) -> bool:
        events = parse_keyed(read_optional(self._file("cgroup.events")))
        if "frozen" in events:
            return events["frozen"] == 1
        return (read_optional(self._file("cgroup.freeze")) or "").strip() == "1"

    def kill_all(self, sig: int) -> None:
        """SIGKILL goes through cgroup.kill where the kernel has it (5.14+); otherwise the
        freeze, signal, thaw dance."""
        if sig == SIGKILL and os.path.exists(self._file("cgroup.kill")):
            write_file(self._file("cgroup.kill"), "1")
            return
        super().kill_all(sig)

    def pids(self) -> list[int]:
        return _tree_pids(self._path)

    def stats(self) -> Stats:
        from .stats import Stats

        cpu = parse_keyed(read_optional(self._file("cpu.stat")))
        stat = parse_keyed(read_optional(self._file("memory.stat")))

        def ns(key: str) -> int | None:
            return cpu[key] * 1000 if key in cpu else None

        return Stats(
            memory_usage=read_int(self._file("memory.current")),
            memory_max_usage=read_int(self._file("memory.peak")),
            memory_limit=read_int(self._file("memory.max")),
            swap_usage=read_int(self._file("memory.swap.current")),
            memory_cache=stat.get("file"),
            memory_inactive_file=stat.get("inactive_file"),
            cpu_usage_ns=ns("usage_usec"),
            cpu_user_ns=ns("user_usec"),
            cpu_system_ns=ns("system_usec"),
            cpu_throttled_periods=cpu.get("nr_throttled"),
            cpu_throttled_ns=ns("throttled_usec"),
            pids_current=read_int(self._file("pids.current")),
            pids_limit=read_int(self._file("pids.max")),
            oom_kill=parse_keyed(read_optional(self._file("memory.events"))).get("oom_kill"),
        )

    def oom_killed(self) -> int:
        return parse_keyed(read_optional(self._file("memory.events"))).get("oom_kill", 0)

    def destroy(self) -> None:
        self._destroy()


def _enable_controllers(path: str) -> None:
    """Enable in ``path``'s subtree_control every controller it has and has not yet enabled.

    Like runc, a refused write is retried one controller at a time and refusals are ignored:
    apply() reports what is missing. A cgroup other than the root (which alone has no
    cgroup.type) that has processes is left alone: it cannot enable domain controllers
    (memory, io) for its children, and enabling the threaded ones (cpu, cpuset, pids) that it
    may would make it a thread root, where no child can take a process at all (EOPNOTSUPP).
    """
    if os.path.exists(os.path.join(path, "cgroup.type")) and read_pids(
        os.path.join(path, "cgroup.procs")
    ):
        return
    have = read_file(os.path.join(path, "cgroup.controllers")).split()
    enabled = set(read_file(os.path.join(path, "cgroup.subtree_control")).split())
    missing = [c for c in have if c not in enabled]
    if not missing:
        return
    control = os.path.join(path, "cgroup.subtree_control")
    try:
        write_file(control, " ".join("+" + c for c in missing))
    except CgroupError:
        for c in missing:
            try:
                write_file(control, "+" + c)
            except CgroupError:
                pass


def manager_from_paths(
    paths: dict[str, str], root: str = "/sys/fs/cgroup", layout: layout_.Layout | None = None
) -> CgroupManager:
    """Reopen a manager from what its ``paths()`` returned (the state file).

    Without ``layout``, a set with only the "" key is a v2 manager; any v1 key makes a v1
    manager (with "" as its hybrid cgroup2 directory). The reopened manager removes only those
    directories (and cgroups nested in them) on destroy, not parents the original created.
    """
    if not paths:
        raise CgroupError("cgroup paths", errno.EINVAL, "no cgroup paths saved")
    for path in paths.values():
        # A saved state names the cgroups delete kills and removes: never a hierarchy's root
        # (every process of the host) or a path that climbs out of where it points.
        if not path.startswith("/") or ".." in path.split("/") or os.path.ismount(path):
            raise CgroupError("cgroup paths", errno.EINVAL, f"not a container's cgroup: {path!r}")
    v1_keys = [k for k in paths if k]
    if layout is None:
        unified = not v1_keys
    else:
        from .layout import Layout  # enum and dataclasses: not for kill and delete

        unified = layout is Layout.UNIFIED
    if unified:
        if v1_keys or "" not in paths:
            raise CgroupError("cgroup paths", errno.EINVAL, f"not a cgroup v2 path set: {paths}")
        return V2Manager(paths[""], root)
    return V1Manager({k: paths[k] for k in v1_keys}, paths.get(""))
