"""The one importer of the compiled C core (runtime._corral).

Turns a ``SpawnPlan`` into the C structs, drives the parent side of the sync protocol
(id maps, cgroup placement) and turns -errno results into ``SpawnError(step, errno)``.
"""

from __future__ import annotations

import _thread
import errno
import fcntl
import os
from _signal import SIGKILL  # not `signal`, which imports enum
from collections.abc import Callable

from ._corral import ffi, lib
from .errors import SpawnError, SysError
from .plan import NS_FLAGS, SpawnPlan

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (ms of each command)
if TYPE_CHECKING:
    from typing import Any

# The state the startContainer hooks get on stdin, left by `create` in the state directory.
START_STATE = "hook-state.json"

# csrc/exec.c, built into the package next to corral-monitor; run only from a sealed copy.
EXEC_HELPER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_bin", "corral-exec")
EXEC_HELPER_NAME = "corral-exec"  # its argv[0]: it refuses to run under any other
_MFD_CLOEXEC, _MFD_ALLOW_SEALING, _MFD_EXEC = 0x1, 0x2, 0x10
_F_ADD_SEALS = 1024 + 9
# F_SEAL_SEAL | SHRINK | GROW | WRITE | FUTURE_WRITE, and F_SEAL_EXEC where the kernel has it
_SEALS, _F_SEAL_EXEC = 0x1 | 0x2 | 0x4 | 0x8 | 0x10, 0x20
_exec_fd = -1
_exec_lock = _thread.allocate_lock()


def sealed_copy(path: str, name: str) -> int:
    """A close-on-exec memfd holding the bytes of ``path``, sealed against every change, so
    that a process exec'd from it has a /proc/self/exe nobody can write."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise SysError(f"read {path}", e.errno or 0) from None
    try:
        fd = os.memfd_create(name, _MFD_CLOEXEC | _MFD_ALLOW_SEALING | _MFD_EXEC)
    except OSError as e:
        if e.errno != errno.EINVAL:  # kernels before 6.3 know no MFD_EXEC
            raise SysError(f"memfd_create({name})", e.errno or 0) from None
        try:
            fd = os.memfd_create(name, _MFD_CLOEXEC | _MFD_ALLOW_SEALING)
        except OSError as e2:
            raise SysError(f"memfd_create({name})", e2.errno or 0) from None
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        try:
            fcntl.fcntl(fd, _F_ADD_SEALS, _SEALS | _F_SEAL_EXEC)
        except OSError as e:
            if e.errno != errno.EINVAL:
                raise
            fcntl.fcntl(fd, _F_ADD_SEALS, _SEALS)
    except OSError as e:
        os.close(fd)
        raise SysError(f"seal memfd copy of {path}", e.errno or 0) from None
    return fd


def exec_helper_fd() -> int:
    """The sealed copy of corral-exec every container program is exec'd through; made once
    per process (it cannot change, so every container may share it)."""
    global _exec_fd
    with _exec_lock:
        if _exec_fd < 0:
            _exec_fd = sealed_copy(EXEC_HELPER, EXEC_HELPER_NAME)
        return _exec_fd


_NS_NAMES = {flag: name for name, flag in NS_FLAGS.items()}
_NS_GET_NSTYPE = 0xB703  # _IO(0xb7, 0x3): the CLONE_NEW* type of a namespace fd


def _open_namespace(path: str, flag: int) -> int:
    """An fd for the namespace at ``path``, which must be of type ``flag``: setns() would
    only say EINVAL, from a child, without the path."""
    name = _NS_NAMES[flag]
    step = f"setns({name} {path})"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise SysError(f"open {name} namespace {path}", e.errno or 0) from None
    try:
        kind = fcntl.ioctl(fd, _NS_GET_NSTYPE)
    except OSError as e:
        os.close(fd)
        if e.errno == errno.ENOTTY:  # any file that is not a namespace
            raise SysError(step, errno.EINVAL, "not a namespace file") from None
        raise SysError(f"ioctl(NS_GET_NSTYPE, {path})", e.errno or 0) from None
    if kind != flag:
        os.close(fd)
        other = _NS_NAMES.get(kind, f"type {kind:#x}")
        raise SysError(step, errno.EINVAL, f"not a {name} namespace (it is a {other} namespace)")
    return fd


class _Keep:
    """Holds every cffi allocation so nothing is freed while the children use it."""

    def __init__(self) -> None:
        self.refs: list[Any] = []

    def str(self, s: str | None) -> Any:
        if s is None:
            return ffi.NULL
        p = ffi.new("char[]", os.fsencode(s))
        self.refs.append(p)
        return p

    def strv(self, items: tuple[str, ...]) -> Any:
        arr = ffi.new("char *[]", len(items) + 1)
        for i, s in enumerate(items):
            arr[i] = self.str(s)
        arr[len(items)] = ffi.NULL
        self.refs.append(arr)
        return arr

    def new(self, ctype: str, init: Any = None) -> Any:
        p = ffi.new(ctype, init)
        self.refs.append(p)
        return p


def _c_plan(
    plan: SpawnPlan,
    join_fds: list[int],
    start: tuple[int, str] | None,
    k: _Keep,
    console_fd: int = -1,
) -> Any:
    p = k.new("struct corral_plan *")
    p.clone_flags = plan.clone_flags
    p.new_userns = int(plan.new_userns)
    p.new_cgroupns = int(plan.new_cgroupns)
    p.new_timens = int(plan.new_timens)
    p.join_fds = k.new("int[]", join_fds)
    p.join_types = k.new("int[]", [t for _, t in plan.join])
    p.join_names = k.strv(tuple(f"{_NS_NAMES[t]} {path}" for path, t in plan.join))
    p.n_join = len(join_fds)

    p.rootfs = k.str(plan.rootfs)
    p.no_pivot = int(plan.no_pivot)
    p.chroot_only = int(plan.chroot_only)
    p.readonly_root = int(plan.readonly_root)
    p.root_propagation = plan.root_propagation
    p.rootfs_propagation = plan.rootfs_propagation
    p.rootfs_parent = k.str(plan.rootfs_parent)
    ops = k.new("struct corral_op[]", max(len(plan.ops), 1))
    for i, op in enumerate(plan.ops):
        o = ops[i]
        o.kind = int(op.kind)
        o.after_pivot = int(op.after_pivot)
        o.source = k.str(op.source)
        o.dest = k.str(op.dest)
        o.fstype = k.str(op.fstype)
        o.flags = op.flags
        o.data = k.str(op.data)
        o.remount_ro = int(op.remount_ro)
        o.remount_flags = op.remount_flags
        for j, prop in enumerate(op.propagation[:4]):
            o.propagation[j] = prop
        o.dest_is_file = int(op.dest_is_file)
        o.mkdest = int(op.mkdest)
        o.mode = op.mode
        o.dev = op.dev
        o.uid = op.uid
        o.copy_up = int(op.copy_up)
        o.gid = op.gid
    p.ops = ops
    p.n_ops = len(plan.ops)

    p.hostname = k.str(plan.hostname)
    p.domainname = k.str(plan.domainname)
    p.lo_up = int(plan.lo_up)
    sysctls = k.new("struct corral_sysctl[]", max(len(plan.sysctls), 1))
    for i, (path, value) in enumerate(plan.sysctls):
        sysctls[i].path = k.str(path)
        sysctls[i].value = k.str(value)
    p.sysctls = sysctls
    p.n_sysctls = len(plan.sysctls)
    rlimits = k.new("struct corral_rlimit[]", max(len(plan.rlimits), 1))
    for i, (res, soft, hard) in enumerate(plan.rlimits):
        rlimits[i].resource = res
        rlimits[i].soft = soft
        rlimits[i].hard = hard
    p.rlimits = rlimits
    p.n_rlimits = len(plan.rlimits)
    p.set_oom_score_adj = int(plan.oom_score_adj is not None)
    p.oom_score_adj = plan.oom_score_adj or 0
    # umask(2) keeps the permission bits; a spec's umask is any uint32 (runc passes it as is).
    p.umask = -1 if plan.umask is None else plan.umask & 0o777
    p.uid = plan.uid
    p.gid = plan.gid
    p.set_groups = int(plan.groups is not None)
    groups = plan.groups or ()
    p.groups = k.new("unsigned int[]", list(groups) or [0])
    p.n_groups = len(groups)
    p.set_caps = int(plan.caps is not None)
    p.cap_last = plan.cap_last
    if plan.caps is not None:
        p.cap_bounding = plan.caps.bounding
        p.cap_effective = plan.caps.effective
        p.cap_permitted = plan.caps.permitted
        p.cap_inheritable = plan.caps.inheritable
        p.cap_ambient = plan.caps.ambient
    p.no_new_privs = int(plan.no_new_privs)
    if plan.seccomp_prog:
        p.seccomp_prog = k.new("char[]", plan.seccomp_prog)
        p.seccomp_len = len(plan.seccomp_prog)
        p.seccomp_flags = plan.seccomp_flags

    p.new_session = int(plan.new_session)
    p.cwd = k.str(plan.cwd)
    p.argv = k.strv(plan.argv)
    p.envp = k.strv(plan.env)
    p.exec_fd = exec_helper_fd()
    p.exec_via_proc = int(plan.exec_via_proc)
    # slot 1 is the program's resolved path, filled in by the container process
    p.exec_argv = k.strv((EXEC_HELPER_NAME, "", *plan.argv))
    p.home_slot = plan.home_slot
    p.preserve_fds = plan.preserve_fds
    p.start_dirfd = start[0] if start else -1
    p.start_fifo = k.str(start[1] if start else None)
    p.console_fd = console_fd
    p.session_keyring = k.str(plan.session_keyring)
    p.hooks_sync = int(plan.hooks_sync)
    hooks = k.new("struct corral_hook[]", max(len(plan.start_hooks), 1))
    for i, h in enumerate(plan.start_hooks):
        hooks[i].path = k.str(h.path)
        hooks[i].argv = k.strv((EXEC_HELPER_NAME, h.path, *(h.args or (h.path,))))
        hooks[i].envp = k.strv(h.env)
        hooks[i].timeout = h.timeout or 0
    p.start_hooks = hooks
    p.n_start_hooks = len(plan.start_hooks)
    p.start_state = k.str(START_STATE)
    p.console_rows, p.console_cols = plan.console_size
    return p


def _recv(fd: int, stage: str) -> Any:
    msg = ffi.new("struct corral_msg *")
    ret = lib.corral_sync_recv(fd, msg)
    if ret < 0:
        raise SpawnError(f"sync with {stage}", -ret, "the process exited during setup")
    return msg


def _sent_pid(sync: int) -> int:
    """The pid in a PID message already queued on ``sync`` (stage 1 is gone), or -1."""
    import socket

    size = ffi.sizeof("struct corral_msg")
    s = socket.socket(fileno=os.dup(sync))
    try:
        s.setblocking(False)
        while True:
            try:
                data = s.recv(size)
            except OSError:
                return -1
            if len(data) != size:
                return -1
            msg = ffi.cast("struct corral_msg *", ffi.from_buffer(data))
            if msg.type == lib.CORRAL_MSG_PID:
                return int(msg.pid)
    finally:
        s.close()


def _kill_reap(pid: int) -> None:
    try:
        os.kill(pid, SIGKILL)
    except ProcessLookupError:
        return
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _write_map(pid: int, name: str, text: str) -> None:
    path = f"/proc/{pid}/{name}"
    try:
        with open(path, "w") as f:
            f.write(text)
    except OSError as e:
        raise SysError(f"write {path}", e.errno or 0) from None


def spawn(
    plan: SpawnPlan,
    *,
    start: tuple[int, str] | None,
    place: Callable[[int], None],
    console_fd: int = -1,
    on_hooks: Callable[[int], None] | None = None,
    commit: Callable[[int], None] | None = None,
) -> int:
    """Start the container process and return its pid once it is READY.

    ``start`` is (dir fd, fifo name) to wait on before exec, or None to exec at once.
    ``place(pid)`` puts the stage-1 process into the container's cgroups (its child, the
    container process, inherits them). On any failure every process started is killed and
    reaped, and the error is raised. ``console_fd`` is a unix socket the process sends its
    pty master to (it then has the pty as its terminal and stdio); -1 for none.
    ``on_hooks(pid)`` runs when the process stops for its hooks (``plan.hooks_sync``): after
    the mounts, before pivot_root. ``commit(pid)`` records the process once it is READY; until
    it returns, the process dies with this one (parent-death signal), and if it raises, the
    process is killed. Only then is the process told it may outlive us.
    """
    keep = _Keep()
    join_fds: list[int] = []
    stage1 = child = -1
    sync = -1
    try:
        for path, flag in plan.join:
            join_fds.append(_open_namespace(path, flag))
        cplan = _c_plan(plan, join_fds, start, keep, console_fd)
        pid_p = ffi.new("int *")
        fd_p = ffi.new("int *")
        step = ffi.new("char[]", 256)
        ret = lib.corral_spawn(cplan, pid_p, fd_p, step, 256)
        if ret < 0:
            raise SpawnError(ffi.string(step).decode(errors="replace"), -ret)
        stage1, sync = pid_p[0], fd_p[0]

        if plan.new_userns:
            msg = _recv(sync, "stage 1")
            if msg.type == lib.CORRAL_MSG_ERROR:
                raise SpawnError(ffi.string(msg.step).decode(errors="replace"), msg.err)
            if plan.gid_map:
                _write_map(stage1, "gid_map", plan.gid_map)
            if plan.uid_map:
                _write_map(stage1, "uid_map", plan.uid_map)
        place(stage1)
        if lib.corral_sync_send(sync, lib.CORRAL_MSG_GO) < 0:
            # Stage 1 failed (a setns) and left: its report is what went wrong.
            msg = _recv(sync, "stage 1")
            if msg.type == lib.CORRAL_MSG_ERROR:
                raise SpawnError(ffi.string(msg.step).decode(errors="replace"), msg.err)
            raise SpawnError("sync with stage 1", errno.EPIPE)
        # Stage 1 sends PID and the container process sends HOOKS/READY on the same socket,
        # concurrently: take them in whatever order they come.
        ready = hooks_pending = False
        while child < 0 or not ready:
            msg = _recv(sync, "stage 1" if child < 0 else "container process")
            if msg.type == lib.CORRAL_MSG_ERROR:
                raise SpawnError(ffi.string(msg.step).decode(errors="replace"), msg.err)
            if msg.type == lib.CORRAL_MSG_PID and child < 0:
                child = msg.pid
                os.waitpid(stage1, 0)
                stage1 = -1
            elif msg.type == lib.CORRAL_MSG_HOOKS and not hooks_pending:
                hooks_pending = True
            elif msg.type == lib.CORRAL_MSG_READY:
                ready = True
            else:
                raise SpawnError("sync with container process", errno.EPROTO, "unexpected message")
            if hooks_pending and child > 0:
                hooks_pending = False
                if on_hooks is not None:
                    on_hooks(child)
                if lib.corral_sync_send(sync, lib.CORRAL_MSG_GO) < 0:
                    raise SpawnError("sync with container process", errno.EPIPE)
        if commit is not None:
            commit(child)
        if lib.corral_sync_send(sync, lib.CORRAL_MSG_GO) < 0:
            raise SpawnError("sync with container process", errno.EPIPE, "it exited after setup")
        # It hangs up once it no longer dies with us: only then may we exit.
        msg = ffi.new("struct corral_msg *")
        lib.corral_sync_recv(sync, msg)
        return child
    except BaseException:
        if stage1 > 0:
            _kill_reap(stage1)
        if child < 0 and sync >= 0:
            child = _sent_pid(sync)  # stage 1 may have cloned the process before it failed
        if child > 0:
            _kill_reap(child)
        raise
    finally:
        for fd in join_fds:
            os.close(fd)
        if sync >= 0:
            os.close(sync)
