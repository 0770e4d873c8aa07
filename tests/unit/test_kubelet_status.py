"""The kubelet's pieces that need no node: the pod status it reports from what the runtime
says, the join token, taints, the manifest it hands the runtime."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.kubelet.config import parse_taint
from orchestrator.kubelet.join import JoinError, parse_token
from orchestrator.kubelet.pods import _same_but_status, node_manifest
from orchestrator.kubelet.podstatus import api_status, waiting_status
from orchestrator.kubelet.volumes import PreparedVolumes, VolumeError, volume_files
from runtime.pod.api import ContainerStatus, PodStatus

UID = "0b5e0f6a-1111-2222-3333-444455556666"


def pod(**status: object) -> dict:
    return {
        "metadata": {"name": "web", "namespace": "default", "uid": UID},
        "spec": {"nodeName": "n", "containers": [{"name": "app", "image": "img:1"}]},
        "status": status,
    }


def runtime_status(**c: object) -> PodStatus:
    cs = ContainerStatus("app", "app", "img:1", image_id="sha256:abc", **c)  # type: ignore[arg-type]
    return PodStatus(
        uid=UID,
        name="web",
        namespace="default",
        location="run",
        phase="Running",
        qos_class="BestEffort",
        pod_ip="10.42.0.5",
        host_network=False,
        created=0.0,
        started_at="2026-12-03T01:02:03.123456789Z",
        containers=[cs],
    )


def test_a_running_ready_pod() -> None:
    st = runtime_status(
        state="Running",
        ready=True,
        started_at="2026-12-03T01:02:04.5Z",
        container_id=f"corral://{UID}/app/0",
    )
    out = api_status(pod(), st, "192.0.2.1", stamp="2026-12-03T01:02:05Z")
    assert out["phase"] == "Running"
    assert out["podIP"] == "10.42.0.5" and out["podIPs"] == [{"ip": "10.42.0.5"}]
    assert out["hostIP"] == "192.0.2.1" and out["hostIPs"] == [{"ip": "192.0.2.1"}]
    assert out["qosClass"] == "BestEffort"
    assert out["startTime"] == "2026-12-03T01:02:03Z"
    conds = {c["type"]: c["status"] for c in out["conditions"]}
    assert conds == {
        "PodReadyToStartContainers": "True",
        "Initialized": "True",
        "Ready": "True",
        "ContainersReady": "True",
        "PodScheduled": "True",
    }
    (cs,) = out["containerStatuses"]
    assert cs["state"] == {"running": {"startedAt": "2026-12-03T01:02:04Z"}}
    assert cs["ready"] and cs["started"] and cs["lastState"] == {}
    assert cs["imageID"] == "sha256:abc" and cs["containerID"] == f"corral://{UID}/app/0"


def test_a_transition_time_is_kept_while_the_condition_holds() -> None:
    st = runtime_status(state="Running", ready=True)
    first = api_status(pod(), st, "h", stamp="2026-12-03T01:00:00Z")
    again = api_status(pod(**first), st, "h", stamp="2026-12-03T02:00:00Z")
    assert again["conditions"] == first["conditions"]
    st.containers[0].ready = False
    later = api_status(pod(**again), st, "h", stamp="2026-12-03T03:00:00Z")
    times = {c["type"]: c["lastTransitionTime"] for c in later["conditions"]}
    assert times["Ready"] == "2026-12-03T03:00:00Z"
    assert times["PodScheduled"] == "2026-12-03T01:00:00Z"
    assert [c.get("reason") for c in later["conditions"] if c["type"] == "Ready"] == [
        "ContainersNotReady"
    ]


def test_a_restarted_container_reports_its_last_state() -> None:
    st = runtime_status(
        state="Waiting",
        reason="CrashLoopBackOff",
        message="back-off 10s",
        restart_count=2,
        last_reason="Error",
        last_exit_code=3,
        last_started_at="2026-12-03T01:00:00Z",
        last_finished_at="2026-12-03T01:00:01Z",
    )
    (cs,) = api_status(pod(), st, "h")["containerStatuses"]
    assert cs["state"] == {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s"}}
    assert cs["restartCount"] == 2 and not cs["started"]
    last = cs["lastState"]["terminated"]
    assert last["exitCode"] == 3 and last["reason"] == "Error"
    assert last["containerID"] == f"corral://{UID}/app/1"


def test_a_finished_pod_is_not_ready() -> None:
    st = runtime_status(state="Terminated", exit_code=0, reason="Completed")
    st.phase, st.location = "Succeeded", "exited"
    out = api_status(pod(), st, "h")
    conds = {c["type"]: (c["status"], c.get("reason")) for c in out["conditions"]}
    assert conds["Ready"] == ("False", "PodCompleted")
    assert conds["PodReadyToStartContainers"][0] == "False"
    assert out["containerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"


def test_waiting_status_names_the_reason() -> None:
    out = waiting_status(pod(), "h", "ErrImagePull", "no such image")
    assert out["phase"] == "Pending"
    (cs,) = out["containerStatuses"]
    assert cs["state"] == {"waiting": {"reason": "ErrImagePull", "message": "no such image"}}
    assert cs["image"] == "img:1" and not cs["ready"]


def test_join_tokens() -> None:
    full = "K10" + "ab" * 32 + "::server:s3cret"
    tok = parse_token(full)
    assert tok.ca_hash == "ab" * 32 and tok.secret == "s3cret" and tok.text == full
    bare = parse_token("just-a-secret")
    assert bare.ca_hash is None and bare.text == "just-a-secret"
    for bad in ("", "K10abc::server:x", "K10" + "ab" * 32 + "::server:"):
        with pytest.raises(JoinError):
            parse_token(bad)


def test_taints() -> None:
    assert parse_taint("dedicated=gpu:NoSchedule") == {
        "key": "dedicated",
        "value": "gpu",
        "effect": "NoSchedule",
    }
    assert parse_taint("k:NoExecute") == {"key": "k", "effect": "NoExecute"}
    for bad in ("k=v", "k=v:Sometimes", "=v:NoSchedule"):
        with pytest.raises(ValueError):
            parse_taint(bad)


def test_the_runtime_gets_the_pod_without_the_schedulers_fields() -> None:
    p = pod()
    p["metadata"]["resourceVersion"] = "7"
    p["metadata"]["ownerReferences"] = [{"kind": "ReplicaSet"}]
    p["spec"].update(tolerations=[{"key": "k"}], schedulerName="s", priority=0)
    p["spec"]["volumes"] = [
        {"name": "v", "downwardAPI": {"items": []}},
        {"name": "e", "emptyDir": {}},
    ]
    cm = {"name": "v", "configMap": {"name": "v.volume.corral", "items": []}}
    m = node_manifest(
        p, PreparedVolumes({"v": cm}, {"configmap.corral.io/v.volume.corral": "/x"}, {})
    )
    assert set(m["metadata"]) == {"name", "namespace", "uid", "annotations"}
    assert m["metadata"]["annotations"] == {"configmap.corral.io/v.volume.corral": "/x"}
    assert set(m["spec"]) == {"containers", "volumes"}
    assert m["spec"]["volumes"] == [cm, {"name": "e", "emptyDir": {}}]
    assert "status" not in m


def test_only_a_status_change_is_not_the_workers_business() -> None:
    a = pod(phase="Pending")
    b = pod(phase="Running")
    b["metadata"]["resourceVersion"] = "9"
    assert _same_but_status(a, b)
    c = pod()
    c["metadata"]["deletionTimestamp"] = "2026-12-03T00:00:00Z"
    assert not _same_but_status(a, c)


def test_volume_files_as_the_kubelet_decides_them() -> None:
    p = pod()
    p["metadata"]["labels"] = {"b": "2", "a": 'say "hi"'}
    cm = {"data": {"x": "1", "y": "2"}}
    sec = {"data": {"pw": "czNjcmV0"}}

    def lookup(kind: str, ns: str, name: str) -> dict | None:
        return {"configmap/cfg": cm, "secret/sec": sec}.get(f"{kind}/{name}")

    files, secret = volume_files(lookup, p, {"name": "v", "configMap": {"name": "cfg"}})
    assert [(f.path, f.data, f.mode) for f in files] == [("x", b"1", 0o644), ("y", b"2", 0o644)]
    assert not secret
    v = {
        "name": "v",
        "configMap": {
            "name": "cfg",
            "defaultMode": 0o600,
            "items": [{"key": "y", "path": "d/why"}, {"key": "x", "path": "ex", "mode": 0o400}],
        },
    }
    files, _ = volume_files(lookup, p, v)
    assert [(f.path, f.mode) for f in files] == [("d/why", 0o600), ("ex", 0o400)]
    v = {
        "name": "v",
        "projected": {
            "sources": [
                {"secret": {"name": "sec"}},
                {
                    "downwardAPI": {
                        "items": [
                            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                            {"path": "n", "fieldRef": {"fieldPath": "metadata.name"}},
                        ]
                    }
                },
                {"configMap": {"name": "missing", "optional": True}},
            ]
        },
    }
    files, secret = volume_files(lookup, p, v)
    assert secret
    got = {f.path: f.data for f in files}
    assert got == {"pw": b"s3cret", "labels": b'a="say \\"hi\\""\nb="2"', "n": b"web"}
    with pytest.raises(VolumeError, match="not found"):
        volume_files(lookup, p, {"name": "v", "configMap": {"name": "nope"}})
    with pytest.raises(VolumeError, match="no key"):
        volume_files(
            lookup,
            p,
            {"name": "v", "configMap": {"name": "cfg", "items": [{"key": "z", "path": "z"}]}},
        )
    tok = {"name": "v", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}
    with pytest.raises(VolumeError, match="volume 'v': no ServiceAccount token"):
        volume_files(lookup, p, tok)
    files, secret = volume_files(lookup, p, tok, {("", 3600): "jwt", ("api", 3600): "other"})
    assert secret and [(f.path, f.data, f.mode) for f in files] == [("token", b"jwt", 0o644)]
    short = {"serviceAccountToken": {"path": "t", "expirationSeconds": 599}}
    with pytest.raises(VolumeError, match="at least 600"):
        volume_files(lookup, p, {"name": "v", "projected": {"sources": [short]}}, {})


class TokenApi:
    """The API's side of TokenRequest for the token cache: each answer a new token, lasting
    what was asked; ``refuse`` makes the next requests fail."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict]] = []
        self.refuse = False

    async def create(self, res: object, ns: str, body: dict, sub: str = "", name: str = "") -> dict:
        from datetime import UTC, datetime

        from orchestrator.client import ClientError

        assert sub == "token"
        self.requests.append((ns, name, body))
        if self.refuse:
            raise ClientError(404, "NotFound", f'serviceaccounts "{name}" not found')
        exp = datetime.fromtimestamp(NOW[0] + body["spec"]["expirationSeconds"], UTC)
        return {
            "status": {
                "token": f"t{len(self.requests)}",
                "expirationTimestamp": exp.strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        }


NOW = [1_800_000_000.0]


def test_the_token_cache_renews_at_80_percent_and_keeps_a_valid_token_on_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    from orchestrator.kubelet import pods as pods_mod

    monkeypatch.setattr(pods_mod.time, "time", lambda: NOW[0])
    api_ = TokenApi()
    pm = pods_mod.PodManager(api_, None, "n", lambda: "", None, tmp_path)  # type: ignore[arg-type]
    p = pod()
    p["spec"]["serviceAccountName"] = "robot"
    p["spec"]["volumes"] = [
        {"name": "a", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}},
        {
            "name": "b",
            "projected": {
                "sources": [
                    {"serviceAccountToken": {"path": "t", "audience": "vault",
                                             "expirationSeconds": 1000}},
                    {"serviceAccountToken": {"path": "again"}},
                ]
            },
        },
    ]  # fmt: skip

    async def body() -> None:
        got = await pm._pod_tokens(p)
        assert got == {("", 3600): "t1", ("vault", 1000): "t2"}
        assert [(ns, n, b["spec"]) for ns, n, b in api_.requests] == [
            ("default", "robot", {
                "audiences": [], "expirationSeconds": 3600,
                "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": "web", "uid": UID},
            }),
            ("default", "robot", {
                "audiences": ["vault"], "expirationSeconds": 1000,
                "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": "web", "uid": UID},
            }),
        ]  # fmt: skip
        assert pm._token_due(UID) == 800.0  # the sooner of the two: 80% of 1000 s
        NOW[0] += 799
        assert await pm._pod_tokens(p) == got and len(api_.requests) == 2  # from the cache
        NOW[0] += 2  # past 80% of the short one's life
        assert await pm._pod_tokens(p) == {("", 3600): "t1", ("vault", 1000): "t3"}
        api_.refuse = True
        NOW[0] += 900  # the short one due, not yet expired: it serves on
        assert await pm._pod_tokens(p) == {("", 3600): "t1", ("vault", 1000): "t3"}
        NOW[0] += 200  # now expired
        with pytest.raises(VolumeError, match="volume 'b': token of ServiceAccount "):
            await pm._pod_tokens(p)
        assert len(api_.requests) == 5

    try:
        asyncio.run(body())
    finally:
        pm._pool.shutdown()
