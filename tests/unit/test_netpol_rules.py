"""The NetworkPolicy ruleset of a node (orchestrator.netpol.rules): policies, pods and
namespaces in, nft text out. Which pods get chains, what each rule becomes."""

from __future__ import annotations

from typing import Any

from orchestrator.netpol.controller import slim_pod
from orchestrator.netpol.rules import (
    TABLE,
    PodInfo,
    delete_script,
    dns_pods,
    pod_info,
    ruleset,
    selector_matches,
)

NS = {
    "a": {"kubernetes.io/metadata.name": "a"},
    "b": {"kubernetes.io/metadata.name": "b", "team": "blue"},
}
WEB = PodInfo("a", "web", "10.42.0.5", "n1", {"app": "web"}, (("http", "TCP", 8080),))
CLIENT = PodInfo("a", "client", "10.42.0.6", "n1", {"role": "client"})
FAR = PodInfo("a", "far", "10.42.1.7", "n2", {"role": "client"})
BLUE = PodInfo("b", "blue", "10.42.1.8", "n2", {"role": "other"}, (("http", "TCP", 9090),))
PODS = [WEB, CLIENT, FAR, BLUE]


def _np(name: str, ns: str = "a", **spec: Any) -> dict[str, Any]:
    spec.setdefault("podSelector", {})
    spec.setdefault("policyTypes", ["Ingress", "Egress"] if spec.get("egress") else ["Ingress"])
    return {"metadata": {"name": name, "namespace": ns}, "spec": spec}


def _chain(text: str, prefix: str, pod: PodInfo) -> list[str]:
    """The lines of ``pod``'s chain in ``text``."""
    lines = text.splitlines()
    start = next(
        i for i, ln in enumerate(lines) if ln.startswith(f"chain {prefix}-") and ln.endswith(
            f"-{pod.namespace}/{pod.name} {{")
    )  # fmt: skip
    end = lines.index("}", start)
    sets = {}
    for ln in lines:
        if ln.startswith("set pods-"):
            name, _, rest = ln.removeprefix("set ").partition(" ")
            sets["@" + name] = "{ " + rest.split("elements = { ", 1)[1].split(" }", 1)[0] + " }"
    out = []
    for ln in lines[start + 1 : end]:
        for ref, items in sets.items():  # a named set shown as its elements
            ln = ln.replace(ref + " ", items + " ")
        out.append(ln)
    return out


def _map(text: str, name: str) -> str:
    return next(ln for ln in text.splitlines() if ln.startswith(f"map {name} "))


def test_default_deny_selects_only_this_nodes_pods_of_the_namespace() -> None:
    text = ruleset([_np("deny")], PODS, NS, "n1")
    assert text.startswith(f"add table ip {TABLE}\ndelete table ip {TABLE}\ntable ip {TABLE} {{")
    ingress = _map(text, "ingress-pods")
    assert "10.42.0.5 : jump ingress-" in ingress and "10.42.0.6 : jump ingress-" in ingress
    assert "10.42.1.7" not in ingress  # another node's pod: its node's rules
    assert "elements" not in _map(text, "egress-pods")  # an Ingress policy: egress open
    assert _chain(text, "ingress", WEB) == ["drop"]
    # n2 has FAR in namespace a; BLUE's namespace has no policy
    other = ruleset([_np("deny")], PODS, NS, "n2")
    assert "10.42.1.7 : jump" in _map(other, "ingress-pods")
    assert "10.42.1.8" not in _map(other, "ingress-pods")


def test_base_chains_accept_established_then_dispatch_by_address() -> None:
    text = ruleset([_np("deny")], PODS, NS, "n1")
    assert (
        "chain forward {\ntype filter hook forward priority filter; policy accept;\n"
        "ct state established,related accept\nip saddr vmap @egress-pods\n"
        "ip daddr vmap @ingress-pods\n}"
    ) in text
    assert (
        "chain input {\ntype filter hook input priority filter; policy accept;\n"
        "ct state established,related accept\nip saddr vmap @egress-pods\n}"
    ) in text
    assert "hook output" not in text  # the node's own traffic to its pods is never filtered


def test_pod_selector_peer_lists_the_selected_pods_in_the_namespace() -> None:
    np = _np(
        "allow",
        podSelector={"matchLabels": {"app": "web"}},
        ingress=[{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}]}],
    )
    text = ruleset([np], PODS, NS, "n1")
    assert "10.42.0.6" not in _map(text, "ingress-pods")  # the client is not selected
    assert _chain(text, "ingress", WEB) == ["ip saddr { 10.42.0.6, 10.42.1.7 } return", "drop"]


def test_namespace_selector_alone_and_with_a_pod_selector() -> None:
    alone = _np(
        "a1", ingress=[{"from": [{"namespaceSelector": {"matchLabels": {"team": "blue"}}}]}]
    )
    text = ruleset([alone], PODS, NS, "n1")
    assert _chain(text, "ingress", WEB) == ["ip saddr 10.42.1.8 return", "drop"]
    both = _np(
        "a2",
        ingress=[
            {
                "from": [
                    {
                        "namespaceSelector": {},
                        "podSelector": {"matchLabels": {"role": "client"}},
                    }
                ]
            }
        ],
    )
    text = ruleset([both], PODS, NS, "n1")
    assert _chain(text, "ingress", WEB) == ["ip saddr { 10.42.0.6, 10.42.1.7 } return", "drop"]
    none = _np("a3", ingress=[{"from": [{"namespaceSelector": {"matchLabels": {"x": "y"}}}]}])
    assert _chain(ruleset([none], PODS, NS, "n1"), "ingress", WEB) == ["drop"]


def test_ip_block_with_excepts_and_ports() -> None:
    np = _np(
        "blk",
        podSelector={"matchLabels": {"app": "web"}},
        ingress=[
            {
                "from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": [
                    "10.42.0.6/32", "10.1.0.0/16"]}}],
                "ports": [
                    {"protocol": "TCP", "port": 8080},
                    {"protocol": "UDP", "port": 1000, "endPort": 2000},
                    {"protocol": "SCTP"},
                    {"protocol": "TCP", "port": "http"},
                    {"protocol": "UDP", "port": "http"},  # no such UDP port: left out
                ],
            },
            {"from": [{"ipBlock": {"cidr": "fd00::/64"}}]},  # IPv6: matches nothing here
        ],
    )  # fmt: skip
    block = "ip saddr 10.0.0.0/8 ip saddr != { 10.1.0.0/16, 10.42.0.6/32 }"
    assert _chain(ruleset([np], PODS, NS, "n1"), "ingress", WEB) == [
        f"{block} meta l4proto tcp th dport 8080 return",
        f"{block} meta l4proto udp th dport 1000-2000 return",
        f"{block} meta l4proto sctp return",
        "drop",  # the named port is 8080 too: the same line once
    ]


def test_a_list_of_addresses_is_one_named_set_for_every_chain() -> None:
    np = _np("allow", ingress=[{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}]}])
    text = ruleset([np], PODS, NS, "n1")
    sets = [ln for ln in text.splitlines() if ln.startswith("set ")]
    assert len(sets) == 1 and "elements = { 10.42.0.6, 10.42.1.7 }" in sets[0]
    name = sets[0].split()[1]
    assert text.count(f"ip saddr @{name} return") == 2  # the web and the client's chains


def test_empty_rule_allows_everything_and_policies_unite() -> None:
    deny = _np("deny")
    allow = _np("all", podSelector={"matchLabels": {"app": "web"}}, ingress=[{}])
    text = ruleset([deny, allow], PODS, NS, "n1")
    assert _chain(text, "ingress", WEB) == ["return", "drop"]
    assert _chain(text, "ingress", CLIENT) == ["drop"]


def test_egress_named_port_resolves_on_every_destination_pod() -> None:
    np = _np(
        "out",
        podSelector={"matchLabels": {"role": "client"}},
        policyTypes=["Egress"],
        egress=[{"ports": [{"protocol": "TCP", "port": "http"}]}, {"to": [{"podSelector": {}}]}],
    )
    text = ruleset([np], PODS, NS, "n1")
    assert "jump" not in _map(text, "ingress-pods")
    assert "10.42.0.6 : jump egress-" in _map(text, "egress-pods")
    assert _chain(text, "egress", CLIENT) == [
        "meta l4proto tcp ip daddr . th dport { 10.42.0.5 . 8080, 10.42.1.8 . 9090 } return",
        "ip daddr { 10.42.0.5, 10.42.0.6, 10.42.1.7 } return",
        "drop",
    ]


def test_cluster_dns_is_a_kube_dns_pod_of_kube_system() -> None:
    nodes = [
        {"metadata": {"name": "n1", "annotations": {
            "corral.dev/cluster-dns-address": "10.42.0.1"}}},
        {"metadata": {"name": "n2"}},
    ]  # fmt: skip
    dns = dns_pods(nodes)
    assert [(p.namespace, p.ip, dict(p.labels)) for p in dns] == [
        ("kube-system", "10.42.0.1", {"k8s-app": "kube-dns"})
    ]
    np = _np(
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
                "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": "dns-tcp"}],
            }
        ],
    )
    text = ruleset([np], PODS + dns, NS, "n1")
    assert _chain(text, "egress", CLIENT) == [
        "ip daddr 10.42.0.1 meta l4proto udp th dport 53 return",
        "ip daddr 10.42.0.1 meta l4proto tcp ip daddr . th dport { 10.42.0.1 . 53 } return",
        "drop",
    ]


def test_pods_without_an_address_of_their_own_are_left_out() -> None:
    base = {
        "metadata": {"name": "p", "namespace": "a", "labels": {"x": "1"}},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": [
            {"name": "http", "containerPort": 80}]}]},
        "status": {"podIP": "10.42.0.9", "phase": "Running"},
    }  # fmt: skip
    info = pod_info(base)
    assert info == PodInfo("a", "p", "10.42.0.9", "n1", {"x": "1"}, (("http", "TCP", 80),))
    assert pod_info(slim_pod(base)) == info  # the informer's slim copy keeps what is read
    for change in (
        {"status": {"phase": "Pending"}},
        {"status": {"podIP": "10.42.0.9", "phase": "Succeeded"}},
        {"spec": {"nodeName": "n1", "hostNetwork": True}, "status": {"podIP": "10.42.0.9"}},
    ):
        assert pod_info({**base, **change}) is None


def test_selectors() -> None:
    labels = {"a": "1", "b": "2"}
    assert selector_matches({}, labels) and selector_matches(None, labels)
    assert selector_matches({"matchLabels": {"a": "1"}}, labels)
    assert not selector_matches({"matchLabels": {"a": "2"}}, labels)
    for op, values, want in (
        ("In", ["1", "3"], True),
        ("NotIn", ["1"], False),
        ("Exists", [], True),
        ("DoesNotExist", [], False),
    ):
        sel = {"matchExpressions": [{"key": "a", "operator": op, "values": values}]}
        assert selector_matches(sel, labels) is want, op


def test_no_policy_no_chains_and_delete_script() -> None:
    text = ruleset([], PODS, NS, "n1")
    assert "jump" not in text
    assert delete_script() == f"add table ip {TABLE}\ndelete table ip {TABLE}\n"


def test_every_watched_kind_marks_the_enforcer_dirty() -> None:
    """A change of a pod (its labels), namespace, policy or node is a sync (none waits for
    the periodic one)."""
    from orchestrator.client import Informer
    from orchestrator.client.rest import NETWORKPOLICIES, NODES
    from orchestrator.netpol import PolicyEnforcer

    client: Any = object()  # nothing is listed: the informers are not started
    policies, nodes = Informer(client, NETWORKPOLICIES), Informer(client, NODES)
    enforcer = PolicyEnforcer(client, "n1", policies, nodes)
    for inf in (enforcer.pods, enforcer.namespaces, policies, nodes):
        enforcer._dirty.clear()
        inf._notify("MODIFIED", {"metadata": {"name": "x"}}, {"metadata": {"name": "x"}})
        assert enforcer._dirty.is_set(), inf.res.plural
