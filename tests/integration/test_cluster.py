"""A cluster on one machine (``corral cluster up``: orchestrator.cluster through
testkit.cluster), driven by kubectl: three nodes in network namespaces of their own on a LAN
namespace, the pod network between them (host-gw routes from the Nodes' podCIDRs, no
masquerade inside the cluster CIDR), the cluster DNS from inside pods, and ``down`` leaving
nothing: no mount, namespace, process or cgroup."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.cluster import ClusterError, ClusterSpec, State, down, load_state, up
from runtime.network.netlink import RTPROT_CORRAL, Rtnl
from testkit.cluster import IMAGE, image_dir, leftovers, one_machine_cluster
from tests.integration.test_network import echo_server
from tests.kubeserver import CORRAL, KUBECTL_CURRENT, Kubectl

pytestmark = [pytest.mark.root, pytest.mark.network]

WAIT = 120.0  # seconds: a generous bound for a condition, never an assertion on speed
NODES = 3

# A web server that answers /cgi-bin/ip with the address the request came from.
ECHO = (
    "mkdir -p /tmp/www/cgi-bin && printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\n"
    "echo $REMOTE_ADDR\\n' > /tmp/www/cgi-bin/ip && chmod +x /tmp/www/cgi-bin/ip"
    " && exec httpd -f -p 8080 -h /tmp/www"
)


def get(host: str) -> str:
    """A shell command fetching /cgi-bin/ip from ``host``:8080 (busybox nc: its wget crashes
    on some machines)."""
    return f"printf 'GET /cgi-bin/ip HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {host} 8080"


def seen_from(out: str) -> set[str]:
    """The client addresses the echo server's answers in ``out`` name (httpd writes an IPv4
    peer of its dual-stack socket as [::ffff:a.b.c.d])."""
    return {ln.strip().strip("[]").removeprefix("::ffff:") for ln in out.splitlines()}


def until(what: str, cond: Callable[[], Any], timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        last = cond()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)


def pod(name: str, node: str, script: str, **spec: Any) -> dict[str, Any]:
    labels = spec.pop("labels", {})
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "c", "image": IMAGE, "command": ["sh", "-c", script]}],
            **spec,
        },
    }


class Cluster:
    def __init__(self, state: State, home: Path) -> None:
        self.state = state
        if not os.access(KUBECTL_CURRENT, os.X_OK):
            pytest.skip(f"kubectl not found at {KUBECTL_CURRENT}")
        home.mkdir(exist_ok=True)
        self.k = Kubectl(KUBECTL_CURRENT, home, state.kubeconfig, "1.32")

    def get(self, *args: str) -> Any:
        return json.loads(self.k.run("get", *args, "-o", "json").stdout)

    def apply(self, obj: dict[str, Any]) -> None:
        self.k.run("apply", "-f", "-", input=json.dumps(obj))

    def running(self, name: str) -> dict[str, Any]:
        def ok() -> dict[str, Any] | None:
            p = self.get("pod", name)
            st = p.get("status") or {}
            return p if st.get("phase") == "Running" and st.get("podIP") else None

        try:
            return until(f"pod {name} Running", ok)
        except AssertionError:
            logs = {n.name: Path(self.state.data_dir, "logs", f"{n.name}.log").read_text()[-2000:]
                    for n in self.state.nodes}  # fmt: skip
            raise AssertionError(f"{self.get('pod', name).get('status')}\n{logs}") from None

    def logs_until(self, name: str, cond: Callable[[str], bool]) -> str:
        out: list[str] = []

        def seen() -> bool:
            p = self.k.run("logs", name, check=False)
            out[:] = [p.stdout + p.stderr]
            return p.returncode == 0 and cond(p.stdout)

        try:
            until(f"the logs of {name}", seen)
        except AssertionError:
            raise AssertionError(f"logs of {name}: {out[0][-1500:] if out else ''}") from None
        return out[0]


@pytest.fixture(scope="module")
def cluster(rootfs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    from runtime.pod.monitor import monitor_path

    try:
        monitor_path()
    except FileNotFoundError as e:
        pytest.skip(f"the pod monitor is not built yet: {e}")
    tmp = tmp_path_factory.mktemp("cluster")
    images = image_dir(rootfs, tmp / "images")
    with one_machine_cluster(tmp, nodes=NODES, images=images) as state:
        yield Cluster(state, tmp / "home")
    left = leftovers(state)
    assert not left, f"cluster down left: {left}"


def test_nodes_are_ready_with_distinct_pod_cidrs_and_routes_to_each_other(
    cluster: Cluster,
) -> None:
    nodes = {n["metadata"]["name"]: n for n in cluster.get("nodes")["items"]}
    assert sorted(nodes) == [f"node-{i}" for i in range(1, NODES + 1)]
    cidrs = {}
    for name, n in nodes.items():
        conds = {c["type"]: c["status"] for c in n["status"]["conditions"]}
        assert conds["Ready"] == "True", name
        cidrs[name] = ipaddress.IPv4Network(n["spec"]["podCIDR"])
        assert cidrs[name].subnet_of(ipaddress.IPv4Network(cluster.state.cluster_cidr))
    assert all(not a.overlaps(b) for a in cidrs.values() for b in cidrs.values() if a is not b)
    address = {n.name: n.address for n in cluster.state.nodes}
    for name, n in nodes.items():
        ips = [a["address"] for a in n["status"]["addresses"] if a["type"] == "InternalIP"]
        assert ips == [address[name]]
    for node in cluster.state.nodes:  # host-gw: the other nodes' podCIDRs via their address
        want = {(cidrs[o], address[o]) for o in nodes if o != node.name}

        def routes(netns: str = node.netns) -> set[tuple[Any, str]]:
            with Rtnl(netns) as rt:
                return {(r.dst, str(r.gateway)) for r in rt.routes(RTPROT_CORRAL)}

        # each agent adds them as it sees the other Nodes' podCIDRs: soon after Ready
        try:
            until(f"{node.name}'s routes to the other nodes", lambda want=want: routes() == want)
        except AssertionError:
            assert routes() == want, node.name


def test_routes_follow_the_nodes_as_they_come_and_go(cluster: Cluster) -> None:
    """A Node that appears with a podCIDR gets a route on every node; gone, the route goes."""
    ghost = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "ghost"},
        "spec": {"podCIDR": "10.42.200.0/24", "podCIDRs": ["10.42.200.0/24"]},
    }
    cluster.apply(ghost)
    address = str(ipaddress.IPv4Network(cluster.state.lan_cidr).network_address + 99)
    cluster.k.run("patch", "node", "ghost", "--subresource=status", "--type=merge", "-p",
                  json.dumps({"status": {"addresses": [{"type": "InternalIP",
                                                        "address": address}]}}))  # fmt: skip
    want = (ipaddress.IPv4Network("10.42.200.0/24"), address)

    def routes(netns: str) -> set[tuple[ipaddress.IPv4Network, str]]:
        with Rtnl(netns) as rt:
            return {(r.dst, str(r.gateway)) for r in rt.routes(RTPROT_CORRAL)}

    for node in cluster.state.nodes:
        until(f"the route to ghost on {node.name}", lambda n=node: want in routes(n.netns))
    cluster.k.run("delete", "node", "ghost")
    for node in cluster.state.nodes:
        until(f"no route to ghost on {node.name}", lambda n=node: want not in routes(n.netns))
        assert len(routes(node.netns)) == NODES - 1  # the real nodes' stay


def test_a_pod_reaches_a_pod_on_another_node_with_its_own_source_address(
    cluster: Cluster,
) -> None:
    cluster.apply(pod("echo", "node-2", ECHO, labels={"app": "echo"}))
    server = cluster.running("echo")
    target = server["status"]["podIP"]
    assert ipaddress.IPv4Address(target) in ipaddress.IPv4Network(
        cluster.get("node", "node-2")["spec"]["podCIDR"]
    )
    loop = f"while true; do {get(target)}; sleep 0.5; done"
    cluster.apply(pod("client", "node-1", loop))
    client_ip = cluster.running("client")["status"]["podIP"]
    # The server saw the client pod's own address: no masquerade between pods.
    cluster.logs_until("client", lambda out: client_ip in seen_from(out))
    # kubectl logs reached node-1's kubelet on the LAN (the server's --kubelet-netns)
    cluster.k.run("delete", "pod", "client", "--wait=false")


def test_kubectl_exec_reaches_a_kubelet_on_the_lan(cluster: Cluster) -> None:
    """The API server reaches node-2's kubelet from --kubelet-netns for pods/exec too
    (test_kubelet_exec.py has the rest)."""
    cluster.apply(pod("shell", "node-2", "trap 'exit 0' TERM; while true; do sleep 0.2; done"))
    cluster.running("shell")
    p = cluster.k.run(
        "exec", "-i", "shell", "--", "sh", "-c", "cat; exit 4", input="via lan\n", check=False
    )
    assert (p.returncode, p.stdout) == (4, "via lan\n"), p
    cluster.k.run("delete", "pod", "shell", "--wait=false")


def test_pod_traffic_leaving_the_cluster_cidr_is_masqueraded(cluster: Cluster) -> None:
    """A pod reaching an address outside --cluster-cidr (the LAN's own) comes from its node's
    address."""
    lan = str(ipaddress.IPv4Network(cluster.state.lan_cidr).network_address + 1)
    assert cluster.state.lan_netns is not None
    srv = echo_server(cluster.state.lan_netns, 9000, lan)
    try:
        loop = f"while true; do echo hi | nc -w 2 {lan} 9000; sleep 0.5; done"
        cluster.apply(pod("outbound", "node-1", loop))
        cluster.running("outbound")
        node1 = next(n.address for n in cluster.state.nodes if n.name == "node-1")
        cluster.logs_until("outbound", lambda out: f"from {node1}" in out)
        cluster.k.run("delete", "pod", "outbound", "--wait=false")
    finally:
        srv.close()


def test_cluster_dns_resolves_a_service_from_inside_a_pod(cluster: Cluster) -> None:
    cluster.apply(pod("echo", "node-2", ECHO, labels={"app": "echo"}))
    echo_ip = cluster.running("echo")["status"]["podIP"]
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "echo"},
            "spec": {
                "clusterIP": "None",
                "selector": {"app": "echo"},
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            },
        }
    )
    # A Service with a ClusterIP of its own choosing (allocation is the API server's): the DNS
    # answers spec.clusterIP, and SRV for its named port.
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "vip"},
            "spec": {
                "clusterIP": "10.43.0.77",
                "selector": {"app": "echo"},
                "ports": [{"name": "web", "port": 80, "targetPort": 8080, "protocol": "TCP"}],
            },
        }
    )
    assert cluster.get("service", "vip")["spec"]["clusterIP"] == "10.43.0.77"
    # by its short name through the search path, then its full name, with the resolver
    # the pod's programs use (nc's getaddrinfo reads /etc/resolv.conf)
    script = (
        "cat /etc/resolv.conf; while true; do"
        f" {get('echo')} | grep -q . && echo SHORT-OK;"
        " nslookup echo.default.svc.cluster.local;"
        " nslookup vip.default.svc.cluster.local;"
        " nslookup -type=SRV _web._tcp.vip.default.svc.cluster.local; sleep 0.5; done"
    )
    cluster.apply(pod("dns", "node-1", script))
    dns_ip = cluster.get("service", "kube-dns", "-n", "kube-system")["spec"]["clusterIP"]
    assert dns_ip == "10.43.0.10"  # the service CIDR's 10th address, as k3s'
    out = cluster.logs_until(
        "dns",
        lambda o: (
            "SHORT-OK" in o
            and f"Address: {echo_ip}" in o.replace("\t", " ")
            and "Address: 10.43.0.77" in o.replace("\t", " ")
            and "80 vip.default.svc.cluster.local" in o
        ),
    )
    assert f"nameserver {dns_ip}" in out  # the kube-dns Service, not the node's gateway
    assert "search default.svc.cluster.local svc.cluster.local cluster.local" in out
    cluster.apply(pod("dns-default", "node-1", "cat /etc/resolv.conf; sleep 600",
                      dnsPolicy="Default"))  # fmt: skip
    out = cluster.logs_until("dns-default", lambda o: bool(o))
    assert dns_ip not in out and "svc.cluster.local" not in out  # the node's own resolver
    cluster.k.run("delete", "pod", "dns", "dns-default", "--wait=false")
    cluster.k.run("delete", "service", "echo", "vip")


def test_down_removes_everything_and_again_is_nothing(rootfs: Path, tmp_path: Path) -> None:
    images = image_dir(rootfs, tmp_path / "images")
    spec = ClusterSpec(tmp_path / "c", nodes=1, images_dir=images, cgroup_parent="cclutestdown")
    state = up(spec)
    try:
        c = Cluster(state, tmp_path / "home")
        c.apply(pod("left", "node-1", "trap 'exit 0' TERM; sleep 600 & wait"))
        c.running("left")
        pids = node_pids(state)
        assert pids
    finally:
        assert down(spec.data_dir)
    assert leftovers(state, pids) == {}
    assert not (tmp_path / "c").exists()  # up made the directory: down removes it
    assert load_state(tmp_path / "c") is None
    res = subprocess.run([CORRAL, "cluster", "down", "--data-dir", str(tmp_path / "c")],
                         capture_output=True, text=True)  # fmt: skip
    assert res.returncode == 0 and "no cluster" in res.stderr


def test_a_failed_up_removes_what_it_made(tmp_path: Path) -> None:
    # The server refuses a cluster CIDR smaller than a node's /24: after the namespaces.
    spec = ClusterSpec(tmp_path / "c", nodes=1, cluster_cidr="10.42.0.0/25",
                       cgroup_parent="cclutestfail")  # fmt: skip
    with pytest.raises(ClusterError, match="smaller than one node"):
        up(spec)
    assert hostsys_mounts(tmp_path) == []
    assert not (tmp_path / "c").exists()


def hostsys_mounts(path: Path) -> list[str]:
    from corral_common import hostsys

    return hostsys.mounts_under(path)


def node_pids(state: State) -> set[int]:
    """The pod monitors and container processes of the cluster's nodes, as the runtime
    reports them."""
    from orchestrator.kubelet.agent import AgentConfig, pod_options
    from runtime.pod import api

    out: set[int] = set()
    for n in state.nodes:
        cfg = AgentConfig("", "", Path(n.data_dir), node_netns=n.netns,
                          cgroup_parent=n.cgroup_parent)  # fmt: skip
        for st in api.list_pods(pod_options(cfg, Path(n.data_dir) / "network.json")):
            out.update(p for p in [st.monitor_pid] + [c.pid for c in st.all_containers] if p)
    return out


def test_an_agent_waits_for_its_pod_cidr_not_ready_meanwhile(tmp_path: Path) -> None:
    """No node IPAM (no controllers): the Node stays NotReady (NetworkPluginNotReady) until a
    podCIDR is given to it; then the agent sets up its bridge from it and gets Ready."""
    from testkit.kubeagent import Agent, stop_process
    from testkit.net import free_port
    from testkit.netns import node_netns
    from tests.kubeserver import API_ONLY, Server

    server = Server(tmp_path / "server", extra=API_ONLY)
    server.start()
    netns = node_netns()
    agent = Agent(f"https://127.0.0.1:{server.port}", server.data_dir / "token",
                  tmp_path / "agent", "waiter", netns.path, "cclutestwait",
                  extra=("--kubelet-port", str(free_port())))  # fmt: skip
    agent.root.mkdir(parents=True)
    with open(agent.log, "ab") as log:
        agent.proc = subprocess.Popen(agent.argv(), stdout=log, stderr=log)
    try:

        def ready() -> tuple[str, str] | None:
            code, node = server.json("GET", "/api/v1/nodes/waiter")
            if code != 200:
                return None
            conds = {c["type"]: c for c in node["status"].get("conditions") or []}
            c = conds.get("Ready")
            return (c["status"], c["message"]) if c else None

        status, message = until("the node's Ready condition", ready)
        assert status == "False" and "NetworkPluginNotReady" in message
        assert not (agent.data_dir / "network.json").exists()
        code, _ = server.json(
            "PATCH",
            "/api/v1/nodes/waiter",
            {"spec": {"podCIDR": "10.42.5.0/24", "podCIDRs": ["10.42.5.0/24"]}},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert code == 200
        until("the node Ready", lambda: (ready() or ("",))[0] == "True")
        with Rtnl(netns.path) as rt:
            bridge = rt.link("corral0")
            assert bridge is not None
            assert [str(a) for a in rt.addrs(bridge.index)] == ["10.42.5.1/24"]
    finally:
        stop_process(agent.proc)
        netns.close()
        server.stop()
