"""The proxy's ruleset as a pure function: Services and EndpointSlices -> service ports ->
one nft script (checked by ``nft -c`` in the integration tests, by its text here)."""

from __future__ import annotations

import dataclasses

import pytest

from orchestrator.proxy import Endpoint, ServicePort, build_ruleset, service_ports


def _svc(name: str, typ: str = "ClusterIP", **spec: object) -> dict[str, object]:
    return {
        "metadata": {"namespace": "ns", "name": name},
        "spec": {
            "type": typ,
            "clusterIP": "10.43.0.10",
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080}],
            **spec,
        },
    }


def _slice(svc: str, eps: list[tuple[str, bool | None]], port: int = 8080) -> dict[str, object]:
    endpoints = []
    for ip, ready in eps:
        ep: dict[str, object] = {"addresses": [ip]}
        if ready is not None:
            ep["conditions"] = {"ready": ready}
        endpoints.append(ep)
    return {
        "metadata": {
            "namespace": "ns",
            "name": f"{svc}-abc",
            "labels": {"kubernetes.io/service-name": svc},
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
    }


def test_service_ports_take_ready_endpoints_of_matching_slices() -> None:
    ports = service_ports(
        [_svc("web"), _svc("np", "NodePort"), _svc("none", clusterIP="None")],
        [
            _slice("web", [("10.42.0.2", True), ("10.42.0.3", False), ("10.42.0.4", None)]),
            _slice("np", [("10.42.0.5", True)], port=9090),
            _slice("other", [("10.42.0.9", True)]),
        ],
    )
    by_name = {p.name: p for p in ports}
    assert set(by_name) == {"web", "np"}  # headless: no rules
    assert by_name["web"].endpoints == (Endpoint("10.42.0.2", 8080), Endpoint("10.42.0.4", 8080))
    assert by_name["web"].node_port == 0  # a ClusterIP service's nodePort is not used
    assert by_name["np"].node_port == 30080
    assert by_name["np"].endpoints == (Endpoint("10.42.0.5", 9090),)


def test_session_affinity_timeout() -> None:
    spec = {
        "sessionAffinity": "ClientIP",
        "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}},
    }
    (port,) = service_ports([_svc("s", **spec)], [])
    assert port.affinity_timeout == 60


def _port(name: str, eps: list[str], **kw: object) -> ServicePort:
    return ServicePort("ns", name, "http", "TCP", kw.pop("ip", "10.43.0.10"), 80,  # type: ignore[arg-type]
                       endpoints=tuple(Endpoint(e, 8080) for e in eps), **kw)  # type: ignore[arg-type]  # fmt: skip


def test_one_transaction_replacing_the_table() -> None:
    script = build_ruleset([_port("web", ["10.42.0.2", "10.42.0.3"])])
    lines = script.splitlines()
    assert lines[:3] == [
        "add table ip corral-proxy",
        "delete table ip corral-proxy",
        "table ip corral-proxy {",
    ]
    assert "numgen random mod 2 map { 0 : 10.42.0.2 . 8080, 1 : 10.42.0.3 . 8080 }" in script
    assert "10.43.0.10 . tcp . 80 : goto svc-" in script
    assert "10.42.0.2 . 10.42.0.2" in script  # hairpin pairs


def test_no_endpoints_rejects_and_node_ports_get_an_ext_chain() -> None:
    script = build_ruleset(
        [
            _port("empty", [], node_port=30001),
            _port("np", ["10.42.0.2"], node_port=30002, ip="10.43.0.11"),
        ]
    )
    assert "10.43.0.10 . tcp . 80 : goto reject-chain" in script
    assert "tcp . 30001 : goto reject-chain" in script
    assert "tcp . 30002 : goto ext-" in script
    assert "dnat ip to 10.42.0.2:8080" in script


def test_affinity_uses_a_set_per_endpoint() -> None:
    script = build_ruleset([_port("s", ["10.42.0.2", "10.42.0.3"], affinity_timeout=30)])
    assert script.count("flags dynamic,timeout; timeout 30s;") == 2
    assert script.count("update @aff-") == 2


def test_same_input_same_script_and_bad_addresses_refused() -> None:
    a = build_ruleset([_port("a", ["10.42.0.2"]), _port("b", ["10.42.0.3"], ip="10.43.0.11")])
    b = build_ruleset([_port("b", ["10.42.0.3"], ip="10.43.0.11"), _port("a", ["10.42.0.2"])])
    assert a == b
    with pytest.raises(ValueError):
        build_ruleset([_port("x", ["10.42.0.2; flush ruleset"])])


def test_update_in_place_deletes_only_what_went_away() -> None:
    from orchestrator.proxy import ruleset

    old = ruleset(
        [
            _port("a", ["10.42.0.2", "10.42.0.3"], affinity_timeout=30),
            _port("b", ["10.42.0.4"], ip="10.43.0.11"),
        ]
    )
    new = ruleset([_port("a", ["10.42.0.2"], affinity_timeout=30)])
    script = new.update_script(old)
    assert "delete table" not in script
    assert "flush table ip corral-proxy" in script
    assert "flush map ip corral-proxy service-ips" in script
    gone_chains = old.chains - new.chains
    gone_sets = old.sets - new.sets
    assert len(gone_sets) == 1 and len(gone_chains) == 2  # b's chain, a's second endpoint
    for name in gone_chains:
        assert f"delete chain ip corral-proxy {name}\n" in script
    for name in gone_sets:
        assert f"delete set ip corral-proxy {name}\n" in script
    for name in new.chains | new.sets:
        assert f"delete chain ip corral-proxy {name}\n" not in script
        assert f"delete set ip corral-proxy {name}\n" not in script


def test_a_duplicate_address_or_node_port_goes_to_the_first_service_only() -> None:
    script = build_ruleset(
        [
            _port("a", ["10.42.0.2"], node_port=30001),
            _port("b", ["10.42.0.3"], node_port=30001),  # same clusterIP:port and node port
            _port("c", [], ip="10.43.0.10"),
        ]
    )
    assert script.count("10.43.0.10 . tcp . 80 :") == 1
    assert script.count("tcp . 30001 :") == 1
    assert "10.43.0.10 . tcp . 80 : goto svc-" in script and "-ns/a/" in script
    assert "ns/b/" not in script


def test_addresses_the_proxy_cannot_program_are_left_out() -> None:
    bad = _slice("web", [("10.42.0.2", True), ("fd00::1", True), ("not-an-ip", True)])
    ports = service_ports([_svc("web"), _svc("v6", clusterIP="fd00::10")], [bad])
    assert [p.name for p in ports] == ["web"]
    assert ports[0].endpoints == (Endpoint("10.42.0.2", 8080),)


def test_traffic_policies_local_take_the_endpoints_of_this_node() -> None:
    a = _slice("dns", [("10.42.0.2", True), ("10.42.1.2", True), ("10.42.0.3", False)])
    for ep, node in zip(a["endpoints"], ("n0", "n1", "n0"), strict=True):  # type: ignore[call-overload]
        ep["nodeName"] = node
    svc = _svc("dns", "NodePort", internalTrafficPolicy="Local", externalTrafficPolicy="Local")
    (port,) = service_ports([svc], [a], "n0")
    assert port.internal_local and port.external_local
    assert port.local_endpoints == (Endpoint("10.42.0.2", 8080),)  # ready ones only
    (other,) = service_ports([svc], [a], "n2")
    assert other.local_endpoints == () and len(other.endpoints) == 2
    (plain,) = service_ports([_svc("dns")], [a], "n0")
    assert not plain.internal_local and not plain.external_local


def test_internal_local_rules() -> None:
    eps = (Endpoint("10.42.0.1", 53), Endpoint("10.42.1.1", 53))
    here = ServicePort("ns", "dns", "dns", "UDP", "10.43.0.10", 53, endpoints=eps,
                       local_endpoints=eps[:1], internal_local=True)  # fmt: skip
    script = build_ruleset([here])
    assert "10.43.0.10 . udp . 53 : goto local-" in script
    assert "dnat ip to 10.42.0.1:53" in script and "10.42.1.1" not in script
    # endpoints on other nodes only: dropped before DNAT (no reject: Kubernetes drops)
    away = dataclasses.replace(here, local_endpoints=())
    script = build_ruleset([away])
    assert "10.43.0.10 . udp . 53 : drop" in script
    assert "goto local-" not in script and "dnat ip to" not in script
    # no endpoint anywhere: refused as before
    assert "goto reject-chain" in build_ruleset([dataclasses.replace(away, endpoints=())])


def test_external_local_rules() -> None:
    np = _port("np", ["10.42.0.2", "10.42.1.2"], node_port=30080,
               local_endpoints=(Endpoint("10.42.0.2", 8080),), external_local=True)  # fmt: skip
    script = build_ruleset([np], "10.42.0.0/24")
    ext = script[script.index("chain ext-") :].split("}", 1)[0]
    assert "ip saddr 10.42.0.0/24 goto svc-" in ext  # this node's pods: cluster-wide
    assert "fib saddr type local jump mark-for-masquerade" in ext  # the node itself
    assert ext.rstrip().splitlines()[-1].startswith("goto local-")  # others: here, no masq
    assert "10.43.0.10 . tcp . 80 : goto svc-" in script  # the clusterIP stays cluster-wide
    none_here = build_ruleset([dataclasses.replace(np, local_endpoints=())], "10.42.0.0/24")
    ext = none_here[none_here.index("chain ext-") :].split("}", 1)[0]
    assert ext.rstrip().splitlines()[-1] == "drop"
