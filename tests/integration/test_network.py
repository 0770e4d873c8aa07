"""The native pod network in namespaces the tests make: one netns per simulated node, joined
through a veth each to a bridge in a further "fabric" netns; a pod is one more netns (or a
process in one). Nothing is added to the machine's own namespace, which the fixture checks."""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from runtime.network import (
    HostPortConflict,
    Netns,
    NetworkConfig,
    NodeNetwork,
    OwnedNetns,
    PeerNode,
    PortMapping,
    in_netns,
    node_network,
    veth_name,
)
from runtime.network.netlink import Rtnl

pytestmark = [pytest.mark.root, pytest.mark.network]

FABRIC_NET = ipaddress.IPv4Network("192.168.77.0/24")


def node_address(i: int) -> ipaddress.IPv4Address:
    return FABRIC_NET.network_address + i


def pod_cidr(i: int) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(f"10.88.{i}.0/24")


# traffic: a TCP echo server and client made inside a namespace, a ping run inside one


@dataclass
class EchoServer:
    """Answers each connection with b"<payload> from <client address>" and closes."""

    sock: socket.socket
    port: int
    thread: threading.Thread | None = None

    def serve(self) -> None:
        while True:
            try:
                conn, peer = self.sock.accept()
            except OSError:
                return
            with conn:
                data = conn.recv(1024)
                conn.sendall(data + f" from {peer[0]}".encode())

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        if self.thread is not None:
            self.thread.join(5)


def echo_server(ns: Netns | int | str, port: int, host: str = "0.0.0.0") -> EchoServer:
    def make() -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        s.listen(16)
        return s

    srv = EchoServer(in_netns(ns, make), port)
    srv.thread = threading.Thread(target=srv.serve, daemon=True)
    srv.thread.start()
    return srv


def echo(ns: Netns | int | str, ip: object, port: int, payload: str = "hi") -> str:
    """Connect from inside ``ns`` and return the server's answer."""
    s = in_netns(ns, lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM))
    with s:
        s.settimeout(5)
        s.connect((str(ip), port))
        s.sendall(payload.encode())
        return s.recv(1024).decode()


def ping(ns: Netns | int | str, ip: object) -> bool:
    res = in_netns(
        ns,
        lambda: subprocess.run(
            ["ping", "-c", "1", "-W", "2", str(ip)], capture_output=True, stdin=subprocess.DEVNULL
        ),
    )
    return res.returncode == 0


def links(ns: Netns | int | str | None) -> set[str]:
    with Rtnl(ns) as rt:
        return {lk.name for lk in rt.links()}


# the simulated cluster


@dataclass
class Cluster:
    tmp: Path
    stack: ExitStack
    fabric: OwnedNetns
    nodes: list[NodeNetwork] = field(default_factory=list)
    node_ns: list[OwnedNetns] = field(default_factory=list)

    def netns(self) -> OwnedNetns:
        """A fresh namespace (a pod), closed by the fixture."""
        return self.stack.enter_context(OwnedNetns())

    def add_node(self, firewall: str = "auto", masquerade: bool = False) -> NodeNetwork:
        i = len(self.nodes) + 1
        ns = self.stack.enter_context(OwnedNetns())
        with Rtnl(self.fabric.ns) as fab:
            fab.add_veth(f"fab{i}", "up0", ns.ns)
            bridge = fab.link("fab0")
            port = fab.link(f"fab{i}")
            assert bridge is not None and port is not None
            fab.set_up(port.index, f"fab{i}", master=bridge.index)
        with Rtnl(ns.ns) as rt:
            up0 = rt.link("up0")
            assert up0 is not None
            rt.ensure_addr(
                up0.index, ipaddress.IPv4Interface(f"{node_address(i)}/{FABRIC_NET.prefixlen}")
            )
            rt.set_up(up0.index, "up0")
        config = NetworkConfig(
            pod_cidr=pod_cidr(i),
            node_address=node_address(i),
            firewall=firewall,
            masquerade=masquerade,
            state_dir=self.tmp / f"node{i}",
        )
        node = NodeNetwork(config, ns.ns)
        node.ensure()
        self.nodes.append(node)
        self.node_ns.append(ns)
        return node

    def peer_all(self) -> None:
        """host-gw: every node gets routes to the others' pod CIDRs."""
        for idx, node in enumerate(self.nodes):
            peers = tuple(
                PeerNode(f"node{j + 1}", other.config.pod_cidr, node_address(j + 1))
                for j, other in enumerate(self.nodes)
                if j != idx
            )
            cfg = node.config
            node.config = NetworkConfig(
                pod_cidr=cfg.pod_cidr,
                node_address=cfg.node_address,
                firewall=cfg.firewall,
                state_dir=cfg.state_dir,
                peers=peers,
            )
            node.sync_routes()

    def leftovers(self, node: NodeNetwork) -> dict[str, object]:
        """Everything pod setup could have left on ``node``."""
        ns_links = links(node.ns)
        return {
            "veths": sorted(n for n in ns_links if n.startswith("cr")),
            "addresses": node.ipam.allocations(),
            "records": node.pods(),
            "hostports": node.firewall.hostports(),
        }


def _run_netns_names() -> set[str]:
    try:
        return set(os.listdir("/run/netns"))
    except FileNotFoundError:
        return set()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    host_links = links(None)
    host_netns = _run_netns_names()
    with ExitStack() as stack:
        fabric = stack.enter_context(OwnedNetns())
        with Rtnl(fabric.ns) as fab:
            fab.ensure_bridge("fab0")
        c = Cluster(tmp_path, stack, fabric)
        try:
            yield c
        finally:
            for node in c.nodes:
                node.gc([])
                leftovers = c.leftovers(node)
                node.destroy()
                assert not node.firewall.present(), "firewall objects left"
                assert all(not v for v in leftovers.values()), leftovers
    # closing the namespaces destroyed them with everything inside; the host saw nothing
    assert links(None) == host_links
    assert _run_netns_names() == host_netns


# tests


def test_pod_to_pod_on_one_node(cluster: Cluster) -> None:
    node = cluster.add_node()
    a, b = cluster.netns(), cluster.netns()
    pa = node.setup_pod("pod-a", a.ns)
    pb = node.setup_pod("pod-b", b.fd)  # an fd works as well as a Netns
    assert pa.ip != pb.ip and pa.ip in node.config.pod_cidr
    srv = echo_server(b.ns, 7000)
    try:
        assert echo(a.ns, pb.ip, 7000, "a->b") == f"a->b from {pa.ip}"
    finally:
        srv.close()
    assert ping(b.ns, pa.ip)
    assert links(a.ns) == {"lo", "eth0"}
    node.teardown_pod("pod-a")
    node.teardown_pod("pod-b")
    assert links(a.ns) == {"lo"}  # the pod end went with the node end


def test_a_pod_given_as_a_process_namespace_path(cluster: Cluster) -> None:
    node = cluster.add_node()
    other = cluster.netns()
    proc = subprocess.Popen(["unshare", "--net", "sleep", "60"])
    try:
        path = f"/proc/{proc.pid}/ns/net"
        for _ in range(100):  # until unshare has moved the child
            if os.stat(path).st_ino != os.stat("/proc/self/ns/net").st_ino:
                break
            threading.Event().wait(0.02)
        pp = node.setup_pod("pod-proc", path)
        po = node.setup_pod("pod-other", other.ns)
        assert ping(path, po.ip)
        assert ping(other.ns, pp.ip)
        node.teardown_pod("pod-proc")
        assert links(path) == {"lo"}
    finally:
        proc.kill()
        proc.wait()


def test_pod_to_node_and_node_to_pod(cluster: Cluster) -> None:
    node = cluster.add_node()
    a = cluster.netns()
    pa = node.setup_pod("pod-a", a.ns)
    srv = echo_server(node.ns, 7001)
    try:
        # to the node's address on the node network, and to its bridge (gateway) address
        assert echo(a.ns, node_address(1), 7001, "p") == f"p from {pa.ip}"
        assert echo(a.ns, node.config.gateway.ip, 7001, "g") == f"g from {pa.ip}"
    finally:
        srv.close()
    srv = echo_server(a.ns, 7002)
    try:
        assert echo(node.ns, pa.ip, 7002, "n") == f"n from {node.config.gateway.ip}"
    finally:
        srv.close()


@pytest.mark.parametrize("firewall", ["nftables", "iptables"])
def test_host_port_from_the_node_address(cluster: Cluster, firewall: str) -> None:
    node = cluster.add_node(firewall)
    client_node = cluster.add_node(firewall)  # a machine elsewhere on the node network
    a, b = cluster.netns(), cluster.netns()
    pa = node.setup_pod("web", a.ns, ports=[PortMapping(8080, 80)])
    pb = node.setup_pod("neighbour", b.ns)
    srv = echo_server(a.ns, 80)
    addr = node_address(1)
    try:
        # from another machine: DNAT, the pod sees the real client
        assert echo(client_node.ns, addr, 8080, "x") == f"x from {node_address(2)}"
        # from the node itself (output chain)
        assert echo(node.ns, addr, 8080, "self").startswith("self from ")
        # hairpin: the pod through its own hostPort, and a neighbour pod through it
        assert echo(a.ns, addr, 8080, "hair") == f"hair from {node.config.gateway.ip}"
        assert echo(b.ns, addr, 8080, "nb") == f"nb from {node.config.gateway.ip}"
        # one hostPort, one pod
        with pytest.raises(HostPortConflict):
            node.setup_pod("thief", cluster.netns().ns, ports=[PortMapping(8080, 81)])
        assert node.pod("thief") is None and node.ipam.lookup("thief") is None
        node.teardown_pod("web")
        assert node.firewall.hostports() == []
        with pytest.raises(OSError):
            echo(client_node.ns, addr, 8080)
    finally:
        srv.close()
    assert pb.ip != pa.ip


def test_pods_on_two_nodes_reach_each_other(cluster: Cluster) -> None:
    n1, n2 = cluster.add_node(), cluster.add_node()
    cluster.peer_all()
    a, b = cluster.netns(), cluster.netns()
    pa = n1.setup_pod("pod-a", a.ns)
    pb = n2.setup_pod("pod-b", b.ns)
    assert pa.ip in pod_cidr(1) and pb.ip in pod_cidr(2)
    srv = echo_server(b.ns, 7003)
    try:
        assert echo(a.ns, pb.ip, 7003, "far") == f"far from {pa.ip}"  # no NAT between nodes
    finally:
        srv.close()
    assert ping(b.ns, pa.ip)
    # routes are ours only, and go when the peers go
    with Rtnl(n1.ns) as rt:
        assert [(r.dst, r.gateway) for r in rt.routes(199)] == [(pod_cidr(2), node_address(2))]
    n1.config = NetworkConfig(pod_cidr=pod_cidr(1), state_dir=n1.config.state_dir)
    n1.sync_routes()
    with Rtnl(n1.ns) as rt:
        assert rt.routes(199) == []
    assert not ping(a.ns, pb.ip)


def test_fifty_pods_concurrently_get_distinct_addresses_and_leave_nothing(
    cluster: Cluster,
) -> None:
    node = cluster.add_node()
    before = links(node.ns)
    pods = [cluster.netns() for _ in range(50)]

    def up(i: int) -> ipaddress.IPv4Address:
        # a NodeNetwork per call, as separate pod starts would have
        n = NodeNetwork(node.config, node.ns)
        return n.setup_pod(f"pod-{i}", pods[i].ns, ports=[PortMapping(30000 + i, 80)]).ip

    with ThreadPoolExecutor(8) as pool:
        ips = list(pool.map(up, range(50)))
    assert len(set(ips)) == 50
    assert set(node.ipam.allocations()) == set(ips)
    assert len(node.firewall.hostports()) == 50
    with Rtnl(pods[17].ns) as rt:
        eth0 = rt.link("eth0")
        assert eth0 is not None and rt.addrs(eth0.index)[0].ip == ips[17]
    assert ping(pods[3].ns, ips[42])

    def down(i: int) -> bool:
        return NodeNetwork(node.config, node.ns).teardown_pod(f"pod-{i}")

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(down, range(50)))
    assert links(node.ns) == before
    assert all(not v for v in cluster.leftovers(node).values())
    for p in pods:
        assert links(p.ns) == {"lo"}


def test_setup_is_idempotent_and_survives_restarts(cluster: Cluster) -> None:
    node = cluster.add_node()
    a = cluster.netns()
    before = links(node.ns)
    first = node.setup_pod("pod-a", a.ns, ports=[PortMapping(8081, 80)])
    assert node.setup_pod("pod-a", a.ns, ports=[PortMapping(8081, 80)]) == first
    # a new process (a new NodeNetwork over the same directory) sees the same pod
    again = NodeNetwork(node.config, node.ns)
    assert again.pod("pod-a") == first
    assert again.setup_pod("pod-a", a.ns, ports=[PortMapping(8081, 80)]) == first
    node.ensure()  # idempotent as well
    assert len(node.firewall.hostports()) == 1
    # a changed port list replaces the mappings
    changed = again.setup_pod("pod-a", a.ns, ports=[PortMapping(8082, 80)])
    assert changed.ip == first.ip
    assert [h.host_port for h in node.firewall.hostports()] == [8082]
    assert again.teardown_pod("pod-a")
    assert not again.teardown_pod("pod-a")
    assert links(node.ns) == before


def test_gc_frees_dead_pods_and_leaked_veths(cluster: Cluster) -> None:
    node = cluster.add_node()
    live, dead, leaked = cluster.netns(), cluster.netns(), cluster.netns()
    pl = node.setup_pod("live", live.ns)
    node.setup_pod("dead", dead.ns, ports=[PortMapping(8090, 80)])
    node.setup_pod("leaked", leaked.ns)
    # simulate a crash that lost the record and the address of "leaked" but not its veth
    (node.config.directory / "pods" / "leaked.json").unlink()
    node.ipam.release("leaked")
    report = node.gc(["live"])
    assert report.pods == ["dead"]
    assert report.veths == [veth_name("leaked")]
    assert set(node.ipam.allocations()) == {pl.ip}
    assert node.firewall.hostports() == []
    assert {n for n in links(node.ns) if n.startswith("cr")} == {veth_name("live")}
    assert ping(live.ns, node.config.gateway.ip)


def test_the_pods_veth_is_on_the_bridge_up_with_hairpin(cluster: Cluster) -> None:
    node = cluster.add_node()
    a = cluster.netns()
    pod = node.setup_pod("pod-a", a.ns)
    with Rtnl(node.ns) as rt:
        host = rt.link(pod.host_veth)
        bridge = rt.link(node.config.bridge)
        assert host is not None and bridge is not None
        assert (host.kind, host.master, host.up) == ("veth", bridge.index, True)
        (port,) = [m for m in rt._ipr.brport("dump") if m["index"] == host.index]
        assert port.get_nested("IFLA_PROTINFO", "IFLA_BRPORT_MODE") == 1  # hairpin
    with Rtnl(a.ns) as rt:
        dev = rt.link("eth0")
        assert dev is not None and dev.up and dev.peer_index == host.index


def test_a_pod_in_a_new_namespace_gets_a_new_pair(cluster: Cluster) -> None:
    # the same pod id again with another namespace (its sandbox made again while the old
    # namespace still lives): the old pair is replaced, the address kept
    node = cluster.add_node()
    old, new = cluster.netns(), cluster.netns()
    first = node.setup_pod("pod-a", old.ns)
    second = node.setup_pod("pod-a", new.ns)
    assert second.ip == first.ip
    assert links(old.ns) == {"lo"}
    assert links(new.ns) == {"lo", "eth0"}
    with Rtnl(node.ns) as rt:
        host = rt.link(second.host_veth)
        assert host is not None and host.up and host.master
    with Rtnl(new.ns) as rt:
        dev = rt.link("eth0")
        assert dev is not None and dev.peer_index == host.index
    assert node.teardown_pod("pod-a")
    assert all(not v for v in cluster.leftovers(node).values())


def test_the_pod_end_name_must_be_free(cluster: Cluster) -> None:
    node = cluster.add_node()
    a = cluster.netns()
    with Rtnl(a.ns) as rt:
        rt.ensure_bridge("eth0")  # something else already called eth0 in the pod
    from runtime.network import NetworkError

    with pytest.raises(NetworkError, match="eth0 already exists"):
        node.setup_pod("pod-a", a.ns)
    assert all(not v for v in cluster.leftovers(node).values())


def _mac(ns: Netns | int | str | None, name: str) -> str:
    with Rtnl(ns) as rt:
        (msg,) = rt._ipr.link("get", ifname=name)
        return str(msg.get("address"))


def test_the_bridge_address_stays_as_pods_come_and_go(cluster: Cluster) -> None:
    """A bridge whose address the kernel assigned takes its lowest port's and changes with its
    ports: the pods' cached gateway address goes stale and their packets are lost for
    seconds. The node's bridge keeps the address it was given."""
    node = cluster.add_node()
    br = node.config.bridge
    a, b = cluster.netns(), cluster.netns()
    node.setup_pod("pod-a", a.ns)
    gateway_mac = _mac(node.ns, br)
    with Rtnl(node.ns) as rt:  # a port whose address is lower than any other
        rt.add_veth("lowmac0", "lowpeer", b.ns)
        low = rt.link("lowmac0")
        bridge = rt.link(br)
        assert low is not None and bridge is not None
        rt._ipr.link("set", index=low.index, address="02:00:00:00:00:01")
        rt.set_up(low.index, "lowmac0", master=bridge.index)
    assert _mac(node.ns, br) == gateway_mac
    with Rtnl(node.ns) as rt:
        rt.delete_link("lowmac0")
    node.setup_pod("pod-b", cluster.netns().ns)
    node.teardown_pod("pod-a")
    assert _mac(node.ns, br) == gateway_mac
    node.ensure()  # again (an agent's restart): the address it has is kept
    assert _mac(node.ns, br) == gateway_mac


def test_the_kept_node_network_serves_many_threads_over_one_socket(cluster: Cluster) -> None:
    """``node_network``: one instance per config and namespace, ensured once; pods set up
    and torn down from many threads at once through its one netlink socket (on a thread of
    its own: pyroute2's socket belongs to one thread); the bridge found gone is made again
    with the rest of the node (its gateway address)."""
    node = cluster.add_node()
    path = node.ns.proc_path()  # kept by path (and namespace inode), as an agent's node netns
    kept = node_network(node.config, path)
    assert node_network(node.config, path) is kept
    assert node_network(replace(node.config, mtu=1400), path) is not kept
    pods = [cluster.netns() for _ in range(20)]
    try:
        with ThreadPoolExecutor(8) as pool:
            ips = list(pool.map(lambda i: kept.setup_pod(f"pod-{i}", pods[i].ns).ip, range(20)))
        assert len(set(ips)) == 20
        for i in (0, 7, 19):
            with Rtnl(pods[i].ns) as rt:
                eth0 = rt.link("eth0")
                assert eth0 is not None and rt.addrs(eth0.index)[0].ip == ips[i]
        assert ping(pods[3].ns, ips[12])
        with ThreadPoolExecutor(8) as pool:
            assert all(pool.map(lambda i: kept.teardown_pod(f"pod-{i}"), range(20)))
        assert all(not v for v in cluster.leftovers(node).values())
        node.destroy()  # the bridge goes behind the kept one's back
        again = kept.setup_pod("pod-again", pods[0].ns)
        with Rtnl(node.ns) as rt:
            br = rt.link(node.config.bridge)
            assert br is not None and node.config.gateway in rt.addrs(br.index)
        assert ping(pods[0].ns, node.config.gateway.ip)
        assert kept.teardown_pod(again.pod_id)
        # the bridge made again behind its back (another ifindex than the one it knows):
        # the next pod's veth is on the new bridge
        node.destroy()
        node.ensure()
        moved = kept.setup_pod("pod-moved", pods[1].ns)
        with Rtnl(node.ns) as rt:
            br, host = rt.link(node.config.bridge), rt.link(moved.host_veth)
            assert br is not None and host is not None and host.master == br.index
        assert ping(pods[1].ns, node.config.gateway.ip)
        assert kept.teardown_pod(moved.pod_id)
    finally:
        kept.close()


def test_delete_link_by_name_without_pyroute2() -> None:
    # The teardown's own RTM_DELLINK: a real link goes, a missing one is False, a bad name is
    # refused before anything is sent; the error names the link and the namespace.
    from runtime.network.errors import NetlinkError
    from runtime.network.netlink import delete_link

    with OwnedNetns() as ns:
        with Rtnl(ns.ns) as rt:
            rt.add_veth("cdl0", "cdl1", ns.ns)
            assert rt.link("cdl0") is not None and rt.link("cdl1") is not None
        assert delete_link(ns.ns, "cdl0") is True
        assert links(ns.ns) == {"lo"}  # the peer went with it
        assert delete_link(ns.ns, "cdl0") is False
        with pytest.raises(NetlinkError, match="link del lo in") as e:
            delete_link(ns.ns, "lo")  # the loopback cannot be deleted
        assert e.value.errno == errno.EOPNOTSUPP
        for bad in ("", "x" * 16, "a\0b"):
            with pytest.raises(NetlinkError, match="not an interface name"):
                delete_link(ns.ns, bad)


def test_a_pod_teardown_imports_no_pyroute2(tmp_path: Path) -> None:
    # The pod's finish process tears its network down; pyroute2 (over 100 ms to import and
    # start) is not needed for that when the pod maps no hostPort.
    code = (
        "import ipaddress, pathlib, sys\n"
        "from runtime.network import NetworkConfig, NodeNetwork\n"
        "cidr = ipaddress.ip_network('10.93.0.0/24')\n"
        "cfg = NetworkConfig(pod_cidr=cidr, state_dir=pathlib.Path(sys.argv[2]))\n"
        "assert NodeNetwork(cfg, sys.argv[1]).teardown_pod('p1')\n"
        "print(sorted(m for m in sys.modules if m.startswith('pyroute2')))\n"
    )
    with OwnedNetns() as ns:
        node = NodeNetwork(
            NetworkConfig(pod_cidr=ipaddress.ip_network("10.93.0.0/24"), state_dir=tmp_path), ns.ns
        )
        pod = OwnedNetns()
        try:
            node.setup_pod("p1", pod.ns)
            assert veth_name("p1") in links(ns.ns)
            out = subprocess.run(
                [sys.executable, "-c", code, ns.ns.proc_path(), str(tmp_path)],
                capture_output=True,
                text=True,
            )
        finally:
            node.teardown_pod("p1")
            node.close()
            pod.close()
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "[]"
        assert links(ns.ns) == {"lo", "corral0"}
