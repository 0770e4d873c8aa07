"""How long a connection may take to send a request's head, and stay idle between requests.

kube-apiserver's net/http server has ``ReadHeaderTimeout: 32 s`` and ``IdleTimeout: 90 s``
(``secure_serving.go``): a client that trickles a request's head a few bytes at a time (a
slowloris), or opens a connection and sends nothing, is disconnected 32 s after it connected
(after the first bytes of a later request on a kept-alive connection), without a response, as
Go closes it. aiohttp has no such timeout: its keep-alive timer (an hour by default) is all that
ends a connection that never completes a head. ``HeadTimeoutRunner`` is aiohttp's AppRunner
whose connections have it. No connection count is capped, as kube caps none
(``--max-requests-inflight`` bounds requests, and answers 429).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

__all__ = ["IDLE_TIMEOUT", "READ_HEADER_TIMEOUT", "HeadTimeoutRunner"]

READ_HEADER_TIMEOUT = 32.0  # kube-apiserver's, "just shy of requestTimeoutUpperBound"
IDLE_TIMEOUT = 90.0  # kube-apiserver's (http.DefaultTransport's keep-alive timeout)


class _HeadTimeoutHandler(RequestHandler):
    """A connection that is closed when a request's head takes longer than ``head_timeout``
    to arrive: from the connection's start, then from the first bytes of each later request
    (the wait between requests is the keep-alive timeout's)."""

    def __init__(self, manager: web.Server, *, head_timeout: float, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._head_timeout = head_timeout
        self._head_timer: asyncio.TimerHandle | None = None
        self._heads_seen = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        # (aiohttp's own state: the requests whose heads it parsed, and whether it waits for
        # the next one: bytes then are a new head's)
        idle = self._waiter is not None and not self._messages
        super().data_received(data)
        if self._request_count != self._heads_seen:
            self._heads_seen = self._request_count
            self._disarm()
        elif data and idle and self._head_timer is None:
            self._arm()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._heads_seen = self._request_count
        self._head_timer = self._loop.call_later(self._head_timeout, self._expired)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _expired(self) -> None:
        self._head_timer = None
        if self._request_count == self._heads_seen:  # no head completed: close, no response
            self.force_close()


class _HeadTimeoutServer(web.Server):
    def __call__(self) -> RequestHandler:
        kwargs = dict(self._kwargs)
        head_timeout = kwargs.pop("head_timeout")
        return _HeadTimeoutHandler(self, loop=self._loop, head_timeout=head_timeout, **kwargs)


class HeadTimeoutRunner(web.AppRunner):
    """``web.AppRunner`` whose connections must send each request's head within
    ``read_header_timeout`` seconds, and are closed after ``idle_timeout`` seconds between
    requests."""

    def __init__(
        self,
        app: web.Application,
        *,
        read_header_timeout: float = READ_HEADER_TIMEOUT,
        idle_timeout: float = IDLE_TIMEOUT,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            app, keepalive_timeout=idle_timeout, head_timeout=read_header_timeout, **kwargs
        )

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _HeadTimeoutServer  # (aiohttp makes it; its handlers are ours)
        return server
