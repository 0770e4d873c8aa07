"""``pods/exec``: the API server proxies ``kubectl exec`` to the kubelet of the pod's node
(``wss://<InternalIP>:<kubelet port>/exec/<ns>/<pod>/<container>``, the client certificate and
CA of ``pods/log``). The client's WebSocket (``v5.channel.k8s.io`` and the earlier
``channel.k8s.io`` protocols, ``orchestrator.kubelet.streaming``) is relayed message for
message to one the API server opens to the kubelet with the same protocols; the kubelet's
choice is the client's. SPDY upgrades (kubectl before 1.30, and 1.30+ as a fallback) are
refused with 400: kubectl 1.32 speaks WebSocket first."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Any

import aiohttp
from aiohttp import WSMsgType, web

from . import errors
from .podlogs import kubelet_address, pod_container
from .resources import by_path

__all__ = ["pod_exec"]

_TRUE = ("1", "true", "True")


def _is_websocket(request: web.Request) -> bool:
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
    request: web.Request, storage: Any, ns: str, name: str, ctx: ssl.SSLContext | None
) -> web.StreamResponse:
    pod = await storage.get(by_path("", "v1", "pods"), ns, name)
    q = request.query
    container = pod_container(pod, q.get("container"))
    command = q.getall("command", [])
    if not command:
        raise errors.bad_request("you must specify at least one command for the container")
    flags = {k: q.get(k) in _TRUE for k in ("stdin", "stdout", "stderr", "tty")}
    if not (flags["stdin"] or flags["stdout"] or flags["stderr"]):
        raise errors.bad_request("you must specify at least one of stdin, stdout, stderr")
    node_name = (pod.get("spec") or {}).get("nodeName")
    if not node_name:
        raise errors.bad_request(f"pod {name} does not have a host assigned")
    if not _is_websocket(request):
        raise errors.bad_request(
            "Upgrade request required: pods/exec speaks WebSocket (v5.channel.k8s.io); "
            "SPDY is not supported"
        )
    if ctx is None:
        raise errors.ApiError(503, "ServiceUnavailable", "no client credentials for kubelets")
    node = await storage.get(by_path("", "v1", "nodes"), None, node_name)
    host, port = kubelet_address(node)
    host = f"[{host}]" if ":" in host else host
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
    protocols = [
        p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()
    ]
    url = f"https://{host}:{port}/exec/{ns}/{name}/{container}"
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        try:
            node_ws = await session.ws_connect(
                url, params=params, protocols=protocols, ssl=ctx, max_msg_size=0
            )
        except aiohttp.WSServerHandshakeError as e:
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
