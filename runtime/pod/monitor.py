"""Where the per-pod monitor executable is (``csrc/monitor/``, built at install time), and
the starter's side of its start-up handshake."""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ENV = "CORRAL_MONITOR"
BUILT = Path(__file__).resolve().parent.parent / "_bin" / "corral-monitor"


class MonitorMissing(FileNotFoundError):
    """The corral-monitor executable is not where it should be."""


def monitor_path() -> Path:
    """The corral-monitor executable: ``$CORRAL_MONITOR`` if set, else the one built into the
    package (``runtime/_bin/corral-monitor``)."""
    override = os.environ.get(ENV)
    path = Path(override) if override else BUILT
    if not (path.is_file() and os.access(path, os.X_OK)):
        where = f"${ENV}={override}" if override else str(path)
        raise MonitorMissing(
            f"corral-monitor not found or not executable at {where} "
            "(reinstall corral to build it: pip install -e .)"
        )
    return path


# -- the start-up handshake (docs/pods.md): the side of whoever starts a monitor -----------
# `corral pod` (runtime.pod.launch) and a detached `corral run` (runtime.ctr) both use it.


@dataclass
class Started:
    """A monitor that said ``ready``: write ``go`` on ``go_fd`` (closing it without is an
    abort), then read ``said_fd`` to EOF (``read_to_eof``: empty means accepted)."""

    pid: int
    pidns_pid: int
    go_fd: int
    said_fd: int

    def go(self, directory: Path, timeout: float) -> None:
        """Say ``go`` and wait until the monitor has accepted its configuration (it closes
        ``said_fd``); raises StartFailed with the error line it wrote, or on no answer."""
        os.write(self.go_fd, b"go\n")
        os.close(self.go_fd)
        self.go_fd = -1
        self._accepted(directory, timeout)

    def go_gated(self) -> None:
        """Say ``go`` to a monitor whose configuration has ``net_gate``: it starts the
        containers' runs, which wait, created, at the start gate until ``net_ready`` (closing
        ``go_fd`` without it cancels them and stops the pod)."""
        os.write(self.go_fd, b"go\n")

    def net_ready(self, directory: Path, timeout: float) -> None:
        """After ``go_gated``: the pod network is there; open the start gate and wait until
        the monitor has accepted its configuration, as ``go`` does."""
        try:
            os.write(self.go_fd, b"net\n")
        except BrokenPipeError:
            pass  # it refused its configuration (its answer says so) or it is stopping
        os.close(self.go_fd)
        self.go_fd = -1
        self._accepted(directory, timeout)

    def _accepted(self, directory: Path, timeout: float) -> None:
        said = read_to_eof(self.said_fd, timeout)
        if said == "":
            return
        why = "no answer to go" if said is None else said.removeprefix("error ").strip()
        detail = tail(directory / "monitor.log")
        raise StartFailed("start monitor", why + (f" (monitor.log: {detail})" if detail else ""))

    def close(self) -> None:
        for fd in (self.go_fd, self.said_fd):
            if fd >= 0:
                os.close(fd)
        self.go_fd = self.said_fd = -1


class StartFailed(Exception):
    """The monitor could not be started or did not say ``ready``: ``step: why``."""

    def __init__(self, step: str, why: str) -> None:
        self.step = step
        self.why = why
        super().__init__(f"{step}: {why}")


def dup_pair(w: int, r: int) -> int:
    """Duplicate ``w`` and ``r`` onto free fds n, n+1 (the monitor's sync fd convention)."""
    base = 10
    while True:
        n = fcntl.fcntl(w, fcntl.F_DUPFD_CLOEXEC, base)
        m = fcntl.fcntl(r, fcntl.F_DUPFD_CLOEXEC, n + 1)
        if m == n + 1:
            return n
        os.close(n)
        os.close(m)
        base = m


def read_line(fd: int, timeout: float) -> str:
    buf = b""
    deadline = time.monotonic() + timeout
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            return ""
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            return ""
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        buf += chunk
    return buf.decode(errors="replace").strip()


def read_to_eof(fd: int, timeout: float) -> str | None:
    """What the monitor writes until it closes the pipe; None when it does not in time."""
    buf = b""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            return None
        chunk = os.read(fd, 4096)
        if not chunk:
            return buf.decode(errors="replace").strip()
        buf += chunk


def tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return "; ".join(text[-lines:])


def _spawn_detached(argv: list[str], log: Path, keep: tuple[int, ...]) -> int:
    """Start ``argv`` in a session of its own, stdin /dev/null, stdout and stderr appended to
    ``log``, with the fds ``keep`` (close-on-exec here) open in it; its pid.

    posix_spawn (vfork and exec in one call, the GIL let go once) rather than
    subprocess.Popen, whose steps each give the GIL back: with the agent's other threads busy
    every step waited a switch interval, some 30 ms a start where this takes half a
    millisecond (measured with three busy threads). Popen's close_fds is the monitor's own
    first step: it closes every fd but stdio and its sync pair."""
    devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    try:
        out = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except BaseException:
        os.close(devnull)
        raise
    try:
        actions = [
            (os.POSIX_SPAWN_DUP2, devnull, 0),
            (os.POSIX_SPAWN_DUP2, out, 1),
            (os.POSIX_SPAWN_DUP2, out, 2),
            # dup2 onto itself clears close-on-exec, in the child only (glibc >= 2.29)
            *((os.POSIX_SPAWN_DUP2, fd, fd) for fd in keep),
        ]
        return os.posix_spawn(
            argv[0],
            argv,
            os.environ,
            file_actions=actions,
            setsid=True,
            setsigmask=(),
            setsigdef=(signal.SIGPIPE, signal.SIGXFSZ),  # as Popen's restore_signals
        )
    finally:
        os.close(out)
        os.close(devnull)


def _reap(pid: int, timeout: float | None) -> bool:
    """Wait for the child ``pid`` to exit, at most ``timeout`` seconds (None: for good);
    whether it did (and was reaped)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = 0.0005
    while True:
        try:
            done, _ = os.waitpid(pid, 0 if deadline is None else os.WNOHANG)
        except ChildProcessError:
            return True
        if done:
            return True
        if deadline is not None and time.monotonic() >= deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.02)


def spawn(exe: str, flags: Sequence[str], directory: Path, timeout: float) -> Started:
    """Run ``exe [flags] directory SYNC_FD`` detached (its stdio to ``directory/monitor.log``)
    and wait for its ``ready``; raises StartFailed (the monitor is gone then)."""
    to_py_r, to_py_w = os.pipe2(os.O_CLOEXEC)
    to_mon_r, to_mon_w = os.pipe2(os.O_CLOEXEC)
    n = dup_pair(to_py_w, to_mon_r)
    os.close(to_py_w)
    os.close(to_mon_r)
    argv = [exe, *flags, str(directory), str(n)]
    try:
        pid = _spawn_detached(argv, directory / "monitor.log", (n, n + 1))
    except OSError as e:
        for fd in (n, n + 1, to_py_r, to_mon_w):
            os.close(fd)
        raise StartFailed(f"start monitor {argv[0]}", str(e.strerror or e)) from e
    os.close(n)
    os.close(n + 1)
    try:
        line = read_line(to_py_r, timeout)
    except BaseException:
        os.close(to_py_r)
        os.close(to_mon_w)
        raise
    exited = _reap(pid, timeout)  # the monitor forks away from its starter (its first pid)
    words = line.split()
    if len(words) == 3 and words[0] == "ready":
        return Started(int(words[1]), int(words[2]), to_mon_w, to_py_r)
    os.close(to_py_r)
    os.close(to_mon_w)
    if not exited:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _reap(pid, None)
    why = line.removeprefix("error ").strip() if line else "no answer"
    detail = tail(directory / "monitor.log")
    raise StartFailed("start monitor", why + (f" (monitor.log: {detail})" if detail else ""))
