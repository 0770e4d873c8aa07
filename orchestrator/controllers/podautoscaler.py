"""The horizontal pod autoscaler (kube-controller-manager's, autoscaling/v2), over the
resource metrics the API server serves (``metrics.k8s.io``, from the kubelets).

Every SYNC_PERIOD (15 s, ``--horizontal-pod-autoscaler-sync-period``) each HPA is looked at:
the target's ``scale`` subresource gives its replicas, its selector its pods; each Resource or
ContainerResource metric proposes a replica count as kube's replica calculator does (the
usage of the ready pods with metrics over their requests, against the target; no change
within a 10% tolerance; pods without metrics and unready pods weighed so that they damp a
change, never cause one); the highest proposal wins. Then the behavior: scale-ups at most
by its policies per period (default: the larger of 4 pods and 100%), scale-downs only to the
highest recommendation of the stabilization window (default 300 s), all within
[minReplicas, maxReplicas]. The scale is written, with a SuccessfulRescale event, and the
status (currentReplicas, desiredReplicas, currentMetrics, the AbleToScale, ScalingActive and
ScalingLimited conditions) as kube words them. Pods, Object and External metrics need the
custom and external metrics APIs, which Corral does not serve: such a metric makes the HPA
ScalingActive False, as on a cluster without those adapters."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

from kubemodel.errors import FieldError
from kubemodel.quantity import parse_quantity
from orchestrator.client import ClientError, Conflict, NotFound, Obj, ResourceRef
from orchestrator.client.rest import (
    DEPLOYMENTS,
    PODS,
    REPLICASETS,
    REPLICATIONCONTROLLERS,
    STATEFULSETS,
)

from .base import Client, Controller, InformerFactory
from .util import format_time, get_condition, is_pod_ready, labels_of, meta, selector_matches
from .util import selector_string as _selector_string

__all__ = [
    "HPAS",
    "POD_METRICS",
    "HorizontalPodAutoscalerController",
    "Proposal",
    "resource_replicas",
]

log = logging.getLogger("corral.controllers.podautoscaler")

HPAS = ResourceRef("autoscaling", "v2", "horizontalpodautoscalers", True, "HorizontalPodAutoscaler")
POD_METRICS = ResourceRef("metrics.k8s.io", "v1beta1", "pods", True, "PodMetrics")
SYNC_PERIOD = 15.0
TOLERANCE = 0.1
DOWNSCALE_WINDOW = 300  # seconds: the default scale-down stabilization window
TARGETS: dict[tuple[str, str], ResourceRef] = {
    ("apps", "Deployment"): DEPLOYMENTS,
    ("apps", "ReplicaSet"): REPLICASETS,
    ("apps", "StatefulSet"): STATEFULSETS,
    ("", "ReplicationController"): REPLICATIONCONTROLLERS,
}


class MetricError(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


@dataclass(frozen=True)
class Proposal:
    replicas: int
    utilization: int | None  # percent of the requests, for a Utilization target
    average: int  # per pod: millicores (cpu) or bytes


def _amount(resource: str, text: Any) -> int:
    """cpu in millicores, anything else in units (bytes), rounded up as kube's MilliValue
    and Value round."""
    try:
        a = parse_quantity(text)
    except FieldError:
        return 0
    return a.milli() if resource == "cpu" else a.ceil()


def _format(resource: str, amount: int) -> str:
    return f"{amount}m" if resource == "cpu" else str(amount)


def _requests(pod: Obj, resource: str, container: str | None) -> int | None:
    """The pod's request of ``resource`` (of ``container`` alone, when given); None when a
    container lacks one."""
    total = 0
    for c in (pod.get("spec") or {}).get("containers") or []:
        if container is not None and c.get("name") != container:
            continue
        value = ((c.get("resources") or {}).get("requests") or {}).get(resource)
        if value is None:
            return None
        total += _amount(resource, value)
    return total


def resource_replicas(
    current: int,
    pods: list[Obj],
    usage: dict[str, int],
    resource: str,
    target: Obj,
    container: str | None = None,
) -> Proposal:
    """kube's GetResourceReplicas / GetRawResourceReplicas: the replica count ``target``
    asks for, from ``usage`` (pod name -> millicores or bytes) of ``pods``."""
    if not pods:
        raise MetricError(
            "FailedGetResourceMetric",
            "no pods returned by selector while calculating replica count",
        )
    ready: dict[str, int] = {}
    unready: list[str] = []
    missing: list[str] = []
    for pod in pods:
        m, phase = meta(pod), (pod.get("status") or {}).get("phase")
        if m.get("deletionTimestamp") or phase == "Failed":
            continue
        name = m["name"]
        if phase == "Pending" or (resource == "cpu" and not is_pod_ready(pod)):
            unready.append(name)
        elif name not in usage:
            missing.append(name)
        else:
            ready[name] = usage[name]
    if not ready:
        raise MetricError(
            "FailedGetResourceMetric",
            f"failed to get {resource} utilization: did not receive metrics for targeted pods "
            "(pods might be unready)",
        )
    by_name = {meta(p)["name"]: p for p in pods}
    utilization_target = target.get("averageUtilization")
    if target.get("type") == "Utilization" and utilization_target is not None:
        requests: dict[str, int] = {}
        for name in [*ready, *missing, *unready]:
            req = _requests(by_name[name], resource, container)
            if req is None or req == 0:
                raise MetricError(
                    "FailedGetResourceMetric",
                    f"failed to get {resource} utilization: missing request for {resource}"
                    f" in pod {name}",
                )
            requests[name] = req

        def ratio_of(values: dict[str, int]) -> tuple[float, int]:
            util = sum(values.values()) * 100 / sum(requests[n] for n in values)
            return util / utilization_target, int(util)

        ratio, util = ratio_of(ready)
        average = sum(ready.values()) // len(ready)
        up_with_unready = bool(unready) and ratio > 1.0
        if not up_with_unready and not missing:
            if abs(1.0 - ratio) <= TOLERANCE:
                return Proposal(current, util, average)
            return Proposal(math.ceil(ratio * len(ready)), util, average)
        values = dict(ready)
        fallback = max(100, utilization_target) / 100
        for name in missing:
            # missing metrics: the full request when scaling down, nothing when scaling up
            values[name] = int(requests[name] * fallback) if ratio < 1.0 else 0
        if up_with_unready:
            values.update({n: 0 for n in unready})
        new_ratio, _ = ratio_of(values)
        if (
            abs(1.0 - new_ratio) <= TOLERANCE
            or (ratio < 1.0 < new_ratio)
            or (new_ratio < 1.0 < ratio)
        ):
            return Proposal(current, util, average)
        replicas = math.ceil(new_ratio * len(values))
        if (new_ratio < 1.0 and replicas > current) or (new_ratio > 1.0 and replicas < current):
            return Proposal(current, util, average)
        return Proposal(replicas, util, average)
    if target.get("type") == "AverageValue" and target.get("averageValue") is not None:
        want = _amount(resource, target["averageValue"])
        if want <= 0:
            raise MetricError("FailedGetResourceMetric", "invalid target averageValue")
        total = sum(ready.values())
        average = total // len(ready)
        ratio = total / (want * len(ready))
        if abs(1.0 - ratio) <= TOLERANCE:
            return Proposal(current, None, average)
        return Proposal(math.ceil(total / want), None, average)
    raise MetricError(
        "FailedGetResourceMetric",
        f"invalid target for {resource}: a Utilization or AverageValue target is needed",
    )


def _policy_limit(rules: Obj | None, current: int, up: bool) -> int:
    """The furthest the behavior's policies let one period move from ``current``."""
    if up and rules is None:
        return max(current + 4, current * 2)
    if rules is None:
        return 0
    limits = []
    for p in rules.get("policies") or []:
        step = (
            p.get("value", 0)
            if p.get("type") == "Pods"
            else math.ceil(current * p.get("value", 0) / 100)
        )
        limits.append(current + step if up else current - step)
    if not limits:
        return max(current + 4, current * 2) if up else 0
    pick = rules.get("selectPolicy") or "Max"
    if pick == "Disabled":
        return current
    if up:
        return max(limits) if pick == "Max" else min(limits)
    return min(limits) if pick == "Max" else max(limits)


def _condition(typ: str, status: bool, reason: str, message: str) -> Obj:
    return {"type": typ, "status": "True" if status else "False", "reason": reason,
            "message": message}  # fmt: skip


class HorizontalPodAutoscalerController(Controller):
    name = "horizontalpodautoscaling"
    component = "horizontal-pod-autoscaler"
    workers = 2

    def __init__(self, client: Client, factory: InformerFactory) -> None:
        super().__init__(client, factory)
        self.hpas = factory.informer(HPAS)
        self.pods = factory.informer(PODS)
        self.hpas.add_handler(self.enqueue_handler)
        self.sync_period = SYNC_PERIOD
        # key -> [(monotonic time, recommendation)], for the stabilization windows
        self._recommendations: dict[str, list[tuple[float, int]]] = {}
        # key -> (monotonic time of its last sync, the generation it saw): an HPA is synced
        # once a period (its own status writes come back as events), or when its spec changed
        self._synced: dict[str, tuple[float, Any]] = {}

    async def _pod_usage(
        self, ns: str, selector: str, resource: str, container: str | None
    ) -> dict[str, int]:
        try:
            body = await self.client.list(POD_METRICS, ns, label_selector=selector)
        except ClientError as e:
            raise MetricError(
                "FailedGetResourceMetric",
                f"failed to get {resource} utilization: unable to get metrics for resource"
                f" {resource}: unable to fetch metrics from resource metrics API: {e}",
            ) from None
        out: dict[str, int] = {}
        for item in body.get("items") or []:
            total, seen = 0, False
            for c in item.get("containers") or []:
                if container is not None and c.get("name") != container:
                    continue
                value = (c.get("usage") or {}).get(resource)
                if value is not None:
                    total += _amount(resource, value)
                    seen = True
            if seen:
                out[meta(item)["name"]] = total
        return out

    async def reconcile(self, key: str) -> float | None:
        hpa = self.hpas.get(key)
        if hpa is None:
            self._recommendations.pop(key, None)
            self._synced.pop(key, None)
            return None
        m, spec = meta(hpa), hpa.get("spec") or {}
        last, generation = self._synced.get(key, (None, None))
        since = time.monotonic() - last if last is not None else None
        if since is not None and since < self.sync_period and generation == m.get("generation"):
            return self.sync_period - since
        self._synced[key] = (time.monotonic(), m.get("generation"))
        ns = m.get("namespace") or "default"
        ref = spec.get("scaleTargetRef") or {}
        group = (ref.get("apiVersion") or "").rpartition("/")[0]
        res = TARGETS.get((group, ref.get("kind") or ""))
        old_status = hpa.get("status") or {}
        status: Obj = {
            "currentReplicas": old_status.get("currentReplicas", 0),
            "desiredReplicas": old_status.get("desiredReplicas", 0),
        }
        if old_status.get("lastScaleTime"):
            status["lastScaleTime"] = old_status["lastScaleTime"]
        if m.get("generation") is not None:
            status["observedGeneration"] = m["generation"]
        conditions: list[Obj] = []
        if res is None:
            message = (
                "the HPA controller was unable to get the target's current scale: no matches"
                f' for kind "{ref.get("kind")}" in group "{group}"'
            )
            conditions.append(_condition("AbleToScale", False, "FailedGetScale", message))
            self._warn(hpa, "FailedGetScale", message)
            await self._write(hpa, status, conditions)
            return self.sync_period
        try:
            scale = await self.client.get(res, ns, ref.get("name", ""), "scale")
            target = await self.client.get(res, ns, ref.get("name", ""))
        except ClientError as e:
            message = f"the HPA controller was unable to get the target's current scale: {e}"
            conditions.append(_condition("AbleToScale", False, "FailedGetScale", message))
            self._warn(hpa, "FailedGetScale", message)
            await self._write(hpa, status, conditions)
            return self.sync_period
        current = int((scale.get("spec") or {}).get("replicas") or 0)
        status["currentReplicas"] = int((scale.get("status") or {}).get("replicas") or 0)
        low, high = int(spec.get("minReplicas") or 1), int(spec.get("maxReplicas") or 1)
        able = _condition(
            "AbleToScale", True, "SucceededGetScale",
            "the HPA controller was able to get the target's current scale",
        )  # fmt: skip
        if current == 0 and low != 0:
            status["desiredReplicas"] = 0
            conditions += [
                able,
                _condition(
                    "ScalingActive", False, "ScalingDisabled",
                    "scaling is disabled since the replica count of the target is zero",
                ),
            ]  # fmt: skip
            await self._write(hpa, status, conditions)
            return self.sync_period
        selector = (target.get("spec") or {}).get("selector")
        if ref.get("kind") == "ReplicationController":
            selector = {"matchLabels": selector or {}}
        pods = [
            p
            for p in self.pods.list()
            if meta(p).get("namespace") == ns and selector_matches(selector, labels_of(p))
        ]
        try:
            desired, metric_name, current_metrics = await self._propose(
                spec, ns, _selector_string(selector), pods, current
            )
        except MetricError as e:
            status["desiredReplicas"] = current
            conditions += [able, _condition("ScalingActive", False, e.reason, e.message)]
            self._warn(hpa, e.reason, e.message)
            await self._write(hpa, status, conditions)
            return self.sync_period
        active = _condition(
            "ScalingActive", True, "ValidMetricFound",
            f"the HPA was able to successfully calculate a replica count from {metric_name}",
        )  # fmt: skip
        wanted, able, limited = self._normalize(key, spec, current, desired, low, high, able)
        status["currentMetrics"] = current_metrics
        status["desiredReplicas"] = wanted
        if wanted != current:
            body = dict(scale)
            body["spec"] = {**(scale.get("spec") or {}), "replicas": wanted}
            try:
                await self.client.update(res, ns, body, "scale")
            except ClientError as e:
                message = f"the HPA controller was unable to update the target scale: {e}"
                conditions += [_condition("AbleToScale", False, "FailedUpdateScale", message),
                               active, limited]  # fmt: skip
                self._warn(hpa, "FailedRescale", f"New size: {wanted}; error: {e}")
                await self._write(hpa, status, conditions)
                return self.sync_period
            reason = (
                "All metrics below target" if wanted < current else f"{metric_name} above target"
            )
            self.event(hpa, "autoscaling/v2", "HorizontalPodAutoscaler", "Normal",
                       "SuccessfulRescale", f"New size: {wanted}; reason: {reason}")  # fmt: skip
            status["lastScaleTime"] = format_time()
            able = _condition(
                "AbleToScale", True, "SucceededRescale",
                f"the HPA controller was able to update the target scale to {wanted}",
            )  # fmt: skip
            log.info("hpa %s: %s from %d to %d (%s)", key, ref.get("name"), current, wanted,
                     reason)  # fmt: skip
        conditions += [able, active, limited]
        await self._write(hpa, status, conditions)
        return self.sync_period

    async def _propose(
        self, spec: Obj, ns: str, selector: str, pods: list[Obj], current: int
    ) -> tuple[int, str, list[Obj]]:
        """The highest replica count the metrics ask for, the name of the metric that asked
        it, and the currentMetrics of the status."""
        best, best_name = -1, ""
        statuses: list[Obj] = []
        for metric in spec.get("metrics") or []:
            typ = metric.get("type")
            if typ not in ("Resource", "ContainerResource"):
                api = "external.metrics.k8s.io" if typ == "External" else "custom.metrics.k8s.io"
                raise MetricError(
                    f"FailedGet{typ}Metric",
                    f"the HPA was unable to compute the replica count: unable to get {typ}"
                    f" metric: the {api} API is not served",
                )
            src = metric.get("resource" if typ == "Resource" else "containerResource") or {}
            resource, container = src.get("name", ""), src.get("container")
            usage = await self._pod_usage(ns, selector, resource, container)
            try:
                p = resource_replicas(current, pods, usage, resource, src.get("target") or {},
                                      container)  # fmt: skip
            except MetricError as e:
                raise MetricError(
                    e.reason, f"the HPA was unable to compute the replica count: {e.message}"
                ) from None
            now: Obj = {"averageValue": _format(resource, p.average)}
            if p.utilization is not None:
                now["averageUtilization"] = p.utilization
            key = "resource" if typ == "Resource" else "containerResource"
            entry = {"name": resource, "current": now}
            if container is not None:
                entry["container"] = container
            statuses.append({"type": typ, key: entry})
            name = (
                f"{resource} resource utilization (percentage of request)"
                if p.utilization is not None
                else f"{resource} resource"
            )
            if container is not None:
                name = f"{resource} container resource utilization (percentage of request)"
            if p.replicas > best:
                best, best_name = p.replicas, name
        return best, best_name, statuses

    def _normalize(
        self, key: str, spec: Obj, current: int, desired: int, low: int, high: int, able: Obj
    ) -> tuple[int, Obj, Obj]:
        """The behavior applied to ``desired``: stabilization windows, then the policies'
        limits, then [low, high]; with the AbleToScale and ScalingLimited conditions."""
        behavior = spec.get("behavior") or {}
        up_rules, down_rules = behavior.get("scaleUp"), behavior.get("scaleDown")
        up_window = int((up_rules or {}).get("stabilizationWindowSeconds") or 0)
        down_window = (down_rules or {}).get("stabilizationWindowSeconds")
        down_window = DOWNSCALE_WINDOW if down_window is None else int(down_window)
        now = time.monotonic()
        history = [
            (t, r)
            for t, r in self._recommendations.get(key, [])
            if now - t <= max(up_window, down_window)
        ]
        history.append((now, desired))
        self._recommendations[key] = history
        up = min([r for t, r in history if now - t <= up_window] or [desired])
        down = max([r for t, r in history if now - t <= down_window] or [desired])
        stabilized = current
        if stabilized < up:
            stabilized = up
        if stabilized > down:
            stabilized = down
        if stabilized != desired:
            able = _condition(
                "AbleToScale", True, "ScaleDownStabilized" if desired < current
                else "ScaleUpStabilized",
                "recent recommendations were higher than current one, applying the highest"
                " recent recommendation" if desired < current else
                "recent recommendations were lower than current one, applying the lowest"
                " recent recommendation",
            )  # fmt: skip
        limited = _condition(
            "ScalingLimited", False, "DesiredWithinRange",
            "the desired count is within the acceptable range",
        )  # fmt: skip
        wanted = stabilized
        if wanted > current:
            cap = _policy_limit(up_rules, current, True)
            if wanted > cap:
                wanted = cap
                limited = _condition(
                    "ScalingLimited", True, "ScaleUpLimit",
                    "the desired replica count is increasing faster than the maximum scale rate",
                )  # fmt: skip
        elif wanted < current:
            floor = _policy_limit(down_rules, current, False)
            if wanted < floor:
                wanted = floor
                limited = _condition(
                    "ScalingLimited", True, "ScaleDownLimit",
                    "the desired replica count is decreasing faster than the maximum scale rate",
                )  # fmt: skip
        if wanted > high:
            wanted = high
            limited = _condition(
                "ScalingLimited", True, "TooManyReplicas",
                "the desired replica count is more than the maximum replica count",
            )  # fmt: skip
        elif wanted < low:
            wanted = low
            limited = _condition(
                "ScalingLimited", True, "TooFewReplicas",
                "the desired replica count is less than the minimum replica count",
            )  # fmt: skip
        return wanted, able, limited

    def _warn(self, hpa: Obj, reason: str, message: str) -> None:
        self.event(hpa, "autoscaling/v2", "HorizontalPodAutoscaler", "Warning", reason, message)

    async def _write(self, hpa: Obj, status: Obj, conditions: list[Obj]) -> None:
        """The status, each condition keeping its lastTransitionTime while its status stays;
        not written when nothing changed."""
        old = hpa.get("status") or {}
        stamp = format_time()
        merged = []
        for c in conditions:
            before = get_condition(old, c["type"])
            same = before is not None and before.get("status") == c["status"]
            merged.append({**c, "lastTransitionTime": (before or {}).get(
                "lastTransitionTime", stamp) if same else stamp})  # fmt: skip
        status["conditions"] = merged
        if status == old:
            return
        body = dict(hpa)
        body["status"] = status
        try:
            await self.client.update_status(HPAS, meta(hpa).get("namespace"), body)
        except (Conflict, NotFound):
            pass  # changed or gone meanwhile: the next sync writes it
