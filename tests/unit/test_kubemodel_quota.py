"""ResourceQuota's pure parts (kubemodel.quota): quantities printed as Go prints them, what
pods and objects use, scopes, the admission's answers in kube's words, validation; the
controller's count (used_by) and the kubectl table row."""

from __future__ import annotations

from datetime import UTC, datetime
from fractions import Fraction
from typing import Any

import pytest

import kubemodel
from kubemodel.errors import FieldError
from kubemodel.quota import (
    Refused,
    add,
    check_quota,
    format_quantity,
    object_usage,
    pod_usage,
    quantity_of,
)
from orchestrator.apiserver.tables import TABLES
from orchestrator.controllers.resourcequota import used_by


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("0", "0"),
        ("1", "1"),
        ("500m", "500m"),
        ("1.5", "1500m"),
        ("1000", "1k"),
        ("1500", "1500"),
        ("0.0005", "500u"),
        ("1Gi", "1Gi"),
        ("1536Mi", "1536Mi"),
        ("1024", "1024"),  # a decimal quantity stays decimal
        ("1.5Gi", "1536Mi"),
        ("1000Ki", "1000Ki"),
        ("100", "100"),
    ],
)
def test_format_quantity(text: str, shown: str) -> None:
    assert format_quantity(*quantity_of(text)) == shown


def test_add_keeps_the_first_format_unless_zero() -> None:
    a = {"m": quantity_of("1Gi")}
    assert format_quantity(*add(a, {"m": quantity_of("512Mi")})["m"]) == "1536Mi"
    zero = {"m": (Fraction(0), False)}
    assert format_quantity(*add(zero, {"m": quantity_of("512Mi")})["m"]) == "512Mi"
    assert format_quantity(*add({"m": quantity_of("1")}, {"m": quantity_of("1Ki")})["m"]) == "1025"


def _pod(
    *containers: dict[str, Any], init: list[dict[str, Any]] | None = None, **spec: Any
) -> dict:
    return {
        "metadata": {"name": "p", "namespace": "ns"},
        "spec": {
            "containers": [{"name": f"c{i}", "resources": r} for i, r in enumerate(containers)],
            "initContainers": [{"name": f"i{i}", "resources": r} for i, r in enumerate(init or [])],
            **spec,
        },
    }


def _shown(usage: dict) -> dict[str, str]:
    return {k: format_quantity(*v) for k, v in usage.items()}


def test_pod_usage() -> None:
    pod = _pod(
        {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}},
        {"requests": {"cpu": "200m"}},
        init=[{"requests": {"cpu": "1"}}],
    )
    assert _shown(pod_usage(pod)) == {
        "pods": "1",
        "count/pods": "1",
        "cpu": "1",  # the init container's is larger than the containers' sum
        "requests.cpu": "1",
        "memory": "64Mi",
        "requests.memory": "64Mi",
        "limits.memory": "128Mi",
    }
    assert pod_usage({**pod, "status": {"phase": "Succeeded"}}) == {}
    assert pod_usage({**pod, "status": {"phase": "Failed"}}) == {}
    going = {**pod, "metadata": {**pod["metadata"], "deletionTimestamp": "2026-01-01T00:00:00Z"}}
    going["metadata"]["deletionGracePeriodSeconds"] = 30
    assert pod_usage(going, datetime(2026, 1, 1, 0, 0, 10, tzinfo=UTC))
    assert pod_usage(going, datetime(2026, 1, 1, 0, 1, tzinfo=UTC)) == {}


def test_object_usage() -> None:
    assert _shown(object_usage("configmaps", "", {})) == {
        "count/configmaps": "1",
        "configmaps": "1",
    }
    assert _shown(object_usage("deployments", "apps", {})) == {"count/deployments.apps": "1"}
    lb = {"spec": {"type": "LoadBalancer", "ports": [{"port": 1}, {"port": 2}]}}
    assert _shown(object_usage("services", "", lb)) == {
        "count/services": "1",
        "services": "1",
        "services.loadbalancers": "1",
        "services.nodeports": "2",
    }


def test_claim_usage() -> None:
    claim = {"spec": {"storageClassName": "fast", "resources": {"requests": {"storage": "10Gi"}}}}
    assert _shown(object_usage("persistentvolumeclaims", "", claim)) == {
        "count/persistentvolumeclaims": "1",
        "persistentvolumeclaims": "1",
        "requests.storage": "10Gi",
        "fast.storageclass.storage.k8s.io/persistentvolumeclaims": "1",
        "fast.storageclass.storage.k8s.io/requests.storage": "10Gi",
    }
    q = _quota({"fast.storageclass.storage.k8s.io/requests.storage": "15Gi"})
    q["status"]["used"] = {"fast.storageclass.storage.k8s.io/requests.storage": "10Gi"}
    assert _refused(q, claim, "persistentvolumeclaims") == (
        "exceeded quota: q, requested: fast.storageclass.storage.k8s.io/requests.storage=10Gi,"
        " used: fast.storageclass.storage.k8s.io/requests.storage=10Gi, limited:"
        " fast.storageclass.storage.k8s.io/requests.storage=15Gi"
    )


def _quota(hard: dict[str, str], used: dict[str, str] | None = None, **spec: Any) -> dict:
    status = {"hard": hard, "used": used if used is not None else dict.fromkeys(hard, "0")}
    return {"metadata": {"name": "q"}, "spec": {"hard": hard, **spec}, "status": status}


def _refused(quota: dict, obj: dict, resource: str = "pods", group: str = "") -> str:
    with pytest.raises(Refused) as e:
        check_quota(quota, resource, group, obj, object_usage(resource, group, obj))
    return str(e.value)


def test_check_quota() -> None:
    pod = _pod({"requests": {"cpu": "600m"}, "limits": {"cpu": "1"}})
    q = _quota({"requests.cpu": "1", "pods": "5"}, {"requests.cpu": "500m", "pods": "1"})
    assert _refused(q, pod) == (
        "exceeded quota: q, requested: requests.cpu=600m, used: requests.cpu=500m, limited:"
        " requests.cpu=1"
    )
    small = _pod({"requests": {"cpu": "500m"}})
    used = check_quota(q, "pods", "", small, pod_usage(small))
    assert used is not None and _shown(used) == {"requests.cpu": "1", "pods": "2"}
    # a quota of cpu makes every container say it
    must = _quota({"limits.cpu": "4", "requests.memory": "1Gi"})
    two = _pod({"limits": {"cpu": "1"}}, {}, init=[{"requests": {"memory": "1Mi"}}])
    assert _refused(must, two) == (
        "failed quota: q: must specify limits.cpu for: c1,i0; requests.memory for: c0,c1"
    )
    # not yet counted by the controller
    fresh = {"metadata": {"name": "q"}, "spec": {"hard": {"pods": "1"}}}
    assert _refused(fresh, small) == "status unknown for quota: q, resources: pods"
    # what a quota does not name is none of its business
    assert check_quota(_quota({"secrets": "1"}), "pods", "", small, pod_usage(small)) is None
    assert _refused(_quota({"count/jobs.batch": "0"}), {}, "jobs", "batch") == (
        "exceeded quota: q, requested: count/jobs.batch=1, used: count/jobs.batch=0, limited:"
        " count/jobs.batch=0"
    )


def test_scopes() -> None:
    best_effort = _quota({"pods": "0"}, scopes=["BestEffort"])
    assert _refused(best_effort, _pod({})).startswith("exceeded quota: q")
    burstable = _pod({"requests": {"cpu": "1m"}})
    assert check_quota(best_effort, "pods", "", burstable, pod_usage(burstable)) is None
    terminating = _quota({"pods": "0"}, scopes=["Terminating"])
    assert check_quota(terminating, "pods", "", burstable, pod_usage(burstable)) is None
    deadline = _pod({}, activeDeadlineSeconds=10)
    assert _refused(terminating, deadline).startswith("exceeded quota: q")
    selector = _quota(
        {"pods": "0"},
        scopeSelector={"matchExpressions": [{"scopeName": "NotBestEffort", "operator": "Exists"}]},
    )
    assert _refused(selector, burstable).startswith("exceeded quota: q")


def test_validation() -> None:
    def error(spec: dict[str, Any]) -> str:
        with pytest.raises(FieldError) as e:
            kubemodel.decode(
                {
                    "apiVersion": "v1",
                    "kind": "ResourceQuota",
                    "metadata": {"name": "q", "namespace": "n"},
                    "spec": spec,
                }
            )
        return str(e.value)

    assert error({"hard": {"pods": "-1"}}) == (
        'spec.hard[pods]: Invalid value: "-1": must be greater than or equal to 0'
    )
    assert error({"hard": {"count/pods": "0.5"}}) == (
        'spec.hard[count/pods]: Invalid value: "500m": must be an integer'
    )
    assert error({"hard": {"gpus": "1"}}) == (
        'spec.hard[gpus]: Invalid value: "gpus": must be a standard resource for quota'
    )
    assert "conflicting scopes" in error(
        {"hard": {"pods": "1"}, "scopes": ["BestEffort", "NotBestEffort"]}
    )


def test_used_by_and_table() -> None:
    q = _quota({"pods": "5", "requests.cpu": "2", "configmaps": "3"})
    pods = [
        _pod({"requests": {"cpu": "250m"}}),
        _pod({"requests": {"cpu": "250m"}}),
        {**_pod({"requests": {"cpu": "1"}}), "status": {"phase": "Succeeded"}},
    ]
    used = used_by(q, pods, {("configmaps", ""): [{}, {}]})
    assert _shown(used) == {"pods": "2", "requests.cpu": "500m", "configmaps": "2"}
    _, row = TABLES["resourcequotas"]
    q["spec"]["hard"]["limits.memory"] = "1Gi"
    q["status"] = {
        "hard": q["spec"]["hard"],
        "used": {"pods": "2", "requests.cpu": "500m", "configmaps": "2", "limits.memory": "0"},
    }
    q["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    assert row(q, datetime(2026, 1, 1, 0, 0, 5, tzinfo=UTC)) == [
        "q",
        "5s",
        "configmaps: 2/3, pods: 2/5, requests.cpu: 500m/2",
        "limits.memory: 0/1Gi",
    ]
