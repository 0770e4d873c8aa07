"""CustomResourceDefinitions on a real ``corral server`` (API only), with kubectl 1.32 and
1.20 and the Python client's CustomObjectsApi: a CRD applied is established and served
(discovery, shortName, category all, printer columns), its custom resources are pruned,
defaulted, validated with kube's words, have status and scale subresources and are watched;
a second version is served; deleting the CRD deletes them and discovery drops it."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from testkit.wait import until
from tests.kubeserver import CORRAL, Kubectl, Server, api_only_server

CRD_GROUP = "stable.example.com"
WAIT = 60.0  # seconds an eventual change may take on a loaded machine: never a measurement


def _crd(plural: str, kind: str, scope: str = "Namespaced", second: bool = False) -> dict[str, Any]:
    schema = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "required": ["size"],
                "properties": {
                    "replicas": {"type": "integer", "minimum": 0, "default": 1},
                    "size": {"type": "string", "enum": ["S", "M", "L"]},
                    "image": {"type": "string", "description": "The image to run."},
                },
            },
            "status": {
                "type": "object",
                "properties": {"replicas": {"type": "integer"}, "phase": {"type": "string"}},
            },
        },
    }
    version = {
        "name": "v1",
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": schema},
        "subresources": {
            "status": {},
            "scale": {
                "specReplicasPath": ".spec.replicas",
                "statusReplicasPath": ".status.replicas",
            },
        },
        "additionalPrinterColumns": [
            {"name": "Size", "type": "string", "jsonPath": ".spec.size"},
            {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase", "priority": 1},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ],
    }
    versions = [version]
    if second:
        versions.append({**version, "name": "v1beta1", "storage": False})
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{CRD_GROUP}"},
        "spec": {
            "group": CRD_GROUP,
            "scope": scope,
            "names": {
                "plural": plural,
                "kind": kind,
                "shortNames": [plural[:3]],
                "categories": ["all"],
            },
            "versions": versions,
        },
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with api_only_server(tmp_path_factory.mktemp("apiserver-crd")) as srv:
        yield srv


@pytest.fixture
def crd(server: Server, kubectl: Kubectl) -> Iterator[tuple[str, str]]:
    """A namespaced CRD of its own (applied with ``kubectl``) and a namespace; both deleted
    afterwards. Yields (plural, namespace)."""
    tag = uuid.uuid4().hex[:6]
    plural, kind = f"w{tag}s", f"W{tag}"
    ns = f"crd-{tag}"
    kubectl.run("apply", "-f", "-", input=yaml.safe_dump(_crd(plural, kind, second=True)))
    kubectl.run("create", "namespace", ns)
    try:
        yield plural, ns
    finally:
        server.json(
            "DELETE",
            f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{plural}.{CRD_GROUP}",
        )
        server.json("DELETE", f"/api/v1/namespaces/{ns}")


def _cr(plural: str, name: str, **spec: Any) -> str:
    kind = "W" + plural[1:-1]
    return yaml.safe_dump(
        {"apiVersion": f"{CRD_GROUP}/v1", "kind": kind, "metadata": {"name": name}, "spec": spec}
    )


def test_crd_established_and_listed(server: Server, kubectl: Kubectl, crd: tuple[str, str]) -> None:
    plural, ns = crd
    kubectl.run("wait", "--for=condition=Established", "--timeout=60s", f"crd/{plural}.{CRD_GROUP}")
    got = json.loads(kubectl.run("get", "crd", f"{plural}.{CRD_GROUP}", "-o", "json").stdout)
    conds = {c["type"]: c["status"] for c in got["status"]["conditions"]}
    assert conds == {"NamesAccepted": "True", "Established": "True"}
    assert got["spec"]["names"]["singular"] == plural[:-1]
    assert got["spec"]["names"]["listKind"] == f"W{plural[1:-1]}List"
    assert got["status"]["acceptedNames"]["kind"] == f"W{plural[1:-1]}"
    out = kubectl.run("get", "crd", f"{plural}.{CRD_GROUP}").stdout.splitlines()
    assert out[0].split() == ["NAME", "CREATED", "AT"]
    assert out[1].split()[0] == f"{plural}.{CRD_GROUP}"
    code, doc = server.json("GET", f"/apis/{CRD_GROUP}")
    assert code == 200 and doc["preferredVersion"]["version"] == "v1", doc
    code, doc = server.json("GET", f"/apis/{CRD_GROUP}/v1")
    entries = {r["name"]: r for r in doc["resources"]}
    assert entries[plural]["shortNames"] == [plural[:3]]
    assert entries[plural]["categories"] == ["all"]
    assert f"{plural}/status" in entries and f"{plural}/scale" in entries
    kubectl.run("create", "-n", ns, "-f", "-", input=_cr(plural, "d", size="M"))
    described = kubectl.run("describe", plural, "d", "-n", ns).stdout
    assert "Name:" in described and "Size:" in described and "M" in described, described


def test_custom_resources_with_kubectl(kubectl: Kubectl, crd: tuple[str, str]) -> None:
    plural, ns = crd
    if kubectl.version != "1.20":  # kubectl 1.32 asks for strict field validation
        p = kubectl.run(
            "apply", "-n", ns, "-f", "-", input=_cr(plural, "a", size="S", bogus=1), check=False
        )
        assert 'strict decoding error: unknown field "spec.bogus"' in p.stderr, p.stderr
    # with no (or Ignore) field validation, unknown fields are pruned
    kubectl.run(
        "apply", "-n", ns, "--validate=false", "-f", "-", input=_cr(plural, "a", size="S", bogus=1)
    )
    kubectl.run("create", "-n", ns, "-f", "-", input=_cr(plural, "b", size="M", replicas=3))
    obj = json.loads(kubectl.run("get", plural, "a", "-n", ns, "-o", "json").stdout)
    assert obj["spec"] == {"size": "S", "replicas": 1}  # pruned, defaulted
    assert obj["metadata"]["generation"] == 1
    # applied again (client-side: a merge patch against the last-applied configuration)
    kubectl.run("apply", "-n", ns, "-f", "-", input=_cr(plural, "a", size="M"))
    obj = json.loads(kubectl.run("get", plural, "a", "-n", ns, "-o", "json").stdout)
    assert obj["spec"] == {"size": "M", "replicas": 1}
    assert obj["metadata"]["generation"] == 2
    kubectl.run("apply", "-n", ns, "-f", "-", input=_cr(plural, "a", size="S"))
    # the short name, the printer columns (priority 1 with -o wide)
    lines = kubectl.run("get", plural[:3], "-n", ns).stdout.splitlines()
    assert lines[0].split() == ["NAME", "SIZE", "REPLICAS", "AGE"]
    assert [ln.split()[:3] for ln in lines[1:]] == [["a", "S", "1"], ["b", "M", "3"]]
    wide = kubectl.run("get", plural, "-n", ns, "-o", "wide").stdout.splitlines()
    assert wide[0].split() == ["NAME", "SIZE", "REPLICAS", "PHASE", "AGE"]
    # kubectl get all lists them (category all)
    assert "/a" in kubectl.run("get", "all", "-n", ns, "-o", "name").stdout
    # an invalid one: kube's words
    p = kubectl.run("apply", "-n", ns, "-f", "-", input=_cr(plural, "c", size="XL"), check=False)
    assert p.returncode != 0
    assert 'spec.size: Unsupported value: "XL": supported values: "S", "M", "L"' in p.stderr
    p = kubectl.run(
        "create",
        "--validate=false",
        "-n",
        ns,
        "-f",
        "-",
        input=_cr(plural, "c", size="S", replicas="x"),
        check=False,
    )
    assert (
        'spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer:'
        ' "string"'
    ) in p.stderr, p.stderr
    # patches: merge, json; strategic merge is refused (415)
    kubectl.run("patch", plural, "a", "-n", ns, "--type=merge", "-p", '{"spec":{"size":"L"}}')
    kubectl.run(
        "patch", plural, "a", "-n", ns, "--type=json",
        "-p", '[{"op":"replace","path":"/spec/replicas","value":2}]',
    )  # fmt: skip
    p = kubectl.run("patch", plural, "a", "-n", ns, "-p", '{"spec":{"size":"M"}}', check=False)
    assert p.returncode != 0
    assert "accepted media types include: application/json-patch+json," in p.stderr, p.stderr
    obj = json.loads(kubectl.run("get", plural, "a", "-n", ns, "-o", "json").stdout)
    assert obj["spec"] == {"size": "L", "replicas": 2}
    assert obj["metadata"]["generation"] == 5
    # kubectl scale through the scale subresource
    kubectl.run("scale", plural, "a", "-n", ns, "--replicas=5")
    obj = json.loads(kubectl.run("get", plural, "a", "-n", ns, "-o", "json").stdout)
    assert obj["spec"]["replicas"] == 5
    # delete
    kubectl.run("delete", plural, "b", "-n", ns)
    assert kubectl.run("get", plural, "-n", ns, "-o", "name").stdout.split() == [
        f"{plural[:-1]}.{CRD_GROUP}/a"  # (kind, lower case)
    ]


def test_status_subresource(server: Server, crd: tuple[str, str]) -> None:
    plural, ns = crd
    base = f"/apis/{CRD_GROUP}/v1/namespaces/{ns}/{plural}"
    body = {"apiVersion": f"{CRD_GROUP}/v1", "kind": "W" + plural[1:-1], "metadata": {"name": "s"}}
    code, obj = server.json("POST", base, {**body, "spec": {"size": "S"}, "status": {"phase": "X"}})
    assert code == 201 and "status" not in obj, obj  # ignored on create
    obj["status"] = {"phase": "Running", "replicas": 1}
    obj["spec"]["size"] = "M"
    code, out = server.json("PUT", f"{base}/s/status", obj)
    assert code == 200, out
    assert out["status"] == {"phase": "Running", "replicas": 1}
    assert out["spec"]["size"] == "S"  # only status through /status
    assert out["metadata"]["generation"] == 1
    out["status"] = {"phase": "Gone"}
    code, out = server.json("PUT", f"{base}/s", out)
    assert code == 200 and out["status"]["phase"] == "Running"  # status ignored here
    code, scale = server.json("GET", f"{base}/s/scale")
    assert code == 200 and scale["spec"]["replicas"] == 1 and scale["status"]["replicas"] == 1


def test_second_version_and_watch(server: Server, crd: tuple[str, str]) -> None:
    plural, ns = crd
    kind = "W" + plural[1:-1]
    code, obj = server.json(
        "POST",
        f"/apis/{CRD_GROUP}/v1beta1/namespaces/{ns}/{plural}",
        {"apiVersion": f"{CRD_GROUP}/v1beta1", "kind": kind, "metadata": {"name": "x"},
         "spec": {"size": "S"}},
    )  # fmt: skip
    assert code == 201 and obj["apiVersion"] == f"{CRD_GROUP}/v1beta1", obj
    code, obj = server.json("GET", f"/apis/{CRD_GROUP}/v1/namespaces/{ns}/{plural}/x")
    assert code == 200 and obj["apiVersion"] == f"{CRD_GROUP}/v1"
    code, listed = server.json("GET", f"/apis/{CRD_GROUP}/v1beta1/{plural}")
    assert [i["apiVersion"] for i in listed["items"]] == [f"{CRD_GROUP}/v1beta1"]
    rv = listed["metadata"]["resourceVersion"]
    code, _ = server.json(
        "PATCH", f"/apis/{CRD_GROUP}/v1/namespaces/{ns}/{plural}/x", {"spec": {"size": "M"}},
        headers={"Content-Type": "application/merge-patch+json"},
    )  # fmt: skip
    assert code == 200
    code, _, data = server.request(
        "GET",
        f"/apis/{CRD_GROUP}/v1beta1/namespaces/{ns}/{plural}?watch=1&resourceVersion={rv}"
        "&timeoutSeconds=1",
    )
    events = [json.loads(line) for line in data.splitlines()]
    assert [
        (e["type"], e["object"]["apiVersion"], e["object"]["spec"]["size"]) for e in events
    ] == [("MODIFIED", f"{CRD_GROUP}/v1beta1", "M")]
    # label and field selectors
    code, listed = server.json(
        "GET", f"/apis/{CRD_GROUP}/v1/{plural}?fieldSelector=metadata.name%3Dx"
    )
    assert [i["metadata"]["name"] for i in listed["items"]] == ["x"]
    code, listed = server.json("GET", f"/apis/{CRD_GROUP}/v1/{plural}?labelSelector=a%3Db")
    assert listed["items"] == []


def test_python_custom_objects_api(server: Server, crd: tuple[str, str]) -> None:
    from kubernetes import client, config

    plural, ns = crd
    api = client.CustomObjectsApi(config.new_client_from_config(str(server.kubeconfig)))
    kind = "W" + plural[1:-1]
    body = {"apiVersion": f"{CRD_GROUP}/v1", "kind": kind, "metadata": {"name": "py"},
            "spec": {"size": "S"}}  # fmt: skip
    made = api.create_namespaced_custom_object(CRD_GROUP, "v1", ns, plural, body)
    assert made["spec"] == {"size": "S", "replicas": 1}
    patched = api.patch_namespaced_custom_object(
        CRD_GROUP, "v1", ns, plural, "py", {"spec": {"replicas": 4}}
    )
    assert patched["spec"]["replicas"] == 4
    listed = api.list_namespaced_custom_object(CRD_GROUP, "v1", ns, plural)
    assert [i["metadata"]["name"] for i in listed["items"]] == ["py"]


def test_cluster_scoped_and_delete(server: Server, kubectl: Kubectl) -> None:
    tag = uuid.uuid4().hex[:6]
    plural, kind = f"c{tag}s", f"C{tag}"
    kubectl.run("apply", "-f", "-", input=yaml.safe_dump(_crd(plural, kind, scope="Cluster")))
    cr = {"apiVersion": f"{CRD_GROUP}/v1", "kind": kind, "metadata": {"name": "one"},
          "spec": {"size": "S"}}  # fmt: skip
    kubectl.run("apply", "-f", "-", input=yaml.safe_dump(cr))
    assert kubectl.run("get", plural, "-o", "name").stdout.split() == [
        f"{kind.lower()}.{CRD_GROUP}/one"
    ]
    code, _ = server.json("GET", f"/apis/{CRD_GROUP}/v1/{plural}/one")
    assert code == 200
    kubectl.run("delete", "crd", f"{plural}.{CRD_GROUP}")  # waits until it is gone
    code, _ = server.json(
        "GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{plural}.{CRD_GROUP}"
    )
    assert code == 404
    # (served until the server's own refresh after the store's delete: a moment)
    until(
        "the custom resources no longer served",
        lambda: server.json("GET", f"/apis/{CRD_GROUP}/v1/{plural}")[0] == 404,
        WAIT,
    )
    code, doc = server.json("GET", f"/apis/{CRD_GROUP}/v1")
    assert plural not in {r["name"] for r in (doc or {}).get("resources", [])}
    # its custom resources are gone from the store: a CRD of the same name starts empty
    kubectl.run("apply", "-f", "-", input=yaml.safe_dump(_crd(plural, kind, scope="Cluster")))
    try:
        deadline = time.monotonic() + 30
        while True:  # (kubectl's discovery of the new CRD)
            p = kubectl.run("get", plural, "-o", "name", check=False)
            if p.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert p.returncode == 0 and p.stdout.split() == [], p.stderr
    finally:
        kubectl.run("delete", "crd", f"{plural}.{CRD_GROUP}")


def test_explain(kubectl: Kubectl, crd: tuple[str, str]) -> None:
    plural, _ = crd
    out = kubectl.run("explain", f"{plural}.spec").stdout
    assert "size" in out and "replicas" in out, out
    assert "The image to run." in kubectl.run("explain", f"{plural}.spec.image").stdout
    out = kubectl.run("explain", "crd.spec.names").stdout
    assert "plural" in out and "shortNames" in out, out


def _user_kubectl(server: Server, kubectl: Kubectl, user: str) -> Kubectl:
    """``kubectl`` as ``user`` (a client certificate of the server's CA), HOME of its own."""
    path = server.root / f"{user}-{kubectl.version}.kubeconfig"
    argv = [CORRAL, "kubeconfig", "--user", user, "--data-dir", str(server.data_dir)]
    subprocess.run([*argv, "-o", str(path)], check=True, capture_output=True)
    home = server.root / f"home-{user}-{kubectl.version}"
    home.mkdir(exist_ok=True)
    return Kubectl(kubectl.binary, home, path, kubectl.version)


def test_rbac(server: Server, kubectl: Kubectl, crd: tuple[str, str]) -> None:
    """The default edit role does not cover custom resources (no aggregation labels); a role
    naming <plural> in the CRD's group does; cluster-admin (the tests' own user) does."""
    plural, ns = crd
    user = f"crd-user-{uuid.uuid4().hex[:6]}"
    kubectl.run("create", "rolebinding", "edit", "-n", ns, "--clusterrole=edit", f"--user={user}")
    as_user = _user_kubectl(server, kubectl, user)
    assert as_user.run("auth", "can-i", "list", "configmaps", "-n", ns).stdout.strip() == "yes"
    resource = f"{plural}.{CRD_GROUP}"
    p = as_user.run("auth", "can-i", "list", resource, "-n", ns, check=False)
    assert p.stdout.strip() == "no"
    p = as_user.run("get", plural, "-n", ns, check=False)
    assert p.returncode != 0 and "Forbidden" in p.stderr, p.stderr
    kubectl.run(
        "create", "role", "crs", "-n", ns, "--verb=get,list,create", f"--resource={resource}"
    )
    kubectl.run("create", "rolebinding", "crs", "-n", ns, "--role=crs", f"--user={user}")
    assert as_user.run("auth", "can-i", "list", resource, "-n", ns).stdout.strip() == "yes"
    as_user.run("create", "-n", ns, "-f", "-", input=_cr(plural, "mine", size="S"))
    assert as_user.run("get", plural, "-n", ns, "-o", "name").stdout.split() == [
        f"{plural[:-1]}.{CRD_GROUP}/mine"
    ]
    p = as_user.run("delete", plural, "mine", "-n", ns, check=False)
    assert p.returncode != 0 and "Forbidden" in p.stderr


def test_server_side_apply(kubectl: Kubectl, crd: tuple[str, str]) -> None:
    """Field ownership follows the CRD's schema: two managers own a field each, a third
    that changes one of them conflicts (kube's words) unless forced."""
    plural, ns = crd
    ssa = ("apply", "--server-side", "-n", ns, "-f", "-")
    kubectl.run(*ssa, "--field-manager=one", input=_cr(plural, "ssa", size="S"))
    kubectl.run(*ssa, "--field-manager=two", input=_cr(plural, "ssa", size="S", replicas=3))
    p = kubectl.run(*ssa, "--field-manager=two", input=_cr(plural, "ssa", size="M"), check=False)
    assert p.returncode != 0
    assert 'conflict with "one"' in p.stderr and ".spec.size" in p.stderr, p.stderr
    kubectl.run(
        *ssa, "--field-manager=two", "--force-conflicts", input=_cr(plural, "ssa", size="M")
    )
    shown = ["--show-managed-fields"] if kubectl.version != "1.20" else []
    obj = json.loads(kubectl.run("get", plural, "ssa", "-n", ns, "-o", "json", *shown).stdout)
    # two no longer applies replicas: it goes back to its default
    assert obj["spec"] == {"size": "M", "replicas": 1}
    owners = {e["manager"]: e["fieldsV1"] for e in obj["metadata"]["managedFields"]}
    assert owners["two"] == {"f:spec": {"f:size": {}}}


def test_two_servers_over_etcd(tmp_path: Path) -> None:
    """A CRD made through one server is served by the other (each follows the CRDs in the
    shared store), and its deletion through the other takes it from both."""
    pytest.importorskip("aetcd")
    from testkit.etcdcluster import EtcdMissing
    from testkit.kubeserver import servers_on_etcd

    try:
        with servers_on_etcd(tmp_path) as (_, (one, two)):
            code, made = one.json(
                "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                _crd("hatests", "HaTest", scope="Cluster"),
            )  # fmt: skip
            assert code == 201, made
            path = f"/apis/{CRD_GROUP}/v1/hatests"
            until("the CRD served by the other", lambda: two.json("GET", path)[0] == 200, WAIT)
            code, obj = two.json(
                "POST", path, {"metadata": {"name": "x"}, "spec": {"size": "S", "bogus": 1}}
            )
            assert code == 201 and obj["spec"] == {"size": "S", "replicas": 1}, obj
            assert one.json("GET", f"{path}/x")[0] == 200
            crd_path = (
                f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/hatests.{CRD_GROUP}"
            )
            assert two.json("DELETE", crd_path)[0] == 200
            until("the CRD gone from the first", lambda: one.json("GET", path)[0] == 404, WAIT)
            assert two.json("GET", path)[0] == 404
    except EtcdMissing as e:
        pytest.skip(str(e))
