"""Label selectors as Kubernetes matches them: a metav1.LabelSelector against an object's
labels, and one requirement (of a label selector, or a node selector term of affinity)
against the value its key has. The one implementation the API server, the scheduler, the
controllers, the kubelet's volumes and the network policies use."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["label_selector_matches", "requirement_matches"]


def requirement_matches(expr: Mapping[str, Any], value: str | None) -> bool:
    """One requirement (``key``, ``operator``, ``values``) against the value its key has
    (None: the key is not there). ``Gt`` and ``Lt`` (node selector terms only) compare one
    integer; an unknown operator matches nothing."""
    op, values = expr.get("operator"), expr.get("values") or []
    if op == "In":
        return value is not None and value in values
    if op == "NotIn":
        return value is None or value not in values
    if op == "Exists":
        return value is not None
    if op == "DoesNotExist":
        return value is None
    if op in ("Gt", "Lt") and value is not None and len(values) == 1:
        try:
            have, want = int(value), int(values[0])
        except ValueError:
            return False
        return have > want if op == "Gt" else have < want
    return False


def label_selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """metav1.LabelSelector semantics: None matches nothing, {} matches everything."""
    if selector is None:
        return False
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    return all(
        requirement_matches(e, labels.get(e.get("key", "")))
        for e in selector.get("matchExpressions") or ()
    )
