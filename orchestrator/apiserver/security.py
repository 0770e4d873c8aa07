"""The API server's front door, in kube-apiserver's filter order: authentication (401),
audit, impersonation, in-flight limits (429), authorization (403), then the request.

It also serves what is not stored but answers about access: SelfSubjectAccessReview,
SelfSubjectRulesReview, SubjectAccessReview, LocalSubjectAccessReview (authorization.k8s.io/v1),
TokenReview and SelfSubjectReview (authentication.k8s.io/v1), and the ServiceAccount
TokenRequest (``serviceaccounts/<name>/token``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
import yaml
from aiohttp import web

from . import errors, reviewproto
from .audit import AuditLog, timestamp
from .authn import (
    ANONYMOUS,
    Authenticator,
    UserInfo,
    service_account_user,
    split_service_account,
    unauthorized,
    with_authenticated,
)
from .authz import (
    Attributes,
    Decision,
    PrivilegedGroups,
    RbacAuthorizer,
    UnionAuthorizer,
    forbidden,
    request_attributes,
)
from .certificates import GROUP as CSR_GROUP
from .certificates import REQUEST_USER
from .errors import ApiError, BodyTimeout, bad_request, invalid, not_found
from .escalation import describe, missing_rules
from .managedfields import root_type
from .nodeauthz import LEASE_NAMESPACE, NodeAuthorizer, node_name, pod_references
from .objcache import ObjectCache
from .patch import PatchError, json_patch, merge_patch, strategic_merge_patch
from .policy import AUTOUPDATE, cluster_role_bindings, cluster_roles
from .resources import Resource, by_path
from .serviceaccount import MIRROR_ANNOTATION
from .storage import Storage
from .watchcache import WatchCache

__all__ = ["Limits", "Security"]

log = logging.getLogger("corral.apiserver")

Obj = dict[str, Any]
PUBLIC_PATHS = ("/healthz", "/livez", "/readyz", "/version")
LONG_RUNNING_SUBRESOURCES = ("attach", "exec", "proxy", "log", "portforward")
PRIVILEGED_GROUP = "system:masters"
RBAC = "rbac.authorization.k8s.io"
AUTHZ = "authorization.k8s.io"
AUTHN = "authentication.k8s.io"
MIN_TOKEN_SECONDS = 600
DEFAULT_TOKEN_SECONDS = 3600
MAX_TOKEN_SECONDS = 2**32

PODS = by_path("", "v1", "pods")
SERVICEACCOUNTS = by_path("", "v1", "serviceaccounts")
RBAC_KINDS = {
    name: by_path(RBAC, "v1", name)
    for name in ("roles", "rolebindings", "clusterroles", "clusterrolebindings")
}


def _res(r: Resource | None) -> Resource:
    assert r is not None
    return r


@dataclass(frozen=True)
class Limits:
    """kube-apiserver's ``--max-requests-inflight`` and ``--max-mutating-requests-inflight``
    (0: no limit; long-running requests are not counted; system:masters is never refused;
    one user gets at most half), and a cap on the watches one user holds open at once."""

    max_requests_inflight: int = 400
    max_mutating_requests_inflight: int = 200
    max_watches_per_user: int = 500


def _too_many(message: str = "Too many requests, please try again later.") -> ApiError:
    return ApiError(429, "TooManyRequests", message, {"retryAfterSeconds": 1})


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(body), status=status, content_type="application/json"
    )


def _error(e: ApiError) -> web.Response:
    resp = web.Response(body=e.body(), status=e.code, content_type="application/json")
    if e.code == 429:
        resp.headers["Retry-After"] = "1"
    return resp


def _long_running(attrs: Attributes) -> bool:
    return attrs.verb in ("watch", "proxy") or attrs.subresource in LONG_RUNNING_SUBRESOURCES


class Security:
    def __init__(
        self,
        storage: Storage,
        caches: Mapping[str, WatchCache],
        authenticator: Authenticator,
        *,
        audit: AuditLog | None = None,
        limits: Limits | None = None,
        own_auth_prefixes: tuple[str, ...] = (),
    ) -> None:
        """``own_auth_prefixes``: paths whose handlers authenticate requests themselves (an
        agent's join, with the join token): they get no 401 or 403 here, only audit and
        limits, as ``system:anonymous``."""
        self.own_auth_prefixes = own_auth_prefixes
        self.storage = storage
        self.authenticator = authenticator
        self.audit = audit
        self.limits = limits or Limits()
        self._rbac_caches = {
            name: ObjectCache(storage, caches[name], _res(res)) for name, res in RBAC_KINDS.items()
        }
        self.pods = ObjectCache(storage, caches["pods"], _res(PODS))
        self.rbac = RbacAuthorizer(
            self._rbac_caches["roles"],
            self._rbac_caches["rolebindings"],
            self._rbac_caches["clusterroles"],
            self._rbac_caches["clusterrolebindings"],
        )
        self.nodes = NodeAuthorizer(self.pods)
        self.authorizer = UnionAuthorizer(PrivilegedGroups(PRIVILEGED_GROUP), self.nodes, self.rbac)
        storage.signer_allowed = self._signer_allowed  # CSR approval and signing
        self._inflight: dict[str, int] = {}  # user -> requests in flight; "": everyone
        self._inflight_mutating: dict[str, int] = {}
        self._watches: dict[str, int] = {}

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        await self._bootstrap_policy()
        for cache in (*self._rbac_caches.values(), self.pods):
            await cache.start()

    async def close(self) -> None:
        for cache in (*self._rbac_caches.values(), self.pods):
            await cache.close()
        if self.audit is not None:
            self.audit.close()

    async def _bootstrap_policy(self) -> None:
        """The default ClusterRoles and bindings: made when missing, brought back to their
        rules while annotated autoupdate=true (kube-apiserver's RBAC reconciliation)."""
        for res_name, objects, field in (
            ("clusterroles", cluster_roles(), "rules"),
            ("clusterrolebindings", cluster_role_bindings(), "subjects"),
        ):
            res = _res(RBAC_KINDS[res_name])
            for obj in objects:
                name = obj["metadata"]["name"]
                try:
                    await self.storage.create(res, None, obj)
                    continue
                except ApiError as e:
                    if e.reason != "AlreadyExists":
                        raise
                current = await self.storage.get(res, None, name)
                annotations = current["metadata"].get("annotations") or {}
                if annotations.get(AUTOUPDATE) != "true":
                    continue
                if current.get(field) == obj.get(field) and current.get("roleRef") == obj.get(
                    "roleRef"
                ):
                    continue
                if res_name == "clusterrolebindings" and current.get("roleRef") != obj["roleRef"]:
                    continue  # roleRef is immutable; leave a changed binding alone
                patch = {field: obj.get(field)}
                with contextlib.suppress(ApiError):
                    await self.storage.patch(res, None, name, "merge", patch)
                    log.info("%s %s: default rules restored", res_name, name)

    # ------------------------------------------------------------------ the front door

    async def serve(
        self, request: web.Request, call: Callable[[], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        received = datetime.now(UTC)
        arrived = time.monotonic()
        user: UserInfo | None = None
        impersonator: UserInfo | None = None
        attrs: Attributes | None = None
        resp: web.StreamResponse | None = None
        error: ApiError | None = None
        decision = ""
        # (a connection's requests share a task: none inherits the one before's user)
        REQUEST_USER.set(None)
        try:
            transport = request.transport
            peercert = transport.get_extra_info("peercert") if transport is not None else None
            if self.own_auth_prefixes and request.path.startswith(self.own_auth_prefixes):
                user = ANONYMOUS
                attrs = request_attributes(user, request.method, request.path, request.query)
                with self._admit(attrs):
                    resp = await call()
                return resp
            user = await self.authenticator.authenticate(
                peercert, request.headers.get("Authorization")
            )
            if user is None:
                if not _public(request.path):
                    raise unauthorized()
                user = ANONYMOUS
            user, impersonator = await self._impersonate(request, user, arrived)
            REQUEST_USER.set(user)  # (this request's task only) who asks, for admission
            attrs = request_attributes(user, request.method, request.path, request.query)
            with self._admit(attrs):
                allowed, reason = await self._allowed(attrs, arrived)
                decision = "allow" if allowed else "forbid"
                if not allowed:
                    raise forbidden(attrs, reason)
                await self._node_restriction(attrs, request)
                await self._no_escalation(attrs, request, arrived)
                virtual = self._virtual(attrs)
                if virtual is not None:
                    resp = await virtual(request, attrs)
                else:
                    with self._watch_slot(attrs):
                        resp = await call()
            if (
                attrs.resource_request
                and attrs.api_group == RBAC
                and attrs.mutating
                and resp.status < 300
            ):
                await self.rbac.refresh()
            return resp
        except ApiError as e:
            error = e
            resp = _error(e)
            return resp
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as e:
            log.exception("%s %s", request.method, request.path_qs)
            error = ApiError(500, "InternalError", f"Internal error occurred: {e}")
            resp = _error(error)
            return resp
        finally:
            if self.audit is not None:
                self._audit(request, received, user, impersonator, attrs, resp, error, decision)

    async def _allowed(self, attrs: Attributes, arrived: float) -> tuple[bool, str]:
        decision, reason = await self.authorizer.authorize(attrs)
        if decision is Decision.NO_OPINION:
            # The caches lag the store by a watch event: a grant made a moment before this
            # request arrived may not be in them yet. Read again (once, shared) and decide.
            await self.rbac.refresh(arrived)
            if node_name(attrs.user) is not None:
                await self.nodes.refresh(arrived)
            decision, reason = await self.authorizer.authorize(attrs)
        return decision is Decision.ALLOW, reason

    async def _signer_allowed(self, verb: str, signer: str) -> bool:
        """May the request's user ``verb`` (approve, sign) for ``signer``: the signerName
        itself or its domain's wildcard, ``<domain>/*`` (kube's IsAuthorizedForSignerName)."""
        user = REQUEST_USER.get()
        if user is None:
            return True  # the server's own writers
        for name in (signer, signer.split("/")[0] + "/*"):
            attrs = Attributes(
                user, verb, True, api_group=CSR_GROUP, api_version="*", resource="signers",
                name=name,
            )  # fmt: skip
            if (await self._allowed(attrs, time.monotonic()))[0]:
                return True
        return False

    @contextlib.contextmanager
    def _admit(self, attrs: Attributes) -> Iterator[None]:
        """Count the request against its in-flight limit (429 when full). Besides
        kube-apiserver's global limit, no one user takes more than half of it, so one client
        flooding the server leaves room for the others."""
        lim = self.limits
        if _long_running(attrs):
            yield
            return
        mutating = attrs.mutating
        limit = lim.max_mutating_requests_inflight if mutating else lim.max_requests_inflight
        counts = self._inflight_mutating if mutating else self._inflight
        who = attrs.user.name
        if limit > 0 and PRIVILEGED_GROUP not in attrs.user.groups:
            if counts.get("", 0) >= limit or counts.get(who, 0) >= max(1, limit // 2):
                raise _too_many()
        for key in ("", who):
            counts[key] = counts.get(key, 0) + 1
        try:
            yield
        finally:
            for key in ("", who):
                counts[key] -= 1
                if not counts[key]:
                    del counts[key]

    @contextlib.contextmanager
    def _watch_slot(self, attrs: Attributes) -> Iterator[None]:
        cap = self.limits.max_watches_per_user
        if attrs.verb != "watch" or cap <= 0:
            yield
            return
        who = attrs.user.name
        held = self._watches.get(who, 0)
        if held >= cap:
            raise _too_many(
                f'Too many requests: user "{who}" holds {held} watches (limit {cap}), please'
                " try again later."
            )
        self._watches[who] = held + 1
        try:
            yield
        finally:
            left = self._watches[who] - 1
            if left:
                self._watches[who] = left
            else:
                del self._watches[who]

    # ------------------------------------------------------------------ impersonation

    async def _impersonate(
        self, request: web.Request, user: UserInfo, arrived: float
    ) -> tuple[UserInfo, UserInfo | None]:
        h = request.headers
        name = h.get("Impersonate-User")
        groups = tuple(h.getall("Impersonate-Group", ()))
        uid = h.get("Impersonate-Uid")
        extra: dict[str, tuple[str, ...]] = {}
        for key in h:
            if key.lower().startswith("impersonate-extra-"):
                extra[key[len("Impersonate-Extra-") :].lower()] = tuple(h.getall(key))
        if name is None:
            if groups or uid or extra:
                raise bad_request(
                    "requested impersonation of groups, uid or extra without impersonating a user"
                )
            return user, None
        checks: list[Attributes] = []
        sa = split_service_account(name)
        if sa is not None:
            checks.append(
                Attributes(
                    user,
                    "impersonate",
                    True,
                    namespace=sa[0],
                    resource="serviceaccounts",
                    name=sa[1],
                )
            )
        else:
            checks.append(Attributes(user, "impersonate", True, resource="users", name=name))
        for g in groups:
            checks.append(Attributes(user, "impersonate", True, resource="groups", name=g))
        if uid:
            checks.append(
                Attributes(user, "impersonate", True, api_group=AUTHN, resource="uids", name=uid)
            )
        for key, values in extra.items():
            for v in values:
                checks.append(
                    Attributes(
                        user,
                        "impersonate",
                        True,
                        api_group=AUTHN,
                        resource="userextras",
                        subresource=key,
                        name=v,
                    )
                )
        for attrs in checks:
            allowed, reason = await self._allowed(attrs, arrived)
            if not allowed:
                raise forbidden(attrs, reason)
        if sa is not None and not groups:
            target = service_account_user(sa[0], sa[1], uid or "", extra)
        else:
            target = UserInfo(name, uid or "", groups, extra)
        if target.name == ANONYMOUS.name:
            target = UserInfo(target.name, target.uid, (*target.groups, "system:unauthenticated"))
        return with_authenticated(target), user

    # ------------------------------------------------------------------ node restriction

    async def _node_restriction(self, attrs: Attributes, request: web.Request) -> None:
        """What the node authorizer cannot see in the URL: the name of a Node or Lease a node
        creates must be its own (kube's NodeRestriction admission)."""
        node = node_name(attrs.user)
        if node is None or attrs.verb != "create" or attrs.name:
            return
        if (attrs.api_group, attrs.resource, attrs.subresource) == ("", "pods", ""):
            await self._node_mirror_pod(node, attrs, request)
            return
        own = (attrs.api_group, attrs.resource) == ("", "nodes") or (
            (attrs.api_group, attrs.resource, attrs.namespace)
            == ("coordination.k8s.io", "leases", LEASE_NAMESPACE)
        )
        if not own:
            return
        try:
            body = msgspec.json.decode(await _body(request))
        except msgspec.DecodeError:
            return  # the handler refuses it with the usual error
        name = (body.get("metadata") or {}).get("name") if isinstance(body, dict) else None
        if name != node:
            raise forbidden(
                Attributes(
                    attrs.user,
                    "create",
                    True,
                    api_group=attrs.api_group,
                    namespace=attrs.namespace,
                    resource=attrs.resource,
                    name=str(name or ""),
                ),
                f"node '{node}' cannot create {attrs.resource} of another node",
            )

    async def _node_mirror_pod(self, node: str, attrs: Attributes, request: web.Request) -> None:
        """A node creates only mirror pods (``kubernetes.io/config.mirror``) bound to itself,
        owned by nothing but its own Node, referring to no service account, secret or
        configMap (kube's NodeRestriction)."""
        try:
            body = msgspec.json.decode(await _body(request))
        except msgspec.DecodeError:
            body = None
        if not isinstance(body, dict):
            raise forbidden(attrs, f"node '{node}' can only create mirror pods (a JSON Pod)")
        meta = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
        spec = body.get("spec") if isinstance(body.get("spec"), dict) else {}
        named = Attributes(
            attrs.user,
            "create",
            True,
            api_group="",
            namespace=attrs.namespace,
            resource="pods",
            name=str(meta.get("name") or ""),
        )
        if MIRROR_ANNOTATION not in (meta.get("annotations") or {}):
            raise forbidden(named, f"node '{node}' can only create mirror pods")
        if spec.get("nodeName") != node:
            raise forbidden(named, f"node '{node}' can only create pods bound to itself")
        for ref in meta.get("ownerReferences") or []:
            if not isinstance(ref, dict) or (ref.get("kind"), ref.get("name")) != ("Node", node):
                raise forbidden(
                    named, f"node '{node}' can only create pods with an owner reference to itself"
                )
        refs = pod_references(body)
        if spec.get("serviceAccountName") or spec.get("serviceAccount"):
            what = "serviceaccounts"
        else:
            what = next((r for r in ("secrets", "configmaps") if refs[r]), "")
        if what:
            raise forbidden(named, f"node '{node}' can not create pods that reference {what}")

    # ------------------------------------------------------------------ RBAC escalation

    async def _rbac_object(self, attrs: Attributes, request: web.Request) -> Obj | None:
        """The object an RBAC write would store: the body of a create or update, the current
        object with the patch applied for a patch (None when the handler will refuse it)."""
        raw = await _body(request)
        ctype = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        try:
            if ctype in ("application/yaml", "application/apply-patch+yaml", "text/yaml"):
                body = yaml.safe_load(raw)
            elif ctype in ("", "application/json") or ctype.endswith("+json"):
                body = msgspec.json.decode(raw) if raw.strip() else None
            elif ctype == reviewproto.MEDIA_TYPE:
                body = _protobuf_object(raw)
            else:  # fail closed: a body not read here is not written either
                raise ApiError(
                    415,
                    "UnsupportedMediaType",
                    f"RBAC objects are written as JSON, YAML or protobuf ({ctype} is not"
                    " supported)",
                )
        except (msgspec.DecodeError, yaml.YAMLError):
            return None
        if attrs.verb != "patch":
            return body if isinstance(body, dict) else None
        res = RBAC_KINDS[attrs.resource]
        current = await self.storage.get(_res(res), attrs.namespace or None, attrs.name)
        try:
            if ctype == "application/json-patch+json":
                out = json_patch(current, body)
            elif ctype == "application/merge-patch+json":
                out = merge_patch(current, body)
            else:
                out = strategic_merge_patch(
                    current, body, root_type(res.group, res.version, res.kind)
                )
        except (PatchError, RecursionError):
            return None
        return out if isinstance(out, dict) else None

    async def _no_escalation(self, attrs: Attributes, request: web.Request, arrived: float) -> None:
        if (
            attrs.api_group != RBAC
            or attrs.resource not in RBAC_KINDS
            or attrs.subresource
            or attrs.verb not in ("create", "update", "patch")
            or PRIVILEGED_GROUP in attrs.user.groups
        ):
            return
        obj = await self._rbac_object(attrs, request)
        if obj is None:
            return  # the handler refuses the body with its usual error
        name = str((obj.get("metadata") or {}).get("name") or attrs.name)
        ns = attrs.namespace
        if attrs.resource in ("roles", "clusterroles"):
            escalate = Attributes(
                attrs.user,
                "escalate",
                True,
                api_group=RBAC,
                namespace=ns,
                resource=attrs.resource,
                name=name,
            )
            if (await self._allowed(escalate, arrived))[0]:
                return
            rules = [r for r in obj.get("rules") or () if isinstance(r, dict)]
        else:
            ref = obj.get("roleRef") if isinstance(obj.get("roleRef"), dict) else {}
            kind = ref.get("kind")
            role_res = {"Role": "roles", "ClusterRole": "clusterroles"}.get(str(kind))
            if role_res is None:
                return  # the handler refuses it
            bind = Attributes(
                attrs.user,
                "bind",
                True,
                api_group=RBAC,
                namespace=ns,
                resource=role_res,
                name=str(ref.get("name") or ""),
            )
            if (await self._allowed(bind, arrived))[0]:
                return
            try:
                role = await self.storage.get(
                    _res(RBAC_KINDS[role_res]),
                    (ns or None) if role_res == "roles" else None,
                    str(ref.get("name") or ""),
                )
            except ApiError:
                raise errors_forbidden(
                    attrs, name, f'{kind} "{ref.get("name")}" not found'
                ) from None
            rules = [r for r in role.get("rules") or () if isinstance(r, dict)]
        missing = missing_rules(self.rbac, attrs.user, ns, rules)
        if missing:
            raise errors_forbidden(attrs, name, describe(attrs.user, missing))

    # ------------------------------------------------------------------ audit

    def _audit(
        self,
        request: web.Request,
        received: datetime,
        user: UserInfo | None,
        impersonator: UserInfo | None,
        attrs: Attributes | None,
        resp: web.StreamResponse | None,
        error: ApiError | None,
        decision: str,
    ) -> None:
        assert self.audit is not None
        code = resp.status if resp is not None else 500
        status: Obj = {"metadata": {}, "code": code}
        if error is not None:
            status.update(status="Failure", message=error.message, reason=error.reason)
        acting = impersonator or user
        event: Obj = {
            "kind": "Event",
            "apiVersion": "audit.k8s.io/v1",
            "level": "Metadata",
            "auditID": str(uuid.uuid4()),
            "stage": "ResponseComplete",
            "requestURI": request.path_qs,
            "verb": attrs.verb if attrs is not None else request.method.lower(),
            "user": acting.as_dict() if acting is not None else {},
            "sourceIPs": [request.remote or ""],
            "userAgent": request.headers.get("User-Agent", ""),
            "responseStatus": status,
            "requestReceivedTimestamp": timestamp(received),
            "stageTimestamp": timestamp(),
        }
        if impersonator is not None and user is not None:
            event["impersonatedUser"] = user.as_dict()
        if attrs is not None and attrs.resource_request:
            ref: Obj = {"resource": attrs.resource, "apiVersion": attrs.api_version}
            if attrs.namespace:
                ref["namespace"] = attrs.namespace
            if attrs.name:
                ref["name"] = attrs.name
            if attrs.api_group:
                ref["apiGroup"] = attrs.api_group
            if attrs.subresource:
                ref["subresource"] = attrs.subresource
            event["objectRef"] = ref
        if decision:
            event["annotations"] = {"authorization.k8s.io/decision": decision}
        self.audit.write(event)

    # ------------------------------------------------------------------ reviews, TokenRequest

    def _virtual(
        self, attrs: Attributes
    ) -> Callable[[web.Request, Attributes], Awaitable[web.Response]] | None:
        if not attrs.resource_request or attrs.verb != "create":
            return None
        key = (attrs.api_group, attrs.resource, attrs.subresource)
        return {
            (AUTHZ, "selfsubjectaccessreviews", ""): self._ssar,
            (AUTHZ, "subjectaccessreviews", ""): self._sar,
            (AUTHZ, "localsubjectaccessreviews", ""): self._sar,
            (AUTHZ, "selfsubjectrulesreviews", ""): self._ssrr,
            (AUTHN, "tokenreviews", ""): self._token_review,
            (AUTHN, "selfsubjectreviews", ""): self._ssr,
            ("", "serviceaccounts", "token"): self._token_request,
        }.get(key)

    async def _review_body(self, request: web.Request, kind: str) -> Obj:
        raw = await _body(request)
        ctype = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype == reviewproto.MEDIA_TYPE:
            try:
                return {"spec": reviewproto.decode_spec(raw, kind)}
            except reviewproto.ProtoError as e:
                raise bad_request(f"the request body is not a valid {kind}: {e}") from None
        try:
            body = msgspec.json.decode(raw) if raw.strip() else {}
        except msgspec.DecodeError as e:
            raise bad_request(f"the request body is not valid JSON: {e}") from None
        if not isinstance(body, dict):
            raise bad_request(f"the body of the request must be a {kind} object")
        if not isinstance(body.get("spec"), dict):
            body["spec"] = {}
        return body

    def _review_attributes(self, user: UserInfo, spec: Obj, kind: str) -> Attributes:
        res = spec.get("resourceAttributes")
        nonres = spec.get("nonResourceAttributes")
        if isinstance(res, dict) and not isinstance(nonres, dict):
            return Attributes(
                user,
                str(res.get("verb") or ""),
                True,
                api_group=str(res.get("group") or ""),
                api_version=str(res.get("version") or ""),
                namespace=str(res.get("namespace") or ""),
                resource=str(res.get("resource") or ""),
                subresource=str(res.get("subresource") or ""),
                name=str(res.get("name") or ""),
                field_selector="",
            )
        if isinstance(nonres, dict) and not isinstance(res, dict):
            return Attributes(
                user, str(nonres.get("verb") or ""), False, path=str(nonres.get("path") or "")
            )
        raise invalid(
            kind,
            "",
            "spec.resourceAttributes",
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
            AUTHZ,
        )

    async def _answer(self, body: Obj, attrs: Attributes, kind: str) -> web.Response:
        decision, reason = await self.authorizer.authorize(attrs)
        status: Obj = {"allowed": decision is Decision.ALLOW}
        if decision is Decision.DENY:
            status["denied"] = True
        if reason:
            status["reason"] = reason
        elif decision is Decision.ALLOW:
            status["reason"] = "RBAC: allowed"
        out = {
            "kind": kind,
            "apiVersion": f"{AUTHZ}/v1",
            "metadata": {"creationTimestamp": None},
            "spec": body["spec"],
            "status": status,
        }
        return _json(out, 201)

    async def _ssar(self, request: web.Request, attrs: Attributes) -> web.Response:
        body = await self._review_body(request, "SelfSubjectAccessReview")
        asked = self._review_attributes(attrs.user, body["spec"], "SelfSubjectAccessReview")
        return await self._answer(body, asked, "SelfSubjectAccessReview")

    async def _sar(self, request: web.Request, attrs: Attributes) -> web.Response:
        local = attrs.resource == "localsubjectaccessreviews"
        kind = "LocalSubjectAccessReview" if local else "SubjectAccessReview"
        body = await self._review_body(request, kind)
        spec = body["spec"]
        if not spec.get("user") and not spec.get("groups"):
            raise invalid(
                kind, "", "spec.user", "at least one of user or group must be specified", AUTHZ
            )
        extra = {
            str(k): tuple(str(x) for x in v)
            for k, v in (spec.get("extra") or {}).items()
            if isinstance(v, list)
        }
        subject = UserInfo(
            str(spec.get("user") or ""),
            str(spec.get("uid") or ""),
            tuple(str(g) for g in spec.get("groups") or ()),
            extra,
        )
        asked = self._review_attributes(subject, spec, kind)
        if local and (not asked.resource_request or asked.namespace not in ("", attrs.namespace)):
            raise invalid(
                kind,
                "",
                "spec.resourceAttributes.namespace",
                "must match metadata.namespace",
                AUTHZ,
            )
        if local:
            asked = Attributes(**{**asked.__dict__, "namespace": attrs.namespace})
        return await self._answer(body, asked, kind)

    async def _ssrr(self, request: web.Request, attrs: Attributes) -> web.Response:
        body = await self._review_body(request, "SelfSubjectRulesReview")
        ns = str(body["spec"].get("namespace") or "")
        resource_rules: list[Obj] = []
        nonresource_rules: list[Obj] = []
        for rule, cluster_wide in self.rbac.rules_for(attrs.user, ns):
            if rule.get("nonResourceURLs"):
                if cluster_wide:
                    nonresource_rules.append(
                        {"verbs": rule["verbs"], "nonResourceURLs": rule["nonResourceURLs"]}
                    )
                continue
            r = {
                k: rule[k]
                for k in ("verbs", "apiGroups", "resources", "resourceNames")
                if rule.get(k)
            }
            if "apiGroups" in rule:
                r["apiGroups"] = rule["apiGroups"]
            resource_rules.append(r)
        out = {
            "kind": "SelfSubjectRulesReview",
            "apiVersion": f"{AUTHZ}/v1",
            "metadata": {"creationTimestamp": None},
            "spec": body["spec"],
            "status": {
                "resourceRules": resource_rules,
                "nonResourceRules": nonresource_rules,
                # a node's per-object grants cannot be listed as rules
                "incomplete": node_name(attrs.user) is not None,
            },
        }
        return _json(out, 201)

    async def _ssr(self, request: web.Request, attrs: Attributes) -> web.Response:
        return _json(
            {
                "kind": "SelfSubjectReview",
                "apiVersion": f"{AUTHN}/v1",
                "metadata": {"creationTimestamp": None},
                "status": {"userInfo": attrs.user.as_dict()},
            },
            201,
        )

    async def _token_review(self, request: web.Request, attrs: Attributes) -> web.Response:
        body = await self._review_body(request, "TokenReview")
        spec = body["spec"]
        token = spec.get("token")
        if not isinstance(token, str) or not token:
            raise invalid("TokenReview", "", "spec.token", "Required value", AUTHN)
        audiences = tuple(str(a) for a in spec.get("audiences") or ()) or None
        user = self.authenticator.static_tokens.get(token) if audiences is None else None
        if user is None:
            user = await self.authenticator.token_user(token, audiences)
        status: Obj = {"authenticated": user is not None}
        if user is not None:
            status["user"] = with_authenticated(user).as_dict()
            status["audiences"] = list(audiences or self.authenticator.audiences)
        else:
            status["error"] = "invalid bearer token"
        out = {
            "kind": "TokenReview",
            "apiVersion": f"{AUTHN}/v1",
            "metadata": {"creationTimestamp": None},
            "spec": spec,
            "status": status,
        }
        return _json(out, 201)

    async def _token_request(self, request: web.Request, attrs: Attributes) -> web.Response:
        """TokenRequest: a token for the ServiceAccount, expiring, optionally bound to a pod
        (it stops working when that pod is gone)."""
        ns, name = attrs.namespace, attrs.name
        body = await self._review_body(request, "TokenRequest")
        spec = body["spec"]
        sa = await self.storage.get(_res(SERVICEACCOUNTS), ns, name)
        seconds = spec.get("expirationSeconds", DEFAULT_TOKEN_SECONDS)
        if not isinstance(seconds, int) or isinstance(seconds, bool):
            raise invalid(
                "TokenRequest", name, "spec.expirationSeconds", "must be an integer", AUTHN
            )
        if seconds < MIN_TOKEN_SECONDS:
            raise invalid(
                "TokenRequest",
                name,
                "spec.expirationSeconds",
                f"Invalid value: {seconds}: may not specify a duration less than 10 minutes",
                AUTHN,
            )
        if seconds > MAX_TOKEN_SECONDS:
            raise invalid(
                "TokenRequest",
                name,
                "spec.expirationSeconds",
                f"Invalid value: {seconds}: may not specify a duration larger than 2^32 seconds",
                AUTHN,
            )
        audiences = spec.get("audiences") or list(self.authenticator.audiences)
        if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
            raise invalid(
                "TokenRequest", name, "spec.audiences", "must be a list of strings", AUTHN
            )
        pod: Obj | None = None
        ref = spec.get("boundObjectRef")
        if isinstance(ref, dict):
            if ref.get("kind") != "Pod" or ref.get("apiVersion", "v1") != "v1":
                raise bad_request(
                    f"cannot bind token to object of type {ref.get('kind')}: only v1 Pod is"
                    " supported"
                )
            try:
                pod = await self.storage.get(_res(PODS), ns, str(ref.get("name") or ""))
            except ApiError:
                raise not_found("pods", str(ref.get("name") or "")) from None
            if ref.get("uid") and ref["uid"] != pod["metadata"].get("uid"):
                raise ApiError(
                    409,
                    "Conflict",
                    f"the UID in the bound object reference ({ref['uid']}) does not match the"
                    f" UID in record. The object might have been deleted and then recreated",
                )
            pod_sa = (pod.get("spec") or {}).get("serviceAccountName") or "default"
            if pod_sa != name:
                raise bad_request(
                    f'cannot bind token for serviceaccount "{name}" to pod running with'
                    f' different serviceaccount name "{pod_sa}".'
                )
            node = node_name(attrs.user)
            if node is not None and (pod.get("spec") or {}).get("nodeName") != node:
                raise forbidden(attrs, f"node '{node}' may only request tokens for its own pods")
        elif node_name(attrs.user) is not None:
            raise forbidden(attrs, "a node may only request tokens bound to its own pods")
        token, exp = self.authenticator.sa_tokens.issue(ns, sa, audiences, seconds, pod)
        out_spec: Obj = {"audiences": audiences, "expirationSeconds": seconds}
        if pod is not None:
            out_spec["boundObjectRef"] = {
                "kind": "Pod",
                "apiVersion": "v1",
                "name": pod["metadata"]["name"],
                "uid": pod["metadata"]["uid"],
            }
        out = {
            "kind": "TokenRequest",
            "apiVersion": f"{AUTHN}/v1",
            "metadata": {
                "name": name,
                "namespace": ns,
                "creationTimestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
            "spec": out_spec,
            "status": {
                "token": token,
                "expirationTimestamp": datetime.fromtimestamp(exp, UTC).strftime(
                    "%Y-%m-%dT%H:%M:%SZ"
                ),
            },
        }
        return _json(out, 201)


# Seconds a request body may take to arrive (the application's; ApiServer sets it).
REQUEST_TIMEOUT = web.AppKey("request_timeout", float)


async def _body(request: web.Request) -> bytes:
    """The request body (aiohttp keeps it for the handler), 413 past the server's limit,
    504 when it does not arrive within the request timeout."""
    try:
        async with asyncio.timeout(request.config_dict.get(REQUEST_TIMEOUT, 60.0)):
            return await request.read()
    except TimeoutError:
        raise BodyTimeout() from None
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(
            413, "RequestEntityTooLarge", "Request entity too large: limit is 3145728"
        ) from None


def _protobuf_object(raw: bytes) -> Obj | None:
    """A Kubernetes protobuf body as JSON, with the object model's protobuf decoder when this
    build has one (kubemodel.protobuf); without it, 415 (as the handler answers then)."""
    try:
        from kubemodel import protobuf  # type: ignore[attr-defined]
    except ImportError:
        raise ApiError(
            415, "UnsupportedMediaType", "protobuf request bodies are not supported"
        ) from None
    try:
        obj = protobuf.decode(raw)
    except Exception:
        return None
    return obj if isinstance(obj, dict) else None


def errors_forbidden(attrs: Attributes, name: str, message: str) -> ApiError:
    return errors.forbidden(attrs.resource, name, message, attrs.api_group)


def _public(path: str) -> bool:
    return path in PUBLIC_PATHS or any(path.startswith(p + "/") for p in PUBLIC_PATHS)
