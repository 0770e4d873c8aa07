"""Events about the node's pods (Pulled, Created, Started, Killing, Unhealthy, BackOff, ...),
written as core/v1 Events so that ``kubectl describe pod`` lists them. Recording never blocks
the caller and a failure to record is only logged, as client-go's recorder does."""

from __future__ import annotations

import asyncio
import logging
import secrets

from orchestrator.client import ApiClient, ClientError, Obj
from orchestrator.client.rest import EVENTS

from .podstatus import now

__all__ = ["EventRecorder"]

log = logging.getLogger("corral.agent.events")


class EventRecorder:
    def __init__(self, client: ApiClient, node: str) -> None:
        self.client = client
        self.node = node
        self._tasks: set[asyncio.Task[None]] = set()

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
        task = asyncio.get_running_loop().create_task(self._send(body))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, body: Obj) -> None:
        try:
            await self.client.create(EVENTS, body["metadata"]["namespace"], body)
        except ClientError as e:
            log.info("event %s on %s not recorded: %s", body["reason"], body["metadata"]["name"], e)

    async def flush(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
