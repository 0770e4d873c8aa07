"""A pod's containers from outside: their logs (current and previous run, or followed across
restarts and rotations), exec, and TCP connections to the pod's own ports (port-forward)."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any

from runtime.pod.logs import LogLine
from runtime.pod.prepare import PodOptions
from runtime.pod.store import InvalidState, PodDir, PodError, PodState

__all__ = [
    "Stdio",
    "container_names",
    "exec_in",
    "follow_log_lines",
    "follow_logs",
    "log_lines",
    "logs",
    "port_connect",
]

Stdio = int | IO[Any] | None  # as subprocess.run takes it


def container_names(pd: PodDir, container: str | None) -> list[str]:
    """The pod's containers, or just ``container`` when the pod has it."""
    names = pd.record_or_blank().container_names
    if container is None:
        return names
    if container not in names:
        raise PodError(pd.uid, f"no container {container!r} (the pod has {', '.join(names)})")
    return [container]


def logs(pd: PodDir, container: str | None = None, previous: bool = False) -> list[str]:
    """The text lines of a container's current run (``previous``: the run before)."""
    return [ln.text for ln in log_lines(pd, container, previous)]


def log_lines(pd: PodDir, container: str | None = None, previous: bool = False) -> list[LogLine]:
    """The lines of a container's current run (``previous``: the run before), with the time
    and stream of each."""
    from runtime.pod.logs import read_log, runs

    names = container_names(pd, container)
    if container is None:
        app = pd.record_or_blank().app_containers
        if len(app) != 1:
            raise PodError(pd.uid, f"a container name must be given: one of {', '.join(names)}")
        names = app
    log_dir = pd.path / "logs" / names[0]
    have = runs(log_dir)
    if not have:
        return []
    run_no = have[-1] - (1 if previous else 0)
    if previous and run_no not in have:
        raise PodError(pd.uid, f"container {names[0]!r} has no previous run")
    return read_log(log_dir, run_no, names[0])


def follow_logs(
    pd: PodDir,
    container: str | None = None,
    interval: float = 0.1,
    should_stop: Callable[[], bool] | None = None,
) -> Iterator[tuple[str, str]]:
    """(container, line) as they are written, all containers or one, across restarts and
    rotations, until the pod has finished (or ``should_stop()``)."""
    for line in follow_log_lines(pd, container, interval, should_stop):
        yield line.container, line.text


def follow_log_lines(
    pd: PodDir,
    container: str | None = None,
    interval: float = 0.1,
    should_stop: Callable[[], bool] | None = None,
) -> Iterator[LogLine]:
    """``follow_logs`` with the time and stream of each line."""
    from runtime.pod.logs import LogFollower

    names = container_names(pd, container)
    follower = LogFollower(pd.store.root / "run" / pd.uid / "logs", names)
    try:
        while True:
            pd.refresh()
            done = pd.state is not PodState.RUNNING or (should_stop is not None and should_stop())
            if pd.state is PodState.EXITED:
                follower.logs_dir = pd.path / "logs"
                for t in follower.tails.values():
                    t.log_dir = pd.path / "logs" / t.container
            yield from follower.poll()
            if done:
                return
            time.sleep(interval)
    finally:
        follower.close()


def exec_in(
    pd: PodDir,
    opts: PodOptions,
    command: Sequence[str],
    container: str | None = None,
    tty: bool = False,
    stdin: Stdio = subprocess.DEVNULL,
    stdout: Stdio = None,
    stderr: Stdio = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``command`` in a running container of the pod (the first app container unless
    ``container``); stdio as for ``subprocess.run``. The runtime is the one the pod was
    created with (``opts`` for a pod whose record has no options)."""
    if pd.state is not PodState.RUNNING:
        raise InvalidState(pd.uid, f"cannot exec in a pod in {pd.state.value}/")
    rec = pd.record_or_blank()
    if container is None:
        app = rec.app_containers
        if not app:
            raise PodError(pd.uid, "exec: the pod has no app container")
        container = app[0]
    container_names(pd, container)
    popts = rec.pod_options(opts)
    argv = [*popts.runtime_argv(), "--root", str(pd.path / "runtime"), "exec"]
    if tty:
        argv.append("-t")
    argv += [container, *command]
    # With a terminal for stdin, a session of its own: that terminal becomes the runtime's
    # controlling one (runtime.console), so the caller's resizes reach it as SIGWINCH.
    own_session = tty and _is_tty(stdin)
    return subprocess.run(
        argv,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        check=False,
        start_new_session=own_session,
    )


def _is_tty(stdio: Stdio) -> bool:
    if isinstance(stdio, int):
        return stdio >= 0 and os.isatty(stdio)
    if stdio is None:
        return False
    try:
        return os.isatty(stdio.fileno())
    except (OSError, ValueError, AttributeError):
        return False


def port_connect(pd: PodDir, port: int, timeout: float = 10.0) -> socket.socket:
    """A TCP connection to ``port`` on the pod's loopback (127.0.0.1, then ::1), made in the
    pod's network namespace, as the kubelet's port-forward does: a port the pod binds on any
    address, or on its loopback only, is reached. The socket stays in that namespace; the
    caller owns it."""
    from runtime.network import in_netns

    if not 0 < port < 65536:
        raise PodError(pd.uid, f"port-forward: {port} is not a TCP port")
    if pd.state is not PodState.RUNNING:
        raise InvalidState(pd.uid, f"cannot forward a port of a pod in {pd.state.value}/")
    try:
        pid = int((pd.path / "monitor.pid").read_text().strip())
    except (OSError, ValueError):
        raise InvalidState(pd.uid, "port-forward: the pod has no monitor") from None

    def connect() -> socket.socket:
        errors: list[str] = []
        for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            try:
                sock.connect((host, port))
            except OSError as e:
                sock.close()
                errors.append(f"{host}: {e.strerror or e}")
                continue
            sock.settimeout(None)
            return sock
        raise PodError(pd.uid, f"port-forward to port {port}: {'; '.join(errors)}")

    try:
        return in_netns(f"/proc/{pid}/ns/net", connect)
    except PodError:
        raise
    except Exception as e:  # the namespace is gone: the pod stopped meanwhile
        raise PodError(pd.uid, f"port-forward to port {port}: {e}") from None
