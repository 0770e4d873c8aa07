"""Corral's one model of Kubernetes objects: decode, validate, default, encode.

A leaf package: it imports nothing of Corral's (only the standard library and msgspec), so the
node (runtime.pod) and the orchestrator share it. The types are generated from the Kubernetes
OpenAPI schema (``gen.py`` -> ``_generated.py``); what kube-apiserver does beyond the schema
(defaulting, validation) is written by hand per kind (``pod.py``), as are quantities
(``quantity.py``) and the name rules (``names.py``).

    pod = kubemodel.decode(yaml.safe_load(text), kubemodel.Pod)   # FieldError names the field
    body = kubemodel.encode(pod)                                 # what the API returns

The package's names are loaded, all at once, at the first one asked for (``kubemodel.Pod``):
a process that only needs a light module (``kubemodel.quantity``, ``kubemodel.errors``,
``kubemodel.defaults``) imports it alone. An idle ``corral agent`` holds for good what it
imported (issues #15, #20), and the types and their validation are about 3 MiB.
"""

from __future__ import annotations

import importlib
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the names _load gives the package, for the type checker
    from kubemodel._generated import *  # noqa: F403
    from kubemodel.codec import decode as decode
    from kubemodel.codec import decode_json as decode_json
    from kubemodel.codec import encode as encode
    from kubemodel.codec import kind_of_type as kind_of_type
    from kubemodel.codec import to_dict as to_dict
    from kubemodel.codec import unknown_fields as unknown_fields
    from kubemodel.errors import FieldError as FieldError
    from kubemodel.quantity import Amount as Amount
    from kubemodel.quantity import Quantity as Quantity
    from kubemodel.quantity import parse_quantity as parse_quantity

_lock = threading.RLock()
_loaded = False
_loading = False  # this thread is in _load: a name asked for meanwhile is not there yet

# configdata: ConfigMap and Secret validation; events: Event (both APIs); limits: LimitRange;
# networking: Ingress, IngressClass and NetworkPolicy; pod: the Pod defaulting and validation;
# policy: RBAC, PodDisruptionBudget, EndpointSlice; quota: ResourceQuota; storage:
# PersistentVolume(Claim), StorageClass; workloads: apps/v1 and batch/v1 kinds likewise;
# autoscaling: HorizontalPodAutoscaler; certificates: CertificateSigningRequest; runtimeclass:
# RuntimeClass; admissionregistration: the webhook configurations (each registers them with the
# codec when imported).
_REGISTERING = (
    "admissionregistration",
    "autoscaling",
    "certificates",
    "configdata",
    "events",
    "limits",
    "networking",
    "pod",
    "policy",
    "quota",
    "runtimeclass",
    "storage",
    "workloads",
)
_EXPORTED = {
    "codec": ("decode", "decode_json", "encode", "kind_of_type", "to_dict", "unknown_fields"),
    "errors": ("FieldError",),
    "quantity": ("Amount", "Quantity", "parse_quantity"),
}


def _load() -> None:
    """Import the whole model into this package's namespace (once, whichever thread asks)."""
    global _loaded, _loading
    with _lock:
        if _loaded or _loading:
            return
        _loading = True
        try:
            for m in _REGISTERING:
                importlib.import_module(f"kubemodel.{m}")
            generated = importlib.import_module("kubemodel._generated")
            names = {n: getattr(generated, n) for n in generated.__all__}
            for m, attrs in _EXPORTED.items():
                module = importlib.import_module(f"kubemodel.{m}")
                names.update({n: getattr(module, n) for n in attrs})
        finally:
            _loading = False
        globals().update(names)
        globals()["__all__"] = sorted(names)
        _loaded = True


def __getattr__(name: str) -> Any:
    _load()
    try:
        return globals()[name]
    except KeyError:
        raise AttributeError(f"module 'kubemodel' has no attribute {name!r}") from None


def __dir__() -> list[str]:
    _load()
    return sorted(globals())
