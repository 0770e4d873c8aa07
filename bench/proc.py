"""Run one command and measure it: wall time, CPU time and peak RSS from wait4(2).

Every runtime is started the same way (fork of this process, then execve), so the cost of
starting it is the same for all; a runtime that must run in another mount namespace joins it
in the forked child, before execve.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from corral_common import hostsys

from .model import Sample

CLONE_NEWNS = hostsys.CLONE_NEWNS
CLONE_NEWNET = hostsys.CLONE_NEWNET
hostsys.preload()  # the forked child calls setns: it must not load ctypes on the clock


class CommandFailed(Exception):
    """A measured command exited non-zero (or was killed)."""

    def __init__(self, argv: Sequence[str], code: int, output: str) -> None:
        self.argv = list(argv)
        self.code = code
        self.output = output
        tail = output.strip().splitlines()[-3:]
        super().__init__(f"{' '.join(argv)} exited {code}: {' / '.join(tail)}")


@dataclass(frozen=True, slots=True)
class Launch:
    """How to start a command: its argv, environment and, optionally, a mount namespace and
    a network namespace (fds) to join before execve."""

    argv: tuple[str, ...]
    env: Mapping[str, str]
    mount_ns_fd: int = -1
    net_ns_fd: int = -1


def join_netns(fd: int) -> int:
    """setns(2) into the network namespace open at ``fd``: 0, or the errno."""
    try:
        hostsys.setns(fd, CLONE_NEWNET)
    except hostsys.HostError as e:
        return e.errno
    return 0


def _child(launch: Launch, out_fd: int) -> None:
    """In the forked child: never returns."""
    try:
        for fd, nstype, step in (
            (launch.mount_ns_fd, CLONE_NEWNS, "setns"),
            (launch.net_ns_fd, CLONE_NEWNET, "setns(net)"),
        ):
            if fd >= 0:
                try:
                    hostsys.setns(fd, nstype, step)
                except hostsys.HostError as e:
                    os.write(out_fd, f"{e}\n".encode())
                    os._exit(126)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out_fd, 1)
        os.dup2(out_fd, 2)
        os.execve(launch.argv[0], list(launch.argv), dict(launch.env))
    except BaseException as e:  # noqa: B036 - nothing may escape a forked child
        try:
            os.write(out_fd, f"exec {launch.argv[0]}: {e}\n".encode())
        finally:
            os._exit(127)
    os._exit(127)


def measure(launch: Launch, output_path: str) -> Sample:
    """Run the command to completion and measure it; its stdout and stderr go to
    ``output_path`` (truncated first). Raise CommandFailed unless it exits 0."""
    out_fd = os.open(output_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        t0 = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            _child(launch, out_fd)
        try:
            _, status, ru = os.wait4(pid, 0)
        except BaseException:
            # Interrupted (^C): let the runtime finish what it started before clean-up runs.
            os.waitpid(pid, 0)
            raise
        wall = time.perf_counter() - t0
    finally:
        os.close(out_fd)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        with open(output_path, encoding="utf-8", errors="replace") as f:
            raise CommandFailed(launch.argv, code, f.read())
    return Sample(wall_s=wall, cpu_s=ru.ru_utime + ru.ru_stime, maxrss_kib=ru.ru_maxrss)


def run_quiet(launch: Launch, output_path: str) -> int:
    """Run a command for its effect (clean-up); return its exit code, never raise on it."""
    try:
        measure(launch, output_path)
    except CommandFailed as e:
        return e.code
    return 0
