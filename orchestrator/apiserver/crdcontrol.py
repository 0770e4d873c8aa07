"""What apiextensions-apiserver's controllers do for CustomResourceDefinitions, done in the
API server as its writes happen: serve the custom resources of the CRDs stored (from start,
and after every write of one), and when a CRD is deleted, delete its custom resources (its
finalizer customresourcecleanup.apiextensions.k8s.io and the Terminating condition), then
take the finalizer away so the CRD goes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from . import crd, errors
from .resources import Resource, by_path
from .watchcache import Closed, WatchCache

__all__ = ["CrdController"]

log = logging.getLogger("corral.apiserver")
Obj = dict[str, Any]
CRDS = by_path(crd.GROUP, "v1", crd.RESOURCE)
assert CRDS is not None


class CrdController:
    def __init__(self, storage: Any) -> None:
        self.storage = storage
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._follower: asyncio.Task[None] | None = None
        storage.on_crd_write = self.refresh

    async def start(self) -> None:
        await self.refresh()

    def follow(self, cache: WatchCache) -> None:
        """Refresh on every change of a CRD, whichever server wrote it (several servers over
        one etcd): ``cache`` is the CRDs' watch cache."""
        self._follower = asyncio.get_running_loop().create_task(self._follow(cache))

    async def _follow(self, cache: WatchCache) -> None:
        while True:
            try:
                sub = await cache.subscribe(await self.storage.store.current_revision())
                try:
                    await self.refresh()  # (what changed before the subscription)
                    while True:
                        if await sub.take(60.0):
                            await self.refresh()
                finally:
                    sub.close()
            except Closed:
                return
            except Exception as e:  # a store error: watch again
                log.warning("customresourcedefinitions: watch: %s", e)
                await asyncio.sleep(1.0)

    async def refresh(self) -> None:
        """Serve what the CRDs stored now define; clean up after those being deleted."""
        items, _, _ = await self.storage.list(CRDS, None)
        crd.sync(items)
        for obj in items:
            if obj["metadata"].get("deletionTimestamp"):
                self._start_cleanup(obj["metadata"]["name"])
            elif crd.names_refused(obj) and not crd.conflict(obj):
                # the CRD that held its names went: accepted now (kube's naming controller)
                name = obj["metadata"]["name"]
                task = self._tasks.get(name)
                if task is None or task.done():
                    self._tasks[name] = asyncio.get_running_loop().create_task(self._accept(obj))

    async def _accept(self, obj: Obj) -> None:
        with contextlib.suppress(errors.ApiError):  # (written again meanwhile: decided there)
            await self.storage.update(
                CRDS, None, obj["metadata"]["name"], obj, subresource="status"
            )

    def _start_cleanup(self, name: str) -> None:
        task = self._tasks.get(name)
        if task is None or task.done():
            self._tasks[name] = asyncio.get_running_loop().create_task(self._cleanup(name))

    async def _cleanup(self, name: str) -> None:
        try:
            await self._terminating(name)
            delay = 0.05
            while True:
                try:
                    obj = await self.storage.get(CRDS, None, name)
                except errors.ApiError:
                    return
                left = await self._delete_instances(obj)
                if left == 0:
                    break
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
            await self._drop_finalizer(name)
            log.info("customresourcedefinition %s: deleted", name)
        except Exception:
            log.exception("customresourcedefinition %s: cleanup", name)

    async def _terminating(self, name: str) -> None:
        """The Terminating condition, as kube's finalizer controller sets it."""
        from .storage import now_rfc3339

        obj = await self.storage.get(CRDS, None, name)
        status = obj.get("status") or {}
        if any(c.get("type") == "Terminating" for c in status.get("conditions") or ()):
            return
        status["conditions"] = [
            *(status.get("conditions") or []),
            {
                "type": "Terminating",
                "status": "True",
                "lastTransitionTime": now_rfc3339(),
                "reason": "InstanceDeletionInProgress",
                "message": "CustomResource deletion is in progress",
            },
        ]
        obj["status"] = status
        with contextlib.suppress(errors.ApiError):
            await self.storage.update(CRDS, None, name, obj, subresource="status")

    async def _delete_instances(self, obj: Obj) -> int:
        """Delete every stored custom resource of ``obj``; how many there were."""
        resources = crd.resources_of(obj, everything=True)
        if not resources:
            return 0
        res: Resource = resources[0]  # (every version is stored under the same keys)
        items, _, _ = await self.storage.list(res, None)
        for item in items:
            meta = item["metadata"]
            with contextlib.suppress(errors.ApiError):
                await self.storage.delete(
                    res, meta.get("namespace"), meta["name"], {"propagationPolicy": "Background"}
                )
        return len(items)

    async def _drop_finalizer(self, name: str) -> None:
        for _ in range(5):
            try:
                obj = await self.storage.get(CRDS, None, name)
            except errors.ApiError:
                return
            fins = [f for f in obj["metadata"].get("finalizers") or [] if f != crd.FINALIZER]
            obj["metadata"]["finalizers"] = fins
            try:
                await self.storage.update(CRDS, None, name, obj)
                return
            except errors.ApiError as e:
                if e.reason != "Conflict":
                    raise

    async def close(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._follower
        for task in self._tasks.values():
            task.cancel()
        for task in self._tasks.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
