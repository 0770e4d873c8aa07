"""The kubelet's eviction manager, for memory: ``memory.available`` (the node's capacity less
its working set, as ``runtime.pod.api.memory_use`` reports them) below a hard threshold
(``--eviction-hard memory.available<100Mi``, a quantity or a percentage of capacity) puts the
node under MemoryPressure and evicts one pod per interval, then looks again:

- ranking as the kubelet's ``rankMemoryPressure``: pods whose working set exceeds their memory
  request first, then lower priority first, then the largest usage over request first (so
  BestEffort pods go before Burstable ones, and Guaranteed ones, never above their request,
  last);
- eviction kills the pod at once (a hard threshold has no grace period), reports it Failed
  with reason ``Evicted`` and the kubelet's message, records an ``Evicted`` event and removes
  it from the node (its memory goes: an emptyDir in memory too);
- the MemoryPressure condition stays True for ``transition`` seconds after the last time the
  threshold was met (the kubelet's ``--eviction-pressure-transition-period``, 5 minutes).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from orchestrator.client import Obj, meta_key

from .config import (
    DEFAULT_EVICTION_HARD,
    TRANSITION,
    Threshold,
    parse_duration,
    parse_thresholds,
)

if TYPE_CHECKING:
    from runtime.pod.api import MemoryUse, PodRuntime

    from .node import NodeAgent
    from .pods import PodManager

__all__ = [
    "DEFAULT_EVICTION_HARD",
    "Candidate",
    "EvictionManager",
    "Threshold",
    "eviction_message",
    "parse_duration",
    "parse_thresholds",
    "pod_memory_request",
    "rank_memory_pressure",
]

log = logging.getLogger("corral.agent.eviction")

INTERVAL = 2.0  # seconds between looks (the kubelet's housekeeping is 10 s; reads are cheap)
CLEANUP_WAIT = 30.0  # seconds to wait for an evicted pod to be gone before looking again
# ----------------------------------------------------------------------------- ranking


def _bytes(value: object) -> int:
    from kubemodel.quantity import parse_quantity

    try:
        return parse_quantity(value).ceil() if value is not None else 0
    except ValueError:
        return 0


def _container_request(c: Obj) -> int:
    return _bytes(((c.get("resources") or {}).get("requests") or {}).get("memory"))


def pod_memory_request(pod: Obj) -> int:
    """The pod's memory request (``resource.PodRequests``): the app containers' sum or the
    largest init container's, whichever is larger, plus the pod's overhead."""
    spec = pod.get("spec") or {}
    apps = sum(_container_request(c) for c in spec.get("containers") or [])
    inits = max((_container_request(c) for c in spec.get("initContainers") or []), default=0)
    return max(apps, inits) + _bytes((spec.get("overhead") or {}).get("memory"))


@dataclass(frozen=True)
class Candidate:
    key: str  # namespace/name
    uid: str
    priority: int
    request: int  # bytes
    usage: int  # bytes (working set)


def rank_memory_pressure(pods: Iterable[Candidate]) -> list[Candidate]:
    """The kubelet's order: usage above request first, then lower priority, then the
    largest usage over request."""
    return sorted(pods, key=lambda c: (c.usage <= c.request, c.priority, -(c.usage - c.request)))


def _ki(n: int) -> str:
    return f"{max(n, 0) // 1024}Ki"


def eviction_message(
    pod: Obj, threshold: Threshold, available: int, containers: dict[str, int]
) -> str:
    """The kubelet's words: the resource, the threshold and what was available, then each
    container using more than it requested."""
    msg = (
        "The node was low on resource: memory. "
        f"Threshold quantity: {threshold.text}, available: {_ki(available)}. "
    )
    for c in (pod.get("spec") or {}).get("containers") or []:
        name = c.get("name")
        usage = containers.get(name)
        if usage is None:
            continue
        request = ((c.get("resources") or {}).get("requests") or {}).get("memory")
        if usage > _bytes(request):
            msg += (
                f"Container {name} was using {_ki(usage)}, request is {request or 0},"
                " has larger consumption of memory. "
            )
    return msg


# ----------------------------------------------------------------------------- the manager


class EvictionManager:
    def __init__(
        self,
        runtime: PodRuntime,
        thresholds: tuple[Threshold, ...],
        pods: PodManager,
        node: NodeAgent,
        transition: float = TRANSITION,
        interval: float = INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.runtime = runtime
        self.threshold = next((t for t in thresholds if t.signal == "memory.available"), None)
        self.pods = pods
        self.node = node
        self.transition = transition
        self.interval = interval
        self.clock = clock
        self._last_met: float | None = None

    async def run(self) -> None:
        if self.threshold is None:
            return  # no memory threshold: no memory eviction, MemoryPressure stays False
        while True:
            try:
                await self.synchronize()
            except Exception:
                log.exception("eviction: looking at the node's memory")
            await asyncio.sleep(self.interval)

    def _set_pressure(self, met: bool) -> None:
        now = self.clock()
        if met:
            self._last_met = now
        pressure = self._last_met is not None and now - self._last_met <= self.transition
        if met and not self.node.memory_pressure:
            log.warning("node under memory pressure: %s crossed", self.threshold)
        if pressure != self.node.memory_pressure:
            self.node.memory_pressure = pressure
            self.node.changed.set()

    async def synchronize(self) -> Candidate | None:
        """Look once; evict one pod if the threshold is met. The pod evicted, if any."""
        assert self.threshold is not None
        # the node's figures first: each pod's memory is read only when it is to be ranked
        use: MemoryUse = await self.pods.call(self.runtime.memory_use, False)
        if use.available < self.threshold.bytes_of(use.capacity):
            use = await self.pods.call(self.runtime.memory_use)
        limit = self.threshold.bytes_of(use.capacity)
        met = use.available < limit
        self._set_pressure(met)
        if not met:
            return None
        candidates = []
        for uid, mem in use.pods.items():
            pod = self.pods.pod_by_uid(uid)
            if pod is None or pod["metadata"].get("deletionTimestamp"):
                continue
            priority = (pod.get("spec") or {}).get("priority")
            candidates.append(
                Candidate(
                    meta_key(pod),
                    uid,
                    priority if isinstance(priority, int) else 0,
                    pod_memory_request(pod),
                    mem.working_set,
                )
            )
        ranked = rank_memory_pressure(candidates)
        if not ranked:
            log.warning(
                "memory.available %s below %s and no pod to evict", use.available, self.threshold
            )
            return None
        victim = ranked[0]
        pod = self.pods.pod_by_uid(victim.uid)
        assert pod is not None
        message = eviction_message(
            pod, self.threshold, use.available, use.pods[victim.uid].containers
        )
        log.warning("evicting pod %s: %s", victim.key, message)
        await self.pods.evict(victim.key, victim.uid, message, CLEANUP_WAIT)
        return victim
