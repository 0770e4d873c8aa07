"""A work queue of keys with client-go's guarantees: a key is queued once however often it is
added (dirty set), never handed to two workers at once (processing set: an add while it is being
processed queues it again after ``done``), and retried with per-key exponential backoff
(``add_rate_limited``) until ``forget``.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections import deque

__all__ = ["ShutDown", "WorkQueue"]


class ShutDown(Exception):
    """The queue is shut down: workers return."""


class WorkQueue:
    def __init__(
        self, name: str = "", *, base_delay: float = 0.005, max_delay: float = 300.0
    ) -> None:
        self.name = name
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._queue: deque[str] = deque()
        self._dirty: set[str] = set()
        self._processing: set[str] = set()
        self._failures: dict[str, int] = {}
        self._delayed: list[tuple[float, int, str]] = []
        self._seq = itertools.count()
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._shutdown = False
        # Metrics, as client-go's workqueue exposes them.
        self.adds = 0
        self.retries = 0
        self._added_at: dict[str, float] = {}
        self.last_wait = 0.0

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def depth(self) -> int:
        return len(self._queue)

    def add(self, key: str) -> None:
        if self._shutdown or key in self._dirty:
            return
        self.adds += 1
        self._dirty.add(key)
        self._added_at.setdefault(key, time.monotonic())
        if key in self._processing:
            return  # queued again by done()
        self._queue.append(key)
        self._wake()

    def add_after(self, key: str, delay: float) -> None:
        if self._shutdown:
            return
        if delay <= 0:
            self.add(key)
            return
        heapq.heappush(self._delayed, (time.monotonic() + delay, next(self._seq), key))
        self._arm()

    def add_rate_limited(self, key: str) -> None:
        """Retry ``key`` after base_delay * 2**failures (capped at max_delay)."""
        n = self._failures.get(key, 0)
        self._failures[key] = n + 1
        self.retries += 1
        self.add_after(key, min(self.base_delay * (2**n), self.max_delay))

    def forget(self, key: str) -> None:
        self._failures.pop(key, None)

    def num_requeues(self, key: str) -> int:
        return self._failures.get(key, 0)

    async def get(self) -> str:
        """The next key; raises ShutDown when the queue is shut down and drained."""
        while not self._queue:
            if self._shutdown:
                raise ShutDown(self.name)
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(fut)
            try:
                await fut
            except asyncio.CancelledError:
                if self._queue:  # pass a wake-up this getter can no longer use on
                    self._wake()
                raise
        key = self._queue.popleft()
        self._dirty.discard(key)
        self._processing.add(key)
        t = self._added_at.pop(key, None)
        if t is not None:
            self.last_wait = time.monotonic() - t
        return key

    def done(self, key: str) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.append(key)
            self._wake()

    def shutdown(self) -> None:
        self._shutdown = True
        if self._timer is not None:
            self._timer.cancel()
        self._wake(everyone=True)

    # ---------------------------------------------------------------- internals

    def _wake(self, everyone: bool = False) -> None:
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                if not everyone:
                    return

    def _arm(self) -> None:
        if not self._delayed:
            return
        loop = asyncio.get_running_loop()
        if self._timer is not None:
            self._timer.cancel()
        when = self._delayed[0][0]
        self._timer = loop.call_at(loop.time() + max(0.0, when - time.monotonic()), self._fire)

    def _fire(self) -> None:
        self._timer = None
        now = time.monotonic()
        while self._delayed and self._delayed[0][0] <= now:
            _, _, key = heapq.heappop(self._delayed)
            self.add(key)
        self._arm()
