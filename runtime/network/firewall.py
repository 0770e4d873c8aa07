"""hostPort DNAT (with hairpin) and optional outbound masquerade: one interface, two drivers.

Everything lives in the node's network namespace, in objects of our own: with nftables a table
(``ip corral`` by default) holding a ``hostports`` map from (protocol, port) to (pod address,
port), looked up by one rule in a prerouting and an output nat chain for traffic to any local
address; with iptables, chains ``CORRAL-HOSTPORTS`` and ``CORRAL-POSTROUTING`` in the nat table,
one DNAT rule per mapping tagged with the pod id. Hairpin: traffic from a pod that was DNATed back
into the pod CIDR is masqueraded, so a pod reaching its own (or a neighbour's) hostPort gets the
replies through the node rather than straight over the bridge with the wrong source.

Teardown takes exactly the mappings a pod added, and only while they still point at that pod.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from runtime.network.config import NetworkConfig, PortMapping
from runtime.network.errors import FirewallError, HostPortConflict, NetworkError
from runtime.network.netns import Netns, in_netns


@dataclass(frozen=True)
class HostPort:
    """One installed mapping as read back from the kernel."""

    protocol: str
    host_port: int
    ip: ipaddress.IPv4Address
    container_port: int
    pod_id: str = ""  # known to the iptables driver only (rule comment)


def _run(ns: Netns, argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    def go() -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                argv, input=stdin, capture_output=True, text=True, timeout=30,
                stdin=None if stdin is not None else subprocess.DEVNULL,
            )  # fmt: skip
        except OSError as e:
            raise FirewallError.from_oserror(argv[0], e) from None

    return in_netns(ns, go)


class Firewall(Protocol):
    def ensure(self) -> None: ...
    def add_ports(
        self, pod_id: str, ip: ipaddress.IPv4Address, ports: Iterable[PortMapping]
    ) -> None: ...  # noqa: E501
    def remove_ports(
        self, pod_id: str, ip: ipaddress.IPv4Address, ports: Iterable[PortMapping]
    ) -> None: ...  # noqa: E501
    def hostports(self) -> list[HostPort]: ...
    def destroy(self) -> None: ...


class _Locked:
    def __init__(self, config: NetworkConfig, ns: Netns) -> None:
        self.config = config
        self.ns = ns

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        d: Path = self.config.directory
        d.mkdir(parents=True, exist_ok=True)
        fd = os.open(d / "firewall.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _masquerade_exempt(self) -> ipaddress.IPv4Network:
        return self.config.cluster_cidr or self.config.pod_cidr

    def hostports(self) -> list[HostPort]:
        raise NotImplementedError

    def _unmapped(self, ip: ipaddress.IPv4Address, ports: list[PortMapping]) -> list[PortMapping]:
        """Of ``ports`` (for the pod at ``ip``), those not mapped yet; HostPortConflict, before
        anything is added, when one is mapped to another pod. Call it holding the lock."""
        have = {(h.protocol, h.host_port): h for h in self.hostports()}
        new = []
        for p in ports:
            h = have.get((p.protocol, p.host_port))
            if h is None:
                new.append(p)
            elif (h.ip, h.container_port) != (ip, p.container_port):
                raise HostPortConflict(
                    f"hostPort {p.host_port}/{p.protocol}", f"already mapped to {h.ip}"
                )
        return new


class Nftables(_Locked):
    def __init__(self, config: NetworkConfig, ns: Netns, table: str | None = None) -> None:
        super().__init__(config, ns)
        self.table = table or config.name.replace(".", "_").replace("-", "_")

    def _nft(self, script: str, step: str) -> None:
        res = _run(self.ns, ["nft", "-f", "-"], script)
        if res.returncode != 0:
            raise FirewallError(f"nft {step} in {self.ns}", res.stderr.strip())

    def ensure(self) -> None:
        t = f"ip {self.table}"
        cidr = self.config.pod_cidr
        lines = [
            f"add table {t}",
            f"add map {t} hostports {{ type inet_proto . inet_service : ipv4_addr . inet_service; }}",  # noqa: E501
            f"add chain {t} prerouting {{ type nat hook prerouting priority dstnat; policy accept; }}",  # noqa: E501
            f"add chain {t} output {{ type nat hook output priority -100; policy accept; }}",
            f"add chain {t} postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}",  # noqa: E501
            f"flush chain {t} prerouting",
            f"flush chain {t} output",
            f"flush chain {t} postrouting",
            f"add rule {t} prerouting fib daddr type local"
            " dnat ip to meta l4proto . th dport map @hostports",
            f"add rule {t} output ip daddr != 127.0.0.0/8 fib daddr type local"
            " dnat ip to meta l4proto . th dport map @hostports",
            f"add rule {t} postrouting ct status dnat ip saddr {cidr} ip daddr {cidr} masquerade",
        ]
        if self.config.masquerade:
            lines.append(
                f"add rule {t} postrouting ip saddr {cidr} ip daddr != {self._masquerade_exempt()}"
                f' oifname != "{self.config.bridge}" masquerade'
            )
        with self.locked():
            self._nft("\n".join(lines) + "\n", "ensure")

    def hostports(self) -> list[HostPort]:
        res = _run(self.ns, ["nft", "-j", "list", "map", "ip", self.table, "hostports"])
        if res.returncode != 0:
            if "No such file" in res.stderr:
                return []
            raise FirewallError(f"nft list map in {self.ns}", res.stderr.strip())
        out = []
        for obj in json.loads(res.stdout)["nftables"]:
            for key, val in obj.get("map", {}).get("elem", []):
                proto, hport = key["concat"]
                ip, cport = val["concat"]
                out.append(HostPort(proto, int(hport), ipaddress.IPv4Address(ip), int(cport)))
        return out

    def add_ports(
        self, pod_id: str, ip: ipaddress.IPv4Address, ports: Iterable[PortMapping]
    ) -> None:
        ports = list(ports)
        if not ports:
            return
        with self.locked():
            self._unmapped(ip, ports)  # nft's add element is idempotent for ours
            elems = ", ".join(
                f"{p.protocol} . {p.host_port} : {ip} . {p.container_port}" for p in ports
            )  # noqa: E501
            self._nft(
                f"add element ip {self.table} hostports {{ {elems} }}\n", f"hostports {pod_id}"
            )  # noqa: E501

    def remove_ports(
        self, pod_id: str, ip: ipaddress.IPv4Address, ports: Iterable[PortMapping]
    ) -> None:
        ports = list(ports)
        if not ports:
            return
        with self.locked():
            have = {(h.protocol, h.host_port): h for h in self.hostports()}
            mine = [
                p
                for p in ports
                if (h := have.get((p.protocol, p.host_port))) is not None
                and (h.ip, h.container_port) == (ip, p.container_port)
            ]
            if mine:
                elems = ", ".join(f"{p.protocol} . {p.host_port}" for p in mine)
                self._nft(
                    f"delete element ip {self.table} hostports {{ {elems} }}\n", f"unmap {pod_id}"
                )  # noqa: E501

    def destroy(self) -> None:
        with self.locked():
            res = _run(self.ns, ["nft", "delete", "table", "ip", self.table])
            if res.returncode != 0 and "No such file" not in res.stderr:
                raise FirewallError(f"nft delete table in {self.ns}", res.stderr.strip())

    def present(self) -> bool:
        return _run(self.ns, ["nft", "list", "table", "ip", self.table]).returncode == 0


HOSTPORTS = "CORRAL-HOSTPORTS"
POSTROUTING = "CORRAL-POSTROUTING"
_JUMPS = (
    ("PREROUTING", ["-m", "addrtype", "--dst-type", "LOCAL", "-j", HOSTPORTS]),
    (
        "OUTPUT",
        ["!", "-d", "127.0.0.0/8", "-m", "addrtype", "--dst-type", "LOCAL", "-j", HOSTPORTS],
    ),  # noqa: E501
    ("POSTROUTING", ["-j", POSTROUTING]),
)


class Iptables(_Locked):
    """The fallback when nft is missing (or asked for): iptables in the nat table."""

    binary = "iptables"

    def _ipt(self, *args: str, ok: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
        res = _run(self.ns, [self.binary, "-w", "5", "-t", "nat", *args])
        if res.returncode not in ok:
            raise FirewallError(f"iptables {' '.join(args)} in {self.ns}", res.stderr.strip())
        return res

    def _ensure_chain(self, chain: str) -> None:
        if self._ipt("-n", "-L", chain, ok=(0, 1, 3)).returncode != 0:
            self._ipt("-N", chain)

    def _ensure_rule(self, chain: str, spec: list[str]) -> None:
        if self._ipt("-C", chain, *spec, ok=(0, 1, 2)).returncode != 0:
            self._ipt("-A", chain, *spec)

    def ensure(self) -> None:
        cidr = str(self.config.pod_cidr)
        with self.locked():
            self._ensure_chain(HOSTPORTS)
            self._ensure_chain(POSTROUTING)
            self._ipt("-F", POSTROUTING)
            self._ipt(
                "-A", POSTROUTING, "-m", "conntrack", "--ctstate", "DNAT", "-s", cidr, "-d", cidr,
                "-j", "MASQUERADE",
            )  # fmt: skip
            if self.config.masquerade:
                self._ipt(
                    "-A", POSTROUTING, "-s", cidr, "!", "-d", str(self._masquerade_exempt()),
                    "!", "-o", self.config.bridge, "-j", "MASQUERADE",
                )  # fmt: skip
            for chain, spec in _JUMPS:
                self._ensure_rule(chain, spec)

    @staticmethod
    def _spec(pod_id: str, ip: ipaddress.IPv4Address, p: PortMapping) -> list[str]:
        return [
            "-p", p.protocol, "-m", p.protocol, "--dport", str(p.host_port),
            "-m", "comment", "--comment", f"corral:{pod_id}",
            "-j", "DNAT", "--to-destination", f"{ip}:{p.container_port}",
        ]  # fmt: skip

    def hostports(self) -> list[HostPort]:
        res = self._ipt("-S", HOSTPORTS, ok=(0, 1))
        out = []
        for line in res.stdout.splitlines():
            words = line.split()
            if words[:2] != ["-A", HOSTPORTS] or "--to-destination" not in words:
                continue
            proto = words[words.index("-p") + 1]
            hport = int(words[words.index("--dport") + 1])
            dest = words[words.index("--to-destination") + 1]
            comment = words[words.index("--comment") + 1] if "--comment" in words else ""
            addr, _, cport = dest.partition(":")
            pod = comment.strip('"').removeprefix("corral:")
            out.append(HostPort(proto, hport, ipaddress.IPv4Address(addr), int(cport), pod))
        return out

    def add_ports(
        self, pod_id: str, ip: ipaddress.IPv4Address, ports: Iterable[PortMapping]
    ) -> None:
        ports = list(ports)
        if not ports:
            return
        with self.locked():
            for p in self._unmapped(ip, ports):
                self._ipt("-A", HOSTPORTS, *self._spec(pod_id, ip, p))

    def remove_ports(
        self, pod_id: str, ip: ipaddress.IPv4Address, ports: Iterable[PortMapping]
    ) -> None:
        with self.locked():
            for p in ports:
                self._ipt("-D", HOSTPORTS, *self._spec(pod_id, ip, p), ok=(0, 1, 2))

    def destroy(self) -> None:
        with self.locked():
            for chain, spec in _JUMPS:
                self._ipt("-D", chain, *spec, ok=(0, 1, 2))
            for chain in (HOSTPORTS, POSTROUTING):
                self._ipt("-F", chain, ok=(0, 1, 3))
                self._ipt("-X", chain, ok=(0, 1, 3))

    def present(self) -> bool:
        return self._ipt("-n", "-L", HOSTPORTS, ok=(0, 1, 3)).returncode == 0


def firewall_for(config: NetworkConfig, ns: Netns) -> Nftables | Iptables:
    """The driver the config asks for; ``auto`` prefers nft, then iptables."""
    kind = config.firewall
    if kind == "auto":
        kind = "nftables" if shutil.which("nft") else "iptables"
    if kind == "nftables":
        return Nftables(config, ns)
    if not shutil.which("iptables"):
        raise NetworkError("firewall", "neither nft nor iptables is installed")
    return Iptables(config, ns)
