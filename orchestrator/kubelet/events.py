"""Events about the node's pods (Pulled, Created, Started, Killing, Unhealthy, BackOff, ...),
written as core/v1 Events so that ``kubectl describe pod`` lists them. Recording never blocks
the caller and a failure to record is only logged, as client-go's recorder does. One sender
writes them in the order recorded, one request at a time (client-go's broadcaster too): a
burst of pods starting does not put three event writes per pod in the API server's way at
once, ahead of the pods' status writes."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import deque
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
        # Events to write, in order: a new Event (its body) or a repeat's (name, namespace,
        # count, lastTimestamp); the sender task runs while there are any.
        self._pending: deque[Obj | tuple[str, str, int, str]] = deque()
        self._sender: asyncio.Task[None] | None = None
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
            ephemeral = (pod.get("spec") or {}).get("ephemeralContainers") or []
            key = (
                "ephemeralContainers"
                if any(c.get("name") == container for c in ephemeral)
                else "containers"
            )
            involved["fieldPath"] = f"spec.{key}{{{container}}}"
        self._record(involved, meta.get("namespace"), reason, message, warning)

    def node_event(self, reason: str, message: str) -> None:
        """An Event about this node, as the kubelet refers to it: its name as the uid too (what
        ``kubectl describe node`` asks for), in the default namespace."""
        involved: Obj = {"kind": "Node", "name": self.node, "uid": self.node}
        self._record(involved, "default", reason, message, False)

    def _record(
        self, involved: Obj, namespace: str | None, reason: str, message: str, warning: bool
    ) -> None:
        stamp = now()
        body: Obj = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{involved['name']}.{secrets.token_hex(8)}",
                "namespace": namespace,
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
        key = (str(involved.get("uid")), reason, message, involved.get("fieldPath", ""))
        seen = self._recent.get(key)
        if seen is not None and loop.time() - seen[3] < AGGREGATE:
            seen[2] += 1
            seen[3] = loop.time()
            self._pending.append((seen[0], seen[1], seen[2], stamp))  # after its Event's create
        else:
            if len(self._recent) > 4096:  # forget the oldest half
                for k in sorted(self._recent, key=lambda k: self._recent[k][3])[:2048]:
                    del self._recent[k]
            self._recent[key] = [body["metadata"]["name"], namespace, 1, loop.time()]
            self._pending.append(body)
        if self._sender is None or self._sender.done():
            self._sender = loop.create_task(self._send_pending(), name="kubelet-events")

    async def _send_pending(self) -> None:
        while self._pending:
            item = self._pending.popleft()
            if isinstance(item, dict):
                await self._send(item)
            else:
                await self._bump(*item)

    async def _send(self, body: Obj) -> None:
        try:
            await self.client.create(EVENTS, body["metadata"]["namespace"], body)
        except ClientError as e:
            log.info("event %s on %s not recorded: %s", body["reason"], body["metadata"]["name"], e)

    async def _bump(self, name: str, namespace: str, count: int, stamp: str) -> None:
        try:
            await self.client.patch(
                EVENTS, namespace, name, {"count": count, "lastTimestamp": stamp}
            )
        except ClientError as e:
            log.info("event %s not updated: %s", name, e)

    async def flush(self) -> None:
        """Wait until every event recorded so far is written (or failed)."""
        if self._sender is not None:
            await asyncio.gather(self._sender, return_exceptions=True)
