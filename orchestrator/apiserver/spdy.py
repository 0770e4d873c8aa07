"""The server side of SPDY/3.1 (draft-mbelshe-httpbis-spdy-00 with 3.1's flow control), as
kubectl's ``exec`` spoke it before WebSockets (``Upgrade: SPDY/3.1``): streams the client
opens with SYN_STREAM (their headers name what each carries, ``streamtype: stdin`` ...), DATA
frames both ways, FIN half-closes, PING echoed. Header blocks are zlib streams (one context a
direction) primed with the protocol's dictionary.

``Session`` parses what ``feed`` gives it and writes frames through a callable, so it works
over any byte stream (a hijacked HTTPS connection here)."""

from __future__ import annotations

import asyncio
import logging
import struct
import zlib
from collections.abc import Callable

from aiohttp import web

__all__ = ["DICTIONARY", "Session", "SpdyError", "Stream", "offered_versions", "upgrade"]

log = logging.getLogger("corral.apiserver.spdy")

VERSION = 3
SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = (
    1, 2, 3, 4, 6, 7, 8, 9
)  # fmt: skip
FLAG_FIN = 0x01
RST_PROTOCOL_ERROR, RST_CANCEL = 1, 5

# The header compression dictionary of SPDY/3 (section 2.6.10.1): length-prefixed names and
# values, then a run of status codes, reasons, dates and media types without prefixes.
_WORDS = (
    "options head post put delete trace accept accept-charset accept-encoding "
    "accept-language accept-ranges age allow authorization cache-control connection "
    "content-base content-encoding content-language content-length content-location "
    "content-md5 content-range content-type date etag expect expires from host if-match "
    "if-modified-since if-none-match if-range if-unmodified-since last-modified location "
    "max-forwards pragma proxy-authenticate proxy-authorization range referer retry-after "
    "server te trailer transfer-encoding upgrade user-agent vary via warning "
    "www-authenticate method get status"
).split() + ["200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive",
             "origin"]  # fmt: skip
_TAIL = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504"
    "505203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request"
    "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented"
    "503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, "
    "Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,"
    "application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age="
    "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
)
DICTIONARY = b"".join(struct.pack(">I", len(w)) + w.encode() for w in _WORDS) + _TAIL.encode()


class SpdyError(Exception):
    """A frame this session cannot make sense of: the connection ends."""


def _encode_headers(headers: dict[str, str]) -> bytes:
    out = [struct.pack(">I", len(headers))]
    for k, v in headers.items():
        kb, vb = k.lower().encode(), v.encode()
        out += [struct.pack(">I", len(kb)), kb, struct.pack(">I", len(vb)), vb]
    return b"".join(out)


def _decode_headers(block: bytes) -> dict[str, str]:
    try:
        (n,) = struct.unpack_from(">I", block, 0)
        pos, out = 4, {}
        for _ in range(n):
            (ln,) = struct.unpack_from(">I", block, pos)
            name = block[pos + 4 : pos + 4 + ln].decode()
            pos += 4 + ln
            (lv,) = struct.unpack_from(">I", block, pos)
            value = block[pos + 4 : pos + 4 + lv].decode()
            pos += 4 + lv
            out[name.lower()] = value
        return out
    except (struct.error, UnicodeDecodeError) as e:
        raise SpdyError(f"a header block that does not parse: {e}") from None


class Stream:
    """One stream the client opened: its headers, what it sent (``read``: b"" once the
    client half-closed it) and our half (``write``, ``close``)."""

    def __init__(self, session: Session, sid: int, headers: dict[str, str], fin: bool) -> None:
        self.session = session
        self.id = sid
        self.headers = headers
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.remote_closed = False
        self.local_closed = False
        if fin:
            self._remote_fin()

    def _remote_fin(self) -> None:
        if not self.remote_closed:
            self.remote_closed = True
            self.queue.put_nowait(b"")

    async def read(self) -> bytes:
        """What the client sent next; b"" once it half-closed (or reset) the stream."""
        if self.queue.empty() and self.remote_closed:
            return b""
        return await self.queue.get()

    def write(self, data: bytes) -> None:
        if self.local_closed or self.session.closed:
            return
        for i in range(0, len(data), 1 << 16):
            self.session.data_frame(self.id, data[i : i + (1 << 16)], 0)

    def close(self) -> None:
        """Half-close our side (an empty DATA frame with FIN)."""
        if not self.local_closed and not self.session.closed:
            self.session.data_frame(self.id, b"", FLAG_FIN)
        self.local_closed = True


class Session:
    """A server's SPDY/3.1 session. ``on_stream`` is called with each stream the client opens
    (after it was answered with SYN_REPLY); ``write`` sends bytes to the client."""

    def __init__(self, write: Callable[[bytes], None], on_stream: Callable[[Stream], None]):
        self._write = write
        self._on_stream = on_stream
        self._buf = bytearray()
        self._inflate = zlib.decompressobj(zdict=DICTIONARY)
        self._deflate = zlib.compressobj(zdict=DICTIONARY)
        self.streams: dict[int, Stream] = {}
        self.closed = False
        self.done = asyncio.get_running_loop().create_future()
        self.on_close: Callable[[], object] | None = None  # the connection's end, once
        self._last_id = 0

    # ---------------------------------------------------------------- writing

    def _control(self, kind: int, flags: int, payload: bytes) -> None:
        head = struct.pack(">HHI", 0x8000 | VERSION, kind, (flags << 24) | len(payload))
        self._write(head + payload)

    def data_frame(self, sid: int, data: bytes, flags: int) -> None:
        self._write(struct.pack(">II", sid & 0x7FFFFFFF, (flags << 24) | len(data)) + data)

    def _header_block(self, headers: dict[str, str]) -> bytes:
        raw = _encode_headers(headers)
        return self._deflate.compress(raw) + self._deflate.flush(zlib.Z_SYNC_FLUSH)

    def reset(self, sid: int, status: int = RST_CANCEL) -> None:
        self._control(RST_STREAM, 0, struct.pack(">II", sid, status))

    def goaway(self) -> None:
        if not self.closed:
            self._control(GOAWAY, 0, struct.pack(">II", self._last_id, 0))

    # ---------------------------------------------------------------- reading

    def feed(self, data: bytes) -> None:
        """Parse what arrived; a frame that makes no sense ends the session."""
        if self.closed:
            return
        self._buf += data
        try:
            while len(self._buf) >= 8:
                length = int.from_bytes(self._buf[5:8], "big")
                if len(self._buf) < 8 + length:
                    break
                frame = bytes(self._buf[: 8 + length])
                del self._buf[: 8 + length]
                self._frame(frame)
        except SpdyError as e:
            log.info("spdy: %s", e)
            self.goaway()
            self.eof()

    def eof(self) -> None:
        """The connection ended: every stream's remote side with it."""
        if self.closed:
            return
        self.closed = True
        for s in self.streams.values():
            s._remote_fin()
        if not self.done.done():
            self.done.set_result(None)

    def close(self) -> None:
        """End the session: GOAWAY, then the connection."""
        self.goaway()
        self.eof()
        if self.on_close is not None:
            self.on_close()
            self.on_close = None

    def _frame(self, frame: bytes) -> None:
        flags, body = frame[4], frame[8:]
        if not frame[0] & 0x80:
            sid = int.from_bytes(frame[0:4], "big") & 0x7FFFFFFF
            s = self.streams.get(sid)
            if s is None or s.remote_closed:
                self.reset(sid, RST_PROTOCOL_ERROR)
                return
            if body:
                s.queue.put_nowait(body)
            if flags & FLAG_FIN:
                s._remote_fin()
            return
        version = int.from_bytes(frame[0:2], "big") & 0x7FFF
        kind = int.from_bytes(frame[2:4], "big")
        if version != VERSION:
            raise SpdyError(f"SPDY version {version}, not {VERSION}")
        if kind == SYN_STREAM:
            if len(body) < 10:
                raise SpdyError("a SYN_STREAM too short")
            sid = int.from_bytes(body[0:4], "big") & 0x7FFFFFFF
            headers = _decode_headers(self._inflate.decompress(body[10:]))
            if sid in self.streams or sid % 2 == 0:
                self.reset(sid, RST_PROTOCOL_ERROR)
                return
            self._last_id = max(self._last_id, sid)
            s = Stream(self, sid, headers, bool(flags & FLAG_FIN))
            self.streams[sid] = s
            self._control(SYN_REPLY, 0, struct.pack(">I", sid) + self._header_block({}))
            self._on_stream(s)
        elif kind == HEADERS:  # decompressed to keep the zlib context in step
            self._inflate.decompress(body[4:])
        elif kind == RST_STREAM:
            sid = int.from_bytes(body[0:4], "big") & 0x7FFFFFFF
            s = self.streams.get(sid)
            if s is not None:
                s.local_closed = True
                s._remote_fin()
        elif kind == PING:
            self._control(PING, 0, body[:4])
        elif kind == GOAWAY:
            self.eof()
        # SETTINGS and WINDOW_UPDATE: nothing to do (we send what we have, at once)


class SessionProtocol(asyncio.Protocol):
    """An asyncio protocol that hands a connection's bytes to a ``Session``; the end of the
    connection also reaches the protocol it took over from (the HTTP server's, which keeps
    account of its connections)."""

    def __init__(self, session: Session, previous: asyncio.BaseProtocol | None = None) -> None:
        self.session = session
        self.previous = previous

    def data_received(self, data: bytes) -> None:
        self.session.feed(data)

    def eof_received(self) -> bool | None:
        self.session.eof()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.session.eof()
        if self.previous is not None:
            previous, self.previous = self.previous, None
            previous.connection_lost(exc)


def offered_versions(request: web.Request) -> list[str] | None:
    """The protocols (``X-Stream-Protocol-Version``) a SPDY/3.1 upgrade offers; None when the
    request is no SPDY upgrade."""
    if request.headers.get("Upgrade", "").lower() != "spdy/3.1":
        return None
    return [
        v.strip()
        for h in request.headers.getall("X-Stream-Protocol-Version", [])
        for v in h.split(",")
        if v.strip()
    ]


async def upgrade(
    request: web.Request, version: str, on_stream: Callable[[Stream], None]
) -> tuple[web.StreamResponse, Session]:
    """Answer a SPDY/3.1 upgrade (101, ``version``) and take the connection over from the
    HTTP server: from now on its bytes go to the returned session. The handler returns the
    response once ``session.done``; the connection closes then."""
    transport = request.transport
    if transport is None:
        raise ConnectionResetError("the client went away")
    resp = web.StreamResponse(
        status=101,
        headers={
            "Connection": "Upgrade",
            "Upgrade": "SPDY/3.1",
            "X-Stream-Protocol-Version": version,
        },
    )
    resp.force_close()
    await resp.prepare(request)
    session = Session(transport.write, on_stream)
    session.on_close = transport.close
    transport.set_protocol(SessionProtocol(session, transport.get_protocol()))
    return resp, session


async def over_websocket(ws: web.WebSocketResponse, on_stream: Callable[[Stream], None]) -> None:
    """A SPDY session whose bytes travel in the binary messages of ``ws`` (client-go's
    ``SPDY/3.1+portforward.k8s.io`` tunnel), until either side ends it."""
    out: asyncio.Queue[bytes | None] = asyncio.Queue()
    session = Session(out.put_nowait, on_stream)
    session.on_close = lambda: out.put_nowait(None)

    async def writer() -> None:
        while (data := await out.get()) is not None:
            if ws.closed:
                return
            await ws.send_bytes(data)

    sending = asyncio.create_task(writer())
    try:
        async for msg in ws:
            if msg.type is web.WSMsgType.BINARY:
                session.feed(msg.data)
            if session.closed:
                break
    finally:
        session.eof()
        out.put_nowait(None)
        try:
            await asyncio.wait_for(sending, 5)
        except (TimeoutError, ConnectionError, RuntimeError):
            sending.cancel()
        await ws.close()
