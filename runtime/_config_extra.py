"""The parts of the config model most containers never use, and their parsers.

Resource limits (other than device rules), seccomp, hooks, device nodes, id mappings and the
console size. ``runtime.config`` re-exports every class here (``config.Seccomp`` works as
before) but imports this module only when a config.json has one of these sections: defining a
frozen dataclass costs about a millisecond, which every ``corral-oci create`` would pay.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._jsonread import (
    _BLKIO_WEIGHT,
    _CPU_IDLE,
    _I64,
    _POSITIVE,
    _SECCOMP_ARG_INDEX,
    _SWAPPINESS,
    _U16,
    _U32,
    _U64,
    _check_env,
    _check_path,
    _check_text,
    _key,
    _Obj,
    _q,
)
from .errors import ConfigError

# ----------------------------------------------------------------------------- model


@dataclass(frozen=True, slots=True)
class ConsoleSize:
    """process.consoleSize."""

    height: int
    width: int


@dataclass(frozen=True, slots=True)
class IDMapping:
    """One entry of linux.uidMappings/gidMappings or of a mount's id mappings."""

    container_id: int
    host_id: int
    size: int


@dataclass(frozen=True, slots=True)
class Hook:
    """One hook: a host program run at a point of the lifecycle."""

    path: str
    args: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    timeout: int | None = None


@dataclass(frozen=True, slots=True)
class Hooks:
    """hooks, one tuple per lifecycle point."""

    prestart: tuple[Hook, ...] = ()
    create_runtime: tuple[Hook, ...] = ()
    create_container: tuple[Hook, ...] = ()
    start_container: tuple[Hook, ...] = ()
    poststart: tuple[Hook, ...] = ()
    poststop: tuple[Hook, ...] = ()


@dataclass(frozen=True, slots=True)
class Memory:
    """linux.resources.memory; None means not set."""

    limit: int | None = None
    reservation: int | None = None
    swap: int | None = None  # memory+swap, as in the spec (v1 memsw semantics)
    kernel: int | None = None
    kernel_tcp: int | None = None
    swappiness: int | None = None
    disable_oom_killer: bool | None = None
    use_hierarchy: bool | None = None
    check_before_update: bool | None = None


@dataclass(frozen=True, slots=True)
class CPU:
    """linux.resources.cpu; None means not set."""

    shares: int | None = None
    quota: int | None = None
    burst: int | None = None
    period: int | None = None
    realtime_runtime: int | None = None
    realtime_period: int | None = None
    cpus: str | None = None
    mems: str | None = None
    idle: int | None = None


@dataclass(frozen=True, slots=True)
class Pids:
    """linux.resources.pids."""

    limit: int


@dataclass(frozen=True, slots=True)
class WeightDevice:
    """One entry of linux.resources.blockIO.weightDevice."""

    major: int
    minor: int
    weight: int | None = None
    leaf_weight: int | None = None


@dataclass(frozen=True, slots=True)
class ThrottleDevice:
    """One entry of a linux.resources.blockIO.throttle*Device list."""

    major: int
    minor: int
    rate: int


@dataclass(frozen=True, slots=True)
class BlockIO:
    """linux.resources.blockIO."""

    weight: int | None = None
    leaf_weight: int | None = None
    weight_device: tuple[WeightDevice, ...] = ()
    throttle_read_bps_device: tuple[ThrottleDevice, ...] = ()
    throttle_write_bps_device: tuple[ThrottleDevice, ...] = ()
    throttle_read_iops_device: tuple[ThrottleDevice, ...] = ()
    throttle_write_iops_device: tuple[ThrottleDevice, ...] = ()


@dataclass(frozen=True, slots=True)
class HugepageLimit:
    """One entry of linux.resources.hugepageLimits."""

    page_size: str  # "2MB", "1GB"
    limit: int


@dataclass(frozen=True, slots=True)
class InterfacePriority:
    """One entry of linux.resources.network.priorities (a line of net_prio.ifpriomap)."""

    name: str
    priority: int


@dataclass(frozen=True, slots=True)
class Network:
    """linux.resources.network: the net_cls class id and the net_prio priorities (cgroup v1)."""

    class_id: int | None = None
    priorities: tuple[InterfacePriority, ...] = ()


@dataclass(frozen=True, slots=True)
class Device:
    """A device node to create in the container (linux.devices)."""

    path: str
    type: str  # c, b, u, p
    major: int = 0
    minor: int = 0
    file_mode: int | None = None
    uid: int | None = None
    gid: int | None = None


@dataclass(frozen=True, slots=True)
class SeccompArg:
    """One entry of a seccomp syscall rule's args."""

    index: int
    value: int
    op: str
    value_two: int = 0


@dataclass(frozen=True, slots=True)
class SeccompSyscall:
    """One entry of linux.seccomp.syscalls."""

    names: tuple[str, ...]
    action: str
    errno_ret: int | None = None
    args: tuple[SeccompArg, ...] = ()


@dataclass(frozen=True, slots=True)
class Seccomp:
    """linux.seccomp."""

    default_action: str
    default_errno_ret: int | None = None
    architectures: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()
    listener_path: str | None = None
    listener_metadata: str | None = None
    syscalls: tuple[SeccompSyscall, ...] = ()


# ----------------------------------------------------------------------------- tables

_DEVICE_TYPES = frozenset("cbup")
_SECCOMP_ACTIONS = frozenset(
    {
        "SCMP_ACT_KILL",
        "SCMP_ACT_KILL_PROCESS",
        "SCMP_ACT_KILL_THREAD",
        "SCMP_ACT_TRAP",
        "SCMP_ACT_ERRNO",
        "SCMP_ACT_TRACE",
        "SCMP_ACT_ALLOW",
        "SCMP_ACT_LOG",
        "SCMP_ACT_NOTIFY",
    }
)
_SECCOMP_OPS = frozenset(
    {
        "SCMP_CMP_NE",
        "SCMP_CMP_LT",
        "SCMP_CMP_LE",
        "SCMP_CMP_EQ",
        "SCMP_CMP_GE",
        "SCMP_CMP_GT",
        "SCMP_CMP_MASKED_EQ",
    }
)
_SECCOMP_ARCHES = frozenset(
    "SCMP_ARCH_" + a
    for a in (
        "X86 X86_64 X32 ARM AARCH64 MIPS MIPS64 MIPS64N32 MIPSEL MIPSEL64 MIPSEL64N32 PPC PPC64"
        " PPC64LE S390 S390X PARISC PARISC64 RISCV64 LOONGARCH64 M68K SH SHEB"
    ).split()
)
_SECCOMP_FLAGS = frozenset(
    {
        "SECCOMP_FILTER_FLAG_TSYNC",
        "SECCOMP_FILTER_FLAG_LOG",
        "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
        "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
    }
)


# ----------------------------------------------------------------------------- parsers


# The most lines a uid_map or gid_map takes (UID_GID_MAP_MAX_EXTENTS, Linux 4.15 and later).
_MAX_ID_EXTENTS = 340


def parse_id_mappings(parent: _Obj, key: str) -> tuple[IDMapping, ...]:
    mappings: list[IDMapping] = []
    for r in parent.objs(key):
        container_id = r.req_int("containerID", _U32)
        host_id = r.req_int("hostID", _U32)
        size = r.req_int("size", _U32)
        if size == 0:
            raise ConfigError(r.at("size"), "must be at least 1")
        if container_id + size > 2**32 or host_id + size > 2**32:
            raise ConfigError(r.at("size"), "the mapped range goes past ID 4294967295")
        mappings.append(IDMapping(container_id=container_id, host_id=host_id, size=size))
    # The kernel's rules for uid_map/gid_map (user_namespaces(7)), checked here to name the
    # entry: an overlap, or more lines than it takes, was "write /proc/N/uid_map: Invalid
    # argument" from the spawn.
    if len(mappings) > _MAX_ID_EXTENTS:
        raise ConfigError(parent.at(key), f"more than {_MAX_ID_EXTENTS} mappings")
    for side in ("container_id", "host_id"):
        ranges = sorted(
            (getattr(m, side), getattr(m, side) + m.size, i) for i, m in enumerate(mappings)
        )
        for (_, end, i), (start, _, j) in zip(ranges, ranges[1:], strict=False):
            if start < end:
                which = "container" if side == "container_id" else "host"
                raise ConfigError(
                    _key(parent.at(key), max(i, j)),
                    f"its {which} IDs overlap those of {_key(parent.at(key), min(i, j))}",
                )
    return tuple(mappings)


def _parse_hook(r: _Obj) -> Hook:
    path = r.req_str("path")
    _check_path(path, r.at("path"))
    args = r.strs("args")
    for i, arg in enumerate(args):
        _check_text(arg, _key(r.at("args"), i))
    env = r.strs("env")
    for i, entry in enumerate(env):
        _check_env(entry, _key(r.at("env"), i))
    return Hook(path=path, args=args, env=env, timeout=r.opt_int("timeout", _POSITIVE))


def parse_hooks(r: _Obj) -> Hooks:
    def hooks(key: str) -> tuple[Hook, ...]:
        return tuple(_parse_hook(h) for h in r.objs(key))

    return Hooks(
        prestart=hooks("prestart"),
        create_runtime=hooks("createRuntime"),
        create_container=hooks("createContainer"),
        start_container=hooks("startContainer"),
        poststart=hooks("poststart"),
        poststop=hooks("poststop"),
    )


def _memory_bytes(r: _Obj, key: str) -> int | None:
    value = r.opt_int(key, _I64)
    if value is not None and value < -1:
        raise ConfigError(r.at(key), "must be -1 (unlimited) or a number of bytes")
    return value


def parse_memory(r: _Obj) -> Memory:
    limit = _memory_bytes(r, "limit")
    swap = _memory_bytes(r, "swap")
    if limit is not None and swap is not None and limit > 0 and 0 < swap < limit:
        raise ConfigError(
            r.at("swap"),
            f"memory+swap limit {swap} must not be lower than the memory limit {limit}",
        )
    return Memory(
        limit=limit,
        reservation=_memory_bytes(r, "reservation"),
        swap=swap,
        kernel=_memory_bytes(r, "kernel"),
        kernel_tcp=_memory_bytes(r, "kernelTCP"),
        swappiness=r.opt_int("swappiness", _SWAPPINESS),
        disable_oom_killer=r.opt_flag("disableOOMKiller"),
        use_hierarchy=r.opt_flag("useHierarchy"),
        check_before_update=r.opt_flag("checkBeforeUpdate"),
    )


def parse_cpu(r: _Obj) -> CPU:
    quota = r.opt_int("quota", _I64)
    if quota is not None and quota < -1:
        raise ConfigError(r.at("quota"), "must be -1 (unlimited) or a number of microseconds")
    return CPU(
        shares=r.opt_int("shares", _U64),
        quota=quota,
        burst=r.opt_int("burst", _U64),
        period=r.opt_int("period", _U64),
        realtime_runtime=r.opt_int("realtimeRuntime", _I64),
        realtime_period=r.opt_int("realtimePeriod", _U64),
        cpus=r.opt_str("cpus"),
        mems=r.opt_str("mems"),
        idle=r.opt_int("idle", _CPU_IDLE),
    )


def parse_block_io(r: _Obj) -> BlockIO:
    def throttle(key: str) -> tuple[ThrottleDevice, ...]:
        return tuple(
            ThrottleDevice(
                major=d.req_int("major", _I64),
                minor=d.req_int("minor", _I64),
                rate=d.req_int("rate", _U64),
            )
            for d in r.objs(key)
        )

    return BlockIO(
        weight=r.opt_int("weight", _BLKIO_WEIGHT),
        leaf_weight=r.opt_int("leafWeight", _BLKIO_WEIGHT),
        weight_device=tuple(
            WeightDevice(
                major=d.req_int("major", _I64),
                minor=d.req_int("minor", _I64),
                weight=d.opt_int("weight", _BLKIO_WEIGHT),
                leaf_weight=d.opt_int("leafWeight", _BLKIO_WEIGHT),
            )
            for d in r.objs("weightDevice")
        ),
        throttle_read_bps_device=throttle("throttleReadBpsDevice"),
        throttle_write_bps_device=throttle("throttleWriteBpsDevice"),
        throttle_read_iops_device=throttle("throttleReadIOPSDevice"),
        throttle_write_iops_device=throttle("throttleWriteIOPSDevice"),
    )


def parse_hugepage_limit(r: _Obj) -> HugepageLimit:
    import re  # here, for the rare hugetlb limit: not a cost of every config with resources

    page_size = r.req_str("pageSize")
    if not re.fullmatch(r"[1-9][0-9]*[KMGTP]?B", page_size):
        raise ConfigError(
            r.at("pageSize"), f'invalid page size {_q(page_size)}: want e.g. "2MB" or "1GB"'
        )
    return HugepageLimit(page_size=page_size, limit=r.req_int("limit", _U64))


def parse_network(r: _Obj) -> Network:
    priorities: list[InterfacePriority] = []
    for p in r.objs("priorities"):
        name = p.req_str("name")
        if not name or "/" in name or any(c.isspace() for c in name) or len(name) > 15:
            raise ConfigError(p.at("name"), f"invalid network interface name {_q(name)}")
        priorities.append(InterfacePriority(name=name, priority=p.req_int("priority", _U32)))
    return Network(class_id=r.opt_int("classID", _U32), priorities=tuple(priorities))


def parse_device(r: _Obj) -> Device:
    path = r.req_str("path")
    _check_path(path, r.at("path"))
    kind = r.req_str("type")
    if kind not in _DEVICE_TYPES:
        raise ConfigError(
            r.at("type"), f'unknown device type {_q(kind)}: want "c", "b", "u" or "p"'
        )
    if kind != "p":  # a fifo has no device number
        for key in ("major", "minor"):
            if not r.has(key):
                raise ConfigError(r.at(key), f'is required for a device of type "{kind}"')
    major = r.opt_int("major", _I64) or 0
    minor = r.opt_int("minor", _I64) or 0
    for key, value in (("major", major), ("minor", minor)):
        if value < 0:
            raise ConfigError(r.at(key), "must not be negative")
        if value > _U32.hi:  # makedev(3) takes 32 bits of each
            raise ConfigError(r.at(key), f"must be at most {_U32.hi}")
    return Device(
        path=path,
        type=kind,
        major=major,
        minor=minor,
        file_mode=r.opt_int("fileMode", _U32),
        uid=r.opt_int("uid", _U32),
        gid=r.opt_int("gid", _U32),
    )


def parse_seccomp(r: _Obj) -> Seccomp:
    default_action = r.req_str("defaultAction")
    if default_action not in _SECCOMP_ACTIONS:
        raise ConfigError(r.at("defaultAction"), f"unknown seccomp action {_q(default_action)}")
    if default_action == "SCMP_ACT_NOTIFY":
        raise ConfigError(r.at("defaultAction"), "SCMP_ACT_NOTIFY cannot be the default action")
    architectures = r.strs("architectures")
    for i, arch in enumerate(architectures):
        if arch not in _SECCOMP_ARCHES:
            raise ConfigError(
                _key(r.at("architectures"), i), f"unknown seccomp architecture {_q(arch)}"
            )
    flags = r.strs("flags")
    for i, flag in enumerate(flags):
        if flag not in _SECCOMP_FLAGS:
            raise ConfigError(_key(r.at("flags"), i), f"unknown seccomp flag {_q(flag)}")
    listener_path = r.opt_str("listenerPath")
    syscalls = tuple(_parse_syscall(s) for s in r.objs("syscalls"))
    for i, call in enumerate(syscalls):
        if call.action == "SCMP_ACT_NOTIFY" and listener_path is None:
            raise ConfigError(
                _key(_key(r.at("syscalls"), i), "action"),
                "SCMP_ACT_NOTIFY needs linux.seccomp.listenerPath",
            )
    return Seccomp(
        default_action=default_action,
        default_errno_ret=r.opt_int("defaultErrnoRet", _U32),
        architectures=architectures,
        flags=flags,
        listener_path=listener_path,
        listener_metadata=r.opt_str("listenerMetadata"),
        syscalls=syscalls,
    )


def _parse_syscall(r: _Obj) -> SeccompSyscall:
    names = r.strs("names")
    if not names:
        raise ConfigError(r.at("names"), "must list at least one syscall name")
    for i, name in enumerate(names):
        if not name:
            raise ConfigError(_key(r.at("names"), i), "must not be empty")
    action = r.req_str("action")
    if action not in _SECCOMP_ACTIONS:
        raise ConfigError(r.at("action"), f"unknown seccomp action {_q(action)}")
    args: list[SeccompArg] = []
    for a in r.objs("args"):
        op = a.req_str("op")
        if op not in _SECCOMP_OPS:
            raise ConfigError(a.at("op"), f"unknown seccomp operator {_q(op)}")
        args.append(
            SeccompArg(
                index=a.req_int("index", _SECCOMP_ARG_INDEX),
                value=a.req_int("value", _U64),
                op=op,
                value_two=a.opt_int("valueTwo", _U64) or 0,
            )
        )
    return SeccompSyscall(
        names=names, action=action, errno_ret=r.opt_int("errnoRet", _U32), args=tuple(args)
    )


def parse_console_size(r: _Obj) -> ConsoleSize:
    return ConsoleSize(height=r.req_int("height", _U16), width=r.req_int("width", _U16))


def parse_pids(r: _Obj) -> Pids:
    return Pids(limit=r.req_int("limit", _I64))
