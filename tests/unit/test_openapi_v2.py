"""The OpenAPI v2 document (orchestrator/apiserver/openapi_v2.py) and its gnostic protobuf
encoding (gnostic.py): the shapes kubectl's OpenAPI v2 reader accepts, the conversion from
the v3 schemas and paths, content negotiation, and the protobuf wire layout read back."""

from __future__ import annotations

import json
import struct
from typing import Any

import pytest

from orchestrator.apiserver import gnostic, openapi
from orchestrator.apiserver.openapi_v2 import JSON, PROTOBUF, build, negotiate, schema

REF = "#/definitions/"


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return build()


def _check(node: dict[str, Any], defs: dict[str, Any], where: str) -> None:
    """What kube-openapi's proto.NewOpenAPIData (kubectl 1.20's explain and validation)
    requires of a schema: a reference resolves, has no type and no properties; one type;
    an array has exactly one item schema; no allOf, oneOf, anyOf."""
    assert not {"allOf", "oneOf", "anyOf", "nullable"} & set(node), where
    if "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith(REF) and ref[len(REF) :] in defs, where
        assert "type" not in node and "properties" not in node, where
        return
    typ = node.get("type")
    assert typ is None or typ in ("object", "array", "string", "integer", "number", "boolean")
    if typ == "array":
        assert isinstance(node.get("items"), dict), where
        _check(node["items"], defs, where + "[]")
    for name, sub in (node.get("properties") or {}).items():
        _check(sub, defs, f"{where}.{name}")
    if isinstance(node.get("additionalProperties"), dict):
        _check(node["additionalProperties"], defs, where + "{}")


def test_every_schema_is_one_kubectl_reads(doc: dict[str, Any]) -> None:
    defs = doc["definitions"]
    assert set(defs) == set(openapi.schemas())
    for name, node in defs.items():
        _check(node, defs, name)
    operations = 0
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method == "parameters":
                continue
            operations += 1
            assert op["x-kubernetes-group-version-kind"]["kind"], (path, method)
            for param in op.get("parameters", []):
                if param["in"] == "body":
                    _check(param["schema"], defs, f"{path} {method} body")
                else:
                    assert param["type"] in ("string", "integer", "boolean"), (path, param)
            for code, response in op["responses"].items():
                if "schema" in response:
                    _check(response["schema"], defs, f"{path} {method} {code}")
    assert operations > 200


def test_schema_conversion() -> None:
    v3 = {
        "properties": {
            "spec": {
                "allOf": [{"$ref": "#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec"}],
                "description": "the spec",
                "x-kubernetes-patch-strategy": "retainKeys",
            },
            "port": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
            "quantity": {"oneOf": [{"type": "string"}, {"type": "number"}]},
            "oneOf": {"type": "string"},  # a field named like the keyword
        },
        "type": "object",
        "x-kubernetes-unions": [{"discriminator": "type", "fields-to-discriminateBy": {}}],
    }
    assert schema(v3) == {
        "properties": {
            "spec": {
                "$ref": REF + "io.k8s.api.apps.v1.DeploymentSpec",
                "description": "the spec",
                "x-kubernetes-patch-strategy": "retainKeys",
            },
            "port": {"type": "string", "format": "int-or-string"},
            "quantity": {"type": "string"},
            "oneOf": {"type": "string"},
        },
        "type": "object",
        "x-kubernetes-unions": [{"discriminator": "type", "fields-to-discriminateBy": {}}],
    }
    with pytest.raises(ValueError, match="allOf"):
        schema({"allOf": [{"type": "object"}, {"type": "string"}]})


def test_paths(doc: dict[str, Any]) -> None:
    item = doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]
    assert [p["name"] for p in item["parameters"]] == ["name", "namespace", "pretty"]
    assert item["parameters"][0] == {
        "description": "name of the Pod",
        "in": "path",
        "name": "name",
        "required": True,
        "type": "string",
        "uniqueItems": True,
    }
    put = item["put"]
    assert put["operationId"] == "replaceCoreV1NamespacedPod"
    assert put["consumes"] == ["*/*"]
    assert put["produces"] == [
        "application/json",
        "application/vnd.kubernetes.protobuf",
        "application/yaml",
    ]
    assert put["parameters"][0] == {
        "in": "body",
        "name": "body",
        "required": True,
        "schema": {"$ref": REF + "io.k8s.api.core.v1.Pod"},
    }
    assert set(put["responses"]) == {"200", "201", "401"}
    delete = item["delete"]
    assert delete["parameters"][0] == {
        "in": "body",
        "name": "body",
        "schema": {"$ref": REF + "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions"},
    }
    scale = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]
    assert scale["patch"]["x-kubernetes-group-version-kind"] == {
        "group": "autoscaling",
        "kind": "Scale",
        "version": "v1",
    }
    review = doc["paths"]["/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"]["post"]
    assert review["x-kubernetes-group-version-kind"]["kind"] == "SelfSubjectAccessReview"


@pytest.mark.parametrize(
    "accept,served",
    [
        ("", JSON),
        ("*/*", JSON),
        ("application/json", JSON),
        ("application/com.github.proto-openapi.spec.v2@v1.0+protobuf", PROTOBUF),
        ("application/com.github.proto-openapi.spec.v2.v1.0+protobuf", PROTOBUF),
        (f"application/json;q=0.9, {PROTOBUF}", PROTOBUF),
        ("*/*, application/com.github.proto-openapi.spec.v2@v1.0+protobuf", PROTOBUF),
        ("text/html, application/*;q=0.1", JSON),
        ("application/json;q=0, */*;q=0.5", JSON),
        ("text/html", None),
        ("application/yaml", None),
        ("application/json;q=0", None),
    ],
)
def test_negotiate(accept: str, served: str | None) -> None:
    assert negotiate(accept) == served


# ------------------------------------------------------------------ the wire, read back


def _read(buf: bytes) -> list[tuple[int, Any]]:
    """(field, value) pairs of one message: varints as ints, fixed64 as floats, the rest
    as bytes (a submessage or a string)."""
    out: list[tuple[int, Any]] = []
    pos = 0

    def varint() -> int:
        nonlocal pos
        shift = n = 0
        while True:
            b = buf[pos]
            pos += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                return n

    while pos < len(buf):
        key = varint()
        field, wire = key >> 3, key & 7
        if wire == 0:
            out.append((field, varint()))
        elif wire == 1:
            out.append((field, struct.unpack("<d", buf[pos : pos + 8])[0]))
            pos += 8
        elif wire == 2:
            n = varint()
            out.append((field, buf[pos : pos + n]))
            pos += n
        else:
            raise AssertionError(f"wire type {wire}")
    assert pos == len(buf)
    return out


def _one(fields: list[tuple[int, Any]], number: int) -> Any:
    (value,) = [v for f, v in fields if f == number]
    return value


def test_protobuf_layout() -> None:
    """Field numbers of gnostic's OpenAPIv2.proto (Document.definitions = 9, NamedSchema
    name = 1 / value = 2, Schema.description = 4, required = 19, type = 22 ...)."""
    doc = {
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0"},
        "definitions": {
            "a.Pod": {
                "description": "Pod.",
                "required": ["spec"],
                "type": "object",
                "properties": {
                    "spec": {"$ref": REF + "a.Spec", "description": "The spec."},
                    "n": {"type": "integer", "format": "int32", "minimum": -1},
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "raw": {"type": "object", "additionalProperties": False},
                },
                "x-kubernetes-group-version-kind": [{"group": "", "kind": "Pod", "version": "v1"}],
            }
        },
        "paths": {
            "/p": {
                "patch": {
                    "parameters": [
                        {"in": "query", "name": "dryRun", "type": "string", "uniqueItems": True},
                        {"in": "body", "name": "body", "required": True, "schema": {}},
                    ],
                    "responses": {"200": {"description": "OK", "schema": {"$ref": REF + "a.Pod"}}},
                    "x-kubernetes-action": "patch",
                }
            }
        },
    }
    top = _read(gnostic.encode(doc))
    assert [f for f, _ in top] == [1, 2, 8, 9]  # in field order, whatever the dict's
    assert _one(top, 1) == b"2.0"
    assert _read(_one(top, 2)) == [(1, b"Kubernetes"), (2, b"v1.32.0")]
    named = _read(_one(_read(_one(top, 9)), 1))
    assert _one(named, 1) == b"a.Pod"
    pod = _read(_one(named, 2))
    assert _one(pod, 4) == b"Pod."
    assert _one(pod, 19) == b"spec"
    assert _read(_one(pod, 22)) == [(1, b"object")]
    ext = _read(_one(pod, 31))
    assert _one(ext, 1) == b"x-kubernetes-group-version-kind"
    yaml_text = _one(_read(_one(ext, 2)), 2).decode()
    assert json.loads(yaml_text) == [{"group": "", "kind": "Pod", "version": "v1"}]
    props = {_one(_read(p), 1): _read(_one(_read(p), 2)) for f, p in _read(_one(pod, 25))}
    assert props[b"spec"] == [(1, b"#/definitions/a.Spec"), (4, b"The spec.")]
    assert props[b"n"] == [(2, b"int32"), (9, -1.0), (22, b"\n\x07integer")]
    (items,) = [v for f, v in props[b"tags"] if f == 23]
    assert _read(_one(_read(items), 1)) == [(22, b"\n\x06string")]
    additional = _read(_one(props[b"labels"], 21))
    assert _read(_one(additional, 1)) == [(22, b"\n\x06string")]
    assert _one(props[b"raw"], 21) == b"\x10\x00"  # oneof boolean = 2, false, written
    item = _read(_one(_read(_one(_read(_one(top, 8)), 2)), 2))  # Paths.path[0].value
    patch = _read(_one(item, 8))
    query, body = [_read(v) for f, v in patch if f == 8]
    query_sub = _read(_one(_read(_one(_read(_one(query, 1)), 2)), 3))  # non-body, query
    assert query_sub == [(2, b"query"), (4, b"dryRun"), (6, b"string"), (20, 1)]
    body_param = _read(_one(_read(_one(body, 1)), 1))
    assert body_param == [(2, b"body"), (3, b"body"), (4, 1), (5, b"")]
    response = _read(_one(_read(_one(patch, 9)), 1))
    assert _one(response, 1) == b"200"
    assert _read(_one(_read(_one(response, 2)), 1)) == [
        (1, b"OK"),
        (2, b"\n\x15\n\x13#/definitions/a.Pod"),
    ]
    assert _one(_read(_one(patch, 13)), 1) == b"x-kubernetes-action"


def test_protobuf_refuses_what_it_cannot_hold() -> None:
    with pytest.raises(gnostic.GnosticError, match=r"\$\.definitions\.a: 'oneOf' is not a field"):
        gnostic.encode({"definitions": {"a": {"oneOf": []}}})
    with pytest.raises(gnostic.GnosticError, match="a parameter in 'cookie'"):
        gnostic.encode({"paths": {"/p": {"get": {"parameters": [{"in": "cookie"}]}}}})
    with pytest.raises(gnostic.GnosticError, match=r"\.required: a list of strings"):
        gnostic.encode({"definitions": {"a": {"required": "spec"}}})


def test_whole_document_encodes(doc: dict[str, Any]) -> None:
    top = _read(gnostic.encode(doc))
    names = [_one(_read(v), 1).decode() for _, v in _read(_one(top, 9))]
    assert names == list(doc["definitions"])
    paths = [_one(_read(v), 1).decode() for f, v in _read(_one(top, 8)) if f == 2]
    assert paths == list(doc["paths"])
