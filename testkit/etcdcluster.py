"""Debian's etcd-server, started by the tests and the benchmarks: members on 127.0.0.1 with
free ports, data in a temporary directory (on tmpfs where there is one), stopped and removed
by ``stop()`` whatever happened. Only the processes started here are ever signalled."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from testkit.net import free_ports

ETCD = shutil.which("etcd") or "/usr/bin/etcd"


class EtcdMissing(Exception):
    pass


def tmp_base() -> str | None:
    """tmpfs when there is a writable one: no fsync cost for the tests."""
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None


@dataclass
class Member:
    name: str
    client_port: int
    peer_port: int
    argv: list[str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    def healthy(self) -> bool:
        try:
            url = f"http://{self.endpoint}/health"
            with urllib.request.urlopen(url, timeout=1) as r:
                return json.loads(r.read()).get("health") == "true"
        except (OSError, ValueError):
            return False


@dataclass
class EtcdCluster:
    size: int = 1
    base: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="corral-etcd-",
                                                                     dir=tmp_base())))  # fmt: skip
    members: list[Member] = field(default_factory=list)

    @property
    def url(self) -> str:
        return "etcd://" + ",".join(m.endpoint for m in self.members)

    def start(self, timeout: float = 30) -> EtcdCluster:
        if not os.access(ETCD, os.X_OK):
            raise EtcdMissing(f"{ETCD} not found (apt-get install etcd-server)")
        ports = free_ports(2 * self.size)
        names = [f"m{i}" for i in range(self.size)]
        peers = ",".join(f"{n}=http://127.0.0.1:{ports[2 * i + 1]}" for i, n in enumerate(names))
        token = self.base.name
        for i, name in enumerate(names):
            client, peer = ports[2 * i], ports[2 * i + 1]
            argv = [
                ETCD, "--name", name, "--data-dir", str(self.base / name),
                "--listen-client-urls", f"http://127.0.0.1:{client}",
                "--advertise-client-urls", f"http://127.0.0.1:{client}",
                "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-cluster", peers, "--initial-cluster-token", token,
                "--initial-cluster-state", "new", "--logger=zap", "--log-level=warn",
            ]  # fmt: skip
            self.members.append(Member(name, client, peer, argv, self.base / f"{name}.log"))
        try:
            for i in range(self.size):
                self.restart(i, wait=False)
            self.wait_healthy(range(self.size), timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def restart(self, i: int, wait: bool = True) -> None:
        m = self.members[i]
        assert m.proc is None or m.proc.poll() is not None, f"{m.name} is running"
        with open(m.log, "ab") as log:
            m.proc = subprocess.Popen(
                m.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
            )
        if wait:
            self.wait_healthy([i])

    def wait_healthy(self, which: range | list[int], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        for i in which:
            m = self.members[i]
            while not m.healthy():
                if m.proc is not None and m.proc.poll() is not None:
                    raise RuntimeError(f"etcd {m.name} exited: {m.log.read_text()[-2000:]}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"etcd {m.name} not healthy after {timeout} s")
                time.sleep(0.05)

    def kill(self, i: int) -> None:
        """SIGKILL one member (a crash)."""
        m = self.members[i]
        if m.proc is not None and m.proc.poll() is None:
            m.proc.send_signal(signal.SIGKILL)
            m.proc.wait()

    def stop(self) -> None:
        for m in self.members:
            if m.proc is not None and m.proc.poll() is None:
                m.proc.terminate()
        for m in self.members:
            if m.proc is not None:
                try:
                    m.proc.wait(timeout=3)  # a member without quorum may linger
                except subprocess.TimeoutExpired:
                    m.proc.kill()
                    m.proc.wait()
        shutil.rmtree(self.base, ignore_errors=True)
