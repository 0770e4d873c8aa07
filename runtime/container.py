"""Container lifecycle: create, start, state, kill, delete, run, list, pause, resume.

Each operation takes the state root and the container id, works on the on-disk state
(``runtime.state``) under the container's lock, and leaves the system as it was when it
fails: a failed create kills what it started, removes the cgroups and the state directory.
"""

from __future__ import annotations

import _signal as signal  # the constants and signal(); `signal` imports enum for its IntEnums
import errno
import os
import select
import time

from . import _jsonfast
from .errors import ConfigError, ContainerError, CorralError, InvalidState, NotFound, SysError
from .state import (
    DEFAULT_ROOT,
    ContainerState,
    StateDir,
    Status,
    list_ids,
    process_start_time,
    write_atomic,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (ms of each command)
if TYPE_CHECKING:
    import socket
    from collections.abc import Callable

    from . import cgroups
    from . import config as cfg
    from .plan import HostInfo

# Only create and run need the config model, the planner and sockets, and start never needs
# the cgroup drivers: the other commands import this module too, so those are imported where
# they are used.

CGROUP_ROOT = "/sys/fs/cgroup"


class CreateOptions:
    """How to create a container: where its state lives and what the caller asked for.

    Read-only once made. A plain class rather than a dataclass: `start`, `state`, `kill` and
    `delete` import this module too, and dataclasses (with re) costs each of them milliseconds.
    """

    __slots__ = (
        "cgroup_root", "console_socket", "new_keyring", "no_pivot", "pid_file", "preserve_fds",
        "root",
    )  # fmt: skip

    root: str
    pid_file: str | None
    no_pivot: bool
    preserve_fds: int
    cgroup_root: str
    console_socket: str | None
    new_keyring: bool  # a session keyring of its own, named after the container

    def __init__(
        self,
        root: str = DEFAULT_ROOT,
        pid_file: str | None = None,
        no_pivot: bool = False,
        preserve_fds: int = 0,
        cgroup_root: str = CGROUP_ROOT,
        console_socket: str | None = None,
        new_keyring: bool = True,
    ) -> None:
        values = (root, pid_file, no_pivot, preserve_fds, cgroup_root, console_socket, new_keyring)
        for name, value in zip(_CREATE_FIELDS, values, strict=True):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r}: CreateOptions is read-only")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r}: CreateOptions is read-only")

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return all(getattr(self, f) == getattr(other, f) for f in _CREATE_FIELDS)

    def __hash__(self) -> int:
        return hash(tuple(getattr(self, f) for f in _CREATE_FIELDS))

    def __repr__(self) -> str:
        fields = ", ".join(f"{f}={getattr(self, f)!r}" for f in _CREATE_FIELDS)
        return f"CreateOptions({fields})"


_CREATE_FIELDS = (
    "root", "pid_file", "no_pivot", "preserve_fds", "cgroup_root", "console_socket", "new_keyring",
)  # fmt: skip
DEFAULT_OPTIONS = CreateOptions()


def _now() -> str:
    """The time in RFC 3339, UTC, as ``datetime.now(UTC).isoformat()`` spells it (with
    microseconds unless they are 0) but without importing datetime (a ms per command)."""
    ns = time.time_ns()
    seconds, micros = divmod(ns // 1000, 1_000_000)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{stamp}.{micros:06d}Z" if micros else f"{stamp}Z"


def _host_info(mgr: cgroups.CgroupManager, cgroup_root: str, layout: cgroups.Layout) -> HostInfo:
    """What a `cgroup` mount inside the container shows: the container's own cgroup
    directory of each hierarchy, under the hierarchy's usual mount name."""
    from . import cgroups
    from .plan import HostInfo, read_cap_last

    kcore = os.path.exists("/proc/kcore")
    own = sorted(set(mgr.paths().values()))
    if layout is cgroups.Layout.UNIFIED:
        return HostInfo(
            cap_last=read_cap_last(),
            cgroup_v2=True,
            cgroup_mounts=(("", own[0]),) if own else (),
            kcore=kcore,
        )
    mounts: dict[str, str] = {}
    links: list[tuple[str, str]] = []
    for path in own:
        rel = os.path.relpath(path, cgroup_root)
        name = rel.split("/", 1)[0]
        if name.startswith("..") or name in mounts:
            continue
        mounts[name] = path
        if "," in name:
            links.extend((part, name) for part in name.split(",") if part not in mounts)
    return HostInfo(
        cap_last=read_cap_last(),
        cgroup_mounts=tuple(sorted(mounts.items())),
        cgroup_links=tuple(links),
        kcore=kcore,
    )


def _resources(spec: cfg.Spec) -> cfg.Resources:
    from dataclasses import replace

    from . import cgroups
    from . import config as cfg

    res = (spec.linux.resources if spec.linux else None) or cfg.Resources()
    # The spec's device rules first, then the defaults every container needs (as runc). A
    # copy with every other field as is: a field listed here by hand would be dropped the day
    # the model grows one.
    return replace(res, devices=(*res.devices, *cgroups.DEFAULT_DEVICE_RULES))


def _saved_config(spec: cfg.Spec) -> dict[str, object]:
    saved: dict[str, object] = {
        "process_terminal": bool(spec.process and spec.process.terminal),
    }
    if spec.hooks and (spec.hooks.poststart or spec.hooks.poststop):
        from . import hooks

        saved["hooks"] = {
            "poststart": hooks.to_json(spec.hooks.poststart),
            "poststop": hooks.to_json(spec.hooks.poststop),
        }
    return saved


def _hook_state(
    cid: str, spec_version: str, bundle: str, pid: int, status: str, annotations: dict[str, str]
) -> dict[str, object]:
    out: dict[str, object] = {"ociVersion": spec_version, "id": cid, "status": status}
    if pid:
        out["pid"] = pid
    out["bundle"] = bundle
    out["annotations"] = annotations
    return out


def _saved_hooks(st: ContainerState, kind: str) -> tuple[cfg.Hook, ...]:
    saved = st.config.get("hooks")
    if not isinstance(saved, dict):
        return ()
    from . import hooks

    return hooks.from_json(saved.get(kind))


def create(
    cid: str,
    bundle: str,
    opts: CreateOptions = DEFAULT_OPTIONS,
    *,
    console: socket.socket | None = None,
    spec: cfg.Spec | None = None,
) -> ContainerState:
    """Create a container: every resource is made, but no user code runs until start.

    With process.terminal, the process's pty master is sent to ``opts.console_socket`` or,
    when the caller stays attached, over ``console`` (one end of its own socket pair).
    ``spec`` is the bundle's config when the caller has loaded it already.
    """
    from . import cgroups

    cgroups.prime_attach(opts.cgroup_root)  # overlaps a kernel wait with the work up to add_pid
    from . import config as cfg
    from .plan import build_plan

    sd = StateDir(opts.root, cid)
    bundle = os.path.abspath(bundle)
    if spec is None:
        spec = cfg.load_spec(bundle)
    if sd.half_made():
        _reap_half_made(sd)
    if sd.exists():
        raise ContainerError(cid, f"container with id exists: {cid}")
    terminal = bool(spec.process and spec.process.terminal)
    if console is None and (terminal or opts.console_socket):  # else there is nothing to check
        from . import console as cons

        cons.check(terminal, opts.console_socket, detached=True)
    linux = spec.linux or cfg.Linux()
    mounts = cgroups.read_mounts()  # once: the layout and the v1 hierarchies both need them
    layout = cgroups.detect_layout(opts.cgroup_root, mountinfo=mounts)
    mgr = cgroups.manager_for(
        linux.cgroups_path, cid, root=opts.cgroup_root, layout=layout, mountinfo=mounts
    )
    plan = build_plan(
        spec,
        bundle,
        _host_info(mgr, opts.cgroup_root, layout),
        no_pivot=opts.no_pivot,
        preserve_fds=opts.preserve_fds,
    )
    if opts.new_keyring:
        import dataclasses

        plan = dataclasses.replace(plan, session_keyring=cid)

    cgroups.prime_attach(opts.cgroup_root, again=True)  # keeps the kernel's fast path open
    sd.make()
    dirfd = -1
    try:
        with sd.locked():
            sd.record_creating(mgr.paths())
            sd.make_fifo()
            mgr.create()
            mgr.apply(_resources(spec))
            dirfd = os.open(sd.path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            from . import _sys  # the C core: only commands that spawn pay for loading it

            conn = console
            if conn is None and terminal and opts.console_socket:
                conn = cons.connect(opts.console_socket)
            on_hooks = None
            if plan.hooks_sync and spec.hooks is not None:
                on_hooks = _creation_hooks(cid, bundle, spec)
            committed: list[ContainerState] = []

            def commit(pid: int) -> None:
                """Record the container while its process still dies with us."""
                st = ContainerState(
                    id=cid,
                    bundle=bundle,
                    rootfs=spec.root.path if spec.root else "",
                    pid=pid,
                    pid_start=process_start_time(pid) or 0,
                    created=_now(),
                    oci_version=spec.oci_version,
                    owner="",
                    annotations=dict(spec.annotations),
                    cgroup_paths=mgr.paths(),
                    config=_saved_config(spec),
                )
                if plan.start_hooks:
                    state_for_hooks = _hook_state(
                        cid, spec.oci_version, bundle, pid, "created", dict(spec.annotations)
                    )
                    write_atomic(  # read by this boot's start hooks only: not fsync'd
                        os.path.join(sd.path, _sys.START_STATE),
                        _jsonfast.dumps(state_for_hooks).encode(),
                        0o644,
                        durable=False,
                    )
                sd.save(st)  # the commit point: from here on the container exists
                if opts.pid_file:  # after it: a failed commit leaves no pid file behind
                    # For the caller, now (as runc's and crun's, not fsync'd): the pid it
                    # names is gone after a machine crash.
                    pid_path = os.path.abspath(opts.pid_file)
                    write_atomic(pid_path, f"{pid}".encode(), 0o644, durable=False)
                committed.append(st)

            try:
                _sys.spawn(
                    plan,
                    start=(dirfd, "exec.fifo"),
                    place=mgr.add_pid,
                    console_fd=conn.fileno() if conn is not None and terminal else -1,
                    on_hooks=on_hooks,
                    commit=commit,
                )
            except BaseException as e:
                from .hooks import HookError

                if isinstance(e, HookError) and spec.hooks is not None:
                    _poststop(
                        cid, bundle, spec.oci_version, dict(spec.annotations), spec.hooks.poststop
                    )
                raise
            finally:
                if conn is not None and conn is not console:
                    conn.close()
            st = committed[0]
    except BaseException:
        if dirfd >= 0:
            os.close(dirfd)
            dirfd = -1
        _destroy_cgroup(mgr)
        sd.remove()
        raise
    finally:
        if dirfd >= 0:
            os.close(dirfd)
    return st


def _creation_hooks(cid: str, bundle: str, spec: cfg.Spec) -> Callable[[int], None]:
    """prestart and createRuntime hooks in our namespaces, then createContainer hooks in
    the container's mount namespace: all while the process waits before pivot_root."""
    from . import hooks

    assert spec.hooks is not None
    h = spec.hooks
    annotations = dict(spec.annotations)

    def run(pid: int) -> None:
        state = _hook_state(cid, spec.oci_version, bundle, pid, "creating", annotations)
        hooks.run("prestart", h.prestart, state)
        hooks.run("createRuntime", h.create_runtime, state)
        hooks.run("createContainer", h.create_container, state, mount_ns_of=pid)

    return run


def _poststop(
    cid: str,
    bundle: str,
    spec_version: str,
    annotations: dict[str, str],
    poststop: tuple[cfg.Hook, ...],
) -> None:
    if poststop:
        from . import hooks

        state = _hook_state(cid, spec_version, bundle, 0, "stopped", annotations)
        hooks.run_warn("poststop", poststop, state)


def _reap_half_made(sd: StateDir) -> None:
    """Undo a create killed before it committed the state, once any create still at work on
    this id (it holds the lock) is done; a container it committed meanwhile stays."""
    try:
        with sd.locked():
            _undo_uncommitted(sd)
    except NotFound:  # gone meanwhile
        pass


def _undo_uncommitted(sd: StateDir) -> None:
    """With ``sd`` locked: unless a state was committed, kill what is in the cgroups the
    create recorded, remove them and the directory."""
    if sd.exists():
        return
    paths = sd.creating_record()
    if paths:
        from . import cgroups

        _destroy_cgroup(cgroups.manager_from_paths(paths))
    sd.remove()


def _destroy_cgroup(mgr: cgroups.CgroupManager) -> None:
    try:
        mgr.kill_all(signal.SIGKILL)
    except CorralError:
        pass
    mgr.destroy()


def _alive(st: ContainerState) -> bool:
    return st.pid > 0 and process_start_time(st.pid) == st.pid_start


def status_of(sd: StateDir, st: ContainerState) -> Status:
    if not _alive(st):
        return Status.STOPPED
    if os.path.exists(sd.fifo):
        return Status.CREATED
    mgr = _manager(st)
    if mgr is not None and mgr.is_frozen():
        return Status.PAUSED
    return Status.RUNNING


def _manager(st: ContainerState) -> cgroups.CgroupManager | None:
    if not st.cgroup_paths:
        return None
    from . import cgroups

    return cgroups.manager_from_paths(st.cgroup_paths)


def state(cid: str, root: str = DEFAULT_ROOT) -> dict[str, object]:
    """The OCI state of a container, in the shape runc prints."""
    sd = StateDir(root, cid)
    st = sd.load()
    status = status_of(sd, st)
    out: dict[str, object] = {
        "ociVersion": st.oci_version,
        "id": st.id,
        "pid": st.pid if status is not Status.STOPPED else 0,
        "status": str(status),
        "bundle": st.bundle,
        "rootfs": st.rootfs,
        "created": st.created,
        "annotations": st.annotations,
        "owner": st.owner,
    }
    mgr = _manager(st)
    if mgr is not None and mgr.exists():
        # An extra property (the spec allows them): the kernel OOM-killed a process of it.
        out["oomKilled"] = mgr.oom_killed() > 0
    return out


def start(cid: str, root: str = DEFAULT_ROOT) -> None:
    """Let a created container's process exec its command."""
    sd = StateDir(root, cid)
    with sd.locked():
        st = sd.load()
        status = status_of(sd, st)
        if not status.can_start:
            if status is Status.STOPPED and os.path.exists(sd.fifo):
                raise InvalidState(cid, f"cannot start container {cid}: its process has exited")
            raise InvalidState(cid, f"cannot start a container that is {status}: {cid}")
        _release(sd, st)
    poststart = _saved_hooks(st, "poststart")
    if poststart:
        from . import hooks

        state = _hook_state(cid, st.oci_version, st.bundle, st.pid, "running", st.annotations)
        hooks.run_warn("poststart", poststart, state)


def _release(sd: StateDir, st: ContainerState) -> None:
    try:
        fd = os.open(sd.fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise SysError(f"open {sd.fifo}", e.errno or errno.EIO) from None
    try:
        # Our open lets the process's blocking open(O_WRONLY) finish; it then writes one byte.
        while True:
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready and os.read(fd, 1):
                break
            if not _alive(st):
                raise InvalidState(st.id, f"cannot start container {st.id}: its process has exited")
    finally:
        os.close(fd)
    os.unlink(sd.fifo)


def parse_signal(sig: str | int) -> int:
    if isinstance(sig, int):
        return sig
    s = sig.strip().upper()
    if s.isdigit():
        if int(s) > signal.SIGRTMAX:  # 0 only checks that the process exists, as kill(2)
            raise ConfigError("signal", f"unknown signal {sig!r}")
        return int(s)
    if not s.startswith("SIG"):
        s = "SIG" + s
    # The names signal.Signals has: _signal's SIG* constants, not the SIG_* handler values.
    value = getattr(signal, s, None) if not s.startswith("SIG_") else None
    if type(value) is not int:
        raise ConfigError("signal", f"unknown signal {sig!r}")
    return value


def kill(
    cid: str, sig: str | int = "SIGTERM", *, all_procs: bool = False, root: str = DEFAULT_ROOT
) -> None:
    signum = parse_signal(sig)
    sd = StateDir(root, cid)
    with sd.locked():
        st = sd.load()
        status = status_of(sd, st)
        mgr = _manager(st)
        if all_procs and mgr is not None and status is Status.STOPPED:
            # As runc: what the init left behind in the cgroup (no pid namespace of its
            # own) is still signalled, and a stopped container is not an error.
            if mgr.exists():
                mgr.kill_all(signum)
            return
        if not status.can_kill:
            raise InvalidState(cid, "container not running")
        if all_procs and mgr is not None:
            mgr.kill_all(signum)
            if status is Status.PAUSED:
                mgr.thaw()
            return
        try:
            os.kill(st.pid, signum)
        except ProcessLookupError:
            raise InvalidState(cid, "container not running") from None
        if status is Status.PAUSED and signum == signal.SIGKILL and mgr is not None:
            # A frozen process dies only once thawed (v1 freezer). As runc: thaw for SIGKILL
            # alone, so that the container exits; other signals wait for `resume`.
            mgr.thaw()


def _kill_wait(pid: int, pid_start: int, timeout: float = 10.0) -> None:
    """SIGKILL ``pid`` and wait until it is gone (reaping it if it is our child)."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    try:
        pidfd = os.pidfd_open(pid)  # readable once the process has exited: a wait, not a poll
    except OSError:
        pidfd = -1
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
                if done:
                    return
            except ChildProcessError:
                start_time = process_start_time(pid)
                if start_time is None or (pid_start and start_time != pid_start):
                    return
            if pidfd >= 0:
                select.select([pidfd], [], [], max(0.0, deadline - time.monotonic()))
            else:
                time.sleep(0.005)
    finally:
        if pidfd >= 0:
            os.close(pidfd)


def delete(cid: str, *, force: bool = False, root: str = DEFAULT_ROOT) -> None:
    """Remove a stopped (or never started) container; with force, kill it first."""
    sd = StateDir(root, cid)
    try:
        lock = sd.locked()
        lock.__enter__()
    except NotFound:
        if force:
            return
        raise
    try:
        try:
            st = sd.load()
        except NotFound:
            if force:  # a create killed before its commit: undo what it made
                _undo_uncommitted(sd)
                return
            raise
        status = status_of(sd, st)
        if not status.can_delete and not force:
            raise InvalidState(cid, f"cannot delete container {cid} that is not stopped: {status}")
        mgr = _manager(st)
        if status is not Status.STOPPED:
            if mgr is not None and status is Status.PAUSED:
                mgr.kill_all(signal.SIGKILL)
                mgr.thaw()
            _kill_wait(st.pid, st.pid_start)
        if mgr is not None:
            _destroy_cgroup(mgr)
        sd.remove()
    finally:
        lock.__exit__(None, None, None)
    _poststop(cid, st.bundle, st.oci_version, st.annotations, _saved_hooks(st, "poststop"))


def pause(cid: str, root: str = DEFAULT_ROOT) -> None:
    sd = StateDir(root, cid)
    with sd.locked():
        st = sd.load()
        status = status_of(sd, st)
        if not status.can_pause:
            raise InvalidState(cid, f"container not running: {cid} is {status}")
        mgr = _manager(st)
        if mgr is None:
            raise InvalidState(cid, "container has no cgroup to freeze")
        mgr.freeze()


def resume(cid: str, root: str = DEFAULT_ROOT) -> None:
    sd = StateDir(root, cid)
    with sd.locked():
        st = sd.load()
        status = status_of(sd, st)
        if status is not Status.PAUSED:
            raise InvalidState(cid, f"container not paused: {cid} is {status}")
        mgr = _manager(st)
        assert mgr is not None
        mgr.thaw()


def list_containers(root: str = DEFAULT_ROOT) -> list[dict[str, object]]:
    """The state of every container under ``root``; as runc's `list`, the owner is the
    name of the user owning the container's state directory (``state`` leaves it empty)."""
    out = []
    for cid in list_ids(root):
        try:
            st = state(cid, root)
            uid = os.stat(StateDir(root, cid).path).st_uid
        except (NotFound, FileNotFoundError):
            continue
        st["owner"] = _user_name(uid)
        out.append(st)
    return out


def _user_name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"#{uid}"


_FORWARDED = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGWINCH,
)


def _forward_signals(pid: int) -> dict[int, object]:
    """Pass the _FORWARDED signals we get on to ``pid``; returns the previous handlers."""

    def forward(signum: int, _frame: object) -> None:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    return {s: signal.signal(s, forward) for s in _FORWARDED}


def _restore_signals(previous: dict[int, object]) -> None:
    for s, h in previous.items():
        signal.signal(s, h)  # type: ignore[arg-type]  # what signal.signal returned


def wait_exit(pid: int) -> int:
    """Wait for our child ``pid``; return its exit code (128+N when killed by signal N)."""
    while True:
        try:
            _, status = os.waitpid(pid, 0)
        except InterruptedError:
            continue
        if os.WIFSIGNALED(status):
            return 128 + os.WTERMSIG(status)
        if os.WIFEXITED(status):
            return os.WEXITSTATUS(status)


def pass_gate(cid: str, fd: int) -> None:
    """Wait at a start gate, then close it: one byte ``g`` read from ``fd`` lets the created
    container start; EOF (every writer gone) or anything else cancels the start. The pod
    monitor holds the writing end while the pod's network is being set up, so that the
    creation overlaps it and no user code runs before the pod's interface is there."""
    try:
        got = os.read(fd, 1)
    except OSError as e:
        raise SysError(f"read start gate (fd {fd})", e.errno or errno.EIO) from None
    finally:
        os.close(fd)
    if got != b"g":
        raise ContainerError(cid, f"start of {cid} cancelled: its start gate closed")


def run(
    cid: str,
    bundle: str,
    opts: CreateOptions = DEFAULT_OPTIONS,
    *,
    detach: bool = False,
    keep: bool = False,
    on_started: Callable[[ContainerState], None] | None = None,
    start_gate: int | None = None,
) -> int:
    """create + start (+ wait + delete unless detached): returns the exit code.

    Attached with process.terminal, the container's pty is copied to and from our stdio.
    With ``start_gate`` (an fd: ``corral-oci run --start-gate``), the created container waits
    there before start (``pass_gate``); a gate that closes instead deletes it again.
    """
    from . import cgroups

    cgroups.prime_attach(opts.cgroup_root)  # as create does, but before the config is read
    from . import config as cfg

    ours = theirs = None
    master = -1
    previous: dict[int, object] = {}
    StateDir(opts.root, cid)  # a bad id is reported before a bad config, as by create
    spec = cfg.load_spec(bundle)
    if spec.process and spec.process.terminal and not detach and not opts.console_socket:
        import socket  # only for a terminal: the pty master comes back over the pair

        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        st = create(cid, bundle, opts, console=theirs, spec=spec)
        if theirs is not None:
            theirs.close()
        try:
            if ours is not None and st.config.get("process_terminal"):
                from . import console as cons

                master = cons.receive_master(ours)
            if not detach:
                # Forward before the release: once the process runs it may tell someone it is
                # ready, and a signal sent to us then must reach it, not kill us.
                previous = _forward_signals(st.pid)
            if start_gate is not None:
                pass_gate(cid, start_gate)
            start(cid, opts.root)
        except BaseException:
            _restore_signals(previous)
            delete(cid, force=True, root=opts.root)
            raise
    finally:
        for sock in (ours, theirs):
            if sock is not None:
                sock.close()
    if detach:
        if on_started:
            on_started(st)
        return 0
    try:
        if on_started:
            on_started(st)
        if master >= 0:
            from . import console as cons

            try:
                cons.proxy(master, st.pid)
            finally:
                os.close(master)
        code = wait_exit(st.pid)
    finally:
        _restore_signals(previous)
        if not keep:
            delete(cid, force=True, root=opts.root)
    return code
