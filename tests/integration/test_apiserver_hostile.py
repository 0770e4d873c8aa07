"""Hostile requests against a real ``corral server``: each is refused with a Kubernetes Status
of the right code (as kube-apiserver answers it), nothing of it is stored or deleted, and the
server keeps serving. Each case here once got a 500, a hang, a wrong code or a write."""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import socket
import ssl
import time
import uuid
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.kubeserver import API_ONLY, Server

NS = "hostile"
CM = f"/api/v1/namespaces/{NS}/configmaps"
PODS = f"/api/v1/namespaces/{NS}/pods"
DEPLOYS = f"/apis/apps/v1/namespaces/{NS}/deployments"
JSON = {"Content-Type": "application/json"}
JSON_HEADER = b"Content-Type: application/json\r\n"
MERGE = {"Content-Type": "application/merge-patch+json"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # a body may take 5 s to arrive (kube's 1m0s: a test would wait that long), a head 3 s
    # (kube's 32 s); a connection idles 1000 s between requests (kube's 90 s: so a head that
    # never ends is ended by the head's timeout, not this one)
    extra = (
        *API_ONLY,
        *("--request-timeout", "5", "--read-header-timeout", "3", "--idle-timeout", "1000"),
    )
    srv = Server(tmp_path_factory.mktemp("apiserver-hostile"), extra=extra)
    srv.start()
    try:
        code, body = srv.json("POST", "/api/v1/namespaces", {"metadata": {"name": NS}})
        assert code == 201, body
        yield srv
    finally:
        rc = srv.stop()
    assert rc == 0


def _names(server: Server, path: str) -> list[str]:
    code, body = server.json("GET", path)
    assert code == 200, body
    return sorted(i["metadata"]["name"] for i in body["items"])


def _status(code: int, raw: bytes, want_code: int, reason: str) -> dict[str, Any]:
    status = json.loads(raw)
    assert (code, status["kind"], status["apiVersion"], status["status"]) == (
        want_code,
        "Status",
        "v1",
        "Failure",
    ), status
    assert (status["code"], status["reason"]) == (want_code, reason), status
    return status


def _serving(server: Server) -> None:
    assert server.request("GET", "/healthz")[::2] == (200, b"ok")


@pytest.fixture
def cm(server: Server) -> Iterator[str]:
    """A ConfigMap of the test's own, deleted afterwards (a name of its own: a test that
    fails may leave its object behind, held by a finalizer)."""
    name = f"victim-{uuid.uuid4().hex[:8]}"
    code, body = server.json("POST", CM, {"metadata": {"name": name}, "data": {"a": "1"}})
    assert code == 201, body
    try:
        yield name
    finally:
        server.request("DELETE", f"{CM}/{name}")


def test_namespaces_have_no_deletecollection(server: Server) -> None:
    """DELETE /api/v1/namespaces deleted every namespace (kube-system too); Kubernetes has
    no deletecollection verb for namespaces: 405, and discovery does not offer it."""
    before = _names(server, "/api/v1/namespaces")
    assert NS in before
    code, _, raw = server.request("DELETE", "/api/v1/namespaces")
    _status(code, raw, 405, "MethodNotAllowed")
    code, _, raw = server.request("DELETE", "/api/v1/namespaces?labelSelector=x%3Dy")
    _status(code, raw, 405, "MethodNotAllowed")
    assert _names(server, "/api/v1/namespaces") == before
    code, doc = server.json("GET", "/api/v1")
    verbs = {r["name"]: r["verbs"] for r in doc["resources"]}
    assert "deletecollection" not in verbs["namespaces"]
    assert "deletecollection" in verbs["configmaps"]


@pytest.mark.parametrize(
    "query,body",
    [
        ("?dryRun=Bogus", None),
        ("?dryRun=All&dryRun=Bogus", None),
        ("?propagationPolicy=Bogus", None),
        ("", {"propagationPolicy": "Bogus"}),
        ("", {"dryRun": ["Bogus"]}),
        ("", {"orphanDependents": True, "propagationPolicy": "Foreground"}),
    ],
    ids=["dryRun", "dryRun-twice", "policy-query", "policy-body", "dryRun-body", "both"],
)
def test_bad_delete_options_delete_nothing(
    server: Server, cm: str, query: str, body: dict[str, Any] | None
) -> None:
    """Options kube-apiserver's ValidateDeleteOptions refuses (422, DeleteOptions): a bogus
    propagationPolicy in the query was ignored and the object deleted."""
    code, _, raw = server.request("DELETE", f"{CM}/{cm}{query}", body)
    status = _status(code, raw, 422, "Invalid")
    assert status["details"]["kind"] == "DeleteOptions", status
    assert status["details"]["causes"][0]["field"] in ("dryRun", "propagationPolicy"), status
    assert cm in _names(server, CM)


@pytest.mark.parametrize(
    "query,body,headers",
    [
        ("?dryRun=All", None, None),
        ("", {"dryRun": ["All"]}, None),
        ("", b"[]", JSON),
    ],
    ids=["dry-query", "dry-body", "list-body"],
)
def test_dry_or_malformed_delete_deletes_nothing(
    server: Server, cm: str, query: str, body: Any, headers: dict[str, str] | None
) -> None:
    """A dry run in the DeleteOptions body (kubectl sends one) deleted for real; a body that
    is a list was taken as no options."""
    code, _, raw = server.request("DELETE", f"{CM}/{cm}{query}", body, headers)
    if isinstance(body, bytes):
        _status(code, raw, 400, "BadRequest")
    else:
        assert code == 200, raw
    assert cm in _names(server, CM)


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
def test_bogus_dry_run_writes_nothing(server: Server, cm: str, method: str) -> None:
    """dryRun=Bogus was a real write: 422 from the options' validation, nothing changed."""
    before = server.json("GET", f"{CM}/{cm}")[1]
    changed = {**before, "data": {"a": "2"}}
    path, body, headers = {
        "POST": (f"{CM}?dryRun=Bogus", {"metadata": {"name": "dry-bogus"}}, JSON),
        "PUT": (f"{CM}/{cm}?dryRun=Bogus", changed, JSON),
        "PATCH": (f"{CM}/{cm}?dryRun=Bogus", {"data": {"a": "3"}}, MERGE),
    }[method]
    code, _, raw = server.request(method, path, json.dumps(body).encode(), headers)
    status = _status(code, raw, 422, "Invalid")
    kind = {"POST": "CreateOptions", "PUT": "UpdateOptions", "PATCH": "PatchOptions"}[method]
    assert status["details"]["kind"] == kind, status
    assert "dry-bogus" not in _names(server, CM)
    assert server.json("GET", f"{CM}/{cm}")[1] == before


@pytest.mark.parametrize(
    "path,code,reason",
    [
        (f"{CM}/a%00b", 404, "NotFound"),  # was 500: the store refuses a key with a NUL
        ("/api/v1/namespaces/a%00b/configmaps/x", 404, "NotFound"),
        (f"{CM}?limit=99999999999999999999999", 400, "BadRequest"),  # was 500 (SQLite)
        (f"{CM}?watch=true&timeoutSeconds=99999999999999999999", 400, "BadRequest"),
        (f"{CM}?resourceVersion=-1", 400, "BadRequest"),
        (f"{CM}?resourceVersion=1_0", 400, "BadRequest"),
        (f"{CM}?resourceVersion=99999999999999999999999", 400, "BadRequest"),  # was 504
        (f"{CM}?watch=true&resourceVersion=%2B5", 400, "BadRequest"),
        (f"{CM}/x?resourceVersion=abc", 400, "BadRequest"),  # was a 404 (or the object)
        (f"{CM}?resourceVersionMatch=Exact", 422, "Invalid"),
        (f"{CM}?resourceVersionMatch=Bogus&resourceVersion=1", 422, "Invalid"),
        (f"{CM}?resourceVersion=0&resourceVersionMatch=Exact", 422, "Invalid"),
        (f"{CM}?resourceVersion=1&resourceVersionMatch=Exact&continue=x", 422, "Invalid"),
        (f"{CM}?watch=true&resourceVersion=1&resourceVersionMatch=Exact", 422, "Invalid"),
    ],
    ids=[
        "nul-name",
        "nul-namespace",
        "limit-int64",
        "timeout-int64",
        "rv-negative",
        "rv-underscore",
        "rv-int64",
        "rv-watch-plus",
        "rv-get",
        "match-without-rv",
        "match-bogus",
        "exact-zero",
        "match-continue",
        "watch-match",
    ],
)
def test_bad_paths_and_list_options(server: Server, path: str, code: int, reason: str) -> None:
    got, _, raw = server.request("GET", path)
    status = _status(got, raw, code, reason)
    if reason == "Invalid":
        assert status["details"]["kind"] == "ListOptions", status
        assert status["details"]["causes"][0]["field"] == "resourceVersionMatch", status
    _serving(server)


def test_watch_with_a_negative_timeout_ends(server: Server, cm: str) -> None:
    """timeoutSeconds=-1 watched forever; kube-apiserver's timer fires at once: the watch
    ends, after its initial events. (The socket timeout only keeps a hang from hanging the
    suite: it is not a threshold.)"""
    conn = http.client.HTTPSConnection(
        "127.0.0.1", server.port, context=server.ssl_context(), timeout=120
    )
    try:
        conn.request("GET", f"{CM}?watch=true&timeoutSeconds=-1")
        resp = conn.getresponse()
        assert resp.status == 200
        events = [json.loads(line) for line in resp.read().splitlines() if line.strip()]
    finally:
        conn.close()
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", cm)]


@pytest.mark.parametrize(
    "headers,code,reason",
    [
        ({"Content-Type": "text/plain"}, 415, "UnsupportedMediaType"),
        ({"Content-Type": ";;;==/"}, 415, "UnsupportedMediaType"),
        ({"Content-Type": "application/x-www-form-urlencoded"}, 415, "UnsupportedMediaType"),
        ({**JSON, "Accept": "foo/bar"}, 406, "NotAcceptable"),
        ({**JSON, "Accept": "text/html, image/png"}, 406, "NotAcceptable"),
    ],
    ids=["text-plain", "garbage", "form", "accept-foo", "accept-html"],
)
def test_media_types_refused_nothing_stored(
    server: Server, headers: dict[str, str], code: int, reason: str
) -> None:
    """A JSON body under any Content-Type was taken as JSON; an Accept of nothing the server
    answers in got JSON anyway."""
    before = _names(server, CM)
    body = json.dumps({"metadata": {"name": "media"}}).encode()
    got, _, raw = server.request("POST", CM, body, headers)
    _status(got, raw, code, reason)
    assert _names(server, CM) == before
    if "Accept" in headers:
        got, _, raw = server.request("GET", CM, None, {"Accept": headers["Accept"]})
        _status(got, raw, code, reason)
        mixed = {"Accept": headers["Accept"] + ", application/json"}
        assert server.request("GET", CM, None, mixed)[0] == 200


def _deployment(name: str, replicas: int) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            },
        },
    }


@pytest.mark.parametrize(
    "replicas,code,reason",
    [(2**31, 422, "Invalid"), (2**70, 400, "BadRequest"), (2**63, 400, "BadRequest")],
    ids=["int32", "int70", "int64"],
)
def test_integers_out_of_range_stored_nothing(
    server: Server, replicas: int, code: int, reason: str
) -> None:
    """replicas of 2**31 and of 2**70 were stored (a Go client cannot read them back)."""
    before = _names(server, DEPLOYS)
    got, _, raw = server.request("POST", DEPLOYS, _deployment("big", replicas))
    status = _status(got, raw, code, reason)
    if code == 422:
        assert status["details"]["causes"][0]["field"] == "spec.replicas", status
    assert _names(server, DEPLOYS) == before
    code, dep = server.json("POST", DEPLOYS, _deployment("fine", 2**31 - 1))
    assert code == 201, dep
    try:
        scale = f"{DEPLOYS}/fine/scale"
        got, _, raw = server.request("PATCH", scale, b'{"spec":{"replicas":2147483648}}', MERGE)
        _status(got, raw, 422, "Invalid")
        assert server.json("GET", f"{DEPLOYS}/fine")[1]["spec"]["replicas"] == 2**31 - 1
    finally:
        server.request("DELETE", f"{DEPLOYS}/fine")


def test_invalid_qualifies_the_kind_with_its_group(server: Server) -> None:
    """kube-apiserver's NewInvalid names the GroupKind: ``Deployment.apps "x" is invalid``
    (a core kind stays bare); the Scale subresource's own validation is autoscaling's Scale.
    A client reading the message (not kubectl, which words it from the details) saw
    ``Deployment "x"``."""
    got, _, raw = server.request("POST", DEPLOYS, _deployment("neg", -1))
    status = _status(got, raw, 422, "Invalid")
    assert status["message"].startswith('Deployment.apps "neg" is invalid: spec.replicas: ')
    assert (status["details"]["kind"], status["details"]["group"]) == ("Deployment", "apps")
    bad_cm = {"metadata": {"name": "bad"}, "data": {"a b": "x"}}
    got, _, raw = server.request("POST", CM, bad_cm)
    assert _status(got, raw, 422, "Invalid")["message"].startswith('ConfigMap "bad" is invalid: ')
    code, dep = server.json("POST", DEPLOYS, _deployment("scaled", 1))
    assert code == 201, dep
    try:
        scale = f"{DEPLOYS}/scaled/scale"
        code, body = server.json("GET", scale)
        assert code == 200, body
        body["spec"]["replicas"] = -1
        got, _, raw = server.request("PUT", scale, body)
        assert _status(got, raw, 422, "Invalid")["message"] == (
            'Scale.autoscaling "scaled" is invalid: spec.replicas: Invalid value: -1: must be'
            " greater than or equal to 0"
        )
        body["spec"]["replicas"] = "2"
        got, _, raw = server.request("PUT", scale, body)
        _status(got, raw, 400, "BadRequest")
        assert server.json("GET", f"{DEPLOYS}/scaled")[1]["spec"]["replicas"] == 1
    finally:
        server.request("DELETE", f"{DEPLOYS}/scaled")


def test_service_name_must_be_a_dns1035_label(server: Server) -> None:
    path = f"/api/v1/namespaces/{NS}/services"
    before = _names(server, path)
    for name in ("a.b", "1abc"):
        body = {"metadata": {"name": name}, "spec": {"ports": [{"port": 80}]}}
        got, _, raw = server.request("POST", path, body)
        status = _status(got, raw, 422, "Invalid")
        assert status["details"]["causes"][0]["field"] == "metadata.name", status
    assert _names(server, path) == before


@pytest.fixture
def pod(server: Server) -> Iterator[str]:
    name = "still"
    spec = {
        "containers": [{"name": "c", "image": "busybox"}],
        "activeDeadlineSeconds": 600,
    }
    code, body = server.json("POST", PODS, {"metadata": {"name": name}, "spec": spec})
    assert code == 201, body
    try:
        yield name
    finally:
        server.request("DELETE", f"{PODS}/{name}?gracePeriodSeconds=0")


@pytest.mark.parametrize(
    "patch",
    [
        {"spec": {"nodeName": "elsewhere"}},
        {"spec": {"restartPolicy": "Never"}},
        {"spec": {"hostNetwork": True}},
        {"spec": {"terminationGracePeriodSeconds": 5}},
        {"spec": {"serviceAccountName": "other"}},
        {"spec": {"activeDeadlineSeconds": 900}},  # only set or lowered
        {"spec": {"activeDeadlineSeconds": None}},
        {"spec": {"tolerations": []}},  # only added to
    ],
    ids=[
        "nodeName",
        "restartPolicy",
        "hostNetwork",
        "grace",
        "sa",
        "deadline-up",
        "deadline-nil",
        "tolerations-removed",
    ],  # fmt: skip
)
def test_pod_spec_is_immutable(server: Server, pod: str, patch: dict[str, Any]) -> None:
    """Every one of these changed a pod's spec (a bound pod's nodeName too); Kubernetes
    allows images, activeDeadlineSeconds (lowered) and tolerations (added) only."""
    before = server.json("GET", f"{PODS}/{pod}")[1]
    got, _, raw = server.request("PATCH", f"{PODS}/{pod}", json.dumps(patch).encode(), MERGE)
    status = _status(got, raw, 422, "Invalid")
    assert status["details"]["causes"][0]["field"].startswith("spec"), status
    after = server.json("GET", f"{PODS}/{pod}")[1]
    assert after["spec"] == before["spec"]
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


def test_pod_spec_changes_kubernetes_allows(server: Server, pod: str) -> None:
    smp = {"Content-Type": "application/strategic-merge-patch+json"}
    steps = [
        ({"spec": {"containers": [{"name": "c", "image": "busybox:2"}]}}, smp),  # set image
        ({"spec": {"activeDeadlineSeconds": 300}}, MERGE),
        (
            [
                {
                    "op": "add",
                    "path": "/spec/tolerations/-",
                    "value": {"key": "k", "operator": "Exists"},
                }
            ],
            {"Content-Type": "application/json-patch+json"},
        ),
        ({"metadata": {"labels": {"a": "b"}}}, MERGE),
    ]
    for patch, headers in steps:
        path = f"{PODS}/{pod}"
        code, _, raw = server.request("PATCH", path, json.dumps(patch).encode(), headers)
        assert code == 200, raw
    got = server.json("GET", f"{PODS}/{pod}")[1]
    assert got["spec"]["containers"][0]["image"] == "busybox:2"
    assert got["spec"]["activeDeadlineSeconds"] == 300
    assert {"key": "k", "operator": "Exists"} in got["spec"]["tolerations"]
    code, _, raw = server.request("PUT", f"{PODS}/{pod}", got)  # unchanged: fine
    assert code == 200, raw


@pytest.mark.parametrize(
    "query,code,field",
    [
        ("tailLines=-1", 422, "tailLines"),
        ("limitBytes=0", 422, "limitBytes"),
        ("sinceSeconds=-5", 422, "sinceSeconds"),
        ("sinceSeconds=5&sinceTime=2020-01-01T00:00:00Z", 422, ""),
        ("tailLines=abc", 400, None),
        ("limitBytes=99999999999999999999", 400, None),
        ("follow=maybe", 400, None),
    ],
    ids=["tail", "limit", "since", "since-both", "tail-text", "limit-int64", "follow"],
)
def test_log_options_checked_before_the_kubelet(
    server: Server, pod: str, query: str, code: int, field: str | None
) -> None:
    """PodLogOptions kube-apiserver refuses itself were passed on to the kubelet (this pod
    has no node: it was 400 "does not have a host assigned" for all of them)."""
    got, _, raw = server.request("GET", f"{PODS}/{pod}/log?{query}")
    status = _status(got, raw, code, "Invalid" if code == 422 else "BadRequest")
    if code == 422:
        assert status["details"]["kind"] == "PodLogOptions", status
        assert status["details"]["causes"][0]["field"] == field, status
    else:
        assert query.partition("=")[0] in status["message"], status
    got, _, raw = server.request("GET", f"{PODS}/{pod}/log?tailLines=0&limitBytes=1")
    assert "does not have a host assigned" in _status(got, raw, 400, "BadRequest")["message"]


def _strategy(name: str, strategy: dict[str, Any]) -> dict[str, Any]:
    dep = _deployment(name, 1)
    dep["spec"]["strategy"] = strategy
    return dep


def _pod(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox"}], **spec},
    }


_REQUIRED = "requiredDuringSchedulingIgnoredDuringExecution"
_TERMS = f"spec.affinity.nodeAffinity.{_REQUIRED}.nodeSelectorTerms"


@pytest.mark.parametrize(
    "path,body,field",
    [
        (
            PODS,
            _pod("tol", tolerations=[{"key": "a", "operator": "Bogus"}]),
            "spec.tolerations[0].operator",
        ),
        (
            PODS,
            _pod("tol-s", tolerations=[{"key": "a", "effect": "NoSchedule",
                                        "tolerationSeconds": 1}]),
            "spec.tolerations[0].effect",
        ),
        (
            PODS,
            _pod("aff", affinity={"nodeAffinity": {_REQUIRED: {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "a", "operator": "Bogus"}]}]}}}),
            f"{_TERMS}[0].matchExpressions[0].operator",
        ),
        (
            PODS,
            _pod("aff-in", affinity={"nodeAffinity": {_REQUIRED: {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "a", "operator": "In"}]}]}}}),
            f"{_TERMS}[0].matchExpressions[0].values",
        ),
        (
            PODS,
            _pod("anti", affinity={"podAntiAffinity": {_REQUIRED: [{"topologyKey": ""}]}}),
            f"spec.affinity.podAntiAffinity.{_REQUIRED}[0].topologyKey",
        ),
        (CM, {"metadata": {"name": "b64"}, "binaryData": {"a b": "MQ=="}}, "binaryData[a b]"),
        (DEPLOYS, _strategy("strat", {"type": "Bogus"}), "spec.strategy.type"),
        (
            DEPLOYS,
            _strategy("surge", {"rollingUpdate": {"maxSurge": "x%"}}),
            "spec.strategy.rollingUpdate.maxSurge",
        ),
        (
            DEPLOYS,
            _strategy("zero", {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}}),
            "spec.strategy.rollingUpdate.maxUnavailable",
        ),
        (
            DEPLOYS,
            _strategy("recreate", {"type": "Recreate", "rollingUpdate": {"maxSurge": 1}}),
            "spec.strategy.rollingUpdate",
        ),
    ],
    ids=["toleration", "toleration-seconds", "node-affinity", "node-affinity-in", "anti-affinity",
         "binaryData", "strategy", "maxSurge", "both-zero", "recreate-rolling"],
)  # fmt: skip
def test_invalid_fields_stored_nothing(
    server: Server, path: str, body: dict[str, Any], field: str
) -> None:
    """Each was stored as given (a Deployment controller could not act on it)."""
    before = _names(server, path)
    got, _, raw = server.request("POST", path, body)
    status = _status(got, raw, 422, "Invalid")
    assert status["details"]["causes"][0]["field"] == field, status
    assert _names(server, path) == before


def test_a_long_selector_is_served(server: Server, cm: str) -> None:
    """A request line over aiohttp's 8190 bytes got a bare-text 400; kube-apiserver (Go, 1 MB
    of headers) serves it: a selector of many values lists, a too-long label key is a 400
    Status."""
    values = ",".join(f"v{i}" for i in range(20_000))
    got, _, raw = server.request("GET", f"{CM}?labelSelector=app%20notin%20({values})")
    assert got == 200, raw[:200]
    assert cm in [i["metadata"]["name"] for i in json.loads(raw)["items"]]
    got, _, raw = server.request("GET", f"{CM}?labelSelector={'a' * 50_000}")
    assert "63 characters" in _status(got, raw, 400, "BadRequest")["message"]


@pytest.mark.parametrize(
    "method,body,field",
    [
        ("PUT", {"metadata": {"uid": "not-its-uid"}}, "metadata.uid"),
        (
            "PUT",
            {"metadata": {"deletionTimestamp": "2020-01-01T00:00:00Z"}},
            "metadata.deletionTimestamp",
        ),
        ("PATCH", {"metadata": {"uid": "not-its-uid"}}, "metadata.uid"),
        ("JSONPATCH", [{"op": "replace", "path": "/metadata/uid", "value": "x"}], "metadata.uid"),
    ],
    ids=["put-uid", "put-deletion", "merge-uid", "json-uid"],
)  # fmt: skip
def test_immutable_metadata_refused(
    server: Server, cm: str, method: str, body: Any, field: str
) -> None:
    """A write that changed the uid or set a deletionTimestamp got a 200 (the change silently
    dropped); kube-apiserver: 422, the field is immutable. An empty uid, a changed
    creationTimestamp: the old ones are kept, as there."""
    before = server.json("GET", f"{CM}/{cm}")[1]
    path = f"{CM}/{cm}"
    if method == "PUT":
        sent = {**before, "metadata": {**before["metadata"], **body["metadata"]}}
        got, _, raw = server.request("PUT", path, sent)
    else:
        ctype = "application/json-patch+json" if method == "JSONPATCH" else MERGE["Content-Type"]
        got, _, raw = server.request(
            "PATCH", path, json.dumps(body).encode(), {"Content-Type": ctype}
        )
    status = _status(got, raw, 422, "Invalid")
    assert status["details"]["causes"][0]["field"] == field, status
    assert server.json("GET", path)[1] == before
    kept = {**before, "metadata": {**before["metadata"], "uid": "", "creationTimestamp": None}}
    code, after = server.json("PUT", path, kept)
    assert code == 200, after
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    assert after["metadata"]["creationTimestamp"] == before["metadata"]["creationTimestamp"]


_CPU = "spec.containers[0].resources.limits.cpu"


def _cpu_pod(name: str, cpu: Any) -> dict[str, Any]:
    resources = {"limits": {"cpu": cpu}}
    return _pod(name, containers=[{"name": "c", "image": "busybox", "resources": resources}])


@pytest.mark.parametrize(
    "path,body,field",
    [
        (DEPLOYS, {**_deployment("wrong", 1), "spec": {"replicas": "abc"}}, "spec.replicas"),
        (CM, {"metadata": {"name": "wrong", "labels": ["a"]}}, "metadata.labels"),
        (CM, {"metadata": {"name": "wrong", "labels": {"a": 1}}}, "metadata.labels.a"),
        (CM, {"metadata": {"name": 5}}, "metadata.name"),
        (CM, {"metadata": "wrong"}, "metadata"),
        (CM, {"metadata": {"name": "wrong"}, "data": {"a": 1}}, "data.a"),
        (CM, {"metadata": {"name": "wrong", "managedFields": "x"}}, "metadata.managedFields"),
        (PODS, _cpu_pod("wrong", "1.2.3"), _CPU),
        (PODS, _cpu_pod("wrong", ""), _CPU),
        (PODS, _cpu_pod("wrong", "1e9223372036854775808"), _CPU),
    ],
    ids=["replicas-string", "labels-list", "label-int", "name-int", "metadata-string", "data-int",
         "managedFields-string", "quantity-dots", "quantity-empty", "quantity-exponent"],
)  # fmt: skip
def test_wrong_types_do_not_decode(
    server: Server, cm: str, path: str, body: dict[str, Any], field: str
) -> None:
    """A value of the wrong JSON type (or a quantity that does not parse) fails Go's decoder
    in kube-apiserver: 400, '<Kind> in version "v1" cannot be handled as a <Kind>: ...' (it
    was 422, as for an object that decodes but is invalid). PUT alike; a patch whose result
    does not decode stays 422, as there (the patch is what is invalid)."""
    before = _names(server, path)
    got, _, raw = server.request("POST", path, body)
    status = _status(got, raw, 400, "BadRequest")
    kind = "Deployment" if path == DEPLOYS else "Pod" if path == PODS else "ConfigMap"
    assert status["message"].startswith(f'{kind} in version "v1" cannot be handled as a {kind}: ')
    assert f"{field}: " in status["message"], status
    assert _names(server, path) == before
    if path != CM or field == "metadata.name":
        return
    old = server.json("GET", f"{CM}/{cm}")[1]
    meta = body["metadata"]
    if isinstance(meta, dict):
        meta = {**old["metadata"], **meta, "name": cm}
    got, _, raw = server.request("PUT", f"{CM}/{cm}", {**body, "metadata": meta})
    _status(got, raw, 400, "BadRequest")
    if isinstance(meta, dict):
        meta = {k: v for k, v in body["metadata"].items() if k != "name"}
    patch = json.dumps({**body, "metadata": meta}).encode()
    got, _, raw = server.request("PATCH", f"{CM}/{cm}", patch, MERGE)
    _status(got, raw, 422, "Invalid")
    assert server.json("GET", f"{CM}/{cm}")[1] == old


@pytest.mark.parametrize(
    "cpu,value",
    [
        ("1e400", Fraction(2**63 - 1)),
        ("99999999999999999999Ti", Fraction(2**63 - 1)),
        (1.5, Fraction(3, 2)),
        ("1e-400", Fraction(1, 10**9)),
    ],
    ids=["exponent", "binary", "number", "tiny"],
)
def test_huge_quantities_are_capped_as_kubernetes_caps_them(
    server: Server, cpu: Any, value: Fraction
) -> None:
    """resource.ParseQuantity caps a quantity at the largest int64 and rounds a tiny one up to
    1n: 1e400 is a valid cpu limit there (it was a 422 'exponent out of range'); stored as
    written, read as capped."""
    from kubemodel.quantity import parse_quantity

    code, pod = server.json("POST", PODS, _cpu_pod("capped", cpu))
    assert code == 201, pod
    try:
        stored = pod["spec"]["containers"][0]["resources"]["limits"]["cpu"]
        assert parse_quantity(stored).value == value
    finally:
        server.request("DELETE", f"{PODS}/capped?gracePeriodSeconds=0")


def test_deletecollection_honours_continue(server: Server) -> None:
    """DELETE on a collection ignored its ListOptions: continue=garbage (and resourceVersion=-1)
    deleted everything; a real token deleted the first page too. kube's DeleteCollection
    lists with them: a bad token or resourceVersion is a 400 and deletes nothing; a token
    deletes from there on (limit only pages the list)."""
    names = [f"dc-{i}" for i in range(4)]
    sel = "?labelSelector=dc%3Dyes"
    for n in names:
        code, body = server.json("POST", CM, {"metadata": {"name": n, "labels": {"dc": "yes"}}})
        assert code == 201, body
    try:
        for query in ("&continue=garbage", "&resourceVersion=-1"):
            got, _, raw = server.request("DELETE", CM + sel + query)
            _status(got, raw, 400, "BadRequest")
            assert [n for n in _names(server, CM) if n.startswith("dc-")] == names
        code, page = server.json("GET", f"{CM}{sel}&limit=2")
        token = page["metadata"]["continue"]
        code, gone = server.json("DELETE", f"{CM}{sel}&continue={token}&limit=1")
        assert code == 200, gone
        assert sorted(i["metadata"]["name"] for i in gone["items"]) == names[2:]
        assert [n for n in _names(server, CM) if n.startswith("dc-")] == names[:2]
    finally:
        server.request("DELETE", CM + sel)


def _owner(**fields: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": "u", **fields}


_BOGUS_ENTRY = {"manager": "m", "operation": "Bogus", "fieldsType": "FieldsV1", "fieldsV1": {}}


@pytest.mark.parametrize(
    "meta,field",
    [
        ({"finalizers": ["example.com/x y"]}, "metadata.finalizers"),
        ({"finalizers": [""]}, "metadata.finalizers"),
        ({"finalizers": ["a/b/c"]}, "metadata.finalizers"),
        ({"finalizers": ["orphan", "foregroundDeletion"]}, "metadata.finalizers"),
        ({"ownerReferences": [_owner(apiVersion="")]}, "metadata.ownerReferences.apiVersion"),
        ({"ownerReferences": [_owner(apiVersion="a/b/c")]}, "metadata.ownerReferences.apiVersion"),
        ({"ownerReferences": [_owner(kind="")]}, "metadata.ownerReferences.kind"),
        ({"ownerReferences": [_owner(name="")]}, "metadata.ownerReferences.name"),
        ({"ownerReferences": [_owner(uid="")]}, "metadata.ownerReferences.uid"),
        ({"ownerReferences": [_owner(kind="Event")]}, "metadata.ownerReferences"),
        (
            {"ownerReferences": [_owner(controller=True), _owner(name="q", controller=True)]},
            "metadata.ownerReferences",
        ),
        ({"generateName": "bad_name-"}, "metadata.generateName"),
        ({"generateName": "a" * 254}, "metadata.generateName"),
        ({"name": "given", "generateName": "-x"}, "metadata.generateName"),
        ({"name": "mf", "managedFields": [_BOGUS_ENTRY]}, "metadata.managedFields[0].operation"),
    ],
    ids=["finalizer-space", "finalizer-empty", "finalizer-slashes", "orphan-and-foreground",
         "owner-version", "owner-version-garbage", "owner-kind", "owner-name", "owner-uid",
         "owner-event", "two-controllers", "generate-underscore", "generate-long",
         "generate-with-name", "managed-operation"],
)  # fmt: skip
def test_invalid_metadata_stored_nothing(server: Server, meta: dict[str, Any], field: str) -> None:
    """Each was stored as sent: kube-apiserver's ValidateObjectMeta refuses it (422) naming
    the field as it does (ownerReferences' paths are not indexed there). A generateName is
    checked whole (a '-' at its end as a letter), before the name made of it (only that name
    was checked, and a generateName of 300 characters cut to 58)."""
    before = _names(server, CM)
    body = {"metadata": {"name": "meta", **meta}}
    if "generateName" in meta and "name" not in meta:
        del body["metadata"]["name"]
    got, _, raw = server.request("POST", CM, body)
    status = _status(got, raw, 422, "Invalid")
    assert status["details"]["causes"][0]["field"] == field, status
    assert _names(server, CM) == before


@pytest.mark.parametrize(
    "meta",
    [
        {"finalizers": ["kubernetes", "example.com/ok", "x"]},
        {"ownerReferences": [_owner(apiVersion="apps/v1", kind="ReplicaSet", controller=True)]},
        {"generateName": "a" * 100},  # cut to 58, then 5 random: a valid name
        {"managedFields": [{**_BOGUS_ENTRY, "fieldsType": "Bogus"}]},  # replaced: no error
    ],
    ids=["finalizers", "owner", "generate-long", "managed-unreadable"],
)
def test_valid_metadata_is_stored(server: Server, meta: dict[str, Any]) -> None:
    body = {"metadata": {"name": "fine-meta", **meta}}
    if "generateName" in meta:
        del body["metadata"]["name"]
    code, obj = server.json("POST", CM, body)
    assert code == 201, obj
    name = obj["metadata"]["name"]
    server.json("PATCH", f"{CM}/{name}", {"metadata": {"finalizers": None}}, headers=MERGE)
    assert server.request("DELETE", f"{CM}/{name}")[0] == 200
    if "generateName" in meta:
        assert len(name) == 63 and name.startswith("a" * 58), name


def test_generate_name_of_the_wrong_type(server: Server) -> None:
    """A generateName that is no string was sliced and concatenated: 500 (a TypeError)."""
    before = _names(server, CM)
    for gen in (5, ["a"]):
        got, _, raw = server.request("POST", CM, {"metadata": {"generateName": gen}})
        assert "metadata.generateName" in _status(got, raw, 400, "BadRequest")["message"]
    assert _names(server, CM) == before


def test_no_new_finalizers_on_an_object_being_deleted(server: Server) -> None:
    """A finalizer added to an object being deleted was taken (it could be held forever);
    kube's ValidateNoNewFinalizers: 422 Forbidden. Removing the last one deletes it."""
    code, obj = server.json("POST", CM, {"metadata": {"name": "held", "finalizers": ["a.io/x"]}})
    assert code == 201, obj
    try:
        code, obj = server.json("DELETE", f"{CM}/held")
        assert code == 200 and obj["metadata"]["deletionTimestamp"], obj
        for patch in ({"metadata": {"finalizers": ["a.io/x", "a.io/y"]}},
                      {"metadata": {"finalizers": ["a.io/y"]}}):  # fmt: skip
            got, _, raw = server.request("PATCH", f"{CM}/held", json.dumps(patch).encode(), MERGE)
            status = _status(got, raw, 422, "Invalid")
            assert status["details"]["causes"][0]["field"] == "metadata.finalizers", status
            assert "a.io/y" in status["message"], status
        assert server.json("GET", f"{CM}/held")[1]["metadata"]["finalizers"] == ["a.io/x"]
        code, obj = server.json(
            "PATCH", f"{CM}/held", {"metadata": {"finalizers": None}}, headers=MERGE
        )
        assert code == 200, obj
        assert server.request("GET", f"{CM}/held")[0] == 404
    finally:
        server.json("PATCH", f"{CM}/held", {"metadata": {"finalizers": None}}, headers=MERGE)


def test_namespace_terminating_and_names(server: Server) -> None:
    """Creating in a Terminating namespace is 403 with the NamespaceTerminating cause (what
    clients look for: it had none); a namespace name is checked as a DNS label first (a name
    of 64 characters was refused for the label made of it)."""
    ns = "dying"
    code, body = server.json("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
    assert code == 201, body
    path = f"/api/v1/namespaces/{ns}/configmaps"
    held = {"metadata": {"name": "held", "finalizers": ["a.io/x"]}}
    try:
        assert server.json("POST", path, held)[0] == 201
        assert server.json("DELETE", f"/api/v1/namespaces/{ns}")[0] == 200
        got, _, raw = server.request("POST", path, {"metadata": {"name": "late"}})
        status = _status(got, raw, 403, "Forbidden")
        assert status["details"]["causes"] == [
            {
                "reason": "NamespaceTerminating",
                "message": f"namespace {ns} is being terminated",
                "field": "metadata.namespace",
            }
        ], status
        assert _names(server, path) == ["held"]
    finally:
        server.json("PATCH", f"{path}/held", {"metadata": {"finalizers": None}}, headers=MERGE)
    for name in ("a" * 64, "a.b"):
        got, _, raw = server.request("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
        status = _status(got, raw, 422, "Invalid")
        assert status["details"]["causes"][0]["field"] == "metadata.name", status
    for name in ("default", "kube-system", "kube-public"):
        got, _, raw = server.request("DELETE", f"/api/v1/namespaces/{name}")
        _status(got, raw, 403, "Forbidden")


APPLY = {"Content-Type": "application/apply-patch+yaml"}


def _applied(name: str, **extra: Any) -> bytes:
    return json.dumps(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, **extra}
    ).encode()


def test_server_side_apply_edge_cases(server: Server) -> None:
    """Conflicts without force are 409 naming the owner; force takes the field; an apply of
    another name, kind or apiVersion than the URL's, or without a fieldManager, is refused
    and changes nothing. A value of the wrong type was a 409 (ownership was weighed first):
    400, as the decoder refuses it."""
    path = f"{CM}/ssa"
    code, _, raw = server.request(
        "PATCH", f"{path}?fieldManager=a", _applied("ssa", data={"k": "a"}), APPLY
    )
    assert code == 201, raw
    try:
        before = server.json("GET", path)[1]
        refused = [
            ("?fieldManager=b", _applied("ssa", data={"k": "b"}), 409, "Conflict"),
            ("?fieldManager=b", _applied("ssa", data={"k": 5}), 400, "BadRequest"),
            ("?fieldManager=b", _applied("other", data={"k": "b"}), 400, "BadRequest"),
            ("?fieldManager=b", _applied("ssa").replace(b'"v1"', b'"apps/v1"'), 400, "BadRequest"),
            (
                "?fieldManager=b",
                _applied("ssa").replace(b"ConfigMap", b"Secret"),
                400,
                "BadRequest",
            ),
            ("", _applied("ssa", data={"k": "b"}), 422, "Invalid"),
            ("?fieldManager=", _applied("ssa", data={"k": "b"}), 422, "Invalid"),
            ("?fieldManager=b&force=maybe", _applied("ssa", data={"k": "b"}), 400, "BadRequest"),
        ]
        for query, body, code, reason in refused:
            got, _, raw = server.request("PATCH", path + query, body, APPLY)
            status = _status(got, raw, code, reason)
            if reason == "Conflict":
                assert status["details"]["causes"][0]["field"] == ".data.k", status
                assert 'conflict with "a"' in status["message"], status
            assert server.json("GET", path)[1] == before, query
        code, obj = server.json(
            "PATCH", f"{path}?fieldManager=b&force=true", _applied("ssa", data={"k": "b"}),
            headers=APPLY,
        )  # fmt: skip
        assert code == 200 and obj["data"] == {"k": "b"}, obj
        owners = {
            e["manager"]
            for e in obj["metadata"]["managedFields"]
            if "f:data" in e.get("fieldsV1", {})
        }
        assert owners == {"b"}, obj["metadata"]["managedFields"]
    finally:
        server.request("DELETE", path)


def _raw(server: Server) -> ssl.SSLSocket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=120)  # (hang guard)
    return server.ssl_context().wrap_socket(sock, server_hostname="127.0.0.1")


def _read_response(sock: ssl.SSLSocket) -> tuple[bytes, bytes]:
    """One response's head and its Content-Length body."""
    out = b""
    while b"\r\n\r\n" not in out:
        out += sock.recv(65536)
    head, _, body = out.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: *(\d+)", head)[1])  # type: ignore[index]
    while len(body) < length:
        body += sock.recv(65536)
    return head, body


def _read_to_eof(sock: ssl.SSLSocket) -> bytes:
    out = b""
    while chunk := sock.recv(65536):
        out += chunk
    return out


@pytest.mark.parametrize(
    "framing",
    [b'Transfer-Encoding: chunked\r\n\r\n5\r\n{"met\r\n', b'Content-Length: 100\r\n\r\n{"met'],
    ids=["chunked", "short"],
)
def test_a_body_that_never_ends_times_out(server: Server, framing: bytes) -> None:
    """A chunked body with no last chunk (or fewer bytes than its Content-Length) held its
    connection and task for good; kube-apiserver's request timeout answers 504 Timeout and
    the connection closes. Nothing is stored, others are served meanwhile."""
    before = _names(server, CM)
    with _raw(server) as sock:
        sock.sendall(b"POST " + CM.encode() + b" HTTP/1.1\r\nHost: x\r\n" + JSON_HEADER + framing)
        _serving(server)
        head, body = _read_response(sock)
    assert head.startswith(b"HTTP/1.1 504 "), head
    assert b"Connection: close" in head, head
    status = _status(504, body, 504, "Timeout")
    assert "request did not complete within requested timeout" in status["message"], status
    assert _names(server, CM) == before


def test_pipelined_requests_and_expect_continue(server: Server) -> None:
    """Requests sent back to back on one connection are answered in order; Expect:
    100-continue gets its interim 100 before the body is sent."""
    body = json.dumps({"metadata": {"name": "piped"}}).encode()
    post = b"POST %s HTTP/1.1\r\nHost: x\r\n%sContent-Length: %d\r\n\r\n%s" % (
        CM.encode(),
        JSON_HEADER,
        len(body),
        body,
    )
    get = b"GET %s/piped HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % CM.encode()
    try:
        with _raw(server) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" + post + get)
            out = _read_to_eof(sock)
        codes = re.findall(rb"HTTP/1\.1 (\d{3}) ", out)
        assert codes == [b"200", b"201", b"200"], out
        with _raw(server) as sock:
            body2 = body.replace(b"piped", b"expect")
            sock.sendall(
                b"POST %s HTTP/1.1\r\nHost: x\r\n%sExpect: 100-continue\r\nConnection: close\r\n"
                b"Content-Length: %d\r\n\r\n" % (CM.encode(), JSON_HEADER, len(body2))
            )
            assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
            sock.sendall(body2)
            assert _read_to_eof(sock).startswith(b"HTTP/1.1 201 ")
    finally:
        server.request("DELETE", f"{CM}/piped")
        server.request("DELETE", f"{CM}/expect")


def _fds(server: Server) -> int:
    assert server.proc is not None
    return len(os.listdir(f"/proc/{server.proc.pid}/fd"))


def _trickle_until_closed(socks: list[ssl.SSLSocket]) -> list[bytes]:
    """Send one more byte of a head that never ends on each socket every 0.2 s until the
    server closes them all; what each received (a response would be there)."""
    got = [b""] * len(socks)
    open_ = set(range(len(socks)))
    for _ in range(1000):  # (a hang guard only: 200 s)
        for i in sorted(open_):
            try:
                socks[i].sendall(b"x")
                socks[i].settimeout(0.2 / len(socks))
                data = socks[i].recv(65536)
            except TimeoutError:
                continue
            except OSError:  # reset, or the TLS close seen on the write
                data = b""
            got[i] += data
            if not data:
                open_.discard(i)
        if not open_:
            break
    assert not open_, f"{len(open_)} connections still open"
    return got


def test_a_head_that_trickles_in_is_disconnected(server: Server) -> None:
    """A slowloris: connections that send a request's head a byte at a time (the first
    request's, or a later one's on a kept-alive connection), or nothing at all, held a
    connection and a file descriptor for good (aiohttp has no header timeout). As
    kube-apiserver's ReadHeaderTimeout, the server closes them without a response, serves
    everyone else meanwhile, and keeps no descriptor of theirs."""
    before = _fds(server)
    socks: list[ssl.SSLSocket] = []
    try:
        for _ in range(10):
            sock = _raw(server)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            socks.append(sock)
        kept = _raw(server)  # one request answered, then the next head trickles
        kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        head, body = _read_response(kept)
        assert head.startswith(b"HTTP/1.1 200 ") and body == b"ok", head
        socks.append(kept)
        kept.sendall(b"GET /healthz HTTP/1.1\r\n")
        silent = _raw(server)  # connects and sends nothing
        socks.append(silent)
        assert _fds(server) >= before + 10
        _serving(server)  # served while they trickle
        got = _trickle_until_closed(socks[:-1])
        assert got == [b""] * (len(socks) - 1)
        try:
            assert silent.recv(65536) == b""  # closed long since (120 s: a hang guard)
        except ConnectionResetError:
            pass
        _serving(server)
    finally:
        for sock in socks:
            sock.close()
    for _ in range(600):  # the server sees each close at once; the bound only guards a hang
        if _fds(server) <= before:
            break
        time.sleep(0.1)
    assert _fds(server) <= before


def test_watches_dropped_mid_stream_leave_nothing_behind(server: Server, cm: str) -> None:
    """100 watches opened, read to their first event and dropped (closed with data unread):
    the server closes every one of their sockets (its open file descriptors are as before)
    and serves on. (Measured by hand, 3 rounds of 200: fds 24 -> 223 -> 23 each time, RSS
    levelling off at +14 MB, the allocator's.)"""
    before = _fds(server)
    socks = []
    try:
        for _ in range(100):
            sock = _raw(server)
            socks.append(sock)
            sock.sendall(f"GET {CM}?watch=true HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        for sock in socks:
            assert sock.recv(12) == b"HTTP/1.1 200"
        assert _fds(server) >= before + 90  # (an earlier client's socket may close meanwhile)
    finally:
        for sock in socks:
            sock.close()
    for _ in range(600):  # the server sees each close at once; the bound only guards a hang
        if _fds(server) <= before:
            break
        time.sleep(0.1)
    assert _fds(server) <= before
    _serving(server)


def test_null_for_a_required_field_is_invalid_not_undecodable(server: Server) -> None:
    """Go's decoder takes null as the zero value, which validation then refuses: 422 (not the
    400 of a value of the wrong type; kubectl prints 'The RoleBinding "rb" is invalid')."""
    path = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/rolebindings"
    owner = {"apiVersion": None, "kind": "Pod", "name": "p", "uid": "u"}
    for where, body, field in (
        (path, {"metadata": {"name": "rb"}, "roleRef": None}, "roleRef"),
        (CM, {"metadata": {"name": "nulls", "ownerReferences": [owner]}}, "apiVersion"),
    ):
        before = _names(server, where)
        got, _, raw = server.request("POST", where, body)
        status = _status(got, raw, 422, "Invalid")
        assert field in status["details"]["causes"][0]["field"], status
        assert _names(server, where) == before


@pytest.mark.parametrize(
    "path,kind,body",
    [
        (
            f"/api/v1/namespaces/{NS}/secrets",
            "Secret",
            {"metadata": {"name": "b64-bad"}, "data": {"k": "QUJDRA="}},
        ),
        (
            f"/api/v1/namespaces/{NS}/secrets",
            "Secret",  # an invalid key too: the decoder refuses the body before validation
            {"metadata": {"name": "b64-bad"}, "data": {"k": "QUJD", "bad key": "QUJDRA="}},
        ),
        (
            CM,
            "ConfigMap",
            {"metadata": {"name": "b64-bad"}, "binaryData": {"k": "QUJDRA="}},
        ),
        (
            "/apis/certificates.k8s.io/v1/certificatesigningrequests",
            "CertificateSigningRequest",
            {
                "metadata": {"name": "b64-bad"},
                "spec": {
                    "request": "QUJDRA=",
                    "signerName": "example.com/x",
                    "usages": ["client auth"],
                },
            },
        ),
    ],
    ids=["secret", "secret-invalid-too", "configmap", "csr"],
)
def test_bytes_that_are_not_base64_do_not_decode(
    server: Server, path: str, kind: str, body: dict[str, Any]
) -> None:
    """A []byte field (Secret data, ConfigMap binaryData, a CSR's request) that is not base64:
    Go's JSON decoder refuses the body, a 400 in its words with the offset, before any
    validation (was: 422, "must be base64 encoded", or the CSR's request taken as raw
    bytes)."""
    code, _, raw = server.request("POST", path, body)
    status = _status(code, raw, 400, "BadRequest")
    assert status["message"] == (
        f'{kind} in version "v1" cannot be handled as a {kind}: illegal base64 data at input byte 7'
    )
    code, _, raw = server.request("GET", f"{path}/b64-bad")
    _status(code, raw, 404, "NotFound")
    _serving(server)


_LABEL_RULE = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and"
    " must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex"
    " used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)


@pytest.mark.parametrize(
    "path,body,message",
    [
        (
            "/apis/node.k8s.io/v1/runtimeclasses",
            {"metadata": {"name": "rc-path"}, "handler": "../../bin/sh"},
            'RuntimeClass.node.k8s.io "rc-path" is invalid: handler: Invalid value:'
            f' "../../bin/sh": {_LABEL_RULE}',
        ),
        (
            CM,
            {"metadata": {"name": "Bad_Name"}},
            'ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": a'
            " lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters,"
            " '-' or '.', and must start and end with an alphanumeric character (e.g."
            " 'example.com', regex used for validation is"
            " '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
        ),
        (
            PODS,
            {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "A", "image": "x"}]}},
            f'Pod "p" is invalid: spec.containers[0].name: Invalid value: "A": {_LABEL_RULE}',
        ),
        (
            PODS,
            {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a.b", "image": "x"}]}},
            'Pod "p" is invalid: spec.containers[0].name: Invalid value: "a.b": must not'
            " contain dots",
        ),
        (
            CM,
            {"metadata": {"name": "lbl", "labels": {"a b": "c"}}},
            'ConfigMap "lbl" is invalid: metadata.labels: Invalid value: "a b": name part must'
            " consist of alphanumeric characters, '-', '_' or '.', and must start and end with"
            " an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex"
            " used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
        ),
        (
            "/apis/rbac.authorization.k8s.io/v1/clusterroles",
            {"metadata": {"name": ".."}, "rules": []},
            'ClusterRole.rbac.authorization.k8s.io ".." is invalid: metadata.name: Invalid'
            " value: \"..\": may not be '..'",
        ),
        (
            "/apis/node.k8s.io/v1/runtimeclasses",
            {"metadata": {"name": "rc-none"}},
            'RuntimeClass.node.k8s.io "rc-none" is invalid: handler: Invalid value: "":'
            f" {_LABEL_RULE}",
        ),
        (
            "/apis/certificates.k8s.io/v1/certificatesigningrequests",
            {"metadata": {"name": "no-req"}, "spec": {"signerName": "a.b/c", "usages": ["any"]}},
            'CertificateSigningRequest.certificates.k8s.io "no-req" is invalid: spec.request:'
            " Invalid value: []byte(nil): PEM block type must be CERTIFICATE REQUEST",
        ),
    ],
    ids=[
        "handler",
        "subdomain",
        "label",
        "label-dots",
        "label-key",
        "path-segment",
        "no-handler",
        "no-request",
    ],
)
def test_name_rules_in_kubes_words(
    server: Server, path: str, body: dict[str, Any], message: str
) -> None:
    """The name rules' 422s carry apimachinery's whole RegexError (its examples and regex)
    as kube-apiserver words them: they stopped at the rule (a RuntimeClass's handler that is
    a path, an object's name, a container's name; a label with dots said it broke the rule
    instead of "must not contain dots")."""
    code, _, raw = server.request("POST", path, body)
    status = _status(code, raw, 422, "Invalid")
    assert status["message"] == message
    _serving(server)


def _resources_pod(resources: dict[str, Any]) -> dict[str, Any]:
    return _pod("p", containers=[{"name": "c", "image": "busybox", "resources": resources}])


_R = "spec.containers[0].resources"
_GPU = "example.com/gpu"


@pytest.mark.parametrize(
    "path,body,field,message",
    [
        (
            CM,
            {"metadata": {"name": "key"}, "data": {"a b": "c"}},
            "data[a b]",
            'Invalid value: "a b": a valid config key must consist of alphanumeric characters,'
            " '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for"
            " validation is '[-._a-zA-Z0-9]+')",
        ),
        (
            CM,
            {"metadata": {"name": "dup"}, "data": {"k": "1"}, "binaryData": {"k": "MQ=="}},
            "data[k]",
            'Invalid value: "k": duplicate of key present in binaryData',
        ),
        (
            CM,
            {"metadata": {"name": "lv", "labels": {"app": "-web"}}},
            "metadata.labels",
            'Invalid value: "-web": a valid label must be an empty string or consist of'
            " alphanumeric characters, '-', '_' or '.', and must start and end with an"
            " alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used"
            " for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
        ),
        (
            PODS,
            _resources_pod({"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}),
            f"{_R}.requests",
            'Invalid value: "2": must be less than or equal to cpu limit of 1',
        ),
        (
            PODS,
            _resources_pod({"limits": {"bogus": "1"}}),
            f"{_R}.limits[bogus]",
            'Invalid value: "bogus": must be a standard resource for containers',
        ),
        (
            PODS,
            _resources_pod({"requests": {"memory": "-1Mi"}}),
            f"{_R}.requests[memory]",
            'Invalid value: "-1Mi": must be greater than or equal to 0',
        ),
        (
            PODS,
            _resources_pod({"requests": {"example.com/gpu": "1"}}),
            f"{_R}.limits",
            "Required value: Limit must be set for non overcommitable resources",
        ),
        (
            PODS,
            _resources_pod({"requests": {"example.com/gpu": "1"}, "limits": {_GPU: "2"}}),
            f"{_R}.requests",
            'Invalid value: "1": must be equal to example.com/gpu limit of 2',
        ),
    ],
    ids=["config-key", "binary-duplicate", "label-value", "request-above-limit",
         "resource-name", "negative", "extended-no-limit", "extended-not-equal"],
)  # fmt: skip
def test_map_entries_named_as_kube_names_them(
    server: Server, path: str, body: dict[str, Any], field: str, message: str
) -> None:
    """A map's entry is named with kube's Key (data[a b], limits[bogus]; a label's value and a
    request above its limit at the map itself, as ValidateLabels and ValidateResourceRequirements
    name them), with field.Invalid's value; an extended resource is requested as its limit.
    Was: data.a b, metadata.labels.app, requests.cpu with 'limit of "1"', the extended request
    taken without its limit."""
    code, _, raw = server.request("POST", path, body)
    status = _status(code, raw, 422, "Invalid")
    cause = status["details"]["causes"][0]
    assert (cause["field"], cause["message"]) == (field, message), status
    assert f"is invalid: {field}: {message}" in status["message"], status
    _serving(server)


def _csr_pem() -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "k")])
    key = ec.generate_private_key(ec.SECP256R1())
    req = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    return req.public_bytes(serialization.Encoding.PEM)


def _csr_with_unknown_key() -> bytes:
    """A P-256 CERTIFICATE REQUEST whose key algorithm (id-ecPublicKey, 1.2.840.10045.2.1)
    is made 1.2.840.10045.2.9, which nobody knows."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "k")])
    key = ec.generate_private_key(ec.SECP256R1())
    req = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    der = bytearray(req.public_bytes(serialization.Encoding.DER))
    der[der.index(bytes.fromhex("06072a8648ce3d0201")) + 8] = 0x09
    return (
        b"-----BEGIN CERTIFICATE REQUEST-----\n"
        + base64.encodebytes(bytes(der))
        + b"-----END CERTIFICATE REQUEST-----\n"
    )


def test_a_csr_of_an_unknown_key_algorithm_is_a_422(server: Server) -> None:
    """A CertificateSigningRequest whose key is of an algorithm cryptography cannot load was
    a 500 (UnsupportedAlgorithm out of the validation); kube's CheckSignature refuses it."""
    csrs = "/apis/certificates.k8s.io/v1/certificatesigningrequests"
    body = {
        "metadata": {"name": "unknown-key"},
        "spec": {
            "request": base64.b64encode(_csr_with_unknown_key()).decode(),
            "signerName": "example.com/x",
            "usages": ["client auth"],
        },
    }
    code, _, raw = server.request("POST", csrs, body)
    status = _status(code, raw, 422, "Invalid")
    assert status["message"].startswith(
        'CertificateSigningRequest.certificates.k8s.io "unknown-key" is invalid: spec.request:'
        " Invalid value: []byte{0x2d, "
    ), status
    assert status["message"].endswith(
        "}: x509: cannot verify signature: algorithm unimplemented"
    ), status
    code, _, raw = server.request("GET", f"{csrs}/unknown-key")
    _status(code, raw, 404, "NotFound")
    _serving(server)


@pytest.mark.parametrize("sub", ["approval", "status"])
def test_a_csr_status_that_is_not_an_object(server: Server, sub: str) -> None:
    """A CSR's /approval or /status written with a status that is not an object: a JSON patch
    was a 500 (the strategy took it for a dict), a PUT of a list was taken as an empty status;
    kube's decoder refuses both (the patch's result a 422, the PUT's body a 400)."""
    csrs = "/apis/certificates.k8s.io/v1/certificatesigningrequests"
    name = f"status-{sub}"
    body = {
        "metadata": {"name": name},
        "spec": {
            "request": base64.b64encode(_csr_pem()).decode(),
            "signerName": "example.com/x",
            "usages": ["client auth"],
        },
    }
    code, made = server.json("POST", csrs, body)
    assert code == 201, made
    try:
        patch = json.dumps([{"op": "replace", "path": "/status", "value": "x"}]).encode()
        code, _, raw = server.request(
            "PATCH", f"{csrs}/{name}/{sub}", patch, {"Content-Type": "application/json-patch+json"}
        )
        _status(code, raw, 422, "Invalid")
        code, _, raw = server.request("PUT", f"{csrs}/{name}/{sub}", {**made, "status": []})
        _status(code, raw, 400, "BadRequest")
        assert server.json("GET", f"{csrs}/{name}")[1] == made
    finally:
        server.request("DELETE", f"{csrs}/{name}")
    _serving(server)


@pytest.mark.parametrize("part", ["spec", "metadata"])
def test_a_scale_whose_parts_are_not_objects(server: Server, part: str) -> None:
    """deployments/scale written with a spec or metadata that is not an object was a 500
    ('str' object has no attribute 'get'); kube's decoder refuses the Scale: a PUT's body
    is a 400, a patch's result a 422; the Deployment keeps its replicas."""
    name = f"scale-{part}"
    code, dep = server.json("POST", DEPLOYS, _deployment(name, 1))
    assert code == 201, dep
    try:
        scale = f"{DEPLOYS}/{name}/scale"
        code, body = server.json("GET", scale)
        assert code == 200, body
        got, _, raw = server.request("PUT", scale, {**body, part: "x"})
        status = _status(got, raw, 400, "BadRequest")
        assert status["message"] == (
            f'Scale in version "v1" cannot be handled as a Scale: {part}: must be an object,'
            " not a string"
        )
        got, _, raw = server.request("PATCH", scale, json.dumps({part: "x"}).encode(), MERGE)
        _status(got, raw, 422, "Invalid")
        assert server.json("GET", f"{DEPLOYS}/{name}")[1]["spec"]["replicas"] == 1
    finally:
        server.request("DELETE", f"{DEPLOYS}/{name}")
    _serving(server)


@pytest.mark.parametrize(
    "path,body",
    [
        ("/apis/rbac.authorization.k8s.io/v1/clusterroles", {"rules": []}),
        (
            "/apis/certificates.k8s.io/v1/certificatesigningrequests",
            {"spec": {"signerName": "example.com/x", "usages": ["client auth"]}},
        ),
    ],
    ids=["clusterrole", "csr"],
)
def test_a_path_segment_name_with_nul(server: Server, path: str, body: dict[str, Any]) -> None:
    """A name that only has to be a path segment (RBAC objects, CSRs) holding a NUL was a 500
    (the store's keys are NUL-free text): a 422 naming metadata.name, nothing stored."""
    name = "a\x00b"
    body = {**body, "metadata": {"name": name}}
    if "spec" in body:
        body["spec"] = {**body["spec"], "request": base64.b64encode(_csr_pem()).decode()}
    code, _, raw = server.request("POST", path, body)
    status = _status(code, raw, 422, "Invalid")
    assert status["details"]["causes"][0]["field"] == "metadata.name", status
    assert status["details"]["causes"][0]["message"].endswith("may not contain NUL"), status
    _serving(server)
