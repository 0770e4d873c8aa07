"""`exec`: run another process in a running container.

The process joins every namespace of the container's init (through /proc/<pid>/ns), is placed
in the container's cgroups, and gets the container's security settings (capabilities,
no_new_privs, rlimits, seccomp) unless the process given overrides them, as runc does.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
from dataclasses import dataclass

from . import config as cfg
from .errors import ConfigError, InvalidState
from .plan import HostInfo, SpawnPlan, build_plan
from .state import DEFAULT_ROOT, StateDir, Status, write_atomic

# /proc/<pid>/ns/<name> for each OCI namespace type.
_NS_FILES = {
    "user": "user",
    "ipc": "ipc",
    "uts": "uts",
    "network": "net",
    "pid": "pid",
    "mount": "mnt",
    "cgroup": "cgroup",
    "time": "time",
}


@dataclass(frozen=True, slots=True)
class ExecOptions:
    root: str = DEFAULT_ROOT
    detach: bool = False
    pid_file: str | None = None
    console_socket: str | None = None
    preserve_fds: int = 0


@dataclass(frozen=True, slots=True)
class ProcessOverrides:
    """The command-line flags of `exec` that change the container's own process."""

    args: tuple[str, ...]
    env: tuple[str, ...] = ()
    cwd: str | None = None
    user: tuple[int, int | None] | None = None  # uid, gid
    additional_gids: tuple[int, ...] = ()
    caps: tuple[str, ...] = ()
    tty: bool = False
    no_new_privs: bool = False


def _merge_env(base: tuple[str, ...], extra: tuple[str, ...]) -> tuple[str, ...]:
    out: dict[str, str] = {}
    for entry in (*base, *extra):
        out[entry.split("=", 1)[0]] = entry
    return tuple(out.values())


def process_from_flags(base: cfg.Process, o: ProcessOverrides) -> cfg.Process:
    """runc's rule: start from the container's process, then apply the flags."""
    if not o.args:
        raise ConfigError("args", "exec needs a command")
    user = base.user
    ids = [("--user", i) for i in (o.user or ()) if i is not None]
    for what, i in [*ids, *(("--additional-gids", g) for g in o.additional_gids)]:
        if not 0 <= i < 2**32:
            raise ConfigError(what, f"{i} is not an id between 0 and 4294967295")
    if o.cwd is not None and not o.cwd.startswith("/"):
        raise ConfigError("--cwd", f"must be an absolute path, not {o.cwd!r}")
    if o.user is not None:
        uid, gid = o.user
        user = dataclasses.replace(user, uid=uid, gid=gid if gid is not None else user.gid)
    if o.additional_gids:
        user = dataclasses.replace(user, additional_gids=o.additional_gids)
    caps = base.capabilities
    if o.caps:
        unknown = [c for c in o.caps if c not in cfg.CAPABILITIES]
        if unknown:
            raise ConfigError("cap", f"unknown capability {unknown[0]!r}")
        caps = caps or cfg.Capabilities()

        def add(names: tuple[str, ...]) -> tuple[str, ...]:
            return (*names, *(c for c in o.caps if c not in names))

        # Never into the inheritable set (CVE-2022-29162, runc 1.1.2): ambient only when the
        # process has inheritable capabilities already (the plan keeps what the kernel allows).
        caps = dataclasses.replace(
            caps,
            bounding=add(caps.bounding),
            effective=add(caps.effective),
            permitted=add(caps.permitted),
            ambient=add(caps.ambient) if caps.inheritable else caps.ambient,
        )
    return dataclasses.replace(
        base,
        args=o.args,
        env=_merge_env(base.env, o.env),
        cwd=o.cwd or base.cwd,
        user=user,
        capabilities=caps,
        terminal=o.tty,
        console_size=None,
        no_new_privileges=base.no_new_privileges or o.no_new_privs,
    )


def exec_plan(spec: cfg.Spec, process: cfg.Process, pid: int, preserve_fds: int) -> SpawnPlan:
    """The plan for a process that joins the namespaces of container process ``pid``."""
    linux = spec.linux or cfg.Linux()
    joined = tuple(
        cfg.Namespace(ns.type, f"/proc/{pid}/ns/{_NS_FILES[ns.type]}") for ns in linux.namespaces
    )
    # Nothing of the container's own setup is repeated: no mounts, devices, sysctls, hostname.
    bare = dataclasses.replace(
        spec,
        process=process,
        mounts=(),
        hostname=None,
        domainname=None,
        linux=dataclasses.replace(
            linux,
            namespaces=joined,
            devices=(),
            masked_paths=(),
            readonly_paths=(),
            sysctl={},
            uid_mappings=(),
            gid_mappings=(),
        ),
    )
    plan = build_plan(bare, "/", HostInfo(cap_last=_cap_last()), preserve_fds=preserve_fds)
    # A container without a mount namespace of its own has only its chroot: enter the same
    # root, through its process.
    rootfs = f"/proc/{pid}/root" if plan.chroot_only else None
    return dataclasses.replace(plan, rootfs=rootfs, readonly_root=False, ops=(), lo_up=False)


def _cap_last() -> int:
    from .plan import read_cap_last

    return read_cap_last()


def exec_process(cid: str, process: cfg.Process, opts: ExecOptions = ExecOptions()) -> int:
    """Start ``process`` in container ``cid``; wait for it unless detached. Returns its exit
    code (128+signal when killed), or 0 when detached."""
    from . import _sys
    from . import console as cons
    from .container import _FORWARDED, _manager, status_of, wait_exit

    sd = StateDir(opts.root, cid)
    st = sd.load()
    status = status_of(sd, st)
    if status not in (Status.CREATED, Status.RUNNING):
        raise InvalidState(cid, f"cannot exec in a {status} container")
    spec = cfg.load_spec(st.bundle)
    plan = exec_plan(spec, process, st.pid, opts.preserve_fds)
    if not opts.detach:
        # A process the caller waits for stays in the caller's process group (runc's gets a
        # session of its own): the pod monitor ends a timed-out exec probe by killing that
        # group, which must reach the probe's process in the container too.
        plan = dataclasses.replace(plan, new_session=False)
    mgr = _manager(st)

    ours = theirs = None
    if process.terminal and not opts.console_socket:
        if opts.detach:
            cons.check(True, None, detached=True)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    elif opts.console_socket:
        cons.check(process.terminal, opts.console_socket, detached=True)
        theirs = cons.connect(opts.console_socket)
    master = -1
    try:
        pid = _sys.spawn(
            plan,
            start=None,
            place=mgr.add_pid if mgr is not None else (lambda _pid: None),
            console_fd=theirs.fileno() if theirs is not None else -1,
        )
        if ours is not None:
            master = cons.receive_master(ours)
    finally:
        for sock in (ours, theirs):
            if sock is not None:
                sock.close()
    if opts.pid_file:
        write_atomic(os.path.abspath(opts.pid_file), f"{pid}".encode(), 0o644, durable=False)
    if opts.detach:
        return 0

    def forward(signum: int, _frame: object) -> None:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    previous = {s: signal.signal(s, forward) for s in _FORWARDED}
    try:
        if master >= 0:
            try:
                cons.proxy(master, pid)
            finally:
                os.close(master)
        return wait_exit(pid)
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
