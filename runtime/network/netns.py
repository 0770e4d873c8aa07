"""Network namespace references, and running code inside one.

A namespace is given as a path (``/proc/PID/ns/net``, ``/run/netns/NAME``) or an open fd; ``None``
means the caller's own. :func:`in_netns` runs a function on a short-lived thread that has called
setns(2): setns with CLONE_NEWNET moves only the calling thread, so the rest of the process stays
where it was, and whatever the thread creates (a netlink socket, a child process, a /proc/sys file
it opens) belongs to the target namespace. No fork, no mount, no pyroute2.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from corral_common import hostsys
from runtime.network.errors import NetworkError

CLONE_NEWNET = hostsys.CLONE_NEWNET
T = TypeVar("T")


def _setns(fd: int, step: str) -> None:
    try:
        hostsys.setns(fd, CLONE_NEWNET, step)
    except hostsys.HostError as e:
        raise NetworkError.from_oserror(step, e) from None


@dataclass(frozen=True)
class Netns:
    """A network namespace: ``path`` or ``fd`` (exactly one), or neither for the caller's own."""

    path: str | None = None
    fd: int | None = None

    @classmethod
    def of(cls, ref: Netns | str | os.PathLike[str] | int | None) -> Netns:
        if isinstance(ref, Netns):
            return ref
        if ref is None:
            return cls()
        if isinstance(ref, int):
            return cls(fd=ref)
        return cls(path=os.fspath(ref))

    @property
    def is_current(self) -> bool:
        return self.path is None and self.fd is None

    def proc_path(self) -> str:
        """A path other processes can open (a CNI plugin's CNI_NETNS)."""
        if self.path is not None:
            return self.path
        if self.fd is not None:
            return f"/proc/{os.getpid()}/fd/{self.fd}"
        return f"/proc/{os.getpid()}/ns/net"

    def __str__(self) -> str:
        if self.path is not None:
            return self.path
        return f"fd {self.fd}" if self.fd is not None else "own netns"

    def inode(self) -> int:
        """Identity of the namespace (st_ino of its nsfs file)."""
        if self.fd is not None:
            return os.fstat(self.fd).st_ino
        return os.stat(self.path or "/proc/thread-self/ns/net").st_ino


def in_netns(ns: Netns | str | int | None, fn: Callable[[], T]) -> T:
    """Call ``fn`` inside ``ns`` (on a thread of its own unless ``ns`` is the caller's)."""
    ns = Netns.of(ns)
    if ns.is_current:
        return fn()
    return _on_thread(fn, ns)


def _on_thread(fn: Callable[[], T], ns: Netns) -> T:
    """Call ``fn`` on a new thread, first moved into ``ns`` unless that is the caller's own."""
    result: list[T] = []
    error: list[BaseException] = []

    def run() -> None:
        try:
            if ns.is_current:
                pass
            elif ns.fd is not None:
                _setns(ns.fd, f"setns({ns})")
            else:
                assert ns.path is not None
                try:
                    fd = os.open(ns.path, os.O_RDONLY | os.O_CLOEXEC)
                except OSError as e:
                    raise NetworkError.from_oserror(f"open netns {ns.path}", e) from None
                try:
                    _setns(fd, f"setns({ns.path})")
                finally:
                    os.close(fd)
            result.append(fn())
        except BaseException as e:  # handed to the caller's thread
            error.append(e)

    t = threading.Thread(target=run, name="corral-netns")
    t.start()
    t.join()
    if error:
        raise error[0]
    return result[0]


class OwnedNetns:
    """A new, anonymous network namespace kept alive by an fd: closing it destroys the namespace
    (once nothing else holds it). No name in /run/netns, nothing to unmount, nothing to leak."""

    def __init__(self) -> None:
        def make() -> int:
            try:
                hostsys.unshare(CLONE_NEWNET)
            except hostsys.HostError as e:
                raise NetworkError.from_oserror("unshare(CLONE_NEWNET)", e) from None
            return os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)

        self.fd: int | None = _on_thread(make, Netns())
        # lo is down in a new namespace; bring it up so 127.0.0.1 works inside.
        in_netns(self.ns, lo_up)

    @property
    def ns(self) -> Netns:
        if self.fd is None:
            raise NetworkError("netns", "already closed")
        return Netns(fd=self.fd)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> OwnedNetns:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def lo_up() -> None:
    """Bring lo up in the calling thread's network namespace (SIOCGIFFLAGS/SIOCSIFFLAGS)."""
    import fcntl
    import socket
    import struct

    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s, siocgifflags, req))[1]
        fcntl.ioctl(s, siocsifflags, struct.pack("16sH14x", b"lo", flags | iff_up))


def write_sysctl(ns: Netns | str | int | None, name: str, value: str) -> None:
    """Write /proc/sys/<name> (dots for slashes) as seen from ``ns``: net.* is per namespace."""
    path = "/proc/sys/" + name.replace(".", "/")

    def write() -> None:
        try:
            with open(path, "w") as f:
                f.write(value)
        except OSError as e:
            raise NetworkError.from_oserror(f"sysctl {name}={value}", e) from None

    in_netns(ns, write)


def read_sysctl(ns: Netns | str | int | None, name: str) -> str:
    path = "/proc/sys/" + name.replace(".", "/")

    def read() -> str:
        with open(path) as f:
            return f.read().strip()

    return in_netns(ns, read)
