"""The OpenAPI v3 documents built from kubemodel's schema (orchestrator/apiserver/openapi.py):
schema conversion, what each group-version document holds, stable hashes."""

from __future__ import annotations

import json

from orchestrator.apiserver.openapi import OpenApiV3, _convert, build_document
from orchestrator.apiserver.resources import GROUPS

REF = "#/components/schemas/"


def test_convert_json_schema_to_openapi() -> None:
    node = {
        "properties": {
            "apiVersion": {"enum": ["v1"], "type": ["string", "null"]},
            "spec": {"$ref": "#/$defs/io.k8s.api.core.v1.PodSpec"},
            "n": {"oneOf": [{"type": ["string", "null"]}, {"type": ["integer", "null"]}]},
            "properties": {"type": ["object", "null"]},  # a field named "properties"
        },
        "type": ["object", "null"],
    }
    assert _convert(node) == {
        "properties": {
            "apiVersion": {"type": "string"},
            "spec": {"$ref": REF + "io.k8s.api.core.v1.PodSpec"},
            "n": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
            "properties": {"type": "object"},
        },
        "type": "object",
    }


def test_core_document() -> None:
    doc = build_document("", "v1", GROUPS[""]["v1"])
    schemas = doc["components"]["schemas"]
    pod = schemas["io.k8s.api.core.v1.Pod"]
    assert pod["description"].startswith("Pod is a collection of containers")
    assert pod["x-kubernetes-group-version-kind"] == [{"group": "", "kind": "Pod", "version": "v1"}]
    # a described reference is wrapped in allOf, as kube-openapi writes it
    assert pod["properties"]["spec"]["allOf"] == [{"$ref": REF + "io.k8s.api.core.v1.PodSpec"}]
    assert pod["properties"]["spec"]["description"].startswith("Specification of the desired")
    volumes = schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["volumes"]
    assert volumes["x-kubernetes-patch-strategy"] == "merge,retainKeys"
    ports = schemas["io.k8s.api.core.v1.ServiceSpec"]["properties"]["ports"]
    assert ports["x-kubernetes-list-map-keys"] == ["port", "protocol"]
    assert ports["x-kubernetes-patch-merge-key"] == "port"
    # every reference resolves inside the document
    text = json.dumps(doc)
    for ref in {r.split('"')[0] for r in text.split(REF)[1:]}:
        assert ref in schemas, ref
    paths = doc["paths"]
    pods = paths["/api/v1/namespaces/{namespace}/pods/{name}"]
    assert {k for k in pods if k != "parameters"} == {"get", "put", "patch", "delete"}
    assert pods["patch"]["x-kubernetes-action"] == "patch"
    assert set(pods["patch"]["requestBody"]["content"]) == {
        "application/apply-patch+yaml",
        "application/json-patch+json",
        "application/merge-patch+json",
        "application/strategic-merge-patch+json",
    }
    assert paths["/api/v1/pods"]["get"]["operationId"] == "listCoreV1PodForAllNamespaces"
    assert paths["/api/v1/nodes/{name}"]["get"]["operationId"] == "readCoreV1Node"
    status = paths["/api/v1/namespaces/{namespace}/pods/{name}/status"]["patch"]
    assert status["operationId"] == "patchCoreV1NamespacedPodStatus"
    assert "/api/v1/namespaces/{namespace}/pods/{name}/exec" not in paths


def test_review_document_and_index() -> None:
    doc = build_document("authorization.k8s.io", "v1", [])
    post = doc["paths"]["/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"]["post"]
    assert post["x-kubernetes-group-version-kind"]["kind"] == "SelfSubjectAccessReview"
    assert (
        "/apis/authorization.k8s.io/v1/namespaces/{namespace}/localsubjectaccessreviews"
        in (doc["paths"])
    )
    service = OpenApiV3()
    body, etag = service.index()
    index = json.loads(body)["paths"]
    assert {"api/v1", "apis/apps/v1", "apis/authentication.k8s.io/v1"} <= set(index)
    doc_body, doc_etag = service.document("apis/apps/v1")  # type: ignore[misc]
    assert index["apis/apps/v1"]["serverRelativeURL"] == f"/openapi/v3/apis/apps/v1?hash={doc_etag}"
    assert len(doc_etag) == 128 and doc_etag.isupper()
    assert OpenApiV3().document("apis/apps/v1") == (doc_body, doc_etag)  # the same every time
    assert service.document("apis/nosuch/v1") is None


def test_namespaces_have_no_deletecollection_operation() -> None:
    # As discovery says: DELETE on /api/v1/namespaces is refused (405), so the document
    # offers no operation for it; every other collection has one.
    paths = build_document("", "v1", GROUPS[""]["v1"])["paths"]
    assert "delete" not in paths["/api/v1/namespaces"]
    assert "get" in paths["/api/v1/namespaces"] and "post" in paths["/api/v1/namespaces"]
    assert paths["/api/v1/namespaces/{namespace}/configmaps"]["delete"]["x-kubernetes-action"] == (
        "deletecollection"
    )
