"""Discovery documents (``/api``, ``/apis``, ``/api/v1``, ``/apis/<group>/<version>``) and
``/version``, built from the table of kinds."""

from __future__ import annotations

from typing import Any

from .resources import GROUPS, VERBS, Resource

__all__ = ["KUBERNETES_VERSION", "api_versions", "group", "group_list", "resource_list", "version"]

KUBERNETES_VERSION = (1, 32)  # the API the object model's schema describes


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


def _group(name: str) -> dict[str, Any]:
    versions = [{"groupVersion": f"{name}/{v}", "version": v} for v in GROUPS[name]]
    return {"name": name, "versions": versions, "preferredVersion": versions[0]}


def group_list() -> dict[str, Any]:
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [_group(g) for g in GROUPS if g],
    }


def group(name: str) -> dict[str, Any] | None:
    if not name or name not in GROUPS:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(name)}


def _entry(r: Resource) -> dict[str, Any]:
    e: dict[str, Any] = {
        "name": r.name,
        "singularName": r.singular,
        "namespaced": r.namespaced,
        "kind": r.kind,
        "verbs": VERBS,
    }
    if r.short_names:
        e["shortNames"] = list(r.short_names)
    if r.categories:
        e["categories"] = list(r.categories)
    return e


def resource_list(group_name: str, ver: str) -> dict[str, Any] | None:
    resources = GROUPS.get(group_name, {}).get(ver)
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
            elif sub == "eviction":
                e.update(group="policy", version="v1", kind="Eviction", verbs=["create"])
            out.append(e)
    gv = f"{group_name}/{ver}" if group_name else ver
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": out}
