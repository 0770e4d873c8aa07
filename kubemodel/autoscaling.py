"""HorizontalPodAutoscaler (autoscaling/v2): kube-apiserver's defaulting (minReplicas 1, a
CPU utilization target of 80% when no metric is given, the scaling rules of a behavior that
is given) and validation (its autoscaling validation package's rules, worded as it words
them)."""

from __future__ import annotations

from kubemodel._generated import (
    CrossVersionObjectReference,
    HorizontalPodAutoscaler,
    HPAScalingPolicy,
    HPAScalingRules,
    MetricSpec,
    MetricTarget,
    ResourceMetricSource,
)
from kubemodel.codec import DEFAULTERS, VALIDATORS
from kubemodel.errors import FieldError, at, q
from kubemodel.pod import validate_meta
from kubemodel.quantity import parse_quantity

__all__: list[str] = []

METRIC_TYPES = ("ContainerResource", "External", "Object", "Pods", "Resource")
TARGET_TYPES = ("AverageValue", "Utilization", "Value")
MAX_PERIOD = 1800  # seconds: a scaling policy's periodSeconds
MAX_WINDOW = 3600  # seconds: a stabilization window


def scale_up_rules(rules: HPAScalingRules | None) -> HPAScalingRules:
    """GenerateHPAScaleUpRules: no stabilization, the larger of 4 pods and 100% per 15 s."""
    out = rules if rules is not None else HPAScalingRules()
    if out.stabilization_window_seconds is None:
        out.stabilization_window_seconds = 0
    if out.select_policy is None:
        out.select_policy = "Max"
    if out.policies is None:
        out.policies = [
            HPAScalingPolicy(type="Pods", value=4, period_seconds=15),
            HPAScalingPolicy(type="Percent", value=100, period_seconds=15),
        ]
    return out


def scale_down_rules(rules: HPAScalingRules | None) -> HPAScalingRules:
    """GenerateHPAScaleDownRules: 100% per 15 s, the stabilization window left to the
    controller's default (300 s) when unset."""
    out = rules if rules is not None else HPAScalingRules()
    if out.select_policy is None:
        out.select_policy = "Max"
    if out.policies is None:
        out.policies = [HPAScalingPolicy(type="Percent", value=100, period_seconds=15)]
    return out


def _default_hpa(h: HorizontalPodAutoscaler) -> None:
    spec = h.spec
    if spec is None:
        return
    if spec.min_replicas is None:
        spec.min_replicas = 1
    if not spec.metrics:
        spec.metrics = [
            MetricSpec(
                type="Resource",
                resource=ResourceMetricSource(
                    name="cpu", target=MetricTarget(type="Utilization", average_utilization=80)
                ),
            )
        ]
    if spec.behavior is not None:
        spec.behavior.scale_up = scale_up_rules(spec.behavior.scale_up)
        spec.behavior.scale_down = scale_down_rules(spec.behavior.scale_down)


def _path_segment(value: str, field: str) -> None:
    for bad in ("/", "%"):
        if bad in value:
            raise FieldError(field, f"Invalid value: {q(value)}: may not contain '{bad}'")
    if value in (".", ".."):
        raise FieldError(field, f"Invalid value: {q(value)}: may not be '{value}'")


def _target_ref(ref: CrossVersionObjectReference, field: str) -> None:
    if not ref.kind:
        raise FieldError(at(field, "kind"), "Required value")
    _path_segment(ref.kind, at(field, "kind"))
    if not ref.name:
        raise FieldError(at(field, "name"), "Required value")
    _path_segment(ref.name, at(field, "name"))


def _positive_quantity(value: object, field: str) -> None:
    if parse_quantity(str(value), field).value <= 0:
        raise FieldError(field, f"Invalid value: {q(str(value))}: must be positive")


def _target(t: MetricTarget, field: str, resource: bool) -> None:
    if t.type not in TARGET_TYPES:
        raise FieldError(
            at(field, "type"),
            f"Unsupported value: {q(t.type)}: supported values: "
            + ", ".join(q(x) for x in TARGET_TYPES),
        )
    if t.type == "Utilization" and t.average_utilization is None:
        raise FieldError(
            at(field, "averageUtilization"),
            "Required value: must set either a target raw value or a target utilization",
        )
    if t.type == "AverageValue" and t.average_value is None:
        raise FieldError(at(field, "averageValue"), "Required value: must set the target value")
    if t.type == "Value" and t.value is None:
        raise FieldError(at(field, "value"), "Required value: must set the target value")
    if t.type == "Value" and resource:
        raise FieldError(
            at(field, "type"),
            'Unsupported value: "Value": supported values: "AverageValue", "Utilization"',
        )
    if t.average_utilization is not None and t.average_utilization < 1:
        raise FieldError(
            at(field, "averageUtilization"),
            f"Invalid value: {t.average_utilization}: must be greater than 0",
        )
    if t.average_value is not None:
        _positive_quantity(t.average_value, at(field, "averageValue"))
    if t.value is not None:
        _positive_quantity(t.value, at(field, "value"))


def _metric(m: MetricSpec, field: str) -> None:
    if m.type not in METRIC_TYPES:
        raise FieldError(
            at(field, "type"),
            f"Unsupported value: {q(m.type)}: supported values: "
            + ", ".join(q(x) for x in METRIC_TYPES),
        )
    sources = {
        "ContainerResource": m.container_resource,
        "External": m.external,
        "Object": m.object,
        "Pods": m.pods,
        "Resource": m.resource,
    }
    given = [k for k, v in sources.items() if v is not None]
    key = m.type[:1].lower() + m.type[1:]
    if sources[m.type] is None:
        raise FieldError(
            at(field, key), "Required value: must populate information for the given metric source"
        )
    if len(given) > 1:
        raise FieldError(field, "Forbidden: must populate the given metric source only")
    if m.resource is not None:
        if not m.resource.name:
            raise FieldError(at(at(field, "resource"), "name"), "Required value")
        _target(m.resource.target, at(at(field, "resource"), "target"), True)
    if m.container_resource is not None:
        where = at(field, "containerResource")
        if not m.container_resource.name:
            raise FieldError(at(where, "name"), "Required value")
        if not m.container_resource.container:
            raise FieldError(at(where, "container"), "Required value")
        _target(m.container_resource.target, at(where, "target"), True)
    for name, src in (("pods", m.pods), ("object", m.object), ("external", m.external)):
        if src is None:
            continue
        where = at(field, name)
        if not src.metric.name:
            raise FieldError(at(at(where, "metric"), "name"), "Required value")
        _target(src.target, at(where, "target"), False)
        if name == "object":
            _target_ref(src.described_object, at(where, "describedObject"))  # type: ignore[union-attr]


def _rules(r: HPAScalingRules | None, field: str) -> None:
    if r is None:
        return
    w = r.stabilization_window_seconds
    if w is not None and not 0 <= w <= MAX_WINDOW:
        raise FieldError(
            at(field, "stabilizationWindowSeconds"),
            f"Invalid value: {w}: must be less than or equal to {MAX_WINDOW}"
            if w > MAX_WINDOW
            else f"Invalid value: {w}: must be greater than or equal to zero",
        )
    if r.select_policy is not None and r.select_policy not in ("Disabled", "Max", "Min"):
        raise FieldError(
            at(field, "selectPolicy"),
            f'Unsupported value: {q(r.select_policy)}: supported values: "Disabled", "Max", "Min"',
        )
    if r.policies is not None and not r.policies:
        raise FieldError(at(field, "policies"), "Required value: must specify at least one Policy")
    for i, p in enumerate(r.policies or []):
        where = at(at(field, "policies"), i)
        if p.type not in ("Percent", "Pods"):
            raise FieldError(
                at(where, "type"),
                f'Unsupported value: {q(p.type)}: supported values: "Percent", "Pods"',
            )
        if p.value <= 0:
            raise FieldError(
                at(where, "value"), f"Invalid value: {p.value}: must be greater than zero"
            )
        if not 0 < p.period_seconds <= MAX_PERIOD:
            raise FieldError(
                at(where, "periodSeconds"),
                f"Invalid value: {p.period_seconds}: must be greater than zero"
                if p.period_seconds <= 0
                else f"Invalid value: {p.period_seconds}: must be less than or equal to"
                f" {MAX_PERIOD}",
            )


def _validate_hpa(h: HorizontalPodAutoscaler) -> None:
    validate_meta(h.metadata, True, path_segment_name=True)
    spec = h.spec
    if spec is None:
        raise FieldError("spec", "Required value")
    min_replicas = spec.min_replicas
    if min_replicas is not None and min_replicas < 1:
        raise FieldError(
            "spec.minReplicas",
            f"Invalid value: {min_replicas}: must be greater than or equal to 1",
        )
    if spec.max_replicas < 1:
        raise FieldError(
            "spec.maxReplicas", f"Invalid value: {spec.max_replicas}: must be greater than 0"
        )
    if min_replicas is not None and spec.max_replicas < min_replicas:
        raise FieldError(
            "spec.maxReplicas",
            f"Invalid value: {spec.max_replicas}: must be greater than or equal to `minReplicas`",
        )
    _target_ref(spec.scale_target_ref, "spec.scaleTargetRef")
    for i, m in enumerate(spec.metrics or []):
        _metric(m, at("spec.metrics", i))
    if spec.behavior is not None:
        _rules(spec.behavior.scale_up, "spec.behavior.scaleUp")
        _rules(spec.behavior.scale_down, "spec.behavior.scaleDown")


DEFAULTERS[HorizontalPodAutoscaler] = _default_hpa
VALIDATORS[HorizontalPodAutoscaler] = _validate_hpa
