"""Discovery documents (``/api``, ``/apis``, ``/api/v1``, ``/apis/<group>/<version>``) and
``/version``, built from the table of kinds."""

from __future__ import annotations

from typing import Any

from .resources import GROUPS, Resource, custom_resources

__all__ = [
    "KUBERNETES_VERSION",
    "api_versions",
    "group",
    "group_list",
    "groups_served",
    "resource_list",
    "version",
]

KUBERNETES_VERSION = (1, 32)  # the API the object model's schema describes

# Kinds that are created and answered, never stored (security.py): group -> (resource, kind,
# namespaced), all v1 and "create" only.
REVIEWS: dict[str, list[tuple[str, str, bool]]] = {
    "authentication.k8s.io": [
        ("selfsubjectreviews", "SelfSubjectReview", False),
        ("tokenreviews", "TokenReview", False),
    ],
    "authorization.k8s.io": [
        ("localsubjectaccessreviews", "LocalSubjectAccessReview", True),
        ("selfsubjectaccessreviews", "SelfSubjectAccessReview", False),
        ("selfsubjectrulesreviews", "SelfSubjectRulesReview", False),
        ("subjectaccessreviews", "SubjectAccessReview", False),
    ],
}


# Groups served apart from the table of kinds, in a version of their own: group -> (version,
# [(resource, kind, namespaced)]), each read with get and list (metricsapi.py).
READ_ONLY: dict[str, tuple[str, list[tuple[str, str, bool]]]] = {
    "metrics.k8s.io": ("v1beta1", [("nodes", "NodeMetrics", False), ("pods", "PodMetrics", True)]),
}


def version() -> dict[str, Any]:
    from corral_common.version import version as corral_version

    major, minor = KUBERNETES_VERSION
    return {
        "major": str(major),
        "minor": str(minor),
        "gitVersion": f"v{major}.{minor}.0+corral-{corral_version()}",
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "",
        "compiler": "corral",
        "platform": "linux/amd64",
    }


def api_versions(server_address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    }


def groups_served() -> dict[str, dict[str, list[Resource]]]:
    """The table's groups, and those of the custom resources served now (their versions in
    kube's priority order: v2 before v1 before v1beta1 ...)."""
    customs = custom_resources()
    if not customs:
        return GROUPS
    out = {g: dict(vs) for g, vs in GROUPS.items()}
    for r in customs:
        out.setdefault(r.group, {}).setdefault(r.version, []).append(r)
    for g in {r.group for r in customs}:
        out[g] = {v: out[g][v] for v in sorted(out[g], key=version_priority)}
    return out


def version_priority(v: str) -> tuple[int, int, int, str]:
    """kube's sort of versions: GA, then beta, then alpha (higher numbers first), then
    other names alphabetically."""
    import re

    m = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", v)
    if m is None:
        return (3, 0, 0, v)
    level = {None: 0, "beta": 1, "alpha": 2}[m.group(2)]
    return (level, -int(m.group(1)), -int(m.group(3) or 0), v)


def _group(name: str) -> dict[str, Any]:
    groups = groups_served()
    served = [READ_ONLY[name][0]] if name in READ_ONLY else groups.get(name, ["v1"])
    versions = [{"groupVersion": f"{name}/{v}", "version": v} for v in served]
    return {"name": name, "versions": versions, "preferredVersion": versions[0]}


def group_list() -> dict[str, Any]:
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [_group(g) for g in (*groups_served(), *REVIEWS, *READ_ONLY) if g],
    }


def group(name: str) -> dict[str, Any] | None:
    if not name or (name not in groups_served() and name not in REVIEWS and name not in READ_ONLY):
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(name)}


def _entry(r: Resource) -> dict[str, Any]:
    e: dict[str, Any] = {
        "name": r.name,
        "singularName": r.singular,
        "namespaced": r.namespaced,
        "kind": r.kind,
        "verbs": r.verbs,
    }
    if r.short_names:
        e["shortNames"] = list(r.short_names)
    if r.categories:
        e["categories"] = list(r.categories)
    return e


def resource_list(group_name: str, ver: str) -> dict[str, Any] | None:
    gv = f"{group_name}/{ver}" if group_name else ver
    if group_name in READ_ONLY:
        if ver != READ_ONLY[group_name][0]:
            return None
        listed = [
            {"name": n, "singularName": "", "namespaced": ns, "kind": k, "verbs": ["get", "list"]}
            for n, k, ns in READ_ONLY[group_name][1]
        ]
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": gv,
            "resources": listed,
        }
    if group_name in REVIEWS and ver == "v1":
        reviews = [
            {"name": n, "singularName": k.lower(), "namespaced": ns, "kind": k, "verbs": ["create"]}
            for n, k, ns in REVIEWS[group_name]
        ]
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": gv,
            "resources": reviews,
        }
    resources = groups_served().get(group_name, {}).get(ver)
    if resources is None:
        return None
    out: list[dict[str, Any]] = []
    for r in resources:
        out.append(_entry(r))
        for sub in r.subresources:
            e: dict[str, Any] = {
                "name": f"{r.name}/{sub}",
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": ["get", "patch", "update"],
            }
            if sub == "scale":
                e.update(group="autoscaling", version="v1", kind="Scale")
            elif sub == "binding":
                e.update(kind="Binding", verbs=["create"])
            elif sub in ("exec", "attach", "portforward"):
                kind = {"exec": "PodExecOptions", "attach": "PodAttachOptions"}.get(
                    sub, "PodPortForwardOptions"
                )
                e.update(kind=kind, verbs=["create", "get"])
            elif sub == "proxy":
                kind = {"pods": "PodProxyOptions", "services": "ServiceProxyOptions"}.get(
                    r.name, "NodeProxyOptions"
                )
                e.update(kind=kind, verbs=["create", "delete", "get", "patch", "update"])
            elif sub == "eviction":
                e.update(group="policy", version="v1", kind="Eviction", verbs=["create"])
            out.append(e)
        if r.name == "serviceaccounts":
            out.append(
                {
                    "name": "serviceaccounts/token",
                    "singularName": "",
                    "namespaced": True,
                    "group": "authentication.k8s.io",
                    "version": "v1",
                    "kind": "TokenRequest",
                    "verbs": ["create"],
                }
            )
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": out}
