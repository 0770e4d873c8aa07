"""Informers: a list, then a watch from the list's resourceVersion, kept as an in-memory cache
with event handlers, as client-go's shared informers (reflector + indexer) work.

A broken watch is resumed from the last resourceVersion seen (bookmarks keep it fresh); a 410
Gone lists again and replays the difference to the handlers, so a handler sees every object that
changed even when events were lost. Handlers must not block: they enqueue keys.

Cached objects are shared: callers must never mutate them (copy first). A ``transform``
(client-go's SetTransform) changes each object once, before it is cached and handed to the
handlers: ``strip_managed_fields`` keeps managedFields, which most clients never read (over
half of a pod's dictionaries), out of the cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import Any

from .rest import ApiClient, ClientError, Gone, Obj, ResourceRef

__all__ = ["Handler", "Informer", "Transform", "meta_key", "split_key", "strip_managed_fields"]

log = logging.getLogger("corral.informer")

Handler = Callable[[str, Obj | None, Obj | None], None]  # (event, old, new)
Transform = Callable[[Obj], Obj]


def strip_managed_fields(obj: Obj) -> Obj:
    """``obj`` without metadata.managedFields (client-go's TransformStripManagedFields). An
    update sent from such an object leaves the server's managedFields as they are."""
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
    return obj


def meta_key(obj: Obj) -> str:
    """``namespace/name`` (or ``name`` for cluster-scoped objects), as client-go's
    MetaNamespaceKeyFunc."""
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{ns}/{meta.get('name')}" if ns else str(meta.get("name"))


def split_key(key: str) -> tuple[str | None, str]:
    ns, sep, name = key.partition("/")
    return (ns, name) if sep else (None, ns)


class Informer:
    """A cache of one resource (optionally one namespace and selectors), kept current."""

    def __init__(
        self,
        client: ApiClient,
        res: ResourceRef,
        namespace: str | None = None,
        *,
        label_selector: str = "",
        field_selector: str = "",
        watch_timeout: int = 300,
        retry_delay: float = 1.0,
        transform: Transform | None = None,
    ) -> None:
        self.client = client
        self.res = res
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.watch_timeout = watch_timeout
        self.retry_delay = retry_delay
        self.transform = transform
        self._items: dict[str, Obj] = {}
        self._indexes: dict[str, Callable[[Obj], Iterable[str]]] = {}
        self._index: dict[str, dict[str, set[str]]] = {}
        self._handlers: list[Handler] = []
        self._synced = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.resource_version = ""

    # ------------------------------------------------------------ reading

    def get(self, key: str) -> Obj | None:
        return self._items.get(key)

    def list(self) -> list[Obj]:
        return list(self._items.values())

    def keys(self) -> list[str]:
        return list(self._items)

    def by_index(self, index: str, value: str) -> list[Obj]:
        keys = self._index.get(index, {}).get(value, ())
        return [self._items[k] for k in keys if k in self._items]

    def __len__(self) -> int:
        return len(self._items)

    @property
    def has_synced(self) -> bool:
        return self._synced.is_set()

    async def wait_synced(self) -> None:
        await self._synced.wait()

    # ------------------------------------------------------------ set-up

    def add_handler(self, handler: Handler) -> None:
        """``handler(event, old, new)`` for event in ADDED, MODIFIED, DELETED; objects already
        in the cache are replayed as ADDED."""
        self._handlers.append(handler)
        for obj in list(self._items.values()):
            handler("ADDED", None, obj)

    def add_index(self, name: str, fn: Callable[[Obj], Iterable[str]]) -> None:
        self._indexes[name] = fn
        idx: dict[str, set[str]] = {}
        for key, obj in self._items.items():
            for v in fn(obj):
                idx.setdefault(v, set()).add(key)
        self._index[name] = idx

    def start(self) -> asyncio.Task[None]:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"informer-{self.res.plural}")
        return self._task

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    # ------------------------------------------------------------ the loop

    def _notify(self, event: str, old: Obj | None, new: Obj | None) -> None:
        for h in self._handlers:
            try:
                h(event, old, new)
            except Exception:
                log.exception("informer %s: handler failed on %s", self.res.plural, event)

    def _index_set(self, key: str, old: Obj | None, new: Obj | None) -> None:
        for name, fn in self._indexes.items():
            idx = self._index.setdefault(name, {})
            if old is not None:
                for v in fn(old):
                    s = idx.get(v)
                    if s is not None:
                        s.discard(key)
                        if not s:
                            del idx[v]
            if new is not None:
                for v in fn(new):
                    idx.setdefault(v, set()).add(key)

    def _put(self, obj: Obj) -> None:
        key = meta_key(obj)
        old = self._items.get(key)
        self._items[key] = obj
        self._index_set(key, old, obj)
        self._notify("ADDED" if old is None else "MODIFIED", old, obj)

    def _drop(self, key: str, last: Obj | None = None) -> None:
        old = self._items.pop(key, None)
        if old is None:
            return
        self._index_set(key, old, None)
        self._notify("DELETED", old, last or old)

    async def relist(self) -> None:
        """List once and make the cache that list (handlers see the difference), as the start
        of ``start()`` does; for a caller that runs no watch (a unit test over a fake client)."""
        await self._relist()

    async def _relist(self) -> None:
        items, rv = await self.client.list_all(
            self.res,
            self.namespace,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
        )
        if self.transform is not None:
            items = [self.transform(o) for o in items]
        fresh = {meta_key(o): o for o in items}
        for key in [k for k in self._items if k not in fresh]:
            self._drop(key)
        for key, obj in fresh.items():
            old = self._items.get(key)
            if old is None or _rv(old) != _rv(obj):
                self._put(obj)
        self.resource_version = rv
        self._synced.set()

    async def _run(self) -> None:
        need_list = True
        while True:
            try:
                if need_list:
                    await self._relist()
                    need_list = False
                async for ev in self.client.watch(
                    self.res,
                    self.namespace,
                    resource_version=self.resource_version,
                    label_selector=self.label_selector,
                    field_selector=self.field_selector,
                    timeout_seconds=self.watch_timeout,
                ):
                    rv = _rv(ev.object)
                    if ev.type == "BOOKMARK":
                        self.resource_version = rv or self.resource_version
                        continue
                    obj = ev.object if self.transform is None else self.transform(ev.object)
                    if ev.type == "DELETED":
                        self._drop(meta_key(obj), obj)
                    elif ev.type in ("ADDED", "MODIFIED"):
                        self._put(obj)
                    if rv:
                        self.resource_version = rv
            except asyncio.CancelledError:
                raise
            except Gone:
                log.info("informer %s: resourceVersion gone, listing again", self.res.plural)
                need_list = True
            except ClientError as e:
                log.info("informer %s: %s; retrying", self.res.plural, e)
                await asyncio.sleep(self.retry_delay)
            except Exception:
                log.exception("informer %s: unexpected error; listing again", self.res.plural)
                need_list = True
                await asyncio.sleep(self.retry_delay)


def _rv(obj: Any) -> str:
    return str(((obj or {}).get("metadata") or {}).get("resourceVersion") or "")
