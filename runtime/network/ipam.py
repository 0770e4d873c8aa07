"""IP address management for one node's pod CIDR, on disk, safe across processes and threads.

Layout of the network's directory (like CNI host-local)::

    lock            flock(2)ed for every operation (each call opens its own file description,
                    so threads of one process exclude each other as processes do)
    ips/<address>   one file per allocated address, holding its owner (a pod id)
    last            the last address handed out: allocation goes round-robin from there, so a
                    freed address is not reused at once

An address file is written whole to a temporary name and link(2)ed into place, which fails if
the name exists: even without the lock two owners could never share an address, and a crash
leaves either no file or a complete one. Nothing lives in memory: a restarted process sees
exactly what is on disk.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from runtime.network.errors import IpamExhausted, NetworkError

_OWNER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:@-]{0,252}$")
# an address file's name: a dotted quad as ``str(IPv4Address)`` writes it (what
# ``IPv4Address`` accepts, without its per-octet parse of every file of every scan)
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_ADDRESS = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")


def check_owner(owner: str) -> str:
    if not _OWNER.match(owner):
        raise NetworkError("ipam", f"{owner!r} is not a valid pod id")
    return owner


class Ipam:
    def __init__(
        self,
        directory: str | os.PathLike[str],
        cidr: ipaddress.IPv4Network,
        reserved: Iterable[ipaddress.IPv4Address] = (),
    ) -> None:
        self.dir = Path(directory)
        self.cidr = cidr
        # network, gateway (first host) and broadcast are never handed out
        self.reserved = {cidr.network_address, cidr.network_address + 1, cidr.broadcast_address}
        self.reserved.update(reserved)
        self._ips = self.dir / "ips"

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the network's lock (also used by the node code for its own records)."""
        try:
            self._ips.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as e:
            raise NetworkError.from_oserror(f"ipam lock {self.dir}", e) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _scan(self) -> dict[ipaddress.IPv4Address, str]:
        """Every address file's owner."""
        return {ipaddress.IPv4Address(name): who for name, who in self._scan_names().items()}

    def _scan_names(self) -> dict[str, str]:
        """Every address file's owner, by the file's name. Every allocation and release reads
        them all (a node's pods): through the directory's fd, with plain reads (no path
        joins, no text file objects), the names left as text (temporary files, whose names
        start with a dot, and strays are passed over)."""
        out = {}
        match = _ADDRESS.fullmatch
        dfd = os.open(self._ips, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for name in os.listdir(dfd):
                if match(name) is None:
                    continue
                owner = self._read(dfd, name)
                if owner is not None:
                    out[name] = owner
        finally:
            os.close(dfd)
        return out

    def _read(self, dfd: int, name: str) -> str | None:
        """The owner in address file ``name`` of the directory ``dfd``; None: gone."""
        try:
            fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dfd)
        except FileNotFoundError:
            return None
        try:
            return os.read(fd, 1024).decode().strip()
        finally:
            os.close(fd)

    def allocations(self) -> dict[ipaddress.IPv4Address, str]:
        """Every allocated address and its owner."""
        with self.locked():
            return self._scan()

    def lookup(self, owner: str) -> ipaddress.IPv4Address | None:
        with self.locked():
            return self._owned(owner)

    def _owned(self, owner: str) -> ipaddress.IPv4Address | None:
        for ip, who in self._scan().items():
            if who == owner:
                return ip
        return None

    def _claim(self, ip: ipaddress.IPv4Address, owner: str) -> bool:
        tmp = self._ips / f".{ip}.{os.getpid()}.{id(self)}"
        tmp.write_text(owner + "\n")
        try:
            os.link(tmp, self._ips / str(ip))
            return True
        except FileExistsError:
            return False
        finally:
            tmp.unlink()

    def allocate(
        self, owner: str, want: ipaddress.IPv4Address | None = None
    ) -> ipaddress.IPv4Address:
        """An address for ``owner``: the one it already has, else ``want`` if given and free,
        else the next free one after the last handed out."""
        check_owner(owner)
        with self.locked():
            allocated = self._scan_names()  # one read of every owner, for both questions
            have = next((name for name, who in allocated.items() if who == owner), None)
            if have is not None:
                return ipaddress.IPv4Address(have)
            if want is not None:
                if want not in self.cidr or want in self.reserved:
                    raise NetworkError(
                        "ipam", f"{want} is not an assignable address of {self.cidr}"
                    )
                if not self._claim(want, owner):
                    raise NetworkError("ipam", f"{want} is already allocated")
                return want
            taken = set(allocated)
            hosts = int(self.cidr.broadcast_address) - int(self.cidr.network_address) - 1
            first = int(self.cidr.network_address) + 1
            start = first
            last = self._last()
            if last is not None and last in self.cidr:
                start = int(last) + 1
            for i in range(hosts):
                ip = ipaddress.IPv4Address(first + (start - first + i) % hosts)
                if ip in self.reserved or str(ip) in taken:
                    continue
                if self._claim(ip, owner):
                    self._set_last(ip)
                    return ip
            raise IpamExhausted("ipam", f"no free address in {self.cidr}")

    def _set_last(self, ip: ipaddress.IPv4Address) -> None:
        """Where the next search starts: a hint, read and written under the lock only, so
        written in place (no temporary file renamed over it, no fsync: every allocation
        would wait for the disk); a torn one reads as none (``_last``)."""
        fd = os.open(self.dir / "last", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, f"{ip}\n".encode())
        finally:
            os.close(fd)

    def _last(self) -> ipaddress.IPv4Address | None:
        try:
            return ipaddress.IPv4Address((self.dir / "last").read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def release(self, owner: str) -> ipaddress.IPv4Address | None:
        """Free ``owner``'s address; None if it had none."""
        with self.locked():
            ip = self._owned(owner)
            if ip is not None:
                (self._ips / str(ip)).unlink(missing_ok=True)
            return ip

    def gc(self, live: Iterable[str]) -> dict[ipaddress.IPv4Address, str]:
        """Free every address whose owner is not in ``live``; returns what was freed."""
        keep = set(live)
        freed = {}
        with self.locked():
            for ip, owner in self._scan().items():
                if owner not in keep:
                    (self._ips / str(ip)).unlink(missing_ok=True)
                    freed[ip] = owner
        return freed
