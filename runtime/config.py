"""Typed model of the OCI runtime-spec config.json (1.0 and 1.1).

Parsed and validated once, at the edge (``load_spec``); everything inside the runtime trusts
the model. Field names are the JSON names in snake_case. Errors name the bad field with a
JSON path such as ``process.rlimits[2].type``.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import ModuleType

from runtime.errors import ConfigError

from . import _jsonfast  # json's parser without the json package (its regexes) on create's path
from ._jsonread import (  # the one reader of JSON objects, shared with _config_extra
    _EMPTY,
    _I64,
    _OOM_SCORE_ADJ,
    _U32,
    _U64,
    _as_int,
    _check_env,
    _check_path,
    _check_text,
    _key,
    _map_key,
    _Obj,
    _q,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (ms of each command)
if TYPE_CHECKING:
    from typing import Any, BinaryIO

    from ._config_extra import (
        CPU,
        BlockIO,
        ConsoleSize,
        Device,
        Hooks,
        HugepageLimit,
        IDMapping,
        Memory,
        Network,
        Pids,
        Seccomp,
    )

# The model of the sections most configs do not have lives in runtime._config_extra, which is
# imported on first use: by the parser when config.json has such a section, or by an access
# such as ``config.Memory`` (PEP 562 module __getattr__).
_EXTRA_NAMES = frozenset(
    {
        "CPU",
        "BlockIO",
        "ConsoleSize",
        "Device",
        "HugepageLimit",
        "Hook",
        "Hooks",
        "IDMapping",
        "InterfacePriority",
        "Memory",
        "Network",
        "Pids",
        "Seccomp",
        "SeccompArg",
        "SeccompSyscall",
        "ThrottleDevice",
        "WeightDevice",
    }
)


def _extra() -> ModuleType:
    from . import _config_extra

    return _config_extra


def __getattr__(name: str) -> Any:
    if name in _EXTRA_NAMES:
        value = getattr(_extra(), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _empty_map() -> Mapping[str, str]:
    # dataclasses refuse an unhashable default such as a mappingproxy; share one empty map.
    return _EMPTY


# ----------------------------------------------------------------------------- process


@dataclass(frozen=True, slots=True)
class User:
    """process.user: the ids the process runs as."""

    uid: int = 0
    gid: int = 0
    umask: int | None = None
    additional_gids: tuple[int, ...] = ()
    username: str | None = None


@dataclass(frozen=True, slots=True)
class Capabilities:
    """process.capabilities: the five capability sets, by name."""

    bounding: tuple[str, ...] = ()
    effective: tuple[str, ...] = ()
    inheritable: tuple[str, ...] = ()
    permitted: tuple[str, ...] = ()
    ambient: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Rlimit:
    """One entry of process.rlimits."""

    type: str  # "RLIMIT_NOFILE"
    hard: int
    soft: int


@dataclass(frozen=True, slots=True)
class Process:
    """process (or exec's --process): what runs in the container and how."""

    args: tuple[str, ...]
    cwd: str
    user: User = User()
    env: tuple[str, ...] = ()
    terminal: bool = False
    console_size: ConsoleSize | None = None
    capabilities: Capabilities | None = None
    rlimits: tuple[Rlimit, ...] = ()
    no_new_privileges: bool = False
    apparmor_profile: str | None = None
    oom_score_adj: int | None = None
    selinux_label: str | None = None


# ----------------------------------------------------------------------------- root, mounts, hooks


@dataclass(frozen=True, slots=True)
class Root:
    """root: the container's root filesystem."""

    path: str
    readonly: bool = False


@dataclass(frozen=True, slots=True)
class Mount:
    """One entry of mounts."""

    destination: str
    type: str | None = None
    source: str | None = None
    options: tuple[str, ...] = ()
    uid_mappings: tuple[IDMapping, ...] = ()
    gid_mappings: tuple[IDMapping, ...] = ()


# ----------------------------------------------------------------------------- linux.resources


@dataclass(frozen=True, slots=True)
class DeviceRule:
    """One entry of linux.resources.devices (the device cgroup allow/deny list)."""

    allow: bool
    type: str = "a"  # a, b, c
    major: int | None = None  # None means wildcard
    minor: int | None = None
    access: str = "rwm"


@dataclass(frozen=True, slots=True)
class Resources:
    """linux.resources (or the file of ``update --resources``): the cgroup limits."""

    devices: tuple[DeviceRule, ...] = ()
    memory: Memory | None = None
    cpu: CPU | None = None
    pids: Pids | None = None
    block_io: BlockIO | None = None
    hugepage_limits: tuple[HugepageLimit, ...] = ()
    network: Network | None = None
    unified: Mapping[str, str] = field(default_factory=_empty_map)


# ----------------------------------------------------------------------------- linux


@dataclass(frozen=True, slots=True)
class Namespace:
    """One entry of linux.namespaces; ``path`` joins an existing one."""

    type: str  # pid network mount ipc uts user cgroup time
    path: str | None = None


@dataclass(frozen=True, slots=True)
class Linux:
    """linux: namespaces, cgroups, devices, sysctls, seccomp and the other Linux parts."""

    namespaces: tuple[Namespace, ...] = ()
    uid_mappings: tuple[IDMapping, ...] = ()
    gid_mappings: tuple[IDMapping, ...] = ()
    devices: tuple[Device, ...] = ()
    cgroups_path: str | None = None
    resources: Resources | None = None
    rootfs_propagation: str | None = None
    masked_paths: tuple[str, ...] = ()
    readonly_paths: tuple[str, ...] = ()
    mount_label: str | None = None
    sysctl: Mapping[str, str] = field(default_factory=_empty_map)
    seccomp: Seccomp | None = None
    personality: str | None = None  # personality.domain, e.g. "LINUX32"

    def namespace(self, kind: str) -> Namespace | None:
        for ns in self.namespaces:
            if ns.type == kind:
                return ns
        return None


# ----------------------------------------------------------------------------- the whole spec


@dataclass(frozen=True, slots=True)
class Spec:
    """A whole config.json."""

    oci_version: str
    root: Root | None = None
    process: Process | None = None
    hostname: str | None = None
    domainname: str | None = None
    mounts: tuple[Mount, ...] = ()
    hooks: Hooks | None = None
    annotations: Mapping[str, str] = field(default_factory=_empty_map)
    linux: Linux | None = None


# ============================================================================= kernel tables

CAPABILITIES: dict[str, int] = {
    # <linux/capability.h>; the index is the bit in the capability sets.
    "CAP_CHOWN": 0,
    "CAP_DAC_OVERRIDE": 1,
    "CAP_DAC_READ_SEARCH": 2,
    "CAP_FOWNER": 3,
    "CAP_FSETID": 4,
    "CAP_KILL": 5,
    "CAP_SETGID": 6,
    "CAP_SETUID": 7,
    "CAP_SETPCAP": 8,
    "CAP_LINUX_IMMUTABLE": 9,
    "CAP_NET_BIND_SERVICE": 10,
    "CAP_NET_BROADCAST": 11,
    "CAP_NET_ADMIN": 12,
    "CAP_NET_RAW": 13,
    "CAP_IPC_LOCK": 14,
    "CAP_IPC_OWNER": 15,
    "CAP_SYS_MODULE": 16,
    "CAP_SYS_RAWIO": 17,
    "CAP_SYS_CHROOT": 18,
    "CAP_SYS_PTRACE": 19,
    "CAP_SYS_PACCT": 20,
    "CAP_SYS_ADMIN": 21,
    "CAP_SYS_BOOT": 22,
    "CAP_SYS_NICE": 23,
    "CAP_SYS_RESOURCE": 24,
    "CAP_SYS_TIME": 25,
    "CAP_SYS_TTY_CONFIG": 26,
    "CAP_MKNOD": 27,
    "CAP_LEASE": 28,
    "CAP_AUDIT_WRITE": 29,
    "CAP_AUDIT_CONTROL": 30,
    "CAP_SETFCAP": 31,
    "CAP_MAC_OVERRIDE": 32,
    "CAP_MAC_ADMIN": 33,
    "CAP_SYSLOG": 34,
    "CAP_WAKE_ALARM": 35,
    "CAP_BLOCK_SUSPEND": 36,
    "CAP_AUDIT_READ": 37,
    "CAP_PERFMON": 38,
    "CAP_BPF": 39,
    "CAP_CHECKPOINT_RESTORE": 40,
}

RLIMITS: dict[str, int] = {
    # <asm-generic/resource.h>: the same numbers on x86_64 and arm64.
    "RLIMIT_CPU": 0,
    "RLIMIT_FSIZE": 1,
    "RLIMIT_DATA": 2,
    "RLIMIT_STACK": 3,
    "RLIMIT_CORE": 4,
    "RLIMIT_RSS": 5,
    "RLIMIT_NPROC": 6,
    "RLIMIT_NOFILE": 7,
    "RLIMIT_MEMLOCK": 8,
    "RLIMIT_AS": 9,
    "RLIMIT_LOCKS": 10,
    "RLIMIT_SIGPENDING": 11,
    "RLIMIT_MSGQUEUE": 12,
    "RLIMIT_NICE": 13,
    "RLIMIT_RTPRIO": 14,
    "RLIMIT_RTTIME": 15,
}

NAMESPACE_TYPES: tuple[str, ...] = (
    "pid",
    "network",
    "mount",
    "ipc",
    "uts",
    "user",
    "cgroup",
    "time",
)

# mount(2) flags, from <sys/mount.h>; the values are the same on every Linux architecture.
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_SYNCHRONOUS = 16
MS_REMOUNT = 32
MS_MANDLOCK = 64
MS_DIRSYNC = 128
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_SILENT = 32768
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_I_VERSION = 1 << 23
MS_STRICTATIME = 1 << 24
MS_LAZYTIME = 1 << 25

PROPAGATION_FLAGS: dict[str, int] = {
    "private": MS_PRIVATE,
    "rprivate": MS_PRIVATE | MS_REC,
    "slave": MS_SLAVE,
    "rslave": MS_SLAVE | MS_REC,
    "shared": MS_SHARED,
    "rshared": MS_SHARED | MS_REC,
    "unbindable": MS_UNBINDABLE,
    "runbindable": MS_UNBINDABLE | MS_REC,
}

# option word -> (clears the flag?, flag). "rw" clears MS_RDONLY, "ro" sets it, and so on.
_MOUNT_FLAG_WORDS: dict[str, tuple[bool, int]] = {
    "defaults": (False, 0),
    "ro": (False, MS_RDONLY),
    "rw": (True, MS_RDONLY),
    "nosuid": (False, MS_NOSUID),
    "suid": (True, MS_NOSUID),
    "nodev": (False, MS_NODEV),
    "dev": (True, MS_NODEV),
    "noexec": (False, MS_NOEXEC),
    "exec": (True, MS_NOEXEC),
    "sync": (False, MS_SYNCHRONOUS),
    "async": (True, MS_SYNCHRONOUS),
    "dirsync": (False, MS_DIRSYNC),
    "remount": (False, MS_REMOUNT),
    "mand": (False, MS_MANDLOCK),
    "nomand": (True, MS_MANDLOCK),
    "noatime": (False, MS_NOATIME),
    "atime": (True, MS_NOATIME),
    "nodiratime": (False, MS_NODIRATIME),
    "diratime": (True, MS_NODIRATIME),
    "bind": (False, MS_BIND),
    "rbind": (False, MS_BIND | MS_REC),
    "relatime": (False, MS_RELATIME),
    "norelatime": (True, MS_RELATIME),
    "strictatime": (False, MS_STRICTATIME),
    "nostrictatime": (True, MS_STRICTATIME),
    "lazytime": (False, MS_LAZYTIME),
    "nolazytime": (True, MS_LAZYTIME),
    "iversion": (False, MS_I_VERSION),
    "noiversion": (True, MS_I_VERSION),
    "silent": (False, MS_SILENT),
    "loud": (True, MS_SILENT),
}


@dataclass(frozen=True, slots=True)
class MountOptions:
    """A mount's ``options`` split the way mount(2) wants them.

    ``flags`` holds the MS_* bits for the mount call itself (MS_BIND, and MS_REC for rbind,
    included). Propagation changes need their own mount calls, one per entry of
    ``propagation``, in the order given. ``data`` is what the filesystem gets ("mode=755,...").
    """

    flags: int = 0
    propagation: tuple[int, ...] = ()
    data: str = ""
    bind: bool = False  # bind or rbind
    recursive_bind: bool = False  # rbind
    readonly: bool = False
    tmpcopyup: bool = False  # copy the image's files up into a new tmpfs (runc extension)


def parse_mount_options(options: tuple[str, ...]) -> MountOptions:
    """Split mount option words as runc does: later words win over earlier ones."""
    flags = 0
    propagation: list[int] = []
    data: list[str] = []
    recursive_bind = False
    tmpcopyup = False
    for word in options:
        known = _MOUNT_FLAG_WORDS.get(word)
        if known is not None:
            clear, bit = known
            if clear:
                flags &= ~bit
            else:
                flags |= bit
                if word == "rbind":
                    recursive_bind = True
        elif word in PROPAGATION_FLAGS:
            propagation.append(PROPAGATION_FLAGS[word])
        elif word == "tmpcopyup":
            tmpcopyup = True
        elif word:
            data.append(word)
    return MountOptions(
        flags=flags,
        propagation=tuple(propagation),
        data=",".join(data),
        bind=bool(flags & MS_BIND),
        recursive_bind=recursive_bind,
        readonly=bool(flags & MS_RDONLY),
        tmpcopyup=tmpcopyup,
    )


# ============================================================================= JSON reading

_ROOTFS_PROPAGATIONS = frozenset(PROPAGATION_FLAGS)
_RULE_DEVICE_TYPES = frozenset("abc")
_PERSONALITY_DOMAINS = frozenset({"LINUX", "LINUX32"})
# sethostname(2) and setdomainname(2) take at most this many bytes (HOST_NAME_MAX).
_HOST_NAME_MAX = 64
# sysctls that belong to the IPC namespace (runc's list), besides fs.mqueue.*
_IPC_SYSCTLS = frozenset(
    {
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    }
)
_SEMVER_ID_CHARS = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-")


def _semver_major(version: str) -> str | None:
    """The major number of a SemVer 2.0 version (MAJOR.MINOR.PATCH, no leading zeros, then an
    optional -pre-release and +build, each dot-separated [0-9A-Za-z-] identifiers), or None
    when ``version`` is not one. Checked by hand: compiling the equivalent regular expression
    cost a millisecond of every create."""
    core, plus, build = version.partition("+")
    core, minus, pre = core.partition("-")
    for sep, part in ((minus, pre), (plus, build)):
        if sep and not all(i and _SEMVER_ID_CHARS.issuperset(i) for i in part.split(".")):
            return None
    numbers = core.split(".")
    for n in numbers:
        if not (n.isascii() and n.isdigit()) or (n[0] == "0" and n != "0"):
            return None
    return numbers[0] if len(numbers) == 3 else None


def _clean_abs(path: str) -> str:
    """Normalise a container path to an absolute one; a relative path is taken from "/"."""
    cleaned = posixpath.normpath("/" + path)
    return "/" + cleaned.lstrip("/")  # normpath keeps a leading "//"


# ============================================================================= process


def parse_process(obj: object, field: str = "process") -> Process:
    """Parse and validate a process object (``process`` in config.json, or exec's --process)."""
    r = _Obj(obj, field)
    args = r.strs("args")
    if not r.has("args"):
        raise ConfigError(r.at("args"), "is required")
    if not args:
        raise ConfigError(r.at("args"), "must not be empty")
    for i, arg in enumerate(args):
        if "\0" in arg:
            raise ConfigError(_key(r.at("args"), i), "must not contain a NUL byte")
    cwd = r.req_str("cwd")
    _check_path(cwd, r.at("cwd"))
    env = r.strs("env")
    for i, entry in enumerate(env):
        _check_env(entry, _key(r.at("env"), i))
    console = r.obj("consoleSize")
    caps = r.obj("capabilities")
    user = r.obj("user")
    return Process(
        args=args,
        cwd=cwd,
        user=_parse_user(user) if user else User(),
        env=env,
        terminal=r.flag("terminal"),
        console_size=(_extra().parse_console_size(console) if console else None),
        capabilities=_parse_capabilities(caps) if caps else None,
        rlimits=_parse_rlimits(r),
        no_new_privileges=r.flag("noNewPrivileges"),
        apparmor_profile=r.opt_str("apparmorProfile"),
        oom_score_adj=r.opt_int("oomScoreAdj", _OOM_SCORE_ADJ),
        selinux_label=r.opt_str("selinuxLabel"),
    )


def _parse_user(r: _Obj) -> User:
    return User(
        uid=r.opt_int("uid", _U32) or 0,
        gid=r.opt_int("gid", _U32) or 0,
        umask=r.opt_int("umask", _U32),
        additional_gids=tuple(_as_int(g, where, _U32) for g, where in r.items("additionalGids")),
        username=r.opt_str("username"),
    )


def _parse_capabilities(r: _Obj) -> Capabilities:
    sets: dict[str, tuple[str, ...]] = {}
    for name in ("bounding", "effective", "inheritable", "permitted", "ambient"):
        values = r.strs(name)
        for i, cap in enumerate(values):
            if cap not in CAPABILITIES:
                raise ConfigError(_key(r.at(name), i), f"unknown capability {_q(cap)}")
        sets[name] = values
    return Capabilities(**sets)


def _parse_rlimits(process: _Obj) -> tuple[Rlimit, ...]:
    rlimits: list[Rlimit] = []
    seen: set[str] = set()
    for r in process.objs("rlimits"):
        kind = r.req_str("type")
        if kind not in RLIMITS:
            raise ConfigError(r.at("type"), f"unknown rlimit type {_q(kind)}")
        if kind in seen:
            raise ConfigError(r.at("type"), f"duplicate rlimit {kind}")
        seen.add(kind)
        hard = r.req_int("hard", _U64)
        soft = r.req_int("soft", _U64)
        if soft > hard:
            raise ConfigError(
                r.at("soft"), f"soft limit {soft} is greater than the hard limit {hard}"
            )
        rlimits.append(Rlimit(type=kind, hard=hard, soft=soft))
    return tuple(rlimits)


# ============================================================================= root, mounts, hooks


def _parse_root(r: _Obj) -> Root:
    path = r.req_str("path")
    if not path:
        raise ConfigError(r.at("path"), "must not be empty")
    if "\0" in path:
        raise ConfigError(r.at("path"), "must not contain a NUL byte")
    return Root(path=path, readonly=r.flag("readonly"))


def _id_mappings(parent: _Obj, key: str) -> tuple[IDMapping, ...]:
    return _extra().parse_id_mappings(parent, key) if parent.has(key) else ()


def _parse_mount(r: _Obj) -> Mount:
    destination = r.req_str("destination")
    if not destination:
        raise ConfigError(r.at("destination"), "must not be empty")
    if "\0" in destination:
        raise ConfigError(r.at("destination"), "must not contain a NUL byte")
    kind = r.opt_str("type")
    source = r.opt_str("source")
    options = r.strs("options")
    for key, value in (("type", kind), ("source", source)):
        if value is not None:
            _check_text(value, r.at(key))
    for i, option in enumerate(options):
        _check_text(option, _key(r.at("options"), i))
    return Mount(
        # runtime-spec 1.1 says MUST be absolute; like runc, take a relative one from "/".
        destination=_clean_abs(destination),
        type=kind,
        source=source,
        options=options,
        uid_mappings=_id_mappings(r, "uidMappings"),
        gid_mappings=_id_mappings(r, "gidMappings"),
    )


# ============================================================================= linux.resources


def parse_resources(obj: object, field: str = "") -> Resources:
    """Parse a LinuxResources object (``linux.resources``, or the file of ``update --resources``).

    ``field`` is the JSON path prefix used in error messages.
    """
    r = _Obj(obj, field, "must be" if field else "the resources must be")
    memory = r.obj("memory")
    cpu = r.obj("cpu")
    pids = r.obj("pids")
    block_io = r.obj("blockIO")
    network = r.obj("network")
    rdma = r.obj("rdma")
    if rdma is not None and rdma.keys():
        # Not applied by this runtime (features says "rdma": false): refuse, never drop.
        raise ConfigError(r.at("rdma"), "rdma limits are not supported by this runtime")
    return Resources(
        devices=tuple(_parse_device_rule(d) for d in r.objs("devices")),
        memory=_extra().parse_memory(memory) if memory else None,
        cpu=_extra().parse_cpu(cpu) if cpu else None,
        pids=_extra().parse_pids(pids) if pids else None,
        block_io=_extra().parse_block_io(block_io) if block_io else None,
        hugepage_limits=tuple(_extra().parse_hugepage_limit(h) for h in r.objs("hugepageLimits")),
        network=_extra().parse_network(network) if network else None,
        unified=_parse_unified(r),
    )


def _device_number(r: _Obj, key: str) -> int | None:
    """major/minor of a device rule: absent, null or -1 mean any (None)."""
    value = r.opt_int(key, _I64)
    if value is None or value == -1:
        return None
    if value < 0:
        raise ConfigError(r.at(key), "must be -1 (any) or a device number of at least 0")
    return value


def _parse_device_rule(r: _Obj) -> DeviceRule:
    if not r.has("allow"):
        raise ConfigError(r.at("allow"), "is required")
    kind = r.opt_str("type") or "a"
    if kind not in _RULE_DEVICE_TYPES:
        raise ConfigError(r.at("type"), f'unknown device type {_q(kind)}: want "a", "b" or "c"')
    access = r.opt_str("access") or "rwm"
    if not set(access) <= set("rwm"):
        raise ConfigError(r.at("access"), f'invalid access {_q(access)}: want letters of "rwm"')
    return DeviceRule(
        allow=r.flag("allow"),
        type=kind,
        major=_device_number(r, "major"),
        minor=_device_number(r, "minor"),
        access="".join(c for c in "rwm" if c in access),
    )


def _parse_unified(r: _Obj) -> Mapping[str, str]:
    unified = r.str_map("unified")
    for key in unified:
        if "/" in key or key in (".", ".."):
            raise ConfigError(
                _map_key(r.at("unified"), key), "must be a cgroup file name (no slashes)"
            )
    return unified


# ============================================================================= linux


def _parse_namespaces(r: _Obj) -> tuple[Namespace, ...]:
    namespaces: list[Namespace] = []
    seen: set[str] = set()
    for ns in r.objs("namespaces"):
        kind = ns.req_str("type")
        if kind not in NAMESPACE_TYPES:
            raise ConfigError(ns.at("type"), f"unknown namespace type {_q(kind)}")
        if kind in seen:
            raise ConfigError(ns.at("type"), f"duplicate namespace type {_q(kind)}")
        seen.add(kind)
        path = ns.opt_str("path")
        if path is not None:
            _check_path(path, ns.at("path"))
        namespaces.append(Namespace(type=kind, path=path))
    return tuple(namespaces)


def _parse_paths(r: _Obj, key: str) -> tuple[str, ...]:
    paths = r.strs(key)
    for i, path in enumerate(paths):
        _check_path(path, _key(r.at(key), i))
    return paths


def _check_sysctl(sysctl: Mapping[str, str], namespaces: tuple[Namespace, ...], where: str) -> None:
    """Allow only sysctls that live in a namespace the container has (runc's rule)."""
    kinds = {ns.type for ns in namespaces}
    for key, value in sysctl.items():
        name = key.replace("/", ".")
        at = _map_key(where, key)
        _check_text(key, at)
        _check_text(value, at)
        if name in _IPC_SYSCTLS or name.startswith("fs.mqueue."):
            if "ipc" not in kinds:
                raise ConfigError(at, "not allowed without an ipc namespace in linux.namespaces")
        elif name.startswith("net."):
            if "network" not in kinds:
                raise ConfigError(at, "not allowed without a network namespace in linux.namespaces")
        elif name == "kernel.domainname":
            if "uts" not in kinds:
                raise ConfigError(at, "not allowed without a uts namespace in linux.namespaces")
        elif name == "kernel.hostname":
            raise ConfigError(at, 'not allowed: use the "hostname" field instead')
        else:
            raise ConfigError(at, "not allowed: this sysctl is not in a separate kernel namespace")


def _parse_linux(r: _Obj) -> Linux:
    namespaces = _parse_namespaces(r)
    userns = next((ns for ns in namespaces if ns.type == "user"), None)
    uid_mappings = _id_mappings(r, "uidMappings")
    gid_mappings = _id_mappings(r, "gidMappings")
    if userns is None:
        for key, mappings in (("uidMappings", uid_mappings), ("gidMappings", gid_mappings)):
            if mappings:
                raise ConfigError(
                    r.at(key), "id mappings need a user namespace in linux.namespaces"
                )
    elif userns.path is None and not (uid_mappings and gid_mappings):
        index = namespaces.index(userns)
        raise ConfigError(
            _key(r.at("namespaces"), index),
            "a new user namespace needs linux.uidMappings and linux.gidMappings",
        )
    resources = r.get("resources")
    rootfs_propagation = r.opt_str("rootfsPropagation")
    if rootfs_propagation is not None and rootfs_propagation not in _ROOTFS_PROPAGATIONS:
        raise ConfigError(
            r.at("rootfsPropagation"), f"unknown propagation {_q(rootfs_propagation)}"
        )
    sysctl = r.str_map("sysctl")
    _check_sysctl(sysctl, namespaces, r.at("sysctl"))
    seccomp = r.obj("seccomp")
    personality = r.obj("personality")
    domain: str | None = None
    if personality is not None:
        domain = personality.req_str("domain")
        if domain not in _PERSONALITY_DOMAINS:
            raise ConfigError(
                personality.at("domain"),
                f'unknown personality domain {_q(domain)}: want "LINUX" or "LINUX32"',
            )
        personality.strs("flags")  # none are defined yet; only check the type
    return Linux(
        namespaces=namespaces,
        uid_mappings=uid_mappings,
        gid_mappings=gid_mappings,
        devices=tuple(_extra().parse_device(d) for d in r.objs("devices")),
        cgroups_path=r.opt_str("cgroupsPath"),
        resources=None if resources is None else parse_resources(resources, r.at("resources")),
        rootfs_propagation=rootfs_propagation,
        masked_paths=_parse_paths(r, "maskedPaths"),
        readonly_paths=_parse_paths(r, "readonlyPaths"),
        mount_label=r.opt_str("mountLabel"),
        sysctl=sysctl,
        seccomp=_extra().parse_seccomp(seccomp) if seccomp else None,
        personality=domain,
    )


# ============================================================================= the whole spec


def _parse_version(r: _Obj) -> str:
    version = r.req_str("ociVersion")
    major = _semver_major(version)
    if major is None:
        raise ConfigError("ociVersion", f'{_q(version)} is not a SemVer version such as "1.0.2"')
    if major != "1":
        raise ConfigError("ociVersion", f"unsupported version {_q(version)}: want 1.x")
    return version


def parse_spec(obj: object) -> Spec:
    """Parse and validate the decoded JSON of a config.json (runtime-spec 1.0.x and 1.1.x).

    Unknown keys are ignored (the spec allows extensions); a known key of the wrong type is an
    error. ``root`` may be absent here; ``load_spec`` requires it.
    """
    r = _Obj(obj, "", "the config must be")
    version = _parse_version(r)
    root = r.obj("root")
    process = r.get("process")
    hostname = r.opt_str("hostname")
    domainname = r.opt_str("domainname")
    hooks = r.obj("hooks")
    linux_obj = r.obj("linux")
    linux = _parse_linux(linux_obj) if linux_obj else None
    no_uts = linux is not None and linux.namespace("uts") is None
    for key, value in (("hostname", hostname), ("domainname", domainname)):
        if value is None:
            continue
        _check_text(value, key)
        if len(value.encode()) > _HOST_NAME_MAX:
            raise ConfigError(
                key, f"must be at most {_HOST_NAME_MAX} bytes long (the kernel's limit)"
            )
        if no_uts:
            raise ConfigError(key, f"unable to set {key} without a private UTS namespace")
    return Spec(
        oci_version=version,
        root=_parse_root(root) if root else None,
        process=None if process is None else parse_process(process, "process"),
        hostname=hostname,
        domainname=domainname,
        mounts=tuple(_parse_mount(m) for m in r.objs("mounts")),
        hooks=_extra().parse_hooks(hooks) if hooks else None,
        annotations=r.str_map("annotations"),
        linux=linux,
    )


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not valid JSON")


def _is_bind(mount: Mount) -> bool:
    return mount.type == "bind" or "bind" in mount.options or "rbind" in mount.options


# The most of config.json, or of exec's --process and update's --resources file, that is
# read: a JSON document, not a device or a stream without end (config.json -> /dev/zero was
# read until memory ran out; runc's streaming decoder stops at the first byte).
MAX_JSON_BYTES = 64 << 20


def read_json_bytes(f: BinaryIO, what: str) -> bytes:
    """At most MAX_JSON_BYTES of ``f``; ConfigError(``what``) when there is more."""
    raw = f.read(MAX_JSON_BYTES + 1)
    if len(raw) > MAX_JSON_BYTES:
        raise ConfigError(what, f"larger than {MAX_JSON_BYTES >> 20} MiB: not a JSON document")
    return raw


def load_spec(bundle: str | os.PathLike[str]) -> Spec:
    """Read and validate ``<bundle>/config.json``.

    ``root`` is required here, and ``root.path`` comes back absolute (a relative one is taken
    from the bundle), as does the source of a bind mount given relative to the bundle.
    """
    bundle_dir = os.path.abspath(os.fspath(bundle))
    path = os.path.join(bundle_dir, "config.json")
    try:
        with open(path, "rb") as f:
            raw = read_json_bytes(f, "config.json")
    except OSError as exc:
        raise ConfigError("config.json", f"open {path}: {exc.strerror or exc}") from None
    try:
        obj = _jsonfast.loads(raw, parse_constant=_reject_constant)
    except RecursionError:
        raise ConfigError("config.json", "invalid JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise ConfigError("config.json", f"invalid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ConfigError("config.json", "must hold a JSON object")
    spec = parse_spec(obj)
    if spec.root is None:
        raise ConfigError("root", "is required")
    root_path = os.path.normpath(os.path.join(bundle_dir, spec.root.path))
    mounts = tuple(
        replace(m, source=os.path.normpath(os.path.join(bundle_dir, m.source)))
        if m.source and not m.source.startswith("/") and _is_bind(m)
        else m
        for m in spec.mounts
    )
    return replace(spec, root=replace(spec.root, path=root_path), mounts=mounts)


# ============================================================================= runc spec


_DEFAULT_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]


def default_spec(rootless: bool = False) -> dict[str, Any]:
    """The config.json that ``spec`` writes: a container running ``sh`` in ./rootfs.

    Modelled on the example runc writes; a fresh dict on every call. ``rootless`` gives the
    variant for an unprivileged user: a user namespace mapping root inside to the caller,
    the host's network, a read-only rbind of /sys, and no cgroup mount or resources.
    """
    spec = _default_spec()
    if rootless:
        _make_rootless(spec)
    return spec


def _make_rootless(spec: dict[str, Any]) -> None:
    linux = spec["linux"]
    kinds = [ns["type"] for ns in linux["namespaces"] if ns["type"] not in ("network", "cgroup")]
    linux["namespaces"] = [{"type": kind} for kind in [*kinds, "user"]]
    linux["uidMappings"] = [{"containerID": 0, "hostID": os.getuid(), "size": 1}]
    linux["gidMappings"] = [{"containerID": 0, "hostID": os.getgid(), "size": 1}]
    linux.pop("resources", None)
    mounts = []
    for m in spec["mounts"]:
        if m["destination"] == "/sys/fs/cgroup":
            continue
        if m["destination"] == "/sys":
            m = {
                "destination": "/sys",
                "type": "none",
                "source": "/sys",
                "options": ["rbind", "nosuid", "noexec", "nodev", "ro"],
            }
        opts = m.get("options")
        if opts is not None:
            m["options"] = [o for o in opts if not o.startswith("gid=")]
        mounts.append(m)
    spec["mounts"] = mounts


def _default_spec() -> dict[str, Any]:
    nosuid_noexec_nodev = ["nosuid", "noexec", "nodev"]
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": True,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm",
            ],
            "cwd": "/",
            "capabilities": {
                "bounding": list(_DEFAULT_CAPS),
                "effective": list(_DEFAULT_CAPS),
                "permitted": list(_DEFAULT_CAPS),
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "corral",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {
                "destination": "/dev",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
            },
            {
                "destination": "/dev/pts",
                "type": "devpts",
                "source": "devpts",
                "options": [
                    "nosuid",
                    "noexec",
                    "newinstance",
                    "ptmxmode=0666",
                    "mode=0620",
                    "gid=5",
                ],
            },
            {
                "destination": "/dev/shm",
                "type": "tmpfs",
                "source": "shm",
                "options": [*nosuid_noexec_nodev, "mode=1777", "size=65536k"],
            },
            {
                "destination": "/dev/mqueue",
                "type": "mqueue",
                "source": "mqueue",
                "options": list(nosuid_noexec_nodev),
            },
            {
                "destination": "/sys",
                "type": "sysfs",
                "source": "sysfs",
                "options": [*nosuid_noexec_nodev, "ro"],
            },
            {
                "destination": "/sys/fs/cgroup",
                "type": "cgroup",
                "source": "cgroup",
                "options": [*nosuid_noexec_nodev, "relatime", "ro"],
            },
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [
                {"type": kind} for kind in ("pid", "network", "ipc", "uts", "mount", "cgroup")
            ],
            "maskedPaths": [
                "/proc/acpi",
                "/proc/asound",
                "/proc/kcore",
                "/proc/keys",
                "/proc/latency_stats",
                "/proc/timer_list",
                "/proc/timer_stats",
                "/proc/sched_debug",
                "/sys/firmware",
                "/proc/scsi",
                "/sys/devices/virtual/tpm",
            ],
            "readonlyPaths": [
                "/proc/bus",
                "/proc/fs",
                "/proc/irq",
                "/proc/sys",
                "/proc/sysrq-trigger",
            ],
        },
    }
