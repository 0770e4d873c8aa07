"""RBAC escalation prevention, as kube-apiserver's RBAC storage does it: a user may write a
Role or ClusterRole only with rules they hold themselves (or the ``escalate`` verb on it), and
bind a role only when they hold all its rules where the binding applies (or the ``bind`` verb
on that role). Without it, anyone allowed to write rolebindings (the ``admin`` role) could bind
cluster-admin.

A rule is "held" when one of the user's rules covers it: every verb, API group, resource
(``*``, ``*/subresource``), resource name and non-resource URL (``*`` suffix) of it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from typing import Any

from .authn import UserInfo
from .authz import RbacAuthorizer

__all__ = ["missing_rules", "rule_covers"]

Obj = dict[str, Any]


def _covers_value(owner: Iterable[str], value: str) -> bool:
    vals = list(owner)
    return "*" in vals or value in vals


def _covers_resource(owner: Iterable[str], resource: str) -> bool:
    vals = list(owner)
    if "*" in vals or resource in vals:
        return True
    return "/" in resource and "*/" + resource.split("/", 1)[1] in vals


def _covers_url(owner: Iterable[str], url: str) -> bool:
    for o in owner:
        if o == "*" or o == url:
            return True
        if o.endswith("*") and url.startswith(o[:-1]) and not url.endswith("*"):
            return True
        if o.endswith("*") and url.endswith("*") and url[:-1].startswith(o[:-1]):
            return True
    return False


def _atoms(rule: Mapping[str, Any]) -> Iterable[Obj]:
    """A rule as rules of one verb, group, resource, name (or URL) each."""
    verbs = rule.get("verbs") or []
    urls = rule.get("nonResourceURLs") or []
    if urls:
        for verb, url in itertools.product(verbs, urls):
            yield {"verbs": [verb], "nonResourceURLs": [url]}
        return
    names = rule.get("resourceNames") or [""]
    for verb, group, res, name in itertools.product(
        verbs, rule.get("apiGroups") or [], rule.get("resources") or [], names
    ):
        atom: Obj = {"verbs": [verb], "apiGroups": [group], "resources": [res]}
        if name:
            atom["resourceNames"] = [name]
        yield atom


def rule_covers(owner: Mapping[str, Any], atom: Mapping[str, Any]) -> bool:
    if not _covers_value(owner.get("verbs") or [], atom["verbs"][0]):
        return False
    if "nonResourceURLs" in atom:
        return _covers_url(owner.get("nonResourceURLs") or [], atom["nonResourceURLs"][0])
    if not _covers_value(owner.get("apiGroups") or [], atom["apiGroups"][0]):
        return False
    if not _covers_resource(owner.get("resources") or [], atom["resources"][0]):
        return False
    names = owner.get("resourceNames") or []
    wanted = (atom.get("resourceNames") or [""])[0]
    return not names or (wanted != "" and wanted in names)


def missing_rules(
    rbac: RbacAuthorizer, user: UserInfo, namespace: str, rules: Iterable[Mapping[str, Any]]
) -> list[Obj]:
    """The parts of ``rules`` that ``user`` does not hold in ``namespace`` ("" = cluster)."""
    held = [(r, cluster) for r, cluster in rbac.rules_for(user, namespace)]
    missing: list[Obj] = []
    for rule in rules:
        for atom in _atoms(rule):
            urls = "nonResourceURLs" in atom
            if not any(rule_covers(r, atom) for r, cluster in held if cluster or not urls):
                missing.append(atom)
    return missing


def describe(user: UserInfo, missing: list[Obj], limit: int = 10) -> str:
    groups = " ".join(f'"{g}"' for g in user.groups)
    shown = []
    for atom in missing[:limit]:
        if "nonResourceURLs" in atom:
            shown.append(f"{{NonResourceURLs:{atom['nonResourceURLs']}, Verbs:{atom['verbs']}}}")
        else:
            names = f", ResourceNames:{atom['resourceNames']}" if atom.get("resourceNames") else ""
            shown.append(
                f"{{APIGroups:{atom['apiGroups']}, Resources:{atom['resources']}{names},"
                f" Verbs:{atom['verbs']}}}"
            )
    more = f" (and {len(missing) - limit} more)" if len(missing) > limit else ""
    return (
        f'user "{user.name}" (groups=[{groups}]) is attempting to grant RBAC permissions not'
        f" currently held:\n" + "\n".join(shown) + more
    )
