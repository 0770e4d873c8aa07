"""A node network namespace for the tests and the benchmarks: held by a sleeping child of
ours (``unshare -n sleep infinity``), never the machine's own."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass


@dataclass
class NodeNs:
    """A network namespace held by a sleeping child of ours; ``fd`` is open on it."""

    proc: subprocess.Popen[bytes]
    fd: int

    @property
    def path(self) -> str:
        return f"/proc/{self.proc.pid}/ns/net"

    def close(self) -> None:
        os.close(self.fd)
        self.proc.kill()
        self.proc.wait()


def node_netns() -> NodeNs:
    unshare = shutil.which("unshare")
    if unshare is None:
        raise OSError("unshare(1) is not installed: no node network namespace")
    proc = subprocess.Popen([unshare, "-n", "sleep", "infinity"], stdin=subprocess.DEVNULL)
    own = os.readlink("/proc/self/ns/net")
    deadline = time.monotonic() + 10
    try:
        while True:
            try:
                if os.readlink(f"/proc/{proc.pid}/ns/net") != own:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise OSError("unshare -n did not make a network namespace")
            time.sleep(0.01)
        fd = os.open(f"/proc/{proc.pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return NodeNs(proc, fd)
