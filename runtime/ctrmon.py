"""A detached ``corral run`` container under corral-monitor: the per-pod monitor
(``csrc/monitor/``, docs/pods.md) runs it as a unit of one container, so one process kind
holds the stdio of every detached container, writes its logs and records its exits, and
restarts it by policy with the monitor's backoff.

The container's directory is the monitor's directory (as a pod's is)::

    monitor.conf, monitor.pid, monitor.log, pod.status, stop-grace   the monitor's protocol
    status/ctr            the container's status (state, exit_code, restart_count, ...)
    logs/ctr/<N>.log      CRI logs of its N-th run (N = restart count), rotated N.log.1 ...
    network.json, etc/    on the pod network (``runtime.ctr.setup_network``)

``start`` spawns the monitor (``--host-network`` unless the container is on the pod network:
then the monitor's network namespace is the container's, as a pod's), writes
``owner.json`` (the monitor's pid and start time), sets the network up, writes
``monitor.conf`` and says go, then waits until the container runs (or reports why it did
not, and removes everything). The monitor's ``finish_arg`` is ``python -m runtime.ctrmon
finish PATHS_JSON ID``: it records the exit code (``exit.json``, atomically), tears the
network down and unmounts the rootfs, or removes everything with ``--rm``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from .errors import CorralError
from .state import process_start_time

NAME = "ctr"  # the container's name in monitor.conf: status/ctr, logs/ctr/
READY_TIMEOUT = 30.0  # seconds for the monitor's "ready", and its answer to "go"
START_TIMEOUT = 120.0  # seconds for the container's first run to begin
# The monitor's restart backoff for `--restart`: 100 ms doubling up to 30 s; a container
# that ran 10 minutes starts over.
BACKOFF_MS = (100, 30_000, 600_000)
POLICIES = {"no": "Never", "on-failure": "OnFailure", "always": "Always"}

if TYPE_CHECKING:  # runtime.ctr imports this module lazily
    from .ctr import Ctr, Paths, Prepared, RunOptions


def read_status(ctr: Ctr) -> dict[str, str]:
    """status/ctr as a dict ({} while there is none)."""
    from .pod.store import read_keyvalues

    return read_keyvalues(Path(ctr.file("status"), NAME))


def monitor_pid(ctr: Ctr) -> int:
    """The pid of the container's live monitor, 0 when there is none (yet, or any more)."""
    owner = ctr.read_json("owner.json")
    if not owner or not owner.get("monitor"):
        return 0
    pid = int(owner["pid"])
    return pid if process_start_time(pid) == owner["start"] else 0


def _finish_argv(ctr: Ctr) -> tuple[str, ...]:
    return (sys.executable, "-m", "runtime.ctrmon", "finish", ctr.paths.to_json(), ctr.id)


def _conf(p: Prepared, opts: RunOptions) -> str:
    from .ctr import _stop_signal, parse_restart
    from .pod.monconf import ContainerConf, MonitorConf, render
    from .pod.prepare import PodOptions

    policy, most = parse_restart(opts.restart)
    ctr = p.ctr
    return render(
        MonitorConf(
            runtime_arg=PodOptions().runtime_argv(),
            runtime_root=os.path.abspath(ctr.paths.state_root),
            restart_policy=POLICIES[policy],
            restart_max=most,
            grace_s=10,
            finish_arg=_finish_argv(ctr),
            backoff_initial_ms=BACKOFF_MS[0],
            backoff_max_ms=BACKOFF_MS[1],
            backoff_reset_ms=BACKOFF_MS[2],
            containers=(
                ContainerConf(
                    name=NAME,
                    kind="app",
                    id=ctr.id,
                    bundle=os.path.abspath(ctr.dir),
                    stop_signal=_stop_signal(ctr),
                    terminal=p.meta.tty,
                ),
            ),
        )
    )


def _wait_started(ctr: Ctr) -> str | None:
    """None once the container's first run began (it may have ended already); else why not."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        st = read_status(ctr)
        state = st.get("state")
        if state == "running":
            return None
        if state == "terminated" or st.get("reason") == "CrashLoopBackOff":
            reason = st.get("reason") if state == "terminated" else st.get("last_reason")
            if reason != "StartError":
                return None  # it ran, and ended
            msg = st.get("message") if state == "terminated" else st.get("last_message")
            return msg or "the runtime could not start it"
        if not monitor_pid(ctr):
            if read_status(ctr).get("state") in ("running", "terminated"):
                continue  # look again: it changed as the monitor went
            from .pod.monitor import tail

            detail = tail(Path(ctr.file("monitor.log")))
            return "the monitor exited" + (f" (monitor.log: {detail})" if detail else "")
        time.sleep(0.02)
    return f"not started after {START_TIMEOUT:.0f} s"


def start(p: Prepared, opts: RunOptions, paths: Paths) -> None:
    """Hand the prepared container to a monitor of its own; return once it runs. On failure
    everything is removed (the monitor stopped, the network torn down, the rootfs
    unmounted, the directory and image ref removed) and RunError says why."""
    from .ctr import RunError, join_netns_file, setup_network
    from .pod.monitor import StartFailed, monitor_path, spawn
    from .state import write_atomic

    ctr = p.ctr
    started = None
    try:
        flags = [] if p.checked.network == "pod" else ["--host-network"]
        try:
            started = spawn(str(monitor_path()), flags, Path(ctr.dir), READY_TIMEOUT)
        except (StartFailed, OSError) as e:
            raise RunError("start monitor", ctr.id[:12], e) from e
        ctr.write_json("owner.json", {"pid": started.pid, "monitor": True,
                                      "start": process_start_time(started.pid)})  # fmt: skip
        write_atomic(ctr.file("starting"), b"", 0o600)  # see finish()
        if p.checked.network == "pod":
            setup_network(ctr, p.checked, opts, f"/proc/{started.pid}/ns/net")
            join_netns_file(ctr, f"/proc/{started.pid}/ns/net")
        write_atomic(ctr.file("monitor.conf"), _conf(p, opts).encode(), 0o600)
        try:
            started.go(Path(ctr.dir), READY_TIMEOUT)
        except StartFailed as e:
            raise RunError(e.step, ctr.id[:12], e.why) from e
        why = _wait_started(ctr)
        if why is not None:
            raise RunError("start container", ctr.id[:12], why)
        with ctr.locked():
            os.unlink(ctr.file("starting"))
            gone = ctr.read_json("exit.json") is not None
        if gone and p.meta.rm:  # it ran and ended before we let go: finish() left it to us
            from .ctr import remove

            remove(ctr.paths, ctr.id)
    except BaseException:
        if started is not None:
            started.close()  # without go the monitor exits
            stop_monitor(ctr, 0.0)
        _abort(p)
        raise
    finally:
        if started is not None:
            started.close()


def _abort(p: Prepared) -> None:
    from . import container
    from .ctr import teardown_network
    from .errors import NotFound

    with contextlib.suppress(CorralError, NotFound):
        container.delete(p.ctr.id, force=True, root=p.ctr.paths.state_root)
    with contextlib.suppress(Exception):
        teardown_network(p.ctr)
    p.cleanup.close()


def stop_monitor(ctr: Ctr, timeout: float) -> None:
    """Stop the container's monitor: its stop signal, SIGKILL after ``timeout`` seconds (the
    monitor does both), then its finish; returns once the monitor has exited."""
    from .ctr import _wait_pid
    from .state import write_atomic

    pid = monitor_pid(ctr)
    if not pid:
        return
    with contextlib.suppress(OSError):
        write_atomic(ctr.file("stop-grace"), f"{max(timeout, 0.0):.3f}\n".encode(), 0o600)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if not _wait_pid(pid, timeout + READY_TIMEOUT):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)  # wedged: rm removes what it left
        _wait_pid(pid, 10.0)


def finish(paths: Paths, cid: str) -> None:
    """The monitor's finish_arg, once the container is over and deleted from the runtime:
    record its exit code, tear the network down, then unmount the rootfs or (``--rm``)
    remove everything. While ``start`` has not let go (the file ``starting``), a ``--rm``
    container is left for it to judge and remove."""
    from .ctr import Ctr, _finish, teardown_network

    ctr = Ctr(paths, cid)
    st = read_status(ctr)
    # Stopped while it waited to restart: the last run's code.
    text = st.get("exit_code", st.get("last_exit_code", ""))
    code = int(text) if text.lstrip("-").isdigit() else None
    teardown_network(ctr)
    _finish(ctr, code)


# -- logs --------------------------------------------------------------------------------


def write_logs(
    ctr: Ctr, follow: bool, out: IO[bytes], err: IO[bytes], done: Callable[[], bool]
) -> None:
    """Every run's output, oldest first: stdout lines to ``out``, stderr lines to ``err``;
    with ``follow``, then what is written until ``done()``."""
    from .pod.logs import LogFollower, read_log, runs

    log_dir = Path(ctr.file("logs")) / NAME

    def emit(lines: Iterator[Any]) -> None:
        for ln in lines:
            f = err if ln.stream == "stderr" else out
            f.write(ln.text.encode() + b"\n")
        out.flush()
        err.flush()

    have = runs(log_dir)
    if not follow:
        for n in have:
            emit(iter(read_log(log_dir, n)))
        return
    for n in have[:-1]:
        emit(iter(read_log(log_dir, n)))
    follower = LogFollower(Path(ctr.file("logs")), [NAME])
    try:
        while True:
            over = done()
            emit(iter(follower.poll()))
            if over:
                return
            time.sleep(0.1)
    finally:
        follower.close()


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] != "finish":
        print("usage: python -m runtime.ctrmon finish PATHS_JSON ID", file=sys.stderr)
        return 2
    from .ctr import Paths

    try:
        finish(Paths.from_json(argv[1]), argv[2])
    except CorralError as e:
        print(f"corral: finish {argv[2][:12]}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
