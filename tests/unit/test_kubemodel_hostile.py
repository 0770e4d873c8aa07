"""Hostile pod specs refused by the object model (what kube-apiserver 1.32's
pkg/apis/core/validation refuses, in its words): paths that would leave a volume, names
that are looked up or become paths, fields with a fixed set of values. One table: the field
set, the field path named and the message."""

# ruff: noqa: E501 (tables: one case a line or two)
from __future__ import annotations

import base64
import copy
from typing import Any

import pytest

import kubemodel as k8s
from kubemodel.errors import FieldError

BASE: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "p"},
    "spec": {
        "containers": [
            {"name": "c", "image": "busybox", "volumeMounts": [{"name": "v", "mountPath": "/m"}]}
        ],
        "volumes": [{"name": "v", "emptyDir": {}}],
    },
}
DOWNWARD_NAME = {"fieldRef": {"fieldPath": "metadata.name"}}


def volume(source: dict[str, Any]) -> dict[str, Any]:
    return {"spec.volumes": [{"name": "v", **source}]}


def items(kind: str, *entries: dict[str, Any]) -> dict[str, Any]:
    ref = {"secretName": "s"} if kind == "secret" else {"name": "c"}
    return volume({kind: {**ref, "items": list(entries)}})


def projected(*sources: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return volume({"projected": {"sources": list(sources), **extra}})


def container(**fields: Any) -> dict[str, Any]:
    return {f"spec.containers.0.{k}": v for k, v in fields.items()}


MOUNT = "spec.containers[0].volumeMounts[0]"
C0 = "spec.containers[0]"

CASES: list[tuple[str, dict[str, Any], str, str]] = [
    # subPath and subPathExpr (CVE-2017-1002101: the node resolves them again)
    ("subPath ..", {"spec.containers.0.volumeMounts.0.subPath": "../x"},
     f"{MOUNT}.subPath", "Invalid value: \"../x\": must not contain '..'"),
    ("subPath .. inside", {"spec.containers.0.volumeMounts.0.subPath": "a/../../x"},
     f"{MOUNT}.subPath", "Invalid value: \"a/../../x\": must not contain '..'"),
    ("subPath absolute", {"spec.containers.0.volumeMounts.0.subPath": "/etc"},
     f"{MOUNT}.subPath", 'Invalid value: "/etc": must be a relative path'),
    ("subPathExpr ..", {"spec.containers.0.volumeMounts.0.subPathExpr": "../$(X)"},
     f"{MOUNT}.subPathExpr", "Invalid value: \"../$(X)\": must not contain '..'"),
    ("mountPropagation", {"spec.containers.0.volumeMounts.0.mountPropagation": "Shared"},
     f"{MOUNT}.mountPropagation", 'Unsupported value: "Shared": supported values:'),
    # configMap and secret items
    ("configMap item ..", items("configMap", {"key": "k", "path": "../x"}),
     "spec.volumes[0].configMap.items[0].path", "Invalid value: \"../x\": must not contain '..'"),
    ("secret item absolute", items("secret", {"key": "k", "path": "/x"}),
     "spec.volumes[0].secret.items[0].path", 'Invalid value: "/x": must be a relative path'),
    ("item ..data", items("configMap", {"key": "k", "path": "..data"}),
     "spec.volumes[0].configMap.items[0].path",
     "Invalid value: \"..data\": must not start with '..'"),
    ("item ..data/x", items("secret", {"key": "k", "path": "..data/x"}),
     "spec.volumes[0].secret.items[0].path", "must not start with '..'"),
    ("item key ..data", items("configMap", {"key": "..data", "path": "x"}),
     "spec.volumes[0].configMap.items[0].key", "must not start with '..'"),
    ("item key ..", items("configMap", {"key": "..", "path": "x"}),
     "spec.volumes[0].configMap.items[0].key", "must not be '..'"),
    ("item mode", items("configMap", {"key": "k", "path": "x", "mode": 0o1000}),
     "spec.volumes[0].configMap.items[0].mode",
     "Invalid value: 512: must be a number between 0 and 0777 (octal), both inclusive"),
    ("item mode negative", items("secret", {"key": "k", "path": "x", "mode": -1}),
     "spec.volumes[0].secret.items[0].mode", "Invalid value: -1"),
    # downwardAPI (kube names the volume source, not the item, in these paths)
    ("downwardAPI ..", volume({"downwardAPI": {"items": [{"path": "../x", **DOWNWARD_NAME}]}}),
     "spec.volumes[0].downwardAPI.path", "Invalid value: \"../x\": must not contain '..'"),
    ("downwardAPI absolute", volume({"downwardAPI": {"items": [{"path": "/x", **DOWNWARD_NAME}]}}),
     "spec.volumes[0].downwardAPI.path", "must be a relative path"),
    ("downwardAPI ..data",
     volume({"downwardAPI": {"items": [{"path": "..data", **DOWNWARD_NAME}]}}),
     "spec.volumes[0].downwardAPI.path", "must not start with '..'"),
    ("downwardAPI mode",
     volume({"downwardAPI": {"items": [{"path": "x", "mode": 0o1000, **DOWNWARD_NAME}]}}),
     "spec.volumes[0].downwardAPI.mode", "Invalid value: 512"),
    ("downwardAPI defaultMode", volume({"downwardAPI": {"defaultMode": 0o7777}}),
     "spec.volumes[0].downwardAPI.defaultMode", "Invalid value: 4095"),
    ("downwardAPI no ref", volume({"downwardAPI": {"items": [{"path": "x"}]}}),
     "spec.volumes[0].downwardAPI",
     "Required value: one of fieldRef and resourceFieldRef is required"),
    ("downwardAPI field",
     volume({"downwardAPI": {"items": [{"path": "x", "fieldRef": {"fieldPath": "spec.nodeName"}}]}}),
     "spec.volumes[0].downwardAPI.fieldRef.fieldPath", 'Unsupported value: "spec.nodeName"'),
    ("downwardAPI resource",
     volume({"downwardAPI": {"items": [{"path": "x", "resourceFieldRef": {"resource": "x.y"}}]}}),
     "spec.volumes[0].downwardAPI.resourceFieldRef.resource", 'Unsupported value: "x.y"'),
    # projected
    ("projected configMap ..", projected({"configMap": {"name": "c", "items": [{"key": "k", "path": "../x"}]}}),
     "spec.volumes[0].projected.sources[0].configMap.items[0].path", "must not contain '..'"),
    ("projected secret absolute", projected({"secret": {"name": "s", "items": [{"key": "k", "path": "/x"}]}}),
     "spec.volumes[0].projected.sources[0].secret.items[0].path", "must be a relative path"),
    ("projected downwardAPI ..", projected({"downwardAPI": {"items": [{"path": "../x", **DOWNWARD_NAME}]}}),
     "spec.volumes[0].projected.sources[0].downwardAPI.path", "must not contain '..'"),
    ("projected token ..", projected({"serviceAccountToken": {"path": "../token"}}),
     "spec.volumes[0].projected.path", "Invalid value: \"../token\": must not contain '..'"),
    ("projected token ..data", projected({"serviceAccountToken": {"path": "..data"}}),
     "spec.volumes[0].projected.path", "must not start with '..'"),
    ("projected token lifetime", projected({"serviceAccountToken": {"path": "t", "expirationSeconds": 60}}),
     "spec.volumes[0].projected.sources[0].serviceAccountToken.expirationSeconds",
     "Invalid value: 60: may not specify a duration less than 10 minutes"),
    ("projected defaultMode", projected(defaultMode=-1),
     "spec.volumes[0].projected.defaultMode", "Invalid value: -1"),
    ("projected duplicate paths",
     projected({"configMap": {"name": "c", "items": [{"key": "k", "path": "x"}]}},
               {"secret": {"name": "s", "items": [{"key": "k", "path": "x"}]}}),
     "spec.volumes[0].projected", "conflicting duplicate paths"),
    ("projected two sources in one", projected({"configMap": {"name": "c"}, "secret": {"name": "s"}}),
     "spec.volumes[0].projected.sources[0]", "Forbidden: may not specify more than 1 volume type"),
    ("projected configMap name", projected({"configMap": {"name": "../x"}}),
     "spec.volumes[0].projected.sources[0].configMap.name", 'Invalid value: "../x"'),
    # names the node looks up (never paths)
    ("nodeName", {"spec.nodeName": "../x"}, "spec.nodeName", 'Invalid value: "../x"'),
    ("serviceAccountName", {"spec.serviceAccountName": "a/b"}, "spec.serviceAccountName",
     'Invalid value: "a/b": a lowercase RFC 1123 subdomain'),
    ("priorityClassName", {"spec.priorityClassName": "A"}, "spec.priorityClassName",
     'Invalid value: "A"'),
    ("container name", container(name="../x"), f"{C0}.name", 'Invalid value: "../x"'),
    ("container name NUL", container(name="a\x00"), f"{C0}.name", "Invalid value:"),
    ("env configMapKeyRef key",
     container(env=[{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "../k"}}}]),
     # (kube's first error of two: the '/', then the '..')
     f"{C0}.env[0].valueFrom.configMapKeyRef.key", "a valid config key must consist of"),
    ("env secretKeyRef name",
     container(env=[{"name": "A", "valueFrom": {"secretKeyRef": {"name": "../s", "key": "k"}}}]),
     f"{C0}.env[0].valueFrom.secretKeyRef.name", 'Invalid value: "../s"'),
    ("env fieldRef", container(env=[{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "spec.x"}}}]),
     f"{C0}.env[0].valueFrom.fieldRef.fieldPath", 'Unsupported value: "spec.x"'),
    ("envFrom name", container(envFrom=[{"secretRef": {"name": "../s"}}]),
     f"{C0}.envFrom[0].secretRef.name", 'Invalid value: "../s"'),
    # resources
    ("resource name", container(resources={"limits": {"bogus": "1"}}),
     f"{C0}.resources.limits[bogus]", 'Invalid value: "bogus": must be a standard resource for containers'),
    ("extended resource fraction", container(resources={"limits": {"example.com/gpu": "0.5"}}),
     f"{C0}.resources.limits[example.com/gpu]", 'Invalid value: "500m": must be an integer'),
    ("cpu negative", container(resources={"requests": {"cpu": "-1"}}),
     f"{C0}.resources.requests[cpu]", "must be greater than or equal to 0"),
    ("cpu exponent past int64", container(resources={"limits": {"cpu": "1e9223372036854775808"}}),
     f"{C0}.resources.limits.cpu", "invalid quantity"),  # 1e100 is capped, as in kube
    # fields with a fixed set of values
    ("terminationMessagePolicy", container(terminationMessagePolicy="Always"),
     f"{C0}.terminationMessagePolicy", 'Unsupported value: "Always"'),
    ("restartPolicy", {"spec.restartPolicy": "Sometimes"}, "spec.restartPolicy",
     'Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never"'),
    ("hostPath type", volume({"hostPath": {"path": "/x", "type": "Dir"}}), "spec.volumes[0].hostPath.type",
     'Unsupported value: "Dir": supported values: "DirectoryOrCreate", "Directory"'),
    ("dnsPolicy", {"spec.dnsPolicy": "Host"}, "spec.dnsPolicy", 'Unsupported value: "Host"'),
    ("activeDeadlineSeconds", {"spec.activeDeadlineSeconds": 0}, "spec.activeDeadlineSeconds",
     "Invalid value: 0: must be between 1 and 2147483647, inclusive"),
    ("hostPort", container(ports=[{"containerPort": 80, "hostPort": 65536}]),
     f"{C0}.ports[0].hostPort", "Invalid value: 65536"),
    ("containerPort", container(ports=[{"containerPort": 0}]),
     f"{C0}.ports[0].containerPort", "Invalid value: 0"),
    # metadata
    ("annotations in bytes", {"metadata.annotations": {"a": "\u00e9" * (128 * 1024 + 1)}},
     "metadata.annotations", "Too long: may not be more than 262144 bytes"),
    ("label key", {"metadata.labels": {"a/b/c": "x"}}, "metadata.labels",
     'Invalid value: "a/b/c": a qualified name must consist of'),
    ("label value", {"metadata.labels": {"a": "x" * 64}}, "metadata.labels",
     "must be no more than 63 characters"),
    ("name", {"metadata.name": "../x"}, "metadata.name", 'Invalid value: "../x": a lowercase RFC 1123 subdomain'),
    ("hostPath ..", volume({"hostPath": {"path": "/a/../etc"}}), "spec.volumes[0].hostPath.path",
     "must not contain '..'"),
]  # fmt: skip


def with_fields(fields: dict[str, Any]) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    for dotted, value in fields.items():
        *parents, last = dotted.split(".")
        node: Any = data
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        node[last] = value
    return data


@pytest.mark.parametrize(("fields", "field", "message"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_hostile_pod_is_refused_naming_the_field(
    fields: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(FieldError) as info:
        k8s.decode(with_fields(fields), k8s.Pod)
    assert info.value.field == field, str(info.value)
    assert message in info.value.message, str(info.value)


@pytest.mark.parametrize(
    "fields",
    [
        items("configMap", {"key": "a.b", "path": "dir/.hidden"}),
        items("secret", {"key": "k", "path": "a..b"}),  # '..' only as a whole component
        volume({"downwardAPI": {"items": [
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "app", "fieldRef": {"fieldPath": "metadata.labels['app']"}},
            {"path": "mem", "resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}},
        ]}}),
        projected({"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                  {"configMap": {"name": "kube-root-ca.crt",
                                 "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                  {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {
                      "apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}),
        {"spec.containers.0.volumeMounts.0.subPath": "a/b..c"},
        container(resources={"limits": {"example.com/gpu": "2", "hugepages-2Mi": "4Mi"}}),
        container(env=[{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]),
    ],
    ids=["dotfile", "dots-in-name", "downward", "kube-api-access", "subpath-dots", "extended",
         "env-node-name"],
)  # fmt: skip
def test_what_kubernetes_accepts_is_still_accepted(fields: dict[str, Any]) -> None:
    k8s.decode(with_fields(fields), k8s.Pod)


MIB = 1024 * 1024


def b64(n: int) -> str:
    return base64.b64encode(b"x" * n).decode()


@pytest.mark.parametrize(
    ("kind", "body", "field", "message"),
    [
        ("ConfigMap", {"data": {"a": "x" * (MIB + 1)}}, "[]", "Too long: may not be more than 1048576 bytes"),
        ("ConfigMap", {"data": {"a": "x" * (MIB // 2)}, "binaryData": {"b": b64(MIB // 2 + 1)}},
         "[]", "Too long: may not be more than 1048576 bytes"),
        ("Secret", {"data": {"a": b64(MIB + 1)}}, "data", "Too long: may not be more than 1048576 bytes"),
        ("ConfigMap", {"data": {"..data": "x"}}, "data[..data]", "Invalid value: \"..data\": must not start with '..'"),
        ("Secret", {"data": {"..2026_01_01": b64(1)}}, "data[..2026_01_01]",
         "Invalid value: \"..2026_01_01\": must not start with '..'"),
        ("ConfigMap", {"binaryData": {".": b64(1)}}, "binaryData[.]", "Invalid value: \".\": must not be '.'"),
    ],
    ids=["configmap-data", "configmap-binary", "secret", "configmap-..data", "secret-..version",
         "binary-dot"],
)  # fmt: skip
def test_hostile_config_data_is_refused(
    kind: str, body: dict[str, Any], field: str, message: str
) -> None:
    cls = getattr(k8s, kind)
    with pytest.raises(FieldError) as info:
        k8s.decode({"apiVersion": "v1", "kind": kind, "metadata": {"name": "c"}, **body}, cls)
    assert (info.value.field, info.value.message) == (field, message)


@pytest.mark.parametrize("kind", ["ConfigMap", "Secret"])
def test_exactly_one_mebibyte_of_data_is_accepted(kind: str) -> None:
    data = {"a": b64(MIB)} if kind == "Secret" else {"a": "x" * MIB}
    k8s.decode({"apiVersion": "v1", "kind": kind, "metadata": {"name": "c"}, "data": data},
               getattr(k8s, kind))  # fmt: skip
