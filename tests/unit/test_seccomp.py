"""The seccomp compiler, without root: spec sections in, BPF programs out.

The programs are run on a small classic-BPF interpreter over made-up ``struct seccomp_data``,
so the tests check what the filter decides, not how libseccomp lays it out.
"""

from __future__ import annotations

import copy
import errno
import json
import platform
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from runtime import config as cfg
from runtime.errors import ConfigError

sc = pytest.importorskip("runtime.seccomp", reason="built without libseccomp")
from runtime._seccomp import lib  # noqa: E402

REPO = Path(__file__).resolve().parents[2]

ALLOW = lib.SCMP_ACT_ALLOW
KILL_THREAD = lib.SCMP_ACT_KILL_THREAD
KILL_PROCESS = lib.SCMP_ACT_KILL_PROCESS
NATIVE = lib.seccomp_arch_native()


def ret_errno(e: int) -> int:
    return lib.corral_act_errno(e)


def nr(name: str) -> int:
    n = lib.seccomp_syscall_resolve_name(name.encode())
    assert n >= 0, name
    return n


# ---------------------------------------------------------------- a classic BPF interpreter

_BPF_LD_W_ABS = 0x20
_BPF_ALU_AND_K = 0x54
_BPF_JA = 0x05
_BPF_JEQ_K = 0x15
_BPF_JGT_K = 0x25
_BPF_JGE_K = 0x35
_BPF_JSET_K = 0x45
_BPF_RET_K = 0x06


def run_bpf(prog: bytes, nr: int, args: tuple[int, ...] = (), arch: int = NATIVE) -> int:
    """The action ``prog`` returns for one syscall (struct seccomp_data in host order)."""
    full = (*args, *([0] * (6 - len(args))))
    data = struct.pack("=iIQ6Q", nr, arch, 0, *full)
    insns = [struct.unpack_from("=HBBI", prog, off) for off in range(0, len(prog), 8)]
    acc = 0
    pc = 0
    while True:
        code, jt, jf, k = insns[pc]
        pc += 1
        if code == _BPF_LD_W_ABS:
            (acc,) = struct.unpack_from("=I", data, k)
        elif code == _BPF_ALU_AND_K:
            acc &= k
        elif code == _BPF_JA:
            pc += k
        elif code in (_BPF_JEQ_K, _BPF_JGT_K, _BPF_JGE_K, _BPF_JSET_K):
            taken = {
                _BPF_JEQ_K: acc == k,
                _BPF_JGT_K: acc > k,
                _BPF_JGE_K: acc >= k,
                _BPF_JSET_K: bool(acc & k),
            }[code]
            pc += jt if taken else jf
        elif code == _BPF_RET_K:
            return k
        else:
            raise AssertionError(f"instruction {code:#x} not handled by this interpreter")


def section(obj: dict[str, Any]) -> Any:
    spec = cfg.default_spec()
    spec["linux"]["seccomp"] = copy.deepcopy(obj)
    seccomp = cfg.parse_spec(spec).linux.seccomp
    assert seccomp is not None
    return seccomp


def compile_(obj: dict[str, Any]) -> Any:
    return sc.compile_filter(section(obj))


# ---------------------------------------------------------------- programs


def test_errno_rules_default_and_errno_defaults() -> None:
    prog = compile_(
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
                {"names": ["sched_yield"], "action": "SCMP_ACT_ERRNO"},
                {"names": ["getpid"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["gettid"], "action": "SCMP_ACT_KILL"},
                {"names": ["getuid"], "action": "SCMP_ACT_KILL_PROCESS"},
            ],
        }
    )
    assert prog.bpf and len(prog.bpf) % 8 == 0 and prog.flags == 0
    assert run_bpf(prog.bpf, nr("getppid")) == ret_errno(errno.ENOSYS)
    assert run_bpf(prog.bpf, nr("sched_yield")) == ret_errno(errno.EPERM)
    assert run_bpf(prog.bpf, nr("getpid")) == ALLOW
    assert run_bpf(prog.bpf, nr("gettid")) == KILL_THREAD
    assert run_bpf(prog.bpf, nr("getuid")) == KILL_PROCESS
    assert run_bpf(prog.bpf, nr("read")) == ALLOW


def test_default_errno_with_an_allow_list() -> None:
    prog = compile_(
        {
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 38,
            "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"}],
        }
    )
    assert run_bpf(prog.bpf, nr("read")) == ALLOW
    assert run_bpf(prog.bpf, nr("write")) == ALLOW
    assert run_bpf(prog.bpf, nr("getpid")) == ret_errno(errno.ENOSYS)
    default_eperm = compile_({"defaultAction": "SCMP_ACT_ERRNO"})
    assert run_bpf(default_eperm.bpf, nr("getpid")) == ret_errno(errno.EPERM)


def test_unknown_syscall_names_are_skipped() -> None:
    with_unknown = compile_(
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {"names": ["corral_nope", "getppid"], "action": "SCMP_ACT_ERRNO"},
                {"names": ["corral_nope_either"], "action": "SCMP_ACT_KILL"},
            ],
        }
    )
    without = compile_(
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_ERRNO"}],
        }
    )
    assert with_unknown.bpf == without.bpf


def test_argument_comparisons() -> None:
    prog = compile_(
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {  # different arguments: ANDed
                    "names": ["kill"],
                    "action": "SCMP_ACT_ERRNO",
                    "errnoRet": 13,
                    "args": [
                        {"index": 0, "value": 1, "op": "SCMP_CMP_GT"},
                        {"index": 1, "value": 0, "op": "SCMP_CMP_EQ"},
                    ],
                },
                {  # the same argument twice: ORed
                    "names": ["unlinkat"],
                    "action": "SCMP_ACT_ERRNO",
                    "args": [
                        {"index": 2, "value": 0x200, "op": "SCMP_CMP_EQ"},
                        {"index": 2, "value": 0, "op": "SCMP_CMP_EQ"},
                    ],
                },
                {
                    "names": ["personality"],
                    "action": "SCMP_ACT_ERRNO",
                    "errnoRet": 22,
                    "args": [
                        {"index": 0, "value": 0xFF, "valueTwo": 0x0F, "op": "SCMP_CMP_MASKED_EQ"}
                    ],
                },
                {  # 64-bit values compare both halves
                    "names": ["lseek"],
                    "action": "SCMP_ACT_ERRNO",
                    "args": [{"index": 1, "value": 1 << 40, "op": "SCMP_CMP_GE"}],
                },
                {
                    "names": ["dup3"],
                    "action": "SCMP_ACT_ERRNO",
                    "args": [
                        {"index": 0, "value": 5, "op": "SCMP_CMP_LT"},
                        {"index": 1, "value": 5, "op": "SCMP_CMP_LE"},
                        {"index": 2, "value": 0, "op": "SCMP_CMP_NE"},
                    ],
                },
            ],
        }
    )
    kill, unlinkat = nr("kill"), nr("unlinkat")
    assert run_bpf(prog.bpf, kill, (7, 0)) == ret_errno(errno.EACCES)
    assert run_bpf(prog.bpf, kill, (7, 9)) == ALLOW
    assert run_bpf(prog.bpf, kill, (1, 0)) == ALLOW
    assert run_bpf(prog.bpf, unlinkat, (3, 0, 0)) == ret_errno(errno.EPERM)
    assert run_bpf(prog.bpf, unlinkat, (3, 0, 0x200)) == ret_errno(errno.EPERM)
    assert run_bpf(prog.bpf, unlinkat, (3, 0, 0x100)) == ALLOW
    personality = nr("personality")
    assert run_bpf(prog.bpf, personality, (0xFFFF_FF0F,)) == ret_errno(errno.EINVAL)
    assert run_bpf(prog.bpf, personality, (0x1F,)) == ALLOW
    lseek = nr("lseek")
    assert run_bpf(prog.bpf, lseek, (3, 1 << 41)) == ret_errno(errno.EPERM)
    assert run_bpf(prog.bpf, lseek, (3, (1 << 40) - 1)) == ALLOW
    dup3 = nr("dup3")
    assert run_bpf(prog.bpf, dup3, (4, 5, 1)) == ret_errno(errno.EPERM)
    assert run_bpf(prog.bpf, dup3, (5, 5, 1)) == ALLOW
    assert run_bpf(prog.bpf, dup3, (4, 6, 1)) == ALLOW
    assert run_bpf(prog.bpf, dup3, (4, 5, 0)) == ALLOW


def test_architectures_native_always_included() -> None:
    names = {lib.seccomp_arch_resolve_name(n): n for n in (b"x86_64", b"aarch64")}
    other_token = next(t for t in names if t != NATIVE)
    other = "SCMP_ARCH_" + names[other_token].decode().upper()
    only_other = compile_({"defaultAction": "SCMP_ACT_ALLOW", "architectures": [other]})
    # the native one is in, and the listed one; anything else hits the bad-arch action
    assert run_bpf(only_other.bpf, nr("getpid")) == ALLOW
    assert run_bpf(only_other.bpf, 1, arch=other_token) == ALLOW
    plain = compile_({"defaultAction": "SCMP_ACT_ALLOW"})
    assert run_bpf(plain.bpf, 1, arch=other_token) == KILL_THREAD


def test_flags() -> None:
    prog = compile_(
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "flags": [
                "SECCOMP_FILTER_FLAG_TSYNC",
                "SECCOMP_FILTER_FLAG_LOG",
                "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",  # only for listeners: dropped
            ],
        }
    )
    assert prog.flags == lib.SECCOMP_FILTER_FLAG_TSYNC | lib.SECCOMP_FILTER_FLAG_LOG


# ---------------------------------------------------------------- errors name the field


@pytest.mark.parametrize(
    ("obj", "field", "text"),
    [
        (
            {
                "defaultAction": "SCMP_ACT_ALLOW",
                "listenerPath": "/run/l.sock",
                "syscalls": [
                    {"names": ["read"], "action": "SCMP_ACT_ERRNO"},
                    {"names": ["write"], "action": "SCMP_ACT_ERRNO"},
                    {"names": ["mount"], "action": "SCMP_ACT_NOTIFY"},
                ],
            },
            "linux.seccomp.syscalls[2].action",
            "not supported",
        ),
        (
            {
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["read"], "action": "SCMP_ACT_LOG", "errnoRet": 5}],
            },
            "linux.seccomp.syscalls[0].errnoRet",
            "only SCMP_ACT_ERRNO and SCMP_ACT_TRACE",
        ),
        (
            {"defaultAction": "SCMP_ACT_KILL", "defaultErrnoRet": 1},
            "linux.seccomp.defaultErrnoRet",
            "only SCMP_ACT_ERRNO and SCMP_ACT_TRACE",
        ),
        (
            {
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "errnoRet": 70000}],
            },
            "linux.seccomp.syscalls[0].errnoRet",
            "between 0 and 4095",
        ),
    ],
)
def test_errors_name_the_field(obj: dict[str, Any], field: str, text: str) -> None:
    with pytest.raises(ConfigError) as e:
        compile_(obj)
    assert e.value.field == field
    assert text in e.value.message


def test_an_architecture_libseccomp_does_not_know_is_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sc, "_arch_token", lambda name: 0)
    with pytest.raises(ConfigError) as e:
        compile_({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86"]})
    assert e.value.field == "linux.seccomp.architectures[0]"


def test_a_flag_this_kernel_lacks_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    class Lib:
        def __getattr__(self, name: str) -> Any:
            return getattr(lib, name)

        @staticmethod
        def corral_filter_flags_supported(flags: int) -> int:
            return 0

    monkeypatch.setattr(sc, "lib", Lib())
    with pytest.raises(ConfigError) as e:
        compile_({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_LOG"]})
    assert e.value.field == "linux.seccomp.flags[0]"
    assert "not supported by this kernel" in e.value.message


def test_a_program_over_the_kernel_limit_is_an_error() -> None:
    rules = [
        {
            "names": ["ioctl"],
            "action": "SCMP_ACT_ERRNO",
            "args": [{"index": 1, "value": i, "op": "SCMP_CMP_EQ"}],
        }
        for i in range(5000)
    ]
    with pytest.raises(ConfigError) as e:
        compile_({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules})
    assert e.value.field == "linux.seccomp"
    assert "limit of 4096" in e.value.message


# ---------------------------------------------------------------- the plan


def test_build_plan_carries_the_program(tmp_path: Path) -> None:
    from runtime.plan import HostInfo, build_plan

    spec = cfg.default_spec()
    spec["root"] = {"path": "/nonexistent-rootfs"}
    spec["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_LOG"],
        "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_ERRNO"}],
    }
    plan = build_plan(cfg.parse_spec(spec), str(tmp_path), HostInfo())
    assert plan.seccomp_prog is not None
    assert run_bpf(plan.seccomp_prog, nr("getppid")) == ret_errno(errno.EPERM)
    assert plan.seccomp_flags == lib.SECCOMP_FILTER_FLAG_LOG
    del spec["linux"]["seccomp"]
    plan = build_plan(cfg.parse_spec(spec), str(tmp_path), HostInfo())
    assert plan.seccomp_prog is None and plan.seccomp_flags == 0


def test_a_spec_without_seccomp_does_not_load_libseccomp(tmp_path: Path) -> None:
    spec = cfg.default_spec()
    spec["root"] = {"path": "/nonexistent-rootfs"}
    (tmp_path / "config.json").write_text(json.dumps(spec))
    code = (
        "import json, sys\n"
        "from runtime import config, plan\n"
        f"s = config.load_spec({str(tmp_path)!r})\n"
        f"plan.build_plan(s, {str(tmp_path)!r}, plan.HostInfo())\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    mods = set(json.loads(out.splitlines()[-1]))
    assert "runtime.seccomp" not in mods and "runtime._seccomp" not in mods


def test_features() -> None:
    f = sc.features()
    assert f["enabled"] is True
    assert "SCMP_ACT_ERRNO" in f["actions"] and "SCMP_ACT_NOTIFY" not in f["actions"]
    assert "SCMP_CMP_MASKED_EQ" in f["operators"]
    assert set(f["supportedFlags"]) <= set(f["knownFlags"])
    native = {"x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64"}
    if platform.machine() in native:
        assert native[platform.machine()] in f["archs"]


# ------------------------------------------------------- per-architecture syscall numbers

# <linux/audit.h> AUDIT_ARCH_* (what seccomp_data.arch holds) and fchmodat's number in each
# architecture's own table: the kernel's, not libseccomp's, so a wrong table fails here.
AUDIT_ARCH = {
    "SCMP_ARCH_X86_64": 0xC000003E,
    "SCMP_ARCH_X86": 0x40000003,
    "SCMP_ARCH_AARCH64": 0xC00000B7,
    "SCMP_ARCH_ARM": 0x40000028,
}
FCHMODAT = {
    "SCMP_ARCH_X86_64": 268,
    "SCMP_ARCH_X86": 306,
    "SCMP_ARCH_AARCH64": 53,  # asm-generic: arm64 has no chmod(2), only fchmodat
    "SCMP_ARCH_ARM": 333,  # EABI, the arm32 compat table of an arm64 kernel
}


def test_native_arch_is_libseccomps() -> None:
    native = sc.native_arch()
    assert AUDIT_ARCH.get(native, NATIVE) == NATIVE
    expected = {"x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64"}
    if platform.machine() in expected:
        assert native == expected[platform.machine()]


def test_an_arm64_filter_with_the_arm32_compat_table() -> None:
    """The architectures an arm64 container lists (arm64 and its arm32 compat mode) each get
    the rule with their own syscall number; mode 0644 in argument 2 is refused, others not."""
    prog = compile_(
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
            "syscalls": [
                {
                    "names": ["fchmodat"],
                    "action": "SCMP_ACT_ERRNO",
                    "errnoRet": errno.ENOMSG,
                    "args": [{"index": 2, "value": 0o644, "op": "SCMP_CMP_EQ"}],
                }
            ],
        }
    )
    native = sc.native_arch()
    for arch in {"SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM", native} & set(FCHMODAT):
        token, n = AUDIT_ARCH[arch], FCHMODAT[arch]
        assert run_bpf(prog.bpf, n, (0xFFFFFF9C, 0, 0o644), arch=token) == ret_errno(errno.ENOMSG)
        assert run_bpf(prog.bpf, n, (0xFFFFFF9C, 0, 0o600), arch=token) == ALLOW
    # arm64's number for fchmodat is another call elsewhere (x86_64's 53 is socketpair): the
    # rule is only where its own table puts it
    assert run_bpf(prog.bpf, 53, (0, 0, 0o644), arch=AUDIT_ARCH["SCMP_ARCH_ARM"]) == ALLOW
    assert run_bpf(prog.bpf, 268, (0, 0, 0o644), arch=AUDIT_ARCH["SCMP_ARCH_AARCH64"]) == ALLOW
    # an architecture the filter does not list hits the bad-arch action
    if native != "SCMP_ARCH_X86":
        assert run_bpf(prog.bpf, 306, arch=AUDIT_ARCH["SCMP_ARCH_X86"]) == KILL_THREAD
