"""Validation of node.k8s.io/v1 RuntimeClass as kube-apiserver 1.32 does it on create and
update (k8s.io/kubernetes/pkg/apis/node/validation, worded as it words them; the first problem
found is reported). What a RuntimeClass does to a pod that names it is admission, the API
server's (orchestrator/apiserver/runtimeclass.py); which runtime its handler is, the node's."""

from __future__ import annotations

from kubemodel._generated import ResourceRequirements, RuntimeClass
from kubemodel.codec import VALIDATORS
from kubemodel.errors import at
from kubemodel.names import check_dns_label, check_label_value
from kubemodel.pod import (
    _check_label_key,
    _validate_resources,
    _validate_toleration,
    invalid,
    validate_meta,
)

__all__ = ["validate_runtime_class_update"]


def _validate_runtime_class(rc: RuntimeClass) -> None:
    validate_meta(rc.metadata, False)
    check_dns_label(rc.handler or "", "handler")
    if rc.overhead is not None and rc.overhead.pod_fixed:
        # kube reuses the containers' resource checks on the overhead, as limits
        _validate_resources(ResourceRequirements(limits=rc.overhead.pod_fixed), "overhead")
    if rc.scheduling is not None:
        for key, value in (rc.scheduling.node_selector or {}).items():
            _check_label_key(key, "scheduling.nodeSelector")
            check_label_value(value, "scheduling.nodeSelector")
        for i, tol in enumerate(rc.scheduling.tolerations or ()):
            _validate_toleration(tol, at("scheduling.tolerations", i))


def validate_runtime_class_update(old: dict[str, object], new: dict[str, object]) -> None:
    """ValidateRuntimeClassUpdate: the handler is immutable."""
    if old.get("handler") != new.get("handler"):
        raise invalid("handler", new.get("handler") or "", "field is immutable")


VALIDATORS.update({RuntimeClass: _validate_runtime_class})
