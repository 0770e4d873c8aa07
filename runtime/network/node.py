"""A node's pod network: bridge, per-pod veth, IPAM, hostPorts, routes to other nodes.

Every kernel object is made in the node's network namespace (``node_netns``; None is the
caller's own, as on a real node) and in the pod's. Setup is idempotent, teardown removes exactly
what setup made, and everything a pod has is recorded on disk first (``pods/<id>.json`` next to
the IPAM files), so teardown and :meth:`NodeNetwork.gc` work from any process, after restarts.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import ipaddress
import json
import os
import re
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from corral_common import hostsys
from runtime.network.config import NetworkConfig, PortMapping
from runtime.network.errors import NetlinkError, NetworkError
from runtime.network.firewall import Iptables, Nftables, firewall_for
from runtime.network.ipam import Ipam, check_owner
from runtime.network.netlink import delete_link
from runtime.network.netns import Netns, write_sysctl

if TYPE_CHECKING:
    from runtime.network.netlink import Link, Route, Rtnl

VETH_PREFIX = "cr"
_VETH = re.compile(rf"^{VETH_PREFIX}[0-9a-f]{{12}}$")


def veth_name(pod_id: str) -> str:
    """The node end of a pod's veth: stable, unique per pod id, within IFNAMSIZ."""
    return VETH_PREFIX + hashlib.sha256(pod_id.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class PodNetwork:
    """What setup made for one pod (also its on-disk record)."""

    pod_id: str
    ip: ipaddress.IPv4Address
    prefixlen: int
    gateway: ipaddress.IPv4Address
    host_veth: str
    ifname: str = "eth0"
    ports: tuple[PortMapping, ...] = ()

    @property
    def interface(self) -> ipaddress.IPv4Interface:
        return ipaddress.IPv4Interface(f"{self.ip}/{self.prefixlen}")

    def to_json(self) -> dict[str, Any]:
        return {
            "podId": self.pod_id,
            "ip": str(self.ip),
            "prefixLength": self.prefixlen,
            "gateway": str(self.gateway),
            "hostVeth": self.host_veth,
            "ifname": self.ifname,
            "ports": [
                {"hostPort": p.host_port, "containerPort": p.container_port, "protocol": p.protocol}
                for p in self.ports
            ],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PodNetwork:
        return cls(
            pod_id=data["podId"],
            ip=ipaddress.IPv4Address(data["ip"]),
            prefixlen=int(data["prefixLength"]),
            gateway=ipaddress.IPv4Address(data["gateway"]),
            host_veth=data["hostVeth"],
            ifname=data.get("ifname", "eth0"),
            ports=tuple(
                PortMapping(p["hostPort"], p["containerPort"], p["protocol"])
                for p in data.get("ports", [])
            ),
        )


def route_changes(
    have: Iterable[Route], want: Mapping[ipaddress.IPv4Network, ipaddress.IPv4Address]
) -> tuple[list[ipaddress.IPv4Network], dict[ipaddress.IPv4Network, ipaddress.IPv4Address]]:
    """host-gw as a diff: of our routes ``have``, the destinations to delete (no longer wanted,
    or via another node), and of ``want`` (pod CIDR -> node address) the routes to add or
    replace. Nothing when the kernel already has exactly what is wanted."""
    have = list(have)
    stale = sorted(r.dst for r in have if want.get(r.dst) != r.gateway)
    current = {r.dst: r.gateway for r in have}
    missing = {dst: via for dst, via in sorted(want.items()) if current.get(dst) != via}
    return stale, missing


@dataclass
class GcReport:
    pods: list[str] = field(default_factory=list)  # torn down (had a record)
    addresses: list[ipaddress.IPv4Address] = field(default_factory=list)  # freed, no record
    veths: list[str] = field(default_factory=list)  # leaked node-side veths removed
    hostports: int = 0  # mappings to addresses no live pod holds


class _OnThread:
    """An ``Rtnl`` that lives on one thread of its own: every method call is run there and
    waited for (``run(fn)``: several requests in one hand-over). pyroute2's socket belongs to
    the thread that uses it (its event loop), so callers on other threads hand their requests
    over instead of sharing it."""

    def __init__(self, ns: Netns) -> None:
        import concurrent.futures

        from runtime.network.netlink import Rtnl

        self._pool = concurrent.futures.ThreadPoolExecutor(1, "corral-netlink")
        self._rt: Any = self._pool.submit(Rtnl, ns).result()

    def __getattr__(self, name: str) -> Any:
        fn = getattr(self._rt, name)
        if not callable(fn):
            return fn

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._pool.submit(fn, *args, **kwargs).result()

        return call

    def close(self) -> None:
        try:
            self._pool.submit(self._rt.close).result()
        finally:
            self._pool.shutdown(wait=False)


class NodeNetwork:
    """A node's pod network. ``shared``: one netlink socket into the node namespace, on a
    thread of its own, for every call (``close`` ends both) instead of a socket (and a thread
    to make it in the namespace) per call; the instances of :func:`node_network` are."""

    def __init__(
        self,
        config: NetworkConfig,
        node_netns: Netns | str | os.PathLike[str] | int | None = None,
        shared: bool = False,
    ) -> None:
        self.config = config
        self.ns = Netns.of(node_netns)
        self.ipam = Ipam(config.directory, config.pod_cidr)
        self._pods = config.directory / "pods"
        self._firewall: Nftables | Iptables | None = None
        self._ensured = False
        self._shared = shared
        self._mu = threading.Lock()
        self._node_rtnl: Any = None
        # the bridge's ifindex as last seen (0: look it up): a pod's veth is made enslaved to
        # it without asking first; a stale one (the bridge made again) fails that request,
        # which is then made again after a look-up
        self._bridge_index = 0

    @property
    def firewall(self) -> Nftables | Iptables:
        if self._firewall is None:
            self._firewall = firewall_for(self.config, self.ns)
        return self._firewall

    @contextlib.contextmanager
    def _rtnl(self, ns: Netns | None = None) -> Iterator[Any]:
        from runtime.network.netlink import Rtnl

        if ns is not None or not self._shared:
            with Rtnl(ns if ns is not None else self.ns) as rt:
                yield rt
            return
        with self._mu:
            if self._node_rtnl is None:
                self._node_rtnl = _OnThread(self.ns)
            rt = self._node_rtnl
        yield rt

    def close(self) -> None:
        """Close the shared netlink socket (made again when needed)."""
        with self._mu:
            if self._node_rtnl is not None:
                self._node_rtnl.close()
                self._node_rtnl = None

    # the node

    def ensure(self) -> None:
        """Bridge with the gateway address, up; forwarding on; firewall base; peer routes."""
        cfg = self.config
        with self._rtnl() as rt:
            br = rt.ensure_bridge(cfg.bridge, cfg.mtu)
            self._bridge_index = br.index
            rt.ensure_addr(br.index, cfg.gateway, cfg.bridge)
            for old in rt.addrs(br.index):  # the gateway of an earlier pod CIDR
                if old != cfg.gateway:
                    rt.delete_addr(br.index, old, cfg.bridge)
            self._sync_routes(rt)
        write_sysctl(self.ns, "net.ipv4.ip_forward", "1")
        self.firewall.ensure()
        self._ensured = True

    def sync(self, create: bool = True) -> bool:
        """:meth:`ensure` when ``create`` or the bridge exists already (a pod made it); else
        only the peer routes (our routes no longer listed go). True if the bridge is there."""
        if not create:
            with self._rtnl() as rt:
                if rt.link(self.config.bridge) is None:
                    self._sync_routes(rt)
                    return False
        self.ensure()
        return True

    def sync_routes(self) -> None:
        """Routes to the peers' pod CIDRs via their node addresses; drop ours no longer listed."""
        with self._rtnl() as rt:
            self._sync_routes(rt)

    def _sync_routes(self, rt: Any) -> None:
        from runtime.network.netlink import RTPROT_CORRAL

        want = {p.pod_cidr: p.address for p in self.config.peers}
        stale, missing = route_changes(rt.routes(RTPROT_CORRAL), want)
        for dst in stale:
            rt.delete_route(dst)
        for dst, via in missing.items():
            rt.replace_route(dst, via)

    def destroy(self) -> None:
        """Undo :meth:`ensure` (pods should be torn down first): firewall objects, our routes,
        the bridge. net.ipv4.ip_forward is left as it is."""
        from runtime.network.netlink import RTPROT_CORRAL

        self.firewall.destroy()
        with self._rtnl() as rt:
            for r in rt.routes(RTPROT_CORRAL):
                rt.delete_route(r.dst)
            rt.delete_link(self.config.bridge)
        self._ensured = False

    # records

    def _record(self, pod_id: str) -> Path:
        return self._pods / f"{check_owner(pod_id)}.json"

    def pod(self, pod_id: str) -> PodNetwork | None:
        try:
            return PodNetwork.from_json(json.loads(self._record(pod_id).read_text()))
        except FileNotFoundError:
            return None

    def pods(self) -> list[PodNetwork]:
        try:
            names = sorted(os.listdir(self._pods))
        except FileNotFoundError:
            return []
        out = []
        for n in names:
            if n.endswith(".json") and not n.startswith("."):
                p = self.pod(n[: -len(".json")])
                if p is not None:
                    out.append(p)
        return out

    def _save(self, pod: PodNetwork) -> None:
        self._pods.mkdir(parents=True, exist_ok=True)
        path = self._record(pod.pod_id)
        # not fsync'd: what it records (a veth, hostPort rules) does not outlive a machine crash
        hostsys.host().write_atomic(path, json.dumps(pod.to_json(), indent=1), 0o644, durable=False)

    # pods

    def setup_pod(
        self,
        pod_id: str,
        netns: Netns | str | os.PathLike[str] | int,
        ports: Sequence[PortMapping] = (),
        ifname: str = "eth0",
    ) -> PodNetwork:
        """Give the pod whose network namespace is ``netns`` an address and an ``ifname`` on the
        node bridge, lo up, a default route via the gateway, and its hostPorts. Calling it again
        for the same pod checks what exists and completes it. On failure what this call made is
        removed again. ``reserve_pod`` then ``link_pod``, for a caller with work to do between
        the two (the pod's address known, its interface not there yet)."""
        pod_ns = Netns.of(netns)
        if pod_ns.is_current:
            raise NetworkError(f"pod {pod_id}", "a pod needs a network namespace of its own")
        pod, old = self.reserve_pod(pod_id, ports, ifname)
        self.link_pod(pod, pod_ns, old)
        return pod

    def reserve_pod(
        self, pod_id: str, ports: Sequence[PortMapping] = (), ifname: str = "eth0"
    ) -> tuple[PodNetwork, PodNetwork | None]:
        """The first half of :meth:`setup_pod`: the node ensured, the pod's address allocated
        and its record written (what teardown undoes), no interface yet. Returns the pod's
        network and the record an earlier setup of the same pod left (None for a new pod),
        for :meth:`link_pod`."""
        if not self._ensured:
            self.ensure()
        old = self.pod(pod_id)
        ip = self.ipam.allocate(pod_id)
        pod = PodNetwork(
            pod_id=pod_id,
            ip=ip,
            prefixlen=self.config.pod_cidr.prefixlen,
            gateway=self.config.gateway.ip,
            host_veth=veth_name(pod_id),
            ifname=ifname,
            ports=tuple(ports),
        )
        try:
            self._save(pod)
        except BaseException:
            if old is None:
                self.teardown_pod(pod_id)
            raise
        return pod, old

    def link_pod(
        self,
        pod: PodNetwork,
        netns: Netns | str | os.PathLike[str] | int,
        old: PodNetwork | None = None,
    ) -> None:
        """The second half of :meth:`setup_pod`: the veth pair, the pod's interface and
        route, its hostPorts. On failure a new pod's (``old`` None) network is torn down."""
        pod_ns = Netns.of(netns)
        try:
            if pod_ns.is_current:
                raise NetworkError(
                    f"pod {pod.pod_id}", "a pod needs a network namespace of its own"
                )
            if old is not None and old.ports != pod.ports:
                self.firewall.remove_ports(pod.pod_id, old.ip, set(old.ports) - set(pod.ports))
            self._link_pod(pod, pod_ns)
            self.firewall.add_ports(pod.pod_id, pod.ip, pod.ports)
        except BaseException:
            if old is None:
                self.teardown_pod(pod.pod_id)
            raise

    def _link_pod(self, pod: PodNetwork, pod_ns: Netns) -> None:
        from runtime.network.netlink import configure_pod_interface

        with self._rtnl() as rt:
            host = rt.run(lambda r: self._veth(r, pod, pod_ns))
        if host is None:  # the bridge was removed since this node network was ensured: all again
            self.ensure()
            with self._rtnl() as rt:
                host = rt.run(lambda r: self._veth(r, pod, pod_ns))
            if host is None:
                raise NetlinkError(f"link get {self.config.bridge}", "vanished", errno.ENODEV)
        # the host end's peer is the pod's end: its ifindex there, no look-up needed
        configure_pod_interface(pod_ns, pod.ifname, pod.interface, pod.gateway, host.peer_index)

    def _veth(self, rt: Rtnl, pod: PodNetwork, pod_ns: Netns) -> Link | None:
        """The pod's veth pair on the bridge, up, hairpin on: in one hand-over to the netlink
        thread, and for a new pod in three requests (the pair is made enslaved and up, its
        host end read back for the indexes, hairpin set). The host end; None when the bridge
        is not there."""
        cfg = self.config
        cached = self._bridge_index
        if cached:
            try:
                rt.add_veth(pod.host_veth, pod.ifname, pod_ns, cfg.mtu, master=cached, up=True)
            except NetlinkError as e:
                if e.errno == errno.EEXIST:
                    cached = 0  # checked and completed below, as any existing pair
                else:  # the bridge made again (another index), or gone: look it up
                    self._bridge_index = cached = 0
            else:
                host = rt.link(pod.host_veth)
                if host is not None and host.master == cached and host.up:
                    rt.set_hairpin(host.index, pod.host_veth)
                    return host
                cached = 0  # changed meanwhile: checked and completed below
        br = rt.link(cfg.bridge)
        if br is None:
            self._bridge_index = 0
            return None
        self._bridge_index = br.index
        host = None
        for _ in range(2):
            try:
                rt.add_veth(pod.host_veth, pod.ifname, pod_ns, cfg.mtu, master=br.index, up=True)
                break
            except NetlinkError as e:
                if e.errno != errno.EEXIST:
                    raise
            host = rt.link(pod.host_veth)
            if host is None:  # the name taken is the pod's end
                raise NetworkError(
                    f"pod {pod.pod_id}", f"{pod.ifname} already exists in {pod_ns}", errno.EEXIST
                )
            if self._peer_in(host.index, pod, pod_ns):
                break  # made by an earlier call for this pod: complete it
            rt.delete_link(pod.host_veth)  # a stale pair from an earlier namespace
            host = None
        host = host if host is not None else rt.link(pod.host_veth)
        if host is None:
            raise NetlinkError(f"link get {pod.host_veth}", "vanished", errno.ENODEV)
        if host.master != br.index or not host.up:
            rt.set_up(host.index, pod.host_veth, master=br.index)
        rt.set_hairpin(host.index, pod.host_veth)
        return host

    def _peer_in(self, host_index: int, pod: PodNetwork, pod_ns: Netns) -> bool:
        with self._rtnl(pod_ns) as rt:
            dev = rt.link(pod.ifname)
        return dev is not None and dev.kind == "veth" and dev.peer_index == host_index

    def teardown_pod(self, pod_id: str) -> bool:
        """Remove what :meth:`setup_pod` made: hostPorts, the veth pair (the pod end goes with
        it), the address, the record. False if there was nothing. The pod's namespace may be
        gone already."""
        pod = self.pod(pod_id)
        found = pod is not None
        host_veth = pod.host_veth if pod is not None else veth_name(pod_id)
        if pod is not None and pod.ports:
            self.firewall.remove_ports(pod_id, pod.ip, pod.ports)
        found = delete_link(self.ns, host_veth) or found
        found = self.ipam.release(pod_id) is not None or found
        self._record(pod_id).unlink(missing_ok=True)
        return found

    def gc(self, live: Iterable[str]) -> GcReport:
        """Free what belongs to pods not in ``live``: their records (full teardown), addresses
        with no record, hostPort mappings to addresses no live pod holds, and leaked veths."""
        keep = set(live)
        report = GcReport()
        for pod in self.pods():
            if pod.pod_id not in keep:
                self.teardown_pod(pod.pod_id)
                report.pods.append(pod.pod_id)
        report.addresses = sorted(self.ipam.gc(keep))
        held = set(self.ipam.allocations())
        stale = [h for h in self.firewall.hostports() if h.ip not in held]
        for h in stale:
            self.firewall.remove_ports(
                h.pod_id or "?", h.ip, [PortMapping(h.host_port, h.container_port, h.protocol)]
            )
        report.hostports = len(stale)
        ours = {veth_name(p) for p in keep}
        with self._rtnl() as rt:
            for link in rt.links("veth"):
                if _VETH.match(link.name) and link.name not in ours:
                    if rt.delete_link(link.name):
                        report.veths.append(link.name)
        return report


_NODES: dict[tuple[NetworkConfig, str | None, int], NodeNetwork] = {}
_NODES_MU = threading.Lock()
NODES_KEPT = 8  # node networks a process keeps (a node has one; tests make many)


def node_network(
    config: NetworkConfig, node_netns: Netns | str | os.PathLike[str] | None = None
) -> NodeNetwork:
    """The process's ``NodeNetwork`` for ``config`` in ``node_netns`` (a path, or None for our
    own namespace), kept across calls: the node is ensured (bridge, forwarding, firewall base,
    routes) once, not for every pod, and every pod's setup and teardown share one netlink
    socket. A namespace is told apart by its inode (a path made again is another namespace);
    a changed config is another node network. The bridge found gone ensures it all again."""
    ns = Netns.of(node_netns)
    if ns.fd is not None:  # an fd number is reused: nothing to key on
        return NodeNetwork(config, ns)
    try:
        inode = ns.inode()
    except OSError:
        return NodeNetwork(config, ns)
    key = (config, ns.path, inode)
    with _NODES_MU:
        node = _NODES.get(key)
        if node is None:
            while len(_NODES) >= NODES_KEPT:
                _NODES.pop(next(iter(_NODES))).close()
            node = _NODES[key] = NodeNetwork(config, ns, shared=True)
        return node
