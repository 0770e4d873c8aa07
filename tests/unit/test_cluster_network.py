"""The pod network of a cluster, without the kernel: host-gw routes as a diff
(runtime.network.node.route_changes), the peers and the node network file the kubelet derives
from Node objects (orchestrator.kubelet.network), the pods' DNS settings."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest

from orchestrator.kubelet.network import network_doc, node_network_ip, peers_of
from runtime.network import (
    DnsConfig,
    NetworkConfigError,
    parse_config,
    pod_dns,
    resolv_conf_content,
)
from runtime.network.netlink import RTPROT_CORRAL, Route
from runtime.network.node import route_changes

N = ipaddress.IPv4Network
A = ipaddress.IPv4Address


def route(dst: str, via: str) -> Route:
    return Route(N(dst), A(via), RTPROT_CORRAL)


def test_route_changes_add_the_missing_and_drop_the_stale() -> None:
    have = [route("10.42.1.0/24", "172.31.0.3"), route("10.42.9.0/24", "172.31.0.9")]
    want = {N("10.42.1.0/24"): A("172.31.0.3"), N("10.42.2.0/24"): A("172.31.0.4")}
    stale, missing = route_changes(have, want)
    assert stale == [N("10.42.9.0/24")]  # a node gone
    assert missing == {N("10.42.2.0/24"): A("172.31.0.4")}  # a node come; 1.0 is right


def test_route_changes_replace_a_route_via_a_moved_node_and_nothing_when_equal() -> None:
    have = [route("10.42.1.0/24", "172.31.0.3")]
    stale, missing = route_changes(have, {N("10.42.1.0/24"): A("172.31.0.7")})
    assert stale == [N("10.42.1.0/24")]
    assert missing == {N("10.42.1.0/24"): A("172.31.0.7")}
    assert route_changes(have, {N("10.42.1.0/24"): A("172.31.0.3")}) == ([], {})
    assert route_changes([], {}) == ([], {})


def node(name: str, cidr: str | None, *addresses: tuple[str, str]) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {"podCIDR": cidr} if cidr else {},
        "status": {"addresses": [{"type": t, "address": a} for t, a in addresses]},
    }


def test_peers_are_the_other_nodes_with_a_pod_cidr_and_an_address() -> None:
    nodes = [
        node("c", "10.42.2.0/24", ("InternalIP", "172.31.0.4")),
        node("a", "10.42.0.0/24", ("InternalIP", "172.31.0.2")),
        node("b", "10.42.1.0/24", ("Hostname", "b"), ("InternalIP", "172.31.0.3")),
        node("new", None, ("InternalIP", "172.31.0.5")),  # no podCIDR yet
        node("lo", "10.42.4.0/24", ("InternalIP", "127.0.0.1")),  # no routable address
        node("clash", "10.42.0.128/25", ("InternalIP", "172.31.0.6")),  # overlaps ours
    ]
    assert peers_of(nodes, "a", "10.42.0.0/24") == [
        {"name": "b", "podCIDR": "10.42.1.0/24", "address": "172.31.0.3"},
        {"name": "c", "podCIDR": "10.42.2.0/24", "address": "172.31.0.4"},
    ]


def test_node_network_ip_is_the_first_ipv4_internal_ip_not_loopback() -> None:
    n = node("a", None, ("InternalIP", "127.0.0.1"), ("InternalIP", "fd00::1"),
             ("ExternalIP", "192.0.2.1"), ("InternalIP", "172.31.0.2"))  # fmt: skip
    assert node_network_ip(n) == "172.31.0.2"
    assert node_network_ip(node("b", None)) is None


def test_the_network_file_parses_as_the_runtime_reads_it(tmp_path: Path) -> None:
    peers = [{"name": "b", "podCIDR": "10.42.1.0/24", "address": "172.31.0.3"}]
    doc = network_doc(tmp_path, "10.42.0.0/24", "10.42.0.0/16", peers, dns="10.43.0.10")
    cfg = parse_config(doc)
    assert cfg.pod_cidr == N("10.42.0.0/24") and cfg.cluster_cidr == N("10.42.0.0/16")
    assert cfg.masquerade and cfg.state_dir == tmp_path / "network"
    assert [(p.pod_cidr, p.address) for p in cfg.peers] == [(N("10.42.1.0/24"), A("172.31.0.3"))]
    assert cfg.dns.nameservers == ("10.43.0.10",)  # the kube-dns Service, not the gateway
    assert cfg.dns.cluster_domain == "cluster.local"
    plain = parse_config(network_doc(tmp_path, "10.42.0.0/24", None, [], dns=None))
    assert not plain.masquerade and plain.dns == DnsConfig() and plain.peers == ()


CLUSTER = DnsConfig(("10.43.0.10",), (), ("ndots:5",), "cluster.local")
HOST = DnsConfig(("192.0.2.53",), ("corp.example",), ("edns0",))


def test_cluster_first_pods_get_the_cluster_dns_and_their_namespace_search_path() -> None:
    """The kubelet's ClusterFirst: the cluster DNS, <ns>.svc.<domain> svc.<domain> <domain>
    then the host's searches, ndots:5 (not the host's options)."""
    for policy, host_network in (("ClusterFirst", False), ("ClusterFirstWithHostNet", True)):
        got = pod_dns(policy, "web", CLUSTER, HOST, host_network=host_network)
        assert resolv_conf_content(got) == (
            "nameserver 10.43.0.10\n"
            "search web.svc.cluster.local svc.cluster.local cluster.local corp.example\n"
            "options ndots:5\n"
        )


def test_default_and_host_network_cluster_first_get_the_nodes_resolver() -> None:
    for policy, host_network in (("Default", False), ("ClusterFirst", True)):
        got = pod_dns(policy, "web", CLUSTER, HOST, host_network=host_network)
        assert got == HOST
    # no cluster DNS known: ClusterFirst falls back to the node's (MissingClusterDNS)
    assert pod_dns("ClusterFirst", "web", DnsConfig(), HOST) == HOST


def test_dns_config_is_merged_as_the_kubelet_merges_it() -> None:
    got = pod_dns(
        "ClusterFirst", "web", CLUSTER, HOST,
        extra_nameservers=("10.43.0.10", "1.1.1.1"),
        extra_searches=("svc.cluster.local", "my.dns.search.suffix"),
        extra_options=(("ndots", "2"), ("edns0", None)),
    )  # fmt: skip
    assert got.nameservers == ("10.43.0.10", "1.1.1.1")  # no duplicate
    assert got.searches == (
        "web.svc.cluster.local", "svc.cluster.local", "cluster.local", "corp.example",
        "my.dns.search.suffix",
    )  # fmt: skip
    assert got.options == ("ndots:2", "edns0")  # dnsConfig's value replaces the default
    none = pod_dns("None", "web", CLUSTER, HOST, extra_nameservers=("1.2.3.4",),
                   extra_searches=("ns1.svc.cluster-domain.example",),
                   extra_options=(("ndots", "2"),))  # fmt: skip
    assert resolv_conf_content(none) == (
        "nameserver 1.2.3.4\nsearch ns1.svc.cluster-domain.example\noptions ndots:2\n"
    )


def test_limits_three_nameservers_and_the_search_list_length() -> None:
    got = pod_dns("Default", "web", CLUSTER, HOST,
                  extra_nameservers=("1.1.1.1", "8.8.8.8", "9.9.9.9"),
                  extra_searches=tuple(f"d{i}.{'x' * 60}" for i in range(40)))  # fmt: skip
    assert got.nameservers == ("192.0.2.53", "1.1.1.1", "8.8.8.8")
    assert len(got.searches) <= 32 and len(" ".join(got.searches)) <= 2048
    assert got.searches[0] == "corp.example"


def test_a_bad_cluster_domain_is_refused_naming_the_field() -> None:
    with pytest.raises(NetworkConfigError, match="dns.clusterDomain"):
        parse_config({"podCIDR": "10.42.0.0/24", "dns": {"clusterDomain": "Not A Domain"}})
