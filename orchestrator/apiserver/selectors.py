"""Label and field selectors, parsed once per request into a predicate over an object (dict).

Label selectors: ``a=b``, ``a==b``, ``a!=b``, ``a in (x,y)``, ``a notin (x)``, ``a``, ``!a``,
comma-separated (all must hold). Field selectors: ``f=v``, ``f==v``, ``f!=v`` over the fields
kube-apiserver supports for each kind; any other field is a 400, as there.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from kubemodel.names import QUALIFIED_NAME, qualified_name_problem
from orchestrator.client.labels import label_selector_matches

from .errors import bad_request

__all__ = ["Selector", "field_selector", "label_selector", "selector_matches"]

Selector = Callable[[dict[str, Any]], bool]

_COMMON_FIELDS = ("metadata.name", "metadata.namespace")
FIELDS: dict[str, tuple[str, ...]] = {
    "pods": (
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
    ),
    "events": (
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    ),
    "secrets": ("type",),
    "namespaces": ("status.phase",),
    "nodes": ("spec.unschedulable",),
    "replicasets": ("status.replicas",),
    "replicationcontrollers": ("status.replicas",),
    "jobs": ("status.successful",),
    "certificatesigningrequests": ("spec.signerName",),
}


def _field_value(obj: dict[str, Any], path: str) -> str:
    if path == "source":  # events: source.component
        path = "source.component"
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(part)
    if cur is None:
        return "false" if path in ("spec.unschedulable", "spec.hostNetwork") else ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


def field_selector(
    text: str | None, resource: str, renames: dict[str, str] | None = None
) -> Selector | None:
    """``renames``: the labels a resource served in another form takes (events.k8s.io/v1
    Event's), each to the stored form's label it selects on; no other label."""
    if not text:
        return None
    allowed = _COMMON_FIELDS + FIELDS.get(resource, ())
    if renames is not None:
        allowed = tuple(renames)
    terms: list[tuple[str, bool, str]] = []
    for part in _split(text):
        m = re.fullmatch(r"\s*([A-Za-z0-9_.]+)\s*(==|!=|=)\s*(.*?)\s*", part)
        if m is None:
            raise bad_request(f'invalid field selector: "{part}"')
        name, op, value = m[1], m[2], m[3].replace("\\,", ",").replace("\\=", "=")
        if name not in allowed:
            raise bad_request(f"field label not supported: {name}")
        terms.append((renames[name] if renames else name, op == "!=", value))

    def match(obj: dict[str, Any]) -> bool:
        for name, negate, value in terms:
            if (_field_value(obj, name) == value) == negate:
                return False
        return True

    return match


def _split(text: str) -> list[str]:
    """Split on commas that are neither escaped nor inside parentheses."""
    parts, depth, cur, i = [], 0, "", 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            cur += text[i : i + 2]
            i += 2
            continue
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
        i += 1
    parts.append(cur)
    return [p for p in parts if p.strip()]


_KEY = r"[A-Za-z0-9](?:[-A-Za-z0-9_./]*[A-Za-z0-9])?"
_VALUE = rf"(?:{QUALIFIED_NAME.pattern})?"  # a label value: empty or a qualified name


def label_selector(text: str | None) -> Selector | None:
    if not text or not text.strip():
        return None
    tests: list[Callable[[dict[str, str]], bool]] = []
    for part in _split(text):
        part = part.strip()
        _check_requirement(part)
        if m := re.fullmatch(rf"({_KEY})\s*(==|!=|=)\s*({_VALUE})", part):
            key, op, value = m[1], m[2], m[3]
            if op == "!=":
                tests.append(lambda lb, k=key, v=value: lb.get(k) != v)
            else:
                tests.append(lambda lb, k=key, v=value: lb.get(k) == v)
        elif m := re.fullmatch(rf"({_KEY})\s+(in|notin)\s*\(([^)]*)\)", part):
            key, op = m[1], m[2]
            values = {v.strip() for v in m[3].split(",") if v.strip()}
            for v in values:
                if not re.fullmatch(_VALUE, v):
                    raise bad_request(f"unable to parse requirement: invalid label value: {v!r}")
            if op == "in":
                tests.append(lambda lb, k=key, vs=values: lb.get(k) in vs)
            else:
                tests.append(lambda lb, k=key, vs=values: lb.get(k) not in vs)
        elif m := re.fullmatch(rf"!\s*({_KEY})", part):
            tests.append(lambda lb, k=m[1]: k not in lb)
        elif m := re.fullmatch(_KEY, part):
            tests.append(lambda lb, k=part: k in lb)
        else:
            raise bad_request(f'unable to parse requirement: found "{part}", invalid selector')

    def match(obj: dict[str, Any]) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(t(labels) for t in tests)

    return match


def _check_requirement(part: str) -> None:
    """kube's selector parser validates each key (a qualified name) and value (at most 63
    characters): a 400, never a selector that can match nothing."""
    m = re.match(rf"!?\s*({_KEY})", part)
    if m and (problem := qualified_name_problem(m[1])):
        raise bad_request(f"unable to parse requirement: key {m[1]!r}: {problem}")
    for value in re.findall(r"[-A-Za-z0-9_.]{64,}", part[m.end() if m else 0 :]):
        raise bad_request(
            f"unable to parse requirement: value {value!r}: must be no more than 63 characters"
        )


def selector_matches(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """metav1.LabelSelector semantics: None matches nothing, {} matches everything."""
    return label_selector_matches(selector, labels)
