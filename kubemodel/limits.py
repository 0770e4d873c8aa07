"""LimitRange as kube does it: the kind's defaulting and validation, and what its admission
(kube-apiserver's LimitRanger) does to a pod: containers get the range's default limits and
requests where they name none (the pod is annotated with what was set), then a pod whose
containers (type Container) or whole (type Pod) break min, max or maxLimitRequestRatio is
refused, in kube's words. Pure functions over JSON dicts (orchestrator/apiserver/limits.py
calls them)."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from kubemodel._generated import LimitRange, LimitRangeItem
from kubemodel.codec import DEFAULTERS, VALIDATORS
from kubemodel.errors import FieldError, q
from kubemodel.quantity import Quantity
from kubemodel.quota import Usage, add, format_quantity, quantity_of

__all__ = ["ANNOTATION", "default_pod", "pod_limit_problems"]

Obj = dict[str, Any]
ANNOTATION = "kubernetes.io/limit-ranger"


# ----------------------------------------------------------------------------- the kind


def _default_item(item: LimitRangeItem) -> None:
    """SetDefaults_LimitRangeItem: a Container range's default limit is its max, its default
    request its default limit, else its min."""
    if item.type != "Container":
        return
    default = dict(item.default or {})
    request = dict(item.default_request or {})
    for k, v in (item.max or {}).items():
        default.setdefault(k, v)
    for k, v in default.items():
        request.setdefault(k, v)
    for k, v in (item.min or {}).items():
        request.setdefault(k, v)
    item.default = default or None
    item.default_request = request or None


def _default_limit_range(lr: LimitRange) -> None:
    for item in lr.spec.limits if lr.spec is not None else []:
        _default_item(item)


def _shown(text: Quantity) -> str:
    return format_quantity(*quantity_of(str(text)))


def _invalid(path: str, value: Quantity, message: str) -> FieldError:
    return FieldError(path, f"Invalid value: {q(_shown(value))}: {message}")


# (lower, upper, the field named, kube's message) of the order a range's values must keep
_ORDER = (
    ("min", "max", "min", "min value {a} is greater than max value {b}"),
    (
        "min",
        "defaultRequest",
        "defaultRequest",
        "min value {a} is greater than default request value {b}",
    ),
    (
        "defaultRequest",
        "max",
        "defaultRequest",
        "default request value {a} is greater than max value {b}",
    ),
    (
        "defaultRequest",
        "default",
        "defaultRequest",
        "default request value {a} is greater than default limit value {b}",
    ),
    ("min", "default", "default", "min value {a} is greater than default value {b}"),
    ("default", "max", "default", "default value {a} is greater than max value {b}"),
)


def _validate_limit_range(lr: LimitRange) -> None:
    from kubemodel.pod import validate_meta

    validate_meta(lr.metadata, True)
    seen: set[str] = set()
    for i, item in enumerate(lr.spec.limits if lr.spec is not None else []):
        where = f"spec.limits[{i}]"
        if item.type in seen:
            raise FieldError(f"{where}.type", f"Duplicate value: {q(item.type)}")
        seen.add(item.type)
        if item.type == "Pod":
            for name, values in (
                ("default", item.default),
                ("defaultRequest", item.default_request),
            ):
                if values:
                    raise FieldError(
                        f"{where}.{name}", "Forbidden: may not be specified when `type` is 'Pod'"
                    )
        lists = {
            "max": item.max or {},
            "min": item.min or {},
            "default": item.default or {},
            "defaultRequest": item.default_request or {},
            "maxLimitRequestRatio": item.max_limit_request_ratio or {},
        }
        for name, values in lists.items():
            for k, v in values.items():
                if quantity_of(str(v))[0] < 0:
                    raise _invalid(f"{where}.{name}[{k}]", v, "must be greater than or equal to 0")
        keys = sorted({k for values in lists.values() for k in values})
        for k in keys:
            got = {name: values[k] for name, values in lists.items() if k in values}
            val = {name: quantity_of(str(v))[0] for name, v in got.items()}
            s = {name: _shown(v) for name, v in got.items()}
            for a, b, field, message in _ORDER:
                if a in val and b in val and val[a] > val[b]:
                    raise _invalid(
                        f"{where}.{field}[{k}]", got[field], message.format(a=s[a], b=s[b])
                    )
            if "maxLimitRequestRatio" in val:
                ratio = val["maxLimitRequestRatio"]
                path = f"{where}.maxLimitRequestRatio[{k}]"
                if ratio < 1:
                    raise _invalid(
                        path,
                        got["maxLimitRequestRatio"],
                        f"ratio {s['maxLimitRequestRatio']} is less than 1",
                    )
                if "min" in val and "max" in val and val["min"] > 0:
                    bound = val["max"] / val["min"]
                    if ratio > bound:
                        raise _invalid(
                            path,
                            got["maxLimitRequestRatio"],
                            f"ratio {s['maxLimitRequestRatio']} is greater than max/min ="
                            f" {float(bound):f}",
                        )


DEFAULTERS.update({LimitRange: _default_limit_range})
VALIDATORS.update({LimitRange: _validate_limit_range})


# ----------------------------------------------------------------------------- admission


def _items(ranges: list[Obj], kind: str) -> list[Obj]:
    out = []
    for lr in sorted(ranges, key=lambda r: (r.get("metadata") or {}).get("name", "")):
        for item in (lr.get("spec") or {}).get("limits") or []:
            if isinstance(item, dict) and item.get("type") == kind:
                out.append(item)
    return out


def default_pod(pod: Obj, ranges: list[Obj]) -> None:
    """Set the default requests and limits of the Container ranges on every container that
    names none of a resource, and annotate the pod with what was set (in place)."""
    requests: dict[str, Any] = {}
    limits: dict[str, Any] = {}
    for item in _items(ranges, "Container"):
        requests.update(item.get("defaultRequest") or {})
        limits.update(item.get("default") or {})
    if not requests and not limits:
        return
    spec = pod.get("spec")
    if not isinstance(spec, dict):
        return
    notes: list[str] = []
    for key, kind in (("initContainers", "init container"), ("containers", "container")):
        for c in spec.get(key) or []:
            if not isinstance(c, dict):
                continue
            res = c.setdefault("resources", {})
            if not isinstance(res, dict):
                continue
            set_req: list[str] = []
            set_lim: list[str] = []
            # kube decodes (and defaults) the pod before its admission: a request it does not
            # name is its limit already, where it names one
            own_limits = res.get("limits") if isinstance(res.get("limits"), dict) else {}
            for name, values, setting in (
                ("limits", limits, set_lim),
                ("requests", requests, set_req),
            ):
                have = res.get(name) if isinstance(res.get(name), dict) else {}
                for k, v in values.items():
                    if k not in have and not (name == "requests" and k in own_limits):
                        have = {**have, k: v}
                        setting.append(k)
                if have:
                    res[name] = have
            if set_req:
                notes.append(f"{', '.join(sorted(set_req))} request for {kind} {c.get('name', '')}")
            if set_lim:
                notes.append(f"{', '.join(sorted(set_lim))} limit for {kind} {c.get('name', '')}")
    if notes:
        meta = pod.setdefault("metadata", {})
        annotations = meta.get("annotations") if isinstance(meta.get("annotations"), dict) else {}
        meta["annotations"] = {
            **annotations,
            ANNOTATION: "LimitRanger plugin set: " + "; ".join(notes),
        }


def _usage(values: Any) -> Usage:
    out: Usage = {}
    for k, v in (values or {}).items() if isinstance(values, dict) else ():
        try:
            out[str(k)] = quantity_of(v)
        except FieldError:
            continue
    return out


def _check(kind: str, item: Obj, requests: Usage, limits: Usage) -> list[str]:
    """minConstraint, maxConstraint, limitRequestRatioConstraint over one set of requests
    and limits, in kube's words."""
    problems: list[str] = []
    for k, v in sorted((item.get("min") or {}).items()):
        enforced, shown = quantity_of(v)[0], format_quantity(*quantity_of(v))
        if k not in requests:
            problems.append(f"minimum {k} usage per {kind} is {shown}.  No request is specified")
        elif requests[k][0] < enforced:
            problems.append(
                f"minimum {k} usage per {kind} is {shown}, but request is"
                f" {format_quantity(*requests[k])}"
            )
        elif k in limits and limits[k][0] < enforced:
            problems.append(
                f"minimum {k} usage per {kind} is {shown}, but limit is"
                f" {format_quantity(*limits[k])}"
            )
    for k, v in sorted((item.get("max") or {}).items()):
        enforced, shown = quantity_of(v)[0], format_quantity(*quantity_of(v))
        if k not in limits:
            problems.append(f"maximum {k} usage per {kind} is {shown}.  No limit is specified")
        elif limits[k][0] > enforced:
            problems.append(
                f"maximum {k} usage per {kind} is {shown}, but limit is"
                f" {format_quantity(*limits[k])}"
            )
        elif k in requests and requests[k][0] > enforced:
            problems.append(
                f"maximum {k} usage per {kind} is {shown}, but request is"
                f" {format_quantity(*requests[k])}"
            )
    for k, v in sorted((item.get("maxLimitRequestRatio") or {}).items()):
        enforced, shown = quantity_of(v)[0], format_quantity(*quantity_of(v))
        req = requests.get(k, (Fraction(0), False))[0]
        lim = limits.get(k, (Fraction(0), False))[0]
        if req == 0:
            problems.append(
                f"{k} max limit to request ratio per {kind} is {shown}, but no request is"
                " specified or request is 0"
            )
        elif lim == 0:
            problems.append(
                f"{k} max limit to request ratio per {kind} is {shown}, but no limit is"
                " specified or limit is 0"
            )
        elif lim / req > enforced:
            problems.append(
                f"{k} max limit to request ratio per {kind} is {shown}, but provided ratio is"
                f" {float(lim / req):f}"
            )
    return problems


def _requests(resources: Obj) -> Usage:
    """A container's requests as kube sees them in admission (its pod decoded and defaulted
    first): a request it does not name is its limit."""
    return {**_usage(resources.get("limits")), **_usage(resources.get("requests"))}


def _of(c: Any, key: str) -> Usage:
    res = (c or {}).get("resources") or {}
    return _requests(res) if key == "requests" else _usage(res.get(key))


def _pod_total(spec: Obj, key: str) -> Usage:
    total: Usage = {}
    for c in spec.get("containers") or []:
        total = add(total, _of(c, key))
    for c in spec.get("initContainers") or []:
        for k, v in _of(c, key).items():
            if k not in total or total[k][0] < v[0]:
                total[k] = v
    return total


def pod_limit_problems(pod: Obj, ranges: list[Obj]) -> str | None:
    """Why the ranges refuse ``pod`` (kube's aggregate: one message, or several in [...]),
    or None."""
    spec = pod.get("spec") if isinstance(pod.get("spec"), dict) else {}
    problems: list[str] = []
    for item in _items(ranges, "Container"):
        for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
            res = (c or {}).get("resources") or {}
            problems += _check("Container", item, _requests(res), _usage(res.get("limits")))
    for item in _items(ranges, "Pod"):
        problems += _check("Pod", item, _pod_total(spec, "requests"), _pod_total(spec, "limits"))
    if not problems:
        return None
    return problems[0] if len(problems) == 1 else "[" + ", ".join(problems) + "]"
