"""Event in its two APIs (kubemodel.events): the conversion both ways as kube's, the legacy and
strict validation, MicroTime in Go's six digits, the events.k8s.io/v1 field labels."""

from __future__ import annotations

from typing import Any

import pytest

import kubemodel
from kubemodel.errors import FieldError
from kubemodel.events import (
    FIELD_LABELS_V1,
    micro_time,
    to_core,
    to_events_v1,
    validate_event_create_v1,
)
from orchestrator.apiserver.errors import ApiError
from orchestrator.apiserver.selectors import field_selector

CORE: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Event",
    "metadata": {"name": "e", "namespace": "ns"},
    "involvedObject": {"kind": "Pod", "namespace": "ns", "name": "web"},
    "reason": "Started",
    "message": "hello",
    "source": {"component": "kubelet", "host": "n1"},
    "firstTimestamp": "2026-01-01T00:00:00Z",
    "lastTimestamp": "2026-01-01T00:00:01Z",
    "count": 2,
    "type": "Normal",
    "reportingComponent": "kubelet",
    "reportingInstance": "n1",
    "action": "Start",
    "related": {"kind": "Node", "name": "n1"},
    "series": {"count": 2, "lastObservedTime": "2026-01-01T00:00:01.000000Z"},
    "eventTime": "2026-01-01T00:00:00.000000Z",
}


def test_core_to_v1_and_back() -> None:
    v1 = to_events_v1(CORE)
    assert v1 == {
        "kind": "Event",
        "apiVersion": "events.k8s.io/v1",
        "metadata": CORE["metadata"],
        "eventTime": CORE["eventTime"],
        "series": CORE["series"],
        "reportingController": "kubelet",
        "reportingInstance": "n1",
        "action": "Start",
        "reason": "Started",
        "regarding": CORE["involvedObject"],
        "related": CORE["related"],
        "note": "hello",
        "type": "Normal",
        "deprecatedSource": CORE["source"],
        "deprecatedFirstTimestamp": CORE["firstTimestamp"],
        "deprecatedLastTimestamp": CORE["lastTimestamp"],
        "deprecatedCount": 2,
    }
    assert to_core(v1) == CORE
    kubemodel.decode(v1, kubemodel.EventsV1Event)  # a valid object of the new API


def test_go_zero_values_in_v1() -> None:
    """What Go writes for an Event made through core with no new fields: eventTime and the
    deprecated timestamps null, regarding and deprecatedSource objects, no deprecatedCount."""
    v1 = to_events_v1({"metadata": {"name": "e"}, "involvedObject": {}, "message": "m"})
    assert v1["eventTime"] is None and v1["deprecatedFirstTimestamp"] is None
    assert v1["deprecatedLastTimestamp"] is None
    assert v1["regarding"] == {} and v1["deprecatedSource"] == {}
    assert "deprecatedCount" not in v1 and "series" not in v1
    core = to_core(v1)
    assert core == {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "e"},
        "involvedObject": {},
        "message": "m",
    }


def _strict(**changes: Any) -> str | None:
    core = {k: v for k, v in CORE.items() if k not in ("source", "firstTimestamp", "count")}
    core.pop("lastTimestamp")
    core.update(changes)
    core = {k: v for k, v in core.items() if v is not None}
    try:
        validate_event_create_v1(kubemodel.decode(core, kubemodel.Event, validate=False))
    except FieldError as e:
        return str(e)
    return None


def test_strict_rules_of_v1_creates() -> None:
    assert _strict() is None
    assert _strict(eventTime=None) == "eventTime: Required value"
    assert _strict(type="Info") == 'type: Invalid value: "": has invalid value: Info'
    assert _strict(count=3) == 'count: Invalid value: "": needs to be unset'
    assert _strict(source={"host": "h"}) == 'source: Invalid value: "": needs to be unset'
    assert _strict(reportingComponent=None) == "reportingController: Required value"
    assert _strict(reportingComponent="a b").startswith(
        'reportingController: Invalid value: "a b": name part must consist'
    )
    assert _strict(action="x" * 129) == (
        'action: Invalid value: "": can have at most 128 characters'
    )
    assert _strict(series={"count": 1}) == ('series.count: Invalid value: "": should be at least 2')


def test_legacy_rules_of_every_event() -> None:
    def error(**changes: Any) -> str:
        obj = {k: v for k, v in {**CORE, **changes}.items() if v is not None}
        with pytest.raises(FieldError) as e:
            kubemodel.decode(obj, kubemodel.Event)
        return str(e.value)

    assert error(
        involvedObject={"kind": "Pod", "namespace": "other", "name": "x"}, eventTime=None
    ) == ('involvedObject.namespace: Invalid value: "other": does not match event.namespace')
    # an old-style event (no eventTime) of a cluster-scoped object lives in default
    node_event = {**CORE, "involvedObject": {"kind": "Node", "name": "n1"}}
    node_event["metadata"] = {"name": "e", "namespace": "default"}
    del node_event["eventTime"]
    kubemodel.decode(node_event, kubemodel.Event)
    assert error(reportingComponent="") == "reportingComponent: Required value"
    assert error(reason="") == "reason: Required value"


def test_micro_time() -> None:
    assert micro_time("2026-01-01T00:00:00Z") == "2026-01-01T00:00:00.000000Z"
    assert micro_time("2026-01-01T00:00:00.5Z") == "2026-01-01T00:00:00.500000Z"
    assert micro_time("2026-01-01T00:00:00.123456Z") == "2026-01-01T00:00:00.123456Z"
    stored = kubemodel.to_dict(kubemodel.decode({**CORE, "eventTime": "2026-01-01T00:00:00Z"}))
    assert stored["eventTime"] == "2026-01-01T00:00:00.000000Z"
    assert stored["series"]["lastObservedTime"] == "2026-01-01T00:00:01.000000Z"
    assert stored["firstTimestamp"] == "2026-01-01T00:00:00Z"  # a Time stays in seconds
    lease = kubemodel.to_dict(
        kubemodel.decode(
            {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": "l", "namespace": "ns"},
                "spec": {"renewTime": "2026-01-01T00:00:00Z"},
            }
        )
    )
    assert lease["spec"]["renewTime"] == "2026-01-01T00:00:00.000000Z"


def test_v1_field_selectors_select_on_the_stored_form() -> None:
    match = field_selector(
        "regarding.kind=Pod,reportingController=kubelet", "events", FIELD_LABELS_V1
    )
    assert match is not None and match(CORE)
    match = field_selector("regarding.name!=web", "events", FIELD_LABELS_V1)
    assert match is not None and not match(CORE)
    with pytest.raises(ApiError) as e:
        field_selector("involvedObject.kind=Pod", "events", FIELD_LABELS_V1)
    assert str(e.value.message if hasattr(e.value, "message") else e.value) == (
        "field label not supported: involvedObject.kind"
    )
    with pytest.raises(ApiError):
        field_selector("source=kubelet", "events", FIELD_LABELS_V1)  # core's only
