"""Admission for Ingress, as kube-apiserver's DefaultIngressClass plugin: an Ingress created
without a class (neither spec.ingressClassName nor the old kubernetes.io/ingress.class
annotation) gets the default IngressClass, the one annotated
ingressclass.kubernetes.io/is-default-class: "true" (the newest when several are)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from kubemodel.networking import INGRESS_CLASS_ANNOTATION

__all__ = ["DEFAULT_CLASS_ANNOTATION", "default_class", "set_default_class"]

Obj = dict[str, Any]
DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"


def default_class(classes: list[Obj]) -> str | None:
    """The name of the default class among ``classes``: the newest of those annotated default
    (by creationTimestamp, then name), as the plugin sorts them since kube 1.28."""
    defaults = [
        c
        for c in classes
        if ((c.get("metadata") or {}).get("annotations") or {}).get(DEFAULT_CLASS_ANNOTATION)
        == "true"
    ]
    if not defaults:
        return None
    # RFC 3339 seconds sort as text; the newest first, the smaller name first on a tie
    defaults.sort(key=lambda c: c["metadata"]["name"])
    defaults.sort(key=lambda c: c["metadata"].get("creationTimestamp") or "", reverse=True)
    return str(defaults[0]["metadata"]["name"])


async def set_default_class(ingress: Obj, classes: Callable[[], Awaitable[list[Obj]]]) -> None:
    """Fill spec.ingressClassName of a new Ingress that names no class (in place)."""
    spec = ingress.get("spec")
    if not isinstance(spec, dict) or spec.get("ingressClassName") is not None:
        return
    annotations = (ingress.get("metadata") or {}).get("annotations")
    if isinstance(annotations, dict) and INGRESS_CLASS_ANNOTATION in annotations:
        return
    name = default_class(await classes())
    if name is not None:
        spec["ingressClassName"] = name
