"""Hostile pod specs through the real API server and a real agent (tests.integration.
test_kubelet's server + agent): what kube-apiserver refuses is refused with its 422 and field
path; what it lets through (it does not parse image names, it allows any symlink a container
makes in its volume) the node refuses by itself, saying why, and nothing of the host reaches
a container."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from testkit.imagebuild import config_for, docker_files, tar_tree, write_tar
from tests.integration.test_kubelet import Cluster, cluster_context, manifest, until

pytestmark = pytest.mark.root

HOST_MARK = "corral-hostile-host-mark"


@pytest.fixture(scope="module")
def cluster(rootfs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with cluster_context(rootfs, tmp_path_factory.mktemp("hostile")) as c:
        yield c


def waiting(cluster: Cluster, name: str) -> Any:
    statuses = (cluster.pod(name).get("status") or {}).get("containerStatuses") or [{}]
    return (statuses[0].get("state") or {}).get("waiting") or {}


def wait_reason(cluster: Cluster, name: str, reason: str) -> str:
    """The message of the app container's waiting ``reason``, once it is there."""
    try:
        until(f"{name} {reason}", lambda: waiting(cluster, name).get("reason") == reason)
    except AssertionError:
        status = json.dumps(cluster.pod(name).get("status"))
        raise AssertionError(
            f"{name}: {status}\nagent log: {cluster.agent.log.read_text()[-3000:]}"
        ) from None
    return str(waiting(cluster, name).get("message"))


# ============================================================================= the API


@pytest.mark.parametrize(
    ("container", "volumes", "field", "message"),
    [
        (
            {"volumeMounts": [{"name": "v", "mountPath": "/m", "subPath": "../x"}]},
            [{"name": "v", "emptyDir": {}}],
            "spec.containers[0].volumeMounts[0].subPath",
            "Invalid value: \"../x\": must not contain '..'",
        ),
        (
            {"volumeMounts": [{"name": "v", "mountPath": "/m"}]},
            [{"name": "v", "downwardAPI": {"items": [
                {"path": "../x", "fieldRef": {"fieldPath": "metadata.name"}}]}}],
            "spec.volumes[0].downwardAPI.path",
            "Invalid value: \"../x\": must not contain '..'",
        ),
        (
            {"volumeMounts": [{"name": "v", "mountPath": "/m"}]},
            [{"name": "v", "projected": {"sources": [
                {"secret": {"name": "s", "items": [{"key": "k", "path": "..data/x"}]}}]}}],
            "spec.volumes[0].projected.sources[0].secret.items[0].path",
            "Invalid value: \"..data/x\": must not start with '..'",
        ),
        (
            {"env": [{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "spec.bogus"}}}]},
            [],
            "spec.containers[0].env[0].valueFrom.fieldRef.fieldPath",
            'Unsupported value: "spec.bogus"',
        ),
    ],
    ids=["subPath", "downwardAPI", "projected-..data", "fieldRef"],
)  # fmt: skip
def test_the_api_refuses_with_422_and_the_field(
    cluster: Cluster, container: dict[str, Any], volumes: list[Any], field: str, message: str
) -> None:
    m = manifest("hostile-api", volumes=volumes)
    m["spec"]["containers"][0].update(container)
    code, body = cluster.server.json("POST", "/api/v1/namespaces/default/pods", m)
    assert code == 422, body
    assert body["reason"] == "Invalid"
    assert body["message"].startswith(f'Pod "hostile-api" is invalid: {field}: {message}'), body
    cause = body["details"]["causes"][0]
    assert cause["field"] == field and cause["message"].startswith(message), cause
    p = cluster.kubectl().run("apply", "-f", "-", input=json.dumps(m), check=False)
    assert p.returncode != 0
    assert f'The Pod "hostile-api" is invalid: {field}: {message}' in p.stderr, p.stderr


def test_a_configmap_with_a_key_of_the_atomic_writer_is_refused(cluster: Cluster) -> None:
    cm = {"metadata": {"name": "dots"}, "data": {"..data": "x"}}
    code, body = cluster.server.json("POST", "/api/v1/namespaces/default/configmaps", cm)
    assert code == 422, body
    assert body["details"]["causes"][0]["field"] == "data[..data]", body
    assert "must not start with '..'" in body["message"]


def test_config_data_over_one_mebibyte_is_refused(cluster: Cluster) -> None:
    """kube-apiserver's MaxSecretSize, for ConfigMaps too: a node writes the data into every
    pod that mounts it."""
    big = {"metadata": {"name": "big"}, "data": {"a": "x" * (1024 * 1024 + 1)}}
    code, body = cluster.server.json("POST", "/api/v1/namespaces/default/configmaps", big)
    assert code == 422, body
    assert body["message"] == (
        'ConfigMap "big" is invalid: []: Too long: may not be more than 1048576 bytes'
    )
    assert body["details"]["causes"][0]["reason"] == "FieldValueTooLong"


def test_logs_exec_attach_of_a_container_the_pod_does_not_have(cluster: Cluster) -> None:
    m = manifest("hostile-logs")
    code, body = cluster.server.json("POST", "/api/v1/namespaces/default/pods", m)
    assert code == 201, body
    try:
        cluster.wait_running("hostile-logs")
        base = "/api/v1/namespaces/default/pods/hostile-logs"
        for asked in ("../app", "app/../../x", "/etc/passwd"):
            container = quote(asked, safe="")
            for method, sub in (
                ("GET", f"log?container={container}"),
                ("POST", f"exec?container={container}&command=true&stdout=1"),
                ("POST", f"attach?container={container}&stdout=1"),
            ):
                code, body = cluster.server.json(method, f"{base}/{sub}")
                assert code == 400, (sub, body)
                assert body["message"] == f"container {asked} is not valid for pod hostile-logs"
    finally:
        cluster.server.json("DELETE", "/api/v1/namespaces/default/pods/hostile-logs")


# ============================================================================= the node


def test_an_image_named_by_a_host_path_is_not_imported(
    cluster: Cluster, tmp_path: Path, rootfs: Path
) -> None:
    """kube-apiserver does not parse ``image``; the kubelet says InvalidImageName for what
    is no image reference. A path (``corral pod run`` takes image tarballs by path: a local
    manifest's author owns the host) must never make the node import a file of its own host:
    not an absolute one, not one relative to the agent's directory that reads as a valid
    reference (``dir/name.tar``)."""
    tag = f"hostile-{uuid.uuid4().hex[:8]}:latest"
    layer = tar_tree(rootfs)
    files, _ = docker_files([layer], config_for([layer], Cmd=["sh"]), repo_tags=[tag])
    near = Path.cwd() / f"hostile-{uuid.uuid4().hex[:8]}"  # the agent's working directory
    near.mkdir()
    try:
        write_tar(near / "host-only.tar", files)
        write_tar(tmp_path / "host-only.tar", files)
        names = {
            "rel": f"{near.name}/host-only.tar",
            "abs": str(tmp_path / "host-only.tar"),
            "ctl": "corral-test:la\ttest",  # no image name has a control character
            "nul": "corral-test\x00:latest",
        }
        for key, image in names.items():
            m = manifest(f"hostile-image-{key}")
            m["spec"]["containers"][0]["image"] = image
            code, body = cluster.server.json("POST", "/api/v1/namespaces/default/pods", m)
            assert code == 201, body  # as kube-apiserver: the node says no
        try:
            for key, image in names.items():
                name = f"hostile-image-{key}"
                message = wait_reason(cluster, name, "InvalidImageName")
                assert f'couldn\'t parse image name "{image}"' in message, message
                assert cluster.pod(name)["status"]["phase"] == "Pending"
            assert not [p for p in cluster.runtime_pods() if p.name.startswith("hostile-image")]
            from runtime.pod import api

            assert api.image_id(tag, cluster.opts) is None
        finally:
            for key in names:
                cluster.server.json(
                    "DELETE", f"/api/v1/namespaces/default/pods/hostile-image-{key}"
                )
    finally:
        shutil.rmtree(near)


def test_a_relative_working_dir_is_refused_by_the_node(cluster: Cluster) -> None:
    """kube-apiserver does not check workingDir; the node refuses a relative one (the
    container's cwd would be wherever the runtime stands) before making anything."""
    m = manifest("hostile-cwd")
    m["spec"]["containers"][0]["workingDir"] = "../../.."
    code, body = cluster.server.json("POST", "/api/v1/namespaces/default/pods", m)
    assert code == 201, body
    try:
        message = wait_reason(cluster, "hostile-cwd", "CreateContainerConfigError")
        assert 'spec.containers[0].workingDir: must be an absolute path, not "../../.."' in message
        assert not [p for p in cluster.runtime_pods() if p.name == "hostile-cwd"]
    finally:
        cluster.server.json("DELETE", "/api/v1/namespaces/default/pods/hostile-cwd")


def test_a_symlink_planted_in_the_volume_is_not_followed_out_of_it(
    cluster: Cluster, tmp_path: Path
) -> None:
    """CVE-2017-1002101 through the API: an init container plants ``esc -> /`` (and a
    relative ``../../..`` chain) in an emptyDir; the app mounts them as subPaths. The node
    refuses to start it (StartError naming the volume and subPath, then the restart back-off:
    each restart resolves it again); no host file is seen."""
    mark = tmp_path / HOST_MARK
    mark.write_text("host only\n")
    for link, target in (("abs", "/"), ("rel", "../../../../../../../../..")):
        name = f"hostile-subpath-{link}"
        m = manifest(
            name,
            "ls /escaped; cat /escaped" + str(mark) + "; sleep 3600",
            volumes=[{"name": "v", "emptyDir": {}}],
        )
        m["spec"]["initContainers"] = [{
            "name": "plant",
            "image": "corral-test:latest",
            "command": ["sh", "-c", f"ln -s {target} /v/esc"],
            "volumeMounts": [{"name": "v", "mountPath": "/v"}],
        }]  # fmt: skip
        m["spec"]["containers"][0]["volumeMounts"] = [
            {"name": "v", "mountPath": "/escaped", "subPath": "esc"}
        ]
        code, body = cluster.server.json("POST", "/api/v1/namespaces/default/pods", m)
        assert code == 201, body
    try:
        for link in ("abs", "rel"):
            name = f"hostile-subpath-{link}"

            def refused(name: str = name) -> str:
                statuses = (cluster.pod(name).get("status") or {}).get("containerStatuses")
                last = ((statuses or [{}])[0].get("lastState") or {}).get("terminated") or {}
                return str(last.get("message", "")) if last.get("reason") == "StartError" else ""

            message = until(f"{name} refused to start", refused)
            assert "volume 'v' subPath 'esc': resolves outside the volume" in message, message
            assert (cluster.pod(name)["status"]["containerStatuses"][0].get("started")) is False
            _code, _headers, logs = cluster.server.request(
                "GET", f"/api/v1/namespaces/default/pods/{name}/log?container=app"
            )
            assert HOST_MARK.encode() not in logs
    finally:
        for link in ("abs", "rel"):
            cluster.server.json("DELETE", f"/api/v1/namespaces/default/pods/hostile-subpath-{link}")
