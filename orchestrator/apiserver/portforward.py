"""``pods/portforward``: ``kubectl port-forward`` over SPDY/3.1 (``portforward.k8s.io``),
either tunnelled in a WebSocket (``SPDY/3.1+portforward.k8s.io``, kubectl 1.31+) or as an
upgrade of the connection itself (kubectl before, and the fallback). Each local connection
is a pair of streams the client opens (``streamtype`` ``error`` and ``data``, one
``requestid``, the pod's ``port``); the API server carries the pair to a WebSocket of its own
to the kubelet (``/portForward/<ns>/<pod>?port=N``, ``orchestrator.kubelet.streaming``), which
connects to that port inside the pod's network namespace. An error (nothing listens there)
is written on the error stream, as kubectl reports it."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Any

import aiohttp
from aiohttp import WSMsgType, web

from . import errors, spdy
from .podexec import is_websocket
from .podlogs import kubelet_address, kubelet_connector, url_host
from .resources import by_path
from .spdy import Stream

__all__ = ["pod_port_forward"]

PROTOCOL = "portforward.k8s.io"
TUNNEL = "SPDY/3.1+" + PROTOCOL
KUBELET_PROTOCOL = "v4.channel.k8s.io"
DATA, ERROR, CLOSE = 0, 1, 255


async def pod_port_forward(
    request: web.Request,
    storage: Any,
    ns: str,
    name: str,
    ctx: ssl.SSLContext | None,
    netns: str | None = None,
) -> web.StreamResponse:
    pod = await storage.get(by_path("", "v1", "pods"), ns, name)
    options: dict[str, Any] = {"kind": "PodPortForwardOptions", "apiVersion": "v1"}
    ports = [int(p) for p in request.query.getall("ports", []) if p.isdigit()]
    if ports:
        options["ports"] = ports
    await storage.admit_subresource("CONNECT", "portforward", ns, name, options)
    node_name = (pod.get("spec") or {}).get("nodeName")
    if not node_name:
        raise errors.bad_request(f"pod {name} does not have a host assigned")
    offered = spdy.offered_versions(request)
    tunnel = offered is None and is_websocket(request)
    if tunnel:
        asked = [
            p.strip()
            for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")
            if p.strip()
        ]
        if TUNNEL not in asked:
            raise errors.bad_request(f"port-forward over WebSocket speaks {TUNNEL} only")
    elif offered is None:
        raise errors.bad_request(
            f"Upgrade request required: pods/portforward speaks SPDY/3.1 ({PROTOCOL}), "
            f"also in a WebSocket ({TUNNEL})"
        )
    elif PROTOCOL not in offered:
        raise errors.ApiError(
            403,
            "Forbidden",
            f"unable to upgrade: none of the protocols {offered} is supported: [{PROTOCOL}]",
        )
    if ctx is None:
        raise errors.ApiError(503, "ServiceUnavailable", "no client credentials for kubelets")
    node = await storage.get(by_path("", "v1", "nodes"), None, node_name)
    host, kport = kubelet_address(node)
    host = url_host(host)
    base = f"https://{host}:{kport}/portForward/{ns}/{name}"
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
    async with aiohttp.ClientSession(
        timeout=timeout, connector=kubelet_connector(netns)
    ) as session:
        pairs: dict[str, dict[str, Stream]] = {}
        tasks: set[asyncio.Task[None]] = set()

        def opened(s: Stream) -> None:
            kind, rid = s.headers.get("streamtype", ""), s.headers.get("requestid", "")
            pair = pairs.setdefault(rid, {})
            if kind not in ("error", "data") or kind in pair:
                s.session.reset(s.id)
                return
            pair[kind] = s
            if len(pair) == 2:
                del pairs[rid]
                t = asyncio.create_task(_forward(session, base, ctx, pair["data"], pair["error"]))
                tasks.add(t)
                t.add_done_callback(tasks.discard)

        try:
            if tunnel:
                ws = web.WebSocketResponse(protocols=(TUNNEL,), autoping=True, max_msg_size=0)
                await ws.prepare(request)
                await spdy.over_websocket(ws, opened)
                return ws
            resp, conn = await spdy.upgrade(request, PROTOCOL, opened)
            await conn.done
            conn.close()
            return resp
        finally:
            for t in list(tasks):
                t.cancel()
            for t in list(tasks):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t


async def _forward(
    session: aiohttp.ClientSession,
    base: str,
    ctx: ssl.SSLContext,
    data: Stream,
    error: Stream,
) -> None:
    """One local connection: the data stream to and from the kubelet's socket for the port;
    what goes wrong, as text on the error stream. Both streams end (FIN) when it is done."""
    port = data.headers.get("port", "")
    try:
        if not port.isdigit() or not 0 < int(port) < 65536:
            error.write(f"invalid port {port!r}".encode())
            return
        try:
            node_ws = await session.ws_connect(
                base, params={"port": port}, protocols=[KUBELET_PROTOCOL], ssl=ctx
            )
        except aiohttp.ClientError as e:
            error.write(f"error forwarding port {port}: the kubelet: {e}".encode())
            return
        async with node_ws:

            async def upstream() -> None:
                while chunk := await data.read():
                    await node_ws.send_bytes(bytes([DATA]) + chunk)
                await node_ws.send_bytes(bytes([CLOSE, DATA]))

            up = asyncio.create_task(upstream())
            first = {DATA: True, ERROR: True}  # each channel starts with the port
            try:
                async for msg in node_ws:
                    if msg.type is not WSMsgType.BINARY or not msg.data:
                        continue
                    channel, payload = msg.data[0], msg.data[1:]
                    if first.get(channel):
                        first[channel] = False
                        continue
                    if channel == DATA:
                        data.write(payload)
                    elif channel == ERROR and payload:
                        error.write(payload)
            finally:
                up.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await up
    finally:
        data.close()
        error.close()
