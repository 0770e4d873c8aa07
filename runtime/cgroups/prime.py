"""Hide the kernel's wait before the first cgroup migration of a create.

Every move of a process into a cgroup (a write to cgroup.procs, v1 or v2) takes the global
cgroup_threadgroup_rwsem for writing. After a quiet spell the writer first waits a whole RCU
grace period (rcu_sync_enter): about 10 ms on our hosts, which ``add_pid`` would pay in the
middle of ``create`` while the container process waits. A writer within about a grace period
of the previous one skips the wait. So, when a create starts, a thread moves this process into
the cgroup it is already in (a migration that changes nothing) and pays that wait while the
config is parsed and the plan built; ``add_pid`` then takes the fast path. (The migration holds
the global cgroup_mutex while it waits: a mkdir of a cgroup in that time waits for it too.)

Best effort: the move is made only into a cgroup.procs that lists this process already (so it
can never move us anywhere), and any failure is ignored. If the create is slow, the window has
closed again by add_pid, which then pays the wait as before.
"""

from __future__ import annotations

import _thread
import os
import time

from runtime.errors import CgroupError

from .fs import read_pids
from .layout import (
    UNIFIED_DIR,
    cgroup_dir,
    own_path,
    parse_proc_cgroup,
    read_self_cgroup,
    v1_hierarchies,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from collections.abc import Iterator


def own_procs_file(
    root: str = "/sys/fs/cgroup",
    *,
    self_cgroup: str | None = None,
    pid: int | None = None,
    mountinfo: str | None = None,
) -> str | None:
    """The cgroup.procs file of the cgroup this process is in (cgroup2 first, else the first
    v1 hierarchy), or None when no candidate lists ``pid`` (default: ours)."""
    pid = os.getpid() if pid is None else pid
    own = read_self_cgroup() if self_cgroup is None else parse_proc_cgroup(self_cgroup)

    def candidates() -> Iterator[str]:
        if "" in own:
            for base in (root, os.path.join(root, UNIFIED_DIR)):
                yield os.path.join(base, own[""].lstrip("/"), "cgroup.procs")
        for mount in v1_hierarchies(root, mountinfo)[:1]:
            leaf = cgroup_dir(mount, own_path(own, sorted(mount.controllers)), ".")
            yield os.path.join(leaf, "cgroup.procs")

    for path in candidates():
        try:
            if pid in read_pids(path):
                return path
        except CgroupError:
            continue
    return None


_last_primed = float("-inf")
_primed: dict[str, str | None] = {}  # root -> the cgroup.procs found (we stay in that cgroup)


def prime_attach(root: str = "/sys/fs/cgroup", *, again: bool = False) -> None:
    """Start the no-op self migration in a thread of its own and return at once.

    The migration holds cgroup_mutex through its wait, so it pays off when started at least a
    grace period before the first cgroup operation (a mkdir too): call it as early as possible.
    A second call within 50 ms does nothing, unless ``again``: called again just before the
    cgroup work, it keeps the fast path open (a cheap write while the first one's window lasts).
    The file is found and opened here, so the thread's first and only call that lets go of the
    GIL is the write itself: it starts at once instead of waiting for the busy main thread to
    hand the GIL back.
    """
    global _last_primed
    now = time.monotonic()
    if now - _last_primed < 0.05 and not again:
        return
    _last_primed = now
    try:
        # Again: the file found the first time, not found anew (mountinfo parsed, and our
        # cgroup's process list read, which at a hierarchy's root lists every process).
        path = _primed[root] if again and root in _primed else own_procs_file(root)
        _primed[root] = path
        if path is None:
            return
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except (CgroupError, OSError):
        return
    pid = str(os.getpid()).encode()

    def move_self() -> None:
        try:
            os.write(fd, pid)
        except OSError:
            pass
        finally:
            os.close(fd)

    # A bare thread, not threading.Thread: its import and its start handshake (the caller
    # waits until the thread runs) cost a command more than the migration it overlaps.
    _thread.start_new_thread(move_self, ())
