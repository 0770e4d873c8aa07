"""A custom resource's schema (orchestrator.apiserver.crschema): pruning, defaulting and
validation with kube-apiserver's paths and words; and CRD admission (crd.admit_crd)."""

from __future__ import annotations

from typing import Any

import pytest

from kubemodel.errors import FieldError
from orchestrator.apiserver import crd, crschema
from orchestrator.apiserver.tables import json_path

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "required": ["size"],
            "properties": {
                "replicas": {"type": "integer", "format": "int32", "default": 1, "minimum": 0},
                "size": {"type": "string", "enum": ["S", "M"]},
                "name": {"type": "string", "pattern": "^[a-z]+$", "minLength": 2, "maxLength": 5},
                "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
                "port": {"x-kubernetes-int-or-string": True},
                "note": {"type": "string", "nullable": True},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "inner": {
                    "type": "object",
                    "default": {},
                    "properties": {"level": {"type": "string", "default": "info"}},
                },
                "template": {
                    "type": "object",
                    "x-kubernetes-embedded-resource": True,
                    "x-kubernetes-preserve-unknown-fields": True,
                },
            },
        },
        "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}},
    },
}


def _admit(spec: dict[str, Any]) -> dict[str, Any]:
    obj = {"apiVersion": "x.io/v1", "kind": "W", "metadata": {"name": "w"}, "spec": spec}
    crschema.admit(obj, SCHEMA)
    return obj


def _error(spec: dict[str, Any]) -> str:
    with pytest.raises(crschema.SchemaError) as e:
        _admit(spec)
    return str(e.value)


def test_prunes_unknown_fields_keeps_preserved_ones() -> None:
    obj = _admit(
        {
            "size": "S",
            "bogus": 1,
            "free": {"any": {"thing": 1}},
            "labels": {"a": "b"},
            "tags": ["x"],
            "template": {"apiVersion": "v1", "kind": "Pod", "spec": {"y": 1}},
        }
    )
    assert "bogus" not in obj["spec"]
    assert obj["spec"]["free"] == {"any": {"thing": 1}}
    assert obj["spec"]["labels"] == {"a": "b"}
    assert obj["spec"]["template"]["spec"] == {"y": 1}
    assert obj["metadata"] == {"name": "w"}  # the root keeps apiVersion, kind, metadata
    top = {"apiVersion": "v", "kind": "K", "metadata": {}, "other": 1, "spec": {"size": "S"}}
    assert crschema.unknown_fields(top, SCHEMA) == ["other"]
    # a merge patch's null removes a field: no unknown field (kubectl apply removing one)
    assert crschema.unknown_fields({"spec": {"x": None}}, SCHEMA) == []
    assert crschema.unknown_fields({"spec": {"x": 1, "inner": {"y": 2}}}, SCHEMA) == [
        "spec.inner.y",
        "spec.x",
    ]


def test_defaults_top_down() -> None:
    obj = _admit({"size": "M"})
    assert obj["spec"]["replicas"] == 1
    assert obj["spec"]["inner"] == {"level": "info"}  # a default object gets its defaults
    assert _admit({"size": "M", "replicas": 3})["spec"]["replicas"] == 3


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"size": "S", "replicas": "x"},
            'spec.replicas: Invalid value: "string": spec.replicas in body must be of type'
            ' integer: "string"',
        ),
        ({}, "spec.size: Required value"),
        ({"size": "L"}, 'spec.size: Unsupported value: "L": supported values: "S", "M"'),
        (
            {"size": "S", "replicas": -1},
            "spec.replicas: Invalid value: -1: spec.replicas in body should be greater than or"
            " equal to 0",
        ),
        (
            {"size": "S", "replicas": 2**31},
            "spec.replicas: Invalid value: 2147483648: spec.replicas in body must be of type"
            " int32: 2147483648",
        ),
        (
            {"size": "S", "name": "AB"},
            "spec.name: Invalid value: \"AB\": spec.name in body should match '^[a-z]+$'",
        ),
        (
            {"size": "S", "name": "a"},
            'spec.name: Invalid value: "a": spec.name in body should be at least 2 chars long',
        ),
        ({"size": "S", "name": "abcdef"}, "spec.name: Too long: may not be more than 5 bytes"),
        (
            {"size": "S", "tags": ["a", "b", "c"]},
            "spec.tags: Too many: 3: must have at most 2 items",
        ),
        (
            {"size": "S", "tags": [1]},
            'spec.tags[0]: Invalid value: "integer": spec.tags[0] in body must be of type'
            ' string: "integer"',
        ),
        (
            {"size": "S", "port": 1.5},
            'spec.port: Invalid value: "number": spec.port in body must be of type'
            ' integer,string: "number"',
        ),
        (
            {"size": "S", "labels": {"a": 1}},
            'spec.labels.a: Invalid value: "integer": spec.labels.a in body must be of type'
            ' string: "integer"',
        ),
        (
            {"size": "S", "template": {"kind": "Pod"}},
            "spec.template.apiVersion: Required value: must not be empty",
        ),
    ],
)
def test_validation_words(spec: dict[str, Any], message: str) -> None:
    assert _error(spec) == message


def test_valid_values() -> None:
    _admit({"size": "S", "port": "http", "note": None, "replicas": 0})
    _admit({"size": "S", "port": 80})


def test_structural() -> None:
    assert crschema.structural_problem(SCHEMA, "s") is None
    assert crschema.structural_problem({"type": "object", "properties": {"a": {}}}, "s") == (
        "s.properties[a].type",
        "Required value: must not be empty for specified object fields",
    )
    assert crschema.structural_problem({"type": "array"}, "s") == (
        "s.items",
        "Required value: must be specified",
    )


def _crd(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "group": "x.io",
        "scope": "Namespaced",
        "names": {"plural": "ws", "kind": "W"},
        "versions": [
            {"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": SCHEMA}}
        ],
    }
    base.update(spec)
    return {"metadata": {"name": "ws.x.io"}, "spec": base}


def test_crd_defaults_and_conditions() -> None:
    out = crd.admit_crd(_crd(), "2026-01-01T00:00:00Z")
    names = out["spec"]["names"]
    assert (names["singular"], names["listKind"]) == ("w", "WList")
    assert out["spec"]["conversion"] == {"strategy": "None"}
    assert out["metadata"]["finalizers"] == [crd.FINALIZER]
    conds = {c["type"]: (c["status"], c["reason"]) for c in out["status"]["conditions"]}
    assert conds == {
        "NamesAccepted": ("True", "NoConflicts"),
        "Established": ("True", "InitialNamesAccepted"),
    }
    assert out["status"]["acceptedNames"]["kind"] == "W"
    assert out["status"]["storedVersions"] == ["v1"]


@pytest.mark.parametrize(
    ("crd_obj", "field", "words"),
    [
        (_crd(group="xio"), "spec.group", "should be a domain with at least one dot"),
        ({**_crd(), "metadata": {"name": "other.x.io"}}, "metadata.name", "spec.names.plural+"),
        (_crd(scope="Global"), "spec.scope", 'supported values: "Cluster", "Namespaced"'),
        (
            _crd(versions=[{"name": "v1", "served": True, "storage": False, "schema": {}}]),
            "spec.versions[0].schema.openAPIV3Schema",
            "Required value",
        ),
        (
            _crd(
                versions=[
                    {"name": "v1", "served": True, "storage": False},
                    {"name": "v2", "served": True, "storage": False},
                ]
            ),
            "spec.versions[0].schema.openAPIV3Schema",
            "schemas are required",
        ),
        (
            _crd(
                versions=[
                    {
                        "name": v,
                        "served": True,
                        "storage": False,
                        "schema": {"openAPIV3Schema": SCHEMA},
                    }
                    for v in ("v1", "v2")
                ]
            ),
            "spec.versions",
            "must have exactly one version marked as storage version",
        ),
        (_crd(names={"plural": "ws"}), "spec.names.kind", "Required value"),
        (_crd(names={"plural": "Ws", "kind": "W"}), "spec.names.plural", "RFC 1123"),
        (
            {**_crd(names={"plural": "pods", "kind": "P"}), "metadata": {"name": "pods.x.io"}},
            "spec.names.plural",
            "the name of a built-in resource",
        ),
    ],
)
def test_crd_validation(crd_obj: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(FieldError) as e:
        crd.admit_crd(crd_obj, "2026-01-01T00:00:00Z")
    assert e.value.field == field
    assert words in e.value.message


def test_crd_names_clash_with_another() -> None:
    other = crd.admit_crd(
        {
            "metadata": {"name": "vs.x.io"},
            "spec": {**_crd()["spec"], "names": {"plural": "vs", "kind": "V", "shortNames": ["w"]}},
        },
        "t",
    )
    crd.sync([other])
    try:
        out = crd.admit_crd(_crd(), "t")
    finally:
        crd.sync([])
    conds = {c["type"]: (c["status"], c["message"]) for c in out["status"]["conditions"]}
    assert conds["NamesAccepted"] == ("False", '"w" is already in use')
    assert conds["Established"][0] == "False"
    assert crd.resources_of(out) == []  # not served


def test_json_path() -> None:
    obj = {"status": {"conditions": [{"type": "A", "s": "1"}, {"type": "Ready", "s": "2"}]}}
    assert json_path(obj, '.status.conditions[?(@.type=="Ready")].s') == ["2"]
    assert json_path(obj, ".status.conditions[0].type") == ["A"]
    assert json_path(obj, ".status.conditions[*].s") == ["1", "2"]
    assert json_path(obj, ".spec.none") == []


def test_crd_update_rules() -> None:
    old = crd.admit_crd(_crd(), "t")
    new = crd.admit_crd({**old, "spec": {**old["spec"], "scope": "Cluster"}}, "t")
    with pytest.raises(FieldError) as e:
        crd.validate_update(old, new)
    assert str(e.value) == 'spec.scope: Invalid value: "Cluster": field is immutable'
    v2 = {**old["spec"]["versions"][0], "name": "v2"}
    new = crd.admit_crd({**old, "spec": {**old["spec"], "versions": [v2]}}, "t")
    with pytest.raises(FieldError) as e:
        crd.validate_update(old, new)
    assert (
        str(e.value)
        == 'status.storedVersions[0]: Invalid value: "v1": must appear in spec.versions'
    )


def test_every_invalid_field_is_listed() -> None:
    """All of them, by path (kube lists them all); below a value of the wrong type nothing
    more is checked."""
    with pytest.raises(crschema.SchemaErrors) as e:
        _admit({"replicas": "x", "name": "A1", "tags": [1, "a"], "labels": {"a": 1, "b": 2}})
    assert [str(x) for x in e.value.errors] == [
        'spec.labels.a: Invalid value: "integer": spec.labels.a in body must be of type'
        ' string: "integer"',
        'spec.labels.b: Invalid value: "integer": spec.labels.b in body must be of type'
        ' string: "integer"',
        "spec.name: Invalid value: \"A1\": spec.name in body should match '^[a-z]+$'",
        'spec.replicas: Invalid value: "string": spec.replicas in body must be of type'
        ' integer: "string"',
        "spec.size: Required value",
        'spec.tags[0]: Invalid value: "integer": spec.tags[0] in body must be of type'
        ' string: "integer"',
    ]


def test_list_types_unique() -> None:
    schema = {
        "type": "object",
        "properties": {
            "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
            "ports": {
                "type": "array",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
                "items": {"type": "object", "properties": {"name": {"type": "string"}}},
            },
        },
    }
    with pytest.raises(crschema.SchemaErrors) as e:
        crschema.validate(
            {"tags": ["a", "b", "a"], "ports": [{"name": "x"}, {"name": "x"}]}, schema
        )
    assert [str(x) for x in e.value.errors] == [
        'ports[1]: Duplicate value: map[string]interface {}{"name":"x"}',
        'tags[2]: Duplicate value: "a"',
    ]
    crschema.validate({"tags": ["a", "b"], "ports": [{"name": "x"}, {"name": "y"}]}, schema)
