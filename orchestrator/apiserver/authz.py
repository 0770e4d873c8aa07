"""Authorization: a request's attributes (kube-apiserver's RequestInfo), RBAC over caches of
the four rbac.authorization.k8s.io kinds, and the Forbidden Status worded as kube-apiserver
words it (kubectl prints it as it is).

RBAC is deny by default and purely additive: a request is allowed when a rule of a role bound
to the user (a ClusterRoleBinding anywhere, a RoleBinding in the request's namespace) matches
verb, API group, resource (``resource/subresource``, ``*``, ``*/subresource``), resource name
and, for requests outside the API, the path (``nonResourceURLs``, ``*`` suffix). Roles are not
aggregated (no ``aggregationRule``).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from .authn import UserInfo, split_service_account
from .errors import ApiError
from .objcache import ObjectCache

__all__ = [
    "Attributes",
    "Decision",
    "RbacAuthorizer",
    "forbidden",
    "request_attributes",
    "rule_allows",
]

Obj = dict[str, Any]
RBAC_GROUP = "rbac.authorization.k8s.io"
READ_VERBS = frozenset({"get", "list", "watch"})
CONNECT_SUBRESOURCES = ("exec", "attach", "portforward")  # pods/<sub>: always a create


class Decision(enum.Enum):
    ALLOW = "allow"
    DENY = "deny"
    NO_OPINION = "no-opinion"


@dataclass(frozen=True)
class Attributes:
    """What a request does (kube's authorizer.Attributes)."""

    user: UserInfo
    verb: str
    resource_request: bool
    path: str = ""
    api_group: str = ""
    api_version: str = ""
    namespace: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""
    field_selector: str = ""

    @property
    def combined_resource(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource

    @property
    def mutating(self) -> bool:
        return self.verb not in READ_VERBS and self.verb not in ("head", "options")


def request_attributes(
    user: UserInfo, method: str, path: str, query: Mapping[str, str]
) -> Attributes:
    """Parse a request as kube-apiserver's RequestInfoFactory does."""
    segs = [s for s in path.strip("/").split("/")]
    if segs and segs[-1] == "":
        segs.pop()
    if len(segs) >= 2 and segs[0] == "api":
        group, version, rest = "", segs[1], segs[2:]
    elif len(segs) >= 3 and segs[0] == "apis":
        group, version, rest = segs[1], segs[2], segs[3:]
    else:
        return Attributes(user, method.lower(), False, path=path)
    if not rest:  # discovery: /api/v1, /apis/apps/v1
        return Attributes(user, method.lower(), False, path=path)
    verb = {
        "GET": "get",
        "HEAD": "get",
        "POST": "create",
        "PUT": "update",
        "PATCH": "patch",
        "DELETE": "delete",
    }.get(method.upper(), method.lower())
    watch_path = rest[0] == "watch"
    if watch_path:
        rest = rest[1:]
    namespace = ""
    if rest and rest[0] == "namespaces":
        if len(rest) > 1:
            namespace = rest[1]
            if len(rest) > 2 and (group or rest[2] not in ("status", "finalize")):
                rest = rest[2:]
            # /namespaces/<name>[/status]: the namespace is the object itself
    resource = rest[0] if rest else ""
    name = rest[1] if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 else ""
    if resource == "namespaces" and name and not namespace:
        namespace = name
    if resource == "namespaces" and not name:
        namespace = ""
    watching = query.get("watch", "").lower() in ("true", "1")
    if verb == "get" and (watch_path or (watching and not subresource)):
        verb = "watch"
    elif verb == "get" and not name:
        verb = "list"
    if verb in ("list", "watch") and not name:
        # a list or watch of one object by field selector counts as naming it (kube)
        for term in query.get("fieldSelector", "").split(","):
            key, sep, value = term.partition("=")
            if sep and key.strip() == "metadata.name" and value.lstrip("=").strip():
                name = value.lstrip("=").strip()
    if verb == "delete" and not name:
        verb = "deletecollection"
    if resource == "pods" and subresource in CONNECT_SUBRESOURCES:
        # A WebSocket upgrade is a GET, SPDY's a POST: either is a create (kube 1.35's
        # AuthorizePodWebsocketUpgradeCreatePermission), so `get pods/exec` runs nothing.
        verb = "create"
    return Attributes(
        user,
        verb,
        True,
        path=path,
        api_group=group,
        api_version=version,
        namespace=namespace,
        resource=resource,
        subresource=subresource,
        name=name,
        field_selector=query.get("fieldSelector", ""),
    )


def forbidden(attrs: Attributes, reason: str = "") -> ApiError:
    """403 as kube-apiserver words it: ``pods is forbidden: User "x" cannot list resource
    "pods" in API group "" in the namespace "default"``."""
    who = attrs.user.name
    if not attrs.resource_request:
        msg = f'User "{who}" cannot {attrs.verb} path "{attrs.path}"'
    elif attrs.namespace:
        msg = (
            f'User "{who}" cannot {attrs.verb} resource "{attrs.combined_resource}" in API'
            f' group "{attrs.api_group}" in the namespace "{attrs.namespace}"'
        )
    else:
        msg = (
            f'User "{who}" cannot {attrs.verb} resource "{attrs.combined_resource}" in API'
            f' group "{attrs.api_group}" at the cluster scope'
        )
    if reason:
        msg += ": " + reason
    if not attrs.resource_request:
        return ApiError(403, "Forbidden", f"forbidden: {msg}", {})
    qualified = f"{attrs.resource}.{attrs.api_group}" if attrs.api_group else attrs.resource
    details: dict[str, Any] = {"kind": attrs.resource}
    if attrs.api_group:
        details["group"] = attrs.api_group
    if attrs.name:
        details["name"] = attrs.name
        return ApiError(
            403, "Forbidden", f'{qualified} "{attrs.name}" is forbidden: {msg}', details
        )
    return ApiError(403, "Forbidden", f"{qualified} is forbidden: {msg}", details)


# ---------------------------------------------------------------------- rules


def _has(values: Iterable[str] | None, want: str) -> bool:
    vals = values or ()
    return "*" in vals or want in vals


def rule_allows(rule: Mapping[str, Any], attrs: Attributes) -> bool:
    if not _has(rule.get("verbs"), attrs.verb):
        return False
    if not attrs.resource_request:
        for url in rule.get("nonResourceURLs") or ():
            if url == "*" or url == attrs.path:
                return True
            if url.endswith("*") and attrs.path.startswith(url[:-1]):
                return True
        return False
    if not _has(rule.get("apiGroups"), attrs.api_group):
        return False
    resources = rule.get("resources") or ()
    combined = attrs.combined_resource
    if not any(
        r == "*" or r == combined or (attrs.subresource and r == "*/" + attrs.subresource)
        for r in resources
    ):
        return False
    names = rule.get("resourceNames") or ()
    return not names or attrs.name in names


def subject_matches(subject: Mapping[str, Any], user: UserInfo, binding_ns: str) -> bool:
    kind = subject.get("kind")
    name = subject.get("name")
    if kind == "User":
        return name == user.name
    if kind == "Group":
        return name in user.groups
    if kind == "ServiceAccount":
        sa = split_service_account(user.name)
        return sa is not None and sa == (subject.get("namespace") or binding_ns, name)
    return False


class Authorizer(Protocol):
    async def authorize(self, attrs: Attributes) -> tuple[Decision, str]: ...


class RbacAuthorizer:
    def __init__(
        self,
        roles: ObjectCache,
        role_bindings: ObjectCache,
        cluster_roles: ObjectCache,
        cluster_role_bindings: ObjectCache,
    ) -> None:
        self.roles = roles
        self.role_bindings = role_bindings
        self.cluster_roles = cluster_roles
        self.cluster_role_bindings = cluster_role_bindings
        self.caches = (roles, role_bindings, cluster_roles, cluster_role_bindings)

    def _role_rules(self, ref: Mapping[str, Any], ns: str) -> list[Obj]:
        if ref.get("apiGroup") not in (RBAC_GROUP, None):
            return []
        if ref.get("kind") == "ClusterRole":
            role = self.cluster_roles.objects.get(("", ref.get("name") or ""))
        elif ref.get("kind") == "Role" and ns:
            role = self.roles.objects.get((ns, ref.get("name") or ""))
        else:
            return []
        return list((role or {}).get("rules") or [])

    def rules_for(self, user: UserInfo, namespace: str) -> Iterator[tuple[Obj, bool]]:
        """Every rule that applies to ``user`` in ``namespace`` ("" = cluster scope), with
        whether it came through a ClusterRoleBinding (only those grant nonResourceURLs)."""
        for crb in list(self.cluster_role_bindings.objects.values()):
            if any(subject_matches(s, user, "") for s in crb.get("subjects") or ()):
                for rule in self._role_rules(crb.get("roleRef") or {}, ""):
                    yield rule, True
        if not namespace:
            return
        for (ns, _), rb in list(self.role_bindings.objects.items()):
            if ns != namespace:
                continue
            if any(subject_matches(s, user, ns) for s in rb.get("subjects") or ()):
                for rule in self._role_rules(rb.get("roleRef") or {}, ns):
                    yield rule, False

    def allows(self, attrs: Attributes) -> bool:
        ns = attrs.namespace if attrs.resource_request else ""
        for rule, cluster_wide in self.rules_for(attrs.user, ns):
            if not attrs.resource_request and not cluster_wide:
                continue
            if rule_allows(rule, attrs):
                return True
        return False

    async def authorize(self, attrs: Attributes) -> tuple[Decision, str]:
        if self.allows(attrs):
            return Decision.ALLOW, ""
        return Decision.NO_OPINION, ""

    async def refresh(self, since: float | None = None) -> None:
        for c in self.caches:
            await c.refresh(since)


class PrivilegedGroups:
    """``system:masters`` may do anything, bindings or not (kube-apiserver authorizes it before
    any mode), so an admin cannot lock the cluster out by deleting the cluster-admin binding."""

    def __init__(self, *groups: str) -> None:
        self.groups = frozenset(groups)

    async def authorize(self, attrs: Attributes) -> tuple[Decision, str]:
        if self.groups.intersection(attrs.user.groups):
            return Decision.ALLOW, ""
        return Decision.NO_OPINION, ""


class UnionAuthorizer:
    """The first authorizer with an opinion decides (kube's ``--authorization-mode=Node,RBAC``);
    reasons of those without one are kept for the Forbidden message."""

    def __init__(self, *authorizers: Authorizer) -> None:
        self.authorizers = authorizers

    async def authorize(self, attrs: Attributes) -> tuple[Decision, str]:
        reasons = []
        for a in self.authorizers:
            decision, reason = await a.authorize(attrs)
            if decision is not Decision.NO_OPINION:
                return decision, reason
            if reason:
                reasons.append(reason)
        return Decision.NO_OPINION, ", ".join(reasons)
