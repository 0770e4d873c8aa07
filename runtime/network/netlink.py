"""A small typed wrapper over pyroute2's IPRoute, opened inside a given network namespace.

pyroute2 is imported here, when the first :class:`Rtnl` is opened, never at module import: it
costs over 100 ms, which no CLI command that does not touch the network may pay. The netlink
socket is created on a thread that has joined the namespace (see :mod:`runtime.network.netns`)
and handed to IPRoute as a file descriptor, so pyroute2 forks no helper process.

Every method is idempotent where the kernel lets it be: "add" treats EEXIST as done after checking
that what exists is what was asked for, "delete" treats ENODEV/ESRCH/EADDRNOTAVAIL as done.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
from dataclasses import dataclass
from typing import Any

from runtime.network.errors import NetlinkError
from runtime.network.netns import Netns, in_netns

NETLINK_ROUTE = 0
# Our routes carry this rtm_protocol so we can find (and remove) exactly the ones we made.
RTPROT_CORRAL = 199
IFF_UP = 0x1
_GONE = (errno.ENODEV, errno.ESRCH, errno.EADDRNOTAVAIL, errno.ENOENT)


# RTM_DELLINK by name, without pyroute2 (see delete_link)
_RTM_DELLINK = 17
_NLMSG_ERROR = 2
_NLM_F_REQUEST_ACK = 0x1 | 0x4
_IFLA_IFNAME = 3


def delete_link(ns: Netns | str | int | None, name: str) -> bool:
    """Delete the link ``name`` in ``ns`` with one RTM_DELLINK request; False if there was none.

    Written out by hand (a 40-byte request and its ack) rather than through :class:`Rtnl`: a
    pod's teardown runs in a process of its own after the pod ends, where importing pyroute2
    and starting its loop was most of the cost of stopping a pod."""
    step = f"link del {name} in {Netns.of(ns)}"
    raw = name.encode()
    if not raw or len(raw) >= 16 or b"\0" in raw:
        raise NetlinkError(step, "not an interface name", errno.EINVAL)
    attr = raw + b"\0"
    attr += b"\0" * (-len(attr) % 4)
    body = struct.pack("=BxHiII", socket.AF_UNSPEC, 0, 0, 0, 0)
    body += struct.pack("=HH", 4 + len(raw) + 1, _IFLA_IFNAME) + attr
    msg = struct.pack("=IHHII", 16 + len(body), _RTM_DELLINK, _NLM_F_REQUEST_ACK, 1, 0) + body
    try:
        sock = in_netns(
            ns, lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        )
    except OSError as e:
        raise NetlinkError.from_oserror(f"netlink socket in {Netns.of(ns)}", e) from None
    with sock:
        try:
            sock.send(msg)
            reply = sock.recv(65536)
        except OSError as e:
            raise NetlinkError.from_oserror(step, e) from None
    # the ack: a header of type NLMSG_ERROR, then the (negative) errno, 0 for success
    if len(reply) < 20:
        raise NetlinkError(step, f"short netlink reply ({len(reply)} bytes)", errno.EPROTO)
    _, kind, _, seq, _ = struct.unpack_from("=IHHII", reply)
    (code,) = struct.unpack_from("=i", reply, 16)
    if kind != _NLMSG_ERROR or seq != 1:
        raise NetlinkError(step, f"unexpected netlink reply type {kind}", errno.EPROTO)
    if code == 0:
        return True
    if -code in _GONE:
        return False
    raise NetlinkError(step, os.strerror(-code), -code)


@dataclass(frozen=True)
class Link:
    index: int
    name: str
    kind: str  # "" for plain devices such as lo
    master: int  # 0 when not enslaved
    up: bool
    mtu: int
    peer_index: int = 0  # a veth's peer's ifindex (in the peer's namespace), else 0


@dataclass(frozen=True)
class Route:
    dst: ipaddress.IPv4Network
    gateway: ipaddress.IPv4Address | None
    proto: int


def _errno(exc: BaseException) -> int:
    return int(getattr(exc, "code", 0) or 0)


def _random_mac() -> str:
    """A random locally administered unicast MAC address."""
    octets = bytearray(os.urandom(6))
    octets[0] = (octets[0] & 0xFE) | 0x02
    return ":".join(f"{b:02x}" for b in octets)


class Rtnl:
    """RTNL requests in one network namespace. Use as a context manager; not thread-safe
    (one per thread), cheap to open (a socket, no fork)."""

    def __init__(self, ns: Netns | str | int | None = None) -> None:
        from pyroute2 import IPRoute

        self.ns = Netns.of(ns)
        try:
            sock = in_netns(
                self.ns, lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_ROUTE)
            )
        except OSError as e:
            raise NetlinkError.from_oserror(f"netlink socket in {self.ns}", e) from None
        self._ipr: Any = IPRoute(fileno=sock.detach())

    def close(self) -> None:
        self._ipr.close()

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, step: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from pyroute2.netlink.exceptions import NetlinkError as PyNetlinkError

        try:
            return fn(*args, **kwargs)
        except PyNetlinkError as e:
            code = _errno(e)
            raise NetlinkError(f"{step} in {self.ns}", str(e.args[-1]), code) from None

    # links

    @staticmethod
    def _link(msg: Any) -> Link:
        return Link(
            index=int(msg["index"]),
            name=str(msg.get("ifname")),
            kind=str(msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND") or ""),
            master=int(msg.get("master") or 0),
            up=bool(int(msg["flags"]) & IFF_UP),
            mtu=int(msg.get("mtu") or 0),
            peer_index=int(msg.get("link") or 0),
        )

    def link(self, name: str) -> Link | None:
        try:
            msgs = self._call(f"link get {name}", self._ipr.link, "get", ifname=name)
        except NetlinkError as e:
            if e.errno in _GONE:
                return None
            raise
        return self._link(msgs[0])

    def links(self, kind: str | None = None) -> list[Link]:
        found = [self._link(m) for m in self._call("link dump", self._ipr.link, "dump")]
        return [lk for lk in found if kind is None or lk.kind == kind]

    def ensure_bridge(self, name: str, mtu: int | None = None) -> Link:
        """The bridge ``name``, created if absent; an existing non-bridge device is an error.

        Its MAC address is set explicitly (a random one when it is made, its own otherwise):
        a bridge whose address the kernel assigned takes the lowest of its ports' and changes
        as pods come and go, and every pod whose neighbour entry holds the gateway's old
        address loses its packets until it asks again (seconds: timed out connections)."""
        existing = self.link(name)
        if existing is None:
            extra: dict[str, Any] = {"mtu": mtu} if mtu else {}
            extra["address"] = _random_mac()
            try:
                self._call(
                    f"link add bridge {name}",
                    self._ipr.link,
                    "add",
                    ifname=name,
                    kind="bridge",
                    br_stp_state=0,
                    **extra,
                )
            except NetlinkError as e:
                if e.errno != errno.EEXIST:
                    raise
            existing = self.link(name)
            if existing is None:
                raise NetlinkError(f"link add bridge {name} in {self.ns}", "vanished", errno.ENODEV)
        if existing.kind != "bridge":
            raise NetlinkError(
                f"link add bridge {name} in {self.ns}",
                f"a {existing.kind or 'non-bridge'} device of that name exists",
                errno.EEXIST,
            )
        self._pin_address(existing.index, name)
        if not existing.up:
            self.set_up(existing.index, name)
        return existing

    def _pin_address(self, index: int, name: str) -> None:
        """Set the device's address to itself: from then on the kernel keeps it (an address
        set by hand is never recalculated from a bridge's ports)."""
        (msg,) = self._call(f"link get {name}", self._ipr.link, "get", index=index)
        address = msg.get("address")
        if address:
            self._call(
                f"link set {name} address {address}",
                self._ipr.link,
                "set",
                index=index,
                address=address,
            )

    def run(self, fn: Any) -> Any:
        """``fn(self)``: several requests in one call (see ``node._OnThread``)."""
        return fn(self)

    def add_veth(
        self,
        name: str,
        peer: str,
        peer_ns: Netns,
        mtu: int | None = None,
        master: int | None = None,
        up: bool = False,
    ) -> None:
        """A veth pair: ``name`` here, ``peer`` created directly inside ``peer_ns``; in the same
        request ``name`` is enslaved to ``master`` and brought ``up`` when given. Raises
        NetlinkError(EEXIST) if either name is taken (the caller decides what that means)."""
        peer_fd: int | None = peer_ns.fd
        opened = False
        if peer_fd is None:
            try:
                peer_fd = os.open(peer_ns.path or "/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            except OSError as e:
                raise NetlinkError.from_oserror(f"open netns {peer_ns}", e) from None
            opened = True
        extra: dict[str, Any] = {"mtu": mtu} if mtu else {}
        peer_spec: dict[str, Any] = {"ifname": peer, "net_ns_fd": peer_fd, **extra}
        if master is not None:
            extra["master"] = master
        if up:
            extra["state"] = "up"
        try:
            self._call(
                f"link add veth {name}({peer} in {peer_ns})",
                self._ipr.link,
                "add",
                ifname=name,
                kind="veth",
                peer=peer_spec,
                **extra,
            )
        finally:
            if opened:
                os.close(peer_fd)

    def set_up(self, index: int, name: str = "", master: int | None = None) -> None:
        extra: dict[str, Any] = {"master": master} if master is not None else {}
        self._call(
            f"link set {name or index} up", self._ipr.link, "set", index=index, state="up", **extra
        )

    def set_hairpin(self, index: int, name: str = "") -> None:
        """Let the bridge send a frame back out of the port it came in on: with br_netfilter, a
        pod's packet to its own hostPort is DNATed at the bridge and must go back to it."""
        self._call(
            f"brport set {name or index} hairpin", self._ipr.brport, "set", index=index, mode=1
        )

    def delete_link(self, name: str) -> bool:
        """Delete ``name``; False if it did not exist (the module's :func:`delete_link`)."""
        return delete_link(self.ns, name)

    # addresses and routes

    def ensure_addr(self, index: int, iface: ipaddress.IPv4Interface, name: str = "") -> None:
        try:
            self._call(
                f"addr add {iface} dev {name or index}",
                self._ipr.addr,
                "add",
                index=index,
                address=str(iface.ip),
                prefixlen=iface.network.prefixlen,
            )
        except NetlinkError as e:
            if e.errno != errno.EEXIST:
                raise

    def delete_addr(self, index: int, iface: ipaddress.IPv4Interface, name: str = "") -> bool:
        """Remove ``iface`` from the device; False if it did not have it."""
        try:
            self._call(
                f"addr del {iface} dev {name or index}",
                self._ipr.addr,
                "del",
                index=index,
                address=str(iface.ip),
                prefixlen=iface.network.prefixlen,
            )
        except NetlinkError as e:
            if e.errno in _GONE:
                return False
            raise
        return True

    def addrs(self, index: int) -> list[ipaddress.IPv4Interface]:
        msgs = self._call(f"addr dump {index}", self._ipr.addr, "dump", index=index)
        return [
            ipaddress.IPv4Interface(f"{m.get('address')}/{m['prefixlen']}")
            for m in msgs
            if m["family"] == socket.AF_INET
        ]

    def replace_route(
        self,
        dst: ipaddress.IPv4Network,
        gateway: ipaddress.IPv4Address,
        proto: int = RTPROT_CORRAL,
    ) -> None:
        self._call(
            f"route replace {dst} via {gateway}",
            self._ipr.route,
            "replace",
            dst=str(dst),
            gateway=str(gateway),
            proto=proto,
        )

    def delete_route(self, dst: ipaddress.IPv4Network, proto: int = RTPROT_CORRAL) -> bool:
        try:
            self._call(f"route del {dst}", self._ipr.route, "del", dst=str(dst), proto=proto)
        except NetlinkError as e:
            if e.errno in _GONE:
                return False
            raise
        return True

    def routes(self, proto: int | None = None) -> list[Route]:
        msgs = self._call("route dump", self._ipr.route, "dump", family=socket.AF_INET)
        out = []
        for m in msgs:
            if proto is not None and m["proto"] != proto:
                continue
            if m.get("table") not in (None, 254):  # main table only
                continue
            dst = m.get("dst") or "0.0.0.0"
            gw = m.get("gateway")
            out.append(
                Route(
                    dst=ipaddress.IPv4Network(f"{dst}/{m['dst_len']}", strict=False),
                    gateway=ipaddress.IPv4Address(gw) if gw else None,
                    proto=int(m["proto"]),
                )
            )
        return out


LOOPBACK_INDEX = 1  # lo's ifindex in every network namespace


def configure_pod_interface(
    ns: Netns,
    ifname: str,
    iface: ipaddress.IPv4Interface,
    gateway: ipaddress.IPv4Address,
    index: int = 0,
) -> None:
    """Inside the pod's namespace: lo up, ``ifname`` up with ``iface``, default route via
    ``gateway``. Idempotent. ``index``: ``ifname``'s ifindex when the caller knows it (its
    veth peer's): four requests then, none of them a look-up."""
    with Rtnl(ns) as rt:
        if index:
            rt.set_up(LOOPBACK_INDEX, "lo")  # an interface already up stays as it is
        else:
            lo = rt.link("lo")
            if lo is not None and not lo.up:
                rt.set_up(lo.index, "lo")
            dev = rt.link(ifname)
            if dev is None:
                raise NetlinkError(f"link get {ifname} in {ns}", "no such device", errno.ENODEV)
            index = dev.index
        rt.ensure_addr(index, iface, ifname)
        rt.set_up(index, ifname)
        rt._call(
            f"route replace default via {gateway}",
            rt._ipr.route,
            "replace",
            dst="0.0.0.0/0",
            gateway=str(gateway),
            oif=index,
        )
