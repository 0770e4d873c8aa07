"""The runtimes under test, as command lines, and the private mount namespace crun needs on a
hybrid cgroup host."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from . import host
from .proc import Launch, run_quiet

CRUN_NS_LABEL = "crun (mnt-ns)"
CRUN_NS_NOTE = (
    "crun refuses hybrid cgroup hosts, so it runs in a private mount namespace (set up once, "
    "joined with setns(2) by each run before execve): the cgroup2 mount at "
    "/sys/fs/cgroup/unified is covered by an empty tmpfs, so crun sees a legacy v1 layout, and "
    "each v1 hierarchy where this process is not at the root is bind-mounted from this "
    "process's own cgroup, so the container's cgroups are the same real v1 cgroups, in the "
    "same place, as for the other runtimes."
)


@dataclass(frozen=True, slots=True)
class CliRuntime:
    """A runc-compatible command line: ``BINARY --root ROOT run --bundle B ID``."""

    label: str
    binary: str
    root: str  # the state root, ours alone
    env: dict[str, str]
    mount_ns_fd: int = -1

    def run(self, bundle: str, cid: str) -> Launch:
        argv = (self.binary, "--root", self.root, "run", "--bundle", bundle, cid)
        return Launch(argv=argv, env=self.env, mount_ns_fd=self.mount_ns_fd)

    def delete(self, cid: str) -> Launch:
        return self.command("delete", "--force", cid)

    def command(self, *args: str) -> Launch:
        """``BINARY --root ROOT ARGS...``: create, start, state, ... as an engine runs them."""
        argv = (self.binary, "--root", self.root, *args)
        return Launch(argv=argv, env=self.env, mount_ns_fd=self.mount_ns_fd)

    def leftovers(self) -> list[str]:
        try:
            return sorted(e.name for e in os.scandir(self.root) if e.is_dir())
        except FileNotFoundError:
            return []

    def clean(self, scratch: str) -> list[str]:
        """Force-delete whatever is left in our state root; return what stays."""
        for cid in self.leftovers():
            run_quiet(self.delete(cid), scratch)
        left = self.leftovers()
        if not left:
            shutil.rmtree(self.root, ignore_errors=True)
        return left


def corral_oci_binary() -> str:
    return str(Path(sys.executable).parent / "corral-oci")


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    pythonpath = [str(host.REPO)] + [p for p in env.get("PYTHONPATH", "").split(":") if p]
    env["PYTHONPATH"] = ":".join(pythonpath)
    return env


def _ns_script() -> str:
    """The shell script that prepares crun's mount namespace (run by unshare -m)."""
    own = host.self_cgroup()
    steps = ["set -e"]
    for mount in host.cgroup_mounts():
        if mount.fstype == "cgroup2":
            steps.append(
                "mount -t tmpfs -o size=1m,mode=0755 corral-bench " + shlex.quote(mount.mountpoint)
            )
            continue
        src = host.own_dir(mount, own)
        if src is not None and src != mount.mountpoint:
            steps.append(f"mount --bind {shlex.quote(src)} {shlex.quote(mount.mountpoint)}")
    steps += ["echo ready", "exec cat >/dev/null"]
    return "\n".join(steps)


class NamespaceError(Exception):
    pass


@contextmanager
def crun_mount_namespace() -> Iterator[int]:
    """A private mount namespace in which crun sees a legacy v1 layout; yields an fd of it.

    A holder process builds it and waits; we open its /proc/PID/ns/mnt and let it exit. The
    namespace, and every mount in it, goes away when the fd is closed.
    """
    unshare = shutil.which("unshare")
    if unshare is None:
        raise NamespaceError("unshare(1) is not installed")
    holder = subprocess.Popen(
        [unshare, "--mount", "--propagation", "private", "sh", "-c", _ns_script()],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    fd = -1
    try:
        assert holder.stdout is not None and holder.stdin is not None
        line = holder.stdout.readline().strip()
        if line != "ready":
            holder.stdin.close()
            err = holder.stderr.read() if holder.stderr else ""
            raise NamespaceError(f"could not set up crun's mount namespace: {err.strip()}")
        fd = os.open(f"/proc/{holder.pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        holder.stdin.close()
        holder.wait(timeout=10)
        yield fd
    finally:
        if holder.poll() is None:
            if holder.stdin is not None and not holder.stdin.closed:
                holder.stdin.close()
            try:
                holder.wait(timeout=10)
            except subprocess.TimeoutExpired:
                holder.kill()
                holder.wait()
        for stream in (holder.stdout, holder.stderr):
            if stream is not None:
                stream.close()
        if fd >= 0:
            os.close(fd)


def crun_needs_namespace() -> bool:
    return host.cgroup_layout().startswith("hybrid")
