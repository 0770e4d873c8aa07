"""Ingress and IngressClass validation and defaulting (kubemodel.networking), the default
class admission (orchestrator.apiserver.ingress) and their table rows, as kube 1.32."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

import kubemodel
from kubemodel.errors import FieldError
from kubemodel.networking import validate_ingress_class_update, validate_ingress_create
from orchestrator.apiserver.ingress import default_class, set_default_class
from orchestrator.apiserver.tables import TABLES, format_ingress_hosts

SVC = {"service": {"name": "web", "port": {"number": 80}}}


def _ing(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": "i", "namespace": "default"},
        "spec": spec,
    }


def _rule(path: str | None, path_type: str, backend: Any = None) -> dict[str, Any]:
    p: dict[str, Any] = {"pathType": path_type, "backend": backend or SVC}
    if path is not None:
        p["path"] = path
    return {"host": "a.example.com", "http": {"paths": [p]}}


def _error(obj: dict[str, Any], cls: Any = None) -> str:
    with pytest.raises(FieldError) as e:
        kubemodel.decode(obj, cls or kubemodel.Ingress)
    return str(e.value)


def test_valid_ingresses() -> None:
    kubemodel.decode(_ing(defaultBackend=SVC), kubemodel.Ingress)
    kubemodel.decode(
        _ing(
            rules=[
                _rule("/a", "Prefix"),
                _rule(None, "ImplementationSpecific"),
                {"host": "*.x.io"},
            ],
            tls=[{"hosts": ["*.x.io"], "secretName": "cert"}],
            ingressClassName="nginx",
        ),
        kubemodel.Ingress,
    )
    res = {"resource": {"apiGroup": "k8s.example.com", "kind": "StorageBucket", "name": "b"}}
    kubemodel.decode(_ing(rules=[_rule("/", "Exact", res)]), kubemodel.Ingress)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {},
            "spec: Invalid value: []networking.IngressRule(nil): either `defaultBackend` or"
            " `rules` must be specified",
        ),
        (
            {"rules": [_rule("a", "Exact")]},
            'spec.rules[0].http.paths[0].path: Invalid value: "a": must be an absolute path',
        ),
        (
            {"rules": [_rule("/a//b", "Prefix")]},
            "spec.rules[0].http.paths[0].path: Invalid value: \"/a//b\": must not contain '//'",
        ),
        (
            {"rules": [_rule("/a/..", "Prefix")]},
            "spec.rules[0].http.paths[0].path: Invalid value: \"/a/..\": cannot end with '/..'",
        ),
        (
            {"rules": [_rule("a", "ImplementationSpecific")]},
            'spec.rules[0].http.paths[0].path: Invalid value: "a": must be an absolute path',
        ),
        (
            {"rules": [_rule("/", "Regex")]},
            'spec.rules[0].http.paths[0].pathType: Unsupported value: "Regex": supported values:'
            ' "Exact", "ImplementationSpecific", "Prefix"',
        ),
        (
            {"rules": [{"host": "1.2.3.4"}]},
            'spec.rules[0].host: Invalid value: "1.2.3.4": must be a DNS name, not an IP address',
        ),
        (
            {"rules": [{"host": "*foo.io"}]},
            'spec.rules[0].host: Invalid value: "*foo.io": a wildcard DNS-1123 subdomain',
        ),
        (
            {"rules": [{"http": {"paths": []}}]},
            "spec.rules[0].http.paths: Required value",
        ),
        (
            {"defaultBackend": {}},
            'spec.defaultBackend: Invalid value: "": resource or service backend is required',
        ),
        (
            {"defaultBackend": {**SVC, "resource": {"kind": "K", "name": "n"}}},
            'spec.defaultBackend: Invalid value: "": cannot set both resource and service backends',
        ),
        (
            {"defaultBackend": {"service": {"name": "web"}}},
            "spec.defaultBackend: Required value: port name or number is required",
        ),
        (
            {"defaultBackend": {"service": {"name": "web", "port": {"name": "h", "number": 1}}}},
            'spec.defaultBackend: Invalid value: "": cannot set both port name & port number',
        ),
        (
            {"defaultBackend": {"service": {"name": "web", "port": {"number": 70000}}}},
            "spec.defaultBackend.service.port.number: Invalid value: 70000: must be between 1"
            " and 65535, inclusive",
        ),
        (
            {"defaultBackend": {"service": {"name": "Web", "port": {"number": 80}}}},
            'spec.defaultBackend.service.name: Invalid value: "Web": a DNS-1035 label',
        ),
        (
            {"defaultBackend": {"resource": {"kind": "K", "name": ""}}},
            "spec.defaultBackend.resource.name: Required value: name is required",
        ),
        (
            {"defaultBackend": SVC, "tls": [{"secretName": "Bad_Name"}]},
            'spec.tls[0].secretName: Invalid value: "Bad_Name"',
        ),
        (
            {"defaultBackend": SVC, "ingressClassName": "A"},
            'spec.ingressClassName: Invalid value: "A"',
        ),
    ],
)
def test_invalid_ingresses(spec: dict[str, Any], message: str) -> None:
    assert message in _error(_ing(**spec))


def test_class_annotation_and_field_not_both_on_create() -> None:
    obj = _ing(defaultBackend=SVC, ingressClassName="a")
    obj["metadata"]["annotations"] = {"kubernetes.io/ingress.class": "b"}
    typed = kubemodel.decode(obj, kubemodel.Ingress)  # valid as such (an update keeps it)
    with pytest.raises(FieldError) as e:
        validate_ingress_create(typed)
    assert str(e.value) == (
        'annotations.kubernetes.io/ingress.class: Invalid value: "b": can not be set when the'
        " class field is also set"
    )


def _class(spec: dict[str, Any], name: str = "c") -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": {"name": name},
        "spec": spec,
    }


def test_ingress_class() -> None:
    params = {"kind": "P", "name": "p"}
    got = kubemodel.decode(
        _class({"controller": "example.com/x", "parameters": params}), kubemodel.IngressClass
    )
    assert got.spec.parameters.scope == "Cluster"  # SetDefaults_IngressClass
    for spec, message in [
        ({}, "spec.controller: Required value"),
        ({"controller": "x"}, 'spec.controller: Invalid value: "x": must be a domain-prefixed'),
        ({"controller": "Ex.com/x"}, 'spec.controller: Invalid value: "Ex.com"'),
        ({"controller": "e.com/" + "x" * 250}, "spec.controller: Too long: may not be more"),
        (
            {"controller": "e.com/x", "parameters": {**params, "scope": "Namespace"}},
            "spec.parameters.namespace: Required value: `parameters.scope` is set to 'Namespace'",
        ),
        (
            {"controller": "e.com/x", "parameters": {**params, "namespace": "n"}},
            "spec.parameters.namespace: Forbidden: `parameters.scope` is set to 'Cluster'",
        ),
        (
            {"controller": "e.com/x", "parameters": {**params, "scope": "All"}},
            'spec.parameters.scope: Unsupported value: "All": supported values: "Cluster",'
            ' "Namespace"',
        ),
    ]:
        assert message in _error(_class(spec), kubemodel.IngressClass), spec
    validate_ingress_class_update(_class({"controller": "a/b"}), _class({"controller": "a/b"}))
    with pytest.raises(FieldError) as e:
        validate_ingress_class_update(_class({"controller": "a/b"}), _class({"controller": "a/c"}))
    assert str(e.value) == 'spec.controller: Invalid value: "a/c": field is immutable'


def _meta_class(name: str, created: str, default: bool) -> dict[str, Any]:
    annotations = {"ingressclass.kubernetes.io/is-default-class": "true"} if default else {}
    return {"metadata": {"name": name, "creationTimestamp": created, "annotations": annotations}}


def test_default_class_is_the_newest_default() -> None:
    classes = [
        _meta_class("a", "2026-01-01T00:00:00Z", True),
        _meta_class("z", "2026-01-02T00:00:00Z", False),
        _meta_class("c", "2026-01-01T00:00:05Z", True),
        _meta_class("b", "2026-01-01T00:00:05Z", True),
    ]
    assert default_class(classes) == "b"  # newest, then the smaller name
    assert default_class(classes[:2]) == "a"
    assert default_class(classes[1:2]) is None

    async def listed() -> list[dict[str, Any]]:
        return classes

    obj = _ing(defaultBackend=SVC)
    asyncio.run(set_default_class(obj, listed))
    assert obj["spec"]["ingressClassName"] == "b"
    for named in (
        _ing(defaultBackend=SVC, ingressClassName="mine"),
        {
            **_ing(defaultBackend=SVC),
            "metadata": {"annotations": {"kubernetes.io/ingress.class": "x"}},
        },
    ):
        before = named["spec"].get("ingressClassName")
        asyncio.run(set_default_class(named, listed))
        assert named["spec"].get("ingressClassName") == before


def test_ingress_rows() -> None:
    now = datetime(2026, 1, 1, 0, 1, tzinfo=UTC)
    _, row = TABLES["ingresses"]
    obj = _ing(rules=[{"host": "a.io"}, {}], tls=[{}])
    obj["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    obj["status"] = {"loadBalancer": {"ingress": [{"ip": "10.0.0.2"}, {"hostname": "lb.io"}]}}
    assert row(obj, now) == ["i", "<none>", "a.io", "10.0.0.2,lb.io", "80, 443", "60s"]
    rules = [{"host": f"h{i}"} for i in range(6)]
    assert format_ingress_hosts(rules) == "h0,h1,h2,h3 + 2 more..."
    assert format_ingress_hosts([{}]) == "*"
    _, crow = TABLES["ingressclasses"]
    c = _class({"controller": "e.com/x", "parameters": {"kind": "K", "name": "p"}})
    assert crow(c, now)[1:3] == ["e.com/x", "K/p"]
