"""NetworkPolicy enforced on the nodes, end to end on a two-node cluster on one machine
(``corral cluster up`` through testkit.cluster, ONE cluster for the module), driven by kubectl.

Web pods (busybox httpd answering their name on 8080 and "second" on 8081) and client pods on
either node; a client "reaches" a web pod when an HTTP request through busybox ``nc`` gets
its answer (a two-second timeout: a dropped connection is a failure). Each test works in a
namespace of its own, so a policy of one test selects no pod of another; each checks what a
policy closes and what it leaves open, on one node and across the two."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.netpol import TABLE
from runtime.network.netns import in_netns
from testkit.cluster import image_dir, leftovers, one_machine_cluster
from tests.integration.test_cluster import Cluster, pod, until

pytestmark = [pytest.mark.root, pytest.mark.network]

NODES = 2
# Answers its pod's name on 8080 and "second" on 8081
WEB = (
    "mkdir -p /tmp/a /tmp/b; hostname > /tmp/a/index.html; echo second > /tmp/b/index.html;"
    " httpd -p 8080 -h /tmp/a; httpd -p 8081 -h /tmp/b;"
    " trap 'exit 0' TERM; while true; do sleep 1; done"
)
BRIDGE_NF = "/proc/sys/net/bridge/bridge-nf-call-iptables"
SLEEP = "trap 'exit 0' TERM; while true; do sleep 1; done"


class Space:
    """One test's namespace on the module's cluster."""

    def __init__(self, cluster: Cluster, name: str) -> None:
        self.c = cluster
        self.name = name

    def run(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return self.c.k.run("-n", self.name, *args, **kw)

    def apply(self, obj: dict[str, Any]) -> None:
        self.run("apply", "-f", "-", input=json.dumps(obj))

    def pod(self, name: str, node: int, script: str = SLEEP, **labels: str) -> str:
        """Start a pod on node ``node`` (0 or 1); its address once it runs."""
        spec = pod(name, self.c.state.nodes[node].name, script, labels=labels)
        spec["spec"]["containers"][0]["ports"] = [
            {"name": "http", "containerPort": 8080},
            {"name": "second", "containerPort": 8081},
        ]
        self.apply(spec)
        return str(self.ip(name))

    def ip(self, name: str) -> str:
        def running() -> str | None:
            p = json.loads(self.run("get", "pod", name, "-o", "json").stdout)
            st = p.get("status") or {}
            return st.get("podIP") if st.get("phase") == "Running" else None

        return str(until(f"pod {self.name}/{name} running", running))

    def reaches(self, client: str, target: str, port: int = 8080) -> bool:
        """Whether ``client`` gets an answer from ``target``:``port`` (within 2 s)."""
        request = f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | timeout 3 nc -w 2 {target} {port}"
        p = self.run("exec", client, "--", "sh", "-c", request, check=False)
        return p.returncode == 0 and "200 OK" in p.stdout

    def policy(self, name: str, **spec: Any) -> None:
        spec.setdefault("podSelector", {})
        self.apply(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": {"name": name},
                "spec": spec,
            }
        )


@pytest.fixture(scope="module")
def cluster(rootfs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    from runtime.pod.monitor import monitor_path

    try:
        monitor_path()
    except FileNotFoundError as e:
        pytest.skip(f"the pod monitor is not built yet: {e}")
    tmp = tmp_path_factory.mktemp("netpol-e2e")
    images = image_dir(rootfs, tmp / "images")
    with one_machine_cluster(tmp, nodes=NODES, images=images) as state:
        yield Cluster(state, tmp / "home")
    left = leftovers(state)
    assert not left, f"cluster down left: {left}"


@pytest.fixture
def ns(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[Space]:
    name = request.node.name.removeprefix("test_")[:20].rstrip("_").replace("_", "-")
    name = f"{name}-{uuid.uuid4().hex[:6]}"
    cluster.k.run("create", "namespace", name)
    yield Space(cluster, name)
    cluster.k.run("delete", "namespace", name, "--wait=false", "--ignore-not-found")


def eventually(what: str, check: Any) -> None:
    """``check()`` becomes true (the nodes apply a change within their sync interval)."""
    until(what, lambda: check() or None)


def table(cluster: Cluster, node: int) -> str:
    """The node's policy table as nft lists it ("" when there is none)."""
    n = cluster.state.nodes[node]

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["nft", "list", "table", "ip", TABLE], capture_output=True, text=True, check=False
        )

    res = in_netns(n.netns, run)
    return res.stdout if res.returncode == 0 else ""


def test_default_deny_blocks_on_one_node_and_across_and_its_removal_reopens(
    cluster: Cluster, ns: Space
) -> None:
    web = ns.pod("web", 0, WEB, app="web")
    ns.pod("near", 0)
    ns.pod("far", 1)
    eventually("web answering", lambda: ns.reaches("near", web))
    assert ns.reaches("far", web)
    # bridged traffic reaches the ip family's hooks only through br_netfilter: the controller
    # turns it on in the node's namespace (1 by default; cleared here to see it set again)
    in_netns(cluster.state.nodes[0].netns, lambda: Path(BRIDGE_NF).write_text("0\n"))
    ns.policy("deny")  # every pod of the namespace, Ingress, no rule: nothing in
    eventually("the near client blocked", lambda: not ns.reaches("near", web))
    assert not ns.reaches("far", web)
    ns.run("delete", "networkpolicy", "deny")
    eventually("the near client through again", lambda: ns.reaches("near", web))
    assert ns.reaches("far", web)
    assert in_netns(cluster.state.nodes[0].netns, lambda: Path(BRIDGE_NF).read_text()) == "1\n"


def test_allow_by_pod_selector_follows_labels(cluster: Cluster, ns: Space) -> None:
    web = ns.pod("web", 0, WEB, app="web")
    ns.pod("client", 0, role="client")
    ns.pod("client-far", 1, role="client")
    ns.pod("stranger", 0, role="stranger")
    # every pod closed: the answers to the clients pass as replies of allowed connections
    ns.policy("deny")
    ns.policy(
        "web-from-clients",
        podSelector={"matchLabels": {"app": "web"}},
        ingress=[{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}]}],
    )
    eventually("the stranger blocked", lambda: not ns.reaches("stranger", web))
    assert ns.reaches("client", web)
    assert ns.reaches("client-far", web)  # across nodes
    ns.run("label", "pod", "stranger", "role=client", "--overwrite")
    eventually("the relabelled stranger through", lambda: ns.reaches("stranger", web))
    ns.run("label", "pod", "client", "role=gone", "--overwrite")
    eventually("the relabelled client blocked", lambda: not ns.reaches("client", web))
    # the rules name only this node's selected pods, and only where they run
    assert "web-from-clients" not in table(cluster, 0)  # chains are named by pod
    assert f"{ns.name}/web" in table(cluster, 0) and f"{ns.name}/web" not in table(cluster, 1)


def test_namespace_selector_and_both_selectors(cluster: Cluster, ns: Space) -> None:
    web = ns.pod("web", 0, WEB, app="web")
    team = f"{ns.name}-team"
    cluster.k.run("create", "namespace", team)
    try:
        cluster.k.run("label", "namespace", team, "team=blue")
        other = Space(cluster, team)
        other.pod("blue-client", 1, role="client")
        other.pod("blue-other", 0, role="other")
        ns.pod("home-client", 0, role="client")
        ns.policy(
            "from-blue",
            podSelector={"matchLabels": {"app": "web"}},
            ingress=[{"from": [{"namespaceSelector": {"matchLabels": {"team": "blue"}}}]}],
        )
        eventually("the home client blocked", lambda: not ns.reaches("home-client", web))
        assert other.reaches("blue-client", web) and other.reaches("blue-other", web)
        # namespaceSelector and podSelector in one peer: both must hold
        ns.policy(
            "from-blue",
            podSelector={"matchLabels": {"app": "web"}},
            ingress=[
                {
                    "from": [
                        {
                            "namespaceSelector": {"matchLabels": {"team": "blue"}},
                            "podSelector": {"matchLabels": {"role": "client"}},
                        }
                    ]
                }
            ],
        )
        eventually("blue-other blocked", lambda: not other.reaches("blue-other", web))
        assert other.reaches("blue-client", web)
        assert not ns.reaches("home-client", web)
    finally:
        cluster.k.run("delete", "namespace", team, "--wait=false", "--ignore-not-found")


def test_ip_block_with_except(cluster: Cluster, ns: Space) -> None:
    web = ns.pod("web", 1, WEB, app="web")
    a = ns.pod("a", 0)
    ns.pod("b", 0)
    ns.pod("far", 1)
    node0 = json.loads(
        cluster.k.run("get", "node", cluster.state.nodes[0].name, "-o", "json").stdout
    )
    cidr = node0["spec"]["podCIDR"]
    ns.policy(
        "from-node0-but-a",
        podSelector={"matchLabels": {"app": "web"}},
        ingress=[{"from": [{"ipBlock": {"cidr": cidr, "except": [f"{a}/32"]}}]}],
    )
    eventually("a blocked", lambda: not ns.reaches("a", web))
    assert ns.reaches("b", web)
    assert not ns.reaches("far", web)  # node 1's pods are outside the block


def test_port_restriction_by_number_and_by_name(cluster: Cluster, ns: Space) -> None:
    web = ns.pod("web", 0, WEB, app="web")
    ns.pod("client", 1)
    eventually("web answering", lambda: ns.reaches("client", web, 8081))
    assert ns.reaches("client", web, 8080)
    ns.policy(
        "only-8080",
        podSelector={"matchLabels": {"app": "web"}},
        ingress=[{"ports": [{"port": 8080}]}],
    )
    eventually("8081 blocked", lambda: not ns.reaches("client", web, 8081))
    assert ns.reaches("client", web, 8080)
    ns.policy(  # the named port: the web pod's container port "second" (8081)
        "only-8080",
        podSelector={"matchLabels": {"app": "web"}},
        ingress=[{"ports": [{"port": "second"}]}],
    )
    eventually("8080 blocked", lambda: not ns.reaches("client", web, 8080))
    assert ns.reaches("client", web, 8081)
    ns.policy(  # a range (endPort) that leaves 8081 out, UDP: TCP is closed
        "only-8080",
        podSelector={"matchLabels": {"app": "web"}},
        ingress=[{"ports": [{"port": 8000, "endPort": 8080}, {"port": 8081, "protocol": "UDP"}]}],
    )
    eventually("8080 through, 8081 blocked", lambda: ns.reaches("client", web, 8080))
    assert not ns.reaches("client", web, 8081)


def test_egress_deny_and_dns(cluster: Cluster, ns: Space) -> None:
    web = ns.pod("web", 1, WEB, app="web")
    other = ns.pod("other", 1, WEB, app="other")
    ns.pod("client", 0, role="client")
    lookup = ["exec", "client", "--", "nslookup", "kubernetes.default.svc.cluster.local"]
    eventually("other answering", lambda: ns.reaches("client", other))
    assert ns.run(*lookup, check=False).returncode == 0
    ns.policy(
        "client-out",
        podSelector={"matchLabels": {"role": "client"}},
        policyTypes=["Egress"],
        egress=[{"to": [{"podSelector": {"matchLabels": {"app": "web"}}}]}],
    )
    eventually("other blocked", lambda: not ns.reaches("client", other))
    assert ns.reaches("client", web)
    assert ns.run(*lookup, check=False).returncode != 0  # no DNS: not allowed
    ns.policy(  # the usual rule: DNS to kube-dns in kube-system
        "dns",
        podSelector={"matchLabels": {"role": "client"}},
        policyTypes=["Egress"],
        egress=[
            {
                "to": [
                    {
                        "namespaceSelector": {
                            "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}
                        },
                        "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                    }
                ],
                "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}],
            }
        ],
    )
    eventually("DNS allowed", lambda: ns.run(*lookup, check=False).returncode == 0)
    assert not ns.reaches("client", other)


def test_service_traffic_is_filtered_at_the_endpoint(cluster: Cluster, ns: Space) -> None:
    ns.pod("web", 0, WEB, app="web")
    ns.pod("client", 0, role="client")
    ns.pod("client-far", 1, role="client")
    ns.pod("stranger", 1)
    ns.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
        }
    )
    svc = json.loads(ns.run("get", "service", "web", "-o", "json").stdout)["spec"]["clusterIP"]
    eventually("the service answering", lambda: ns.reaches("stranger", svc, 80))
    ns.policy(
        "web-from-clients",
        podSelector={"matchLabels": {"app": "web"}},
        ingress=[{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}]}],
    )
    eventually("the stranger blocked", lambda: not ns.reaches("stranger", svc, 80))
    assert ns.reaches("client", svc, 80)  # same node: DNATed, then masqueraded on the bridge
    assert ns.reaches("client-far", svc, 80)


def test_removed_policies_leave_no_table(cluster: Cluster, ns: Space) -> None:
    ns.pod("web", 0, WEB, app="web")
    ns.policy("deny")
    eventually("the table on node 0", lambda: table(cluster, 0))
    ns.run("delete", "networkpolicy", "deny")
    # other tests' namespaces may still be going away with theirs
    others = json.loads(cluster.k.run("get", "netpol", "-A", "-o", "json").stdout)["items"]
    if not others:
        eventually("no table", lambda: not table(cluster, 0) and not table(cluster, 1))
