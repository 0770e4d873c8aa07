"""HorizontalPodAutoscaler (autoscaling/v2): kube-apiserver's defaulting (minReplicas 1, a
CPU utilization target of 80% when no metric is given, the scaling rules of a behavior that
is given) and validation (its autoscaling validation package's rules, worded as it words
them)."""

from __future__ import annotations

import json
from typing import Any

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
from kubemodel.names import check_path_segment
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


def _target_ref(ref: CrossVersionObjectReference, field: str) -> None:
    if not ref.kind:
        raise FieldError(at(field, "kind"), "Required value")
    check_path_segment(ref.kind, at(field, "kind"))
    if not ref.name:
        raise FieldError(at(field, "name"), "Required value")
    check_path_segment(ref.name, at(field, "name"))


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


# ----------------------------------------------------------------------------- autoscaling/v1
# kube stores autoscaling/v2 and serves v1 converted: v1 has one CPU utilization target; what
# v2 holds besides (other metrics, their statuses, the conditions, the behavior) rides in
# annotations, in v1's own metric format (the v2beta1 one), as kube's conversion writes them.

METRICS_ANNOTATION = "autoscaling.alpha.kubernetes.io/metrics"
CURRENT_METRICS_ANNOTATION = "autoscaling.alpha.kubernetes.io/current-metrics"
CONDITIONS_ANNOTATION = "autoscaling.alpha.kubernetes.io/conditions"
BEHAVIOR_ANNOTATION = "autoscaling.alpha.kubernetes.io/behavior"
ROUND_TRIP = (METRICS_ANNOTATION, CURRENT_METRICS_ANNOTATION, CONDITIONS_ANNOTATION,
              BEHAVIOR_ANNOTATION)  # fmt: skip

_Obj = dict[str, Any]


def _is_cpu_utilization(m: _Obj) -> bool:
    r = m.get("resource") or {}
    return (
        m.get("type") == "Resource"
        and r.get("name") == "cpu"
        and (r.get("target") or {}).get("averageUtilization") is not None
    )


def _drop_none(d: _Obj) -> _Obj:
    return {k: v for k, v in d.items() if v is not None}


def _spec_to_v1(m: _Obj) -> _Obj:
    """A v2 MetricSpec in v1's (v2beta1's) form."""
    typ = m.get("type")
    if typ in ("Resource", "ContainerResource"):
        key = "resource" if typ == "Resource" else "containerResource"
        src = m.get(key) or {}
        t = src.get("target") or {}
        out = _drop_none({
            "name": src.get("name"), "container": src.get("container"),
            "targetAverageUtilization": t.get("averageUtilization"),
            "targetAverageValue": t.get("averageValue"),
        })  # fmt: skip
        return {"type": typ, key: out}
    if typ == "Pods":
        src = m.get("pods") or {}
        metric = src.get("metric") or {}
        return {"type": typ, "pods": _drop_none({
            "metricName": metric.get("name"), "selector": metric.get("selector"),
            "targetAverageValue": (src.get("target") or {}).get("averageValue"),
        })}  # fmt: skip
    if typ == "Object":
        src = m.get("object") or {}
        metric, t = src.get("metric") or {}, src.get("target") or {}
        return {"type": typ, "object": _drop_none({
            "target": src.get("describedObject"), "metricName": metric.get("name"),
            "selector": metric.get("selector"), "targetValue": t.get("value"),
            "averageValue": t.get("averageValue"),
        })}  # fmt: skip
    if typ == "External":
        src = m.get("external") or {}
        metric, t = src.get("metric") or {}, src.get("target") or {}
        return {"type": typ, "external": _drop_none({
            "metricName": metric.get("name"), "metricSelector": metric.get("selector"),
            "targetValue": t.get("value"), "targetAverageValue": t.get("averageValue"),
        })}  # fmt: skip
    return {"type": typ}


def _value_target(average: Any, value: Any) -> _Obj:
    """v1's averageValue-or-value target as v2's MetricTarget."""
    if average is not None:
        return {"type": "AverageValue", "averageValue": average}
    return {"type": "Value", "value": value}


def _spec_to_v2(m: _Obj) -> _Obj:
    """A v1 (v2beta1-form) MetricSpec as v2's."""
    typ = m.get("type")
    if typ in ("Resource", "ContainerResource"):
        key = "resource" if typ == "Resource" else "containerResource"
        src = m.get(key) or {}
        if src.get("targetAverageUtilization") is not None:
            target = {"type": "Utilization", "averageUtilization": src["targetAverageUtilization"]}
        else:
            target = {"type": "AverageValue", "averageValue": src.get("targetAverageValue")}
        return {"type": typ, key: _drop_none({
            "name": src.get("name"), "container": src.get("container"), "target": target,
        })}  # fmt: skip
    if typ == "Pods":
        src = m.get("pods") or {}
        return {"type": typ, "pods": {
            "metric": _drop_none({"name": src.get("metricName"), "selector": src.get("selector")}),
            "target": {"type": "AverageValue", "averageValue": src.get("targetAverageValue")},
        }}  # fmt: skip
    if typ == "Object":
        src = m.get("object") or {}
        return {"type": typ, "object": {
            "describedObject": src.get("target"),
            "metric": _drop_none({"name": src.get("metricName"), "selector": src.get("selector")}),
            "target": _value_target(src.get("averageValue"), src.get("targetValue")),
        }}  # fmt: skip
    if typ == "External":
        src = m.get("external") or {}
        target = _value_target(src.get("targetAverageValue"), src.get("targetValue"))
        return {"type": typ, "external": {
            "metric": _drop_none({"name": src.get("metricName"),
                                  "selector": src.get("metricSelector")}),
            "target": target,
        }}  # fmt: skip
    return {"type": typ}


def _status_to_v1(m: _Obj) -> _Obj:
    typ = m.get("type")
    key = {"Resource": "resource", "ContainerResource": "containerResource", "Pods": "pods",
           "Object": "object", "External": "external"}.get(str(typ))  # fmt: skip
    if key is None:
        return {"type": typ}
    src = m.get(key) or {}
    cur = src.get("current") or {}
    if key in ("resource", "containerResource"):
        out = _drop_none({
            "name": src.get("name"), "container": src.get("container"),
            "currentAverageUtilization": cur.get("averageUtilization"),
            "currentAverageValue": cur.get("averageValue"),
        })  # fmt: skip
    elif key == "pods":
        metric = src.get("metric") or {}
        out = _drop_none({"metricName": metric.get("name"), "selector": metric.get("selector"),
                          "currentAverageValue": cur.get("averageValue")})  # fmt: skip
    elif key == "object":
        metric = src.get("metric") or {}
        out = _drop_none({
            "target": src.get("describedObject"), "metricName": metric.get("name"),
            "selector": metric.get("selector"), "currentValue": cur.get("value"),
            "averageValue": cur.get("averageValue"),
        })  # fmt: skip
    else:
        metric = src.get("metric") or {}
        out = _drop_none({
            "metricName": metric.get("name"), "metricSelector": metric.get("selector"),
            "currentValue": cur.get("value"), "currentAverageValue": cur.get("averageValue"),
        })  # fmt: skip
    return {"type": typ, key: out}


def _status_to_v2(m: _Obj) -> _Obj:
    typ = m.get("type")
    key = {"Resource": "resource", "ContainerResource": "containerResource", "Pods": "pods",
           "Object": "object", "External": "external"}.get(str(typ))  # fmt: skip
    if key is None:
        return {"type": typ}
    src = m.get(key) or {}
    if key in ("resource", "containerResource"):
        cur = _drop_none({"averageUtilization": src.get("currentAverageUtilization"),
                          "averageValue": src.get("currentAverageValue")})  # fmt: skip
        out = _drop_none({"name": src.get("name"), "container": src.get("container"),
                          "current": cur})  # fmt: skip
    elif key == "pods":
        out = {"metric": _drop_none({"name": src.get("metricName"),
                                     "selector": src.get("selector")}),
               "current": _drop_none({"averageValue": src.get("currentAverageValue")})}  # fmt: skip
    elif key == "object":
        out = {"describedObject": src.get("target"),
               "metric": _drop_none({"name": src.get("metricName"),
                                     "selector": src.get("selector")}),
               "current": _drop_none({"value": src.get("currentValue"),
                                      "averageValue": src.get("averageValue")})}  # fmt: skip
    else:
        out = {"metric": _drop_none({"name": src.get("metricName"),
                                     "selector": src.get("metricSelector")}),
               "current": _drop_none({"value": src.get("currentValue"),
                                      "averageValue": src.get("currentAverageValue")})}  # fmt: skip
    return {"type": typ, key: out}


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def hpa_to_v1(obj: _Obj) -> _Obj:
    """A stored (autoscaling/v2) HorizontalPodAutoscaler as autoscaling/v1 serves it."""
    out = {k: v for k, v in obj.items() if k not in ("spec", "status")}
    out["apiVersion"] = "autoscaling/v1"
    meta = dict(out.get("metadata") or {})
    notes = {k: v for k, v in (meta.get("annotations") or {}).items() if k not in ROUND_TRIP}
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    metrics = spec.get("metrics") or []
    v1spec = _drop_none({
        "scaleTargetRef": spec.get("scaleTargetRef"),
        "minReplicas": spec.get("minReplicas"),
        "maxReplicas": spec.get("maxReplicas"),
    })  # fmt: skip
    for m in metrics:
        if _is_cpu_utilization(m):
            v1spec["targetCPUUtilizationPercentage"] = m["resource"]["target"]["averageUtilization"]
            break
    others = [_spec_to_v1(m) for m in metrics if not _is_cpu_utilization(m)]
    if others:
        notes[METRICS_ANNOTATION] = _compact(others)
    current = status.get("currentMetrics") or []
    if current:
        notes[CURRENT_METRICS_ANNOTATION] = _compact([_status_to_v1(m) for m in current])
    if spec.get("behavior") is not None:
        notes[BEHAVIOR_ANNOTATION] = _compact(spec["behavior"])
    if status.get("conditions"):
        notes[CONDITIONS_ANNOTATION] = _compact(status["conditions"])
    if notes:
        meta["annotations"] = notes
    else:
        meta.pop("annotations", None)
    out["metadata"] = meta
    out["spec"] = v1spec
    if status:
        v1status = _drop_none({
            "observedGeneration": status.get("observedGeneration"),
            "lastScaleTime": status.get("lastScaleTime"),
            "currentReplicas": status.get("currentReplicas", 0),
            "desiredReplicas": status.get("desiredReplicas", 0),
        })  # fmt: skip
        for m in current:
            r = m.get("resource") or {}
            util = (r.get("current") or {}).get("averageUtilization")
            if m.get("type") == "Resource" and r.get("name") == "cpu" and util is not None:
                v1status["currentCPUUtilizationPercentage"] = util
                break
        out["status"] = v1status
    return out


def _note(notes: _Obj, key: str) -> Any:
    text = notes.pop(key, None)
    if text is None:
        return None
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return None


def hpa_to_v2(obj: _Obj) -> _Obj:
    """An autoscaling/v1 HorizontalPodAutoscaler as it is stored (autoscaling/v2)."""
    out = {k: v for k, v in obj.items() if k not in ("spec", "status")}
    out["apiVersion"] = "autoscaling/v2"
    meta = dict(out.get("metadata") or {}) if isinstance(out.get("metadata"), dict) else {}
    notes = dict(meta.get("annotations") or {})
    others = _note(notes, METRICS_ANNOTATION)
    current = _note(notes, CURRENT_METRICS_ANNOTATION)
    behavior = _note(notes, BEHAVIOR_ANNOTATION)
    conditions = _note(notes, CONDITIONS_ANNOTATION)
    if notes:
        meta["annotations"] = notes
    else:
        meta.pop("annotations", None)
    if "metadata" in out:
        out["metadata"] = meta
    spec = obj.get("spec")
    if isinstance(spec, dict):
        v2spec = {k: spec[k] for k in ("scaleTargetRef", "minReplicas", "maxReplicas")
                  if k in spec}  # fmt: skip
        metrics = []
        cpu = spec.get("targetCPUUtilizationPercentage")
        if cpu is not None:
            metrics.append({"type": "Resource", "resource": {
                "name": "cpu", "target": {"type": "Utilization", "averageUtilization": cpu},
            }})  # fmt: skip
        if isinstance(others, list):
            metrics += [_spec_to_v2(m) for m in others if isinstance(m, dict)]
        if metrics:
            v2spec["metrics"] = metrics
        if isinstance(behavior, dict):
            v2spec["behavior"] = behavior
        out["spec"] = v2spec
    elif spec is not None:
        out["spec"] = spec  # the decoder names what is wrong with it
    status = obj.get("status")
    if isinstance(status, dict):
        v2status = {k: status[k] for k in ("observedGeneration", "lastScaleTime",
                    "currentReplicas", "desiredReplicas") if k in status}  # fmt: skip
        if isinstance(current, list):
            v2status["currentMetrics"] = [_status_to_v2(m) for m in current if isinstance(m, dict)]
        elif status.get("currentCPUUtilizationPercentage") is not None:
            v2status["currentMetrics"] = [{"type": "Resource", "resource": {
                "name": "cpu",
                "current": {"averageUtilization": status["currentCPUUtilizationPercentage"]},
            }}]  # fmt: skip
        if isinstance(conditions, list):
            v2status["conditions"] = conditions
        out["status"] = v2status
    return out
