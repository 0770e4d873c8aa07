"""A small HTTP/1.1 client for the API's plain requests (everything but watches): kept-alive
connections over asyncio's transports (uvloop's TLS), one request at a time per connection,
the request written in one piece and the answer parsed here (Content-Length, chunked, or to
the end of the connection).

aiohttp's client cost the scheduler a third of its CPU: for every bind a ClientRequest, a
ClientResponse, a StreamReader, a timer, a URL parsed and requoted. This is what a request
to the API needs of it; watches (long-lived streams) still go through aiohttp.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from urllib.parse import quote, urlencode, urlsplit

__all__ = ["ConnectFailed", "Disconnected", "HttpPool", "target"]

MAX_HEAD = 64 * 1024  # bytes of status line and headers at most
# what a path may hold unquoted (RFC 3986 pchar and "/"); "%" keeps what is quoted already
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"
_NO_BODY = (204, 304)


class ConnectFailed(Exception):
    """No connection to the server (refused, unreachable, TLS handshake failed): the request
    was never sent."""


class Disconnected(Exception):
    """The connection closed (or broke) before the whole answer came: the server may have
    acted on the request. ``unanswered``: reset with not a byte of the answer, as a server
    resets a connection it had closed already (a kept-alive one), the request unread."""

    def __init__(self, message: str, unanswered: bool = False) -> None:
        super().__init__(message)
        self.unanswered = unanswered


IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE"})


def target(path: str, params: dict[str, str] | None) -> str:
    """The request target: the path (quoted where it needs to be) and the query."""
    path = quote(path, safe=_PATH_SAFE)
    if params:
        return f"{path}?{urlencode(params, quote_via=quote)}"
    return path


class _Conn(asyncio.Protocol):
    """One connection: a request is answered through ``waiter`` with (status, body)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.keep_alive = True
        self.reused = False  # it answered a request before
        self._buf = bytearray()
        self._head_only = False
        self._status = 0
        self._mode = ""  # "" before the head; then "length", "chunked" or "close"
        self._left = 0  # bytes of body (length mode) still to come
        self._body = bytearray()
        self._got = False  # a byte of the answer came

    # -------------------------------------------------------------- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.waiter is None or self.waiter.done():
            self.close()  # nothing was asked: the connection is not in a known state
            return
        self._got = True
        self._buf += data
        try:
            self._parse()
        except ValueError as e:
            self._fail(Disconnected(f"bad answer: {e}"))

    def eof_received(self) -> bool:
        return False  # close the transport: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        if self._mode == "close":
            self._finish(bytes(self._buf))
        else:
            why = f": {exc}" if exc else ""
            reset = isinstance(exc, ConnectionResetError | BrokenPipeError)
            waiter.set_exception(
                Disconnected(f"the server closed the connection{why}", reset and not self._got)
            )

    # -------------------------------------------------------------- the answer

    def start(self, request: bytes, head_only: bool) -> asyncio.Future[tuple[int, bytes]]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self._buf.clear()
        self._body.clear()
        self._mode = ""
        self._got = False
        self._head_only = head_only
        self.transport.write(request)
        return self.waiter

    def _parse(self) -> None:
        if not self._mode:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buf) > MAX_HEAD:
                    raise ValueError("headers too long")
                return
            head = bytes(self._buf[:end]).decode("latin-1")
            del self._buf[: end + 4]
            lines = head.split("\r\n")
            version, _, rest = lines[0].partition(" ")
            code = rest[:3]
            if not version.startswith("HTTP/1.") or not code.isdigit():
                raise ValueError(f"status line {lines[0][:80]!r}")
            status = int(code)
            if 100 <= status < 200:  # an interim answer (100 Continue): the real one follows
                self._parse()
                return
            length = None
            chunked = False
            conn = ""
            for line in lines[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    length = int(value.strip())
                elif name == "transfer-encoding":
                    chunked = value.strip().lower().endswith("chunked")
                elif name == "connection":
                    conn = value.strip().lower()
            self._status = status
            self.keep_alive = conn != "close" and (version == "HTTP/1.1" or conn == "keep-alive")
            if self._head_only or status in _NO_BODY:
                self._finish(b"")
                return
            if chunked:
                self._mode = "chunked"
            elif length is not None:
                if length < 0:
                    raise ValueError("negative Content-Length")
                self._mode, self._left = "length", length
            else:
                self._mode = "close"  # the body ends with the connection
                self.keep_alive = False
        if self._mode == "length":
            if len(self._buf) >= self._left:
                body = bytes(self._buf[: self._left])
                if len(self._buf) > self._left:
                    self.keep_alive = False  # more than was said: not reused
                self._finish(body)
        elif self._mode == "chunked":
            self._chunks()

    def _chunks(self) -> None:
        buf = self._buf
        while True:
            if self._left:  # inside a chunk: its data and the CRLF after it
                if len(buf) < self._left + 2:
                    return
                self._body += buf[: self._left]
                del buf[: self._left + 2]
                self._left = 0
            eol = buf.find(b"\r\n")
            if eol < 0:
                if len(buf) > MAX_HEAD:
                    raise ValueError("chunk size line too long")
                return
            size = int(bytes(buf[:eol]).split(b";", 1)[0].strip(), 16)
            if size:
                del buf[: eol + 2]
                self._left = size
                continue
            end = buf.find(b"\r\n\r\n", eol)  # the last chunk: trailers, a blank line
            if end < 0:
                return
            del buf[: end + 4]
            if buf:
                self.keep_alive = False
            self._finish(bytes(self._body))
            return

    def _finish(self, body: bytes) -> None:
        waiter, self.waiter = self.waiter, None
        self._mode = ""
        if waiter is not None and not waiter.done():
            waiter.set_result((self._status, body))

    def _fail(self, e: Exception) -> None:
        waiter, self.waiter = self.waiter, None
        self.close()
        if waiter is not None and not waiter.done():
            waiter.set_exception(e)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class HttpPool:
    """Kept-alive connections to the servers of one client, at most ``limit`` at once (a
    request waits for a free one); ``headers`` go with every request. ``unix_socket``: every
    connection goes there (plain HTTP)."""

    def __init__(
        self,
        ssl_context: ssl.SSLContext | bool,
        limit: int,
        headers: dict[str, str],
        *,
        unix_socket: str = "",
    ) -> None:
        self._ssl = ssl_context if isinstance(ssl_context, ssl.SSLContext) else None
        self._unix = unix_socket  # connect here, whatever the server URL says
        self._limit = limit
        self._headers = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self._idle: dict[str, collections.deque[_Conn]] = {}
        self._slots: asyncio.Semaphore | None = None
        self._servers: dict[str, tuple[str, int, str, bool, str]] = {}
        self._open: set[_Conn] = set()

    def _server(self, server: str) -> tuple[str, int, str, bool, str]:
        """(host, port, Host header, TLS, path prefix) of a server URL."""
        known = self._servers.get(server)
        if known is None:
            u = urlsplit(server)
            tls = u.scheme == "https"
            host = u.hostname or ""
            port = u.port or (443 if tls else 80)
            netloc = u.netloc.rpartition("@")[2]
            prefix = quote(u.path.rstrip("/"), safe=_PATH_SAFE)
            known = self._servers[server] = (host, port, netloc, tls, prefix)
        return known

    async def _connect(self, server: str) -> _Conn:
        host, port, _, tls, _ = self._server(server)
        loop = asyncio.get_running_loop()
        ctx: ssl.SSLContext | None = None
        if tls:
            ctx = self._ssl or ssl.create_default_context()
        try:
            if self._unix:
                _, conn = await loop.create_unix_connection(_Conn, self._unix)
            else:
                _, conn = await loop.create_connection(
                    _Conn, host, port, ssl=ctx, server_hostname=host if ctx else None
                )
        except (OSError, ssl.SSLError) as e:
            where = self._unix or f"{host}:{port}"
            raise ConnectFailed(f"cannot connect to {where}: {e.strerror or e}") from e
        return conn

    async def request(
        self,
        server: str,
        method: str,
        target: str,
        body: bytes | None,
        content_type: str,
        timeout: float | None,
    ) -> tuple[int, bytes]:
        """(status, body) of one request to ``server`` (``scheme://host:port``)."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._limit)
        _, _, host, _, prefix = self._server(server)
        head = f"{method} {prefix}{target} HTTP/1.1\r\nHost: {host}\r\n{self._headers}"
        if body is not None:
            head += f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        elif method in ("POST", "PUT", "PATCH"):
            head += "Content-Length: 0\r\n"
        data = (head + "\r\n").encode("latin-1")
        if body:
            data += body
        async with self._slots, asyncio.timeout(timeout):
            idle = self._idle.get(server)
            while True:
                conn = None
                while idle:
                    c = idle.pop()
                    if not c.closed:
                        conn = c
                        break
                    self._open.discard(c)
                if conn is None:
                    conn = await self._connect(server)
                    self._open.add(conn)
                try:
                    status, answer = await conn.start(data, method == "HEAD")
                except Disconnected as e:
                    self._drop(conn)
                    # A kept-alive connection the server had closed (a race with its idle
                    # timeout, or a server gone): sent again on a new one when the server
                    # cannot have acted on it (Go's transport retries likewise).
                    if conn.reused and (e.unanswered or method in IDEMPOTENT):
                        idle = None
                        continue
                    raise
                except BaseException:
                    self._drop(conn)
                    raise
                if conn.keep_alive and not conn.closed:
                    conn.reused = True
                    self._idle.setdefault(server, collections.deque()).append(conn)
                else:
                    self._drop(conn)
                return status, answer

    def _drop(self, conn: _Conn) -> None:
        conn.close()
        self._open.discard(conn)

    def close(self) -> None:
        for conn in self._open:
            conn.close()
        self._open.clear()
        self._idle.clear()
