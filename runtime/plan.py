"""The spawn plan: everything the C spawn path does, fully decided in Python.

``SpawnPlan`` is plain data; ``runtime._sys.spawn`` hands it to C. Building it from a
``Spec`` (``build_plan``) is pure and unit-tested without root.
"""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Sequence
from dataclasses import dataclass

from corral_common import hostsys

from . import config as cfg
from ._jsonfast import quote
from .errors import ConfigError

CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

NS_FLAGS: dict[str, int] = {
    "mount": CLONE_NEWNS,
    "uts": CLONE_NEWUTS,
    "ipc": CLONE_NEWIPC,
    "network": CLONE_NEWNET,
    "pid": CLONE_NEWPID,
    "user": CLONE_NEWUSER,
    "cgroup": CLONE_NEWCGROUP,
    "time": CLONE_NEWTIME,
}

# setns() order: the user namespace first, so the others are joined with its privileges.
_JOIN_ORDER = {
    flag: i
    for i, flag in enumerate(
        (
            CLONE_NEWUSER,
            CLONE_NEWIPC,
            CLONE_NEWUTS,
            CLONE_NEWNET,
            CLONE_NEWPID,
            CLONE_NEWNS,
            CLONE_NEWCGROUP,
            CLONE_NEWTIME,
        )
    )
}

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class OpKind:
    """The kinds of ``Op``: ints, as the C core takes them (not an IntEnum: enum is some 2 ms
    of every create's start, and nothing here needs more than the names)."""

    MOUNT = 1
    MKNOD = 2
    SYMLINK = 3
    MASK = 4
    READONLY = 5


@dataclass(frozen=True, slots=True)
class Op:
    """One setup step of the container's filesystem (a mount, device node, mask...)."""

    kind: int  # an OpKind
    dest: str
    source: str | None = None
    fstype: str | None = None
    flags: int = 0
    data: str | None = None
    remount_ro: bool = False
    remount_flags: int = 0
    propagation: tuple[int, ...] = ()
    dest_is_file: bool = False
    mkdest: bool = True
    mode: int = 0
    dev: int = 0
    uid: int = -1
    gid: int = -1
    after_pivot: bool = False
    copy_up: bool = False  # tmpcopyup


@dataclass(frozen=True, slots=True)
class CapSets:
    """The capability sets as bit masks."""

    bounding: int
    effective: int
    permitted: int
    inheritable: int
    ambient: int


@dataclass(frozen=True, slots=True)
class SpawnPlan:
    """Everything the C spawn path does, in the order it does it."""

    argv: tuple[str, ...]
    env: tuple[str, ...]
    cwd: str = "/"
    new_session: bool = True  # setsid(), as runc; with a terminal it happens anyway
    clone_flags: int = 0
    new_userns: bool = False
    new_cgroupns: bool = False
    new_timens: bool = False
    join: tuple[tuple[str, int], ...] = ()  # (namespace path, CLONE_NEW*), user first
    uid_map: str = ""
    gid_map: str = ""
    rootfs: str | None = None
    no_pivot: bool = False
    # no mount namespace of its own: nothing is mounted (it would be the caller's, the host's);
    # the process only chroots into rootfs
    chroot_only: bool = False
    readonly_root: bool = False
    root_propagation: int = 0
    rootfs_propagation: int = 0
    # made private before the rootfs is bound onto itself, so that bind does not propagate
    # to the host (runc's rootfsParentMountPrivate); None: nothing to do
    rootfs_parent: str | None = None
    ops: tuple[Op, ...] = ()
    hostname: str | None = None
    domainname: str | None = None
    lo_up: bool = True
    sysctls: tuple[tuple[str, str], ...] = ()
    rlimits: tuple[tuple[int, int, int], ...] = ()  # (resource, soft, hard)
    oom_score_adj: int | None = None
    umask: int | None = None
    uid: int = 0
    gid: int = 0
    groups: tuple[int, ...] | None = None
    caps: CapSets | None = None
    cap_last: int = 40
    no_new_privs: bool = False
    # linux.seccomp compiled to BPF (struct sock_filter[]) and SECCOMP_FILTER_FLAG_* bits
    seccomp_prog: bytes | None = None
    seccomp_flags: int = 0
    preserve_fds: int = 0
    console_size: tuple[int, int] = (0, 0)  # rows, cols of a terminal; 0: leave as is
    session_keyring: str | None = None  # join a new session keyring of this name
    hooks_sync: bool = False  # stop before pivot_root for prestart/createRuntime/createContainer
    start_hooks: tuple[cfg.Hook, ...] = ()  # startContainer, run in the container before exec
    # The container has the kernel's procfs at /proc (a proc mount of the spec): corral-exec's
    # memfd is exec'd as /proc/self/fd/N with execve, which any seccomp profile that lets the
    # program run allows; else with execveat(AT_EMPTY_PATH).
    exec_via_proc: bool = False
    # env[home_slot] is a default HOME the container's /etc/passwd may override; -1: none
    home_slot: int = -1


# ----------------------------------------------------------------------------- builder


@dataclass(frozen=True, slots=True)
class HostInfo:
    """Facts about the host the plan depends on; injected so tests need no root."""

    cap_last: int = 40
    # v1: [(hierarchy dir name under /sys/fs/cgroup, host dir of the container's cgroup)]
    # v2: [("", host dir)] ; used for a `cgroup` mount in the container.
    cgroup_mounts: tuple[tuple[str, str], ...] = ()
    cgroup_v2: bool = False
    # symlinks next to v1 hierarchies, e.g. ("cpu", "cpu,cpuacct")
    cgroup_links: tuple[tuple[str, str], ...] = ()
    kcore: bool = True  # the host has /proc/kcore (CONFIG_PROC_KCORE): link /dev/core to it


def read_cap_last(path: str = "/proc/sys/kernel/cap_last_cap") -> int:
    try:
        with open(path) as f:
            return int(f.read().strip())
    except OSError:
        return 40


# Default device nodes every container gets (runtime-spec "Default Devices").
DEFAULT_DEVICES: tuple[tuple[str, int, int], ...] = (
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
)

DEFAULT_SYMLINKS: tuple[tuple[str, str], ...] = (
    ("/proc/self/fd", "/dev/fd"),
    ("/proc/self/fd/0", "/dev/stdin"),
    ("/proc/self/fd/1", "/dev/stdout"),
    ("/proc/self/fd/2", "/dev/stderr"),
    ("/proc/kcore", "/dev/core"),
)


# The mount flags a bind mount leaves to a remount: all but these.
_BIND_IGNORED = ~(cfg.MS_RDONLY | cfg.MS_REC | cfg.MS_BIND | cfg.MS_REMOUNT)


def _clean_dest(dest: str) -> str:
    return posixpath.normpath("/" + dest.lstrip("/"))


def _mount_ops(
    spec: cfg.Spec, bundle: str, host: HostInfo, userns: bool
) -> tuple[list[Op], set[str]]:
    ops: list[Op] = []
    dests: set[str] = set()
    for i, m in enumerate(spec.mounts):
        where = f"mounts[{i}]"
        dest = _clean_dest(m.destination)
        dests.add(dest)
        opts = cfg.parse_mount_options(m.options)
        kind = m.type or ("bind" if opts.bind else None)
        if kind == "cgroup" or kind == "cgroup2":
            cgroupns = bool(spec.linux and spec.linux.namespace("cgroup"))
            ops.extend(_cgroup_ops(dest, opts, host, cgroupns))
            continue
        source = m.source
        dest_is_file = False
        flags = opts.flags
        is_bind = opts.bind or kind == "bind"
        if is_bind:
            if not source:
                raise ConfigError(f"{where}.source", "a bind mount needs a source")
            if not source.startswith("/"):
                source = os.path.join(bundle, source)
            try:
                st = os.stat(source)
            except OSError as e:
                raise ConfigError(
                    f"{where}.source", f"stat {source}: {os.strerror(e.errno or 0)}"
                ) from None
            dest_is_file = not stat.S_ISDIR(st.st_mode)
            flags = (flags & ~cfg.MS_RDONLY) | cfg.MS_BIND
            if opts.recursive_bind:
                flags |= cfg.MS_REC
        elif not kind:
            raise ConfigError(f"{where}.type", "a mount needs a type unless it is a bind mount")
        if kind == "sysfs" and userns and not (spec.linux and spec.linux.namespace("network")):
            # sysfs of the host's network namespace cannot be mounted in a user namespace.
            ops.append(
                Op(
                    OpKind.MOUNT,
                    dest,
                    source="/sys",
                    flags=cfg.MS_BIND | cfg.MS_REC,
                    remount_ro=opts.readonly,
                    remount_flags=opts.flags & ~cfg.MS_RDONLY,
                )
            )
            continue
        ops.append(
            Op(
                OpKind.MOUNT,
                dest,
                source=source or kind,
                fstype=None if is_bind else kind,
                flags=flags,
                data=opts.data or None,
                remount_ro=is_bind and opts.readonly,
                # A bind mount ignores every flag but MS_REC: nosuid, nodev, noexec... need a
                # remount (runc remounts when any is set), read-write binds too.
                remount_flags=(opts.flags & _BIND_IGNORED) if is_bind else 0,
                propagation=opts.propagation,
                dest_is_file=dest_is_file,
                copy_up=opts.tmpcopyup and kind == "tmpfs",
            )
        )
    return ops, dests


def _cgroup_ops(dest: str, opts: cfg.MountOptions, host: HostInfo, cgroupns: bool) -> list[Op]:
    """A `cgroup` mount. On a unified host: cgroup2, which shows the namespace's root when the
    container has a cgroup namespace; without one a fresh mount would show the whole host
    hierarchy, so (like runc) the container's own cgroup directory is bind-mounted instead.
    On v1: a tmpfs holding a bind of the container's own cgroup directory of each hierarchy."""
    base_flags = opts.flags & ~(cfg.MS_RDONLY | cfg.MS_BIND | cfg.MS_REC)
    if host.cgroup_v2:
        if cgroupns or not host.cgroup_mounts:
            return [Op(OpKind.MOUNT, dest, source="cgroup", fstype="cgroup2", flags=opts.flags)]
        return [
            Op(
                OpKind.MOUNT,
                dest,
                source=host.cgroup_mounts[0][1],
                flags=cfg.MS_BIND,
                remount_ro=opts.readonly,
                remount_flags=base_flags,
            )
        ]
    ops = [
        Op(OpKind.MOUNT, dest, source="tmpfs", fstype="tmpfs", flags=base_flags, data="mode=755")
    ]
    for name, hostdir in host.cgroup_mounts:
        ops.append(
            Op(
                OpKind.MOUNT,
                posixpath.join(dest, name),
                source=hostdir,
                flags=cfg.MS_BIND | cfg.MS_REC,
                remount_ro=opts.readonly,
                remount_flags=base_flags,
            )
        )
    for link, target in host.cgroup_links:
        ops.append(Op(OpKind.SYMLINK, posixpath.join(dest, link), source=target))
    if opts.readonly:
        ops.append(
            Op(
                OpKind.MOUNT,
                dest,
                flags=cfg.MS_REMOUNT | cfg.MS_RDONLY | base_flags,
                data="mode=755",
                mkdest=False,
            )
        )
    return ops


def _device_ops(spec: cfg.Spec, dests: set[str], host: HostInfo) -> list[Op]:
    ops: list[Op] = []
    seen: set[str] = set()
    linux = spec.linux
    for dev in linux.devices if linux else ():
        path = _clean_dest(dev.path)
        seen.add(path)
        kind = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}[
            dev.type
        ]
        mode = kind | ((dev.file_mode if dev.file_mode is not None else 0o666) & 0o7777)
        ops.append(
            Op(
                OpKind.MKNOD,
                path,
                source=path if dev.type != "p" else None,
                mode=mode,
                dev=os.makedev(dev.major, dev.minor),
                uid=dev.uid if dev.uid is not None else -1,
                gid=dev.gid if dev.gid is not None else -1,
            )
        )
    if "/dev" not in dests:
        # Without a /dev mount the rootfs's own /dev is used as it is (runc does the same).
        return ops
    for path, major, minor in DEFAULT_DEVICES:
        if path in seen:
            continue
        ops.append(
            Op(
                OpKind.MKNOD,
                path,
                source=path,
                mode=stat.S_IFCHR | 0o666,
                dev=os.makedev(major, minor),
            )
        )
    for target, link in DEFAULT_SYMLINKS:
        if link == "/dev/core" and not host.kcore:
            continue  # as runc: no dangling link where the kernel has no /proc/kcore
        ops.append(Op(OpKind.SYMLINK, link, source=target))
    if "/dev/pts" in dests:
        ops.append(Op(OpKind.SYMLINK, "/dev/ptmx", source="pts/ptmx"))
    return ops


def _check_net_sysctls(linux: cfg.Linux, join: list[tuple[str, int]]) -> None:
    """net.* sysctls in a joined network namespace that is the runtime's own (the host's)
    would change the host: refuse them, as runc does. The config check already refused them
    without a network namespace; another joined one (a pod's) is the container's to tune."""
    path = next((p for p, flag in join if flag == CLONE_NEWNET), None)
    keys = [k for k in linux.sysctl if k.replace("/", ".").startswith("net.")]
    if path is None or not keys:
        return
    try:
        ns, own = os.stat(path), os.stat("/proc/self/ns/net")
    except OSError:
        return  # opening the namespace fails later and names it
    if (ns.st_dev, ns.st_ino) == (own.st_dev, own.st_ino):
        raise ConfigError(
            f"linux.sysctl[{quote(keys[0])}]",
            f"not allowed in the host network namespace (network namespace path {path})",
        )


def read_mountinfo() -> list[hostsys.MountInfo]:
    return hostsys.host().mountinfo()


def shared_parent_mount(
    rootfs: str, root_prop: int, mountinfo: str | Sequence[hostsys.MountInfo]
) -> str | None:
    """The mount point holding ``rootfs`` if it is shared once ``root_prop`` has been applied
    to / in the container's mount namespace (a copy of this one), else None. Binding the
    rootfs onto itself under a shared parent would propagate to the host, and pivot_root
    refuses a shared parent: runc makes such a parent private first."""
    if isinstance(mountinfo, str):
        mountinfo = hostsys.parse_mountinfo(mountinfo)
    best: tuple[str, bool] | None = None
    for m in mountinfo:
        point = m.mountpoint
        if point != "/" and rootfs != point and not rootfs.startswith(point + "/"):
            continue
        if best is None or len(point) >= len(best[0]):
            best = (point, m.shared)
    if best is None:
        return None
    point, shared = best
    if point == "/" or root_prop & cfg.MS_REC:
        shared = bool(root_prop & cfg.MS_SHARED)
    return point if shared else None


def _caps(spec_caps: cfg.Capabilities) -> CapSets:
    def mask(names: tuple[str, ...]) -> int:
        m = 0
        for n in names:
            m |= 1 << cfg.CAPABILITIES[n]
        return m

    permitted = mask(spec_caps.permitted)
    inheritable = mask(spec_caps.inheritable)
    return CapSets(
        bounding=mask(spec_caps.bounding),
        effective=mask(spec_caps.effective),
        permitted=permitted,
        inheritable=inheritable,
        # The kernel raises an ambient capability only if it is permitted and inheritable.
        # runc warns and goes on when it cannot (its own default spec lists ambient caps but
        # no inheritable ones), so those are left out rather than failing the container.
        ambient=mask(spec_caps.ambient) & permitted & inheritable,
    )


def _id_map(mappings: tuple[cfg.IDMapping, ...]) -> str:
    return "".join(f"{m.container_id} {m.host_id} {m.size}\n" for m in mappings)


_NEEDS_MOUNT_NS = "needs a mount namespace in linux.namespaces: without one it would change the "


def _check_without_mount_ns(spec: cfg.Spec) -> None:
    """A container in the caller's mount namespace runs there as runc and crun run it, but
    nothing may be mounted or created on the way: it would be the host's. So it is refused
    for anything that mounts (runc refuses masked and read-only paths the same way, but goes
    on to bind the rootfs and make the mounts in the host's namespace)."""
    linux = spec.linux or cfg.Linux()
    host = "host's mounts"
    for field, asked, what in (
        ("linux.maskedPaths", linux.masked_paths, host),
        ("linux.readonlyPaths", linux.readonly_paths, host),
        ("mounts", spec.mounts, host),
        ("root.readonly", spec.root is not None and spec.root.readonly, host),
        ("linux.rootfsPropagation", linux.rootfs_propagation, host),
        ("linux.devices", linux.devices, "host's files (device nodes in the rootfs)"),
    ):
        if asked:
            raise ConfigError(field, _NEEDS_MOUNT_NS + what)


# --preserve-fds: no process has more descriptors than this (fs.nr_open's ceiling, 2**20).
MAX_PRESERVE_FDS = 1 << 20


def build_plan(
    spec: cfg.Spec,
    bundle: str,
    host: HostInfo,
    *,
    no_pivot: bool = False,
    preserve_fds: int = 0,
    mountinfo: str | Sequence[hostsys.MountInfo] | None = None,
) -> SpawnPlan:
    """Decide every step of the container's setup from a validated spec. ``mountinfo`` (this
    process's, read when needed and not given) locates the mount holding a shared rootfs."""
    if spec.process is None:
        raise ConfigError("process", "is required to create a container")
    if not 0 <= preserve_fds <= MAX_PRESERVE_FDS:
        raise ConfigError(
            "preserve-fds", f"{preserve_fds} is not a number of fds from 0 to {MAX_PRESERVE_FDS}"
        )
    if spec.root is None:
        raise ConfigError("root", "is required to create a container")
    linux = spec.linux or cfg.Linux()
    proc = spec.process

    clone_flags = 0
    join: list[tuple[str, int]] = []
    new_userns = new_cgroupns = new_timens = False
    for ns in linux.namespaces:
        flag = NS_FLAGS[ns.type]
        if ns.path:
            join.append((ns.path, flag))
        elif ns.type == "user":
            new_userns = True
        elif ns.type == "cgroup":
            new_cgroupns = True
        elif ns.type == "time":
            new_timens = True
        else:
            clone_flags |= flag
    join.sort(key=lambda j: _JOIN_ORDER[j[1]])
    chroot_only = not clone_flags & CLONE_NEWNS and not any(f == CLONE_NEWNS for _, f in join)
    if chroot_only:
        _check_without_mount_ns(spec)
    userns = new_userns or any(f == CLONE_NEWUSER for _, f in join)

    ops, dests = _mount_ops(spec, bundle, host, userns)
    ops.extend(_device_ops(spec, dests, host))
    # readonlyPaths before maskedPaths, as runc: a mask lands on top of a read-only bind that
    # covers it, and the mount table reads in the same order as runc's.
    for path in linux.readonly_paths:
        ops.append(Op(OpKind.READONLY, _clean_dest(path), after_pivot=True))
    for path in linux.masked_paths:
        ops.append(Op(OpKind.MASK, _clean_dest(path), after_pivot=True))

    env = proc.env
    if not any(e.startswith("PATH=") for e in env):
        env = (*env, f"PATH={DEFAULT_PATH}")
    home_slot = -1
    if not any(e.startswith("HOME=") for e in env):
        # As runc: the home of the user in the container's /etc/passwd (looked up inside,
        # after the mounts); this default where it has none.
        home_slot = len(env)
        env = (*env, "HOME=/root" if proc.user.uid == 0 else "HOME=/")

    # As runc's prepareRoot: / (and with rslave everything under it) becomes a slave of the
    # host unless rootfsPropagation says otherwise. podman asks for "shared" when a volume is
    # [r]shared: the container's copies of the host's shared mounts then stay their peers, so
    # a volume bound from one of them passes mounts made in the container back to the host.
    root_prop = cfg.MS_SLAVE | cfg.MS_REC
    rootfs_prop = 0
    rootfs_parent = None
    if linux.rootfs_propagation:
        prop = cfg.parse_mount_options((linux.rootfs_propagation,)).propagation
        rootfs_prop = prop[0] if prop else 0
        # An unbindable / would refuse the rootfs bind below it (EINVAL, as runc 1.1.5 fails):
        # / keeps the rslave default until the rootfs is bound, and the C core makes the new
        # root unbindable after pivot_root as for every rootfsPropagation.
        if rootfs_prop and not rootfs_prop & cfg.MS_UNBINDABLE:
            root_prop = rootfs_prop
        if root_prop & cfg.MS_SHARED:
            rootfs_parent = shared_parent_mount(
                os.path.realpath(spec.root.path),
                root_prop,
                read_mountinfo() if mountinfo is None else mountinfo,
            )

    _check_net_sysctls(linux, join)
    sysctls = tuple(
        ("/proc/sys/" + key.replace(".", "/"), value) for key, value in linux.sysctl.items()
    )
    rlimits = tuple((cfg.RLIMITS[r.type], r.soft, r.hard) for r in proc.rlimits)
    seccomp = None
    if linux.seccomp is not None:
        try:
            from .seccomp import compile_filter  # loads libseccomp: only specs that use it
        except ImportError as e:
            raise ConfigError("linux.seccomp", f"not supported by this build: {e}") from None
        seccomp = compile_filter(linux.seccomp)

    return SpawnPlan(
        argv=proc.args,
        env=env,
        cwd=proc.cwd,
        clone_flags=clone_flags,
        new_userns=new_userns,
        new_cgroupns=new_cgroupns,
        new_timens=new_timens,
        join=tuple(join),
        uid_map=_id_map(linux.uid_mappings) if new_userns else "",
        gid_map=_id_map(linux.gid_mappings) if new_userns else "",
        rootfs=spec.root.path,
        no_pivot=no_pivot,
        chroot_only=chroot_only,
        readonly_root=spec.root.readonly,
        root_propagation=root_prop,
        rootfs_propagation=rootfs_prop,
        rootfs_parent=rootfs_parent,
        ops=tuple(ops),
        hostname=spec.hostname,
        domainname=spec.domainname,
        lo_up=bool(clone_flags & CLONE_NEWNET),
        exec_via_proc=any(
            m.type == "proc" and posixpath.normpath(m.destination) == "/proc" for m in spec.mounts
        ),
        sysctls=sysctls,
        rlimits=rlimits,
        oom_score_adj=proc.oom_score_adj,
        umask=proc.user.umask,
        uid=proc.user.uid,
        gid=proc.user.gid,
        groups=proc.user.additional_gids,
        caps=_caps(proc.capabilities) if proc.capabilities is not None else None,
        cap_last=host.cap_last,
        no_new_privs=proc.no_new_privileges,
        seccomp_prog=seccomp.bpf if seccomp else None,
        seccomp_flags=seccomp.flags if seccomp else 0,
        preserve_fds=preserve_fds,
        console_size=(
            (proc.console_size.height, proc.console_size.width) if proc.console_size else (0, 0)
        ),
        hooks_sync=bool(
            spec.hooks
            and (spec.hooks.prestart or spec.hooks.create_runtime or spec.hooks.create_container)
        ),
        start_hooks=spec.hooks.start_container if spec.hooks else (),
        home_slot=home_slot,
    )
