"""Validation of the RBAC kinds, PodDisruptionBudget and EndpointSlice as kube-apiserver does
it on create and update (the rules of its rbac, policy and discovery validation packages,
worded as it words them). Whether a role grants anything is not checked here: enforcement is
the authorizer's work."""

from __future__ import annotations

import re
from typing import Any

from kubemodel._generated import (
    ClusterRole,
    ClusterRoleBinding,
    EndpointSlice,
    PodDisruptionBudget,
    PolicyRule,
    Role,
    RoleBinding,
    RoleRef,
    Subject,
)
from kubemodel.codec import DEFAULTERS, VALIDATORS
from kubemodel.errors import FieldError, at, q
from kubemodel.pod import validate_meta

__all__: list[str] = []

RBAC_GROUP = "rbac.authorization.k8s.io"
_PERCENT = re.compile(r"[0-9]+%\Z")


def _unsupported(field: str, value: str, supported: list[str]) -> FieldError:
    return FieldError(
        field,
        f"Unsupported value: {q(value)}: supported values: {', '.join(q(s) for s in supported)}",
    )


def _rules(rules: list[PolicyRule] | None, namespaced: bool) -> None:
    for i, r in enumerate(rules or []):
        where = at("rules", i)
        if not r.verbs:
            raise FieldError(
                at(where, "verbs"), "Required value: verbs must contain at least one value"
            )
        if r.non_resource_ur_ls:
            urls = at(where, "nonResourceURLs")
            if namespaced:
                raise FieldError(
                    urls,
                    f"Invalid value: {r.non_resource_ur_ls!r}: namespaced rules cannot apply to"
                    " non-resource URLs",
                )
            if r.api_groups or r.resources:
                raise FieldError(
                    urls,
                    f"Invalid value: {r.non_resource_ur_ls!r}: rules cannot apply to both regular"
                    " resources and non-resource URLs",
                )
            continue
        if not r.api_groups:
            raise FieldError(
                at(where, "apiGroups"),
                "Required value: resource rules must supply at least one api group",
            )
        if not r.resources:
            raise FieldError(
                at(where, "resources"),
                "Required value: resource rules must supply at least one resource",
            )


def _validate_role(r: Role) -> None:
    validate_meta(r.metadata, True, path_segment_name=True)
    _rules(r.rules, namespaced=True)


def _validate_cluster_role(r: ClusterRole) -> None:
    validate_meta(r.metadata, False, path_segment_name=True)
    _rules(r.rules, namespaced=False)


def _role_ref(ref: RoleRef, kinds: list[str]) -> None:
    if ref.api_group != RBAC_GROUP:
        raise _unsupported("roleRef.apiGroup", ref.api_group, [RBAC_GROUP])
    if ref.kind not in kinds:
        raise _unsupported("roleRef.kind", ref.kind, kinds)
    if not ref.name:
        raise FieldError("roleRef.name", "Required value")
    if "/" in ref.name or ref.name in (".", ".."):
        raise FieldError("roleRef.name", f"Invalid value: {q(ref.name)}: may not contain '/'")


def _subjects(subjects: list[Subject] | None, namespaced: bool) -> None:
    for i, s in enumerate(subjects or []):
        where = at("subjects", i)
        if not s.name:
            raise FieldError(at(where, "name"), "Required value")
        if s.kind == "ServiceAccount":
            if s.api_group:
                raise _unsupported(at(where, "apiGroup"), s.api_group, [""])
            if not namespaced and not s.namespace:
                raise FieldError(at(where, "namespace"), "Required value")
        elif s.kind in ("User", "Group"):
            if s.api_group != RBAC_GROUP:
                raise _unsupported(at(where, "apiGroup"), s.api_group or "", [RBAC_GROUP])
        else:
            raise _unsupported(at(where, "kind"), s.kind, ["ServiceAccount", "User", "Group"])


def _validate_role_binding(b: RoleBinding) -> None:
    validate_meta(b.metadata, True, path_segment_name=True)
    _role_ref(b.role_ref, ["Role", "ClusterRole"])
    _subjects(b.subjects, namespaced=True)


def _validate_cluster_role_binding(b: ClusterRoleBinding) -> None:
    validate_meta(b.metadata, False, path_segment_name=True)
    _role_ref(b.role_ref, ["ClusterRole"])
    _subjects(b.subjects, namespaced=False)


def _int_or_percent(value: Any, field: str) -> None:
    if isinstance(value, int):
        if value < 0:
            raise FieldError(field, f"Invalid value: {value}: must be greater than or equal to 0")
    elif not _PERCENT.match(value):
        raise FieldError(
            field, f"Invalid value: {q(value)}: must be an integer or percentage (e.g '5%')"
        )
    elif int(value[:-1]) > 100:
        raise FieldError(field, f"Invalid value: {q(value)}: must not be greater than 100%")


def _validate_pdb(p: PodDisruptionBudget) -> None:
    validate_meta(p.metadata, True)
    spec = p.spec
    if spec is None:
        return
    if spec.min_available is not None and spec.max_unavailable is not None:
        raise FieldError(
            "spec", "Invalid value: minAvailable and maxUnavailable cannot be both set"
        )
    if spec.min_available is not None:
        _int_or_percent(spec.min_available, "spec.minAvailable")
    if spec.max_unavailable is not None:
        _int_or_percent(spec.max_unavailable, "spec.maxUnavailable")
    policy = spec.unhealthy_pod_eviction_policy
    if policy is not None and policy not in ("IfHealthyBudget", "AlwaysAllow"):
        raise _unsupported(
            "spec.unhealthyPodEvictionPolicy", policy, ["AlwaysAllow", "IfHealthyBudget"]
        )


def _validate_endpoint_slice(e: EndpointSlice) -> None:
    validate_meta(e.metadata, True)
    if e.address_type not in ("IPv4", "IPv6", "FQDN"):
        raise _unsupported("addressType", e.address_type, ["IPv4", "IPv6", "FQDN"])
    for i, ep in enumerate(e.endpoints or []):
        if not 1 <= len(ep.addresses) <= 100:
            raise FieldError(
                at(at("endpoints", i), "addresses"),
                "Required value: must contain at least 1 address and at most 100",
            )


def _default_subjects(b: RoleBinding | ClusterRoleBinding) -> None:
    """SetDefaults_Subject: users and groups are in the RBAC API group."""
    for s in b.subjects or []:
        if not s.api_group and s.kind in ("User", "Group"):
            s.api_group = RBAC_GROUP


def _default_endpoint_slice(e: EndpointSlice) -> None:
    """SetDefaults_EndpointPort: an unnamed port is named "" and its protocol is TCP."""
    for p in e.ports or []:
        if p.name is None:
            p.name = ""
        if p.protocol is None:
            p.protocol = "TCP"


DEFAULTERS.update(
    {
        RoleBinding: _default_subjects,
        ClusterRoleBinding: _default_subjects,
        EndpointSlice: _default_endpoint_slice,
    }
)
VALIDATORS.update(
    {
        Role: _validate_role,
        ClusterRole: _validate_cluster_role,
        RoleBinding: _validate_role_binding,
        ClusterRoleBinding: _validate_cluster_role_binding,
        PodDisruptionBudget: _validate_pdb,
        EndpointSlice: _validate_endpoint_slice,
    }
)
