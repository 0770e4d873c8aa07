"""The horizontal pod autoscaler's arithmetic (kube's replica calculator and behavior) and
the HorizontalPodAutoscaler's defaulting and validation."""

from __future__ import annotations

import json
from typing import Any

import pytest

import kubemodel
from kubemodel.errors import FieldError
from orchestrator.controllers.podautoscaler import (
    MetricError,
    _policy_limit,
    resource_replicas,
)


def pod(name: str, cpu_request: str | None = "100m", phase: str = "Running",
        ready: bool = True) -> dict[str, Any]:  # fmt: skip
    resources = {"requests": {"cpu": cpu_request}} if cpu_request else {}
    return {
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"containers": [{"name": "c", "image": "x", "resources": resources}]},
        "status": {
            "phase": phase,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


UTIL_50 = {"type": "Utilization", "averageUtilization": 50}


def test_utilization_scales_in_proportion() -> None:
    pods = [pod("a"), pod("b")]
    # 100m used of 100m requested each: 100% against 50%: twice the pods
    p = resource_replicas(2, pods, {"a": 100, "b": 100}, "cpu", UTIL_50)
    assert (p.replicas, p.utilization, p.average) == (4, 100, 100)
    # 25% against 50%: half
    assert resource_replicas(2, pods, {"a": 25, "b": 25}, "cpu", UTIL_50).replicas == 1
    # within the 10% tolerance: no change
    assert resource_replicas(2, pods, {"a": 54, "b": 54}, "cpu", UTIL_50).replicas == 2


def test_missing_metrics_and_unready_pods_damp_a_change() -> None:
    pods = [pod("a"), pod("b"), pod("c", ready=False)]
    # scale-up: the unready pod counts as using nothing: (200 + 0) over 3 pods of 100m
    # is 66% against 50%: ceil(1.33 * 3) = 4 (not ceil(2 * 2) = 4 by luck: see below)
    p = resource_replicas(3, pods, {"a": 100, "b": 100}, "cpu", UTIL_50)
    assert p.replicas == 4 and p.utilization == 100
    # a pod without metrics on a scale-down counts at its full request: no change
    pods = [pod("a"), pod("b"), pod("c")]
    assert resource_replicas(3, pods, {"a": 10, "b": 10}, "cpu", UTIL_50).replicas == 3
    # ... and on a scale-up as using nothing
    assert resource_replicas(3, pods, {"a": 300, "b": 300}, "cpu", UTIL_50).replicas == 12


def test_errors_are_kubes() -> None:
    with pytest.raises(MetricError, match="missing request for cpu in pod a"):
        resource_replicas(1, [pod("a", cpu_request=None)], {"a": 5}, "cpu", UTIL_50)
    with pytest.raises(MetricError, match="did not receive metrics for targeted pods"):
        resource_replicas(1, [pod("a")], {}, "cpu", UTIL_50)
    with pytest.raises(MetricError, match="no pods returned by selector"):
        resource_replicas(1, [], {}, "cpu", UTIL_50)


def test_average_value_target() -> None:
    pods = [pod("a"), pod("b")]
    target = {"type": "AverageValue", "averageValue": "100m"}
    assert resource_replicas(2, pods, {"a": 300, "b": 300}, "cpu", target).replicas == 6
    assert resource_replicas(2, pods, {"a": 105, "b": 100}, "cpu", target).replicas == 2


def test_policy_limits() -> None:
    assert _policy_limit(None, 1, True) == 5  # the larger of +4 and +100%
    assert _policy_limit(None, 10, True) == 20
    rules = {"policies": [{"type": "Pods", "value": 1, "periodSeconds": 15}]}
    assert _policy_limit(rules, 3, True) == 4
    down = {"policies": [{"type": "Percent", "value": 50, "periodSeconds": 15}]}
    assert _policy_limit(down, 10, False) == 5
    assert _policy_limit({**rules, "selectPolicy": "Disabled"}, 3, True) == 3


def hpa(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "maxReplicas": 5,
            **spec,
        },
    }


def test_defaults() -> None:
    h = kubemodel.to_dict(kubemodel.decode(hpa(), kubemodel.HorizontalPodAutoscaler))
    assert h["spec"]["minReplicas"] == 1
    assert h["spec"]["metrics"] == [
        {"type": "Resource",
         "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}
    ]  # fmt: skip
    h = kubemodel.to_dict(
        kubemodel.decode(hpa(behavior={"scaleDown": {}}), kubemodel.HorizontalPodAutoscaler)
    )
    assert h["spec"]["behavior"]["scaleUp"]["policies"][0] == {
        "type": "Pods", "value": 4, "periodSeconds": 15,
    }  # fmt: skip
    assert h["spec"]["behavior"]["scaleDown"]["selectPolicy"] == "Max"


@pytest.mark.parametrize(
    ("spec", "field", "text"),
    [
        ({"minReplicas": 0}, "spec.minReplicas", "must be greater than or equal to 1"),
        ({"minReplicas": 6}, "spec.maxReplicas", "must be greater than or equal to `minReplicas`"),
        ({"maxReplicas": 0}, "spec.maxReplicas", "must be greater than 0"),
        ({"scaleTargetRef": {"kind": "", "name": "x"}}, "spec.scaleTargetRef.kind", "Required"),
        ({"metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
            "type": "Utilization"}}}]}, "spec.metrics[0].resource.target.averageUtilization",
         "Required value"),
        ({"metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
            "type": "Value", "value": "1"}}}]}, "spec.metrics[0].resource.target.type",
         "Unsupported value"),
        ({"metrics": [{"type": "Nope"}]}, "spec.metrics[0].type", "Unsupported value"),
        ({"metrics": [{"type": "Pods"}]}, "spec.metrics[0].pods", "Required value"),
        ({"behavior": {"scaleUp": {"stabilizationWindowSeconds": 4000}}},
         "spec.behavior.scaleUp.stabilizationWindowSeconds", "less than or equal to 3600"),
        ({"behavior": {"scaleDown": {"policies": [{"type": "Pods", "value": 0,
                                                   "periodSeconds": 15}]}}},
         "spec.behavior.scaleDown.policies[0].value", "greater than zero"),
    ],
)  # fmt: skip
def test_validation(spec: dict[str, Any], field: str, text: str) -> None:
    with pytest.raises(FieldError) as e:
        kubemodel.decode(hpa(**spec), kubemodel.HorizontalPodAutoscaler)
    assert e.value.field == field and text in str(e.value), (e.value.field, str(e.value))


# ----------------------------------------------------------------------------- autoscaling/v1


def test_v1_cpu_target_round_trips() -> None:
    from kubemodel.autoscaling import hpa_to_v1, hpa_to_v2

    v1 = {
        "apiVersion": "autoscaling/v1",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web", "annotations": {"keep": "me"}},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 2,
            "maxReplicas": 5,
            "targetCPUUtilizationPercentage": 60,
        },
    }
    v2 = hpa_to_v2(v1)
    assert v2["apiVersion"] == "autoscaling/v2"
    assert v2["spec"]["metrics"] == [{"type": "Resource", "resource": {
        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}}]  # fmt: skip
    assert v2["metadata"]["annotations"] == {"keep": "me"}
    back = hpa_to_v1(v2)
    assert back == v1


def test_v2_only_parts_ride_in_annotations() -> None:
    from kubemodel.autoscaling import (
        BEHAVIOR_ANNOTATION,
        CONDITIONS_ANNOTATION,
        CURRENT_METRICS_ANNOTATION,
        METRICS_ANNOTATION,
        hpa_to_v1,
        hpa_to_v2,
    )

    v2 = hpa(
        minReplicas=1,
        metrics=[
            {"type": "Resource", "resource": {"name": "cpu", "target": {
                "type": "Utilization", "averageUtilization": 50}}},
            {"type": "Resource", "resource": {"name": "memory", "target": {
                "type": "AverageValue", "averageValue": "100Mi"}}},
            {"type": "External", "external": {"metric": {"name": "queue"}, "target": {
                "type": "Value", "value": "10"}}},
        ],
        behavior={"scaleDown": {"stabilizationWindowSeconds": 60}},
    )  # fmt: skip
    v2["status"] = {
        "currentReplicas": 2,
        "desiredReplicas": 3,
        "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu", "current": {
            "averageUtilization": 75, "averageValue": "75m"}}}],
        "conditions": [{"type": "AbleToScale", "status": "True", "reason": "R"}],
    }  # fmt: skip
    v1 = hpa_to_v1(v2)
    notes = v1["metadata"]["annotations"]
    assert v1["spec"]["targetCPUUtilizationPercentage"] == 50
    assert v1["status"]["currentCPUUtilizationPercentage"] == 75
    assert json.loads(notes[METRICS_ANNOTATION]) == [
        {"type": "Resource", "resource": {"name": "memory", "targetAverageValue": "100Mi"}},
        {"type": "External", "external": {"metricName": "queue", "targetValue": "10"}},
    ]
    assert json.loads(notes[CURRENT_METRICS_ANNOTATION]) == [{"type": "Resource", "resource": {
        "name": "cpu", "currentAverageUtilization": 75, "currentAverageValue": "75m"}}]  # fmt: skip
    assert json.loads(notes[BEHAVIOR_ANNOTATION]) == {
        "scaleDown": {"stabilizationWindowSeconds": 60}
    }
    assert json.loads(notes[CONDITIONS_ANNOTATION])[0]["type"] == "AbleToScale"
    again = hpa_to_v2(v1)
    assert again["spec"] == v2["spec"]
    assert again["status"] == v2["status"]
    assert "annotations" not in again["metadata"]


def test_an_hpa_is_synced_once_a_period_unless_its_spec_changed() -> None:
    """Its own status writes come back as watch events: they must not make a second sync
    (and a second scale step) within the period; a spec change (generation) does."""
    import asyncio

    from orchestrator.controllers.base import InformerFactory
    from orchestrator.controllers.fake import FakeClient
    from orchestrator.controllers.podautoscaler import HPAS, HorizontalPodAutoscalerController

    async def body() -> None:
        client = FakeClient()
        obj = hpa()
        obj["spec"]["scaleTargetRef"] = {"apiVersion": "example.com/v1", "kind": "Thing",
                                         "name": "x"}  # fmt: skip
        client.add(HPAS, obj)
        factory = InformerFactory(client)  # type: ignore[arg-type]
        ctrl = HorizontalPodAutoscalerController(client, factory)  # type: ignore[arg-type]
        await factory.relist()
        assert await ctrl.reconcile("default/web") == ctrl.sync_period
        assert [a.verb for a in client.take()] == ["update_status"]
        # an event for the HPA (its status changed) before the period ends: not synced
        client.mutate(HPAS, "default", "web", status={"conditions": []})
        await factory.relist()
        again = await ctrl.reconcile("default/web")
        assert again is not None and 0 < again <= ctrl.sync_period
        assert client.take() == []  # within the period: nothing looked at, nothing written
        client.mutate(HPAS, "default", "web", metadata={"generation": 2})
        await factory.relist()
        assert await ctrl.reconcile("default/web") == ctrl.sync_period
        assert [a.verb for a in client.take()] == ["update_status"]

    asyncio.run(body())
