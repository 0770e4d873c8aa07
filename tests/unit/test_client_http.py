"""The API client's small HTTP/1.1 client (orchestrator.client.http) against a scripted server
on 127.0.0.1: how answers end (Content-Length, chunked, the connection's end), interim and
bodiless answers, kept-alive connections, a kept-alive connection the server had closed, and
the errors a caller tells apart (never connected, disconnected, timed out)."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Awaitable, Callable

import pytest

from orchestrator.client.http import ConnectFailed, Disconnected, HttpPool, target

Reply = Callable[[asyncio.StreamReader, asyncio.StreamWriter, bytes], Awaitable[bool]]


class Scripted:
    """A server whose connections read one request head (and its Content-Length body) at a
    time and answer with ``reply``; True from ``reply`` keeps the connection."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.requests: list[bytes] = []
        self.connections = 0
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._conn, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for w in self.writers:
            w.transport.abort()

    async def _conn(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(w)
        try:
            while True:
                head = await r.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                request = head + await r.readexactly(length)
                self.requests.append(request)
                if not await self.reply(r, w, request):
                    w.close()
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            w.close()


def fixed(*parts: bytes, keep: bool = True) -> Reply:
    async def reply(r: asyncio.StreamReader, w: asyncio.StreamWriter, req: bytes) -> bool:
        for p in parts:  # written in pieces: the parser must wait for the rest
            w.write(p)
            await w.drain()
            await asyncio.sleep(0.01)
        return keep

    return reply


def ok(body: bytes = b'{"a":1}') -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body)


def run(coro: Awaitable[object]) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_answers_by_length_chunked_and_until_close() -> None:
    async def main() -> None:
        chunked = fixed(
            b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\n",
            b'{"a"\r\n3\r\n:1}\r\n0\r\nX-Trailer: t\r\n',
            b"\r\n",
        )
        async with Scripted(chunked) as url:
            pool = HttpPool(False, 4, {})
            assert await pool.request(url, "GET", "/x", None, "", 5) == (201, b'{"a":1}')
            pool.close()
        until_close = fixed(b"HTTP/1.1 200 OK\r\n\r\npart one, ", b"part two", keep=False)
        async with Scripted(until_close) as url:
            pool = HttpPool(False, 4, {})
            assert await pool.request(url, "GET", "/x", None, "", 5) == (
                200,
                b"part one, part two",
            )
            pool.close()
        split = fixed(b"HTTP/1.1 200 OK\r\nContent-Le", b'ngth: 7\r\n\r\n{"a"', b":1}")
        async with Scripted(split) as url:
            pool = HttpPool(False, 4, {})
            assert await pool.request(url, "GET", "/x", None, "", 5) == (200, b'{"a":1}')
            pool.close()

    run(main())


def test_interim_and_bodiless_answers() -> None:
    async def main() -> None:
        interim = fixed(b"HTTP/1.1 100 Continue\r\n\r\n" + ok())
        async with Scripted(interim) as url:
            pool = HttpPool(False, 4, {})
            assert await pool.request(url, "POST", "/x", b"{}", "application/json", 5) == (
                200,
                b'{"a":1}',
            )
            pool.close()
        # HEAD and 204 say nothing after their head, whatever Content-Length says
        heads = fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n")
        async with Scripted(heads) as url:
            pool = HttpPool(False, 4, {})
            assert await pool.request(url, "HEAD", "/x", None, "", 5) == (200, b"")
            pool.close()
        async with Scripted(fixed(b"HTTP/1.1 204 No Content\r\n\r\n")) as url:
            pool = HttpPool(False, 4, {})
            assert await pool.request(url, "DELETE", "/x", None, "", 5) == (204, b"")
            assert await pool.request(url, "DELETE", "/x", None, "", 5) == (204, b"")
            pool.close()

    run(main())


def test_request_bytes_and_kept_alive_connections() -> None:
    async def main() -> None:
        s = Scripted(fixed(ok()))
        async with s as url:
            pool = HttpPool(False, 4, {"User-Agent": "t", "Accept": "application/json"})
            where = target("/api/v1/namespaces/a b/pods", {"labelSelector": "app=x,y in (1)"})
            await pool.request(url, "POST", where, b'{"k":1}', "application/json", 5)
            await pool.request(url, "GET", "/x", None, "", 5)
            assert s.connections == 1  # kept alive
            port = url.rsplit(":", 1)[1]
            assert s.requests[0] == (
                b"POST /api/v1/namespaces/a%20b/pods?labelSelector=app%3Dx%2Cy%20in%20%281%29"
                b" HTTP/1.1\r\nHost: 127.0.0.1:" + port.encode() + b"\r\nUser-Agent: t\r\n"
                b"Accept: application/json\r\nContent-Type: application/json\r\n"
                b'Content-Length: 7\r\n\r\n{"k":1}'
            )
            pool.close()
        closing = Scripted(
            fixed(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
        )
        async with closing as url:
            pool = HttpPool(False, 4, {})
            await pool.request(url, "GET", "/x", None, "", 5)
            await pool.request(url, "GET", "/x", None, "", 5)
            assert closing.connections == 2  # the server said close
            pool.close()

    run(main())


def test_a_kept_alive_connection_the_server_closed() -> None:
    """Reset with nothing answered (the server had closed it): sent again on a new one, a
    POST too. Closed cleanly with nothing answered: the server may have acted; a GET is sent
    again, a POST is not."""

    async def main() -> None:
        state = {"n": 0}

        async def reset_second(
            r: asyncio.StreamReader, w: asyncio.StreamWriter, req: bytes
        ) -> bool:
            state["n"] += 1
            if state["n"] == 2:
                sock = w.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                w.transport.abort()  # RST, as a socket the server had closed answers
                return False
            w.write(ok())
            return True

        s = Scripted(reset_second)
        async with s as url:
            pool = HttpPool(False, 4, {})
            await pool.request(url, "POST", "/x", b"{}", "application/json", 5)
            assert await pool.request(url, "POST", "/x", b"{}", "application/json", 5) == (
                200,
                b'{"a":1}',
            )
            assert s.connections == 2 and len(s.requests) == 3
            pool.close()

        async def close_second(
            r: asyncio.StreamReader, w: asyncio.StreamWriter, req: bytes
        ) -> bool:
            state["n"] += 1
            if state["n"] % 2 == 0:
                return False  # FIN without an answer
            w.write(ok())
            return True

        state["n"] = 0
        s = Scripted(close_second)
        async with s as url:
            pool = HttpPool(False, 4, {})
            await pool.request(url, "POST", "/x", b"{}", "application/json", 5)
            with pytest.raises(Disconnected):
                await pool.request(url, "POST", "/x", b"{}", "application/json", 5)
            await pool.request(url, "GET", "/x", None, "", 5)  # a new connection: answered
            assert await pool.request(url, "GET", "/x", None, "", 5) == (200, b'{"a":1}')
            assert s.connections == 3  # the GET closed without an answer went again
            pool.close()

    run(main())


def test_errors_a_caller_tells_apart() -> None:
    async def main() -> None:
        async with Scripted(fixed(ok())) as url:
            pass  # closed: the port refuses
        pool = HttpPool(False, 4, {})
        with pytest.raises(ConnectFailed):
            await pool.request(url, "GET", "/x", None, "", 5)

        async def silent(r: asyncio.StreamReader, w: asyncio.StreamWriter, req: bytes) -> bool:
            await asyncio.sleep(10)
            return False

        async with Scripted(silent) as url:
            with pytest.raises(TimeoutError):
                await pool.request(url, "GET", "/x", None, "", 0.2)
        async with Scripted(
            fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort", keep=False)
        ) as url:
            with pytest.raises(Disconnected):
                await pool.request(url, "GET", "/x", None, "", 5)
        async with Scripted(fixed(b"SSH-2.0-nope\r\n\r\n")) as url:
            with pytest.raises(Disconnected):
                await pool.request(url, "GET", "/x", None, "", 5)
        pool.close()

    run(main())
