"""kube-scheduler's scheduling queue: an active queue ordered by priority then arrival, a
backoff queue (1 s doubling to 10 s per failed attempt) and the unschedulable pods, which wait
for a cluster event (a node added or changed, a pod deleted) that may let them fit.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["QueuedPod", "SchedulingQueue"]

INITIAL_BACKOFF = 1.0
MAX_BACKOFF = 10.0
MAX_UNSCHEDULABLE = 300.0  # kube's podMaxInUnschedulablePodsDuration: retried at least this often


@dataclass
class QueuedPod:
    key: str
    priority: int
    added: float  # first seen (the queue's tie-break)
    attempts: int = 0
    backoff_until: float = 0.0
    unschedulable_since: float = 0.0
    cycle: int = 0  # the move cycle when its last attempt began


class SchedulingQueue:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._pods: dict[str, QueuedPod] = {}
        self._active: list[tuple[int, float, int, str]] = []
        self._in_active: set[str] = set()
        self._backoff: list[tuple[float, int, str]] = []
        self._in_backoff: set[str] = set()
        self.unschedulable: dict[str, QueuedPod] = {}
        self._in_flight: set[str] = set()
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self.move_cycle = 0
        self._closed = False

    def __len__(self) -> int:
        return len(self._in_active) + len(self._in_backoff) + len(self.unschedulable)

    def _push_active(self, qp: QueuedPod) -> None:
        if qp.key in self._in_active:
            return
        self._in_backoff.discard(qp.key)
        self.unschedulable.pop(qp.key, None)
        heapq.heappush(self._active, (-qp.priority, qp.added, next(self._seq), qp.key))
        self._in_active.add(qp.key)
        self._wake.set()

    def _push_backoff(self, qp: QueuedPod) -> None:
        self.unschedulable.pop(qp.key, None)
        if qp.key in self._in_backoff or qp.key in self._in_active:
            return
        heapq.heappush(self._backoff, (qp.backoff_until, next(self._seq), qp.key))
        self._in_backoff.add(qp.key)
        self._wake.set()

    def add(self, key: str, priority: int) -> None:
        """A new or changed pending pod: to the active queue (an unschedulable pod that
        changed is tried again, after its backoff)."""
        qp = self._pods.get(key)
        if qp is None:
            qp = self._pods[key] = QueuedPod(key, priority, self.clock())
            self._push_active(qp)
            return
        qp.priority = priority
        if key in self.unschedulable:
            self._requeue(qp)

    def delete(self, key: str) -> None:
        self._pods.pop(key, None)
        self._in_active.discard(key)
        self._in_backoff.discard(key)
        self.unschedulable.pop(key, None)

    def __contains__(self, key: str) -> bool:
        return key in self._pods

    def _requeue(self, qp: QueuedPod) -> None:
        if qp.backoff_until > self.clock():
            self._push_backoff(qp)
        else:
            self._push_active(qp)

    def _flush(self) -> None:
        now = self.clock()
        while self._backoff and self._backoff[0][0] <= now:
            _, _, key = heapq.heappop(self._backoff)
            if key in self._in_backoff:
                self._in_backoff.discard(key)
                qp = self._pods.get(key)
                if qp is not None:
                    self._push_active(qp)
        stale = [
            qp
            for qp in self.unschedulable.values()
            if now - qp.unschedulable_since > MAX_UNSCHEDULABLE
        ]
        for qp in stale:
            self._requeue(qp)

    def pop_nowait(self) -> str | None:
        self._flush()
        while self._active:
            _, _, _, key = heapq.heappop(self._active)
            if key in self._in_active:
                self._in_active.discard(key)
                qp = self._pods.get(key)
                if qp is None:
                    continue
                qp.attempts += 1
                qp.cycle = self.move_cycle
                self._in_flight.add(key)
                return key
        return None

    async def pop(self) -> str:
        while True:
            key = self.pop_nowait()
            if key is not None:
                return key
            self._wake.clear()
            timeout = None
            if self._backoff:
                timeout = max(0.0, self._backoff[0][0] - self.clock()) + 0.001
            elif self.unschedulable:
                timeout = MAX_UNSCHEDULABLE / 10
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass

    def done(self, key: str) -> None:
        """Scheduled (or bound): the pod leaves the queue."""
        self._in_flight.discard(key)
        self.delete(key)

    def backoff_duration(self, qp: QueuedPod) -> float:
        return min(MAX_BACKOFF, INITIAL_BACKOFF * 2 ** max(0, qp.attempts - 1))

    def unschedulable_pod(self, key: str) -> None:
        """The attempt failed: wait for a cluster event, or straight to backoff if one came
        while the pod was being tried (it may fit now)."""
        self._in_flight.discard(key)
        qp = self._pods.get(key)
        if qp is None:
            return
        now = self.clock()
        qp.backoff_until = now + self.backoff_duration(qp)
        if self.move_cycle > qp.cycle:
            self._push_backoff(qp)
        else:
            qp.unschedulable_since = now
            self.unschedulable[key] = qp

    def retry(self, key: str) -> None:
        """An error (not a fit failure): back off and retry without waiting for an event."""
        self._in_flight.discard(key)
        qp = self._pods.get(key)
        if qp is None:
            return
        qp.backoff_until = self.clock() + self.backoff_duration(qp)
        self._push_backoff(qp)

    def move_all(self) -> None:
        """A cluster event that may make pods fit: every unschedulable pod is tried again."""
        self.move_cycle += 1
        for qp in list(self.unschedulable.values()):
            self._requeue(qp)
