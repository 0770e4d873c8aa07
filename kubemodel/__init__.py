"""Corral's one model of Kubernetes objects: decode, validate, default, encode.

A leaf package: it imports nothing of Corral's (only the standard library and msgspec), so the
node (runtime.pod) and the orchestrator share it. The types are generated from the Kubernetes
OpenAPI schema (``gen.py`` -> ``_generated.py``); what kube-apiserver does beyond the schema
(defaulting, validation) is written by hand per kind (``pod.py``), as are quantities
(``quantity.py``) and the name rules (``names.py``).

    pod = kubemodel.decode(yaml.safe_load(text), kubemodel.Pod)   # FieldError names the field
    body = kubemodel.encode(pod)                                 # what the API returns
"""

from kubemodel import configdata as _configdata  # ConfigMap and Secret validation
from kubemodel import pod as _pod  # registers the Pod defaulting and validation
from kubemodel import policy as _policy  # RBAC, PodDisruptionBudget, EndpointSlice
from kubemodel import workloads as _workloads  # apps/v1 and batch/v1 kinds likewise
from kubemodel._generated import *  # noqa: F403
from kubemodel._generated import __all__ as _types
from kubemodel.codec import decode, decode_json, encode, kind_of_type, to_dict, unknown_fields
from kubemodel.errors import FieldError
from kubemodel.quantity import Amount, Quantity, parse_quantity

__all__ = [  # noqa: PLE0604
    "Amount",
    "FieldError",
    "Quantity",
    "decode",
    "decode_json",
    "encode",
    "kind_of_type",
    "parse_quantity",
    "to_dict",
    "unknown_fields",
    *_types,
]
del _configdata, _pod, _policy, _workloads
