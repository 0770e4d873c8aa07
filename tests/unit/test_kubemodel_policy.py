"""kubemodel.policy: RBAC, PodDisruptionBudget and EndpointSlice defaults and validation."""

from __future__ import annotations

from typing import Any

import pytest

import kubemodel

RBAC = "rbac.authorization.k8s.io"


def _binding(kind: str = "RoleBinding", **changes: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": f"{RBAC}/v1",
        "kind": kind,
        "metadata": {"name": "b"},
        "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": "view"},
        "subjects": [{"kind": "User", "name": "alice"}],
    }
    obj.update(changes)
    return obj


def test_binding_subjects_defaulted() -> None:
    b = kubemodel.to_dict(kubemodel.decode(_binding()))
    assert b["subjects"] == [{"kind": "User", "name": "alice", "apiGroup": RBAC}]


@pytest.mark.parametrize(
    "obj,field,words",
    [
        (
            _binding(roleRef={"apiGroup": RBAC, "kind": "Foo", "name": "r"}),
            "roleRef.kind",
            'Unsupported value: "Foo": supported values: "Role", "ClusterRole"',
        ),
        (
            _binding("ClusterRoleBinding", roleRef={"apiGroup": RBAC, "kind": "Role", "name": "r"}),
            "roleRef.kind",
            'supported values: "ClusterRole"',
        ),
        (
            _binding(roleRef={"apiGroup": "x", "kind": "Role", "name": "r"}),
            "roleRef.apiGroup",
            "Unsupported value",
        ),
        (
            _binding("ClusterRoleBinding", subjects=[{"kind": "ServiceAccount", "name": "s"}]),
            "subjects[0].namespace",
            "Required value",
        ),
        (_binding(subjects=[{"kind": "Robot", "name": "r"}]), "subjects[0].kind", "Unsupported"),
        (
            {
                "apiVersion": f"{RBAC}/v1",
                "kind": "Role",
                "metadata": {"name": "r"},
                "rules": [{"verbs": [], "apiGroups": [""], "resources": ["pods"]}],
            },
            "rules[0].verbs",
            "Required value",
        ),
        (
            {
                "apiVersion": f"{RBAC}/v1",
                "kind": "Role",
                "metadata": {"name": "r"},
                "rules": [{"verbs": ["get"], "nonResourceURLs": ["/x"]}],
            },
            "rules[0].nonResourceURLs",
            "namespaced rules cannot apply to non-resource URLs",
        ),
        (
            {
                "apiVersion": "policy/v1",
                "kind": "PodDisruptionBudget",
                "metadata": {"name": "p"},
                "spec": {"minAvailable": 1, "maxUnavailable": 1},
            },
            "spec",
            "cannot be both set",
        ),
        (
            {
                "apiVersion": "policy/v1",
                "kind": "PodDisruptionBudget",
                "metadata": {"name": "p"},
                "spec": {"maxUnavailable": "ten"},
            },
            "spec.maxUnavailable",
            "must be an integer or percentage",
        ),
        (
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {"name": "e"},
                "addressType": "IPv4",
                "endpoints": [{"addresses": []}],
            },
            "endpoints[0].addresses",
            "at least 1 address",
        ),
    ],
)
def test_refused(obj: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(kubemodel.FieldError) as e:
        kubemodel.decode(obj)
    assert e.value.field == field and words in e.value.message


def test_valid_ones_pass() -> None:
    kubemodel.decode(
        {
            "apiVersion": f"{RBAC}/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "c"},
            "rules": [{"verbs": ["get"], "nonResourceURLs": ["/healthz"]}],
        }
    )
    kubemodel.decode(_binding(roleRef={"apiGroup": RBAC, "kind": "Role", "name": "r"}))
    kubemodel.decode(
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": "p"},
            "spec": {"maxUnavailable": "25%"},
        }
    )
