"""An in-memory copy of one resource (every namespace), kept by list then watch, for the
authorizers: RBAC objects, and pods for the node authorizer.

The copy lags the store by a watch event. ``refresh()`` lists again; concurrent callers share
one list, and a caller whose request arrived before the last list began needs none, so an
authorizer that denies may refresh once and decide again without a relist per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from orchestrator.store import Gone

from .resources import Resource
from .storage import Storage
from .watchcache import Closed, WatchCache

__all__ = ["ObjectCache"]

log = logging.getLogger("corral.apiserver")

Obj = dict[str, Any]


class ObjectCache:
    def __init__(self, storage: Storage, cache: WatchCache, res: Resource) -> None:
        self.storage = storage
        self.cache = cache
        self.res = res
        self.objects: dict[tuple[str, str], Obj] = {}  # (namespace or "", name) -> object
        self.generation = 0  # bumped on every change (derived indexes compare it)
        self._rev = 0
        self._task: asyncio.Task[None] | None = None
        self._refreshing: asyncio.Task[None] | None = None
        self._last_refresh_start = 0.0

    @staticmethod
    def _key(obj: Obj) -> tuple[str, str]:
        meta = obj.get("metadata") or {}
        return meta.get("namespace") or "", meta.get("name") or ""

    async def start(self) -> None:
        await self.refresh()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        for task in (self._task, self._refreshing):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _list(self) -> None:
        try:
            items, rev, _ = await self.storage.list(self.res, None)
            if rev >= self._rev:
                self.objects = {self._key(o): o for o in items}
                self._rev = rev
                self.generation += 1
        finally:
            self._refreshing = None

    async def refresh(self, since: float | None = None) -> None:
        """List again, unless a list that began after ``since`` (monotonic) has finished;
        callers at the same time share one list."""
        while True:
            task = self._refreshing
            if task is None:
                if since is not None and self._last_refresh_start > since:
                    return
                self._last_refresh_start = time.monotonic()
                task = self._refreshing = asyncio.get_running_loop().create_task(self._list())
                await asyncio.shield(task)
                return
            started = self._last_refresh_start
            await asyncio.shield(task)
            if since is None or started > since:
                return

    async def _run(self) -> None:
        while True:
            try:
                sub = await self.cache.subscribe(self._rev)
                try:
                    while True:
                        for ev in await sub.take(60.0):
                            if ev.revision <= self._rev:
                                continue
                            key = self._key(ev.obj)
                            if ev.type == "DELETED":
                                self.objects.pop(key, None)
                            else:
                                self.objects[key] = ev.obj
                            self._rev = ev.revision
                            self.generation += 1
                finally:
                    sub.close()
            except asyncio.CancelledError:
                raise
            except Closed:
                return
            except Gone:
                pass
            except Exception as e:
                log.warning("cache of %s: %s; listing again", self.res.name, e)
            await asyncio.sleep(0.2)
            with contextlib.suppress(Exception):
                await self.refresh()
