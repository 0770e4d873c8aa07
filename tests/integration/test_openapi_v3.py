"""OpenAPI v3 on ``corral server``: the index and the per-group-version documents as
kube-apiserver serves them (hashed URLs, redirects, caching), ``kubectl explain`` (1.32) for
every served kind, and ``kubectl apply`` of a changing Deployment, whose strategic-merge patch
kubectl 1.32 now builds from the served patch metadata (1.20 from its built-in types)."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.kubeserver import KUBECTL_VERSIONS, Kubectl, Server, api_only_server, kubectl_for

VERSIONS = KUBECTL_VERSIONS


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with api_only_server(tmp_path_factory.mktemp("openapi-v3")) as srv:
        yield srv


@pytest.fixture(scope="module")
def kubectl132(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    return kubectl_for("1.32", server, tmp_path_factory)


def test_index_and_documents(server: Server) -> None:
    code, index = server.json("GET", "/openapi/v3")
    assert code == 200
    paths = index["paths"]
    assert {"api/v1", "apis/apps/v1", "apis/batch/v1", "apis/coordination.k8s.io/v1"} <= set(paths)
    url = paths["apis/apps/v1"]["serverRelativeURL"]
    assert url.startswith("/openapi/v3/apis/apps/v1?hash=")
    code, headers, body = server.request("GET", url, headers={"Accept": "application/json"})
    assert code == 200
    assert headers["Cache-Control"] == "public, immutable"
    assert headers["Etag"] == '"' + url.split("hash=")[1] + '"'
    code, headers, zipped = server.request(
        "GET", url, headers={"Accept": "application/json", "Accept-Encoding": "gzip"}
    )
    assert code == 200 and headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(zipped) == body
    doc = json.loads(body)
    assert doc["openapi"].startswith("3.")
    schemas = doc["components"]["schemas"]
    deploy = schemas["io.k8s.api.apps.v1.Deployment"]
    assert deploy["x-kubernetes-group-version-kind"] == [
        {"group": "apps", "kind": "Deployment", "version": "v1"}
    ]
    containers = schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]
    assert containers["x-kubernetes-patch-merge-key"] == "name"
    assert containers["x-kubernetes-patch-strategy"] == "merge"
    assert containers["x-kubernetes-list-type"] == "map"
    assert containers["description"].startswith("List of containers belonging to the pod.")
    assert "io.k8s.api.core.v1.Service" not in schemas  # only what apps/v1 refers to
    patch = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
    assert patch["x-kubernetes-group-version-kind"]["kind"] == "Deployment"
    assert "application/strategic-merge-patch+json" in patch["requestBody"]["content"]
    assert "fieldValidation" in {p["name"] for p in patch["parameters"]}
    scale = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]
    assert scale["get"]["x-kubernetes-group-version-kind"]["group"] == "autoscaling"
    # a stale hash is redirected to the current document; no hash: not cacheable
    code, headers, _ = server.request("GET", "/openapi/v3/apis/apps/v1?hash=00")
    assert code == 301 and headers["Location"] == url
    code, headers, _ = server.request("GET", "/openapi/v3/apis/apps/v1")
    assert code == 200 and "Cache-Control" not in headers
    code, _, _ = server.request("GET", "/openapi/v3/apis/apps/v1", headers={"Accept": "text/x"})
    assert code == 406
    code, status = server.json("GET", "/openapi/v3/apis/nosuch/v1")
    assert code == 404 and status["kind"] == "Status"


def test_explain_every_kind(kubectl132: Kubectl) -> None:
    out = kubectl132.run("explain", "pod.spec.containers").stdout
    assert out.startswith("KIND:       Pod\nVERSION:    v1\n\nFIELD: containers <[]Container>\n")
    assert "List of containers belonging to the pod." in out
    assert "  env\t<[]EnvVar>\n" in out and "  image\t<string>\n" in out
    out = kubectl132.run("explain", "deploy.spec.strategy.rollingUpdate.maxSurge").stdout
    assert out.startswith("GROUP:      apps\nKIND:       Deployment\nVERSION:    v1\n")
    assert "FIELD: maxSurge <IntOrString>" in out
    out = kubectl132.run("explain", "pod.spec.containers.resources.limits").stdout
    assert "FIELD: limits <map[string]Quantity>" in out
    names = kubectl132.run("api-resources", "-o", "name").stdout.split()
    assert len(names) >= 20
    seen: set[str] = set()
    for name in names:
        resource, _, group = name.partition(".")
        if resource in seen:
            # kubectl explain maps the bare resource first (metrics.k8s.io's pods and nodes,
            # events.k8s.io's events are the core ones to it, on any cluster): such a kind is
            # explained by its name
            continue
        seen.add(resource)
        out = kubectl132.run("explain", name).stdout
        kind_line = next(ln for ln in out.splitlines() if ln.startswith("KIND:"))
        assert out.startswith(f"GROUP:      {group}\n" if group else "KIND:"), (name, out)
        assert "DESCRIPTION:" in out and "FIELDS:" in out, (name, out)
        assert kind_line.split()[1].lower() in (
            resource,
            resource.removesuffix("s"),
            resource.removesuffix("es"),
            resource.removesuffix("ies") + "y",  # networkpolicies
        ), (name, kind_line)


def test_explain_the_metrics_kinds(kubectl132: Kubectl) -> None:
    for kind, field in (("nodemetrics", "usage"), ("podmetrics", "containers")):
        out = kubectl132.run("explain", kind).stdout
        assert out.startswith("GROUP:      metrics.k8s.io\nKIND:       "), out
        assert f"  {field}\t<" in out, out
    out = kubectl132.run("explain", "podmetrics.containers.usage").stdout
    assert "FIELD: usage <map[string]Quantity>" in out, out


def _deployment(containers: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": containers},
            },
        },
    }


def test_apply_deployment_strategic_patch(kubectl: Kubectl, server: Server, tmp_path: Path) -> None:
    """Keyed lists merge by key: what another manager added (an env var, a container port
    of its own) stays, what the manifest dropped goes, the rest follows the manifest."""
    ns = f"apply-v{kubectl.version.replace('.', '')}"
    kubectl.run("create", "namespace", ns)
    f = tmp_path / "deploy.json"
    first = _deployment(
        [
            {
                "name": "app",
                "image": "nginx:1.25",
                "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                "ports": [{"containerPort": 80, "name": "http"}],
            },
            {"name": "side", "image": "busybox", "command": ["sleep", "inf"]},
        ]
    )
    f.write_text(json.dumps(first))
    kubectl.run("apply", "-n", ns, "-f", str(f))
    # another manager adds an env var the manifest never had
    kubectl.run("set", "env", "-n", ns, "deployment/web", "-c", "app", "EXTRA=yes")
    second = _deployment(
        [
            {
                "name": "app",
                "image": "nginx:1.27",
                "env": [{"name": "A", "value": "10"}, {"name": "C", "value": "3"}],
                "ports": [{"containerPort": 80, "name": "http"}, {"containerPort": 443}],
            }
        ]
    )
    f.write_text(json.dumps(second))
    p = kubectl.run("apply", "-n", ns, "-f", str(f), "-v=6")
    assert "deployment.apps/web configured" in p.stdout
    assert "warning" not in p.stderr.lower(), p.stderr
    if kubectl.version == "1.32":  # the patch metadata came from the served document
        assert "/openapi/v3/apis/apps/v1?hash=" in p.stderr
    code, live = server.json("GET", f"/apis/apps/v1/namespaces/{ns}/deployments/web")
    assert code == 200
    (app,) = live["spec"]["template"]["spec"]["containers"]
    assert app["image"] == "nginx:1.27"
    # (kube-apiserver orders them A, C, EXTRA by the patch's $setElementOrder, which the
    # server's strategic merge does not follow yet: the order is not checked)
    assert sorted((e["name"], e["value"]) for e in app["env"]) == [
        ("A", "10"),
        ("C", "3"),
        ("EXTRA", "yes"),
    ]
    assert [p["containerPort"] for p in app["ports"]] == [80, 443]
    kubectl.run("delete", "namespace", ns, "--wait=false")
