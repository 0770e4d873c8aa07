"""PersistentVolume, PersistentVolumeClaim and StorageClass: kube-apiserver's defaults and the
main rules of its validation, on create and on update (kubemodel.storage)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

import kubemodel
from kubemodel.storage import (
    access_modes_text,
    is_default_class,
    validate_pv_update,
    validate_pvc_update,
    validate_storage_class_update,
)


def _pvc(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "1Gi"}},
    }
    base.update(spec)
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "c", "namespace": "default"},
        "spec": {k: v for k, v in base.items() if v is not None},
    }


def _pv(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "capacity": {"storage": "1Gi"},
        "hostPath": {"path": "/data/v"},
    }
    base.update(spec)
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": "v"},
        "spec": {k: v for k, v in base.items() if v is not None},
    }


def _sc(**fields: Any) -> dict[str, Any]:
    obj = {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": "s"},
        "provisioner": "corral.io/local-path",
    }
    obj.update(fields)
    return obj


def _error(obj: dict[str, Any]) -> str:
    with pytest.raises(kubemodel.FieldError) as e:
        kubemodel.decode(obj)
    return str(e.value)


def test_defaults() -> None:
    pv = kubemodel.to_dict(kubemodel.decode(_pv()))
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    assert pv["spec"]["volumeMode"] == "Filesystem"
    pvc = kubemodel.to_dict(kubemodel.decode(_pvc()))
    assert pvc["spec"]["volumeMode"] == "Filesystem"
    assert "storageClassName" not in pvc["spec"]  # the admission's job, not the model's
    sc = kubemodel.to_dict(kubemodel.decode(_sc()))
    assert (sc["reclaimPolicy"], sc["volumeBindingMode"]) == ("Delete", "Immediate")


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        (_pvc(accessModes=None), "spec.accessModes: Required value: at least 1 access mode"),
        (_pvc(accessModes=[]), "spec.accessModes: Required value"),
        (_pvc(accessModes=["Sometimes"]), 'spec.accessModes: Unsupported value: "Sometimes"'),
        (
            _pvc(accessModes=["ReadWriteOncePod", "ReadWriteOnce"]),
            "may not use ReadWriteOncePod with other access modes",
        ),
        (_pvc(resources={}), "spec.resources[storage]: Required value"),
        (
            _pvc(resources={"requests": {"storage": "0"}}),
            'spec.resources[storage]: Invalid value: "0": must be greater than zero',
        ),
        (_pvc(storageClassName="Not_A_Name"), "spec.storageClassName: Invalid value"),
        (_pvc(volumeMode="Tape"), 'spec.volumeMode: Unsupported value: "Tape"'),
        (
            _pvc(selector={"matchExpressions": [{"key": "a", "operator": "Near"}]}),
            "spec.selector.matchExpressions[0].operator: Invalid value",
        ),
        (_pv(accessModes=None), "spec.accessModes: Required value"),
        (_pv(capacity=None), "spec.capacity: Required value"),
        (_pv(capacity={"storage": "1Gi", "cpu": "1"}), "spec.capacity: Unsupported value"),
        (_pv(capacity={"storage": "0"}), "spec.capacity[storage]: Invalid value"),
        (_pv(hostPath=None), "spec: Required value: must specify a volume type"),
        (
            _pv(nfs={"server": "s", "path": "/"}),
            "spec.nfs: Forbidden: may not specify more than 1 volume type",
        ),
        (_pv(hostPath={"path": ""}), "spec.hostPath.path: Required value"),
        (_pv(hostPath={"path": "/a/../b"}), "must not contain '..'"),
        (
            _pv(hostPath=None, local={"path": "/x"}),
            "spec.nodeAffinity: Required value: Local volume requires node affinity",
        ),
        (
            _pv(persistentVolumeReclaimPolicy="Shred"),
            'spec.persistentVolumeReclaimPolicy: Unsupported value: "Shred"',
        ),
        (_pv(nodeAffinity={}), "spec.nodeAffinity.required: Required value"),
        (_sc(provisioner=""), "provisioner: Required value"),
        (_sc(provisioner="a b"), 'provisioner: Invalid value: "a b"'),
        (_sc(reclaimPolicy="Recycle"), 'reclaimPolicy: Unsupported value: "Recycle"'),
        (_sc(volumeBindingMode="Later"), 'volumeBindingMode: Unsupported value: "Later"'),
    ],
)
def test_invalid(obj: dict[str, Any], message: str) -> None:
    assert message in _error(obj)


def test_valid_local_volume() -> None:
    affinity = {
        "required": {
            "nodeSelectorTerms": [
                {
                    "matchExpressions": [
                        {"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]}
                    ]
                }
            ]
        }
    }
    kubemodel.decode(_pv(hostPath=None, local={"path": "/x"}, nodeAffinity=affinity))


def test_pvc_update() -> None:
    old = kubemodel.to_dict(kubemodel.decode(_pvc()))
    # binding sets volumeName once
    bound = copy.deepcopy(old)
    bound["spec"]["volumeName"] = "pv-1"
    validate_pvc_update(old, bound)
    bound["status"] = {"phase": "Bound"}
    moved = copy.deepcopy(bound)
    moved["spec"]["volumeName"] = "pv-2"
    with pytest.raises(kubemodel.FieldError, match="spec is immutable after creation"):
        validate_pvc_update(bound, moved)
    other_modes = copy.deepcopy(old)
    other_modes["spec"]["accessModes"] = ["ReadWriteMany"]
    with pytest.raises(kubemodel.FieldError, match="spec: Forbidden: spec is immutable"):
        validate_pvc_update(old, other_modes)
    # growth: only bound, only where the class allows expansion, never shrinking
    grown = copy.deepcopy(bound)
    grown["spec"]["resources"]["requests"]["storage"] = "2Gi"
    validate_pvc_update(bound, grown, expandable=True)
    with pytest.raises(kubemodel.FieldError, match="storageclass that provisions the pvc must"):
        validate_pvc_update(bound, grown, expandable=False)
    with pytest.raises(kubemodel.FieldError, match="can not be less than previous value"):
        validate_pvc_update(grown, bound, expandable=True)
    unbound_grown = copy.deepcopy(old)
    unbound_grown["spec"]["resources"]["requests"]["storage"] = "2Gi"
    with pytest.raises(kubemodel.FieldError, match="spec is immutable"):
        validate_pvc_update(old, unbound_grown, expandable=True)
    labels = copy.deepcopy(old)  # metadata and status are not the spec
    labels["metadata"]["labels"] = {"a": "b"}
    validate_pvc_update(old, labels)


def test_pv_update() -> None:
    old = kubemodel.to_dict(kubemodel.decode(_pv()))
    new = copy.deepcopy(old)
    new["spec"]["claimRef"] = {"namespace": "default", "name": "c"}
    new["spec"]["capacity"] = {"storage": "2Gi"}
    validate_pv_update(old, new)
    new["spec"]["hostPath"] = {"path": "/elsewhere", "type": ""}
    with pytest.raises(kubemodel.FieldError, match="persistentvolumesource is immutable"):
        validate_pv_update(old, new)
    mode = copy.deepcopy(old)
    mode["spec"]["volumeMode"] = "Block"
    with pytest.raises(kubemodel.FieldError, match="spec.volumeMode"):
        validate_pv_update(old, mode)


def test_storage_class_update() -> None:
    old = kubemodel.to_dict(kubemodel.decode(_sc(parameters={"a": "b"})))
    annotated = copy.deepcopy(old)
    annotated["metadata"]["annotations"] = {"storageclass.kubernetes.io/is-default-class": "true"}
    annotated["allowVolumeExpansion"] = True
    validate_storage_class_update(old, annotated)
    assert is_default_class(annotated) and not is_default_class(old)
    for key, value in (
        ("parameters", {"a": "c"}),
        ("provisioner", "other.io/x"),
        ("reclaimPolicy", "Retain"),
    ):
        changed = dict(old, **{key: value})
        with pytest.raises(kubemodel.FieldError, match=f"{key}: Forbidden: updates to {key}"):
            validate_storage_class_update(old, changed)
    later = dict(old, volumeBindingMode="WaitForFirstConsumer")
    with pytest.raises(kubemodel.FieldError, match="volumeBindingMode: Invalid value"):
        validate_storage_class_update(old, later)


def test_access_modes_text() -> None:
    assert access_modes_text(["ReadWriteMany", "ReadWriteOnce", "ReadWriteOnce"]) == "RWO,RWX"
    assert access_modes_text(None) == ""


def test_statefulset_mounts_may_name_its_claim_templates() -> None:
    sts = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db", "namespace": "default"},
        "spec": {
            "serviceName": "db",
            "selector": {"matchLabels": {"app": "db"}},
            "template": {
                "metadata": {"labels": {"app": "db"}},
                "spec": {
                    "containers": [
                        {
                            "name": "c",
                            "image": "x",
                            "volumeMounts": [{"name": "state", "mountPath": "/s"}],
                        }
                    ]
                },
            },
            "volumeClaimTemplates": [{"metadata": {"name": "state"}, "spec": {}}],
        },
    }
    out = kubemodel.to_dict(kubemodel.decode(sts))
    assert "volumes" not in out["spec"]["template"]["spec"]  # validated with, stored without
    sts["spec"]["volumeClaimTemplates"] = []
    assert 'no volume named "state"' in _error(sts)
    sts["spec"]["volumeClaimTemplates"] = [{"metadata": {"name": "state"}, "spec": {}}]
    sts["spec"]["persistentVolumeClaimRetentionPolicy"] = {"whenScaled": "Shred"}
    assert "whenScaled: Unsupported value" in _error(sts)
