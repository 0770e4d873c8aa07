"""kubemodel.protobuf: Kubernetes protobuf bodies to the JSON kubectl would have sent.

``data/kubectl-bodies`` holds request bodies captured from real kubectl: ``<cmd>.1.32.pb`` is
what kubectl 1.32 sent for ``kubectl create <cmd> ...`` (protobuf), ``<cmd>.1.20.json`` what
kubectl 1.20 sent for the same command (JSON), recorded through a logging proxy in front of
``corral server`` (namespaces c32 and c20, cluster-scoped names ending in 32 and 20). The
hand-made messages below cover wire cases kubectl's bodies do not: they are built with a small
encoder written here, independently of the decoder.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest

from kubemodel import protobuf
from kubemodel._proto_generated import FIELDS, KINDS

BODIES = Path(__file__).parent / "data" / "kubectl-bodies"
PAIRS = sorted(p.name.removesuffix(".1.20.json") for p in BODIES.glob("*.1.20.json"))


def _normal(obj: dict[str, Any], version: str) -> Any:
    """Namespace and names made comparable; kubectl 1.20 leaves some namespaces out."""
    obj = json.loads(json.dumps(obj).replace(f"c{version}", "NS").replace(version, "X"))
    obj["metadata"].pop("namespace", None)
    if obj.get("kind") == "CronJob":
        obj["apiVersion"] = "batch/v1"  # kubectl 1.20 creates batch/v1beta1 CronJobs
    return obj


@pytest.mark.parametrize("name", PAIRS)
def test_kubectl_132_protobuf_decodes_to_kubectl_120_json(name: str) -> None:
    decoded = protobuf.decode((BODIES / f"{name}.1.32.pb").read_bytes())
    sent = json.loads((BODIES / f"{name}.1.20.json").read_text())
    assert _normal(decoded, "32") == _normal(sent, "20")


def test_kubectl_bodies_cover_the_typed_creates() -> None:
    assert {"namespace", "configmap", "deployment", "service-clusterip", "cronjob"} <= set(PAIRS)
    pdb = protobuf.decode((BODIES / "poddisruptionbudget.1.32.pb").read_bytes())
    assert pdb["spec"] == {"minAvailable": 1, "selector": {"matchLabels": {"app": "x"}}}


# ----------------------------------------------------------------------------- hand-made


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _f(number: int, value: int | bytes | str, wire: int | None = None) -> bytes:
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, bytes):
        return _varint(number << 3 | 2) + _varint(len(value)) + value
    if wire == 1:
        return _varint(number << 3 | 1) + struct.pack("<q", value)
    return _varint(number << 3) + _varint(value)


def _body(api_version: str, kind: str, raw: bytes) -> bytes:
    type_meta = _f(1, api_version) + _f(2, kind)
    return protobuf.MAGIC + _f(1, type_meta) + _f(2, raw) + _f(4, protobuf.MEDIA_TYPE)


def _num(message: str, json_name: str) -> int:
    return next(n for n, spec in FIELDS[message].items() if spec[0] == json_name)


CORE = "k8s.io.api.core.v1."
META = "k8s.io.apimachinery.pkg.apis.meta.v1."


def test_pod_with_every_special_type() -> None:
    time = _f(1, 1_700_000_000) + _f(2, 5)
    managed = _f(_num(META + "ManagedFieldsEntry", "manager"), "me") + _f(
        _num(META + "ManagedFieldsEntry", "time"), time
    )
    meta = (
        _f(_num(META + "ObjectMeta", "name"), "p")
        + _f(_num(META + "ObjectMeta", "creationTimestamp"), b"")  # zero Time: null
        + _f(_num(META + "ObjectMeta", "deletionTimestamp"), time)
        + _f(_num(META + "ObjectMeta", "deletionGracePeriodSeconds"), 0)  # pointer: kept
        + _f(_num(META + "ObjectMeta", "labels"), _f(1, "a") + _f(2, "b"))
        + _f(_num(META + "ObjectMeta", "labels"), _f(1, "c") + _f(2, ""))
        + _f(_num(META + "ObjectMeta", "finalizers"), "f1")
        + _f(_num(META + "ObjectMeta", "finalizers"), "f2")
        + _f(_num(META + "ObjectMeta", "managedFields"), managed)
        + _f(999, "a field from a newer Kubernetes")  # skipped
    )
    port = _f(1, 1) + _f(3, "http")  # IntOrString, type 1: a string
    probe_handler = _f(_num(CORE + "ProbeHandler", "httpGet"), _f(2, port))
    probe = _f(_num(CORE + "Probe", "handler"), probe_handler) + _f(
        _num(CORE + "Probe", "periodSeconds"), 0
    )
    limits = _f(1, "cpu") + _f(2, _f(1, "500m"))
    container = (
        _f(_num(CORE + "Container", "name"), "c")
        + _f(_num(CORE + "Container", "image"), "")  # "" under omitempty: dropped
        + _f(_num(CORE + "Container", "livenessProbe"), probe)
        + _f(_num(CORE + "Container", "resources"), _f(1, limits))
        + _f(_num(CORE + "Container", "tty"), 0)  # false under omitempty: dropped
        + _f(_num(CORE + "Container", "stdin"), 1)
    )
    volume = _f(1, "v") + _f(2, _f(_num(CORE + "VolumeSource", "emptyDir"), _f(1, "Memory")))
    spec = (
        _f(_num(CORE + "PodSpec", "containers"), container)
        + _f(_num(CORE + "PodSpec", "volumes"), volume)
        + _f(_num(CORE + "PodSpec", "terminationGracePeriodSeconds"), -1)  # int64 negative
        + _f(_num(CORE + "PodSpec", "priority"), -5)  # int32 negative, 10-byte varint
    )
    condition = _f(_num(CORE + "PodCondition", "type"), "Ready") + _f(
        _num(CORE + "PodCondition", "lastProbeTime"), time
    )
    status = _f(_num(CORE + "PodStatus", "conditions"), condition)
    raw = _f(1, meta) + _f(2, spec) + _f(3, status)
    pod = protobuf.decode(_body("v1", "Pod", raw))
    assert pod["apiVersion"] == "v1" and pod["kind"] == "Pod"
    assert pod["metadata"] == {
        "name": "p",
        "creationTimestamp": None,
        "deletionTimestamp": "2023-11-14T22:13:20Z",
        "deletionGracePeriodSeconds": 0,
        "labels": {"a": "b", "c": ""},
        "finalizers": ["f1", "f2"],
        "managedFields": [{"manager": "me", "time": "2023-11-14T22:13:20Z"}],
    }
    c = pod["spec"]["containers"][0]
    assert c == {
        "name": "c",
        "livenessProbe": {"httpGet": {"port": "http"}},
        "resources": {"limits": {"cpu": "500m"}},
        "stdin": True,
    }
    assert pod["spec"]["volumes"] == [{"name": "v", "emptyDir": {"medium": "Memory"}}]
    assert pod["spec"]["terminationGracePeriodSeconds"] == -1
    assert pod["spec"]["priority"] == -5
    assert pod["status"]["conditions"] == [
        {
            "type": "Ready",
            "status": "",  # not omitempty: Go's zero value is sent
            "lastProbeTime": "2023-11-14T22:13:20Z",
            "lastTransitionTime": None,  # a zero Time (a struct) is null, not left out
        }
    ]


def test_replication_controller_selector_map_and_zero_replicas() -> None:
    rc = CORE + "ReplicationControllerSpec"
    labels = _f(1, "app") + _f(2, "web")
    template = _f(
        _num(CORE + "PodTemplateSpec", "metadata"),
        _f(_num(META + "ObjectMeta", "labels"), labels),
    )
    spec = (
        _f(_num(rc, "replicas"), 0)  # *int32: an explicit 0 is kept
        + _f(_num(rc, "selector"), labels)
        + _f(_num(rc, "template"), template)
        + _f(_num(rc, "minReadySeconds"), 0)  # int32 omitempty: dropped
    )
    raw = _f(1, _f(_num(META + "ObjectMeta", "name"), "legacy")) + _f(2, spec)
    obj = protobuf.decode(_body("v1", "ReplicationController", raw))
    assert obj["kind"] == "ReplicationController"
    assert obj["spec"] == {
        "replicas": 0,
        "selector": {"app": "web"},
        # as Go encodes a decoded template: its zero Time null, its (value) spec empty
        "template": {"metadata": {"creationTimestamp": None, "labels": {"app": "web"}}, "spec": {}},
    }


def test_claim_class_and_autoscaler_bodies() -> None:
    """The kinds added since kubectl's bodies were captured: a PersistentVolumeClaim, a
    StorageClass and an autoscaling/v1 HorizontalPodAutoscaler (what kubectl autoscale sends)."""
    meta = _f(1, _f(_num(META + "ObjectMeta", "name"), "data"))
    pvc = CORE + "PersistentVolumeClaimSpec"
    requests = _f(1, "storage") + _f(2, _f(1, "1Gi"))
    spec = _f(_num(pvc, "accessModes"), "ReadWriteOnce") + _f(
        _num(pvc, "resources"), _f(_num(CORE + "VolumeResourceRequirements", "requests"), requests)
    )
    obj = protobuf.decode(_body("v1", "PersistentVolumeClaim", meta + _f(2, spec)))
    assert obj["spec"] == {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {
        "storage": "1Gi"}}}  # fmt: skip
    sc = "k8s.io.api.storage.v1.StorageClass"
    raw = (
        meta
        + _f(_num(sc, "provisioner"), "example.com/p")
        + _f(_num(sc, "volumeBindingMode"), "WaitForFirstConsumer")
    )
    obj = protobuf.decode(_body("storage.k8s.io/v1", "StorageClass", raw))
    assert (obj["provisioner"], obj["volumeBindingMode"]) == (
        "example.com/p", "WaitForFirstConsumer",
    )  # fmt: skip
    hpa = "k8s.io.api.autoscaling.v1.HorizontalPodAutoscalerSpec"
    ref = "k8s.io.api.autoscaling.v1.CrossVersionObjectReference"
    target = _f(_num(ref, "kind"), "Deployment") + _f(_num(ref, "name"), "web")
    spec = (
        _f(_num(hpa, "scaleTargetRef"), target)
        + _f(_num(hpa, "maxReplicas"), 4)
        + _f(_num(hpa, "targetCPUUtilizationPercentage"), 60)
    )
    obj = protobuf.decode(_body("autoscaling/v1", "HorizontalPodAutoscaler", meta + _f(2, spec)))
    assert obj["spec"]["maxReplicas"] == 4 and obj["spec"]["targetCPUUtilizationPercentage"] == 60
    assert obj["spec"]["scaleTargetRef"] == {"kind": "Deployment", "name": "web"}


def test_micro_time_bytes_and_int_or_string_number() -> None:
    event = (
        _f(1, _f(1, "e"))
        + _f(_num(CORE + "Event", "eventTime"), _f(1, 1_700_000_000) + _f(2, 123_456_000))
        + _f(_num(CORE + "Event", "count"), 3)
    )
    ev = protobuf.decode(_body("v1", "Event", event))
    assert ev["eventTime"] == "2023-11-14T22:13:20.123456Z"
    assert ev["count"] == 3
    secret = _f(1, _f(1, "s")) + _f(_num(CORE + "Secret", "data"), _f(1, "k") + _f(2, b"\x00\xff"))
    assert protobuf.decode(_body("v1", "Secret", secret))["data"] == {"k": "AP8="}
    svc_port = _f(_num(CORE + "ServicePort", "port"), 80) + _f(
        _num(CORE + "ServicePort", "targetPort"), _f(1, 0) + _f(2, 8080)
    )
    svc = _f(1, _f(1, "s")) + _f(2, _f(_num(CORE + "ServiceSpec", "ports"), svc_port))
    ports = protobuf.decode(_body("v1", "Service", svc))["spec"]["ports"]
    assert ports == [{"port": 80, "targetPort": 8080}]


def test_delete_options_in_any_version() -> None:
    opts = _f(_num(META + "DeleteOptions", "gracePeriodSeconds"), 0) + _f(
        _num(META + "DeleteOptions", "propagationPolicy"), "Foreground"
    )
    got = protobuf.decode(_body("v1", "DeleteOptions", opts))
    assert got == {
        "apiVersion": "v1",
        "kind": "DeleteOptions",
        "gracePeriodSeconds": 0,
        "propagationPolicy": "Foreground",
    }


@pytest.mark.parametrize(
    "body,words",
    [
        (b'{"kind":"Pod"}', "k8s\\0 prefix"),
        (protobuf.MAGIC + b"\x0a\x05abc", "runs past the end"),
        (_body("v1", "Pod", b"\x0a"), "truncated varint"),
        (_body("v1", "Pod", _f(1, _f(1, 5))), "a string with wire type 0"),
        (_body("v1", "Pod", _f(1, _f(1, b"\xff\xfe"))), "not UTF-8"),
        (_body("example.com/v1", "Widget", b""), "no protobuf decoding for kind"),
        (_body("v1", "Pod", b"\x0f"), "wire type 7"),
    ],
)
def test_bad_bodies(body: bytes, words: str) -> None:
    with pytest.raises(protobuf.ProtobufError) as e:
        protobuf.decode(body)
    assert words in str(e.value)


def test_nesting_is_bounded() -> None:
    # No message of the served kinds nests itself, so no body reaches the bound: check it.
    with pytest.raises(protobuf.ProtobufError, match="nested deeper"):
        protobuf._message(CORE + "Pod", b"", "Pod", depth=protobuf.MAX_DEPTH + 1)


def test_table_matches_the_json_model() -> None:
    """Every kind in the protobuf table has a model type, and every field the protobuf
    table names exists in that type with the same JSON name (both from Kubernetes 1.32)."""
    import msgspec

    import kubemodel

    def names(cls: Any) -> set[str]:
        return {f.encode_name for f in msgspec.structs.fields(cls)}

    checked = 0
    for (api, kind), message in KINDS.items():
        cls = kubemodel._generated.KINDS.get((api, kind))
        if cls is None:
            continue
        fields = {spec[0] for spec in FIELDS[message].values() if not spec[3] & 8}
        assert fields <= names(cls), (kind, fields - names(cls))
        checked += 1
    assert checked >= 15


def test_generator_reads_proto_and_go_structs() -> None:
    """protogen's two inputs: the wire from generated.proto, the JSON from the Go tags."""
    from kubemodel import protogen

    package, messages = protogen.parse_proto(
        'syntax = "proto2";\npackage k8s.io.api.x.v1;\n'
        "// A thing.\nmessage Thing {\n  // the name\n  optional string name = 1;\n"
        "  repeated .k8s.io.api.core.v1.Container items = 2;\n"
        "  map<string, string> labels = 3;\n  optional Inner inner = 4;\n}\n"
    )
    assert package == "k8s.io.api.x.v1"
    fields = {f.number: f for f in messages["k8s.io.api.x.v1.Thing"]}
    assert fields[2].type == "k8s.io.api.core.v1.Container" and fields[2].repeated
    assert (fields[3].type, fields[3].key, fields[3].value) == ("map", "string", "string")
    assert fields[4].type == "k8s.io.api.x.v1.Inner"
    go = protogen.parse_go(
        "type Thing struct {\n"
        '\tName string `json:"name" protobuf:"bytes,1,opt,name=name"`\n'
        '\tReplicas *int32 `json:"replicas,omitempty" protobuf:"varint,5,opt,name=replicas"`\n'
        '\tInner `json:",inline" protobuf:"bytes,4,opt,name=inner"`\n'
        '\tSkipped int `json:"-"`\n}\n'
    )
    assert go["Thing"][1] == protogen.GoField("name", False, False, False)
    assert go["Thing"][5] == protogen.GoField("replicas", True, True, False)
    assert go["Thing"][4].inline
    with pytest.raises(SystemExit, match="not understood"):
        protogen.parse_proto("package p;\nmessage M {\n  oneof x {\n}\n")


def test_certificate_signing_request() -> None:
    """certificates.k8s.io/v1 CertificateSigningRequest (client-go's certificates/v1 clients
    send it so): request bytes as base64, extra's ExtraValue as a list of strings, the
    expirationSeconds pointer, and a condition of the approval."""
    csr = "k8s.io.api.certificates.v1.CertificateSigningRequestSpec"
    cond = "k8s.io.api.certificates.v1.CertificateSigningRequestCondition"
    meta = _f(1, _f(_num(META + "ObjectMeta", "name"), "alice"))
    extra = _f(1, "scopes") + _f(2, _f(1, "a") + _f(1, "b"))
    spec = (
        _f(_num(csr, "request"), b"-----BEGIN")
        + _f(_num(csr, "signerName"), "kubernetes.io/kube-apiserver-client")
        + _f(_num(csr, "expirationSeconds"), 600)
        + _f(_num(csr, "usages"), "client auth")
        + _f(_num(csr, "usages"), "digital signature")
        + _f(_num(csr, "extra"), extra)
        + _f(_num(csr, "username"), "")  # omitempty: dropped
    )
    approved = _f(_num(cond, "type"), "Approved") + _f(_num(cond, "status"), "True")
    status = _f(1, approved)
    obj = protobuf.decode(
        _body(
            "certificates.k8s.io/v1",
            "CertificateSigningRequest",
            meta + _f(2, spec) + _f(3, status),
        )
    )
    assert obj["spec"] == {
        "request": "LS0tLS1CRUdJTg==",
        "signerName": "kubernetes.io/kube-apiserver-client",
        "expirationSeconds": 600,
        "usages": ["client auth", "digital signature"],
        "extra": {"scopes": ["a", "b"]},
    }
    assert obj["status"]["conditions"][0]["type"] == "Approved"
    assert obj["status"]["conditions"][0]["status"] == "True"
