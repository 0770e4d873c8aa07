"""core/v1 Events as client-go's recorder writes them, for the components that talk to the API
over HTTP (the scheduler; the controllers, each under its own component name as
kube-controller-manager's are: ``deployment-controller``, ``replicaset-controller``, ...)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections import OrderedDict

from .rest import EVENTS, ApiClient, ClientError, NotFound, Obj

__all__ = ["EventRecorder"]

log = logging.getLogger("corral.events")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class EventRecorder:
    """core/v1 Events as client-go's recorder writes them: a bounded queue (events are dropped
    when it is full, as the broadcaster drops them), a repeat of the same reason and message
    on the same object bumps ``count`` on the existing Event."""

    def __init__(self, client: ApiClient, component: str, workers: int = 4) -> None:
        self.client = client
        self.component = component
        self.host = socket.gethostname()
        self._queue: asyncio.Queue[tuple[Obj, str, str, str]] = asyncio.Queue(maxsize=1000)
        self._seen: OrderedDict[tuple[str, str, str], tuple[str, str, int]] = OrderedDict()
        self._tasks = [asyncio.create_task(self._run()) for _ in range(workers)]
        self.dropped = 0

    def event(self, obj: Obj, type_: str, reason: str, message: str) -> None:
        try:
            self._queue.put_nowait((obj, type_, reason, message))
        except asyncio.QueueFull:
            self.dropped += 1

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t

    async def flush(self) -> None:
        while not self._queue.empty():
            await asyncio.sleep(0.01)

    async def _run(self) -> None:
        while True:
            obj, type_, reason, message = await self._queue.get()
            try:
                await self._write(obj, type_, reason, message)
            except ClientError as e:
                log.info("event %s on %s: %s", reason, (obj.get("metadata") or {}).get("name"), e)

    async def _write(self, obj: Obj, type_: str, reason: str, message: str) -> None:
        meta = obj.get("metadata") or {}
        ns = meta.get("namespace") or "default"
        key = (str(meta.get("uid")), reason, message)
        now = _now()
        seen = self._seen.get(key)
        if seen is not None:
            name, ev_ns, count = seen
            try:
                await self.client.patch(
                    EVENTS, ev_ns, name, {"count": count + 1, "lastTimestamp": now}
                )
                self._seen[key] = (name, ev_ns, count + 1)
                self._seen.move_to_end(key)
                return
            except NotFound:
                pass
        name = f"{meta.get('name')}.{time.time_ns():x}"
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": ns},
            "involvedObject": {
                "apiVersion": obj.get("apiVersion") or "v1",
                "kind": obj.get("kind") or "Pod",
                "namespace": meta.get("namespace"),
                "name": meta.get("name"),
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "reason": reason,
            "message": message,
            "source": {"component": self.component},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "type": type_,
            "eventTime": None,
            "reportingComponent": self.component,
            "reportingInstance": f"{self.component}-{self.host}",
        }
        await self.client.create(EVENTS, ns, body)
        self._seen[key] = (name, ns, 1)
        while len(self._seen) > 4096:
            self._seen.popitem(last=False)
