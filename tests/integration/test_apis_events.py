"""events.k8s.io/v1 Event on a real ``corral server``: the same objects as core/v1 Events
(one storage), converted both ways; list, watch, create, patch, delete through either group;
field selectors of each; ``kubectl events`` / ``get events.events.k8s.io`` (1.32 and 1.20)
and the Python client's EventsV1Api."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.kubeserver import Kubectl, Server, api_only_server

pytestmark = [pytest.mark.root]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with api_only_server(tmp_path_factory.mktemp("apis-events")) as srv:
        code, body = srv.json("POST", "/api/v1/namespaces", {"metadata": {"name": "evns"}})
        assert code == 201, body
        yield srv


V1 = "/apis/events.k8s.io/v1/namespaces/evns/events"
CORE = "/api/v1/namespaces/evns/events"


def _v1_event(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"name": name},
        "eventTime": "2026-01-01T00:00:00.000000Z",
        "reportingController": "example.com/ctl",
        "reportingInstance": "ctl-1",
        "action": "Sync",
        "reason": "Synced",
        "regarding": {"kind": "Pod", "namespace": "evns", "name": "web", "apiVersion": "v1"},
        "note": "it is in sync",
        "type": "Normal",
        **extra,
    }


def test_created_through_v1_read_through_core(server: Server) -> None:
    code, made = server.json("POST", V1, _v1_event("a"))
    assert code == 201, made
    assert made["apiVersion"] == "events.k8s.io/v1" and made["note"] == "it is in sync"
    assert made["regarding"]["name"] == "web" and made["deprecatedSource"] == {}
    assert made["deprecatedFirstTimestamp"] is None
    code, core = server.json("GET", f"{CORE}/a")
    assert code == 200, core
    assert core["message"] == "it is in sync" and core["involvedObject"]["name"] == "web"
    assert core["reportingComponent"] == "example.com/ctl"
    assert core["eventTime"].startswith("2026-01-01T00:00:00")
    assert core["metadata"]["uid"] == made["metadata"]["uid"]
    code, got = server.json("GET", f"{V1}/a")
    assert code == 200 and got == made
    server.json("DELETE", f"{V1}/a")


def test_created_through_core_read_through_v1(server: Server) -> None:
    body = {
        "metadata": {"name": "b"},
        "involvedObject": {"kind": "Pod", "namespace": "evns", "name": "db"},
        "reason": "Started",
        "message": "started",
        "source": {"component": "kubelet", "host": "n1"},
        "firstTimestamp": "2026-01-01T00:00:00Z",
        "lastTimestamp": "2026-01-01T00:01:00Z",
        "count": 3,
        "type": "Normal",
    }
    code, made = server.json("POST", CORE, body)
    assert code == 201, made
    code, v1 = server.json("GET", f"{V1}/b")
    assert code == 200, v1
    assert v1["deprecatedSource"] == {"component": "kubelet", "host": "n1"}
    assert v1["deprecatedCount"] == 3 and v1["note"] == "started"
    assert v1["deprecatedFirstTimestamp"] == "2026-01-01T00:00:00Z"
    assert v1["eventTime"] is None and v1["regarding"]["name"] == "db"
    assert "message" not in v1 and "involvedObject" not in v1
    # a merge patch through v1 in v1's names; core sees it under its own
    code, _, data = server.request(
        "PATCH",
        f"{V1}/b",
        json.dumps({"note": "restarted", "deprecatedCount": 4}).encode(),
        headers={"Content-Type": "application/merge-patch+json"},
    )
    patched = json.loads(data)
    assert code == 200, patched
    assert patched["note"] == "restarted" and patched["deprecatedCount"] == 4
    code, core = server.json("GET", f"{CORE}/b")
    assert core["message"] == "restarted" and core["count"] == 4
    code, lst = server.json("GET", V1)
    assert lst["kind"] == "EventList" and lst["apiVersion"] == "events.k8s.io/v1"
    assert "b" in [i["metadata"]["name"] for i in lst["items"]]
    code, status = server.json("DELETE", f"{V1}/b")
    assert code == 200, status
    assert server.json("GET", f"{CORE}/b")[0] == 404


def test_strict_validation_of_v1_creates(server: Server) -> None:
    for extra, message in [
        ({"type": "Bad"}, 'type: Invalid value: "": has invalid value: Bad'),
        ({"reportingController": ""}, "reportingController: Required value"),
        ({"action": ""}, "action: Required value"),
        ({"deprecatedCount": 2}, 'count: Invalid value: "": needs to be unset'),
        ({"deprecatedSource": {"component": "x"}}, 'source: Invalid value: "": needs to be unset'),
        (
            {"series": {"count": 1, "lastObservedTime": "2026-01-01T00:00:00.000000Z"}},
            'series.count: Invalid value: "": should be at least 2',
        ),
        ({"note": "x" * 1025}, 'message: Invalid value: "": can have at most 1024 characters'),
    ]:
        code, body = server.json("POST", V1, _v1_event("bad", **extra))
        assert code == 422, (extra, body)
        assert body["message"] == f'Event "bad" is invalid: {message}', body
    code, body = server.json(
        "POST", f"{V1}?fieldValidation=Strict", _v1_event("bad", message="core's name")
    )
    assert code == 400 and 'unknown field "message"' in body["message"], body
    # the legacy rules hold through core too
    code, body = server.json(
        "POST",
        CORE,
        {
            "metadata": {"name": "c"},
            "involvedObject": {"kind": "Pod", "namespace": "other", "name": "x"},
        },
    )
    assert code == 422, body
    assert (
        'involvedObject.namespace: Invalid value: "other": does not match event.namespace'
        in (body["message"])
    )


def test_field_selectors(server: Server) -> None:
    for name, reason, kind in (("s1", "A", "Pod"), ("s2", "B", "Node")):
        ev = _v1_event(name, reason=reason)
        ev["regarding"] = {"kind": kind, "name": "x", "namespace": "evns"}
        assert server.json("POST", V1, ev)[0] == 201
    try:
        for path, selector, want in [
            (V1, "regarding.kind=Node", ["s2"]),
            (V1, "reason=A", ["s1"]),
            (V1, "reportingController=example.com/ctl,reason!=A", ["s2"]),
            (CORE, "involvedObject.kind=Pod", ["s1"]),
            (CORE, "reportingComponent=example.com/ctl,reason=B", ["s2"]),
        ]:
            code, body = server.json("GET", f"{path}?fieldSelector={selector}")
            assert code == 200, body
            assert sorted(i["metadata"]["name"] for i in body["items"]) == want, selector
        code, body = server.json("GET", f"{V1}?fieldSelector=involvedObject.kind=Pod")
        assert code == 400 and body["message"] == "field label not supported: involvedObject.kind"
        code, body = server.json("GET", f"{CORE}?fieldSelector=regarding.kind=Pod")
        assert code == 400, body
    finally:
        for name in ("s1", "s2"):
            server.json("DELETE", f"{V1}/{name}")


def test_watch_through_v1_sees_core_writes(server: Server) -> None:
    code, lst = server.json("GET", V1)
    rv = lst["metadata"]["resourceVersion"]
    core = {
        "metadata": {"name": "w"},
        "involvedObject": {"kind": "Pod", "namespace": "evns", "name": "w"},
        "message": "hello",
        "reason": "R",
    }
    assert server.json("POST", CORE, core)[0] == 201
    assert server.json("DELETE", f"{CORE}/w")[0] == 200
    # the events since rv, replayed from the cache; the watch ends after its timeout
    for path in (V1, CORE):
        code, _, data = server.request(
            "GET", f"{path}?watch=1&resourceVersion={rv}&timeoutSeconds=1"
        )
        assert code == 200
        got = [json.loads(line) for line in data.splitlines() if line.strip()]
        assert [e["type"] for e in got] == ["ADDED", "DELETED"], got
        obj = got[0]["object"]
        if path == V1:
            assert obj["apiVersion"] == "events.k8s.io/v1"
            assert obj["note"] == "hello" and "message" not in obj
        else:
            assert obj["apiVersion"] == "v1" and obj["message"] == "hello"


def test_kubectl(kubectl: Kubectl, server: Server) -> None:
    name = f"k{kubectl.version.replace('.', '')}"
    assert server.json("POST", V1, _v1_event(name))[0] == 201
    try:
        out = kubectl.run("get", "events.events.k8s.io", "-n", "evns", name, "-o", "json").stdout
        got = json.loads(out)
        assert got["apiVersion"] == "events.k8s.io/v1" and got["note"] == "it is in sync"
        lines = kubectl.run("get", "events.v1.events.k8s.io", "-n", "evns").stdout.splitlines()
        assert lines[0].split()[:4] == ["LAST", "SEEN", "TYPE", "REASON"]
        assert any("pod/web" in ln and "it is in sync" in ln for ln in lines[1:]), lines
        # a strategic merge patch (kubectl's default) and a server-side apply through v1
        kubectl.run("patch", "events.events.k8s.io", name, "-n", "evns", "-p", '{"note":"patched"}')
        assert server.json("GET", f"{CORE}/{name}")[1]["message"] == "patched"
        applied = {**_v1_event(name), "note": "applied"}
        applied["metadata"] = {"name": name, "namespace": "evns"}
        kubectl.run(
            "apply", "--server-side", "--force-conflicts", "-f", "-", input=json.dumps(applied)
        )
        assert server.json("GET", f"{CORE}/{name}")[1]["message"] == "applied"
        rows = kubectl.run("api-resources", "--api-group=events.k8s.io").stdout.splitlines()
        assert rows[1].split() == ["events", "ev", "events.k8s.io/v1", "true", "Event"]
        if kubectl.version == "1.32":
            out = kubectl.run("events", "-n", "evns").stdout
            assert "applied" in out and "Pod/web" in out
    finally:
        server.json("DELETE", f"{V1}/{name}")


def test_python_client_events_v1(server: Server) -> None:
    from datetime import UTC, datetime

    from kubernetes import client, config

    api = config.new_client_from_config(str(server.kubeconfig))
    ev1 = client.EventsV1Api(api)
    made = ev1.create_namespaced_event(
        "evns",
        client.EventsV1Event(
            metadata=client.V1ObjectMeta(name="py"),
            event_time=datetime(2026, 1, 1, tzinfo=UTC),
            reporting_controller="example.com/py",
            reporting_instance="py-1",
            action="Test",
            reason="Tested",
            note="from python",
            type="Warning",
            regarding=client.V1ObjectReference(kind="Pod", name="web", namespace="evns"),
        ),
    )
    assert made.note == "from python" and made.regarding.name == "web"
    items = ev1.list_namespaced_event("evns", field_selector="reason=Tested").items
    assert [i.metadata.name for i in items] == ["py"]
    assert [
        i.metadata.name
        for i in ev1.list_event_for_all_namespaces().items
        if i.metadata.name == "py"
    ]
    ev1.patch_namespaced_event("py", "evns", {"note": "patched"})
    assert client.CoreV1Api(api).read_namespaced_event("py", "evns").message == "patched"
    ev1.delete_namespaced_event("py", "evns")


def test_delete_collection_through_v1(server: Server) -> None:
    """As kube's events.k8s.io conformance test: a collection deleted by label selector."""
    for name in ("dc1", "dc2", "dc3"):
        ev = _v1_event(name)
        ev["metadata"]["labels"] = {"set": "a" if name != "dc3" else "b"}
        assert server.json("POST", V1, ev)[0] == 201
    code, body = server.json("DELETE", f"{V1}?labelSelector=set%3Da")
    assert code == 200, body
    assert body["kind"] == "EventList" and body["apiVersion"] == "events.k8s.io/v1"
    assert sorted(i["metadata"]["name"] for i in body["items"]) == ["dc1", "dc2"]
    _, left = server.json("GET", f"{CORE}?labelSelector=set")
    assert [i["metadata"]["name"] for i in left["items"]] == ["dc3"]
    server.json("DELETE", f"{V1}/dc3")
