"""``corral server`` and ``corral agent`` processes for the tests and the benchmarks: started
with their output to a log file, waited for until they print their ``ready`` line, stopped
with SIGTERM (or killed, as a crash). Only the processes started here are ever signalled."""

from __future__ import annotations

import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Agent", "START_DEADLINE", "start_until_ready", "stop_process"]

CORRAL = str(Path(sys.executable).parent / "corral")
START_DEADLINE = 60.0  # seconds: a start that takes longer is a failure, not a measurement


def start_until_ready(argv: list[str], log: Path, what: str) -> subprocess.Popen[bytes]:
    """Start ``argv`` (stderr to ``log``) and wait for a line with ``ready`` on its stdout."""
    with open(log, "ab") as f:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=f, stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    deadline = time.monotonic() + START_DEADLINE
    line = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 1.0)
        if ready:
            line = proc.stdout.readline()
            if b"ready" in line or not line:
                break
        if proc.poll() is not None:
            break
    if b"ready" not in line:
        proc.kill()
        proc.wait()
        raise RuntimeError(f"{what} did not start: {log.read_text()[-3000:]}")
    return proc


def stop_process(proc: subprocess.Popen[bytes] | None, timeout: float = 30) -> int | None:
    """SIGTERM, then wait; the exit status (None if it had to be killed)."""
    if proc is None or proc.poll() is not None:
        return proc.returncode if proc else None
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None


@dataclass
class Agent:
    """A real ``corral agent`` joined to the server at ``server_url`` with the join token in
    ``token_file``: its own data dir under ``root``, pods in the network namespace
    ``node_netns`` (a path), pod cgroups below ``cgroup_parent`` (relative: below this
    process's cgroup)."""

    server_url: str
    token_file: Path
    root: Path
    name: str
    node_netns: str
    cgroup_parent: str
    extra: tuple[str, ...] = ()
    proc: subprocess.Popen[bytes] | None = None

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def images_dir(self) -> Path:
        return self.data_dir / "images"

    @property
    def log(self) -> Path:
        return self.root / "agent.log"

    def argv(self, token: str | None = None) -> list[str]:
        tok = token if token is not None else self.token_file.read_text().strip()
        return [
            CORRAL,
            "agent",
            "--server",
            self.server_url,
            "--token",
            tok,
            "--data-dir",
            str(self.data_dir),
            "--node-name",
            self.name,
            "--node-netns",
            self.node_netns,
            "--cgroup-parent",
            self.cgroup_parent,
            *self.extra,
        ]

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.proc = start_until_ready(self.argv(), self.log, "corral agent")

    def stop(self) -> int | None:
        return stop_process(self.proc)

    def kill(self) -> None:
        """SIGKILL, as a crash: the pods keep running under their monitors."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
