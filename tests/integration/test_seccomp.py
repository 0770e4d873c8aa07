"""linux.seccomp against the real kernel: the filter the parent compiles is what the container
process runs under. Each test asks from inside with ``corral-test seccomp-probe SYSCALL``,
which prints "ok" or the errno name of one harmless syscall.
"""

from __future__ import annotations

import json
import platform
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Result, Runtime

pytestmark = pytest.mark.root

# The native architecture plus its 32-bit sibling, as podman writes them.
_ARCHES = {
    "x86_64": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "aarch64": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
}.get(platform.machine(), [])

# What the static corral-test needs from execve to exit, on x86_64 and arm64 (names another
# architecture lacks are skipped, as runc does).
_HELPER_SYSCALLS = [
    "execve",
    "brk",
    "arch_prctl",
    "set_tid_address",
    "set_robust_list",
    "rseq",
    "prlimit64",
    "mprotect",
    "mmap",
    "munmap",
    "readlink",
    "readlinkat",
    "getrandom",
    "newfstatat",
    "fstat",
    "uname",
    "ioctl",
    "write",
    "rt_sigaction",
    "rt_sigprocmask",
    "futex",
    "exit",
    "exit_group",
]


def _spec(runtime: Runtime, seccomp: dict[str, Any], *args: str, **process: Any) -> Path:
    cid, bundle = runtime.prepare(*args, **process)
    spec = json.loads((bundle / "config.json").read_text())
    spec["linux"]["seccomp"] = seccomp
    (bundle / "config.json").write_text(json.dumps(spec))
    return bundle


def _run(runtime: Runtime, seccomp: dict[str, Any], *args: str, **process: Any) -> Result:
    bundle = _spec(runtime, seccomp, *args, **process)
    return runtime.cli("run", "--bundle", str(bundle), bundle.name)


def _probes(*names: str) -> tuple[str, ...]:
    return ("sh", "-c", "; ".join(f"corral-test seccomp-probe {n}" for n in names))


def test_blocked_syscall_fails_with_the_configured_errno(runtime: Runtime) -> None:
    seccomp = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": _ARCHES,
        "syscalls": [
            {
                "names": ["getppid", "corral_no_such_syscall"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": 38,
            },
            {"names": ["sched_yield"], "action": "SCMP_ACT_ERRNO"},  # EPERM by default
            {"names": ["getpid"], "action": "SCMP_ACT_ALLOW"},  # same as the default
        ],
    }
    res = _run(runtime, seccomp, *_probes("getppid", "sched_yield", "getpid", "gettid"))
    assert res.rc == 0, res.err
    assert res.out.split() == ["ENOSYS", "EPERM", "ok", "ok"]


def test_argument_comparisons_filter_only_matching_calls(runtime: Runtime) -> None:
    seccomp = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {  # kill(pid, 0) is refused, any real signal goes through
                "names": ["kill"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": 13,
                "args": [{"index": 1, "value": 0, "op": "SCMP_CMP_EQ"}],
            },
            {  # unshare with any flag set: the probe's unshare(0) does not match
                "names": ["unshare"],
                "action": "SCMP_ACT_ERRNO",
                "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_NE"}],
            },
            {  # personality(0xffffffff) matches (arg & 0xff) == 0xff
                "names": ["personality"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": 22,
                "args": [{"index": 0, "value": 0xFF, "valueTwo": 0xFF, "op": "SCMP_CMP_MASKED_EQ"}],
            },
            {  # two comparisons of one argument are ORed: flags 0 matches the second
                "names": ["unlinkat"],
                "action": "SCMP_ACT_ERRNO",
                "args": [
                    {"index": 2, "value": 0x200, "op": "SCMP_CMP_EQ"},
                    {"index": 2, "value": 0, "op": "SCMP_CMP_EQ"},
                ],
            },
            {  # and comparisons of different arguments are ANDed: flags 0 does not match
                "names": ["fchmodat"],
                "action": "SCMP_ACT_ERRNO",
                "args": [
                    {"index": 0, "value": 0, "op": "SCMP_CMP_NE"},
                    {"index": 2, "value": 0o644, "op": "SCMP_CMP_NE"},
                ],
            },
        ],
    }
    script = (
        "corral-test seccomp-probe kill; corral-test seccomp-probe unshare;"
        " corral-test seccomp-probe personality; corral-test seccomp-probe unlinkat;"
        " corral-test seccomp-probe fchmodat;"
        " kill -0 $$ 2>/dev/null; echo kill0=$?; kill -CONT $$; echo cont=$?"
    )
    res = _run(runtime, seccomp, "sh", "-c", script)
    assert res.rc == 0, res.err
    assert res.out.split() == [
        "EACCES",  # kill(pid, 0)
        "ok",  # unshare(0)
        "EINVAL",  # personality(0xffffffff)
        "EPERM",  # unlinkat(..., 0): unfiltered it fails with ENOENT
        "ENOENT",  # fchmodat(AT_FDCWD, missing, 0644): not filtered
        "kill0=1",
        "cont=0",
    ]


def test_default_errno_with_an_allow_list(runtime: Runtime) -> None:
    seccomp = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 38,
        "architectures": _ARCHES,
        "syscalls": [{"names": [*_HELPER_SYSCALLS, "getpid"], "action": "SCMP_ACT_ALLOW"}],
    }
    res = _run(runtime, seccomp, "corral-test", "seccomp-probe", "getpid")
    assert (res.rc, res.out) == (0, "ok\n"), res.err
    res = _run(runtime, seccomp, "corral-test", "seccomp-probe", "getppid")
    assert (res.rc, res.out) == (0, "ENOSYS\n"), res.err


@pytest.mark.parametrize("action", ["SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS"])
def test_kill_action_kills_the_process(runtime: Runtime, action: str) -> None:
    seccomp = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["getppid"], "action": action}],
    }
    res = _run(runtime, seccomp, "corral-test", "seccomp-probe", "getppid")
    assert res.rc == 128 + signal.SIGSYS, (res.rc, res.out, res.err)
    assert res.out == ""


def test_without_no_new_privs_the_filter_is_loaded_while_privileged(runtime: Runtime) -> None:
    # No CAP_SYS_ADMIN in the final sets and a non-root user: seccomp(2) would fail with
    # EACCES after the switch, so it must happen before it.
    seccomp = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}],
    }
    res = _run(
        runtime,
        seccomp,
        *_probes("getppid", "getpid"),
        noNewPrivileges=False,
        user={"uid": 1000, "gid": 1000},
    )
    assert res.rc == 0, res.err
    assert res.out.split() == ["ENOSYS", "ok"]


def test_exec_runs_under_the_container_filter(runtime: Runtime) -> None:
    seccomp = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}],
    }
    bundle = _spec(runtime, seccomp, "corral-test", "sleep", "1000")
    cid = bundle.name
    runtime.cli("run", "--detach", "--bundle", str(bundle), cid, check=True)
    res = runtime.cli("exec", cid, "corral-test", "seccomp-probe", "getppid")
    assert (res.rc, res.out) == (0, "ENOSYS\n"), res.err


@pytest.mark.parametrize(
    ("seccomp", "field"),
    [
        (
            {
                "defaultAction": "SCMP_ACT_ALLOW",
                "listenerPath": "/run/nowhere.sock",
                "syscalls": [
                    {"names": ["getpid"], "action": "SCMP_ACT_ERRNO"},
                    {"names": ["mount"], "action": "SCMP_ACT_NOTIFY"},
                ],
            },
            "linux.seccomp.syscalls[1].action",
        ),
        (
            {
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_KILL", "errnoRet": 1}],
            },
            "linux.seccomp.syscalls[0].errnoRet",
        ),
        (
            {"defaultAction": "SCMP_ACT_BOGUS"},
            "linux.seccomp.defaultAction",
        ),
    ],
)
def test_bad_section_is_a_create_error_leaving_nothing(
    runtime: Runtime, seccomp: dict[str, Any], field: str
) -> None:
    bundle = _spec(runtime, seccomp, "true")
    res = runtime.cli("create", "--bundle", str(bundle), bundle.name)
    assert res.rc != 0
    assert field in res.err, res.err
    assert len(res.err.strip().splitlines()) == 1, res.err
    assert json.loads(runtime.cli("list", "--format", "json", check=True).out or "[]") in ([], None)
    # (the fixture also fails the test on any state or cgroup left behind)
