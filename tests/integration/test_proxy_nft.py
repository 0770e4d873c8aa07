"""The service proxy's nftables rules in network namespaces the test makes: a node namespace
with a bridge, pod namespaces on it (veths) each running a small TCP server that answers with
its name and the address it sees; connections through ClusterIPs and NodePorts from a pod
(prerouting) and from the node itself (output)."""

from __future__ import annotations

import collections
import dataclasses
import errno
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from orchestrator.proxy import (
    Endpoint,
    Ruleset,
    ServicePort,
    apply_ruleset,
    ruleset,
    sync_rules,
)
from runtime.network.netns import in_netns, write_sysctl
from testkit.netns import NodeNs, node_netns
from testkit.wait import until

pytestmark = [pytest.mark.root, pytest.mark.network]

POD_CIDR = "10.42.0.0/24"
GATEWAY = "10.42.0.1"
NODE_LAN_IP = "192.168.77.1"
PORT = 8080
SERVER = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[2])))
s.listen(256)
print("ready", flush=True)
while True:
    c, a = s.accept()
    c.sendall(f"{sys.argv[1]} {a[0]}\\n".encode())
    c.close()
"""


def sh(ns: NodeNs, *argv: str) -> None:
    subprocess.run(["nsenter", f"--net={ns.path}", *argv], check=True, capture_output=True)


@dataclass
class Pod:
    name: str
    ip: str
    ns: NodeNs
    server: subprocess.Popen[str]


@dataclass
class Net:
    node: NodeNs
    pods: dict[str, Pod]
    lan: NodeNs
    applied: Ruleset | None = None

    def apply(self, ports: list[ServicePort], replace: bool = False) -> None:
        """As the proxy syncs: the table replaced the first time, then updated in place."""
        new = ruleset(ports, POD_CIDR)
        sync_rules(new, None if replace else self.applied, self.node.path)
        self.applied = new

    def connect(self, ip: str, port: int, source: NodeNs | None = None, timeout: float = 10) -> str:
        """The answer of whoever a connection to ip:port from ``source`` (default: the
        node) reaches: "<server name> <the client address it saw>"."""

        def run() -> str:
            with socket.create_connection((ip, port), timeout=timeout) as s:
                data = b""
                while not data.endswith(b"\n"):
                    chunk = s.recv(100)
                    if not chunk:
                        break
                    data += chunk
            return data.decode().strip()

        return in_netns((source or self.node).path, run)


@pytest.fixture(scope="module")
def net() -> Iterator[Net]:
    made: list[NodeNs] = []
    servers: list[subprocess.Popen[str]] = []
    try:
        node = node_netns()
        made.append(node)
        sh(node, "ip", "link", "set", "lo", "up")
        sh(node, "ip", "link", "add", "br0", "type", "bridge")
        sh(node, "ip", "addr", "add", f"{GATEWAY}/24", "dev", "br0")
        sh(node, "ip", "link", "set", "br0", "up")
        sh(node, "ip", "route", "add", "10.43.0.0/16", "dev", "br0")
        write_sysctl(node.path, "net.ipv4.ip_forward", "1")
        pods = {}
        for i, name in enumerate(("client", "a", "b", "c")):
            ns = node_netns()
            made.append(ns)
            ip = f"10.42.0.{10 + i}"
            host = f"veth{i}"
            sh(node, "ip", "link", "add", host, "type", "veth", "peer", "name", "eth0",
               "netns", str(ns.proc.pid))  # fmt: skip
            sh(node, "ip", "link", "set", host, "master", "br0", "up")
            # hairpin mode on the pod's bridge port (kubelet's hairpin-veth): a pod's packet
            # DNATed back to itself leaves the bridge by the port it came in on
            sh(node, "bridge", "link", "set", "dev", host, "hairpin", "on")
            sh(ns, "ip", "link", "set", "lo", "up")
            sh(ns, "ip", "addr", "add", f"{ip}/24", "dev", "eth0")
            sh(ns, "ip", "link", "set", "eth0", "up")
            sh(ns, "ip", "route", "add", "default", "via", GATEWAY)
            proc = subprocess.Popen(
                ["nsenter", f"--net={ns.path}", sys.executable, "-c", SERVER, name, str(PORT)],
                stdout=subprocess.PIPE,
                text=True,
            )
            servers.append(proc)
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
            pods[name] = Pod(name, ip, ns, proc)
        # a machine on the node's LAN: no route to the pods, only to the node's LAN address
        lan = node_netns()
        made.append(lan)
        sh(node, "ip", "link", "add", "lan0", "type", "veth", "peer", "name", "eth0",
           "netns", str(lan.proc.pid))  # fmt: skip
        sh(node, "ip", "addr", "add", f"{NODE_LAN_IP}/24", "dev", "lan0")
        sh(node, "ip", "link", "set", "lan0", "up")
        sh(lan, "ip", "link", "set", "lo", "up")
        sh(lan, "ip", "addr", "add", "192.168.77.2/24", "dev", "eth0")
        sh(lan, "ip", "link", "set", "eth0", "up")
        yield Net(node, pods, lan)
    finally:
        for proc in servers:
            proc.kill()
            proc.wait()
        for ns in made:
            ns.close()


def svc(name: str, ip: str, eps: list[str], node_port: int = 0, affinity: int = 0) -> ServicePort:
    return ServicePort(
        "default",
        name,
        "http",
        "TCP",
        ip,
        80,
        node_port,
        tuple(Endpoint(e, PORT) for e in eps),
        affinity,
    )


def test_cluster_ip_spreads_over_every_endpoint(net: Net) -> None:
    ips = [net.pods[n].ip for n in ("a", "b", "c")]
    net.apply([svc("web", "10.43.0.10", ips)])
    for source in (None, net.pods["client"].ns):  # the node (output), a pod (prerouting)
        seen = collections.Counter(
            net.connect("10.43.0.10", 80, source).split()[0] for _ in range(300)
        )
        assert set(seen) == {"a", "b", "c"}, seen
        # 100 each expected; below 50 is more than 6 standard deviations off
        assert min(seen.values()) > 50, seen
    # pod to pod on one bridge: masqueraded, so the reply comes back through the node and its
    # conntrack (else the endpoint would answer the client straight over the bridge)
    assert net.connect("10.43.0.10", 80, net.pods["client"].ns).split()[1] == GATEWAY


def test_node_port_on_the_node_addresses(net: Net) -> None:
    net.apply([svc("np", "10.43.0.11", [net.pods["b"].ip], node_port=30080)])
    assert net.connect(GATEWAY, 30080).startswith("b ")
    assert net.connect(GATEWAY, 30080, net.pods["client"].ns).startswith("b ")
    assert net.connect("10.43.0.11", 80).startswith("b ")
    with pytest.raises(OSError):  # not on a port no service has
        net.connect(GATEWAY, 30081)
    # from outside (a machine with no route to the pods): the node's LAN address answers, and
    # the connection is masqueraded so the pod's reply goes back through the node
    name, seen_from = net.connect(NODE_LAN_IP, 30080, net.lan).split()
    assert (name, seen_from) == ("b", GATEWAY)


def test_external_and_load_balancer_addresses(net: Net) -> None:
    """An externalIP or load balancer address (ServiceLB gives the nodes' own) answers at
    the service port, from outside (masqueraded), from the node and from a pod; an address
    of a service without endpoints refuses."""
    lb = dataclasses.replace(
        svc("lb", "10.43.0.13", [net.pods["c"].ip], node_port=30083),
        external_ips=(NODE_LAN_IP, "203.0.113.9"),
    )
    empty = dataclasses.replace(svc("lb-empty", "10.43.0.14", []), external_ips=(GATEWAY,))
    net.apply([lb, empty])
    name, seen_from = net.connect(NODE_LAN_IP, 80, net.lan).split()
    assert (name, seen_from) == ("c", GATEWAY)
    assert net.connect(NODE_LAN_IP, 80).startswith("c ")
    assert net.connect(NODE_LAN_IP, 80, net.pods["client"].ns).startswith("c ")
    assert net.connect("203.0.113.9", 80, net.pods["client"].ns).startswith("c ")
    assert net.connect(GATEWAY, 30083).startswith("c ")  # its NodePort still
    with pytest.raises(ConnectionRefusedError):
        net.connect(GATEWAY, 80, net.pods["client"].ns)
    with pytest.raises(OSError):  # another port of that address: no service
        net.connect(NODE_LAN_IP, 81, net.lan, timeout=2)
    # gone from the service: the address no longer answers at that port
    net.apply([dataclasses.replace(lb, external_ips=())])
    with pytest.raises(OSError):
        net.connect(NODE_LAN_IP, 80, net.lan, timeout=2)


def test_no_endpoints_is_refused_not_dropped(net: Net) -> None:
    net.apply([svc("empty", "10.43.0.12", [], node_port=30082)])
    for source in (None, net.pods["client"].ns):
        with pytest.raises(ConnectionRefusedError):
            net.connect("10.43.0.12", 80, source)
        with pytest.raises(ConnectionRefusedError):
            net.connect(GATEWAY, 30082, source)


def local(sp: ServicePort, here: list[str], internal: bool = False) -> ServicePort:
    """``sp`` with ``here`` its endpoints on this node and a Local traffic policy."""
    return dataclasses.replace(
        sp,
        local_endpoints=tuple(Endpoint(e, PORT) for e in here),
        internal_local=internal,
        external_local=not internal,
    )


def test_internal_traffic_policy_local_uses_only_this_nodes_endpoints(net: Net) -> None:
    a, b = net.pods["a"].ip, net.pods["b"].ip
    client = net.pods["client"].ns
    net.apply([local(svc("itp", "10.43.0.21", [a, b]), [a], internal=True)])
    for source in (None, client):
        assert {net.connect("10.43.0.21", 80, source).split()[0] for _ in range(30)} == {"a"}
    # endpoints elsewhere, none here: dropped (Kubernetes: no local endpoint), not refused
    net.apply([local(svc("itp", "10.43.0.21", [a, b]), [], internal=True)])
    for source in (None, client):
        with pytest.raises(TimeoutError):
            net.connect("10.43.0.21", 80, source, timeout=2)


def test_external_traffic_policy_local_keeps_the_client_address(net: Net) -> None:
    a, b = net.pods["a"].ip, net.pods["b"].ip
    net.apply([local(svc("etp", "10.43.0.22", [a, b], node_port=30090), [a])])
    # from outside: only this node's endpoint, and it sees the client's own address
    for _ in range(10):
        assert net.connect(NODE_LAN_IP, 30090, net.lan).split() == ["a", "192.168.77.2"]
    # the clusterIP and the node's own pods still spread over every endpoint
    seen = {net.connect(GATEWAY, 30090, net.pods["client"].ns).split()[0] for _ in range(40)}
    assert seen == {"a", "b"}
    assert {net.connect("10.43.0.22", 80).split()[0] for _ in range(40)} == {"a", "b"}
    net.apply([local(svc("etp", "10.43.0.22", [a, b], node_port=30090), [])])
    with pytest.raises(TimeoutError):
        net.connect(NODE_LAN_IP, 30090, net.lan, timeout=2)
    assert net.connect(GATEWAY, 30090, net.pods["client"].ns).split()[0] in ("a", "b")


def test_session_affinity_pins_a_client(net: Net) -> None:
    ips = [net.pods[n].ip for n in ("a", "b", "c")]
    net.apply([svc("sticky", "10.43.0.13", ips, affinity=600)])
    pinned = []
    for source in (None, net.pods["client"].ns):
        seen = {net.connect("10.43.0.13", 80, source).split()[0] for _ in range(40)}
        assert len(seen) == 1, seen
        pinned.append(seen)
    # a sync that changes other services keeps the clients pinned where they were
    net.apply([svc("sticky", "10.43.0.13", ips, affinity=600), svc("other", "10.43.0.20", ips)])
    for source, was in zip((None, net.pods["client"].ns), pinned, strict=True):
        seen = {net.connect("10.43.0.13", 80, source).split()[0] for _ in range(20)}
        assert seen == was


def test_hairpin_a_pod_reaches_itself_through_its_service(net: Net) -> None:
    a = net.pods["a"]
    net.apply([svc("self", "10.43.0.14", [a.ip])])
    name, seen_from = net.connect("10.43.0.14", 80, a.ns).split()
    assert name == "a"
    assert seen_from == GATEWAY  # masqueraded: the reply comes back through the node


def test_resync_swaps_rules_without_a_gap(net: Net) -> None:
    ips = [net.pods[n].ip for n in ("a", "b", "c")]
    rulesets = [
        [svc("web", "10.43.0.15", ips[:2]), svc("x", "10.43.0.16", [ips[2]])],
        [svc("web", "10.43.0.15", ips[1:]), svc("x", "10.43.0.16", [ips[0]])],
    ]
    net.apply(rulesets[0])
    stop = threading.Event()
    failures: list[str] = []
    done = [0]

    def client() -> None:
        while not stop.is_set():
            try:
                net.connect("10.43.0.15", 80)
                done[0] += 1
            except OSError as e:
                failures.append(str(e))

    t = threading.Thread(target=client)
    t.start()
    try:
        for i in range(100):  # 50 updates in place, 50 replacements of the whole table
            net.apply(rulesets[i % 2], replace=i >= 50)
    finally:
        stop.set()
        t.join()
    assert failures == [] and done[0] > 0


def test_a_removed_endpoint_keeps_no_unanswered_connection(net: Net) -> None:
    """A SYN sent to an endpoint that never answers (its node died) leaves a SYN_SENT entry
    that DNATs there; once the rules drop that endpoint, the same connection (a retransmitted
    SYN, or a new connection that reuses the source port, as a client looping requests does
    when its ephemeral ports wrap) must go to a live endpoint, not to the old entry's."""
    dead = net.pods["c"]  # it hears nothing any more (as a pod on a node that died)
    client = net.pods["client"]
    deaf = (
        "table ip deaf { chain input { type filter hook input priority 0; tcp dport %d drop; }; }"
    )
    apply_ruleset(deaf % PORT, dead.ns.path)
    try:
        net.apply([svc("gone", "10.43.0.19", [dead.ip])])

        def attempt() -> int:
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((client.ip, 0))
            s.setblocking(False)
            assert s.connect_ex(("10.43.0.19", 80)) == errno.EINPROGRESS
            port = int(s.getsockname()[1])
            # the SYN is out once the node tracks it (DNATed to the dead endpoint)
            until("the SYN tracked", lambda: tracked(port))
            s.close()  # a socket closed in SYN_SENT sends nothing: the entry stays
            return port

        def tracked(port: int) -> str:
            """The node's entry of the client's connection from ``port`` to the service."""
            key = f"src={client.ip} dst=10.43.0.19 sport={port} dport=80 "
            return next((ln for ln in conntrack(net.node).splitlines() if key in ln), "")

        port = in_netns(client.ns.path, attempt)
        entry = tracked(port)
        assert "SYN_SENT" in entry and f"src={dead.ip} " in entry, entry
        net.apply([svc("gone", "10.43.0.19", [net.pods["a"].ip])])

        def again() -> str:
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((client.ip, port))  # the same addresses and ports as the attempt
                s.settimeout(10)
                try:
                    s.connect(("10.43.0.19", 80))
                except OSError as e:
                    return f"FAIL {e!r}"
                return s.recv(100).decode().strip()

        answer = in_netns(client.ns.path, again)
    finally:
        apply_ruleset("delete table ip deaf\n", dead.ns.path)
    assert answer.split()[0] == "a", answer


def conntrack(ns: NodeNs) -> str:
    return subprocess.run(
        ["nsenter", f"--net={ns.path}", "conntrack", "-L", "-p", "tcp"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip


def test_rules_are_one_table_removed_whole(net: Net) -> None:
    import json

    from orchestrator.proxy import TABLE, delete_script

    net.apply([svc("web", "10.43.0.17", [net.pods["a"].ip])])
    out = subprocess.run(
        ["nsenter", f"--net={net.node.path}", "nft", "-j", "list", "table", "ip", TABLE],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    objs = json.loads(out)["nftables"]
    chains = {o["chain"]["name"] for o in objs if "chain" in o}
    assert {"services", "nat-prerouting", "nat-output", "nat-postrouting"} <= chains
    maps = {o["map"]["name"]: o["map"] for o in objs if "map" in o}
    assert len(maps["service-ips"]["elem"]) == 1
    apply_ruleset(delete_script(), net.node.path)
    apply_ruleset(delete_script(), net.node.path)  # absent: no error
    net.applied = None
    listing = subprocess.run(
        ["nsenter", f"--net={net.node.path}", "nft", "list", "tables"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert TABLE not in listing
    with pytest.raises(OSError):
        net.connect("10.43.0.17", 80)
    assert in_netns(net.node.path, lambda: True)
