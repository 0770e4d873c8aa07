"""Services end to end on a three-node cluster on one machine (``corral cluster up`` through
testkit.cluster, ONE cluster for the module), driven by kubectl: a Deployment of busybox httpd
pods spread over the nodes behind a Service, reached from client pods on every node through
the ClusterIP and the cluster DNS, through the NodePort from the LAN, while it scales, loses a
pod, rolls out a new version and loses a node.

The clients are pods whose request loops write one line per request, ``<uptime> <answer>``
(the start of the request on the machine's CLOCK_BOOTTIME, /proc/uptime, which the test reads
too; the answer is the serving pod's hostname, or FAIL). A failure is a request that got no
pod's name back.

"An endpoint is removed" means: the proxy rules of the client's node no longer hold the pod's
address, as the test sees them in that node's nftables (``nft list table``), an observation
made after the fact, so later than the change. When a pod is deleted, every request started
after it must succeed (and, with the preStop sleep, every request at all); when a node dies,
none may reach its pods any more."""

from __future__ import annotations

import ipaddress
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.cluster import Node
from runtime.network.netns import in_netns
from testkit.cluster import IMAGE, image_dir, leftovers, one_machine_cluster
from tests.integration.test_cluster import Cluster, pod, until

pytestmark = [pytest.mark.root, pytest.mark.network]

NODES = 3
GRACE = 15  # --node-monitor-grace-period: more than the agents' 10 s Lease renewals
TOLERATION = 5  # --default-{not-ready,unreachable}-toleration-seconds
WAIT = 180.0  # seconds: a bound for a condition, never an assertion on speed
PRE_STOP = 3  # seconds the web pods keep serving after their deletion (preStop sleep)

# A server that stops at once on SIGTERM, as real ones do (httpd as pid 1 would ignore it)
WEB = "hostname > /www/index.html; httpd -f -p 8080 -h /www & trap 'kill $!; exit 0' TERM; wait"


def web_deployment(replicas: int) -> dict[str, Any]:
    """httpd pods answering their hostname, as a zero-downtime Deployment is written: a
    readinessProbe, maxUnavailable 0 / maxSurge 1, a preStop sleep (the endpoint goes before
    the server stops) within terminationGracePeriodSeconds, one pod per node while it can."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "terminationGracePeriodSeconds": PRE_STOP + 5,
                    "topologySpreadConstraints": [
                        {
                            "maxSkew": 1,
                            "topologyKey": "kubernetes.io/hostname",
                            "whenUnsatisfiable": "DoNotSchedule",
                            "nodeTaintsPolicy": "Honor",  # a dead node's domain does not count
                            "labelSelector": {"matchLabels": {"app": "web"}},
                        }
                    ],
                    "containers": [
                        {
                            "name": "httpd",
                            "image": IMAGE,
                            "command": ["sh", "-c", WEB],
                            "ports": [{"containerPort": 8080, "name": "http"}],
                            "readinessProbe": {
                                "httpGet": {"path": "/", "port": "http"},
                                "periodSeconds": 1,
                            },
                            "lifecycle": {
                                "preStop": {"exec": {"command": ["sleep", str(PRE_STOP)]}}
                            },
                            "volumeMounts": [{"name": "www", "mountPath": "/www"}],
                        }
                    ],
                    "volumes": [{"name": "www", "emptyDir": {}}],
                },
            },
        },
    }


SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "web"},
    "spec": {
        "type": "NodePort",
        "selector": {"app": "web"},
        "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
    },
}


def client_pod(name: str, node: str, target: str, count: int = 0) -> dict[str, Any]:
    """A pod on ``node`` sending ``count`` requests (0: until deleted) to ``target``:80, one
    at a time, each a new connection, one line each; DONE after the last."""
    request = f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | timeout 5 nc -w 4 {target} 80 | tail -n 1"
    loop = (
        f"nslookup {target} || true; echo START; i=0;"
        f" while [ {count} -eq 0 ] || [ $i -lt {count} ]; do i=$((i+1));"
        f" read t _ < /proc/uptime; b=$({request}); read e _ < /proc/uptime;"
        f' echo "$t ${{b:-FAIL}} $e"; done;'
        " echo DONE; exec sleep 100000"
    )
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"role": "client"}},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "c", "image": IMAGE, "command": ["sh", "-c", loop]}],
        },
    }


def uptime() -> float:
    return float(Path("/proc/uptime").read_text().split()[0])


def requests_of(log: str) -> list[tuple[float, str]]:
    """(start, answer) of each request line a client wrote (``<start> <answer> <end>``)."""
    out = []
    for line in log.split("START", 1)[-1].splitlines():
        t, _, rest = line.strip().partition(" ")
        if re.fullmatch(r"\d+\.\d+", t):
            out.append((float(t), rest.split(" ")[0]))
    return out


def _holds(rules: str, ip: str) -> bool:
    return re.search(rf"(?<![\d.]){re.escape(ip)}(?!\d)", rules) is not None


def failed_lines(log: str) -> list[str]:
    """The lines of the failed requests in a client's log, with their ends."""
    return [ln for ln in log.splitlines() if " FAIL " in ln]


class E2E(Cluster):
    def node(self, name: str) -> Node:
        return next(n for n in self.state.nodes if n.name == name)

    def rules(self, node: str) -> str:
        """The service proxy's nftables table in ``node``'s namespace."""
        res = subprocess.run(
            ["nsenter", f"--net={self.node(node).netns}", "nft", "list", "table", "ip",
             "corral-proxy"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        return res.stdout

    def proxied(self, node: str, ip: str) -> bool:
        return _holds(self.rules(node), ip)

    def web_pods(self) -> dict[str, dict[str, Any]]:
        """The web pods that are not being deleted, by name."""
        items = self.get("pods", "-l", "app=web")["items"]
        return {
            p["metadata"]["name"]: p for p in items if not p["metadata"].get("deletionTimestamp")
        }

    def web(self, replicas: int) -> dict[str, dict[str, Any]]:
        """The Deployment at ``replicas``, rolled out, its pods in every node's rules; its
        pods."""
        self.apply(web_deployment(replicas))
        self.apply(SERVICE)
        self.k.run("rollout", "status", "deployment/web", f"--timeout={WAIT:.0f}s",
                   timeout=WAIT + 10)  # fmt: skip

        def settled() -> dict[str, dict[str, Any]] | None:
            pods = self.web_pods()
            ready = [p for p in pods.values() if (p.get("status") or {}).get("podIP")]
            return pods if len(ready) == replicas == len(pods) else None

        pods = until("the web pods", settled, WAIT)
        self.wait_rules({p["status"]["podIP"] for p in pods.values()})
        return pods

    def wait_rules(
        self,
        ips: set[str],
        gone: set[str] = frozenset(),
        nodes: list[str] | None = None,  # type: ignore[assignment]
    ) -> None:
        """Until the rules of every node (of ``nodes``) hold ``ips`` and none of ``gone``."""
        for n in nodes or [n.name for n in self.state.nodes]:
            until(
                f"the rules of {n} to hold {sorted(ips)} and not {sorted(gone)}",
                lambda n=n: (
                    all(self.proxied(n, ip) for ip in ips)
                    and not any(self.proxied(n, ip) for ip in gone)
                ),
                WAIT,
            )

    def client_log(self, name: str) -> str:
        return self.k.run("logs", name).stdout

    def requests(self, name: str) -> list[tuple[float, str]]:
        return requests_of(self.client_log(name))

    def wait_requests(self, name: str, after: float, n: int) -> list[tuple[float, str]]:
        """Until client ``name`` has made ``n`` requests that started after ``after``."""
        seen: list[list[tuple[float, str]]] = [[]]

        def enough() -> bool:
            seen[0] = self.requests(name)
            return sum(1 for t, _ in seen[0] if t > after) >= n

        try:
            until(f"{n} requests of {name}", enough, WAIT)
        except AssertionError:
            raise AssertionError(f"{n} requests of {name} after {after}: {seen[0][-20:]}") from None
        return seen[0]

    def delete_clients(self) -> None:
        self.k.run("delete", "pods", "-l", "role=client", "--grace-period=0", "--force",
                   "--ignore-not-found")  # fmt: skip
        until("no client pods", lambda: not self.get("pods", "-l", "role=client")["items"])


def node_port_get(lan_netns: str, address: str, port: int) -> str:
    """One GET / from the LAN namespace: the answering pod's hostname, or FAIL."""

    def run() -> str:
        try:
            with socket.create_connection((address, port), timeout=5) as s:
                s.sendall(b"GET / HTTP/1.0\r\n\r\n")
                data = b""
                while chunk := s.recv(4096):
                    data += chunk
        except OSError as e:
            return f"FAIL {type(e).__name__}"
        return data.decode(errors="replace").rpartition("\r\n\r\n")[2].strip() or "FAIL"

    return in_netns(lan_netns, run)


@pytest.fixture(scope="module")
def cluster(rootfs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2E]:
    from runtime.pod.monitor import monitor_path

    try:
        monitor_path()
    except FileNotFoundError as e:
        pytest.skip(f"the pod monitor is not built yet: {e}")
    tmp = tmp_path_factory.mktemp("svc-e2e")
    images = image_dir(rootfs, tmp / "images")
    with one_machine_cluster(
        tmp,
        nodes=NODES,
        images=images,
        node_monitor_grace_period=GRACE,
        not_ready_toleration_seconds=TOLERATION,
        unreachable_toleration_seconds=TOLERATION,
    ) as state:
        yield E2E(state, tmp / "home")
    left = leftovers(state)
    assert not left, f"cluster down left: {left}"


def test_requests_from_every_node_spread_over_the_pods_by_cluster_dns(cluster: E2E) -> None:
    c = cluster
    pods = c.web(3)
    assert sorted(p["spec"]["nodeName"] for p in pods.values()) == ["node-1", "node-2", "node-3"]
    cluster_ip = c.get("service", "web")["spec"]["clusterIP"]
    for n in c.state.nodes:  # by the service's short name: the cluster DNS and search path
        c.apply(client_pod(f"client-{n.name}", n.name, "web", count=300))
    for n in c.state.nodes:
        log = c.logs_until(f"client-{n.name}", lambda out: "DONE" in out)
        assert f"Address: {cluster_ip}" in log.replace("\t", " "), log[:500]
        answers = [a for _, a in requests_of(log)]
        assert len(answers) == 300
        counts = Counter(answers)
        assert set(counts) == set(pods), (n.name, counts)  # all three, and no failure
        assert min(counts.values()) >= 45, (n.name, counts)  # each at least 15 %
    c.delete_clients()


DNS_IP = "10.43.0.10"  # kube-system/kube-dns: the service CIDR's 10th address
NAMES = ("web", "web.default", "web.default.svc.cluster.local")


def gateway(pod_cidr: str) -> str:
    return str(ipaddress.IPv4Network(pod_cidr).network_address + 1)


def dns_endpoints(c: E2E) -> set[tuple[str, str, bool]]:
    """(nodeName, address, ready) of the kube-dns Service's endpoints."""
    slices = c.get("endpointslices", "-n", "kube-system", "-l",
                   "kubernetes.io/service-name=kube-dns")["items"]  # fmt: skip
    return {
        (e["nodeName"], e["addresses"][0], e["conditions"]["ready"])
        for s in slices
        for e in s.get("endpoints") or []
    }


def lookups(script_out: str) -> dict[str, str]:
    """The output of each ``nslookup`` in a pod's log, by the name looked up."""
    out = {}
    for part in re.sub(r"[ \t]+", " ", script_out).split("== ")[1:]:
        name, _, rest = part.partition("\n")
        out[name.strip()] = rest
    return out


def test_cluster_dns_at_its_cluster_ip_answers_each_node_from_its_own_server(
    cluster: E2E,
) -> None:
    """kube-dns is a Service in kube-system at 10.43.0.10 whose endpoints are every node's own
    DNS server (on its pods' gateway); internalTrafficPolicy Local: each node's proxy sends
    its pods' queries to its own. A pod on every node resolves the service by its short name,
    with its namespace, and by its full name, through 10.43.0.10."""
    c = cluster
    c.web(3)
    cluster_ip = c.get("service", "web")["spec"]["clusterIP"]
    rows = c.k.run("get", "svc", "-n", "kube-system", "--no-headers").stdout.splitlines()
    row = next(r.split() for r in rows if r.split()[0] == "kube-dns")
    assert row[1:3] == ["ClusterIP", DNS_IP] and sorted(row[4].split(",")) == ["53/TCP", "53/UDP"]
    gateways = {
        n["metadata"]["name"]: gateway(n["spec"]["podCIDR"]) for n in c.get("nodes")["items"]
    }
    want = {(name, gw, True) for name, gw in gateways.items()}
    until("kube-dns's endpoints on every node", lambda: dns_endpoints(c) == want, WAIT)
    for node, own in gateways.items():  # the node's own DNS server only
        until(f"{node}'s rules to send DNS to {own}",
              lambda n=node, gw=own: c.proxied(n, gw), WAIT)  # fmt: skip
        others = [gw for name, gw in gateways.items() if name != node]
        assert not any(c.proxied(node, gw) for gw in others), (node, c.rules(node))
    # busybox nslookup applies the search path to a name without dots only (the reason
    # Kubernetes' DNS debugging page pins busybox 1.28); nc resolves through the C library,
    # which searches any name with fewer than ndots dots.
    request = "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | timeout 5 nc -w 4 {} 80 | tail -n 1"
    script = (
        "cat /etc/resolv.conf;"
        + "".join(
            f" echo '== {name}'; nslookup {name}; echo \"GOT $({request.format(name)})\";"
            for name in NAMES
        )
        + " echo END; exec sleep 100000"
    )
    for n in c.state.nodes:
        c.apply(pod(f"dns-{n.name}", n.name, script, labels={"role": "client"}))
    for n in c.state.nodes:
        out = c.logs_until(f"dns-{n.name}", lambda o: "END" in o)
        resolv = out.split("==", 1)[0]
        assert resolv.splitlines() == [
            f"nameserver {DNS_IP}",
            "search default.svc.cluster.local svc.cluster.local cluster.local",
            "options ndots:5",
        ], (n.name, resolv)
        got = lookups(out.split("END", 1)[0])
        assert set(got) == set(NAMES), out
        for name, answer in got.items():
            assert re.search(r"^GOT web-", answer, re.M), (n.name, name, answer)
            if name.count(".") != 1:  # busybox nslookup: see above
                assert f"Server: {DNS_IP}" in answer, (n.name, name, answer)
                assert f"Address: {cluster_ip}" in answer, (n.name, name, answer)
    c.delete_clients()


def test_resolv_conf_per_dns_policy(cluster: E2E) -> None:
    """What the kubelet writes for each dnsPolicy: ClusterFirst with dnsConfig merged, Default
    (the node's resolver), None (dnsConfig alone), ClusterFirstWithHostNet for a hostNetwork
    pod. (A hostNetwork pod of this one-machine cluster is in the machine's own network
    namespace, where the agents run: it sends no query, nothing may leave the machine.)"""
    c = cluster
    extra = {
        "nameservers": ["192.0.2.1"],
        "searches": ["extra.example"],
        "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}],
    }
    cat = "cat /etc/resolv.conf; echo END; exec sleep 100000"
    pods = {
        "dns-merged": {"dnsConfig": extra},
        "dns-default": {"dnsPolicy": "Default"},
        "dns-none": {"dnsPolicy": "None", "dnsConfig": {
            "nameservers": ["1.2.3.4"],
            "searches": ["ns1.svc.cluster-domain.example", "my.dns.search.suffix"],
            "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]}},
        "dns-hostnet": {"hostNetwork": True, "dnsPolicy": "ClusterFirstWithHostNet"},
    }  # fmt: skip
    for name, spec in pods.items():
        c.apply(pod(name, "node-2", cat, labels={"role": "client"}, **spec))
    host = [
        line.split()[1]
        for line in Path("/etc/resolv.conf").read_text().splitlines()
        if line.startswith("nameserver") and not ipaddress.ip_address(line.split()[1]).is_loopback
    ]
    want = {
        "dns-merged": [
            f"nameserver {DNS_IP}",
            "nameserver 192.0.2.1",
            "search default.svc.cluster.local svc.cluster.local cluster.local extra.example",
            "options ndots:2 edns0",
        ],
        "dns-default": [f"nameserver {ns}" for ns in host[:3]],
        "dns-none": [
            "nameserver 1.2.3.4",
            "search ns1.svc.cluster-domain.example my.dns.search.suffix",
            "options ndots:2 edns0",
        ],
        "dns-hostnet": [
            f"nameserver {DNS_IP}",
            "search default.svc.cluster.local svc.cluster.local cluster.local",
            "options ndots:5",
        ],
    }
    for name in pods:
        out = c.logs_until(name, lambda o: "END" in o)
        resolv = out.split("END", 1)[0]
        if name == "dns-default":  # the node's nameservers (and searches, if it has any)
            servers = [ln for ln in resolv.splitlines() if ln.startswith("nameserver")]
            assert servers == want[name] and "svc.cluster.local" not in resolv, resolv
            continue
        assert resolv.splitlines() == want[name], (name, resolv)
    c.delete_clients()


def test_the_node_port_answers_on_every_node_address(cluster: E2E) -> None:
    c = cluster
    pods = c.web(3)
    port = c.get("service", "web")["spec"]["ports"][0]["nodePort"]
    assert c.state.lan_netns is not None
    for n in c.state.nodes:
        answers = Counter(node_port_get(c.state.lan_netns, n.address, port) for _ in range(60))
        assert set(answers) == set(pods), (n.name, answers)


def lb_service(name: str, port: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {
            "type": "LoadBalancer",
            "selector": {"app": "web"},
            "ports": [{"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def test_a_load_balancer_answers_on_every_node_address_at_its_port(cluster: E2E) -> None:
    """ServiceLB: the nodes' addresses become the Service's EXTERNAL-IP, each answers at the
    service port; a second load balancer on that port waits (pending) until it is free."""
    c = cluster
    pods = c.web(3)
    assert c.state.lan_netns is not None
    addresses = sorted(n.address for n in c.state.nodes)

    def ingress(name: str) -> list[str]:
        st = c.get("service", name).get("status") or {}
        return sorted(i["ip"] for i in (st.get("loadBalancer") or {}).get("ingress") or [])

    c.apply(lb_service("web-lb", 8081))
    until("web-lb's load balancer addresses", lambda: ingress("web-lb") == addresses, WAIT)
    row = c.k.run("get", "service", "web-lb", "--no-headers").stdout.split()
    assert row[1] == "LoadBalancer" and sorted(row[3].split(",")) == addresses, row
    for n in c.state.nodes:
        until(
            f"web-lb at {n.address}:8081",
            lambda n=n: node_port_get(c.state.lan_netns, n.address, 8081) in pods,  # type: ignore[arg-type]
            WAIT,
        )
        answers = Counter(node_port_get(c.state.lan_netns, n.address, 8081) for _ in range(30))
        assert set(answers) <= set(pods) and len(answers) >= 2, (n.name, answers)
    c.apply(lb_service("web-lb2", 8081))
    until(
        "web-lb2's PortInUse event",
        lambda: "PortInUse" in c.k.run("describe", "service", "web-lb2").stdout,
        WAIT,
    )
    assert ingress("web-lb2") == []
    c.k.run("delete", "service", "web-lb")
    until("web-lb2's load balancer addresses", lambda: ingress("web-lb2") == addresses, WAIT)
    until(
        "web-lb2 at the first node's address",
        lambda: node_port_get(c.state.lan_netns, addresses[0], 8081) in pods,  # type: ignore[arg-type]
        WAIT,
    )
    c.k.run("delete", "service", "web-lb2")
    until(
        "port 8081 to close",
        lambda: node_port_get(c.state.lan_netns, addresses[0], 8081).startswith("FAIL"),  # type: ignore[arg-type]
        WAIT,
    )


def test_scaling_up_and_down_updates_the_rules(cluster: E2E) -> None:
    c = cluster
    assert c.state.lan_netns is not None
    lan = c.state.lan_netns
    port = c.get("service", "web")["spec"]["ports"][0]["nodePort"]
    address = c.node("node-1").address
    three = c.web(3)
    five = c.web(5)
    assert set(three) < set(five)

    def answers(n: int) -> Counter[str]:
        return Counter(node_port_get(lan, address, port) for _ in range(n))

    seen = answers(200)
    assert set(seen) == set(five), seen  # all five, no failure
    k = c.k
    k.run("scale", "deployment", "web", "--replicas=3")
    until("three web pods", lambda: len(c.web_pods()) == 3, WAIT)
    left = c.web_pods()
    gone = {p["status"]["podIP"] for name, p in five.items() if name not in left}
    c.wait_rules({p["status"]["podIP"] for p in left.values()}, gone)
    seen = answers(100)
    assert set(seen) == set(left), seen


def test_a_deleted_pod_loses_no_request_once_its_endpoint_is_gone(cluster: E2E) -> None:
    c = cluster
    pods = c.web(3)
    cluster_ip = c.get("service", "web")["spec"]["clusterIP"]
    c.apply(client_pod("loop", "node-1", cluster_ip))
    c.running("loop")
    c.wait_requests("loop", 0, 30)
    # a pod on another node than the client's, if one is there (one is, spread as they are)
    victim = min(pods, key=lambda name: pods[name]["spec"]["nodeName"] == "node-1")
    victim_ip = pods[victim]["status"]["podIP"]
    deleted = uptime()
    c.k.run("delete", "pod", victim, "--wait=false")
    until(f"{victim_ip} out of node-1's rules", lambda: not c.proxied("node-1", victim_ip), WAIT)
    removed = uptime()  # observed after the rules changed: later than the change
    reqs = c.wait_requests("loop", removed, 100)
    c.delete_clients()
    after = [(t, a) for t, a in reqs if t > removed]
    failed = [(t, a) for t, a in after if not a.startswith("web-")]
    assert not failed, f"failed after the endpoint was removed at {removed}: {failed[:10]}"
    assert victim not in {a for _, a in after}  # the proxy sends nothing more there
    assert all(a.startswith("web-") for t, a in reqs if t > deleted)  # preStop kept it serving
    c.web(3)  # the ReplicaSet replaced it


def test_a_rolling_update_under_load_fails_no_request(cluster: E2E) -> None:
    c = cluster
    old = c.web(3)
    cluster_ip = c.get("service", "web")["spec"]["clusterIP"]
    clients = [f"load-{n.name}" for n in c.state.nodes]
    for n, name in zip(c.state.nodes, clients, strict=True):
        c.apply(client_pod(name, n.name, cluster_ip))
    for name in clients:
        c.running(name)
        c.wait_requests(name, 0, 20)
    c.k.run("rollout", "restart", "deployment/web")
    c.k.run("rollout", "status", "deployment/web", f"--timeout={WAIT:.0f}s", timeout=WAIT + 10)
    until("the old pods gone", lambda: not (set(old) & {
        p["metadata"]["name"] for p in c.get("pods", "-l", "app=web")["items"]}), WAIT)  # fmt: skip
    new = c.web(3)
    assert not set(new) & set(old)
    c.wait_rules({p["status"]["podIP"] for p in new.values()},
                 {p["status"]["podIP"] for p in old.values()})  # fmt: skip
    done = uptime()
    logs = {name: c.wait_requests(name, done, 30) for name in clients}
    c.delete_clients()
    for name, reqs in logs.items():
        answers = Counter(a for _, a in reqs)
        assert set(answers) <= set(old) | set(new), (name, answers)  # 0 failed requests
        assert set(old) & set(answers) and set(new) & set(answers), (name, answers)
        assert {a for t, a in reqs if t > done} <= set(new), name  # served by the new version


def test_a_killed_node_has_its_pods_rescheduled_and_the_service_answers(cluster: E2E) -> None:
    """A node with web pods dies as a machine does: its agent SIGKILLed, its link to the LAN
    cut (its pods keep running but nobody reaches them). After --node-monitor-grace-period its
    pods are not ready: out of every rule, for good; after the unreachable toleration they are
    evicted and replaced on the other nodes. Clients on the other nodes never get an answer
    from the lost pods after that removal, and every request once the replacements are in."""
    c = cluster
    pods = c.web(3)
    cluster_ip = c.get("service", "web")["spec"]["clusterIP"]
    index, dead = next(
        (i, n)
        for i, n in reversed(list(enumerate(c.state.nodes, 1)))
        if any(p["spec"]["nodeName"] == n.name for p in pods.values())
    )
    lost = {name: p["status"]["podIP"] for name, p in pods.items()
            if p["spec"]["nodeName"] == dead.name}  # fmt: skip
    survivors = [n.name for n in c.state.nodes if n is not dead]
    clients = {f"survivor-{n}": n for n in survivors}
    for name, node in clients.items():
        c.apply(client_pod(name, node, cluster_ip))
    for name in clients:
        c.running(name)
        c.wait_requests(name, 0, 20)
    assert dead.proc is not None and c.state.lan_netns is not None
    os.kill(dead.proc.pid, signal.SIGKILL)
    subprocess.run(["nsenter", f"--net={c.state.lan_netns}", "ip", "link", "set",
                    f"lan{index}", "down"], check=True)  # fmt: skip
    until(f"{dead.name} not Ready", lambda: any(
        cond["type"] == "Ready" and cond["status"] != "True"
        for cond in c.get("node", dead.name)["status"]["conditions"]), WAIT)  # fmt: skip
    removed: dict[str, float] = {}
    for node in survivors:
        until(f"{sorted(lost.values())} out of {node}'s rules",
              lambda n=node: not any(c.proxied(n, ip) for ip in lost.values()), WAIT)  # fmt: skip
        removed[node] = uptime()
    back: list[tuple[float, str, str]] = []  # (when, node, address): a lost one seen again
    watching = threading.Event()
    watching.set()

    def watch() -> None:
        while watching.is_set():
            for node in survivors:
                t, rules = uptime(), c.rules(node)
                back.extend((t, node, ip) for ip in lost.values() if _holds(rules, ip))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()

    def replaced() -> dict[str, dict[str, Any]] | None:
        live = {n: p for n, p in c.web_pods().items() if (p.get("status") or {}).get("podIP")}
        ready = [n for n, p in live.items() if any(
            cond["type"] == "Ready" and cond["status"] == "True"
            for cond in p["status"].get("conditions") or [])]  # fmt: skip
        return live if len(ready) == 3 and not set(lost) & set(live) else None

    now = until("the lost pods replaced", replaced, WAIT)
    assert {p["spec"]["nodeName"] for p in now.values()} <= set(survivors)
    c.wait_rules({p["status"]["podIP"] for p in now.values()}, set(lost.values()), survivors)
    settled = uptime()
    for name in clients:
        c.wait_requests(name, settled, 60)
    watching.clear()
    watcher.join()
    raw = {name: c.client_log(name) for name in clients}
    c.delete_clients()
    assert not back, f"lost endpoints back in the rules: {back[:10]}"
    for name, log in raw.items():
        reqs = requests_of(log)
        # None from the lost pods once they were out of the rules; once the replacements are
        # in, every request answered, by the three current pods.
        assert not set(lost) & {a for t, a in reqs if t > removed[clients[name]]}, name
        settled_reqs = [(t, a) for t, a in reqs if t > settled]
        failed = [r for r in settled_reqs if r[1] not in now]
        assert not failed, (name, settled, failed_lines(log))
        assert {a for _, a in settled_reqs} == set(now), name
    # The evicted pods stay Terminating while their node is gone (no kubelet confirms it):
    # as an administrator does, take them off the API.
    c.k.run("delete", "pod", *lost, "--grace-period=0", "--force", "--ignore-not-found")
    # the cluster DNS: the dead node's server is a not-ready endpoint, the others' are ready,
    # and once the administrator removes the Node, its endpoint goes
    dns = dns_endpoints(c)
    assert {(n, r) for n, _, r in dns} == {(dead.name, False)} | {(n, True) for n in survivors}
    c.k.run("delete", "node", dead.name)
    until(f"{dead.name}'s DNS endpoint gone",
          lambda: {n for n, _, _ in dns_endpoints(c)} == set(survivors), WAIT)  # fmt: skip


def test_nothing_is_left_in_any_namespace(cluster: E2E) -> None:
    c = cluster
    c.k.run("delete", "service", "web", "--ignore-not-found")
    c.k.run("delete", "deployment", "web", "--ignore-not-found")
    dead = [n.name for n in c.state.nodes if n.proc is not None and not _alive(n.proc.pid)]

    def empty() -> bool:
        pods = c.get("pods", "-A")["items"]
        for p in pods:  # a dead node's pods: nothing will ever confirm them gone
            if p["spec"].get("nodeName") in dead and p["metadata"].get("deletionTimestamp"):
                c.k.run("delete", "pod", "-n", p["metadata"]["namespace"],
                        p["metadata"]["name"], "--grace-period=0", "--force",
                        "--ignore-not-found")  # fmt: skip
        rest = {
            kind: [f"{o['metadata'].get('namespace')}/{o['metadata']['name']}"
                   for o in c.get(kind, "-A")["items"]]
            for kind in ("pods", "deployments", "replicasets", "endpointslices")
        }  # fmt: skip
        svcs = sorted(o["metadata"]["name"] for o in c.get("services", "-A")["items"])
        return not any(rest["pods"] + rest["deployments"] + rest["replicasets"]) and (
            svcs == ["kube-dns", "kubernetes"]  # the server's own
            and all(s.startswith(("default/kubernetes", "kube-system/kube-dns"))
                    for s in rest["endpointslices"])
        )  # fmt: skip

    until("every namespace empty", empty, WAIT)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False
