"""``corral server`` over raw HTTPS and the official Python client: bad input, pagination,
resourceVersion semantics of watch, and no acknowledged write lost to kill -9."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.kubeserver import API_ONLY, Server

kubernetes = pytest.importorskip("kubernetes")
from kubernetes import client, config, watch  # noqa: E402
from kubernetes.client.rest import ApiException  # noqa: E402

NS = "api"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("apiserver-api"), extra=API_ONLY)
    srv.start()
    try:
        code, _ = srv.json("POST", "/api/v1/namespaces", {"metadata": {"name": NS}})
        assert code == 201
        yield srv
    finally:
        rc = srv.stop()
    assert rc == 0


@pytest.fixture(scope="module")
def core(server: Server) -> client.CoreV1Api:
    api = config.new_client_from_config(str(server.kubeconfig))
    return client.CoreV1Api(api)


def _names(server: Server, path: str) -> list[str]:
    code, body = server.json("GET", path)
    assert code == 200, body
    return [i["metadata"]["name"] for i in body["items"]]


def _cm(name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


CM_PATH = f"/api/v1/namespaces/{NS}/configmaps"


@pytest.mark.parametrize(
    "body,headers,code,reason,words",
    [
        (b"{" * 10 + b"x", {}, 400, "BadRequest", "not valid JSON"),
        (b"kind: [unclosed", {"Content-Type": "application/yaml"}, 400, "BadRequest", "YAML"),
        (
            b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"deep"},"data":'
            + b'{"a":' * 200
            + b'"x"'
            + b"}" * 200
            + b"}",
            {},
            400,
            "BadRequest",
            "nested deeper",
        ),
        (
            json.dumps(_cm("big", a="x" * (3 * 1024 * 1024 + 10))).encode(),
            {},
            413,
            "RequestEntityTooLarge",
            "too large",
        ),
        (json.dumps(_cm("Not_A_Name")).encode(), {}, 422, "Invalid", "metadata.name"),
        (
            json.dumps({**_cm("wrongkind"), "kind": "Secret"}).encode(),
            {},
            400,
            "BadRequest",
            "does not match",
        ),
        (
            json.dumps(_cm("badkey", **{"a/b": "x"})).encode(),
            {},
            422,
            "Invalid",
            "data",
        ),
    ],
    ids=["json", "yaml", "deep", "oversized", "name", "kind", "bad-key"],
)
def test_bad_input_refused_nothing_stored(
    server: Server, body: bytes, headers: dict[str, str], code: int, reason: str, words: str
) -> None:
    before = _names(server, CM_PATH)
    got, _, raw = server.request("POST", CM_PATH, body, headers)
    status = json.loads(raw)
    assert (got, status["kind"], status["reason"]) == (code, "Status", reason), status
    assert words in status["message"], status
    assert _names(server, CM_PATH) == before
    code2, _, ok = server.request("GET", "/healthz")  # still serving
    assert (code2, ok) == (200, b"ok")


def _post_all_headers(
    server: Server, path: str, body: bytes, ctype: str = "application/json", method: str = "POST"
) -> tuple[int, list[str], Any]:
    """(status, every Warning header, body) of one request."""
    import http.client

    conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=server.ssl_context())
    try:
        conn.request(method, path, body=body, headers={"Content-Type": ctype})
        resp = conn.getresponse()
        return resp.status, resp.headers.get_all("Warning") or [], json.loads(resp.read())
    finally:
        conn.close()


@pytest.mark.parametrize("validation", ["Strict", "Warn", "Ignore", None])
def test_field_validation(server: Server, validation: str | None) -> None:
    """Unknown and duplicated fields: refused (Strict), dropped and reported in Warning
    headers (Warn, the default), dropped silently (Ignore)."""
    name = f"fv-{(validation or 'default').lower()}"
    query = f"?fieldValidation={validation}" if validation else ""
    body = json.dumps({**_cm(name, a="1"), "spec": {"x": 1}}).encode()
    body = body[:-1] + b',"data":{"a":"2"}}'  # "data" twice: the last one wins
    code, warnings, got = _post_all_headers(server, CM_PATH + query, body)
    if validation == "Strict":
        assert (code, got["reason"]) == (400, "BadRequest"), got
        assert got["message"] == (
            'ConfigMap in version "v1" cannot be handled as a ConfigMap: strict decoding error:'
            ' unknown field "spec", duplicate field "data"'
        )
        assert name not in _names(server, CM_PATH)
        return
    assert code == 201, got
    assert "spec" not in got and got["data"] == {"a": "2"}
    if validation == "Ignore":
        assert warnings == []
    else:
        assert warnings == [
            '299 - "unknown field \\"spec\\""',
            '299 - "duplicate field \\"data\\""',
        ]
    code, warnings, got = _post_all_headers(
        server,
        f"{CM_PATH}/{name}{query}",
        b'{"data": {"b": "3"}, "bogus": 1}',
        "application/merge-patch+json",
        "PATCH",
    )
    assert code == 200 and got["data"] == {"a": "2", "b": "3"}, got
    assert len(warnings) == (0 if validation == "Ignore" else 1)
    bad = json.dumps({**_cm(name + "-bad", **{"a/b": "x"}), "extra": 1}).encode()
    code, warnings, got = _post_all_headers(server, CM_PATH + query, bad)
    assert (code, got["reason"]) == (422, "Invalid")  # warnings come with errors too
    assert warnings == ([] if validation == "Ignore" else ['299 - "unknown field \\"extra\\""'])
    code, got = server.json("POST", CM_PATH + "?fieldValidation=Sloppy", _cm(name + "x"))
    assert code == 400 and "fieldValidation" in got["message"]


def test_stale_resource_version_conflicts(server: Server) -> None:
    code, cm = server.json("POST", CM_PATH, _cm("stale", a="1"))
    assert code == 201
    cm["data"]["a"] = "2"
    code, fresh = server.json("PUT", f"{CM_PATH}/stale", cm)
    assert code == 200 and int(fresh["metadata"]["resourceVersion"]) > int(
        cm["metadata"]["resourceVersion"]
    )
    cm["data"]["a"] = "3"  # still the old resourceVersion
    code, status = server.json("PUT", f"{CM_PATH}/stale", cm)
    assert code == 409 and status["reason"] == "Conflict"
    assert "the object has been modified" in status["message"]
    code, live = server.json("GET", f"{CM_PATH}/stale")
    assert live["data"] == {"a": "2"}


def test_pagination_with_continue(server: Server) -> None:
    for i in range(5):
        code, _ = server.json("POST", CM_PATH, _cm(f"page-{i}", i=str(i)))
        assert code == 201
    seen: list[str] = []
    cont = ""
    pages = 0
    rvs = set()
    while True:
        path = f"{CM_PATH}?limit=2&labelSelector=&fieldSelector=" + (
            f"&continue={cont}" if cont else ""
        )
        code, body = server.json("GET", path)
        assert code == 200, body
        pages += 1
        rvs.add(body["metadata"]["resourceVersion"])
        seen += [
            i["metadata"]["name"]
            for i in body["items"]
            if i["metadata"]["name"].startswith("page-")
        ]
        cont = body["metadata"].get("continue", "")
        if not cont:
            break
        assert len(body["items"]) == 2
    assert seen == [f"page-{i}" for i in range(5)]
    assert pages >= 3 and len(rvs) == 1  # every page at the first page's revision
    code, body = server.json("GET", f"{CM_PATH}?fieldSelector=metadata.name%3Dpage-3")
    assert [i["metadata"]["name"] for i in body["items"]] == ["page-3"]
    code, status = server.json("GET", f"{CM_PATH}?fieldSelector=data.i%3D3")
    assert code == 400 and "field label not supported" in status["message"]


def test_watch_from_resource_version_replays_in_order(server: Server) -> None:
    code, cm = server.json("POST", CM_PATH, _cm("w", v="0"))
    start = cm["metadata"]["resourceVersion"]
    for v in range(1, 4):
        code, _ = server.json(
            "PATCH",
            f"{CM_PATH}/w",
            {"data": {"v": str(v)}},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert code == 200
    code, _ = server.json("DELETE", f"{CM_PATH}/w")
    assert code == 200
    code, _, raw = server.request(
        "GET",
        f"{CM_PATH}?watch=true&resourceVersion={start}&fieldSelector=metadata.name%3Dw"
        "&timeoutSeconds=1",
    )
    assert code == 200
    events = [json.loads(ln) for ln in raw.splitlines() if ln.strip()]
    assert [(e["type"], e["object"]["data"]["v"]) for e in events] == [
        ("MODIFIED", "1"),
        ("MODIFIED", "2"),
        ("MODIFIED", "3"),
        ("DELETED", "3"),
    ]
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert rvs == sorted(rvs) and rvs[0] > int(start)


def test_python_client_lists_creates_watches_patches(core: client.CoreV1Api) -> None:
    body = client.V1Pod(
        metadata=client.V1ObjectMeta(name="py", labels={"from": "python"}),
        spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox")]),
    )
    created = core.create_namespaced_pod(NS, body)
    assert created.metadata.uid and created.status.phase == "Pending"
    with pytest.raises(ApiException) as e:
        core.create_namespaced_pod(NS, body)
    assert e.value.status == 409 and json.loads(e.value.body)["reason"] == "AlreadyExists"
    pods = core.list_namespaced_pod(NS, label_selector="from=python")
    assert [p.metadata.name for p in pods.items] == ["py"]

    events: list[tuple[str, str]] = []
    w = watch.Watch()

    def patch_later() -> None:
        core.patch_namespaced_pod("py", NS, {"metadata": {"labels": {"patched": "yes"}}})

    t = threading.Thread(target=patch_later)
    for ev in w.stream(core.list_namespaced_pod, namespace=NS, timeout_seconds=5):
        events.append((ev["type"], ev["object"].metadata.name))
        if ev["type"] == "ADDED":
            t.start()
        if ev["type"] == "MODIFIED":
            assert ev["object"].metadata.labels["patched"] == "yes"
            w.stop()
    t.join()
    assert events == [("ADDED", "py"), ("MODIFIED", "py")]
    core.delete_namespaced_pod("py", NS)
    with pytest.raises(ApiException) as e:
        core.read_namespaced_pod("py", NS)
    assert e.value.status == 404


def test_python_client_new_kinds(server: Server, core: client.CoreV1Api) -> None:
    """RBAC, EndpointSlice and PodDisruptionBudget through the Python client (whose models
    refuse objects that lack a required field), and a pod evicted."""
    api = core.api_client
    rbac = client.RbacAuthorizationV1Api(api)
    rbac.create_namespaced_role(
        NS,
        {
            "metadata": {"name": "py-role"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}],
        },
    )
    rbac.create_cluster_role_binding(
        {
            "metadata": {"name": "py-crb"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "x",
            },
            "subjects": [{"kind": "User", "name": "u", "apiGroup": "rbac.authorization.k8s.io"}],
        }
    )
    assert [r.metadata.name for r in rbac.list_namespaced_role(NS).items] == ["py-role"]
    assert rbac.read_cluster_role_binding("py-crb").subjects[0].name == "u"
    disc = client.DiscoveryV1Api(api)
    disc.create_namespaced_endpoint_slice(
        NS,
        {
            "metadata": {"name": "py-slice"},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.1.0.1"]}],
        },
    )
    assert disc.read_namespaced_endpoint_slice("py-slice", NS).endpoints[0].addresses == [
        "10.1.0.1"
    ]
    policy = client.PolicyV1Api(api)
    policy.create_namespaced_pod_disruption_budget(
        NS, {"metadata": {"name": "py-pdb"}, "spec": {"minAvailable": 1, "selector": {}}}
    )
    pdb = policy.read_namespaced_pod_disruption_budget("py-pdb", NS)
    assert pdb.status.disruptions_allowed == 0 and pdb.metadata.generation == 1
    core.create_namespaced_pod(
        NS,
        {"metadata": {"name": "py-evicted"}, "spec": {"containers": [{"name": "c", "image": "x"}]}},
    )
    core.create_namespaced_pod_eviction(
        "py-evicted", NS, {"metadata": {"name": "py-evicted", "namespace": NS}}
    )
    with pytest.raises(ApiException) as e:
        core.read_namespaced_pod("py-evicted", NS)
    assert e.value.status == 404


def test_namespaces_lifecycle(server: Server, core: client.CoreV1Api) -> None:
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="gone")))
    core.create_namespaced_config_map(
        "gone", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="x"), data={"a": "b"})
    )
    with pytest.raises(ApiException) as e:
        core.delete_namespace("default")
    assert e.value.status == 403
    core.delete_namespace("gone")
    w = watch.Watch()
    for ev in w.stream(
        core.list_namespace, field_selector="metadata.name=gone", timeout_seconds=30
    ):
        if ev["type"] == "DELETED":
            w.stop()
    assert _names(server, "/api/v1/namespaces/gone/configmaps") == []
    with pytest.raises(ApiException) as e:
        core.read_namespace("gone")
    assert e.value.status == 404


def test_kill9_loses_no_acknowledged_write(tmp_path: Path) -> None:
    srv = Server(tmp_path / "k9", extra=API_ONLY)
    srv.start()
    try:
        srv.json("POST", "/api/v1/namespaces", {"metadata": {"name": "w"}})
        acked: list[str] = []
        stop = threading.Event()

        def writer() -> None:
            n = 0
            while not stop.is_set():
                try:
                    code, _ = srv.json(
                        "POST", "/api/v1/namespaces/w/configmaps", _cm(f"c{n}", n=str(n))
                    )
                except OSError:
                    return
                if code == 201:
                    acked.append(f"c{n}")
                n += 1

        t = threading.Thread(target=writer)
        t.start()
        while len(acked) < 50 and t.is_alive():
            threading.Event().wait(0.01)
        srv.kill()  # SIGKILL in the middle of the loop
        stop.set()
        t.join()
        assert len(acked) >= 50
        srv.start()
        names = set(_names(srv, "/api/v1/namespaces/w/configmaps"))
        assert set(acked) <= names, sorted(set(acked) - names)
    finally:
        srv.kill()


def test_watch_sees_every_change_across_a_server_kill9(tmp_path: Path) -> None:
    """The Python client watches one ConfigMap while a write loop changes it; the SQLite
    server is killed (SIGKILL) and started again mid-loop. The client re-watches from the
    last resourceVersion it saw, the writer retries each value until it is acknowledged
    (a write cut by the kill has an unknown outcome; writing the same value again changes
    nothing): the watch sees v = 1..WRITES, each once, in order, with the acknowledged
    resourceVersions."""
    writes, kill_at = 30, 12
    srv = Server(tmp_path / "restart")
    srv.start()
    try:
        code, _ = srv.json("POST", "/api/v1/namespaces", {"metadata": {"name": "r"}})
        assert code == 201
        code, cm = srv.json("POST", "/api/v1/namespaces/r/configmaps", _cm("c", v="0"))
        assert code == 201
        start = cm["metadata"]["resourceVersion"]
        api = client.CoreV1Api(config.new_client_from_config(str(srv.kubeconfig)))
        seen: list[tuple[str, str, str]] = []  # (type, resourceVersion, v)
        rewatches = 0
        stop = threading.Event()

        def watcher() -> None:
            nonlocal rewatches
            rv = start
            while not stop.is_set():
                try:
                    for ev in watch.Watch().stream(
                        api.list_namespaced_config_map,
                        "r",
                        field_selector="metadata.name=c",
                        resource_version=rv,
                        timeout_seconds=5,
                        _request_timeout=10,
                    ):
                        obj = ev["object"]
                        rv = obj.metadata.resource_version
                        seen.append((ev["type"], rv, obj.data["v"]))
                        if obj.data["v"] == str(writes):
                            return
                except Exception:  # the server went away: watch again from rv
                    rewatches += 1
                    stop.wait(0.2)

        t = threading.Thread(target=watcher, daemon=True)
        t.start()
        acked: dict[str, str] = {}
        deadline = time.monotonic() + 120
        for v in range(1, writes + 1):
            if v == kill_at + 1:
                srv.kill()
                srv.start()
            while True:
                assert time.monotonic() < deadline, f"not acknowledged: {sorted(acked)}"
                try:
                    code, body = srv.json(
                        "PATCH",
                        "/api/v1/namespaces/r/configmaps/c",
                        {"data": {"v": str(v)}},
                        headers={"Content-Type": "application/merge-patch+json"},
                    )
                except OSError:
                    code = 0
                if code == 200:
                    acked[str(v)] = body["metadata"]["resourceVersion"]
                    break
                time.sleep(0.1)
        t.join(60)
        stop.set()
        assert not t.is_alive(), f"the watch stopped at {seen[-3:]}"
    finally:
        srv.kill()
    assert rewatches >= 1  # the kill did break the watch
    assert [s[0] for s in seen] == ["MODIFIED"] * writes, seen
    assert [s[2] for s in seen] == [str(v) for v in range(1, writes + 1)], seen
    rvs = [int(s[1]) for s in seen]
    assert rvs == sorted(set(rvs)) and rvs[0] > int(start)
    assert {s[2]: s[1] for s in seen} == acked


def _stream_watch(server: Server, path: str, out: list[tuple[str, str, int]]) -> None:
    """Read one watch's events into ``out`` until the end marker: x0 annotated ``end``."""
    conn = http.client.HTTPSConnection(
        "127.0.0.1", server.port, context=server.ssl_context(), timeout=60
    )
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        assert resp.status == 200, resp.read()
        while line := resp.readline():
            if not line.strip():
                continue
            ev = json.loads(line)
            meta = ev["object"]["metadata"]
            out.append((ev["type"], meta["name"], int(meta["resourceVersion"])))
            if "end" in meta.get("annotations", {}):
                return
    finally:
        conn.close()


def test_many_watchers_see_a_burst_exactly_as_a_replay(server: Server) -> None:
    """Thirty live watches (all objects, a label selector, a field selector) through a burst
    of concurrent writes from four clients: each sees exactly the events that a watch started
    afterwards from the same resourceVersion replays, in order. Live events are written
    straight to a parked watch's connection or queued while it is busy; the replay comes from
    the cache's window: both must agree event for event."""
    ns = "burst"
    code, _ = server.json("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
    assert code == 201
    path = f"/api/v1/namespaces/{ns}/configmaps"
    merge = {"Content-Type": "application/merge-patch+json"}
    code, listed = server.json("GET", path)
    start = listed["metadata"]["resourceVersion"]
    selectors = ["", "&labelSelector=team%3Da", "&fieldSelector=metadata.name%3Dx0"]

    def burst(worker: int) -> None:
        for i in range(worker, 24, 4):
            name = f"x{i}"
            cm = {"metadata": {"name": name, "labels": {"team": "ab"[i % 2]}}, "data": {"v": "0"}}
            assert server.json("POST", path, cm)[0] == 201
            for team in ("b", "a", "b"):  # enters and leaves the team=a selector
                patch = {"metadata": {"labels": {"team": team}}}
                assert server.json("PATCH", f"{path}/{name}", patch, headers=merge)[0] == 200
            if i:
                assert server.json("DELETE", f"{path}/{name}")[0] == 200

    # The live watches start from ``start``: what they miss while connecting is replayed
    # from the window, the rest comes live.
    live = [(selectors[k % 3], []) for k in range(30)]  # type: list[tuple[str, list[Any]]]
    readers = [
        threading.Thread(
            target=_stream_watch, args=(server, f"{path}?watch=1&resourceVersion={start}{sel}", out)
        )
        for sel, out in live
    ]
    writers = [threading.Thread(target=burst, args=(w,)) for w in range(4)]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join()
    end = {"metadata": {"labels": {"team": "a"}, "annotations": {"end": "yes"}}}
    assert server.json("PATCH", f"{path}/x0", end, headers=merge)[0] == 200  # matches all
    for t in readers:
        t.join(60)
        assert not t.is_alive()
    for sel, out in live:
        replay: list[tuple[str, str, int]] = []
        _stream_watch(server, f"{path}?watch=1&resourceVersion={start}{sel}", replay)
        assert out == replay, sel
    # All: 24 creates, 60 label patches (the 12 that start as b make no event with their
    # first), 23 deletes, the marker; team=a: 4 events for each object made as a, 2 for
    # each made as b, the marker; name=x0: its create, 3 patches, the marker.
    assert [len(out) for _, out in live[:3]] == [108, 12 * 4 + 12 * 2 + 1, 5]
