"""The kubelet's HTTPS port: ``/containerLogs/<namespace>/<pod>/<container>`` with the
kubelet's parameters (follow, tailLines, previous, timestamps, sinceSeconds, sinceTime,
limitBytes), which the API server proxies ``pods/log`` (``kubectl logs [-f]``) to, and
``/exec/<namespace>/<pod>/<container>`` (``command``, ``input``, ``output``, ``error``, ``tty``)
over a WebSocket (``streaming``), which it proxies ``pods/exec`` to, and
``/portForward/<namespace>/<pod>?port=N`` (one TCP connection a WebSocket) for
``pods/portforward``. TLS with a
serving certificate the cluster CA signed (from the join); a client must present a
certificate of the cluster CA in group ``system:masters`` (the API server's)."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
from aiohttp import web

from orchestrator.client import Obj
from orchestrator.httprelay import relay, request_headers
from runtime.pod import api

from .port import serving_context
from .streaming import attach_websocket, exec_websocket, port_forward_websocket

__all__ = ["KubeletServer"]

log = logging.getLogger("corral.agent.server")

ADMIN_GROUP = "system:masters"
ERROR_HEADER = "X-Corral-Proxy-Error"  # orchestrator.apiserver.proxyroute reads it


def _groups(cert: dict[str, object] | None) -> set[str]:
    out: set[str] = set()
    for rdn in (cert or {}).get("subject", ()):  # type: ignore[union-attr]
        for key, value in rdn:
            if key == "organizationName":
                out.add(value)
    return out


def _since(request: web.Request) -> datetime | None:
    q = request.query
    if q.get("sinceSeconds"):
        try:
            seconds = int(q["sinceSeconds"])
        except ValueError:
            raise _bad("sinceSeconds must be an integer") from None
        try:
            return datetime.now(UTC) - timedelta(seconds=seconds)
        except OverflowError:  # further back than datetime goes: every line
            return None
    if q.get("sinceTime"):
        try:
            return datetime.fromisoformat(q["sinceTime"].replace("Z", "+00:00"))
        except ValueError:
            raise _bad("sinceTime must be an RFC 3339 time") from None
    return None


def _line_time(t: str) -> datetime | None:
    try:  # RFC3339Nano: cut to microseconds for fromisoformat
        head, _, frac = t.rstrip("Z").partition(".")
        return datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}+00:00")
    except ValueError:
        return None


_METRICS = (  # name, type, help (the kubelet's [STABLE] resource metrics)
    ("container_cpu_usage_seconds_total", "counter",
     "Cumulative cpu time consumed by the container in core-seconds"),
    ("container_memory_working_set_bytes", "gauge",
     "Current working set of the container in bytes"),
    ("node_cpu_usage_seconds_total", "counter",
     "Cumulative cpu time consumed by the node in core-seconds"),
    ("node_memory_working_set_bytes", "gauge", "Current working set of the node in bytes"),
    ("pod_cpu_usage_seconds_total", "counter",
     "Cumulative cpu time consumed by the pod in core-seconds"),
    ("pod_memory_working_set_bytes", "gauge", "Current working set of the pod in bytes"),
)  # fmt: skip


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def resource_metrics_text(use: api.ResourceUse, names: dict[str, tuple[str, str]]) -> str:
    """``use`` in the kubelet's ``/metrics/resource`` form; pods by ``names`` (uid ->
    (namespace, name)): a pod the API does not know (yet) is left out."""
    stamp = f" {int(use.time * 1000)}"
    series: dict[str, list[str]] = {name: [] for name, _, _ in _METRICS}

    def add(metric: str, labels: str, value: float | None) -> None:
        if value is not None:
            series[metric].append(f"{metric}{labels} {value!r}{stamp}")

    cpu = use.node.cpu_ns
    add("node_cpu_usage_seconds_total", "", None if cpu is None else cpu / 1e9)
    add("node_memory_working_set_bytes", "", use.node.working_set)
    for uid, pod in use.pods.items():
        if uid not in names:
            continue
        ns, name = names[uid]
        labels = f'namespace="{_label(ns)}",pod="{_label(name)}"'
        cpu = pod.usage.cpu_ns
        add("pod_cpu_usage_seconds_total", f"{{{labels}}}", None if cpu is None else cpu / 1e9)
        add("pod_memory_working_set_bytes", f"{{{labels}}}", pod.usage.working_set)
        for cname, u in sorted(pod.containers.items()):
            clabels = f'{{container="{_label(cname)}",{labels}}}'
            cpu = u.cpu_ns
            add("container_cpu_usage_seconds_total", clabels, None if cpu is None else cpu / 1e9)
            add("container_memory_working_set_bytes", clabels, u.working_set)
    lines = []
    for name, kind, text in _METRICS:
        lines += [f"# HELP {name} [STABLE] {text}", f"# TYPE {name} {kind}", *series[name]]
    lines += ["# HELP resource_scrape_error [STABLE] 1 if there was an error while getting "
              "container metrics, 0 otherwise", "# TYPE resource_scrape_error gauge",
              "resource_scrape_error 0"]  # fmt: skip
    return "\n".join(lines) + "\n"


def _proxy_error(message: str) -> web.Response:
    return web.Response(
        status=502, text=message, content_type="text/plain", headers={ERROR_HEADER: "1"}
    )


# Carries a refused stream's message to the API server (aiohttp's WebSocket client does not
# read the body of a refused upgrade), which answers with it as kube-apiserver relays the
# kubelet's answer.
STREAM_ERROR_HEADER = "X-Corral-Stream-Error"


def _bad(message: str, code: int = 400) -> web.HTTPException:
    cls = {400: web.HTTPBadRequest, 403: web.HTTPForbidden, 404: web.HTTPNotFound}[code]
    return cls(text=message, content_type="text/plain")


class KubeletServer:
    def __init__(
        self,
        runtime: api.PodRuntime,
        find_pod: Callable[[str], Obj | None],
        cert: Path,
        key: Path,
        ca_pem: bytes,
        list_pods: Callable[[], list[Obj]] | None = None,
    ) -> None:
        self.runtime = runtime
        self.find_pod = find_pod
        self.list_pods = list_pods
        self.cert, self.key, self.ca_pem = cert, key, ca_pem
        self._runner: web.AppRunner | None = None

    def ssl_context(self) -> ssl.SSLContext:
        return serving_context(self.cert, self.key, self.ca_pem)

    async def start(self, host: str, port: int, sock: socket.socket | None = None) -> None:
        """Serve on host:port; with ``sock`` (a fresh TCP socket, made in the node's network
        namespace, say), bind that one to it."""
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            await self.serve(sock, self.ssl_context())
        else:
            await self._runner_setup()
            assert self._runner is not None
            await web.TCPSite(self._runner, host, port, ssl_context=self.ssl_context()).start()
        log.info("kubelet serving on https://%s:%d", host, port)

    async def serve(self, sock: socket.socket, ssl_context: ssl.SSLContext) -> None:
        """Serve on ``sock``, bound already (listening or not: its pending connections are
        accepted)."""
        await self._runner_setup()
        assert self._runner is not None
        await web.SockSite(self._runner, sock, ssl_context=ssl_context).start()

    async def _runner_setup(self) -> None:
        app = web.Application(middlewares=[self._auth])
        app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", self._logs)
        app.router.add_route("GET", "/exec/{namespace}/{pod}/{container}", self._exec)
        app.router.add_route("POST", "/exec/{namespace}/{pod}/{container}", self._exec)
        app.router.add_route("GET", "/attach/{namespace}/{pod}/{container}", self._attach)
        app.router.add_route("POST", "/attach/{namespace}/{pod}/{container}", self._attach)
        app.router.add_get("/portForward/{namespace}/{pod}", self._port_forward)
        app.router.add_route(
            "*", "/podProxy/{namespace}/{pod}/{scheme}/{port}/{tail:.*}", self._pod_proxy
        )
        app.router.add_get("/healthz", self._health)
        app.router.add_get("/pods", self._pods)
        app.router.add_get("/metrics/resource", self._resource_metrics)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @web.middleware
    async def _auth(self, request: web.Request, handler: Callable[..., object]) -> object:
        transport = request.transport
        cert = transport.get_extra_info("peercert") if transport is not None else None
        if ADMIN_GROUP not in _groups(cert):
            raise _bad("Forbidden: the kubelet API is the API server's", 403)
        return await handler(request)  # type: ignore[misc]

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _pods(self, request: web.Request) -> web.Response:
        """The pods this node runs (the kubelet's ``/pods``: a v1 PodList)."""
        items = self.list_pods() if self.list_pods is not None else []
        body = {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}
        return web.json_response(body)

    async def _resource_metrics(self, request: web.Request) -> web.Response:
        """The kubelet's ``/metrics/resource`` (what metrics-server scrapes, in Prometheus'
        text format): the node's and each pod's and container's cumulative CPU seconds and
        memory working set, each sample stamped with the time it was read (ms)."""
        loop = asyncio.get_running_loop()
        use = await loop.run_in_executor(None, self.runtime.resource_use)
        names = {}
        for pod in self.list_pods() if self.list_pods is not None else []:
            meta = pod.get("metadata") or {}
            names[meta.get("uid", "")] = (meta.get("namespace") or "", meta.get("name") or "")
        return web.Response(
            text=resource_metrics_text(use, names), content_type="text/plain", charset="utf-8"
        )

    async def _pod_proxy(self, request: web.Request) -> web.StreamResponse:
        """The API server's ``pods/proxy`` and ``services/proxy``: the request passed on to
        the pod's address and port, connected from the node's network namespace (where the
        pods' bridge is); ``https`` unverified, as kube-apiserver's pod proxy. An error of
        ours (no such pod, no address, the connection refused) carries ``ERROR_HEADER``."""
        ns, name = request.match_info["namespace"], request.match_info["pod"]
        scheme, port = request.match_info["scheme"], request.match_info["port"]
        pod = self.find_pod(f"{ns}/{name}")
        if pod is None:
            return _proxy_error(f'pod "{name}" not found in namespace "{ns}" on this node')
        if scheme not in ("http", "https") or not port.isdigit() or not 0 < int(port) < 65536:
            return _proxy_error(f"dial tcp: address {port}: invalid port")
        loop = asyncio.get_running_loop()
        try:
            st = await loop.run_in_executor(None, self.runtime.status, pod["metadata"]["uid"])
        except api.PodError as e:
            return _proxy_error(f"pod {ns}/{name}: {e.message}")
        ip = "127.0.0.1" if st.host_network else st.pod_ip
        if not ip:
            return _proxy_error(f"pod {ns}/{name} has no address")
        prefix = "/podProxy/" + "/".join((ns, name, scheme, port))
        tail = request.raw_path.split("?", 1)[0][len(prefix) :] or "/"
        host = f"[{ip}]" if ":" in ip else ip
        connector = aiohttp.TCPConnector(socket_factory=self._node_socket, force_close=True)
        try:
            return await relay(
                request,
                f"{scheme}://{host}:{port}{tail}",
                request_headers(request),
                ssl=False,
                connector=connector,
            )
        except (aiohttp.ClientError, OSError) as e:
            return _proxy_error(f"dial tcp {host}:{port}: {e}")

    def _node_socket(self, info: object) -> socket.socket:
        return self.runtime.node_socket()

    def _target(self, request: web.Request) -> tuple[Obj, str]:
        """The pod and container a streaming request names, both known to this node."""
        ns, name = request.match_info["namespace"], request.match_info["pod"]
        container = request.match_info["container"]
        pod = self.find_pod(f"{ns}/{name}")
        if pod is None:
            raise _bad(f'pod "{name}" not found in namespace "{ns}" on this node', 404)
        spec = pod.get("spec") or {}
        names = [c.get("name") for c in (spec.get("containers") or [])]
        names += [c.get("name") for c in (spec.get("initContainers") or [])]
        names += [c.get("name") for c in (spec.get("ephemeralContainers") or [])]
        if container not in names:
            raise _bad(f'container "{container}" not found in pod "{name}"', 404)
        if request.headers.get("Upgrade", "").lower() != "websocket":
            raise _bad("a WebSocket upgrade is needed (channel.k8s.io protocols)")
        return pod, container

    @staticmethod
    def _streams(request: web.Request) -> dict[str, bool]:
        q = request.query
        flags = {k: q.get(k) in ("1", "true") for k in ("input", "output", "error", "tty")}
        if not (flags["input"] or flags["output"] or flags["error"]):
            raise _bad("you must specify at least one of stdin, stdout, stderr")
        return flags

    async def _exec(self, request: web.Request) -> web.StreamResponse:
        pod, container = self._target(request)
        command = request.query.getall("command", [])
        if not command:
            raise _bad("you must specify at least one command for the container")
        flags = self._streams(request)
        uid = pod["metadata"]["uid"]
        loop = asyncio.get_running_loop()
        if not await loop.run_in_executor(None, self._running, uid, container):
            # kube's kubelet finds the container among the running ones, else refuses the
            # upgrade with a 500 and this text (kubectl: "unable to upgrade connection: ...")
            message = f'container not found ("{container}")'
            return web.Response(
                status=500,
                text=message,
                content_type="text/plain",
                headers={STREAM_ERROR_HEADER: message},
            )
        return await exec_websocket(
            request,
            self.runtime,
            pod["metadata"]["uid"],
            container,
            command,
            flags["input"],
            flags["output"],
            flags["error"],
            flags["tty"],
        )

    def _running(self, uid: str, container: str) -> bool:
        try:
            return self.runtime.status(uid).container(container).state == "Running"
        except (api.PodError, KeyError):
            return False

    async def _attach(self, request: web.Request) -> web.StreamResponse:
        pod, container = self._target(request)
        flags = self._streams(request)
        spec = pod.get("spec") or {}
        found = [
            c
            for key in ("containers", "initContainers", "ephemeralContainers")
            for c in spec.get(key) or []
            if c.get("name") == container
        ]
        served = bool(found and (found[0].get("stdin") or found[0].get("tty")))
        return await attach_websocket(
            request,
            self.runtime,
            pod["metadata"]["uid"],
            container,
            flags["input"],
            flags["output"],
            flags["error"],
            flags["tty"],
            served,
        )

    async def _port_forward(self, request: web.Request) -> web.StreamResponse:
        ns, name = request.match_info["namespace"], request.match_info["pod"]
        pod = self.find_pod(f"{ns}/{name}")
        if pod is None:
            raise _bad(f'pod "{name}" not found in namespace "{ns}" on this node', 404)
        try:
            port = int(request.query.get("port", ""))
        except ValueError:
            raise _bad("port-forward needs one port (?port=N)") from None
        if not 0 < port < 65536:
            raise _bad(f"port {port} is not a TCP port")
        if request.headers.get("Upgrade", "").lower() != "websocket":
            raise _bad("port-forward needs a WebSocket upgrade")
        return await port_forward_websocket(request, self.runtime, pod["metadata"]["uid"], port)

    async def _logs(self, request: web.Request) -> web.StreamResponse:
        ns, name = request.match_info["namespace"], request.match_info["pod"]
        container = request.match_info["container"]
        pod = self.find_pod(f"{ns}/{name}")
        if pod is None:
            raise _bad(f'pod "{name}" not found in namespace "{ns}" on this node', 404)
        uid = pod["metadata"]["uid"]
        q = request.query
        follow = q.get("follow") in ("true", "1")
        previous = q.get("previous") in ("true", "1")
        timestamps = q.get("timestamps") in ("true", "1")
        try:
            tail = int(q["tailLines"]) if q.get("tailLines") else None
            limit = int(q["limitBytes"]) if q.get("limitBytes") else None
        except ValueError:
            raise _bad("tailLines and limitBytes must be integers") from None
        since = _since(request)
        loop = asyncio.get_running_loop()
        try:
            lines = await loop.run_in_executor(
                None, self.runtime.log_lines, uid, container, previous
            )
        except api.PodError as e:
            raise _bad(f'container "{container}" in pod "{name}": {e.message}') from None
        seen = len(lines)
        if since is not None:
            lines = [ln for ln in lines if (_line_time(ln.time) or since) >= since]
        if tail is not None:
            lines = lines[-tail:] if tail > 0 else []
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await resp.prepare(request)
        sent = 0

        async def write(line: api.LogLine) -> bool:
            nonlocal sent
            data = (f"{line.time} {line.text}\n" if timestamps else f"{line.text}\n").encode()
            if limit is not None and sent + len(data) > limit:
                data = data[: max(limit - sent, 0)]
            if data:
                await resp.write(data)
                sent += len(data)
            return limit is None or sent < limit

        for line in lines:
            if not await write(line):
                return resp
        if follow and not previous:
            await self._follow(uid, container, seen, write)
        return resp

    async def _follow(
        self,
        uid: str,
        container: str,
        skip: int,
        write: Callable[[api.LogLine], object],
    ) -> None:
        """Lines written after the first ``skip`` of the current run, until the pod ends or
        the client goes."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[api.LogLine | None] = asyncio.Queue()
        stop = threading.Event()

        def pump() -> None:
            n = 0
            try:
                for line in self.runtime.follow_log_lines(uid, container, 0.1, stop.is_set):
                    n += 1
                    if n > skip:
                        loop.call_soon_threadsafe(queue.put_nowait, line)
            except api.PodError as e:
                log.info("follow %s/%s: %s", uid, container, e)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        thread = threading.Thread(target=pump, name=f"logs-{uid}-{container}", daemon=True)
        thread.start()  # a thread of its own: a follow lasts, the executor's pool is small
        try:
            while True:
                line = await queue.get()
                if line is None:
                    return
                if not await write(line):  # type: ignore[misc]
                    return
        finally:
            stop.set()
