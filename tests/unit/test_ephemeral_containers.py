"""Ephemeral containers in the API: kubemodel's validateEphemeralContainers and
ValidatePodEphemeralContainersUpdate, and the API server's pods/ephemeralcontainers subresource
(GET, PUT, the three PATCH kinds) over a real SQLite store, with kube 1.32's messages."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

import pytest

import kubemodel
from kubemodel.errors import FieldError
from kubemodel.pod import validate_ephemeral_containers_update

aiohttp = pytest.importorskip("aiohttp")

from orchestrator.apiserver.errors import ApiError  # noqa: E402
from orchestrator.apiserver.policy import cluster_roles  # noqa: E402
from orchestrator.apiserver.resources import by_path  # noqa: E402
from orchestrator.apiserver.storage import Storage  # noqa: E402
from orchestrator.store import open_store  # noqa: E402

DEBUGGER = {"name": "debugger", "image": "busybox", "stdin": True, "tty": True}


def _pod(*ephemeral: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default"},
        "spec": {
            "initContainers": [{"name": "init", "image": "i"}],
            "containers": [{"name": "app", "image": "i"}],
            "volumes": [{"name": "v", "emptyDir": {}}],
            **({"ephemeralContainers": list(ephemeral)} if ephemeral else {}),
            **spec,
        },
    }


def _refused(pod: dict[str, Any]) -> FieldError:
    with pytest.raises(FieldError) as e:
        kubemodel.decode(pod)
    return e.value


def test_ephemeral_container_defaults_as_a_container() -> None:
    out = kubemodel.to_dict(kubemodel.decode(_pod(DEBUGGER)))
    (ec,) = out["spec"]["ephemeralContainers"]
    assert ec["imagePullPolicy"] == "Always"
    assert ec["terminationMessagePath"] == "/dev/termination-log"
    assert ec["terminationMessagePolicy"] == "File"
    assert ec["resources"] == {}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("ports", [{"containerPort": 80}]),
        ("resources", {"limits": {"cpu": "1"}}),
        ("resizePolicy", [{"resourceName": "cpu", "restartPolicy": "NotRequired"}]),
        ("restartPolicy", "Always"),
        ("livenessProbe", {"exec": {"command": ["true"]}}),
        ("readinessProbe", {"tcpSocket": {"port": 80}}),
        ("startupProbe", {"exec": {"command": ["true"]}}),
        ("lifecycle", {"preStop": {"exec": {"command": ["true"]}}}),
    ],
)
def test_fields_an_ephemeral_container_may_not_have(field: str, value: Any) -> None:
    e = _refused(_pod({**DEBUGGER, field: value}))
    assert (e.field, e.message) == (
        f"spec.ephemeralContainers[0].{field}",
        "Forbidden: cannot be set for an Ephemeral Container",
    )


def test_empty_resources_are_not_set() -> None:
    kubemodel.decode(_pod({**DEBUGGER, "resources": {}}))


@pytest.mark.parametrize("key", ["subPath", "subPathExpr"])
def test_subpaths_refused(key: str) -> None:
    mount = {"name": "v", "mountPath": "/v", key: "x"}
    e = _refused(_pod({**DEBUGGER, "volumeMounts": [mount]}))
    assert e.field == f"spec.ephemeralContainers[0].volumeMounts[0].{key}"
    assert e.message == "Forbidden: cannot be set for an Ephemeral Container"


def test_volume_mounts_name_pod_volumes() -> None:
    kubemodel.decode(_pod({**DEBUGGER, "volumeMounts": [{"name": "v", "mountPath": "/v"}]}))
    e = _refused(_pod({**DEBUGGER, "volumeMounts": [{"name": "nope", "mountPath": "/v"}]}))
    assert e.field == "spec.ephemeralContainers[0].volumeMounts[0].name"


@pytest.mark.parametrize("name", ["app", "init", "debugger"])
def test_names_unique_across_all_containers(name: str) -> None:
    e = _refused(
        _pod(DEBUGGER, {**DEBUGGER, "name": name})
        if name == "debugger"
        else _pod({**DEBUGGER, "name": name})
    )
    index = 1 if name == "debugger" else 0
    assert (e.field, e.message) == (
        f"spec.ephemeralContainers[{index}].name",
        f'Duplicate value: "{name}"',
    )


def test_target_names_a_regular_container() -> None:
    for target in ("app", "init"):
        kubemodel.decode(_pod({**DEBUGGER, "targetContainerName": target}))
    e = _refused(_pod(DEBUGGER, {**DEBUGGER, "name": "d2", "targetContainerName": "debugger"}))
    assert (e.field, e.message) == (
        "spec.ephemeralContainers[1].targetContainerName",
        'Not found: "debugger"',
    )


def test_container_fields_validated_as_a_container() -> None:
    e = _refused(_pod({"name": "Bad_Name", "image": "busybox"}))
    assert e.field == "spec.ephemeralContainers[0].name"
    e = _refused(_pod({"name": "d"}))
    assert e.field == "spec.ephemeralContainers[0].image"


def test_update_adds_but_never_changes_or_removes() -> None:
    one = _pod(DEBUGGER)
    two = _pod(DEBUGGER, {"name": "d2", "image": "busybox"})
    validate_ephemeral_containers_update(_pod(), one)
    validate_ephemeral_containers_update(one, two)
    reordered = _pod({"name": "d2", "image": "busybox"}, DEBUGGER)
    validate_ephemeral_containers_update(two, reordered)  # found by name
    with pytest.raises(FieldError) as e:
        validate_ephemeral_containers_update(two, one)
    assert (e.value.field, e.value.message) == (
        "spec.ephemeralContainers",
        'Forbidden: existing ephemeral containers "d2" may not be removed\n',
    )
    changed = _pod({**DEBUGGER, "image": "alpine"})
    with pytest.raises(FieldError) as e:
        validate_ephemeral_containers_update(one, changed)
    assert e.value.message.startswith(
        'Forbidden: existing ephemeral containers "debugger" may not be changed'
    )
    mirror = copy.deepcopy(_pod())
    mirror["metadata"]["annotations"] = {"kubernetes.io/config.mirror": "x"}
    with pytest.raises(FieldError) as e:
        validate_ephemeral_containers_update(mirror, one)
    assert e.value.message == "Forbidden: static pods do not support ephemeral containers"


def test_edit_and_admin_roles_may_add_ephemeral_containers() -> None:
    from orchestrator.apiserver.authz import Attributes, UserInfo, rule_allows

    roles = {r["metadata"]["name"]: r["rules"] for r in cluster_roles()}
    for role, allowed in (("edit", True), ("admin", True), ("view", False)):
        for verb in ("patch", "update"):
            attrs = Attributes(
                UserInfo("u"), verb, True, resource="pods", subresource="ephemeralcontainers"
            )
            got = any(rule_allows(r, attrs) for r in roles[role])
            assert got is allowed, (role, verb)


# ------------------------------------------------------------------ the subresource


def _run(tmp_path: Path, body: Any) -> None:
    async def main() -> None:
        async with open_store(f"sqlite://{tmp_path}/db", compact_interval=0) as store:
            storage = Storage(store)
            await storage.ensure_namespaces()
            try:
                await body(storage)
            finally:
                await storage.close()

    asyncio.run(main())


PODS = by_path("", "v1", "pods")


def test_subresource_adds_and_keeps_the_rest(tmp_path: Path) -> None:
    assert PODS is not None and "ephemeralcontainers" in PODS.subresources

    async def body(s: Storage) -> None:
        pod = await s.create(PODS, "default", _pod())
        # PUT: the whole pod; only spec.ephemeralContainers is taken
        put = copy.deepcopy(pod)
        put["spec"]["ephemeralContainers"] = [DEBUGGER]
        put["spec"]["activeDeadlineSeconds"] = 5  # dropped, not refused
        put["metadata"]["labels"] = {"x": "y"}  # dropped
        put["status"] = {"phase": "Failed"}  # dropped
        got = await s.update(PODS, "default", "p", put, subresource="ephemeralcontainers")
        assert [c["name"] for c in got["spec"]["ephemeralContainers"]] == ["debugger"]
        assert "activeDeadlineSeconds" not in got["spec"]
        assert "labels" not in got["metadata"]
        assert got["status"]["phase"] == "Pending"
        for kind, patch in (
            (
                "strategic",
                {"spec": {"ephemeralContainers": [{"name": "d2", "image": "busybox"}]}},
            ),
            (
                "json",
                [
                    {
                        "op": "add",
                        "path": "/spec/ephemeralContainers/-",
                        "value": {"name": "d3", "image": "busybox"},
                    }
                ],
            ),  # fmt: skip
        ):
            got = await s.patch(
                PODS, "default", "p", kind, patch, subresource="ephemeralcontainers"
            )
        names = [c["name"] for c in got["spec"]["ephemeralContainers"]]
        assert sorted(names) == ["d2", "d3", "debugger"]  # (order: the patch kind's)
        # a merge patch replaces the list: the ones it leaves out are removals
        with pytest.raises(ApiError) as e:
            await s.patch(
                PODS,
                "default",
                "p",
                "merge",
                {"spec": {"ephemeralContainers": [DEBUGGER]}},
                subresource="ephemeralcontainers",
            )
        assert e.value.code == 422
        assert e.value.message == (
            'Pod "p" is invalid: spec.ephemeralContainers: Forbidden: existing ephemeral'
            ' containers "d2" may not be removed\n'
        )
        with pytest.raises(ApiError) as e:
            await s.patch(
                PODS,
                "default",
                "p",
                "strategic",
                {"spec": {"ephemeralContainers": [{"name": "debugger", "image": "alpine"}]}},
                subresource="ephemeralcontainers",
            )
        assert 'existing ephemeral containers "debugger" may not be changed' in e.value.message
        with pytest.raises(ApiError) as e:
            await s.patch(
                PODS,
                "default",
                "p",
                "strategic",
                {
                    "spec": {
                        "ephemeralContainers": [
                            {"name": "d4", "image": "b", "ports": [{"containerPort": 80}]}
                        ]
                    }
                },  # fmt: skip
                subresource="ephemeralcontainers",
            )
        assert e.value.message == (
            'Pod "p" is invalid: spec.ephemeralContainers[0].ports: Forbidden: cannot be set'
            " for an Ephemeral Container"
        )
        with pytest.raises(ApiError) as e:
            await s.patch(
                PODS,
                "default",
                "p",
                "strategic",
                {
                    "spec": {
                        "ephemeralContainers": [
                            {"name": "d4", "image": "b", "targetContainerName": "d2"}
                        ]
                    }
                },  # fmt: skip
                subresource="ephemeralcontainers",
            )
        assert e.value.message == (
            'Pod "p" is invalid: spec.ephemeralContainers[0].targetContainerName: Not found: "d2"'
        )
        # the pod's own update path refuses a change of them, as kube's ValidatePodUpdate
        with pytest.raises(ApiError) as e:
            await s.patch(
                PODS,
                "default",
                "p",
                "strategic",
                {"spec": {"ephemeralContainers": [{"name": "d9", "image": "b"}]}},
            )
        assert e.value.code == 422
        assert "pod updates may not change fields other than" in e.value.message

    _run(tmp_path, body)


def test_create_with_ephemeral_containers_refused(tmp_path: Path) -> None:
    async def body(s: Storage) -> None:
        assert PODS is not None
        with pytest.raises(ApiError) as e:
            await s.create(PODS, "default", _pod(DEBUGGER))
        assert e.value.message == (
            'Pod "p" is invalid: spec.ephemeralContainers: Forbidden: cannot be set on create'
        )

    _run(tmp_path, body)


def test_server_side_apply_to_the_subresource(tmp_path: Path) -> None:
    async def body(s: Storage) -> None:
        assert PODS is not None
        await s.create(PODS, "default", _pod())
        config = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p", "labels": {"dropped": "yes"}},
            "spec": {"ephemeralContainers": [DEBUGGER]},
        }
        got, created = await s.apply(
            PODS, "default", "p", config, manager="debugger", subresource="ephemeralcontainers"
        )
        assert not created
        assert [c["name"] for c in got["spec"]["ephemeralContainers"]] == ["debugger"]
        assert [c["name"] for c in got["spec"]["containers"]] == ["app"]
        assert "labels" not in got["metadata"]
        (entry,) = [e for e in got["metadata"]["managedFields"] if e["manager"] == "debugger"]
        assert entry["subresource"] == "ephemeralcontainers"
        config["spec"]["ephemeralContainers"] = [{**DEBUGGER, "image": "alpine"}]
        with pytest.raises(ApiError) as e:
            await s.apply(
                PODS, "default", "p", config, manager="debugger", subresource="ephemeralcontainers"
            )
        assert 'existing ephemeral containers "debugger" may not be changed' in e.value.message

    _run(tmp_path, body)


def test_discovery_and_openapi_list_the_subresource() -> None:
    from orchestrator.apiserver.discovery import resource_list

    core = resource_list("", "v1")
    assert core is not None
    (entry,) = [r for r in core["resources"] if r["name"] == "pods/ephemeralcontainers"]
    assert (entry["kind"], entry["namespaced"]) == ("Pod", True)
    assert sorted(entry["verbs"]) == ["get", "patch", "update"]
    from orchestrator.apiserver.openapi import build_document
    from orchestrator.apiserver.resources import GROUPS

    doc = build_document("", "v1", GROUPS[""]["v1"])
    ops = doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}/ephemeralcontainers"]
    assert ops["patch"]["operationId"] == "patchCoreV1NamespacedPodEphemeralcontainers"
    assert ops["put"]["operationId"] == "replaceCoreV1NamespacedPodEphemeralcontainers"
