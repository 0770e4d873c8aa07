"""Quantities are stored and returned in kube-apiserver's canonical form ("0.5" cpu is "500m",
"1024Mi" is "1Gi") whatever wrote them: create, update, every patch type, server-side apply,
status; through raw HTTP, kubectl and the official Python client."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.kubeserver import Kubectl, Server, api_only_server, kubectl_for, temp_namespace

kubernetes = pytest.importorskip("kubernetes")
from kubernetes import client, config  # noqa: E402

APPLY = "application/apply-patch+yaml"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with api_only_server(tmp_path_factory.mktemp("apiserver-quantities")) as srv:
        yield srv


@pytest.fixture
def ns(server: Server) -> Iterator[str]:
    with temp_namespace(server, "qty") as name:
        yield name


def _pod(name: str, resources: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox", "resources": resources}]},
    }


def _resources(obj: dict[str, Any]) -> dict[str, Any]:
    return obj["spec"]["containers"][0]["resources"]


def _managers(obj: dict[str, Any]) -> dict[str, Any]:
    return {e["manager"]: e for e in obj["metadata"].get("managedFields") or []}


def test_create_update_and_patches_store_canonical_quantities(server: Server, ns: str) -> None:
    pods = f"/api/v1/namespaces/{ns}/pods"
    res = {"limits": {"cpu": "0.5", "memory": "1024Mi"}, "requests": {"cpu": 0.1}}
    code, created = server.json("POST", pods, _pod("p", res))
    assert code == 201, created
    want = {
        "limits": {"cpu": "500m", "memory": "1Gi"},
        "requests": {"cpu": "100m", "memory": "1Gi"},
    }
    assert _resources(created) == want
    assert _resources(server.json("GET", f"{pods}/p")[1]) == want

    # a PUT of the same values written differently changes nothing: same resourceVersion
    same = {**created}
    same["spec"]["containers"][0]["resources"] = {
        "limits": {"cpu": "500000000n", "memory": "1Gi"},
        "requests": {"cpu": "0.1"},
    }
    code, put = server.json("PUT", f"{pods}/p", same)
    assert code == 200, put
    assert _resources(put) == want
    assert put["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]

    # pod resources are immutable: patch a deployment's template, with every patch type
    deps = f"/apis/apps/v1/namespaces/{ns}/deployments"
    code, got = server.json("POST", deps, _deployment({"cpu": "0.5"}))
    assert code == 201, got
    assert _template_limits(got) == {"cpu": "500m"}
    limits = "/spec/template/spec/containers/0/resources/limits"
    for ctype, patch, want_limits in (
        ("application/merge-patch+json", _limits_patch({"cpu": "1.5", "memory": "1.5Gi"}),
         {"cpu": "1500m", "memory": "1536Mi"}),
        ("application/strategic-merge-patch+json", _limits_patch({"memory": "2048Mi"}),
         {"cpu": "1500m", "memory": "2Gi"}),
        ("application/json-patch+json", [{"op": "replace", "path": f"{limits}/cpu", "value": 2}],
         {"cpu": "2", "memory": "2Gi"}),
        ("application/json-patch+json",
         [{"op": "replace", "path": f"{limits}/memory", "value": "3000000k"}],
         {"cpu": "2", "memory": "3G"}),
    ):  # fmt: skip
        code, got = server.json("PATCH", f"{deps}/d", patch, headers={"Content-Type": ctype})
        assert code == 200, (ctype, got.get("message"))
        assert _template_limits(got) == want_limits, ctype
        assert _template_limits(server.json("GET", f"{deps}/d")[1]) == want_limits


def _deployment(limits: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d"},
        "spec": {
            "selector": {"matchLabels": {"app": "d"}},
            "template": {
                "metadata": {"labels": {"app": "d"}},
                "spec": {
                    "containers": [
                        {"name": "c", "image": "busybox", "resources": {"limits": limits}}
                    ]
                },
            },
        },
    }


def _template_limits(obj: dict[str, Any]) -> dict[str, Any]:
    return obj["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]


def _limits_patch(limits: dict[str, Any]) -> dict[str, Any]:
    containers = [{"name": "c", "image": "busybox", "resources": {"limits": limits}}]
    return {"spec": {"template": {"spec": {"containers": containers}}}}


def test_node_status_quantities(server: Server) -> None:
    nodes = "/api/v1/nodes"
    code, node = server.json("POST", nodes, {"metadata": {"name": "qty-node"}})
    assert code == 201, node
    try:
        node["status"] = {
            "capacity": {"cpu": "2000m", "memory": "4194304Ki", "pods": "110"},
            "allocatable": {"cpu": "1.5", "memory": "3.5Gi"},
        }
        code, got = server.json("PUT", f"{nodes}/qty-node/status", node)
        assert code == 200, got
        assert got["status"]["capacity"] == {"cpu": "2", "memory": "4Gi", "pods": "110"}
        assert got["status"]["allocatable"] == {"cpu": "1500m", "memory": "3584Mi"}
        code, got = server.json(
            "PATCH",
            f"{nodes}/qty-node/status",
            {"status": {"allocatable": {"cpu": "0.25"}}},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert code == 200 and got["status"]["allocatable"]["cpu"] == "250m", got
    finally:
        server.request("DELETE", f"{nodes}/qty-node")


def test_server_side_apply_and_managed_fields(server: Server, ns: str) -> None:
    """The applied "0.5" is stored as "500m"; applying it again is no change (no conflict,
    same resourceVersion); an update that sends the same value written differently takes no
    ownership of it, as kube compares the decoded objects."""
    path = f"/apis/apps/v1/namespaces/{ns}/deployments/d"
    dep = _deployment({"cpu": "0.5"})

    def apply(manager: str) -> tuple[int, Any]:
        code, _, data = server.request(
            "PATCH",
            f"{path}?fieldManager={manager}",
            json.dumps(dep).encode(),
            headers={"Content-Type": APPLY},
        )
        return code, json.loads(data)

    code, first = apply("one")
    assert code == 201, first
    assert _template_limits(first) == {"cpu": "500m"}
    code, again = apply("one")
    assert code == 200, again
    assert again["metadata"]["managedFields"] == first["metadata"]["managedFields"], again
    assert again["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"], (
        first,
        again,
    )
    assert _template_limits(again) == {"cpu": "500m"}

    body = {**again}
    _template_limits(body)["cpu"] = "500000000n"  # 500m, written otherwise
    body["metadata"]["labels"] = {"x": "y"}
    code, put = server.json("PUT", f"{path}?fieldManager=two", body)
    assert code == 200, put
    assert _template_limits(put) == {"cpu": "500m"}
    two = _managers(put)["two"]["fieldsV1"]
    assert two == {"f:metadata": {"f:labels": {".": {}, "f:x": {}}}}, two


def test_kubectl_and_python_client(
    server: Server, ns: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    kubectl: Kubectl = kubectl_for("1.32", server, tmp_path_factory)
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(
        yaml.safe_dump(_pod("k", {"limits": {"cpu": 0.5, "memory": "1.5Gi"}, "requests": {}}))
    )
    kubectl.run("apply", "-n", ns, "-f", str(manifest))
    got = json.loads(kubectl.run("get", "pod", "k", "-n", ns, "-o", "json").stdout)
    assert _resources(got)["limits"] == {"cpu": "500m", "memory": "1536Mi"}
    # a second client-side apply of the same file is unchanged (its last-applied text differs
    # from what is stored, as with kube)
    out = kubectl.run("apply", "-n", ns, "-f", str(manifest)).stdout
    assert "unchanged" in out or "configured" in out
    kubectl.run("apply", "--server-side", "--force-conflicts", "-n", ns, "-f", str(manifest))
    got = json.loads(kubectl.run("get", "pod", "k", "-n", ns, "-o", "json").stdout)
    assert _resources(got)["limits"] == {"cpu": "500m", "memory": "1536Mi"}

    api = client.CoreV1Api(config.new_client_from_config(str(server.kubeconfig)))
    body = client.V1Pod(
        metadata=client.V1ObjectMeta(name="py"),
        spec=client.V1PodSpec(
            containers=[
                client.V1Container(
                    name="c",
                    image="busybox",
                    resources=client.V1ResourceRequirements(
                        limits={"cpu": "1000m", "memory": "2000000000n"}
                    ),
                )
            ]
        ),
    )
    created = api.create_namespaced_pod(ns, body)
    assert created.spec.containers[0].resources.limits == {"cpu": "1", "memory": "2"}
    read = api.read_namespaced_pod("py", ns)
    assert read.spec.containers[0].resources.limits == {"cpu": "1", "memory": "2"}
