"""Helpers the controllers share: label selectors, owner references, conditions, pod
readiness, int-or-percent values and timestamps, over plain JSON objects."""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from orchestrator.client import Obj, parse_time
from orchestrator.client.labels import label_selector_matches as selector_matches

__all__ = [
    "controller_ref",
    "deep_copy",
    "format_time",
    "get_condition",
    "is_pod_active",
    "is_pod_ready",
    "owner_ref",
    "pod_available",
    "pod_ready_since",
    "resolve_int_or_percent",
    "selector_matches",
    "selector_string",
    "set_condition",
]


def deep_copy(obj: Obj) -> Obj:
    """A copy to modify: cached objects are shared and never changed in place."""
    return copy.deepcopy(obj)


def now() -> datetime:
    return datetime.now(UTC)


def format_time(t: datetime | None = None) -> str:
    return (t or now()).strftime("%Y-%m-%dT%H:%M:%SZ")


def meta(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def labels_of(obj: Obj) -> Mapping[str, str]:
    return meta(obj).get("labels") or {}


def selector_string(selector: Obj | None) -> str:
    """The selector as a labelSelector query string (``kubectl get -l`` syntax)."""
    parts = [f"{k}={v}" for k, v in sorted((selector or {}).get("matchLabels", {}).items())]
    for e in (selector or {}).get("matchExpressions") or []:
        key, op, vals = e.get("key"), e.get("operator"), ",".join(e.get("values") or [])
        parts.append(
            {"In": f"{key} in ({vals})", "NotIn": f"{key} notin ({vals})", "Exists": key}.get(
                op, f"!{key}"
            )
        )
    return ",".join(parts)


def owner_ref(owner: Obj, api_version: str, kind: str) -> Obj:
    """A controller reference to ``owner`` (controller: true, blockOwnerDeletion: true)."""
    m = meta(owner)
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": m["name"],
        "uid": m["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def controller_ref(obj: Obj) -> Obj | None:
    for ref in meta(obj).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref  # type: ignore[no-any-return]
    return None


def get_condition(status: Obj | None, typ: str) -> Obj | None:
    for c in (status or {}).get("conditions") or []:
        if c.get("type") == typ:
            return c  # type: ignore[no-any-return]
    return None


def set_condition(status: Obj, cond: Obj) -> None:
    """Put ``cond`` into ``status.conditions``: unchanged when status and reason are the
    same; the transition time kept when only the reason or message changes."""
    current = get_condition(status, cond["type"])
    if current is not None:
        if current.get("status") == cond["status"] and current.get("reason") == cond.get("reason"):
            return
        if current.get("status") == cond["status"] and "lastTransitionTime" in cond:
            cond["lastTransitionTime"] = current.get("lastTransitionTime")
    status["conditions"] = [
        c for c in status.get("conditions") or [] if c.get("type") != cond["type"]
    ] + [cond]


def remove_condition(status: Obj, typ: str) -> None:
    conds = [c for c in status.get("conditions") or [] if c.get("type") != typ]
    if conds:
        status["conditions"] = conds
    else:
        status.pop("conditions", None)


def is_pod_active(pod: Obj) -> bool:
    """Not finished and not being deleted (controller.IsPodActive)."""
    phase = (pod.get("status") or {}).get("phase")
    return phase not in ("Succeeded", "Failed") and not meta(pod).get("deletionTimestamp")


def is_pod_ready(pod: Obj) -> bool:
    cond = get_condition(pod.get("status"), "Ready")
    return cond is not None and cond.get("status") == "True"


def pod_ready_since(pod: Obj) -> datetime | None:
    cond = get_condition(pod.get("status"), "Ready")
    if cond is None or cond.get("status") != "True":
        return None
    return parse_time(cond.get("lastTransitionTime")) or datetime.fromtimestamp(0, UTC)


def pod_available(pod: Obj, min_ready_seconds: int, at: datetime | None = None) -> bool:
    """Ready for at least ``min_ready_seconds`` (podutil.IsPodAvailable)."""
    since = pod_ready_since(pod)
    if since is None:
        return False
    if min_ready_seconds <= 0:
        return True
    return (since.timestamp() + min_ready_seconds) <= (at or now()).timestamp()


def resolve_int_or_percent(value: Any, total: int, round_up: bool) -> int:
    """An IntOrString against ``total``: ``3`` or ``"25%"`` (percentages rounded up or down,
    as intstr.GetScaledValueFromIntOrPercent)."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    text = str(value)
    if text.endswith("%"):
        try:
            pct = int(text[:-1])
        except ValueError:
            raise ValueError(f"invalid value for IntOrString: {text!r}") from None
        scaled = pct * total / 100
        return math.ceil(scaled) if round_up else math.floor(scaled)
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"invalid value for IntOrString: {text!r}") from None


def omit_zero(status: Obj, keep: tuple[str, ...] = ()) -> Obj:
    """Counts of 0 left out, as Go's ``omitempty`` writes them (``keep`` those that are not)."""
    return {k: v for k, v in status.items() if k in keep or not (isinstance(v, int) and v == 0)}


def creation_time(obj: Obj) -> float:
    t = parse_time(meta(obj).get("creationTimestamp"))
    return t.timestamp() if t else 0.0
