"""A watch cache per resource: one store watch, fanned out in memory to every API watch.

The cache keeps a window of recent events, so a watch from a recent resourceVersion is served
from memory; a watch from further back reads the store's history directly (410 Gone when
that is compacted). Events are decoded once, here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from orchestrator.store import Backend, Gone, StoreError

from .storage import decode_value

__all__ = ["CacheEvent", "Closed", "Subscription", "WatchCache"]

log = logging.getLogger("corral.apiserver")


@dataclass(frozen=True, slots=True)
class CacheEvent:
    type: str  # ADDED, MODIFIED, DELETED
    revision: int
    key: str
    obj: dict[str, Any]
    prev: dict[str, Any] | None
    # The event as a watch sends it, by event type, encoded once for every watcher.
    frames: dict[str, bytes] = field(default_factory=dict, compare=False, repr=False)


class Closed(Exception):
    """The cache stopped (the server is shutting down)."""


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class Subscription:
    """One API watch's events after ``after``, in order: pushed by the cache (or by a task
    replaying the store's history), taken in batches by the watch. An error (Gone, Closed, a
    store error) is raised once the events before it were taken."""

    __slots__ = (
        "_after",
        "_items",
        "_limit",
        "_waiter",
        "_cache",
        "_feeder",
        "sink",
        "on_overflow",
    )

    def __init__(self, cache: WatchCache | None, after: int, limit: int) -> None:
        self._after = after
        self._items: deque[CacheEvent | BaseException] = deque()
        # Events queued for a watch that does not take them (its client reads slowly, or not
        # at all) are bounded: past ``limit`` the watch ends (Closed), as kube's cacher ends
        # a watcher that does not keep up; its client watches again from the last
        # resourceVersion it saw. ``on_overflow`` is called then (the watch drops its
        # connection: its task may be parked on a write the client never reads).
        self._limit = limit
        self.on_overflow: Callable[[], None] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._cache = cache
        self._feeder: asyncio.Task[None] | None = None
        # The watch's fast path: called with an event while the watch waits in ``take`` with
        # nothing queued (so nothing it wrote is still in flight and the order holds); True
        # when it handled the event itself (written or filtered out), False to queue it.
        # One write per watcher without waking its task: what a fan-out to 1000 costs.
        self.sink: Callable[[CacheEvent], bool] | None = None

    def push(self, item: CacheEvent | BaseException) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            if len(self._items) >= self._limit:
                self._overflow()
                return
            self._items.append(item)
            return
        sink = self.sink
        if (
            sink is not None
            and not self._items
            and isinstance(item, CacheEvent)
            and item.revision > self._after
            and sink(item)
        ):
            self._after = item.revision
            return
        self._items.append(item)
        waiter.set_result(None)

    async def take(self, timeout: float) -> list[CacheEvent]:
        """The events there are, waiting up to ``timeout`` seconds for one ([] then)."""
        if not self._items:
            loop = asyncio.get_running_loop()
            waiter = self._waiter = loop.create_future()
            timer = loop.call_later(max(timeout, 0), _wake, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None
        out: list[CacheEvent] = []
        items = self._items
        while items:
            item = items.popleft()
            if isinstance(item, BaseException):
                if out:
                    items.appendleft(item)
                    break
                raise item
            if item.revision > self._after:
                out.append(item)
                self._after = item.revision
        return out

    def _overflow(self) -> None:
        log.warning("a watch fell %d events behind: ended", len(self._items))
        self._items.clear()
        self._items.append(Closed("the watch did not keep up"))
        callback = self.on_overflow
        self.close()
        if callback is not None:
            callback()

    def close(self) -> None:
        self.sink = None
        self.on_overflow = None
        if self._cache is not None:
            self._cache._subscribers.discard(self)
            self._cache = None
        if self._feeder is not None:
            self._feeder.cancel()
            self._feeder = None


def _event(ev: Any) -> CacheEvent:
    obj = decode_value(ev.kv)
    prev = decode_value(ev.prev) if ev.prev is not None else None
    return CacheEvent(ev.type.value, ev.revision, ev.kv.key, obj, prev)


class WatchCache:
    def __init__(
        self, store: Backend, prefix: str, window: int = 4096, backlog: int = 8192
    ) -> None:
        self.store = store
        self.prefix = prefix
        self.window = window
        self.backlog = backlog  # events one watch may have queued (see Subscription)
        self._events: deque[CacheEvent] = deque()
        # key -> its last event in the window: the decoded object a MODIFIED or DELETED
        # event's previous value is, when the revisions agree (not decoded a second time)
        self._latest: dict[str, CacheEvent] = {}
        self._covered_from = 0  # every event after this revision is in _events (or trimmed)
        self._revision = 0
        self._subscribers: set[Subscription] = set()
        self._task: asyncio.Task[None] | None = None
        self._started: asyncio.Future[None] | None = None
        self._closed = False

    async def _ensure_started(self) -> None:
        if self._started is None:
            self._started = asyncio.get_running_loop().create_future()
            self._task = asyncio.get_running_loop().create_task(self._run())
        await asyncio.shield(self._started)

    async def _run(self) -> None:
        assert self._started is not None
        while not self._closed:
            try:
                rev = await self.store.current_revision()
                self._events.clear()
                self._latest.clear()
                self._covered_from = self._revision = rev
                if not self._started.done():
                    self._started.set_result(None)
                watch = self.store.watch(self.prefix, rev)
                try:
                    async for ev in watch:
                        self._add(self._decode(ev))
                finally:
                    with contextlib.suppress(Exception):
                        await watch.aclose()  # type: ignore[attr-defined]
            except asyncio.CancelledError:
                raise
            except StoreError as e:
                log.warning("watch cache %s: %s; starting again", self.prefix, e)
            # The store watch ended or broke: every subscriber must list again (410), as a
            # history gap cannot be ruled out.
            for sub in list(self._subscribers):
                sub.push(Gone(self.prefix, self._revision, self._revision))
            self._subscribers.clear()
            await asyncio.sleep(0.5)

    def _decode(self, ev: Any) -> CacheEvent:
        """``_event``, with the previous value taken from the window when it is there."""
        if ev.prev is not None:
            last = self._latest.get(ev.kv.key)
            if last is not None and last.type != "DELETED" and last.revision == ev.prev.mod_rev:
                obj = decode_value(ev.kv)
                return CacheEvent(ev.type.value, ev.revision, ev.kv.key, obj, last.obj)
        return _event(ev)

    def _add(self, ev: CacheEvent) -> None:
        self._events.append(ev)
        self._latest[ev.key] = ev
        self._revision = ev.revision
        while len(self._events) > self.window:
            old = self._events.popleft()
            self._covered_from = old.revision
            if self._latest.get(old.key) is old:
                del self._latest[old.key]
        for sub in tuple(self._subscribers):  # (a watch too far behind leaves the set)
            sub.push(ev)

    @property
    def revision(self) -> int:
        return self._revision

    async def subscribe(self, revision: int) -> Subscription:
        """Events after ``revision``, in order, from memory when the window still holds
        them, else from the store's history (Gone when that is compacted) and then live."""
        await self._ensure_started()
        if self._closed:
            raise Closed(self.prefix)
        if revision < self._covered_from:
            sub = Subscription(None, revision, self.backlog)
            sub._feeder = asyncio.get_running_loop().create_task(self._from_store(revision, sub))
            return sub
        sub = Subscription(self, revision, self.backlog)
        for ev in self._events:
            if ev.revision > revision:
                sub.push(ev)
        self._subscribers.add(sub)
        return sub

    async def _from_store(self, revision: int, sub: Subscription) -> None:
        """A watch older than the window: the store's history, then live events."""
        watch = self.store.watch(self.prefix, revision)
        try:
            async for ev in watch:
                if self._closed:
                    raise Closed(self.prefix)
                sub.push(_event(ev))
            sub.push(Closed(self.prefix))
        except asyncio.CancelledError:
            raise
        except Exception as e:  # Gone, Closed, a store error: end this watch
            sub.push(e)
        finally:
            with contextlib.suppress(Exception):
                await watch.aclose()  # type: ignore[attr-defined]

    async def close(self) -> None:
        self._closed = True
        for sub in list(self._subscribers):
            sub.push(Closed(self.prefix))
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
