"""An asyncio REST client of the Kubernetes API (ours or any kube-apiserver): typed resource
references, JSON bodies, Status errors as exceptions, and watches as async iterators.

Scheduler, controllers, kubelet and proxy talk to the cluster through this module only (never to
the store or the API server's code), as client-go's clientsets do.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import ssl
import tempfile
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import msgspec

from .http import ConnectFailed, Disconnected, HttpPool, target

__all__ = [
    "AlreadyExists",
    "ApiClient",
    "ClientConfig",
    "ClientError",
    "Conflict",
    "Gone",
    "NotFound",
    "Obj",
    "ResourceRef",
    "WatchEvent",
    "load_kubeconfig",
]

Obj = dict[str, Any]

log = logging.getLogger("corral.client")

_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()


@dataclass(frozen=True)
class ResourceRef:
    """Where a resource lives in the API: ``ResourceRef("apps", "v1", "deployments", True)``."""

    group: str
    version: str
    plural: str
    namespaced: bool
    kind: str = ""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None, name: str | None = None, sub: str = "") -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{quote(namespace, safe='')}"
        base += f"/{self.plural}"
        if name is not None:
            base += f"/{quote(name, safe='')}"
            if sub:
                base += f"/{sub}"
        return base


class ClientError(Exception):
    """The API answered with an error Status (or could not be reached: code 0)."""

    def __init__(self, code: int, reason: str, message: str, status: Obj | None = None) -> None:
        super().__init__(f"{reason or code}: {message}")
        self.code = code
        self.reason = reason
        self.message = message
        self.status = status or {}


class NotFound(ClientError):
    pass


class AlreadyExists(ClientError):
    pass


class Conflict(ClientError):
    pass


class Gone(ClientError):
    """410: the resourceVersion asked for is compacted; list again."""


def failure_reason(e: BaseException) -> str:
    """One line for a failed request (aiohttp's connector errors name the SSL context)."""
    if isinstance(e, ConnectFailed | Disconnected):
        return str(e)
    if isinstance(e, aiohttp.ClientConnectorError):
        return f"cannot connect: {e.os_error.strerror or e.os_error}"
    if isinstance(e, TimeoutError):
        return "timed out"
    return str(e) or type(e).__name__


def _error(code: int, body: bytes) -> ClientError:
    status: Obj = {}
    try:
        decoded = _decoder.decode(body)
        if isinstance(decoded, dict):
            status = decoded
    except msgspec.DecodeError:
        pass
    reason = str(status.get("reason") or "")
    message = str(status.get("message") or body[:500].decode(errors="replace"))
    if code == 404:
        return NotFound(code, reason or "NotFound", message, status)
    if code == 409 and reason == "AlreadyExists":
        return AlreadyExists(code, reason, message, status)
    if code == 409:
        return Conflict(code, reason or "Conflict", message, status)
    if code == 410:
        return Gone(code, reason or "Expired", message, status)
    return ClientError(code, reason, message, status)


@dataclass(frozen=True)
class ClientConfig:
    """How to reach the API: the server URL and the TLS material (PEM bytes). ``fallbacks``:
    more servers of the same cluster (one CA), tried in order when one cannot be reached."""

    server: str
    ca_pem: bytes | None = None
    cert_pem: bytes | None = None
    key_pem: bytes | None = None
    token: str | None = None
    insecure: bool = False
    fallbacks: tuple[str, ...] = ()
    # A Unix socket to connect to instead of the server URL's host and port (the API
    # server's own components: plain HTTP there, a bearer token).
    unix_socket: str = ""

    @property
    def servers(self) -> tuple[str, ...]:
        return (self.server, *(s for s in self.fallbacks if s != self.server))

    def ssl_context(self) -> ssl.SSLContext | bool:
        if not self.server.startswith("https:"):
            return False
        ctx = ssl.create_default_context(cadata=self.ca_pem.decode() if self.ca_pem else None)
        if self.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.cert_pem and self.key_pem:
            # load_cert_chain takes paths only: a private temporary directory, gone at once.
            with tempfile.TemporaryDirectory() as d:
                cert, key = Path(d, "c.pem"), Path(d, "k.pem")
                cert.write_bytes(self.cert_pem)
                key.touch(0o600)
                key.write_bytes(self.key_pem)
                ctx.load_cert_chain(cert, key)
        return ctx


def _material(entry: Mapping[str, Any], name: str, base: Path) -> bytes | None:
    data = entry.get(f"{name}-data")
    if data:
        return base64.b64decode(data)
    path = entry.get(name)
    if path:
        p = Path(path)
        return (p if p.is_absolute() else base / p).read_bytes()
    return None


def load_kubeconfig(path: str | Path, context: str | None = None) -> ClientConfig:
    """The current (or named) context of a kubeconfig file, as kubectl reads it."""
    import yaml  # here: a process that reads no kubeconfig (the agent) does without it

    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ClientError(0, "BadConfig", f"kubeconfig {path}: {e}") from None
    if not isinstance(doc, dict):
        raise ClientError(0, "BadConfig", f"kubeconfig {path}: not a mapping")
    ctx_name = context or doc.get("current-context")

    def find(section: str, name: Any) -> Obj:
        for item in doc.get(section) or []:
            if item.get("name") == name:
                return item.get(section[:-1]) or {}
        raise ClientError(0, "BadConfig", f"kubeconfig {path}: no {section[:-1]} {name!r}")

    ctx = find("contexts", ctx_name)
    cluster = find("clusters", ctx.get("cluster"))
    user = find("users", ctx.get("user")) if ctx.get("user") else {}
    base = path.parent
    return ClientConfig(
        server=str(cluster.get("server", "")).rstrip("/"),
        ca_pem=_material(cluster, "certificate-authority", base),
        cert_pem=_material(user, "client-certificate", base),
        key_pem=_material(user, "client-key", base),
        token=user.get("token"),
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
    )


@dataclass(frozen=True)
class WatchEvent:
    type: str  # ADDED, MODIFIED, DELETED, BOOKMARK
    object: Obj


PATCH_CONTENT = {
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "json": "application/json-patch+json",
}


# A server that cannot be reached: refused, reset, closed mid-answer, or silent.
_UNREACHABLE = (
    aiohttp.ClientConnectorError,
    aiohttp.ServerDisconnectedError,
    aiohttp.ClientOSError,
    aiohttp.ClientPayloadError,
    asyncio.IncompleteReadError,
    TimeoutError,
    ConnectFailed,
    Disconnected,
)
# Sent again to the next server after an error past the connection (the first server may have
# done it): reads, a PUT (the same object again; with a resourceVersion, Conflict once done), a
# DELETE (NotFound once done). Not a POST (a second object) nor a PATCH (a JSON patch adding
# to a list adds twice): those fail with ClientError and the caller decides.
_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE"})


class ApiClient:
    """One HTTP connection pool to the API server. Use as ``async with ApiClient(cfg) as c``.

    With several servers (``config.fallbacks``) the client stays on one until it cannot be
    reached (connection refused, reset, timed out), then moves to the next, in order and round;
    the request is sent again there (a POST or a PATCH only when the connection was never made,
    as it may have been done), and a broken watch ends with ClientError, so the caller's next
    watch, from its last resourceVersion, goes to the new server (all servers share one
    datastore)."""

    def __init__(
        self, config: ClientConfig, *, user_agent: str = "corral", max_connections: int = 32
    ) -> None:
        self.config = config
        self.user_agent = user_agent
        self._max = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._pool: HttpPool | None = None
        self._servers = config.servers
        self._current = 0

    @property
    def server(self) -> str:
        """The server requests go to now."""
        return self._servers[self._current]

    def _failed(self, server: str, why: BaseException) -> None:
        """``server`` could not be reached: move on, unless another request moved already."""
        if len(self._servers) > 1 and server == self.server:
            self._current = (self._current + 1) % len(self._servers)
            log.warning(
                "API server %s unreachable (%s): using %s", server, failure_reason(why), self.server
            )

    async def __aenter__(self) -> ApiClient:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        if self._session is None:
            headers = {"User-Agent": self.user_agent, "Accept": "application/json"}
            if self.config.token:
                headers["Authorization"] = f"Bearer {self.config.token}"
            ctx = self.config.ssl_context()
            unix = self.config.unix_socket
            connector: aiohttp.BaseConnector
            if unix:
                connector = aiohttp.UnixConnector(path=unix, limit=self._max)
            else:
                connector = aiohttp.TCPConnector(ssl=ctx, limit=self._max)
            # Watches (long-lived streams) through aiohttp; every other request through the
            # small client of http.py, each with its own connections.
            self._session = aiohttp.ClientSession(headers=headers, connector=connector)
            self._pool = HttpPool(ctx, self._max, headers, unix_socket=unix)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("ApiClient used before open()")
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
        timeout: float | None = 60.0,
    ) -> Any:
        """Send one request; the decoded JSON answer, or a ClientError from the Status."""
        data = None if body is None else _encoder.encode(body)
        if self._pool is None:
            raise RuntimeError("ApiClient used before open()")
        pool = self._pool
        where = target(path, dict(params) if params else None)
        for attempt in range(len(self._servers)):
            server = self.server
            try:
                status, raw = await pool.request(server, method, where, data, content_type, timeout)
            except _UNREACHABLE as e:
                self._failed(server, e)
                again = isinstance(e, ConnectFailed) or method in _IDEMPOTENT
                if again and attempt + 1 < len(self._servers):
                    continue
                if isinstance(e, TimeoutError):
                    raise ClientError(0, "Timeout", f"{method} {server}{path}: timed out") from e
                raise ClientError(0, "Unreachable", f"{method} {server}{path}: {e}") from e
            if status >= 400:
                raise _error(status, raw)
            return _decoder.decode(raw) if raw else None
        raise AssertionError("unreachable")  # the loop returns or raises

    # -------------------------------------------------------------- verbs

    async def get(self, res: ResourceRef, namespace: str | None, name: str, sub: str = "") -> Obj:
        out: Obj = await self.request("GET", res.path(namespace, name, sub))
        return out

    async def list(
        self,
        res: ResourceRef,
        namespace: str | None = None,
        *,
        label_selector: str = "",
        field_selector: str = "",
        limit: int = 0,
        continue_: str = "",
        resource_version: str = "",
    ) -> Obj:
        """One page of a list (``limit``/``continue_``) or all of it."""
        params: dict[str, str] = {}
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        if limit:
            params["limit"] = str(limit)
        if continue_:
            params["continue"] = continue_
        if resource_version:
            params["resourceVersion"] = resource_version
        out: Obj = await self.request("GET", res.path(namespace), params=params)
        return out

    async def list_all(
        self,
        res: ResourceRef,
        namespace: str | None = None,
        *,
        label_selector: str = "",
        field_selector: str = "",
        page: int = 500,
    ) -> tuple[list[Obj], str]:
        """Every item, paging with continue tokens; and the list's resourceVersion."""
        items: list[Obj] = []
        cont = ""
        while True:
            body = await self.list(
                res,
                namespace,
                label_selector=label_selector,
                field_selector=field_selector,
                limit=page,
                continue_=cont,
            )
            items.extend(body.get("items") or [])
            meta = body.get("metadata") or {}
            cont = meta.get("continue") or ""
            if not cont:
                return items, str(meta.get("resourceVersion") or "")

    async def create(
        self, res: ResourceRef, namespace: str | None, body: Obj, sub: str = "", name: str = ""
    ) -> Obj:
        path = res.path(namespace, name, sub) if sub else res.path(namespace)
        out: Obj = await self.request("POST", path, body)
        return out

    async def update(
        self, res: ResourceRef, namespace: str | None, body: Obj, sub: str = ""
    ) -> Obj:
        """PUT: a compare-and-swap when body carries metadata.resourceVersion (Conflict)."""
        name = body["metadata"]["name"]
        out: Obj = await self.request("PUT", res.path(namespace, name, sub), body)
        return out

    async def update_status(self, res: ResourceRef, namespace: str | None, body: Obj) -> Obj:
        return await self.update(res, namespace, body, "status")

    async def patch(
        self,
        res: ResourceRef,
        namespace: str | None,
        name: str,
        patch: Any,
        *,
        kind: str = "merge",
        sub: str = "",
    ) -> Obj:
        out: Obj = await self.request(
            "PATCH", res.path(namespace, name, sub), patch, content_type=PATCH_CONTENT[kind]
        )
        return out

    async def delete(
        self,
        res: ResourceRef,
        namespace: str | None,
        name: str,
        *,
        grace_period: int | None = None,
        propagation: str | None = None,
        preconditions: Obj | None = None,
    ) -> Obj | None:
        opts: Obj = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if grace_period is not None:
            opts["gracePeriodSeconds"] = grace_period
        if propagation:
            opts["propagationPolicy"] = propagation
        if preconditions:
            opts["preconditions"] = preconditions
        out: Obj | None = await self.request("DELETE", res.path(namespace, name), opts)
        return out

    async def bind(self, namespace: str, pod: str, node: str) -> None:
        """pods/binding: assign ``pod`` to ``node`` (Conflict when already bound)."""
        body = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": pod, "namespace": namespace},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        }
        await self.request("POST", PODS.path(namespace, pod, "binding"), body)

    async def watch(
        self,
        res: ResourceRef,
        namespace: str | None = None,
        *,
        resource_version: str = "",
        label_selector: str = "",
        field_selector: str = "",
        timeout_seconds: int = 300,
        bookmarks: bool = True,
    ) -> AsyncIterator[WatchEvent]:
        """The events of one watch stream, in order, until the server ends it. An ERROR event
        raises (Gone for 410: the caller lists again)."""
        params = {"watch": "1", "timeoutSeconds": str(timeout_seconds)}
        if resource_version:
            params["resourceVersion"] = resource_version
        if bookmarks:
            params["allowWatchBookmarks"] = "true"
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        path = res.path(namespace)
        server = self.server
        try:
            async with self.session.get(
                server + path,
                params=params,
                timeout=aiohttp.ClientTimeout(total=None, sock_read=timeout_seconds + 30),
            ) as resp:
                if resp.status >= 400:
                    raise _error(resp.status, await resp.read())
                buf = b""
                async for chunk in resp.content.iter_any():
                    buf = buf + chunk if buf else chunk
                    # The lines of a chunk (a store commit's events come in one) taken from
                    # where the last one ended: the rest is cut off once, not after each.
                    start = 0
                    while True:
                        nl = buf.find(b"\n", start)
                        if nl < 0:
                            break
                        line = buf[start:nl]
                        start = nl + 1
                        if not line.strip():
                            continue
                        ev = _decoder.decode(line)
                        typ, obj = ev.get("type"), ev.get("object") or {}
                        if typ == "ERROR":
                            raise _error(int(obj.get("code") or 500), _encoder.encode(obj))
                        yield WatchEvent(str(typ), obj)
                    buf = buf[start:]
        except _UNREACHABLE as e:
            self._failed(server, e)
            if isinstance(e, TimeoutError):
                raise ClientError(0, "Timeout", f"watch {server}{path}: no data") from e
            raise ClientError(0, "Unreachable", f"watch {server}{path}: {e}") from e
        except aiohttp.ClientError as e:
            raise ClientError(0, "Unreachable", f"watch {server}{path}: {e}") from e


def _ref(group: str, plural: str, kind: str, namespaced: bool = True) -> ResourceRef:
    return ResourceRef(group, "v1", plural, namespaced, kind)


NAMESPACES = _ref("", "namespaces", "Namespace", False)
NODES = _ref("", "nodes", "Node", False)
PODS = _ref("", "pods", "Pod")
SERVICES = _ref("", "services", "Service")
ENDPOINTS = _ref("", "endpoints", "Endpoints")
CONFIGMAPS = _ref("", "configmaps", "ConfigMap")
SECRETS = _ref("", "secrets", "Secret")
EVENTS = _ref("", "events", "Event")
SERVICEACCOUNTS = _ref("", "serviceaccounts", "ServiceAccount")
REPLICATIONCONTROLLERS = _ref("", "replicationcontrollers", "ReplicationController")
DEPLOYMENTS = _ref("apps", "deployments", "Deployment")
REPLICASETS = _ref("apps", "replicasets", "ReplicaSet")
DAEMONSETS = _ref("apps", "daemonsets", "DaemonSet")
STATEFULSETS = _ref("apps", "statefulsets", "StatefulSet")
CONTROLLERREVISIONS = _ref("apps", "controllerrevisions", "ControllerRevision")
JOBS = _ref("batch", "jobs", "Job")
CRONJOBS = _ref("batch", "cronjobs", "CronJob")
LEASES = _ref("coordination.k8s.io", "leases", "Lease")
ENDPOINTSLICES = _ref("discovery.k8s.io", "endpointslices", "EndpointSlice")
PRIORITYCLASSES = _ref("scheduling.k8s.io", "priorityclasses", "PriorityClass", False)
PERSISTENTVOLUMES = _ref("", "persistentvolumes", "PersistentVolume", False)
PERSISTENTVOLUMECLAIMS = _ref("", "persistentvolumeclaims", "PersistentVolumeClaim")
STORAGECLASSES = _ref("storage.k8s.io", "storageclasses", "StorageClass", False)
RUNTIMECLASSES = _ref("node.k8s.io", "runtimeclasses", "RuntimeClass", False)
VALIDATINGWEBHOOKCONFIGURATIONS = _ref(
    "admissionregistration.k8s.io",
    "validatingwebhookconfigurations",
    "ValidatingWebhookConfiguration",
    False,
)
MUTATINGWEBHOOKCONFIGURATIONS = _ref(
    "admissionregistration.k8s.io",
    "mutatingwebhookconfigurations",
    "MutatingWebhookConfiguration",
    False,
)
CERTIFICATESIGNINGREQUESTS = _ref(
    "certificates.k8s.io", "certificatesigningrequests", "CertificateSigningRequest", False
)
NETWORKPOLICIES = _ref("networking.k8s.io", "networkpolicies", "NetworkPolicy")
