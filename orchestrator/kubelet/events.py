"""Events about the node's pods (Pulled, Created, Started, Killing, Unhealthy, BackOff, ...),
written as core/v1 Events so that ``kubectl describe pod`` lists them. Recording never blocks
the caller and a failure to record is only logged, as client-go's recorder does."""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any

from orchestrator.client import ApiClient, ClientError, Obj
from orchestrator.client.rest import EVENTS

from .podstatus import now

__all__ = ["EventRecorder"]

log = logging.getLogger("corral.agent.events")


AGGREGATE = 600.0  # seconds: a repeat within this is counted on the same Event


class EventRecorder:
    """Records events; an event repeated (same object, reason, message and field) within
    ``AGGREGATE`` seconds bumps ``count`` and ``lastTimestamp`` of the one already recorded,
    as client-go's event correlator does, instead of making another object."""

    def __init__(self, client: ApiClient, node: str) -> None:
        self.client = client
        self.node = node
        self._tasks: set[asyncio.Task[None]] = set()
        # (uid, reason, message, fieldPath) -> [event name, namespace, count, monotonic time]
        self._recent: dict[tuple[str, str, str, str], list[Any]] = {}

    def pod(
        self,
        pod: Obj,
        reason: str,
        message: str,
        container: str | None = None,
        warning: bool = False,
    ) -> None:
        meta = pod.get("metadata") or {}
        involved: Obj = {
            "kind": "Pod",
            "apiVersion": "v1",
            "namespace": meta.get("namespace"),
            "name": meta.get("name"),
            "uid": meta.get("uid"),
        }
        if container:
            involved["fieldPath"] = f"spec.containers{{{container}}}"
        stamp = now()
        body: Obj = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{meta.get('name')}.{secrets.token_hex(8)}",
                "namespace": meta.get("namespace"),
            },
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "type": "Warning" if warning else "Normal",
            "source": {"component": "kubelet", "host": self.node},
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
            "reportingComponent": "kubelet",
            "reportingInstance": self.node,
        }
        loop = asyncio.get_running_loop()
        key = (str(meta.get("uid")), reason, message, involved.get("fieldPath", ""))
        seen = self._recent.get(key)
        if seen is not None and loop.time() - seen[3] < AGGREGATE:
            seen[2] += 1
            seen[3] = loop.time()
            coro = self._bump(seen[0], seen[1], seen[2], stamp, seen[4])
        else:
            if len(self._recent) > 4096:  # forget the oldest half
                for k in sorted(self._recent, key=lambda k: self._recent[k][3])[:2048]:
                    del self._recent[k]
            seen = [body["metadata"]["name"], meta.get("namespace"), 1, loop.time(), None]
            self._recent[key] = seen
            coro = self._send(body)
        task = loop.create_task(coro)
        if seen[4] is None:
            seen[4] = task  # a bump waits for the Event to exist
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, body: Obj) -> None:
        try:
            await self.client.create(EVENTS, body["metadata"]["namespace"], body)
        except ClientError as e:
            log.info("event %s on %s not recorded: %s", body["reason"], body["metadata"]["name"], e)

    async def _bump(
        self, name: str, namespace: str, count: int, stamp: str, made: asyncio.Task[None]
    ) -> None:
        await asyncio.gather(made, return_exceptions=True)
        try:
            await self.client.patch(
                EVENTS, namespace, name, {"count": count, "lastTimestamp": stamp}
            )
        except ClientError as e:
            log.info("event %s not updated: %s", name, e)

    async def flush(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
