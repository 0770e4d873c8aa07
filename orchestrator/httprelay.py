"""An HTTP request passed on and its answer streamed back (aiohttp's server and client), as
the API server's ``proxy`` subresources and the kubelet's pod proxy behind them do it:
hop-by-hop headers dropped both ways (RFC 7230 6.1, and those ``Connection`` names), the
body streamed in both directions, content left encoded as it came."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

import aiohttp
from aiohttp import web
from yarl import URL

__all__ = ["HOP", "relay", "request_headers"]

HOP = frozenset(
    "connection keep-alive proxy-authenticate proxy-authorization te trailer "
    "transfer-encoding upgrade host".split()
)
CHUNK = 65536


def request_headers(request: web.Request, drop: frozenset[str] = frozenset()) -> dict[str, str]:
    """The headers of ``request`` to pass on: without hop-by-hop ones, those its
    ``Connection`` header names, and those in ``drop`` (lower case)."""
    named = {
        t.strip().lower() for t in request.headers.get("Connection", "").split(",") if t.strip()
    }
    out: dict[str, str] = {}
    for key, value in request.headers.items():
        low = key.lower()
        if low in HOP or low in named or low in drop:
            continue
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out


def _body(request: web.Request) -> AsyncIterator[bytes] | None:
    if not request.body_exists:
        return None

    async def chunks() -> AsyncIterator[bytes]:
        async for chunk in request.content.iter_chunked(CHUNK):
            yield chunk

    return chunks()


async def relay(
    request: web.Request,
    url: str,
    headers: Mapping[str, str],
    *,
    ssl: object = True,
    connector: aiohttp.BaseConnector | None = None,
    connect_timeout: float = 30.0,
    check: Callable[[aiohttp.ClientResponse], Awaitable[None]] | None = None,
    server_hostname: str | None = None,
) -> web.StreamResponse:
    """``request`` (its method, body and query) sent to ``url`` (percent-encoded as it is)
    with ``headers``; the answer streamed back. ``check`` sees the answer first and may
    raise instead. ``server_hostname``: the name TLS checks the certificate for (else the
    URL's host). aiohttp.ClientError before the answer comes is the caller's."""
    query = request.raw_path.partition("?")[2]  # as sent: query_string is decoded
    if query:
        url += "?" + query
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout)
    async with (
        aiohttp.ClientSession(
            timeout=timeout,
            connector=connector,
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept", "Content-Type"),
        ) as session,
        session.request(
            request.method,
            URL(url, encoded=True),
            headers=dict(headers),
            data=_body(request),
            ssl=ssl,  # type: ignore[arg-type]
            server_hostname=server_hostname,
            allow_redirects=False,
        ) as r,
    ):
        if check is not None:
            await check(r)
        named = {t.strip().lower() for t in r.headers.get("Connection", "").split(",")}
        resp = web.StreamResponse(status=r.status, reason=r.reason)
        for key, value in r.headers.items():
            low = key.lower()
            if low not in HOP and low not in named and low != "content-length":
                resp.headers.add(key, value)
        if r.content_length is not None:
            resp.content_length = r.content_length
        await resp.prepare(request)
        try:
            async for chunk in r.content.iter_chunked(CHUNK):
                await resp.write(chunk)
        except aiohttp.ClientError:  # the target went mid-answer: so does this one
            if request.transport is not None:
                request.transport.close()
            return resp
        await resp.write_eof()
        return resp
