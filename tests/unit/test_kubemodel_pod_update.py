"""kubemodel.pod.validate_pod_update: what kube-apiserver's ValidatePodUpdate lets change in a
stored (defaulted) pod spec."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kubemodel.errors import FieldError
from kubemodel.pod import validate_pod_update

OLD: dict[str, Any] = {
    "containers": [{"name": "c", "image": "a", "volumeMounts": [{"name": "v", "mountPath": "/v"}]}],
    "restartPolicy": "Always",
    "activeDeadlineSeconds": 60,
    "tolerations": [{"key": "t", "operator": "Exists"}],
    "schedulingGates": [{"name": "g"}],
    "terminationGracePeriodSeconds": -1,
}


def _with(**changes: Any) -> dict[str, Any]:
    spec = copy.deepcopy(OLD)
    for key, value in changes.items():
        if value is None:
            spec.pop(key, None)
        else:
            spec[key] = value
    return spec


@pytest.mark.parametrize(
    "new",
    [
        _with(),
        _with(containers=[{**OLD["containers"][0], "image": "b"}]),
        _with(activeDeadlineSeconds=30),
        _with(tolerations=[*OLD["tolerations"], {"key": "u", "operator": "Exists"}]),
        _with(schedulingGates=None),
        _with(terminationGracePeriodSeconds=1),
        _with(initContainers=[]),  # an empty list is no change
    ],
    ids=["same", "image", "deadline-down", "toleration-added", "gates-removed", "grace-1", "empty"],
)
def test_allowed(new: dict[str, Any]) -> None:
    validate_pod_update(OLD, new)


@pytest.mark.parametrize(
    "new,field",
    [
        (_with(restartPolicy="Never"), "spec"),
        (_with(nodeName="n"), "spec"),
        (_with(containers=[*OLD["containers"], {"name": "d", "image": "x"}]), "spec"),
        (_with(containers=[{"name": "c", "image": "a"}]), "spec"),  # volumeMounts gone
        (_with(activeDeadlineSeconds=90), "spec.activeDeadlineSeconds"),
        (_with(activeDeadlineSeconds=None), "spec.activeDeadlineSeconds"),
        (_with(tolerations=[]), "spec"),
        (_with(schedulingGates=[{"name": "g"}, {"name": "h"}]), "spec"),
        (_with(terminationGracePeriodSeconds=5), "spec"),
    ],
    ids=[
        "restart",
        "nodeName",
        "container-added",
        "mounts",
        "deadline-up",
        "deadline-nil",
        "toleration-removed",
        "gate-added",
        "grace",
    ],  # fmt: skip
)
def test_forbidden(new: dict[str, Any], field: str) -> None:
    with pytest.raises(FieldError) as e:
        validate_pod_update(OLD, new)
    assert e.value.field == field
    if field == "spec":
        assert e.value.message.startswith("Forbidden: pod updates may not change fields")
