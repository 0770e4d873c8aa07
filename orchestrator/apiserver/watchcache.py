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
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from orchestrator.store import Backend, Gone, StoreError

from .storage import decode_value

__all__ = ["CacheEvent", "Closed", "WatchCache"]

log = logging.getLogger("corral.apiserver")


@dataclass(frozen=True, slots=True)
class CacheEvent:
    type: str  # ADDED, MODIFIED, DELETED
    revision: int
    key: str
    obj: dict[str, Any]
    prev: dict[str, Any] | None


class Closed(Exception):
    """The cache stopped (the server is shutting down)."""


_CLOSED = object()


def _event(ev: Any) -> CacheEvent:
    obj = decode_value(ev.kv)
    prev = decode_value(ev.prev) if ev.prev is not None else None
    return CacheEvent(ev.type.value, ev.revision, ev.kv.key, obj, prev)


class WatchCache:
    def __init__(self, store: Backend, prefix: str, window: int = 4096) -> None:
        self.store = store
        self.prefix = prefix
        self.window = window
        self._events: deque[CacheEvent] = deque()
        self._covered_from = 0  # every event after this revision is in _events (or trimmed)
        self._revision = 0
        self._subscribers: set[asyncio.Queue[Any]] = set()
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
                self._covered_from = self._revision = rev
                if not self._started.done():
                    self._started.set_result(None)
                watch = self.store.watch(self.prefix, rev)
                try:
                    async for ev in watch:
                        self._add(_event(ev))
                finally:
                    with contextlib.suppress(Exception):
                        await watch.aclose()  # type: ignore[attr-defined]
            except asyncio.CancelledError:
                raise
            except StoreError as e:
                log.warning("watch cache %s: %s; starting again", self.prefix, e)
            # The store watch ended or broke: every subscriber must list again (410), as a
            # history gap cannot be ruled out.
            for q in list(self._subscribers):
                q.put_nowait(Gone(self.prefix, self._revision, self._revision))
            self._subscribers.clear()
            await asyncio.sleep(0.5)

    def _add(self, ev: CacheEvent) -> None:
        self._events.append(ev)
        self._revision = ev.revision
        while len(self._events) > self.window:
            self._covered_from = self._events.popleft().revision
        for q in self._subscribers:
            q.put_nowait(ev)

    @property
    def revision(self) -> int:
        return self._revision

    async def watch(self, revision: int) -> AsyncIterator[CacheEvent | None]:
        """Events after ``revision`` in order; ``None`` items are idle ticks (never, here:
        the caller times out). Raises Gone (compacted) or Closed."""
        await self._ensure_started()
        if self._closed:
            raise Closed(self.prefix)
        if revision < self._covered_from:
            async for ev in self._from_store(revision):
                yield ev
            return
        q: asyncio.Queue[Any] = asyncio.Queue()
        for ev in self._events:
            if ev.revision > revision:
                q.put_nowait(ev)
        self._subscribers.add(q)
        try:
            while True:
                item = await q.get()
                if item is _CLOSED:
                    raise Closed(self.prefix)
                if isinstance(item, Gone):
                    raise item
                if item.revision > revision:
                    yield item
        finally:
            self._subscribers.discard(q)

    async def _from_store(self, revision: int) -> AsyncIterator[CacheEvent]:
        """A watch older than the window: the store's history, then live events."""
        watch = self.store.watch(self.prefix, revision)
        try:
            async for ev in watch:
                if self._closed:
                    raise Closed(self.prefix)
                yield _event(ev)
        finally:
            with contextlib.suppress(Exception):
                await watch.aclose()  # type: ignore[attr-defined]

    async def close(self) -> None:
        self._closed = True
        for q in list(self._subscribers):
            q.put_nowait(_CLOSED)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
