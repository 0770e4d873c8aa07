"""linux.seccomp compiled into a BPF program with libseccomp, in the parent.

The program's bytes go into the spawn plan; the container process only calls seccomp(2)
with them. Imported only for specs that have a seccomp section (``runtime._seccomp`` loads
libseccomp, which a plain ``create`` must not pay for).

Semantics follow runc: the native architecture is always in the filter; syscall names this
libseccomp does not know are skipped; a rule whose action equals the default is skipped;
ERRNO and TRACE return EPERM unless errnoRet says otherwise; the args of one rule are ANDed,
unless two of them compare the same argument, in which case each becomes a rule of its own.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from typing import Any

from ._config_extra import _SECCOMP_ARCHES, Seccomp, SeccompArg, SeccompSyscall
from ._seccomp import ffi, lib
from .errors import ConfigError

# The kernel's limit on a classic BPF program (BPF_MAXINSNS) and the size of one instruction.
MAX_INSNS = 4096
INSN_SIZE = 8
MAX_ERRNO = 4095

_ACTIONS: dict[str, int] = {
    "SCMP_ACT_KILL": lib.SCMP_ACT_KILL_THREAD,
    "SCMP_ACT_KILL_THREAD": lib.SCMP_ACT_KILL_THREAD,
    "SCMP_ACT_KILL_PROCESS": lib.SCMP_ACT_KILL_PROCESS,
    "SCMP_ACT_TRAP": lib.SCMP_ACT_TRAP,
    "SCMP_ACT_LOG": lib.SCMP_ACT_LOG,
    "SCMP_ACT_ALLOW": lib.SCMP_ACT_ALLOW,
}
_WITH_ERRNO = {"SCMP_ACT_ERRNO": lib.corral_act_errno, "SCMP_ACT_TRACE": lib.corral_act_trace}

_OPS: dict[str, int] = {
    "SCMP_CMP_NE": lib.SCMP_CMP_NE,
    "SCMP_CMP_LT": lib.SCMP_CMP_LT,
    "SCMP_CMP_LE": lib.SCMP_CMP_LE,
    "SCMP_CMP_EQ": lib.SCMP_CMP_EQ,
    "SCMP_CMP_GE": lib.SCMP_CMP_GE,
    "SCMP_CMP_GT": lib.SCMP_CMP_GT,
    "SCMP_CMP_MASKED_EQ": lib.SCMP_CMP_MASKED_EQ,
}

# SECCOMP_FILTER_FLAG_* for seccomp(2). WAIT_KILLABLE_RECV only changes how a notify listener
# waits (the kernel rejects it without one), and listeners are not supported: it is dropped.
_FLAGS: dict[str, int] = {
    "SECCOMP_FILTER_FLAG_TSYNC": lib.SECCOMP_FILTER_FLAG_TSYNC,
    "SECCOMP_FILTER_FLAG_LOG": lib.SECCOMP_FILTER_FLAG_LOG,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": lib.SECCOMP_FILTER_FLAG_SPEC_ALLOW,
}
_IGNORED_FLAGS = frozenset({"SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"})


@dataclass(frozen=True, slots=True)
class Program:
    """A compiled filter: ``bpf`` is a struct sock_filter array, ``flags`` for seccomp(2)."""

    bpf: bytes
    flags: int = 0

    @property
    def insns(self) -> int:
        return len(self.bpf) // INSN_SIZE


def libseccomp_version() -> str:
    v = lib.seccomp_version()
    return f"{v.major}.{v.minor}.{v.micro}"


def _action(name: str, errno_ret: int | None, field: str, errno_field: str) -> int:
    if name in _WITH_ERRNO:
        value = errno.EPERM if errno_ret is None else errno_ret
        if value > MAX_ERRNO:
            raise ConfigError(errno_field, f"must be an errno between 0 and {MAX_ERRNO}")
        return int(_WITH_ERRNO[name](value))
    if name == "SCMP_ACT_NOTIFY":
        raise ConfigError(field, "SCMP_ACT_NOTIFY (a seccomp listener) is not supported")
    if errno_ret is not None:
        raise ConfigError(
            errno_field, f"only SCMP_ACT_ERRNO and SCMP_ACT_TRACE take one, not {name}"
        )
    return _ACTIONS[name]


def _arch_token(name: str) -> int:
    """libseccomp's token for SCMP_ARCH_X86_64 etc.: its own name is the lower-case suffix."""
    return int(lib.seccomp_arch_resolve_name(name.removeprefix("SCMP_ARCH_").lower().encode()))


def _conditions(rule: SeccompSyscall) -> list[list[SeccompArg]]:
    """The condition sets to add a rule for: all args ANDed in one rule, unless two of them
    compare the same argument (libseccomp cannot AND those), then one rule per arg (ORed)."""
    if not rule.args:
        return [[]]
    indexes = [a.index for a in rule.args]
    if len(set(indexes)) != len(indexes):
        return [[a] for a in rule.args]
    return [list(rule.args)]


def _check(ret: int, field: str, what: str) -> None:
    if ret < 0:
        raise ConfigError(field, f"{what}: {os.strerror(-ret)}")


def _add_rules(ctx: Any, rule: SeccompSyscall, action: int, where: str) -> None:
    for name in rule.names:
        nr = lib.seccomp_syscall_resolve_name(name.encode())
        if nr == lib.__NR_SCMP_ERROR:
            continue  # not a syscall of this architecture (or too new for libseccomp)
        for args in _conditions(rule):
            cmp = ffi.new("struct scmp_arg_cmp[]", max(len(args), 1))
            for j, a in enumerate(args):
                cmp[j].arg = a.index
                cmp[j].op = _OPS[a.op]
                cmp[j].datum_a = a.value
                cmp[j].datum_b = a.value_two
            ret = lib.seccomp_rule_add_array(ctx, action, nr, len(args), cmp)
            _check(ret, where, f"add a rule for {name}")


def _flags(sc: Seccomp, where: str) -> int:
    flags = 0
    for i, name in enumerate(sc.flags):
        if name in _IGNORED_FLAGS:
            continue
        field = f"{where}.flags[{i}]"
        if name not in _FLAGS:
            raise ConfigError(field, f"unknown seccomp flag {name!r}")
        supported = lib.corral_filter_flags_supported(_FLAGS[name])
        if supported < 0:
            raise ConfigError(field, f"probe seccomp(2): {os.strerror(-supported)}")
        if not supported:
            raise ConfigError(field, f"{name} is not supported by this kernel")
        flags |= _FLAGS[name]
    return flags


def _export(ctx: Any) -> bytes:
    fd = os.memfd_create("corral-seccomp", os.MFD_CLOEXEC)
    try:
        ret = lib.seccomp_export_bpf(ctx, fd)
        if ret < 0:
            raise ConfigError("linux.seccomp", f"export the filter: {os.strerror(-ret)}")
        size = os.fstat(fd).st_size
        return os.pread(fd, size, 0)
    finally:
        os.close(fd)


def compile_filter(sc: Seccomp, where: str = "linux.seccomp") -> Program:
    """Compile ``sc`` for this architecture (plus the ones it lists). Errors name the field."""
    default = _action(
        sc.default_action,
        sc.default_errno_ret,
        f"{where}.defaultAction",
        f"{where}.defaultErrnoRet",
    )
    actions = [
        _action(
            rule.action,
            rule.errno_ret,
            f"{where}.syscalls[{i}].action",
            f"{where}.syscalls[{i}].errnoRet",
        )
        for i, rule in enumerate(sc.syscalls)
    ]
    flags = _flags(sc, where)
    ctx = lib.seccomp_init(default)
    if ctx == ffi.NULL:
        raise ConfigError(
            f"{where}.defaultAction",
            f"{sc.default_action} is not supported by libseccomp {libseccomp_version()}"
            " on this kernel",
        )
    try:
        for i, arch in enumerate(sc.architectures):
            field = f"{where}.architectures[{i}]"
            token = _arch_token(arch)
            if token == 0:
                raise ConfigError(
                    field, f"{arch} is not known to libseccomp {libseccomp_version()}"
                )
            if lib.seccomp_arch_exist(ctx, token) == 0:
                continue  # the native one, or listed twice
            _check(lib.seccomp_arch_add(ctx, token), field, f"add {arch}")
        for i, (rule, action) in enumerate(zip(sc.syscalls, actions, strict=True)):
            if action == default:
                continue  # libseccomp refuses these; the default does the same anyway
            _add_rules(ctx, rule, action, f"{where}.syscalls[{i}]")
        bpf = _export(ctx)
    finally:
        lib.seccomp_release(ctx)
    if len(bpf) // INSN_SIZE > MAX_INSNS:
        raise ConfigError(
            where,
            f"the filter compiles to {len(bpf) // INSN_SIZE} BPF instructions,"
            f" more than the kernel's limit of {MAX_INSNS}",
        )
    return Program(bpf=bpf, flags=flags)


def native_arch() -> str:
    """The SCMP_ARCH_ name of the architecture libseccomp builds filters for here (the one
    every filter includes): SCMP_ARCH_X86_64 on x86_64, SCMP_ARCH_AARCH64 on arm64."""
    token = int(lib.seccomp_arch_native())
    for name in _SECCOMP_ARCHES:
        if _arch_token(name) == token:
            return name
    raise ConfigError("linux.seccomp", f"libseccomp's native architecture {token:#x} is unknown")


def features() -> dict[str, Any]:
    """The `seccomp` part of the runtime-spec features document."""
    arches = sorted(a for a in _SECCOMP_ARCHES if _arch_token(a) != 0)
    supported = [
        name for name, bit in _FLAGS.items() if lib.corral_filter_flags_supported(bit) == 1
    ]
    return {
        "enabled": True,
        "actions": sorted([*_ACTIONS, *_WITH_ERRNO]),
        "operators": sorted(_OPS),
        "archs": arches,
        "knownFlags": sorted(_FLAGS),
        "supportedFlags": sorted(supported),
    }
