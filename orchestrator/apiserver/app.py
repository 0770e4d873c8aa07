"""The HTTP layer: routes, authentication, request bodies, content negotiation (JSON or Table),
list and watch streaming. Handlers decode the request and call the generic resource layer
(``storage.py``); every error leaves as a Kubernetes Status."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from collections.abc import Callable
from typing import Any

import msgspec
import yaml
from aiohttp import web

from kubemodel import protobuf
from kubemodel.errors import kind_of
from kubemodel.events import FIELD_LABELS_V1
from orchestrator.store import Backend, Gone, TooLarge

from . import discovery, errors, fields, managedfields, metricsapi, openapi, openapi_v2, webhooks
from .converted import Converted, to_stored_form
from .crdcontrol import CrdController
from .errors import ApiError
from .eviction import evict
from .podexec import pod_exec
from .podlogs import pod_log
from .portforward import pod_port_forward
from .proxyroute import proxy
from .resources import RESOURCES, Resource, by_path
from .security import REQUEST_TIMEOUT, Security
from .selectors import field_selector, label_selector
from .storage import Storage
from .tables import table
from .watchcache import CacheEvent, Closed, Subscription, WatchCache

__all__ = ["MAX_BODY", "MAX_DEPTH", "ApiServer"]

log = logging.getLogger("corral.apiserver")

MAX_BODY = 3 * 1024 * 1024  # kube-apiserver's limit for a request body
MAX_DEPTH = 100  # nesting of a request body (Kubernetes objects stay far below)
MAX_NODES = 1_000_000  # values in one body (a YAML alias bomb stops here)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# The longest request line (a list's labelSelector of many values) and header: Go's
# http.Server takes 1 MB of headers (DefaultMaxHeaderBytes); aiohttp's 8190 bytes refused a
# selector kube-apiserver serves, with a 400 that is no Status.
MAX_REQUEST_LINE = 1 << 20
# /cacerts and /v1-corral/node-credentials (join.py) check the join token themselves.
# The kinds whose DELETE answers with the object deleted (kube-apiserver's stores with
# ReturnDeletedObject); the others answer a Success Status naming it, once it is gone.
RETURN_DELETED = frozenset({"pods", "services", "serviceaccounts", "namespaces"})
PUBLIC_PATHS = ("/healthz", "/livez", "/readyz", "/version", "/cacerts", "/v1-corral")
JSON = "application/json"
PATCH_TYPES = {
    "application/merge-patch+json": "merge",
    "application/json-patch+json": "json",
    "application/strategic-merge-patch+json": "strategic",
}
APPLY_PATCH = "application/apply-patch+yaml"
# kube-apiserver's list for a built-in kind's PATCH (its installer's order)
PATCH_MEDIA_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    APPLY_PATCH,
)
UNSUPPORTED_BODIES = ("application/cbor",)
YAML_TYPES = ("application/yaml", APPLY_PATCH, "text/yaml")
# What a body may be sent as (no Content-Type: JSON, as kubectl's generators and the Python
# client send it); anything else is 415, never guessed at.
BODY_TYPES = frozenset(("", JSON, "application/vnd.kubernetes.protobuf", *YAML_TYPES, *PATCH_TYPES))
SINK_BUFFER_LIMIT = 64 * 1024  # bytes a watch's connection may have unsent before its loop writes
IDLE_CHECK = 5.0  # seconds between checks that an idle watch's client is still there

Obj = dict[str, Any]
_encoder = msgspec.json.Encoder()


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=_encoder.encode(body), status=status, content_type=JSON)


def _error_response(e: ApiError) -> web.Response:
    response = web.Response(body=e.body(), status=e.code, content_type=JSON)
    if isinstance(e, errors.BodyTimeout):
        response.force_close()
    return response


def _check_shape(value: Any) -> None:
    """Refuse a body nested deeper than MAX_DEPTH or with more than MAX_NODES values
    (iterative: no recursion on hostile input)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    nodes = 0
    while stack:
        v, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise errors.ApiError(
                413, "RequestEntityTooLarge", f"the request body has more than {MAX_NODES} values"
            )
        if isinstance(v, dict):
            if depth > MAX_DEPTH:
                raise errors.bad_request(
                    f"the request body is nested deeper than {MAX_DEPTH} levels"
                )
            stack.extend((x, depth + 1) for x in v.values())
        elif isinstance(v, list):
            if depth > MAX_DEPTH:
                raise errors.bad_request(
                    f"the request body is nested deeper than {MAX_DEPTH} levels"
                )
            stack.extend((x, depth + 1) for x in v)
        elif type(v) is int and not INT64_MIN <= v <= INT64_MAX:
            # Every integer of the API is an int32 or int64: no field takes this one (and
            # SQLite, a Go client, would not either).
            raise errors.bad_request(f"the request body has an integer out of range (int64): {v}")


async def _read_body(request: web.Request) -> Any:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise _too_large()
    try:
        # A body that never ends (a chunked one with no last chunk, a Content-Length never
        # reached) held its connection and task for good: kube-apiserver's request timeout
        # answers 504 (the connection is closed: the rest of the body is not read).
        async with asyncio.timeout(request.config_dict[REQUEST_TIMEOUT]):
            raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise _too_large() from None
    except TimeoutError:
        raise errors.BodyTimeout() from None
    if len(raw) > MAX_BODY:
        raise _too_large()
    ctype = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if ctype in UNSUPPORTED_BODIES:
        raise ApiError(
            415,
            "UnsupportedMediaType",
            f"the body of the request was in an unknown format - accepted media types"
            f" include: application/json, application/yaml ({ctype} is not supported)",
        )
    if not raw.strip():
        return None
    named = request.headers.get("Content-Type", "").strip()
    if ctype not in BODY_TYPES or (named and not ctype):  # the clients name one (or none)
        raise ApiError(
            415,
            "UnsupportedMediaType",
            f"the body of the request was in an unknown format - accepted media types include:"
            f" application/json, application/yaml, {protobuf.MEDIA_TYPE} ({named} is not"
            " supported)",
        )
    if ctype == protobuf.MEDIA_TYPE:
        try:
            value = protobuf.decode(raw)
        except protobuf.ProtobufError as e:
            raise errors.bad_request(f"the request body is not valid protobuf: {e}") from None
        _check_shape(value)
        return value
    try:
        if ctype in YAML_TYPES:
            try:
                value = yaml.load(raw, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
            except yaml.YAMLError as e:
                raise errors.bad_request(f"the request body is not valid YAML: {e}") from None
        else:
            try:
                value = msgspec.json.decode(raw)
            except msgspec.DecodeError as e:
                raise errors.bad_request(f"the request body is not valid JSON: {e}") from None
            if request.query.get("fieldValidation") != "Ignore":
                request[fields.DUPLICATES] = fields.duplicates(raw, value)
    except RecursionError:
        raise errors.bad_request(
            f"the request body is nested deeper than {MAX_DEPTH} levels"
        ) from None
    _check_shape(value)
    return value


def _manager(request: web.Request) -> str:
    """The field manager of a write: its fieldManager parameter, else from its user agent."""
    given = request.query.get("fieldManager")
    if given is not None and (len(given) > managedfields.MAX_MANAGER or not given.isprintable()):
        raise _invalid_options(
            {"PATCH": "PatchOptions", "PUT": "UpdateOptions"}.get(request.method, "CreateOptions"),
            "fieldManager",
            f"Invalid value: {given!r}: must be at most {managedfields.MAX_MANAGER} printable"
            " characters",
        )
    return managedfields.manager_name(given, request.headers.get("User-Agent", ""))


def _invalid_options(kind: str, field: str, message: str) -> ApiError:
    """422 for a bad query option, worded as kube-apiserver's validation of its options."""
    reason = "FieldValueRequired" if message.startswith("Required") else "FieldValueInvalid"
    return ApiError(
        422,
        "Invalid",
        f'{kind}.meta.k8s.io "" is invalid: {field}: {message}',
        {
            "group": "meta.k8s.io",
            "kind": kind,
            "causes": [{"reason": reason, "message": message, "field": field}],
        },
    )


def _check_resource_version(rv: str | None) -> None:
    """400 for a resourceVersion parameter that is no revision (kube-apiserver parses it as an
    unsigned integer: "-1", "+5", "1_0" and " 5" are not; nor is anything past int64)."""
    if rv and not (rv.isascii() and rv.isdigit() and int(rv) <= INT64_MAX):
        raise errors.bad_request(f"invalid resourceVersion {rv!r}: not an integer")


def _check_list_options(q: Any, watch: bool) -> None:
    """422 for the resourceVersionMatch combinations kube-apiserver's ValidateListOptions
    refuses (a list: Exact or NotOlderThan with a resourceVersion and no continue token)."""
    match = q.get("resourceVersionMatch", "")
    if not match:
        return
    problem = ""
    if watch:
        if q.get("sendInitialEvents") is None:
            problem = (
                "Forbidden: resourceVersionMatch is forbidden for watch unless"
                " sendInitialEvents is provided"
            )
        elif match != "NotOlderThan":
            problem = f'Unsupported value: {json.dumps(match)}: supported values: "NotOlderThan"'
    elif not q.get("resourceVersion"):
        problem = "Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided"
    elif q.get("continue"):
        problem = "Forbidden: resourceVersionMatch is forbidden when continue is provided"
    elif match not in ("Exact", "NotOlderThan"):
        problem = (
            f'Unsupported value: {json.dumps(match)}: supported values: "Exact", "NotOlderThan", ""'
        )
    elif match == "Exact" and q.get("resourceVersion") == "0":
        problem = 'Forbidden: resourceVersionMatch "exact" is forbidden for resourceVersion "0"'
    if problem:
        raise _invalid_options("ListOptions", "resourceVersionMatch", problem)


def _check_delete_options(options: Obj) -> None:
    """422 for DeleteOptions kube-apiserver's ValidateDeleteOptions refuses."""
    policy = options.get("propagationPolicy")
    if policy is not None and policy not in ("Foreground", "Background", "Orphan"):
        raise _invalid_options(
            "DeleteOptions",
            "propagationPolicy",
            f"Unsupported value: {json.dumps(policy)}: supported values:"
            ' "Foreground", "Background", "Orphan"',
        )
    if policy is not None and options.get("orphanDependents") is not None:
        raise _invalid_options(
            "DeleteOptions",
            "propagationPolicy",
            "Invalid value: null: orphanDependents and deletionPropagation cannot be both set",
        )
    grace = options.get("gracePeriodSeconds")
    if grace is not None and (type(grace) is not int or not INT64_MIN <= grace <= INT64_MAX):
        raise errors.bad_request(
            f"DeleteOptions: gracePeriodSeconds must be an integer, not {grace!r}"
        )
    pre = options.get("preconditions")
    if pre is not None and (
        not isinstance(pre, dict)
        or any(not isinstance(pre.get(k), str | None) for k in ("uid", "resourceVersion"))
    ):
        raise errors.bad_request("DeleteOptions: preconditions must be an object of strings")


def _unsupported_patch() -> ApiError:
    """415 for a PATCH of a media type kube-apiserver does not take, in its words."""
    return ApiError(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: "
        + ", ".join(PATCH_MEDIA_TYPES),
    )


def _too_large() -> ApiError:
    return ApiError(413, "RequestEntityTooLarge", f"Request entity too large: limit is {MAX_BODY}")


def _wants_table(request: web.Request) -> bool:
    for part in request.headers.get("Accept", "").split(","):
        params = {p.strip() for p in part.split(";")[1:]}
        if "as=Table" in params and "g=meta.k8s.io" in params:
            return True
    return False


# Media ranges a resource's answer satisfies (JSON is served for all of them, as for
# protobuf: the clients that ask for it list JSON too).
ACCEPTABLE = frozenset(("", "*/*", "application/*", JSON, "application/yaml", protobuf.MEDIA_TYPE))


def _check_accept(request: web.Request) -> None:
    """406 when the Accept header names only media types no answer comes in (kube-apiserver's
    NotAcceptable), e.g. ``Accept: foo/bar``."""
    accept = request.headers.get("Accept")
    if accept is None:
        return
    for part in accept.split(","):
        if part.split(";")[0].strip().lower() in ACCEPTABLE:
            return
    raise ApiError(
        406,
        "NotAcceptable",
        "only the following media types are accepted: application/json, application/yaml,"
        f" {protobuf.MEDIA_TYPE}",
    )


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("true", "1")


def _int_param(request: web.Request, name: str) -> int | None:
    value = request.query.get(name)
    if value is None or value == "":
        return None
    try:
        number = int(value)
    except ValueError:
        raise errors.bad_request(f"invalid value for {name}: {value!r} is not an integer") from None
    if not INT64_MIN <= number <= INT64_MAX:  # kube-apiserver's parameters are int64
        raise errors.bad_request(f"invalid value for {name}: {value!r} is out of range (int64)")
    return number


def _options_kind(request: web.Request) -> str:
    return {"PATCH": "PatchOptions", "PUT": "UpdateOptions", "DELETE": "DeleteOptions"}.get(
        request.method, "CreateOptions"
    )


def _dry_run(request: web.Request, body_values: object = None) -> bool:
    """Whether a write is a dry run: every dryRun value (query, or a DeleteOptions body's list)
    must be "All", else 422 as kube-apiserver's validation of its options (nothing is written)."""
    values: list[object] = list(request.query.getall("dryRun", []))
    if body_values is not None:
        values.extend(body_values if isinstance(body_values, list) else [body_values])
    for v in values:
        if v != "All":
            raise _invalid_options(
                _options_kind(request),
                "dryRun",
                f'Unsupported value: {json.dumps(v)}: supported values: "All"',
            )
    return bool(values)


def _deleted_status(res: Resource, meta: Obj) -> Obj:
    """What kube-apiserver's finalizeDelete answers for a deleted object: Success, with the
    resource (plural) as the details' kind and the uid (kubectl's --wait matches on it)."""
    details: Obj = {"name": meta["name"]}
    if res.group:
        details["group"] = res.group
    details.update(kind=res.name, uid=meta.get("uid"))
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    }


def _list_body(res: Resource, items: list[Obj], rev: int, cont: str | None) -> Obj:
    if res.custom is not None:  # stored in one version, served in each (conversion None)
        for item in items:
            item["apiVersion"] = res.api_version
    meta: Obj = {"resourceVersion": str(rev)}
    if cont:
        meta["continue"] = cont
    return {"kind": res.list_kind, "apiVersion": res.api_version, "metadata": meta, "items": items}


def _path_get(obj: Any, path: str) -> Any:
    """The value at a CRD's scale path (".spec.replicas"), or None."""
    for part in path.strip(".").split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


def _custom_scale(res: Resource, obj: Obj) -> Obj:
    """autoscaling/v1 Scale of a custom resource, from its CRD's scale paths."""
    paths = res.custom.scale or {}
    meta = obj["metadata"]
    status: Obj = {"replicas": _path_get(obj, paths.get("statusReplicasPath", "")) or 0}
    if paths.get("labelSelectorPath"):
        selector = _path_get(obj, paths["labelSelectorPath"])
        if isinstance(selector, str) and selector:
            status["selector"] = selector
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            k: meta[k]
            for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            if k in meta
        },
        "spec": {"replicas": _path_get(obj, paths.get("specReplicasPath", "")) or 0},
        "status": status,
    }


def _scale_of(res: Resource, obj: Obj) -> Obj:
    return _custom_scale(res, obj) if res.custom is not None else _scale(obj)


def _scale(obj: Obj) -> Obj:
    meta = obj["metadata"]
    spec = obj.get("spec") or {}
    sel = spec.get("selector") or {}
    if obj.get("kind") != "ReplicationController":  # its selector is the labels themselves
        sel = sel.get("matchLabels") or {}
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            k: meta[k]
            for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            if k in meta
        },
        "spec": {"replicas": spec.get("replicas", 1)},
        "status": {
            "replicas": (obj.get("status") or {}).get("replicas", 0),
            "selector": ",".join(f"{k}={v}" for k, v in sorted(sel.items())),
        },
    }


class ApiServer:
    """The Kubernetes API over a store. ``app()`` gives the aiohttp application;
    ``start()`` makes the initial namespaces, ``close()`` ends watches."""

    def __init__(
        self,
        store: Backend,
        *,
        server_address: str = "127.0.0.1:6443",
        require_client_cert: bool = True,
        bookmark_interval: float = 60.0,
        kubelet_client: ssl.SSLContext | None = None,
        request_timeout: float = 60.0,
    ) -> None:
        self.store = store
        self.storage = Storage(store)
        self.server_address = server_address
        self.require_client_cert = require_client_cert
        self.bookmark_interval = bookmark_interval
        self.request_timeout = request_timeout
        self.kubelet_client = kubelet_client  # TLS to kubelets (pods/log), None: refused
        self.kubelet_netns: str | None = None  # the netns kubelets are reached from; None: ours
        self.metrics = metricsapi.MetricsApi(self.storage)
        # one cache per stored resource (events.k8s.io/v1 Event shares core/v1's)
        self.caches: dict[str, WatchCache] = {}
        for r in RESOURCES:
            if r.stored_group is None:
                self.caches[r.name] = WatchCache(store, r.key_prefix(None))
        self.converted = Converted(self.storage)
        self.crds = CrdController(self.storage)
        # Authentication, authorization, audit, limits (security.py); None: client
        # certificates only (require_client_cert), everyone allowed everything.
        self.security: Security | None = None
        self._closing = asyncio.Event()
        # Prometheus text of components in this process (the controller manager's), served
        # on /metrics to authenticated clients.
        self.metrics_sources: list[Callable[[], str]] = []

    async def start(self) -> None:
        await self.storage.ensure_namespaces()
        await self.crds.start()
        self.crds.follow(self.caches["customresourcedefinitions"])
        self.storage.webhooks.kubelet_client = self.kubelet_client
        self.storage.webhooks.kubelet_netns = self.kubelet_netns
        self.storage.webhooks.start()
        await self.storage.webhooks.listed()
        if self.security is not None:
            await self.security.start()

    async def close(self) -> None:
        self._closing.set()
        if self.security is not None:
            await self.security.close()
        await self.crds.close()
        for cache in self.caches.values():
            await cache.close()
        await self.storage.close()

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=MAX_BODY + 1)
        app[REQUEST_TIMEOUT] = self.request_timeout
        r = app.router
        r.add_get("/version", self._version)
        r.add_get("/version/", self._version)  # the Python client's VersionApi
        for path in ("/healthz", "/livez", "/readyz"):
            r.add_get(path, self._health)
            r.add_get(path + "/{check:.*}", self._health)
        r.add_get("/metrics", self._metrics)
        r.add_get("/openapi/v2", openapi_v2.handle)
        r.add_get("/swagger-2.0.0.pb-v1", openapi_v2.handle_legacy)
        r.add_get("/openapi/v3", openapi.handle_index)
        r.add_get("/openapi/v3/{gv:.+}", openapi.handle_document)
        # Discovery with a trailing slash too, as kube-apiserver serves it: the Python client
        # asks for /api/, /apis/, /apis/<group>/ and /api/v1/, /apis/<group>/<version>/.
        for path in ("/api", "/api/"):
            r.add_get(path, self._api)
        for path in ("/apis", "/apis/"):
            r.add_get(path, self._apis)
        r.add_route("*", "/api/{version}", self._core_discovery)
        r.add_route("*", "/api/{version}/{tail:.*}", self._core)
        for path in ("/apis/{group}", "/apis/{group}/"):
            r.add_route("*", path, self._group)
        r.add_route("*", "/apis/{group}/{version}", self._group_discovery)
        r.add_route("*", "/apis/{group}/{version}/{tail:.*}", self._grouped)
        return app

    # ------------------------------------------------------------------ plumbing

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Callable[..., Any]) -> Any:
        if self.security is not None:
            return await self.security.serve(request, lambda: self._guarded(request, handler))
        return await self._guarded(request, handler)

    async def _guarded(self, request: web.Request, handler: Callable[..., Any]) -> Any:
        try:
            if (
                self.security is None
                and self.require_client_cert
                and request.path not in PUBLIC_PATHS
                and not any(request.path.startswith(p + "/") for p in PUBLIC_PATHS)
            ):
                transport = request.transport
                cert = transport.get_extra_info("peercert") if transport is not None else None
                if not cert:
                    raise ApiError(401, "Unauthorized", "Unauthorized")
            # what admission webhooks warn of (this request's task only)
            webhooks.WARNINGS.set(request.setdefault(fields.WARNINGS, []))
            response = await handler(request)
            for text in request.get(fields.WARNINGS, ()):
                response.headers.add("Warning", fields.warning_header(text))
            return response
        except ApiError as e:
            response = _error_response(e)
            for text in request.get(fields.WARNINGS, ()):  # sent with errors too, as Go does
                response.headers.add("Warning", fields.warning_header(text))
            return response
        except web.HTTPRequestEntityTooLarge:
            return _error_response(_too_large())
        except web.HTTPNotFound:
            return _error_response(_not_found_path())
        except web.HTTPMethodNotAllowed:
            return _error_response(errors.method_not_allowed())
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except TooLarge as e:  # kube-apiserver passes etcd's refusal on as it is: a 500
            return _error_response(ApiError(500, "", e.details))
        except Exception as e:
            log.exception("%s %s", request.method, request.path_qs)
            return _error_response(ApiError(500, "InternalError", f"Internal error occurred: {e}"))

    async def _version(self, request: web.Request) -> web.Response:
        return _json(discovery.version())

    async def _api(self, request: web.Request) -> web.Response:
        return _json(discovery.api_versions(self.server_address))

    async def _apis(self, request: web.Request) -> web.Response:
        return _json(discovery.group_list())

    async def _health(self, request: web.Request) -> web.Response:
        """/healthz, /livez, /readyz as kube-apiserver answers them: "ok", or with ``?verbose``
        (or a failure) one ``[+]<check> ok`` line per check and ``<endpoint> check passed``;
        ``/<endpoint>/<check>`` asks one check, ``?exclude=<check>`` leaves one out."""
        endpoint = request.path.strip("/").split("/")[0]
        names = ["ping", "log", "etcd"]
        if endpoint == "readyz":
            names += ["etcd-readiness", "informer-sync", "shutdown"]
        check = request.match_info.get("check") or None  # "/healthz/" is the root too
        if check is not None and check not in names:
            raise _not_found_path()
        etcd_ok = True
        if check in (None, "etcd", "etcd-readiness"):
            try:
                await self.store.current_revision()
            except Exception as e:
                log.warning("%s: etcd: %s", endpoint, e)
                etcd_ok = False
        failed = {"etcd": not etcd_ok, "etcd-readiness": not etcd_ok}
        failed["shutdown"] = self._closing.is_set()
        if check is not None:
            if failed.get(check):
                return web.Response(status=500, text=f"internal server error: {check} failed\n")
            return web.Response(text="ok")
        excluded = set(request.query.getall("exclude", []))
        out, bad = [], False
        for n in names:
            if n in excluded:
                excluded.discard(n)
                out.append(f"[+]{n} excluded: ok")
            elif failed.get(n):
                out.append(f"[-]{n} failed: reason withheld")
                bad = True
            else:
                out.append(f"[+]{n} ok")
        if excluded:
            quoted = ",".join(f'"{n}"' for n in sorted(excluded))
            out.append(f"warn: some health checks cannot be excluded: no matches for {quoted}")
        if bad:  # always verbose on failure
            return web.Response(
                status=500, text="\n".join([*out, f"{endpoint} check failed"]) + "\n"
            )
        if "verbose" not in request.query:
            return web.Response(text="ok")
        return web.Response(text="\n".join([*out, f"{endpoint} check passed"]) + "\n")

    async def _metrics(self, request: web.Request) -> web.Response:
        text = "".join(source() for source in self.metrics_sources)
        return web.Response(text=text, content_type="text/plain", charset="utf-8")

    async def _core_discovery(self, request: web.Request) -> web.Response:
        return self._discovery("", request.match_info["version"], request)

    async def _group_discovery(self, request: web.Request) -> web.Response:
        return self._discovery(request.match_info["group"], request.match_info["version"], request)

    def _discovery(self, group: str, version: str, request: web.Request) -> web.Response:
        if request.method != "GET":
            raise errors.method_not_allowed()
        doc = discovery.resource_list(group, version)
        if doc is None:
            raise _not_found_path()
        return _json(doc)

    async def _group(self, request: web.Request) -> web.Response:
        doc = discovery.group(request.match_info["group"])
        if doc is None or request.method != "GET":
            raise _not_found_path()
        return _json(doc)

    async def _core(self, request: web.Request) -> web.StreamResponse:
        if not request.match_info["tail"]:  # /api/v1/
            return await self._core_discovery(request)
        return await self._resource("", request.match_info["version"], request)

    async def _grouped(self, request: web.Request) -> web.StreamResponse:
        if not request.match_info["tail"]:  # /apis/<group>/<version>/
            return await self._group_discovery(request)
        if request.match_info["group"] == metricsapi.GROUP:
            return await self.metrics.handle(
                request,
                request.match_info["version"],
                request.match_info["tail"],
                self.kubelet_client,
                self.kubelet_netns,
            )
        return await self._resource(
            request.match_info["group"], request.match_info["version"], request
        )

    # ------------------------------------------------------------------ resources

    async def _resource(self, group: str, version: str, request: web.Request) -> web.StreamResponse:
        segs = [s for s in request.match_info["tail"].split("/")]
        if segs and segs[-1] == "":
            segs.pop()
        watch_path = bool(segs) and segs[0] == "watch"
        if watch_path:
            segs = segs[1:]
        ns: str | None = None
        if (
            len(segs) >= 3
            and segs[0] == "namespaces"
            and (group or segs[2] not in ("status", "finalize"))
        ):
            ns, segs = segs[1], segs[2:]
        if len(segs) >= 3 and segs[2] == "proxy" and all(segs[:2]) and not watch_path:
            res = by_path(group, version, segs[0])
            if res is not None and "proxy" in res.subresources and (ns is None) != res.namespaced:
                return await proxy(
                    request,
                    self.storage,
                    res.name,
                    ns,
                    segs[1],
                    self.kubelet_client,
                    self.kubelet_netns,
                )
        if not segs or len(segs) > 3 or not all(segs):
            raise _not_found_path()
        res = by_path(group, version, segs[0])
        if res is None or (ns is not None and not res.namespaced):
            raise _not_found_path()
        name = segs[1] if len(segs) > 1 else None
        sub = segs[2] if len(segs) > 2 else None
        if res.namespaced and name is not None and ns is None:
            raise _not_found_path()
        if sub is not None and sub not in res.subresources:
            raise _not_found_path()
        # No stored key holds a NUL (the store refuses such a key: a 500 from a lookup)
        if ns is not None and "\x00" in ns:
            raise errors.not_found("namespaces", ns)
        if name is not None and "\x00" in name:
            raise errors.not_found(res.name, name, res.group)
        _check_accept(request)
        m = request.method
        if (sub == "binding" and m != "POST") or (sub == "log" and m != "GET"):
            raise errors.method_not_allowed()
        if sub in ("exec", "attach") and ns is not None and name is not None:
            if m not in ("GET", "POST"):
                raise errors.method_not_allowed()
            return await pod_exec(
                request, self.storage, ns, name, self.kubelet_client, sub, self.kubelet_netns
            )
        if sub == "portforward" and ns is not None and name is not None:
            if m not in ("GET", "POST"):
                raise errors.method_not_allowed()
            return await pod_port_forward(
                request, self.storage, ns, name, self.kubelet_client, self.kubelet_netns
            )
        q = request.query
        dry = _dry_run(request) if m in ("POST", "PUT", "PATCH") else False
        if sub == "eviction":
            if m != "POST":
                raise errors.method_not_allowed()
            assert ns is not None and name is not None
            body = await self._object_body(request, res, sub)
            fields.check(request, res, body, sub)
            if dry:
                body["deleteOptions"] = {**(body.get("deleteOptions") or {}), "dryRun": ["All"]}
            sent = {"kind": "Eviction", "apiVersion": "policy/v1", **body}
            await self.storage.admit_subresource("CREATE", "eviction", ns, name, sent, dry)
            token = webhooks.INTERNAL.set(True)  # its writes of the pod: not sent again
            try:
                return _json(await evict(self.storage, res, ns, name, body), 201)
            finally:
                webhooks.INTERNAL.reset(token)
        if m == "GET":
            _check_resource_version(q.get("resourceVersion"))
            if name is None:
                if watch_path or _truthy(q.get("watch")):
                    return await self._watch(request, res, ns, None)
                return await self._list(request, res, ns)
            if sub == "log" and ns is not None:
                return await pod_log(
                    request, self.storage, ns, name, self.kubelet_client, self.kubelet_netns
                )
            if watch_path or _truthy(q.get("watch")):
                return await self._watch(request, res, ns, name)
            obj = await self._store(res).get(res, ns, name)
            if sub == "scale":
                return _json(_scale_of(res, obj))
            return self._object(request, res, obj)
        if m == "POST" and sub == "binding" and name is not None:
            body = await _read_body(request)
            if not isinstance(body, dict):
                raise errors.bad_request("the body of the request must be a Binding object")
            await self.storage.bind(res, ns, name, body)
            return _json(
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Success",
                    "code": 201,
                },
                201,
            )
        if m == "POST" and name is None:
            body = await self._object_body(request, res)
            fields.check(request, res, body)
            obj = await self._store(res).create(
                res, ns, body, dry_run=dry, manager=_manager(request), owned=True
            )
            return self._object(request, res, obj, 201)
        if m == "PUT" and name is not None:
            body = await self._object_body(request, res, sub)
            fields.check(request, res, body, sub)
            if sub == "scale":
                return await self._put_scale(res, ns, name, body, dry, _manager(request))
            obj = await self._store(res).update(
                res, ns, name, body, subresource=sub, dry_run=dry, manager=_manager(request)
            )
            return self._object(request, res, obj)
        if m == "PATCH" and name is not None:
            ctype = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if ctype == APPLY_PATCH:
                return await self._apply(request, res, ns, name, sub, dry)
            if q.get("force") is not None:
                raise _invalid_options(
                    "PatchOptions", "force", "Forbidden: may not be specified for non-apply patch"
                )
            kind = PATCH_TYPES.get(ctype)
            if kind == "strategic" and res.untyped and sub != "scale":
                # kube-apiserver has no strategic merge for custom resources (nor CRDs')
                raise ApiError(
                    415,
                    "UnsupportedMediaType",
                    "the body of the request was in an unknown format - accepted media types"
                    f" include: application/json-patch+json, application/merge-patch+json,"
                    f" {APPLY_PATCH}",
                )
            if kind is None:
                raise _unsupported_patch()
            patch = await _read_body(request)
            if kind != "json":
                fields.check(request, res, patch, sub)
            if sub == "scale":
                return await self._patch_scale(res, ns, name, kind, patch, dry, _manager(request))
            obj = await self._store(res).patch(
                res,
                ns,
                name,
                kind,
                patch,
                subresource=sub,
                dry_run=dry,
                manager=_manager(request),
            )
            return self._object(request, res, obj)
        if m == "DELETE" and sub is None:
            if name is None and not res.delete_collection:
                raise errors.method_not_allowed()
            options = await _read_body(request)
            if options is None:
                options = {}
            if not isinstance(options, dict):
                raise errors.bad_request("DeleteOptions must be a JSON object")
            grace = _int_param(request, "gracePeriodSeconds")
            if grace is not None:
                options["gracePeriodSeconds"] = grace
            for param in ("propagationPolicy", "orphanDependents"):
                if (value := q.get(param)) is not None:
                    options[param] = _truthy(value) if param == "orphanDependents" else value
            _check_delete_options(options)
            dry = _dry_run(request, options.get("dryRun"))
            if name is not None:
                obj = await self._store(res).delete(res, ns, name, options, dry_run=dry)
                meta = obj["metadata"]
                if res.name in RETURN_DELETED or (
                    meta.get("deletionTimestamp") and meta.get("finalizers")
                ):
                    return self._object(request, res, obj)  # or still there, being deleted
                return _json(_deleted_status(res, meta))
            # The collection is listed with the request's ListOptions, as kube's DeleteCollection
            # lists it: from a continue token on (a garbage one is a 400 and deletes nothing),
            # at a resourceVersion; limit only pages that list, so it deletes them all.
            _check_resource_version(q.get("resourceVersion"))
            _check_list_options(q, watch=False)
            _int_param(request, "limit")
            items, rev, _ = await self._store(res).list(
                res,
                ns,
                match=self._selector(request, res),
                continue_token=q.get("continue") or None,
                resource_version=q.get("resourceVersion", ""),
                exact=q.get("resourceVersionMatch") == "Exact",
            )
            deleted = []
            for item in items:
                with contextlib.suppress(ApiError):
                    deleted.append(
                        await self._store(res).delete(
                            res,
                            item["metadata"].get("namespace"),
                            item["metadata"]["name"],
                            options,
                            dry_run=dry,
                        )
                    )
            return _json(_list_body(res, deleted, rev, None))
        raise errors.method_not_allowed()

    def _cache(self, res: Resource) -> WatchCache:
        """The watch cache of a resource's keys (a custom resource's made when first
        watched: one for all its versions)."""
        if res.custom is None:
            return self.caches[res.name]
        cache = self.caches.get(res.custom.prefix)
        if cache is None:
            cache = self.caches[res.custom.prefix] = WatchCache(self.store, res.custom.prefix)
        return cache

    def _store(self, res: Resource) -> Any:
        """Storage, or its converting front for a resource stored as another (events)."""
        return self.storage if res.stored_group is None else self.converted

    async def _apply(
        self,
        request: web.Request,
        res: Resource,
        ns: str | None,
        name: str,
        sub: str | None,
        dry: bool,
    ) -> web.Response:
        """Server-side apply (PATCH application/apply-patch+yaml): fieldManager is required,
        force takes the fields of other managers; creates the object when it is missing."""
        if sub not in (None, "status", "ephemeralcontainers", "approval"):
            raise _unsupported_patch()
        manager = request.query.get("fieldManager")
        if not manager:
            raise _invalid_options(
                "PatchOptions", "fieldManager", "Required value: is required for apply patch"
            )
        _manager(request)  # validated
        force = request.query.get("force", "false").lower()
        if force not in ("true", "false", "1", "0"):
            raise errors.bad_request(f"force must be true or false, not {force!r}")
        config = await _read_body(request)
        if not isinstance(config, dict):
            raise errors.bad_request(f"the apply configuration must be a {res.kind} object")
        fields.check(request, res, config, sub)
        obj, created = await self._store(res).apply(
            res,
            ns,
            name,
            config,
            manager=manager,
            force=force in ("true", "1"),
            subresource=sub,
            dry_run=dry,
        )
        return self._object(request, res, obj, 201 if created else 200)

    async def _object_body(
        self, request: web.Request, res: Resource, sub: str | None = None
    ) -> Obj:
        body = await _read_body(request)
        if not isinstance(body, dict):
            raise errors.bad_request(
                f"the body of the request must be a"
                f" {dict(scale='Scale', eviction='Eviction').get(sub or '', res.kind)} object"
            )
        return body

    def _object(
        self, request: web.Request, res: Resource, obj: Obj, code: int = 200
    ) -> web.Response:
        if res.custom is not None:
            obj["apiVersion"] = res.api_version
        if _wants_table(request):
            rv = obj["metadata"].get("resourceVersion", "")
            row = obj if res.stored_group is None else to_stored_form(res, obj)
            return _json(
                table(res.name, [row], rv, "", request.query.get("includeObject", ""), res),
                code,
            )
        return _json(obj, code)

    def _selector(self, request: web.Request, res: Resource) -> Callable[[Obj], bool] | None:
        labels = label_selector(request.query.get("labelSelector"))
        fields = field_selector(
            request.query.get("fieldSelector"),
            res.name,
            FIELD_LABELS_V1 if res.stored_group is not None and res.kind == "Event" else None,
        )
        if labels is None:
            return fields
        if fields is None:
            return labels
        return lambda o: labels(o) and fields(o)

    async def _list(self, request: web.Request, res: Resource, ns: str | None) -> web.Response:
        q = request.query
        _check_list_options(q, watch=False)
        limit = _int_param(request, "limit") or 0
        as_table = _wants_table(request)
        items, rev, cont = await self._store(res).list(
            res,
            ns,
            match=self._selector(request, res),
            limit=max(limit, 0),
            continue_token=q.get("continue") or None,
            resource_version=q.get("resourceVersion", ""),
            exact=q.get("resourceVersionMatch") == "Exact",
            shallow=not as_table,  # only encoded again
        )
        if as_table:
            if res.stored_group is not None:  # a table's rows are of the stored form
                items = [to_stored_form(res, o) for o in items]
            if res.custom is not None:
                for item in items:
                    item["apiVersion"] = res.api_version
            return _json(
                table(res.name, items, str(rev), cont or "", q.get("includeObject", ""), res)
            )
        return _json(_list_body(res, items, rev, cont))

    async def _put_scale(
        self, res: Resource, ns: str | None, name: str, body: Obj, dry: bool, manager: str
    ) -> web.Response:
        for part in ("spec", "metadata"):  # (a patch could make either anything)
            value = body.get(part)
            if value is not None and not isinstance(value, dict):
                raise errors.cannot_decode(
                    "Scale", res.version, part, f"must be an object, not {kind_of(value)}"
                )
        replicas = (body.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool):
            raise errors.cannot_decode("Scale", res.version, "spec.replicas", "must be an integer")
        if replicas < 0:  # kube's ValidateScale, on its autoscaling.Scale
            raise errors.invalid(
                "Scale",
                name,
                "spec.replicas",
                f"Invalid value: {replicas}: must be greater than or equal to 0",
                "autoscaling",
            )
        patch: Obj = {"spec": {"replicas": replicas}}
        if res.custom is not None:  # at the CRD's specReplicasPath
            parts = (res.custom.scale or {}).get("specReplicasPath", ".spec.replicas")
            patch = replicas
            for part in reversed(parts.strip(".").split(".")):
                patch = {part: patch}
        if rv := (body.get("metadata") or {}).get("resourceVersion"):
            patch["metadata"] = {"resourceVersion": rv}
        obj = await self._store(res).patch(
            res, ns, name, "merge", patch, dry_run=dry, manager=manager, entry_subresource="scale"
        )
        return _json(_scale_of(res, obj))

    async def _patch_scale(
        self,
        res: Resource,
        ns: str | None,
        name: str,
        kind: str,
        patch: Any,
        dry: bool,
        manager: str,
    ) -> web.Response:
        from .patch import PatchError, json_patch, merge_patch, strategic_merge_patch

        current = await self._store(res).get(res, ns, name)
        try:
            if kind == "strategic":
                root = managedfields.root_type("autoscaling", "v1", "Scale")
                scale = strategic_merge_patch(_scale_of(res, current), patch, root)
            else:
                scale = {"merge": merge_patch, "json": json_patch}[kind](
                    _scale_of(res, current), patch
                )
        except PatchError as e:
            raise ApiError(422, "Invalid", f"the patch cannot be applied: {e}") from None
        if not isinstance(scale, dict):
            raise errors.bad_request("the patched object is not a JSON object")
        try:
            return await self._put_scale(res, ns, name, scale, dry, manager)
        except errors.DecodeFailed as e:  # a patched Scale that does not decode: 422 in kube
            raise errors.invalid("Scale", name, e.field, e.detail, "autoscaling") from None

    # ------------------------------------------------------------------ watch

    async def _watch(
        self, request: web.Request, res: Resource, ns: str | None, name: str | None
    ) -> web.StreamResponse:
        q = request.query
        _check_list_options(q, watch=True)
        match = self._selector(request, res)
        if name is not None:
            match = _named(name, match)
        rv = q.get("resourceVersion", "")
        timeout = _int_param(request, "timeoutSeconds")
        prefix = res.key_prefix(ns)
        initial: list[Obj] = []
        if rv in ("", "0"):
            initial, start, _ = await self.storage.list(res, ns, match=match)
        else:
            try:
                start = int(rv)
            except ValueError:
                raise errors.bad_request(
                    f"invalid resourceVersion {rv!r}: not an integer"
                ) from None
        try:
            sub = await self._cache(res).subscribe(start)
        except Closed:
            raise ApiError(503, "ServiceUnavailable", "the server is shutting down") from None
        if request.transport is not None:  # a watch too far behind is dropped
            sub.on_overflow = request.transport.abort
        try:
            resp = web.StreamResponse(status=200, headers={"Content-Type": JSON})
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            await self._stream(request, resp, res, prefix, match, start, timeout, initial, sub)
        finally:
            sub.close()
        with contextlib.suppress(ConnectionResetError, RuntimeError):
            await resp.write_eof()
        return resp

    async def _stream(
        self,
        request: web.Request,
        resp: web.StreamResponse,
        res: Resource,
        prefix: str,
        match: Callable[[Obj], bool] | None,
        start: int,
        timeout: int | None,
        initial: list[Obj],
        sub: Subscription,
    ) -> None:
        """Write the watch events of ``sub`` until the client goes, the timeout passes, the
        server stops or the cache ends the watch (a 410 ERROR event when it is too old)."""
        q = request.query
        bookmarks = _truthy(q.get("allowWatchBookmarks"))
        as_table = _wants_table(request)
        include = q.get("includeObject", "")
        cache = self._cache(res)
        # the cache holds the stored form; a resource served as another converts each event
        # (and keeps its frames apart from the stored form's watchers')
        convert = None if res.stored_group is None else self.converted.to_view(res)
        tag = "" if convert is None else res.group + "/"
        if res.custom is not None and res.version != res.custom.storage_version:
            view = res.api_version

            def convert(obj: Obj) -> Obj:
                return {**obj, "apiVersion": view}

            tag = view + "/"

        def frame(typ: str, ev: CacheEvent | None, obj: Obj) -> bytes:
            if as_table:
                obj = table(
                    res.name,
                    [obj if convert is None else convert(obj)],
                    obj["metadata"].get("resourceVersion", ""),
                    "",
                    include,
                    res,
                )
            elif ev is not None:  # the same bytes for every watcher of this event
                data = ev.frames.get(tag + typ)
                if data is None:
                    if convert is not None:
                        obj = convert(obj)
                    data = _encoder.encode({"type": typ, "object": obj}) + b"\n"
                    ev.frames[tag + typ] = data
                return data
            elif convert is not None:
                obj = convert(obj)
            return _encoder.encode({"type": typ, "object": obj}) + b"\n"

        last_rev = start
        transport = request.transport
        loop = asyncio.get_running_loop()
        # Chunks the sink took, written at once when the loop next runs its callbacks: the
        # events of one store commit go to the connection in one write (one TLS record).
        pending: list[bytes] = []

        def flush() -> None:
            if not pending:
                return
            data = pending[0] if len(pending) == 1 else b"".join(pending)
            pending.clear()
            if transport is not None and not transport.is_closing():
                transport.write(data)

        def sink(ev: CacheEvent) -> bool:
            """Take one event for the connection, as one HTTP chunk (the response is chunked
            and never compressed), while the loop below is parked; False (the loop takes it)
            when the connection is closing or its buffer is backed up."""
            nonlocal last_rev
            if not ev.key.startswith(prefix):
                return True
            out = _translate(ev, match)
            if out is None:
                return True
            if transport is None or transport.is_closing():
                return False
            if transport.get_write_buffer_size() > SINK_BUFFER_LIMIT:
                return False
            if as_table:
                data = frame(out[0], ev, out[1])
                chunk = b"%x\r\n%b\r\n" % (len(data), data)
            else:
                key = "#" + tag + out[0]
                chunk = ev.frames.get(key)
                if chunk is None:
                    data = frame(out[0], ev, out[1])
                    chunk = ev.frames[key] = b"%x\r\n%b\r\n" % (len(data), data)
            if not pending:
                loop.call_soon(flush)
            pending.append(chunk)
            last_rev = ev.revision
            return True

        try:
            if initial:
                await resp.write(b"".join(frame("ADDED", None, obj) for obj in initial))
            sub.sink = sink
            # kube-apiserver's timer fires at once for a negative timeout; 0: no timeout
            deadline = loop.time() + max(timeout, 0) if timeout else None
            next_bookmark = loop.time() + self.bookmark_interval
            while not self._closing.is_set():
                now = loop.time()
                if deadline is not None and now >= deadline:
                    break
                wait = IDLE_CHECK
                if deadline is not None:
                    wait = min(wait, deadline - now)
                if bookmarks:
                    wait = min(wait, max(next_bookmark - now, 0))
                try:
                    batch = await sub.take(wait)
                    flush()  # what the sink took goes first
                except Gone as e:
                    flush()
                    err = errors.gone(f"too old resource version: {start} ({e.compacted})")
                    await resp.write(
                        _encoder.encode({"type": "ERROR", "object": err.status()}) + b"\n"
                    )
                    break
                except Closed:
                    break
                except Exception as e:  # a store error: end this watch
                    log.warning("watch %s: %s", prefix, e)
                    break
                if not batch:
                    if request.transport is None or request.transport.is_closing():
                        break
                    if bookmarks and loop.time() >= next_bookmark:
                        last_rev = max(last_rev, cache.revision)
                        await resp.write(
                            _encoder.encode(
                                {
                                    "type": "BOOKMARK",
                                    "object": {
                                        "kind": res.kind,
                                        "apiVersion": res.api_version,
                                        "metadata": {"resourceVersion": str(last_rev)},
                                    },
                                }
                            )
                            + b"\n"
                        )
                        next_bookmark = loop.time() + self.bookmark_interval
                    continue
                chunks = []
                for ev in batch:
                    if not ev.key.startswith(prefix):
                        continue
                    out = _translate(ev, match)
                    if out is None:
                        continue
                    last_rev = ev.revision
                    chunks.append(frame(out[0], ev, out[1]))
                if chunks:
                    await resp.write(chunks[0] if len(chunks) == 1 else b"".join(chunks))
            flush()
        except (ConnectionResetError, RuntimeError):  # the client went away
            pass


def _named(name: str, base: Callable[[Obj], bool] | None) -> Callable[[Obj], bool]:
    def match(o: Obj) -> bool:
        return bool(o["metadata"]["name"] == name and (base is None or base(o)))

    return match


def _translate(ev: CacheEvent, match: Callable[[Obj], bool] | None) -> tuple[str, Obj] | None:
    """The event a selective watch sees: an object that starts matching is ADDED, one that
    stops is DELETED."""
    if match is None:
        return ev.type, ev.obj
    now = match(ev.obj)
    if ev.type == "ADDED":
        return ("ADDED", ev.obj) if now else None
    if ev.type == "DELETED":
        return ("DELETED", ev.obj) if now else None
    before = ev.prev is not None and match(ev.prev)
    if now and before:
        return "MODIFIED", ev.obj
    if now:
        return "ADDED", ev.obj
    if before:
        return "DELETED", ev.obj
    return None


_not_found_path = errors.not_found_path
