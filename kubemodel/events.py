"""Events: one object, two APIs. core/v1 Event is what is stored; events.k8s.io/v1 Event is
the same object under other names, converted both ways as kube converts them
(k8s.io/kubernetes/pkg/apis/events/v1/conversion.go): note <-> message, regarding <->
involvedObject, reportingController <-> reportingComponent, deprecatedSource/
FirstTimestamp/LastTimestamp/Count <-> source/firstTimestamp/lastTimestamp/count; metadata,
eventTime, series, reportingInstance, action, reason, related and type as they are.

Validation as kube-apiserver's (pkg/apis/core/validation/events.go): every Event passes the
legacy rules (``validate_event``); one created through events.k8s.io/v1 passes the strict
ones too (``validate_event_create_v1``). Both work on the stored (core) form."""

from __future__ import annotations

import re
from typing import Any

from kubemodel._generated import Event, EventsV1Event, Lease
from kubemodel.codec import ENCODED, VALIDATORS
from kubemodel.errors import FieldError, q
from kubemodel.names import dns_subdomain_problem, qualified_name_problem

__all__ = [
    "FIELD_LABELS_V1",
    "to_core",
    "to_events_v1",
    "validate_event",
    "validate_event_create_v1",
]

Obj = dict[str, Any]
EVENTS_V1 = "events.k8s.io/v1"

# events.k8s.io/v1 field selector labels -> the core ones they select on
# (AddFieldLabelConversionsForEvent); any other label is refused.
FIELD_LABELS_V1 = {
    "reason": "reason",
    "regarding.kind": "involvedObject.kind",
    "regarding.namespace": "involvedObject.namespace",
    "regarding.name": "involvedObject.name",
    "regarding.uid": "involvedObject.uid",
    "regarding.apiVersion": "involvedObject.apiVersion",
    "regarding.resourceVersion": "involvedObject.resourceVersion",
    "regarding.fieldPath": "involvedObject.fieldPath",
    "reportingController": "reportingComponent",
    "type": "type",
    "metadata.namespace": "metadata.namespace",
    "metadata.name": "metadata.name",
}

# (events.k8s.io/v1 name, core name), in the Go struct's order.
_RENAMED = (
    ("eventTime", "eventTime"),
    ("series", "series"),
    ("reportingController", "reportingComponent"),
    ("reportingInstance", "reportingInstance"),
    ("action", "action"),
    ("reason", "reason"),
    ("regarding", "involvedObject"),
    ("related", "related"),
    ("note", "message"),
    ("type", "type"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
)
_TO_CORE = dict(_RENAMED)
_TO_V1 = {core: v1 for v1, core in _RENAMED}

REPORTING_INSTANCE_LIMIT = 128
ACTION_LIMIT = 128
REASON_LIMIT = 128
NOTE_LIMIT = 1024


def to_events_v1(core: Obj) -> Obj:
    """The events.k8s.io/v1 form of a stored (core/v1) Event, as kube-apiserver encodes it:
    the struct fields Go writes whatever their value are there (eventTime and the deprecated
    timestamps null, regarding and deprecatedSource objects), the omitempty ones only when set."""
    out: Obj = {"kind": "Event", "apiVersion": EVENTS_V1, "metadata": core.get("metadata") or {}}
    for v1, name in _RENAMED:
        value = core.get(name)
        if value in (None, "", 0) and v1 not in ("regarding", "deprecatedSource"):
            if v1 in ("eventTime", "deprecatedFirstTimestamp", "deprecatedLastTimestamp"):
                out[v1] = None
            continue
        out[v1] = value if value is not None else {}
    return out


def to_core(v1: Obj) -> Obj:
    """The core/v1 form of an events.k8s.io/v1 Event (what is stored); the v1 form was
    decoded first (unknown fields refused there)."""
    out: Obj = {"kind": "Event", "apiVersion": "v1"}
    for key, value in v1.items():
        if key in ("kind", "apiVersion"):
            continue
        name = _TO_CORE.get(key, key)
        if value is None or (isinstance(value, dict) and not value and key != "regarding"):
            continue
        out[name] = value
    out.setdefault("involvedObject", {})
    return out


def core_path(v1_path: str) -> str:
    """A field path of the events.k8s.io/v1 form in the core one (for selectors)."""
    head, dot, rest = v1_path.partition(".")
    return _TO_CORE.get(head, head) + dot + rest


def _invalid(field: str, value: str, message: str) -> FieldError:
    return FieldError(field, f"Invalid value: {q(value)}: {message}")


def validate_event(ev: Event, core_api: bool = True) -> None:
    """legacyValidateEvent: what every Event must be, whichever API it comes through
    (``core_api``: core/v1, which names reportingController reportingComponent)."""
    ns = (ev.metadata.namespace if ev.metadata is not None else None) or ""
    involved_ns = ev.involved_object.namespace or ""
    controller_field = "reportingComponent" if core_api else "reportingController"
    if ev.event_time is None:
        if not involved_ns:
            if ns not in ("", "default"):
                raise _invalid("involvedObject.namespace", "", "does not match event.namespace")
        elif ns != involved_ns:
            raise _invalid(
                "involvedObject.namespace", involved_ns, "does not match event.namespace"
            )
    else:
        if not involved_ns and ns not in ("default", "kube-system"):
            raise _invalid("involvedObject.namespace", "", "does not match event.namespace")
        controller = ev.reporting_component or ""
        if not controller:
            raise FieldError(controller_field, "Required value")
        problem = qualified_name_problem(controller)
        if problem:
            raise _invalid(controller_field, controller, problem)
        for field, value, limit in (
            ("reportingInstance", ev.reporting_instance, REPORTING_INSTANCE_LIMIT),
            ("action", ev.action, ACTION_LIMIT),
            ("reason", ev.reason, REASON_LIMIT),
        ):
            if not value:
                raise FieldError(field, "Required value")
            if len(value) > limit:
                raise _invalid(field, "", f"can have at most {limit} characters")
        if len(ev.message or "") > NOTE_LIMIT:
            raise _invalid("message", "", f"can have at most {NOTE_LIMIT} characters")
    if problem := dns_subdomain_problem(ns):
        raise _invalid("namespace", ns, problem)


def validate_event_create_v1(ev: Event) -> None:
    """ValidateEventCreate for events.k8s.io/v1: the legacy rules (with its field names),
    then the strict ones of the new API."""
    validate_event(ev, core_api=False)
    series = ev.series
    if series is not None:  # validateV1EventSeries
        if (series.count or 0) < 2:
            raise _invalid("series.count", "", "should be at least 2")
        if series.last_observed_time is None:
            raise FieldError("series.lastObservedTime", "Required value")
    if ev.event_time is None:
        raise FieldError("eventTime", "Required value")
    if ev.type not in ("Normal", "Warning"):
        raise _invalid("type", "", f"has invalid value: {ev.type or ''}")
    for field, value in (
        ("firstTimestamp", ev.first_timestamp),
        ("lastTimestamp", ev.last_timestamp),
        ("count", ev.count),
    ):
        if value:
            raise _invalid(field, "", "needs to be unset")
    if ev.source is not None and (ev.source.component or ev.source.host):
        raise _invalid("source", "", "needs to be unset")


_SECONDS = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,6}))?(Z|[+-]\d\d:\d\d)\Z")


def micro_time(value: Any) -> Any:
    """A MicroTime as Go writes it (RFC3339Micro: always six fraction digits, which its
    parser requires: kubectl events failed on "2026-01-01T00:00:00Z")."""
    if not isinstance(value, str) or not (m := _SECONDS.match(value)):
        return value
    return f"{m[1]}.{(m[2] or '').ljust(6, '0')}{m[3]}"


def _micro_fields(obj: Obj, *paths: tuple[str, ...]) -> None:
    for path in paths:
        node: Any = obj
        for key in path[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and node.get(path[-1]) is not None:
            node[path[-1]] = micro_time(node[path[-1]])


def _encoded_event(obj: Obj) -> None:
    _micro_fields(obj, ("eventTime",), ("series", "lastObservedTime"))


def _encoded_lease(obj: Obj) -> None:
    _micro_fields(obj, ("spec", "acquireTime"), ("spec", "renewTime"))


VALIDATORS.update({Event: validate_event})
ENCODED.update({Event: _encoded_event, EventsV1Event: _encoded_event, Lease: _encoded_lease})
