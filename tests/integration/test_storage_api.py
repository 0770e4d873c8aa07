"""PersistentVolume, PersistentVolumeClaim and StorageClass served as kube-apiserver serves
them, to kubectl 1.32 and 1.20: the built-in default class ``local-path``, the
DefaultStorageClass and StorageObjectInUseProtection admissions, validation, immutability, and
the ``kubectl get pv/pvc/sc`` columns. The API server alone: nothing binds here."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.kubeserver import Kubectl, Server, api_only_server

AGE = re.compile(r"^\d+s$")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with api_only_server(tmp_path_factory.mktemp("storage-api")) as srv:
        yield srv


def _cells(out: str) -> list[dict[str, str]]:
    lines = out.rstrip("\n").splitlines()
    starts = [m.start() for m in re.finditer(r"(?<!\S)\S+(?: \S+)*", lines[0])]
    names = [lines[0][a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
    return [
        {n: ln[a:b].strip() for n, a, b in zip(names, starts, [*starts[1:], None], strict=True)}
        for ln in lines[1:]
    ]


def _ns(kubectl: Kubectl, server: Server, name: str) -> str:
    ns = f"{name}-v{kubectl.version.replace('.', '')}"
    code, _ = server.json("GET", f"/api/v1/namespaces/{ns}")
    if code == 404:
        kubectl.run("create", "namespace", ns)
    return ns


def _claim(name: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "1Gi"}},
    }
    body.update(spec)
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
            "spec": body}  # fmt: skip


def test_default_storage_class(kubectl: Kubectl, server: Server) -> None:
    out = kubectl.run("get", "sc").stdout
    assert out.splitlines()[0].split() == [
        "NAME",
        "PROVISIONER",
        "RECLAIMPOLICY",
        "VOLUMEBINDINGMODE",
        "ALLOWVOLUMEEXPANSION",
        "AGE",
    ]
    rows = {r["NAME"]: r for r in _cells(out)}
    row = rows["local-path (default)"]
    assert (row["PROVISIONER"], row["RECLAIMPOLICY"], row["VOLUMEBINDINGMODE"]) == (
        "corral.io/local-path",
        "Delete",
        "WaitForFirstConsumer",
    )
    assert row["ALLOWVOLUMEEXPANSION"] == "false"
    assert kubectl.run("get", "storageclass", "local-path", "-o", "name").stdout.strip() == (
        "storageclass.storage.k8s.io/local-path"
    )


def test_claim_admission_and_columns(kubectl: Kubectl, server: Server) -> None:
    ns = _ns(kubectl, server, "claims")
    path = f"/api/v1/namespaces/{ns}/persistentvolumeclaims"
    code, made = server.json("POST", path, _claim("data"))
    assert code == 201, made
    assert made["spec"]["storageClassName"] == "local-path"  # DefaultStorageClass
    assert made["metadata"]["finalizers"] == ["kubernetes.io/pvc-protection"]
    assert made["status"] == {"phase": "Pending"}
    code, none = server.json("POST", path, _claim("static", storageClassName=""))
    assert code == 201 and none["spec"]["storageClassName"] == ""  # "" asks for no class
    out = kubectl.run("get", "pvc", "-n", ns).stdout
    assert out.splitlines()[0].split() == [
        "NAME", "STATUS", "VOLUME", "CAPACITY", "ACCESS", "MODES", "STORAGECLASS",
        "VOLUMEATTRIBUTESCLASS", "AGE",
    ]  # fmt: skip
    rows = {r["NAME"]: r for r in _cells(out)}
    assert rows["data"]["STATUS"] == "Pending"
    assert rows["data"]["STORAGECLASS"] == "local-path"
    assert rows["data"]["VOLUME"] == rows["data"]["CAPACITY"] == ""
    assert rows["data"]["VOLUMEATTRIBUTESCLASS"] == "<unset>"
    assert AGE.match(rows["data"]["AGE"])
    # a bound claim shows its volume, capacity and modes from its status
    made["spec"]["volumeName"] = "pv-data"
    code, bound = server.json("PUT", f"{path}/data", made)
    assert code == 200, bound
    bound["status"] = {
        "phase": "Bound",
        "capacity": {"storage": "2Gi"},
        "accessModes": ["ReadWriteOnce", "ReadWriteMany"],
    }
    code, bound = server.json("PUT", f"{path}/data/status", bound)
    assert code == 200, bound
    rows = {r["NAME"]: r for r in _cells(kubectl.run("get", "pvc", "-n", ns).stdout)}
    assert [rows["data"][k] for k in ("STATUS", "VOLUME", "CAPACITY", "ACCESS MODES")] == [
        "Bound",
        "pv-data",
        "2Gi",
        "RWO,RWX",
    ]
    wide = _cells(kubectl.run("get", "pvc", "data", "-n", ns, "-o", "wide").stdout)
    assert wide[0]["VOLUMEMODE"] == "Filesystem"
    # the spec of a claim is immutable; a bound one may not grow where its class does not
    # allow expansion
    bound["spec"]["accessModes"] = ["ReadWriteMany"]
    p = kubectl.run("apply", "-n", ns, "-f", "-", input=_yaml(bound), check=False)
    assert p.returncode != 0
    assert "spec is immutable after creation" in p.stderr
    p = kubectl.run(
        "patch", "pvc", "data", "-n", ns, "-p",
        '{"spec":{"resources":{"requests":{"storage":"5Gi"}}}}', check=False,
    )  # fmt: skip
    assert p.returncode != 0
    assert "storageclass that provisions the pvc must support resize" in p.stderr
    # the finalizer holds a deleted claim (until the controller manager lets it go)
    kubectl.run("delete", "pvc", "data", "-n", ns, "--wait=false")
    code, gone = server.json("GET", f"{path}/data")
    assert code == 200 and gone["metadata"]["deletionTimestamp"]
    rows = {r["NAME"]: r for r in _cells(kubectl.run("get", "pvc", "-n", ns).stdout)}
    assert rows["data"]["STATUS"] == "Terminating"
    kubectl.run("patch", "pvc", "data", "-n", ns, "--type=merge", "-p",
                '{"metadata":{"finalizers":null}}')  # fmt: skip
    assert server.json("GET", f"{path}/data")[0] == 404


def _yaml(obj: dict[str, Any]) -> str:
    import json

    return json.dumps(obj)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"accessModes": []}, "spec.accessModes: Required value"),
        ({"accessModes": ["Often"]}, 'spec.accessModes: Unsupported value: "Often"'),
        ({"resources": {}}, "spec.resources[storage]: Required value"),
        ({"resources": {"requests": {"storage": "0"}}}, "must be greater than zero"),
    ],
)
def test_claim_validation(spec: dict[str, Any], message: str, server: Server) -> None:
    code, out = server.json(
        "POST", "/api/v1/namespaces/default/persistentvolumeclaims", _claim("bad", **spec)
    )
    assert code == 422, out
    assert message in out["message"]
    assert out["message"].startswith('PersistentVolumeClaim "bad" is invalid: ')


def test_volume_columns_and_validation(kubectl: Kubectl, server: Server) -> None:
    name = f"pv-{kubectl.version.replace('.', '')}"
    pv = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name},
        "spec": {
            "accessModes": ["ReadOnlyMany", "ReadWriteOnce"],
            "capacity": {"storage": "3Gi"},
            "hostPath": {"path": "/srv/data"},
            "storageClassName": "manual",
        },
    }
    kubectl.run("apply", "-f", "-", input=_yaml(pv))
    code, made = server.json("GET", f"/api/v1/persistentvolumes/{name}")
    assert made["metadata"]["finalizers"] == ["kubernetes.io/pv-protection"]
    assert made["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    assert made["status"] == {"phase": "Pending"}
    made["spec"]["claimRef"] = {"namespace": "ns1", "name": "c1"}
    code, made = server.json("PUT", f"/api/v1/persistentvolumes/{name}", made)
    assert code == 200, made
    made["status"] = {"phase": "Bound"}
    assert server.json("PUT", f"/api/v1/persistentvolumes/{name}/status", made)[0] == 200
    out = kubectl.run("get", "pv", name).stdout
    assert out.splitlines()[0].split() == [
        "NAME", "CAPACITY", "ACCESS", "MODES", "RECLAIM", "POLICY", "STATUS", "CLAIM",
        "STORAGECLASS", "VOLUMEATTRIBUTESCLASS", "REASON", "AGE",
    ]  # fmt: skip
    row = _cells(out)[0]
    assert [row[k] for k in ("CAPACITY", "ACCESS MODES", "RECLAIM POLICY", "STATUS")] == [
        "3Gi",
        "RWO,ROX",
        "Retain",
        "Bound",
    ]
    assert (row["CLAIM"], row["STORAGECLASS"], row["REASON"]) == ("ns1/c1", "manual", "")
    assert kubectl.run("get", "pv", name, "-o", "wide").stdout.splitlines()[0].split()[-1] == (
        "VOLUMEMODE"
    )
    made["spec"]["hostPath"] = {"path": "/elsewhere"}
    made["metadata"].pop("resourceVersion")
    p = kubectl.run("apply", "-f", "-", input=_yaml(made), check=False)
    assert p.returncode != 0 and "spec.persistentvolumesource is immutable" in p.stderr
    bad = dict(
        pv, metadata={"name": "bad"}, spec=dict(pv["spec"], nfs={"server": "s", "path": "/"})
    )
    p = kubectl.run("apply", "-f", "-", input=_yaml(bad), check=False)
    assert p.returncode != 0 and "may not specify more than 1 volume type" in p.stderr
    kubectl.run("patch", "pv", name, "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
    kubectl.run("delete", "pv", name)


def test_storage_class_immutable(kubectl: Kubectl, server: Server) -> None:
    name = f"fast-{kubectl.version.replace('.', '')}"
    sc = {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": name},
        "provisioner": "example.com/fast",
        "parameters": {"tier": "1"},
    }
    kubectl.run("apply", "-f", "-", input=_yaml(sc))
    code, made = server.json("GET", f"/apis/storage.k8s.io/v1/storageclasses/{name}")
    assert (made["reclaimPolicy"], made["volumeBindingMode"]) == ("Delete", "Immediate")
    p = kubectl.run("apply", "-f", "-", input=_yaml(dict(sc, parameters={"tier": "2"})),
                    check=False)  # fmt: skip
    assert p.returncode != 0 and "parameters: Forbidden: updates to parameters are forbidden" in (
        p.stderr
    )
    kubectl.run("annotate", "sc", name, "storageclass.kubernetes.io/is-default-class=true")
    # the newest default class is the one a new claim gets
    code, made = server.json(
        "POST", "/api/v1/namespaces/default/persistentvolumeclaims", _claim(name)
    )
    assert code == 201 and made["spec"]["storageClassName"] == name
    kubectl.run("patch", "pvc", name, "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
    kubectl.run("delete", "pvc", name)
    kubectl.run("delete", "sc", name)


def test_discovery(kubectl: Kubectl) -> None:
    out = kubectl.run("api-resources").stdout
    lines = {ln.split()[0]: ln.split() for ln in out.splitlines()[1:]}
    assert lines["persistentvolumes"][1:] == ["pv", "v1", "false", "PersistentVolume"]
    assert lines["persistentvolumeclaims"][1:] == ["pvc", "v1", "true", "PersistentVolumeClaim"]
    assert lines["storageclasses"][1:] == [
        "sc",
        "storage.k8s.io/v1",
        "false",
        "StorageClass",
    ]


def test_quota_counts_the_default_class(kubectl: Kubectl, server: Server) -> None:
    """DefaultStorageClass runs before the quota admission: a claim naming no class is
    weighed against the default class's quota (as kube orders its admission plugins)."""
    ns = _ns(kubectl, server, "quota")
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "q"},
        "spec": {
            "hard": {
                "requests.storage": "1Gi",
                "local-path.storageclass.storage.k8s.io/persistentvolumeclaims": "0",
            }
        },
    }
    kubectl.run("apply", "-n", ns, "-f", "-", input=_yaml(quota))
    # counted, as the resourcequota controller (not running here) would
    qpath = f"/api/v1/namespaces/{ns}/resourcequotas/q"
    code, made = server.json("GET", qpath)
    hard = quota["spec"]["hard"]
    made["status"] = {"hard": hard, "used": {k: "0" for k in hard}}
    code, out = server.json("PUT", f"{qpath}/status", made)
    assert code == 200, out
    path = f"/api/v1/namespaces/{ns}/persistentvolumeclaims"
    code, out = server.json("POST", path, _claim("default-class"))
    assert code == 403, out
    assert "exceeded quota: q" in out["message"]
    assert "local-path.storageclass.storage.k8s.io/persistentvolumeclaims=0" in out["message"]
    code, out = server.json("POST", path, _claim("other", storageClassName="manual"))
    assert code == 201, out
    code, out = server.json(
        "POST",
        path,
        _claim("big", storageClassName="manual", resources={"requests": {"storage": "2Gi"}}),
    )
    assert code == 403 and "requests.storage" in out["message"], out
