"""Server-side apply and managedFields on a real ``corral server`` with real kubectl (1.32, and
1.20 where it has the flags): ``kubectl apply --server-side`` creates, re-applies what it no
longer lists away, conflicts with another manager (kubectl's own conflict text) unless
``--force-conflicts``; client-side applied objects migrate; every write records its manager;
the API answers as kube-apiserver does (422 without fieldManager, 409 Status with
FieldManagerConflict causes, 201 when an apply creates)."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.kubeserver import (
    KUBECTL_VERSIONS,
    Kubectl,
    Server,
    api_only_server,
    kubectl_for,
    temp_namespace,
)

VERSIONS = KUBECTL_VERSIONS
APPLY = "application/apply-patch+yaml"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with api_only_server(tmp_path_factory.mktemp("apiserver-apply")) as srv:
        yield srv


@pytest.fixture
def ns(server: Server) -> Iterator[str]:
    with temp_namespace(server, "apply") as name:
        yield name


def _deployment(labels: dict[str, str], env: dict[str, str], replicas: int = 2) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "labels": labels},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [
                            {
                                "name": "app",
                                "image": "nginx:1.21",
                                "env": [{"name": k, "value": v} for k, v in env.items()],
                            }
                        ]
                    },
                },
            },
        }
    )


def _write(tmp: Path, text: str) -> str:
    path = tmp / f"{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(text)
    return str(path)


def _get(server: Server, ns: str, name: str = "web") -> dict[str, Any]:
    code, obj = server.json("GET", f"/apis/apps/v1/namespaces/{ns}/deployments/{name}")
    assert code == 200, obj
    return obj


def _managers(obj: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(e["manager"], e["operation"]): e for e in obj["metadata"].get("managedFields") or []}


def test_apply_edit_conflict_force(
    kubectl: Kubectl, server: Server, ns: str, tmp_path: Path
) -> None:
    first = _write(tmp_path, _deployment({"app": "web", "tier": "front"}, {"A": "1", "B": "2"}))
    out = kubectl.run("apply", "--server-side", "-n", ns, "-f", first).stdout
    assert "deployment.apps/web serverside-applied" in out
    obj = _get(server, ns)
    entry = _managers(obj)[("kubectl", "Apply")]
    assert entry["apiVersion"] == "apps/v1" and entry["fieldsType"] == "FieldsV1"
    assert entry["fieldsV1"]["f:metadata"] == {"f:labels": {"f:app": {}, "f:tier": {}}}
    container = entry["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]
    assert set(container['k:{"name":"app"}']["f:env"]) == {'k:{"name":"A"}', 'k:{"name":"B"}'}
    assert obj["spec"]["strategy"]["type"] == "RollingUpdate"  # defaulted, owned by nobody

    # the file loses a label and an env var: the re-apply removes exactly those
    second = _write(tmp_path, _deployment({"app": "web"}, {"A": "1"}))
    kubectl.run("apply", "--server-side", "-n", ns, "-f", second)
    obj = _get(server, ns)
    assert obj["metadata"]["labels"] == {"app": "web"}
    assert obj["spec"]["template"]["spec"]["containers"][0]["env"] == [{"name": "A", "value": "1"}]
    assert obj["spec"]["replicas"] == 2

    # another manager changing kubectl's field: kubectl prints the conflict, nothing changes
    third = _write(tmp_path, _deployment({"app": "web"}, {"A": "1"}, replicas=5))
    p = kubectl.run(
        "apply", "--server-side", "--field-manager=other", "-n", ns, "-f", third, check=False
    )
    assert p.returncode != 0
    assert 'Apply failed with 1 conflict: conflict with "kubectl": .spec.replicas' in p.stderr
    assert _get(server, ns)["spec"]["replicas"] == 2

    # forced: it takes the field over
    kubectl.run(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=other",
        "-n",
        ns,
        "-f",
        third,
    )
    obj = _get(server, ns)
    assert obj["spec"]["replicas"] == 5
    managers = _managers(obj)
    assert "f:replicas" in managers[("other", "Apply")]["fieldsV1"]["f:spec"]
    assert "f:replicas" not in managers[("kubectl", "Apply")]["fieldsV1"]["f:spec"]
    # both applied the same env var: kubectl dropping it leaves it to "other"
    kubectl.run(
        "apply",
        "--server-side",
        "-n",
        ns,
        "-f",
        _write(tmp_path, _deployment({"app": "web"}, {}, 5)),
    )
    assert _get(server, ns)["spec"]["template"]["spec"]["containers"][0]["env"] == [
        {"name": "A", "value": "1"}
    ]


def test_client_side_apply_migrates_to_server_side(
    server: Server, ns: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    kubectl = kubectl_for("1.32", server, tmp_path_factory)
    first = _write(tmp_path, _deployment({"app": "web", "tier": "front"}, {"A": "1"}))
    kubectl.run("apply", "-n", ns, "-f", first)
    managers = _managers(_get(server, ns))
    assert set(managers) == {("kubectl-client-side-apply", "Update")}
    spec = managers[("kubectl-client-side-apply", "Update")]["fieldsV1"]["f:spec"]
    assert "f:replicas" in spec and "f:revisionHistoryLimit" in spec  # defaults count too
    out = kubectl.run("apply", "--server-side", "-n", ns, "-f", first).stdout
    assert "serverside-applied" in out
    assert ("kubectl", "Apply") in _managers(_get(server, ns))
    # the fields moved to kubectl's apply: dropping a label from the file removes it
    kubectl.run(
        "apply",
        "--server-side",
        "-n",
        ns,
        "-f",
        _write(tmp_path, _deployment({"app": "web"}, {"A": "1"})),
    )
    assert _get(server, ns)["metadata"]["labels"] == {"app": "web"}


def test_writers_own_what_they_change(
    server: Server, ns: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    kubectl = kubectl_for("1.32", server, tmp_path_factory)
    base = f"/api/v1/namespaces/{ns}/configmaps"
    code, _, body = server.request(
        "POST",
        base,
        {"metadata": {"name": "cm", "labels": {"a": "1"}}, "data": {"k": "v"}},
        headers={"User-Agent": "my-controller/1.2 (linux)"},
    )
    assert code == 201, body
    entries = json.loads(body)["metadata"]["managedFields"]
    assert [(e["manager"], e["operation"], e["apiVersion"]) for e in entries] == [
        ("my-controller", "Update", "v1")
    ]
    assert entries[0]["fieldsV1"] == {
        "f:data": {".": {}, "f:k": {}},
        "f:metadata": {"f:labels": {".": {}, "f:a": {}}},
    }
    # kubectl edit: its change moves to kubectl-edit
    env = kubectl.env() | {"KUBE_EDITOR": "sed -i -e s/k:\\ v/k:\\ edited/"}
    p = subprocess.run(
        [kubectl.binary, "edit", "-n", ns, "configmap/cm"], env=env, capture_output=True, text=True
    )
    assert p.returncode == 0, p.stderr
    code, obj = server.json("GET", f"{base}/cm")
    assert obj["data"] == {"k": "edited"}
    managers = _managers(obj)
    assert managers[("kubectl-edit", "Update")]["fieldsV1"] == {"f:data": {"f:k": {}}}
    assert managers[("my-controller", "Update")]["fieldsV1"] == {
        "f:data": {},  # it still owns the map itself
        "f:metadata": {"f:labels": {".": {}, "f:a": {}}},
    }
    # plain get hides managedFields (client side), --show-managed-fields shows them
    hidden = kubectl.run("get", "-n", ns, "configmap/cm", "-o", "yaml").stdout
    assert "managedFields" not in hidden
    shown = kubectl.run(
        "get", "-n", ns, "configmap/cm", "-o", "yaml", "--show-managed-fields"
    ).stdout
    assert "manager: kubectl-edit" in shown and "operation: Update" in shown
    # a no-op write changes nothing, not even the entries' times
    rv = obj["metadata"]["resourceVersion"]
    code, again = server.json("PUT", f"{base}/cm?fieldManager=late", obj)
    assert code == 200 and again["metadata"]["resourceVersion"] == rv
    assert again["metadata"]["managedFields"] == obj["metadata"]["managedFields"]
    # managedFields: [{}] clears them
    code, cleared = server.json(
        "PATCH",
        f"{base}/cm",
        {"metadata": {"managedFields": [{}]}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert code == 200 and "managedFields" not in cleared["metadata"], cleared


def _apply_raw(server: Server, path: str, body: dict[str, Any], query: str = "") -> tuple[int, Any]:
    code, _, data = server.request(
        "PATCH", path + query, json.dumps(body).encode(), headers={"Content-Type": APPLY}
    )
    return code, json.loads(data)


def test_apply_api(server: Server, ns: str) -> None:
    path = f"/api/v1/namespaces/{ns}/configmaps/cfg"
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"a": "1"}}
    code, body = _apply_raw(server, path, cm)
    assert code == 422, body
    assert body["message"] == (
        'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for'
        " apply patch"
    )
    code, created = _apply_raw(server, path, cm, "?fieldManager=one")
    assert code == 201, created  # an apply that creates
    code, body = _apply_raw(server, path, cm, "?fieldManager=one")
    assert code == 200, body
    assert body["metadata"] == created["metadata"]  # the same again: no write, same time
    code, body = _apply_raw(server, path, {**cm, "data": {"a": "2"}}, "?fieldManager=two")
    assert code == 409, body
    assert body["reason"] == "Conflict"
    assert body["details"]["causes"] == [
        {"reason": "FieldManagerConflict", "message": 'conflict with "one"', "field": ".data.a"}
    ]
    code, body = _apply_raw(
        server, path, {**cm, "data": {"a": "2"}}, "?fieldManager=two&force=true"
    )
    assert code == 200 and body["data"] == {"a": "2"}, body
    # YAML bodies too; a name that is not the URL's is refused
    code, _, data = server.request(
        "PATCH",
        f"{path}?fieldManager=one",
        b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: other}\n",
        headers={"Content-Type": APPLY},
    )
    assert code == 400, data
    code, _, data = server.request(
        "PATCH",
        f"{path}?fieldManager=one",
        b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\ndata: {b: x}\n",
        headers={"Content-Type": APPLY},
    )
    obj = json.loads(data)
    assert code == 200 and obj["data"] == {"a": "2", "b": "x"}, obj  # one's "a" was taken
    # force is only for apply
    code, body = server.json(
        "PATCH",
        f"{path}?force=true",
        {"data": {"c": "3"}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert code == 422 and "force: Forbidden" in body["message"], body


def test_apply_status_subresource(server: Server, ns: str) -> None:
    dep = yaml.safe_load(_deployment({"app": "web"}, {}))
    code, body = _apply_raw(
        server, f"/apis/apps/v1/namespaces/{ns}/deployments/web", dep, "?fieldManager=me"
    )
    assert code == 201, body
    status = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "status": {"observedGeneration": 1, "replicas": 7},
    }
    code, body = _apply_raw(
        server, f"/apis/apps/v1/namespaces/{ns}/deployments/web/status", status, "?fieldManager=ctl"
    )
    assert code == 200, body
    assert body["status"]["replicas"] == 7
    entries = {(e["manager"], e.get("subresource")): e for e in body["metadata"]["managedFields"]}
    assert entries[("ctl", "status")]["fieldsV1"] == {
        "f:status": {"f:observedGeneration": {}, "f:replicas": {}}
    }
    assert "f:status" not in entries[("me", None)]["fieldsV1"]


def test_scale_takes_replicas_from_the_applier(
    server: Server, ns: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    kubectl = kubectl_for("1.32", server, tmp_path_factory)
    manifest = _write(tmp_path, _deployment({"app": "web"}, {}))
    kubectl.run("apply", "--server-side", "-n", ns, "-f", manifest)
    # kubectl scale sends no fieldManager: its user agent names it ("kubectl/v1.32.0 ...")
    kubectl.run("scale", "-n", ns, "deployment/web", "--replicas=4")
    entries = {
        (e["manager"], e["operation"], e.get("subresource")): e
        for e in _get(server, ns)["metadata"]["managedFields"]
    }
    scaled = entries[("kubectl", "Update", "scale")]["fieldsV1"]
    assert scaled == {"f:spec": {"f:replicas": {}}}
    assert "f:replicas" not in entries[("kubectl", "Apply", None)]["fieldsV1"]["f:spec"]
    p = kubectl.run("apply", "--server-side", "-n", ns, "-f", manifest, check=False)
    assert p.returncode != 0
    assert (
        'conflict with "kubectl" with subresource "scale" using apps/v1: .spec.replicas' in p.stderr
    )
    assert _get(server, ns)["spec"]["replicas"] == 4


def test_dry_run_and_diff(
    server: Server, ns: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    kubectl = kubectl_for("1.32", server, tmp_path_factory)
    kubectl.run(
        "apply", "--server-side", "-n", ns, "-f", _write(tmp_path, _deployment({"app": "web"}, {}))
    )
    before = _get(server, ns)
    bigger = _write(tmp_path, _deployment({"app": "web"}, {}, replicas=6))
    out = kubectl.run("apply", "--server-side", "--dry-run=server", "-n", ns, "-f", bigger).stdout
    assert "serverside-applied (server dry run)" in out
    assert _get(server, ns) == before
    p = kubectl.run("diff", "--server-side", "-n", ns, "-f", bigger, check=False)
    assert p.returncode == 1, p.stderr  # 1: differences found
    assert "-  replicas: 2" in p.stdout and "+  replicas: 6" in p.stdout
    # a dry run of an apply that would create creates nothing
    other = _write(
        tmp_path, _deployment({"app": "web"}, {}).replace("name: web\n", "name: new\n", 1)
    )
    out = kubectl.run("apply", "--server-side", "--dry-run=server", "-n", ns, "-f", other).stdout
    assert "deployment.apps/new serverside-applied (server dry run)" in out
    code, _ = server.json("GET", f"/apis/apps/v1/namespaces/{ns}/deployments/new")
    assert code == 404


def test_managed_fields_sent_with_a_create_or_cleared(server: Server, ns: str) -> None:
    """Valid managedFields sent on create are kept as kube's field manager keeps them (the
    create is an Update over an empty object: the creator takes the fields the object has from
    them, an entry left with none goes) and the creator's entry is added; invalid ones are
    refused (they were dropped silently). ``[{}]`` on an update clears them, and the writer
    owns what it changed in the same request."""
    base = f"/api/v1/namespaces/{ns}/configmaps"

    def sent(manager: str, op: str, fields: dict[str, Any]) -> dict[str, Any]:
        return {
            "manager": manager,
            "operation": op,
            "apiVersion": "v1",
            "time": "2020-01-01T00:00:00Z",
            "fieldsType": "FieldsV1",
            "fieldsV1": fields,
        }

    body = {
        "metadata": {
            "name": "sent",
            "managedFields": [
                sent("importer", "Update", {"f:data": {"f:gone": {}}}),
                sent("tool", "Apply", {"f:data": {"f:k": {}}}),
                sent("creator", "Update", {"f:metadata": {"f:annotations": {"f:x": {}}}}),
            ],
        },
        "data": {"k": "v"},
    }
    code, created = server.json("POST", f"{base}?fieldManager=creator", body)
    assert code == 201, created
    entries = {e["manager"]: e for e in created["metadata"]["managedFields"]}
    assert set(entries) == {"importer", "creator"}  # tool's only field was taken
    assert entries["importer"]["fieldsV1"] == {"f:data": {"f:gone": {}}}
    assert entries["importer"]["time"] == "2020-01-01T00:00:00Z"
    assert entries["creator"]["fieldsV1"] == {
        "f:data": {".": {}, "f:k": {}},
        "f:metadata": {"f:annotations": {"f:x": {}}},
    }
    assert (
        server.json("GET", f"{base}/sent")[1]["metadata"]["managedFields"]
        == (created["metadata"]["managedFields"])
    )

    bad = {"metadata": {"name": "bad", "managedFields": [sent("m", "Bogus", {})]}}
    code, status = server.json("POST", base, bad)
    assert code == 422, status
    assert "metadata.managedFields[0].operation" in status["message"], status
    assert server.json("GET", f"{base}/bad")[0] == 404

    # cleared by [{}], with a change in the same request: the writer owns just that
    obj = server.json("GET", f"{base}/sent")[1]
    obj["metadata"]["managedFields"] = [{}]
    obj["metadata"]["labels"] = {"l": "1"}
    code, put = server.json("PUT", f"{base}/sent?fieldManager=resetter", obj)
    assert code == 200, put
    assert [(e["manager"], e["fieldsV1"]) for e in put["metadata"]["managedFields"]] == [
        ("resetter", {"f:metadata": {"f:labels": {".": {}, "f:l": {}}}})
    ]
    # and with no other change: none at all
    put["metadata"]["managedFields"] = [{}]
    code, cleared = server.json("PUT", f"{base}/sent?fieldManager=resetter", put)
    assert code == 200 and "managedFields" not in cleared["metadata"], cleared
