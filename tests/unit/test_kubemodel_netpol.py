"""NetworkPolicy validation and defaulting (kubemodel.networking) and its table row, as
kube-apiserver 1.32 and kubectl print them, and its protobuf table."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

import kubemodel
from kubemodel import protobuf
from kubemodel.errors import FieldError
from orchestrator.apiserver.tables import TABLES


def _np(**spec: Any) -> dict[str, Any]:
    spec.setdefault("podSelector", {})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "p", "namespace": "default"},
        "spec": spec,
    }


def _error(obj: dict[str, Any]) -> str:
    with pytest.raises(FieldError) as e:
        kubemodel.decode(obj, kubemodel.NetworkPolicy)
    return str(e.value)


def _spec(obj: dict[str, Any]) -> dict[str, Any]:
    return kubemodel.to_dict(kubemodel.decode(obj, kubemodel.NetworkPolicy))["spec"]


def test_policy_types_default_from_the_rules_given() -> None:
    assert _spec(_np())["policyTypes"] == ["Ingress"]
    assert _spec(_np(ingress=[{}]))["policyTypes"] == ["Ingress"]
    assert _spec(_np(egress=[{}]))["policyTypes"] == ["Ingress", "Egress"]
    # kube counts rules, not the key: an empty egress list is no egress
    assert _spec(_np(egress=[]))["policyTypes"] == ["Ingress"]
    assert _spec(_np(policyTypes=["Egress"], ingress=[{}]))["policyTypes"] == ["Egress"]


def test_port_protocol_defaults_to_tcp() -> None:
    spec = _spec(
        _np(ingress=[{"ports": [{"port": 80}, {"protocol": "UDP"}]}], egress=[{"ports": [{}]}])
    )
    assert spec["ingress"][0]["ports"] == [{"port": 80, "protocol": "TCP"}, {"protocol": "UDP"}]
    assert spec["egress"][0]["ports"] == [{"protocol": "TCP"}]


def test_pod_selector_is_required_and_may_be_empty() -> None:
    obj = _np()
    del obj["spec"]["podSelector"]
    assert "spec.podSelector" in _error(obj)
    assert _spec(_np(podSelector={}))["podSelector"] == {}


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ({"policyTypes": ["Ingress", "Egress", "Ingress"]}, "spec.policyTypes: Invalid value:"
         " [Ingress Egress Ingress]: may not specify more than two policyTypes"),
        ({"policyTypes": ["ingress"]}, 'spec.policyTypes[0]: Unsupported value: "ingress"'),
        ({"ingress": [{"ports": [{"protocol": "tcp"}]}]},
         'spec.ingress[0].ports[0].protocol: Unsupported value: "tcp": supported values: "TCP",'
         ' "UDP", "SCTP"'),
        ({"ingress": [{"ports": [{"port": 65536}]}]},
         "spec.ingress[0].ports[0].port: Invalid value: 65536: must be between 1 and 65535"),
        ({"egress": [{"ports": [{"port": 80, "endPort": 70000}]}]},
         "spec.egress[0].ports[0].endPort: Invalid value: 70000: must be between 1 and 65535"),
        ({"egress": [{"ports": [{"port": 80, "endPort": 79}]}]},
         "spec.egress[0].ports[0].endPort: Invalid value: 80: must be greater than or equal to"
         " `port`"),
        ({"egress": [{"ports": [{"endPort": 79}]}]},
         "spec.egress[0].ports[0].endPort: Invalid value: 79: may not be specified when `port`"
         " is not specified"),
        ({"egress": [{"ports": [{"port": "http", "endPort": 90}]}]},
         "may not be specified when `port` is non-numeric"),
        ({"ingress": [{"ports": [{"port": "a-very-long-port-name"}]}]},
         "must be no more than 15 characters"),
        ({"ingress": [{"ports": [{"port": "1234"}]}]}, "must contain at least one letter"),
        ({"ingress": [{"from": [{}]}]}, "spec.ingress[0].from[0]: Required value: must specify a"
         " peer"),
        ({"egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}, "namespaceSelector": {}}]}]},
         "spec.egress[0].to[0]: Forbidden: may not specify both ipBlock and another peer"),
        ({"egress": [{"to": [{"ipBlock": {"cidr": ""}}]}]},
         "spec.egress[0].to[0].ipBlock.cidr: Required value"),
        ({"egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.300/8"}}]}]},
         'spec.egress[0].to[0].ipBlock.cidr: Invalid value: "10.0.0.300/8": must be a valid CIDR'),
        ({"egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["11.0.0.0/16"]}}]}]},
         'ipBlock.except[0]: Invalid value: "11.0.0.0/16": must be a strict subset of `cidr`'),
        ({"egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.0.0.0/8"]}}]}]},
         "must be a strict subset of `cidr`"),
        ({"egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.0.0.0/4"]}}]}]},
         "must be a strict subset of `cidr`"),
        ({"egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["fd00::/64"]}}]}]},
         "must be a strict subset of `cidr`"),
        ({"ingress": [{"from": [{"podSelector": {"matchLabels": {"a b": "c"}}}]}]},
         "spec.ingress[0].from[0].podSelector.matchLabels: Invalid value: \"a b\""),
        ({"ingress": [{"from": [{"namespaceSelector": {"matchExpressions": [
            {"key": "k", "operator": "In"}]}}]}]},
         "spec.ingress[0].from[0].namespaceSelector.matchExpressions[0].values: Required value"),
        ({"podSelector": {"matchExpressions": [{"key": "k", "operator": "Gt", "values": ["1"]}]}},
         'spec.podSelector.matchExpressions[0].operator: Invalid value: "Gt": not a valid'
         " selector operator"),
    ],
)  # fmt: skip
def test_validation(spec: dict[str, Any], words: str) -> None:
    assert words in _error(_np(**spec))


def test_valid_policies() -> None:
    for spec in (
        {"ingress": [{"from": [{"namespaceSelector": {}, "podSelector": {}}]}]},
        # host bits in the CIDR are allowed (ParseCIDRSloppy), so are inner excepts
        {"egress": [{"to": [{"ipBlock": {"cidr": "10.1.2.3/8", "except": ["10.9.0.0/16"]}}]}]},
        {"egress": [{"to": [{"ipBlock": {"cidr": "fd00::/48", "except": ["fd00::/64"]}}]}]},
        {"ingress": [{"ports": [{"port": 1000, "endPort": 1000}, {"port": "dns-tcp"}]}]},
        {"policyTypes": ["Egress", "Ingress"]},
    ):
        kubemodel.decode(_np(**spec), kubemodel.NetworkPolicy)


def test_table_row() -> None:
    columns, row = TABLES["networkpolicies"]
    assert [c["name"] for c in columns] == ["Name", "Pod-Selector", "Age"]
    now = datetime(2026, 1, 1, 0, 1, tzinfo=UTC)
    obj = _np(podSelector={"matchLabels": {"app": "web"}, "matchExpressions": [
        {"key": "tier", "operator": "In", "values": ["b", "a"]}]})  # fmt: skip
    obj["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    assert row(obj, now) == ["p", "app=web,tier in (a,b)", "60s"]
    assert row(_np(), now)[1] == "<none>"


def _f(num: int, value: bytes | str | int) -> bytes:
    """One protobuf field: a varint, or length-delimited bytes/text."""
    if isinstance(value, int):
        return protobuf_varint(num << 3) + protobuf_varint(value)
    raw = value.encode() if isinstance(value, str) else value
    return protobuf_varint(num << 3 | 2) + protobuf_varint(len(raw)) + raw


def protobuf_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def test_protobuf_body() -> None:
    """A NetworkPolicy as kubectl 1.32 would send it in protobuf (the k8s\\0 envelope)."""
    selector = _f(1, _f(1, "app") + _f(2, "web"))  # matchLabels
    port = _f(1, "UDP") + _f(2, _f(1, 0) + _f(2, 53)) + _f(3, 60)  # protocol, port, endPort
    peer = _f(3, _f(1, "10.0.0.0/8") + _f(2, "10.1.0.0/16"))  # ipBlock
    spec = _f(1, selector) + _f(3, _f(1, port) + _f(2, peer)) + _f(4, "Egress")
    obj = _f(1, _f(1, "p")) + _f(2, spec)
    type_meta = _f(1, "networking.k8s.io/v1") + _f(2, "NetworkPolicy")
    body = b"k8s\x00" + _f(1, type_meta) + _f(2, obj)
    got = protobuf.decode(body)
    assert got["spec"] == {
        "podSelector": {"matchLabels": {"app": "web"}},
        "egress": [
            {
                "ports": [{"protocol": "UDP", "port": 53, "endPort": 60}],
                "to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}],
            }
        ],
        "policyTypes": ["Egress"],
    }
