"""The etcd v3 driver: a real etcd cluster, several endpoints with failover.

gRPC through ``grpc.aio`` with the generated etcd messages and stubs that the ``aetcd``
package ships (the ``etcd`` extra); the channel is our own: its target lists every endpoint
(``ipv4:h1:p1,h2:p2``), so gRPC's pick_first moves to the next member when one fails, and
``wait_for_ready`` lets a call wait for that instead of failing at once. Reads are retried
until ``timeout * 3``; a write whose call broke is not retried (it may have been applied):
it raises Unavailable, and the caller re-reads (compare-and-swap makes the retry safe).

Keys and revisions as kube-apiserver's etcd3 store: the resourceVersion is the key's
mod_revision; create is a Txn on create_revision == 0, update and delete a Txn on
mod_revision with a Range of the key when the compare fails (Conflict carries it, no extra
read); list pages read at the first page's revision; a watch is one Watch stream per
watcher with prev_kv, re-created from the last revision seen + 1 when the stream breaks.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import grpc
from aetcd import rpc

from .base import (
    Compactor,
    Deleted,
    Event,
    EventType,
    KeyValue,
    ListResult,
    check_key,
    encode_continue,
    list_range,
    prefix_end,
)
from .errors import (
    AlreadyExists,
    Conflict,
    Gone,
    InvalidArgument,
    NotFound,
    StoreError,
    TooLarge,
    Unavailable,
)

RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
WATCH_GIVE_UP = 30.0  # seconds without a working watch stream before the watch raises
CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.max_receive_message_length", 64 << 20),
)


def parse_endpoints(url: str) -> list[tuple[str, int]]:
    """``etcd://h1:2379,h2:2379`` or ``http://h1:2379,http://h2:2379`` -> [(host, port)]."""
    out = []
    for part in url.split(","):
        part = part.strip()
        if "://" not in part:
            part = "etcd://" + part
        u = urlsplit(part)
        if u.scheme not in ("etcd", "http") or not u.hostname or u.path not in ("", "/"):
            raise InvalidArgument(url, f"bad etcd endpoint {part!r} (etcd://host:port,...)")
        try:
            port = u.port or 2379
        except ValueError:
            raise InvalidArgument(url, f"bad port in {part!r}") from None
        out.append((u.hostname, port))
    return out


def _target(endpoints: list[tuple[str, int]]) -> str:
    """A gRPC target naming every member's address, so pick_first can fail over."""
    v4, v6 = [], []
    for host, port in endpoints:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as e:
            raise Unavailable(f"{host}:{port}", f"resolve: {e}") from None
        for family, _, _, _, addr in infos:
            if family == socket.AF_INET and f"{addr[0]}:{port}" not in v4:
                v4.append(f"{addr[0]}:{port}")
            elif family == socket.AF_INET6 and f"[{addr[0]}]:{port}" not in v6:
                v6.append(f"[{addr[0]}]:{port}")
    if v4:
        return "ipv4:" + ",".join(v4)
    return "ipv6:" + ",".join(v6)


def _kv(kv: Any) -> KeyValue:
    return KeyValue(kv.key.decode(), kv.value, kv.create_revision, kv.mod_revision)


def _event(ev: Any) -> Event:
    prev = _kv(ev.prev_kv) if ev.HasField("prev_kv") else None
    if ev.type == rpc.Event.EventType.DELETE:
        key = ev.kv.key.decode()
        if prev is None:  # prev_kv is always asked for; only a compacted one is missing
            kv = KeyValue(key, b"", 0, ev.kv.mod_revision)
        else:
            kv = KeyValue(key, prev.value, prev.create_rev, ev.kv.mod_revision)
        return Event(EventType.DELETED, kv, prev)
    kv = _kv(ev.kv)
    if kv.create_rev == kv.mod_rev:
        return Event(EventType.ADDED, kv, None)
    return Event(EventType.MODIFIED, kv, prev)


class EtcdBackend:
    def __init__(
        self,
        endpoints: list[tuple[str, int]],
        *,
        compact_interval: float = 300.0,
        timeout: float = 5.0,
    ) -> None:
        if not endpoints:
            raise InvalidArgument("etcd://", "no endpoints")
        self.endpoints = endpoints
        self.url = "etcd://" + ",".join(f"{h}:{p}" for h, p in endpoints)
        self.timeout = timeout
        self._channel: grpc.aio.Channel | None = None
        self._kv: Any = None
        self._watch: Any = None
        self._closed = False
        self._compactor = Compactor(self, compact_interval)

    async def start(self) -> None:
        target = await asyncio.to_thread(_target, self.endpoints)
        self._channel = grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
        self._kv = rpc.KVStub(self._channel)
        self._watch = rpc.WatchStub(self._channel)
        await self.current_revision()  # fails (Unavailable) when no member answers
        self._compactor.start()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._compactor.stop()
        if self._channel is not None:
            await self._channel.close()

    async def __aenter__(self) -> EtcdBackend:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- calls -----------------------------------------------------------------------------

    async def _call(self, method: str, request: Any, key: str, *, read: bool) -> Any:
        if self._closed or self._kv is None:
            raise Unavailable(self.url, "store is not open")
        fn = getattr(self._kv, method)
        deadline = time.monotonic() + self.timeout * 3
        backoff = 0.05
        while True:
            try:
                return await fn(request, timeout=self.timeout, wait_for_ready=True)
            except grpc.aio.AioRpcError as e:
                code, details = e.code(), e.details() or ""
                if code == grpc.StatusCode.OUT_OF_RANGE and "compacted" in details:
                    raise Gone(key, getattr(request, "revision", 0), 0) from None
                if code == grpc.StatusCode.OUT_OF_RANGE and "future" in details:
                    raise InvalidArgument(
                        key, f"revision {request.revision} is in the future"
                    ) from None
                if code == grpc.StatusCode.INVALID_ARGUMENT and "request is too large" in details:
                    raise TooLarge(key, details) from None  # nothing was written
                if code == grpc.StatusCode.INVALID_ARGUMENT:
                    raise InvalidArgument(key, f"etcd {method}: {details}") from None
                if code in RETRYABLE and read and not self._closed:
                    if time.monotonic() + backoff < deadline:
                        await asyncio.sleep(backoff)
                        backoff = min(backoff * 2, 0.5)
                        continue
                what = "" if read else " (the write may have been applied)"
                raise Unavailable(key, f"etcd {method}: {code.name}: {details}{what}") from None

    async def current_revision(self) -> int:
        resp = await self._call(
            "Range", rpc.RangeRequest(key=b"\0", keys_only=True), self.url, read=True
        )
        return int(resp.header.revision)

    async def get(self, key: str) -> KeyValue:
        resp = await self._call("Range", rpc.RangeRequest(key=check_key(key)), key, read=True)
        if not resp.kvs:
            raise NotFound(key)
        return _kv(resp.kvs[0])

    async def list(
        self, prefix: str, *, limit: int = 0, continue_token: str | None = None, revision: int = 0
    ) -> ListResult:
        p, start, revision = list_range(prefix, limit, continue_token, revision)
        req = rpc.RangeRequest(key=start, range_end=prefix_end(p), limit=limit, revision=revision)
        try:
            resp = await self._call("Range", req, prefix, read=True)
        except Gone:
            raise Gone(prefix, revision, 0) from None
        items = tuple(_kv(kv) for kv in resp.kvs)
        at = revision or int(resp.header.revision)
        token = encode_continue(at, items[-1].key + "\0") if resp.more and items else None
        return ListResult(items, at, token)

    def _txn(self, key: bytes, compare: list[Any], success: Any, failure: bool) -> Any:
        return rpc.TxnRequest(
            compare=compare,
            success=[success],
            failure=[rpc.RequestOp(request_range=rpc.RangeRequest(key=key))] if failure else [],
        )

    async def create(self, key: str, value: bytes) -> KeyValue:
        k = check_key(key)
        cmp = rpc.Compare(
            key=k, target=rpc.Compare.CompareTarget.CREATE, create_revision=0,
            result=rpc.Compare.CompareResult.EQUAL,
        )  # fmt: skip
        put = rpc.RequestOp(request_put=rpc.PutRequest(key=k, value=bytes(value)))
        resp = await self._call("Txn", self._txn(k, [cmp], put, False), key, read=False)
        if not resp.succeeded:
            raise AlreadyExists(key)
        rev = int(resp.header.revision)
        return KeyValue(key, bytes(value), rev, rev)

    def _mod_is(self, k: bytes, revision: int) -> Any:
        return rpc.Compare(
            key=k, target=rpc.Compare.CompareTarget.MOD, mod_revision=revision,
            result=rpc.Compare.CompareResult.EQUAL,
        )  # fmt: skip

    def _lost(self, key: str, expected: int, resp: Any) -> StoreError:
        kvs = resp.responses[0].response_range.kvs
        if not kvs:
            return NotFound(key)
        return Conflict(key, expected, _kv(kvs[0]))

    async def update(self, key: str, value: bytes, revision: int) -> KeyValue:
        k = check_key(key)
        put = rpc.RequestOp(request_put=rpc.PutRequest(key=k, value=bytes(value), prev_kv=True))
        txn = self._txn(k, [self._mod_is(k, revision)], put, True)
        resp = await self._call("Txn", txn, key, read=False)
        if not resp.succeeded:
            raise self._lost(key, revision, resp)
        prev = resp.responses[0].response_put.prev_kv
        rev = int(resp.header.revision)
        return KeyValue(key, bytes(value), prev.create_revision, rev)

    async def delete(self, key: str, revision: int | None = None) -> Deleted:
        k = check_key(key)
        op = rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=k, prev_kv=True))
        cmp = [] if revision is None else [self._mod_is(k, revision)]
        resp = await self._call("Txn", self._txn(k, cmp, op, True), key, read=False)
        if not resp.succeeded:
            raise self._lost(key, revision or 0, resp)
        prev_kvs = resp.responses[0].response_delete_range.prev_kvs
        if not prev_kvs:
            raise NotFound(key)
        return Deleted(int(resp.header.revision), _kv(prev_kvs[0]))

    async def compact(self, revision: int) -> None:
        try:
            await self._call(
                "Compact", rpc.CompactionRequest(revision=revision), self.url, read=True
            )
        except Gone:
            pass  # compacted at or beyond it already

    # --- watch -----------------------------------------------------------------------------

    async def watch(self, prefix: str, revision: int = 0) -> AsyncIterator[Event]:
        p = check_key(prefix)
        if self._closed or self._watch is None:
            raise Unavailable(self.url, "store is not open")
        last = revision  # every event up to `last` was delivered
        broken_since: float | None = None
        backoff = 0.05
        while True:
            create = rpc.WatchCreateRequest(
                key=p, range_end=prefix_end(p), start_revision=last + 1 if last else 0,
                prev_kv=True, progress_notify=True,
            )  # fmt: skip
            # hasleader: a member cut off from the leader ends the stream instead of going
            # silent, so the watch moves to a member that has one.
            call = self._watch.Watch(metadata=(("hasleader", "true"),), wait_for_ready=True)
            try:
                await call.write(rpc.WatchRequest(create_request=create))
                async for resp in call:
                    if resp.created and last == 0:
                        last = int(resp.header.revision)
                    if resp.canceled:
                        if resp.compact_revision:
                            raise Gone(prefix, last, int(resp.compact_revision))
                        raise Unavailable(prefix, f"watch canceled: {resp.cancel_reason}")
                    broken_since, backoff = None, 0.05
                    for raw in resp.events:
                        ev = _event(raw)
                        if ev.revision > last:
                            yield ev
                            last = ev.revision
            except grpc.aio.AioRpcError as e:
                if self._closed:
                    raise Unavailable(prefix, "store closed") from None
                if e.code() not in RETRYABLE and e.code() != grpc.StatusCode.UNKNOWN:
                    raise Unavailable(prefix, f"watch: {e.code().name}: {e.details()}") from None
            finally:
                call.cancel()
            if self._closed:
                raise Unavailable(prefix, "store closed")
            # The stream ended or broke: watch again from the next revision (another member).
            now = time.monotonic()
            broken_since = broken_since or now
            if now - broken_since > WATCH_GIVE_UP:
                raise Unavailable(prefix, f"watch: no etcd member answered for {WATCH_GIVE_UP} s")
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 1.0)
