"""``pods/exec`` and ``pods/attach``: the API server proxies ``kubectl exec`` and ``attach`` to
the kubelet of the pod's node (``wss://<InternalIP>:<kubelet port>/exec|attach/<ns>/<pod>/
<container>``, the client certificate and
CA of ``pods/log``). The client's WebSocket (``v5.channel.k8s.io`` and the earlier
``channel.k8s.io`` protocols, ``orchestrator.kubelet.streaming``) is relayed message for
message to one the API server opens to the kubelet with the same protocols; the kubelet's
choice is the client's. A SPDY/3.1 upgrade (kubectl before 1.30; ``v4.channel.k8s.io``) is
answered here (``spdy``): the streams the client opens are carried to and from the kubelet's
WebSocket (v5, whose close signal ends stdin)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Any

import aiohttp
from aiohttp import WSMsgType, web

from . import errors, spdy
from .podlogs import kubelet_address, kubelet_connector, pod_container, url_host
from .resources import by_path
from .spdy import Stream

# A kubelet that refuses a stream names why in this header (orchestrator.kubelet.server's
# STREAM_ERROR_HEADER: aiohttp's WebSocket client does not read a refused upgrade's body).
STREAM_ERROR_HEADER = "X-Corral-Stream-Error"

__all__ = ["is_websocket", "pod_exec"]

_TRUE = ("1", "true", "True")
V5 = "v5.channel.k8s.io"
SPDY_VERSIONS = ("v4.channel.k8s.io",)  # JSON status on the error stream, as v5's
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
# How long the client has to open the streams it asked for (kube's streamCreationTimeout).
STREAM_CREATION_TIMEOUT = 30.0


def _spdy_version(request: web.Request) -> str | None:
    """The remote command protocol of a SPDY/3.1 upgrade we speak, None when the request is
    no SPDY upgrade; an upgrade offering none of ours is refused."""
    offered = spdy.offered_versions(request)
    if offered is None:
        return None
    for v in offered:
        if v in SPDY_VERSIONS:
            return v
    raise errors.ApiError(
        403,
        "Forbidden",
        f"unable to upgrade: none of the protocols {offered} is supported: {list(SPDY_VERSIONS)}",
    )


def is_websocket(request: web.Request) -> bool:
    conn = request.headers.get("Connection", "").lower()
    return request.headers.get("Upgrade", "").lower() == "websocket" and "upgrade" in [
        p.strip() for p in conn.split(",")
    ]


async def _relay(src: Any, dst: Any) -> None:
    """Messages from ``src`` to ``dst`` until ``src`` closes; then close ``dst`` likewise."""
    async for msg in src:
        if msg.type is WSMsgType.BINARY:
            await dst.send_bytes(msg.data)
        elif msg.type is WSMsgType.TEXT:
            await dst.send_str(msg.data)
        else:
            break
    code = src.close_code if src.close_code is not None else 1000
    with contextlib.suppress(ConnectionError, RuntimeError):
        await dst.close(code=code if code in (1000, 1001, 1011) else 1000)


async def pod_exec(
    request: web.Request,
    storage: Any,
    ns: str,
    name: str,
    ctx: ssl.SSLContext | None,
    sub: str = "exec",
    netns: str | None = None,
) -> web.StreamResponse:
    """``pods/exec`` (a command) or ``pods/attach`` (the container's own output), the
    kubelet's ``/exec`` or ``/attach``."""
    pod = await storage.get(by_path("", "v1", "pods"), ns, name)
    q = request.query
    container = pod_container(pod, q.get("container"))
    command = q.getall("command", []) if sub == "exec" else []
    if sub == "exec" and not command:
        raise errors.bad_request("you must specify at least one command for the container")
    flags = {k: q.get(k) in _TRUE for k in ("stdin", "stdout", "stderr", "tty")}
    if not (flags["stdin"] or flags["stdout"] or flags["stderr"]):
        raise errors.bad_request("you must specify at least one of stdin, stdout, stderr")
    options: dict[str, Any] = {
        "kind": "PodExecOptions" if sub == "exec" else "PodAttachOptions",
        "apiVersion": "v1",
        **{k: v for k, v in flags.items() if v},
        "container": container,
    }
    if command:
        options["command"] = command
    await storage.admit_subresource("CONNECT", sub, ns, name, options)
    node_name = (pod.get("spec") or {}).get("nodeName")
    if not node_name:
        raise errors.bad_request(f"pod {name} does not have a host assigned")
    spdy_version = _spdy_version(request)
    if not spdy_version and not is_websocket(request):
        raise errors.bad_request(
            "Upgrade request required: pods/exec speaks WebSocket (v5.channel.k8s.io) or "
            "SPDY/3.1 (v4.channel.k8s.io)"
        )
    if ctx is None:
        raise errors.ApiError(503, "ServiceUnavailable", "no client credentials for kubelets")
    node = await storage.get(by_path("", "v1", "nodes"), None, node_name)
    host, port = kubelet_address(node)
    host = url_host(host)
    params: list[tuple[str, str]] = [("command", c) for c in command]
    params += [
        (kubelet_name, "1")
        for ours, kubelet_name in (
            ("stdin", "input"),
            ("stdout", "output"),
            ("stderr", "error"),
            ("tty", "tty"),
        )
        if flags[ours]
    ]
    if spdy_version:
        protocols = [V5]  # the close signal carries the end of SPDY's stdin
    else:
        protocols = [
            p.strip()
            for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")
            if p.strip()
        ]
    url = f"https://{host}:{port}/{sub}/{ns}/{name}/{container}"
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
    async with aiohttp.ClientSession(
        timeout=timeout, connector=kubelet_connector(netns)
    ) as session:
        try:
            node_ws = await session.ws_connect(
                url, params=params, protocols=protocols, ssl=ctx, max_msg_size=0
            )
        except aiohttp.WSServerHandshakeError as e:
            message = (e.headers or {}).get(STREAM_ERROR_HEADER)
            if message:  # the kubelet's own answer, relayed as kube-apiserver relays it
                return web.Response(status=e.status, text=message, content_type="text/plain")
            code = e.status if e.status in (400, 403, 404) else 500
            reason = {400: "BadRequest", 403: "Forbidden", 404: "NotFound"}.get(code)
            raise errors.ApiError(
                code,
                reason or "InternalError",
                f"the kubelet of node {node_name} refused exec in container {container} of "
                f"pod {name}: {e.status} {e.message}",
            ) from None
        except aiohttp.ClientError as e:
            raise errors.ApiError(
                500, "InternalError", f"exec: the kubelet of node {node_name}: {e}"
            ) from None
        async with node_ws:
            if spdy_version:
                return await _spdy_bridge(request, spdy_version, node_ws, flags)
            chosen = node_ws.protocol
            client_ws = web.WebSocketResponse(
                protocols=(chosen,) if chosen else (), autoping=True, max_msg_size=0
            )
            await client_ws.prepare(request)
            up = asyncio.create_task(_relay(client_ws, node_ws))
            try:
                await _relay(node_ws, client_ws)
            finally:
                if not up.done():
                    up.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionError, RuntimeError):
                    await up
            return client_ws


async def _spdy_bridge(
    request: web.Request, version: str, node_ws: Any, flags: dict[str, bool]
) -> web.StreamResponse:
    """Answer the client's SPDY upgrade, take its connection over and carry the streams it
    opens to and from the kubelet's WebSocket (v5: stdin's end is the close signal)."""
    want = {"error"}
    want |= {"stdin"} if flags["stdin"] else set()
    want |= {"stdout"} if flags["stdout"] else set()
    want |= {"stderr"} if flags["stderr"] and not flags["tty"] else set()
    want |= {"resize"} if flags["tty"] else set()
    streams: dict[str, Stream] = {}
    ready = asyncio.Event()

    def opened(s: Stream) -> None:
        kind = s.headers.get("streamtype", "")
        if kind in want and kind not in streams:
            streams[kind] = s
            if set(streams) == want:
                ready.set()
        else:
            s.session.reset(s.id)

    resp, session = await spdy.upgrade(request, version, opened)
    tasks: list[asyncio.Task[None]] = []
    try:
        try:
            await asyncio.wait_for(ready.wait(), STREAM_CREATION_TIMEOUT)
        except TimeoutError:
            return resp

        async def stdin() -> None:
            s = streams["stdin"]
            while data := await s.read():
                await node_ws.send_bytes(bytes([STDIN]) + data)
            await node_ws.send_bytes(bytes([CLOSE, STDIN]))

        async def resize() -> None:
            s, pending = streams["resize"], b""
            while data := await s.read():
                pending += data
                *sizes, pending = pending.split(b"\n")
                for size in sizes:
                    if size.strip():
                        await node_ws.send_bytes(bytes([RESIZE]) + size)

        if "stdin" in streams:
            tasks.append(asyncio.create_task(stdin()))
        if "resize" in streams:
            tasks.append(asyncio.create_task(resize()))
        outputs = {STDOUT: "stdout", STDERR: "stderr", ERROR: "error"}
        received = asyncio.ensure_future(_node_messages(node_ws, streams, outputs))
        await asyncio.wait([received, session.done], return_when=asyncio.FIRST_COMPLETED)
        received.cancel()
    finally:
        for t in tasks:
            t.cancel()
        for s in streams.values():
            s.close()
        session.close()
    return resp


async def _node_messages(node_ws: Any, streams: dict[str, Stream], outputs: dict[int, str]) -> None:
    async for msg in node_ws:
        if msg.type is not WSMsgType.BINARY or len(msg.data) < 2:
            continue
        s = streams.get(outputs.get(msg.data[0], ""))
        if s is not None:
            s.write(msg.data[1:])
