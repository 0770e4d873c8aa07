"""A client for the controllers' unit tests: ApiClient's verbs over objects in memory, each
write recorded as an ``Action`` (as client-go's fake clientset records them), with the API
server's bookkeeping a controller relies on: uid, generateName, resourceVersion with
compare-and-swap, generation, status kept apart from spec, finalizers and deletionTimestamp.

It is a test device for the controllers' logic: the integration tests run the same
controllers against a real ``corral server``.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from orchestrator.client import AlreadyExists, Conflict, NotFound, Obj, ResourceRef, WatchEvent

__all__ = ["Action", "FakeClient"]

_GENERATE_CHARS = "bcdfghjklmnpqrstvwxz2456789"


@dataclass
class Action:
    verb: str  # create, update, update_status, patch, delete
    resource: str  # plural, with the subresource: "pods", "replicasets/status"
    namespace: str | None
    name: str
    body: Any = None
    options: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.verb} {self.resource} {where}"


def _merge(target: Any, patch: Any) -> Any:
    """RFC 7386 merge patch (enough of strategic merge for the controllers' own patches)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = _merge(out.get(k), v)
    return out


class FakeClient:
    def __init__(self, seed: int = 0) -> None:
        self.objects: dict[tuple[ResourceRef, str | None, str], Obj] = {}
        self.actions: list[Action] = []
        self._rv = itertools.count(1)
        self._rand = random.Random(seed)
        self.fail_next: dict[tuple[str, str], Exception] = {}  # (verb, plural) -> error
        self.unserved: set[ResourceRef] = set()  # kinds the "server" does not serve

    # ------------------------------------------------------------ test set-up

    def add(self, res: ResourceRef, obj: Obj) -> Obj:
        """Put an object in as if created earlier (no action recorded)."""
        obj = copy.deepcopy(obj)
        m = obj.setdefault("metadata", {})
        m.setdefault("uid", str(uuid.uuid4()))
        m.setdefault("creationTimestamp", _now())
        m.setdefault("generation", 1)
        if res.namespaced:
            m.setdefault("namespace", "default")
        m["resourceVersion"] = str(next(self._rv))
        obj.setdefault("apiVersion", res.api_version)
        obj.setdefault("kind", res.kind)
        self.objects[(res, m.get("namespace") if res.namespaced else None, m["name"])] = obj
        return copy.deepcopy(obj)

    def stored(self, res: ResourceRef, namespace: str | None, name: str) -> Obj | None:
        obj = self.objects.get((res, namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    def all(self, res: ResourceRef, namespace: str | None = None) -> list[Obj]:
        return [
            copy.deepcopy(o)
            for (r, ns, _), o in sorted(
                self.objects.items(), key=lambda kv: (kv[0][1] or "", kv[0][2])
            )
            if r == res and (namespace is None or ns == namespace)
        ]

    def mutate(self, res: ResourceRef, namespace: str | None, name: str, **changes: Any) -> None:
        """Change a stored object as another actor would (a kubelet's status): merge-patched,
        no action recorded."""
        key = (res, namespace, name)
        self.objects[key] = _merge(self.objects[key], changes)
        self.objects[key]["metadata"]["resourceVersion"] = str(next(self._rv))

    def take(self, verb: str | None = None) -> list[Action]:
        """The recorded actions (only ``verb`` ones if given), and clear the record."""
        out = [a for a in self.actions if verb is None or a.verb == verb]
        self.actions.clear()
        return out

    # ------------------------------------------------------------ verbs

    def _record(self, action: Action) -> None:
        self.actions.append(action)
        err = self.fail_next.pop((action.verb, action.resource.split("/")[0]), None)
        if err is not None:
            raise err

    def _key(
        self, res: ResourceRef, namespace: str | None, name: str
    ) -> tuple[ResourceRef, str | None, str]:
        return (res, namespace if res.namespaced else None, name)

    def _current(self, res: ResourceRef, namespace: str | None, name: str) -> Obj:
        obj = self.objects.get(self._key(res, namespace, name))
        if obj is None:
            raise NotFound(404, "NotFound", f'{res.plural} "{name}" not found')
        return obj

    async def get(self, res: ResourceRef, namespace: str | None, name: str, sub: str = "") -> Obj:
        return copy.deepcopy(self._current(res, namespace, name))

    async def list(
        self,
        res: ResourceRef,
        namespace: str | None = None,
        *,
        label_selector: str = "",
        field_selector: str = "",
        limit: int = 0,
        continue_: str = "",
        resource_version: str = "",
    ) -> Obj:
        if res in self.unserved:
            raise NotFound(404, "NotFound", "the server could not find the requested resource")
        items = self.all(res, namespace)
        return {"items": items[:limit] if limit else items, "metadata": {}}

    async def list_all(
        self,
        res: ResourceRef,
        namespace: str | None = None,
        *,
        label_selector: str = "",
        field_selector: str = "",
        page: int = 500,
    ) -> tuple[list[Obj], str]:
        return self.all(res, namespace), str(next(self._rv))

    async def create(
        self, res: ResourceRef, namespace: str | None, body: Obj, sub: str = "", name: str = ""
    ) -> Obj:
        obj = copy.deepcopy(body)
        m = obj.setdefault("metadata", {})
        if not m.get("name"):
            m["name"] = m.get("generateName", "") + "".join(
                self._rand.choice(_GENERATE_CHARS) for _ in range(5)
            )
        self._record(Action("create", res.plural, namespace, m["name"], copy.deepcopy(obj)))
        if self._key(res, namespace, m["name"]) in self.objects:
            raise AlreadyExists(409, "AlreadyExists", f'{res.plural} "{m["name"]}" exists')
        m["uid"] = str(uuid.uuid4())
        m["creationTimestamp"] = _now()
        m["generation"] = 1
        if res.namespaced:
            m["namespace"] = namespace
        m["resourceVersion"] = str(next(self._rv))
        obj.setdefault("apiVersion", res.api_version)
        obj.setdefault("kind", res.kind)
        self.objects[self._key(res, namespace, m["name"])] = obj
        return copy.deepcopy(obj)

    def _store(self, res: ResourceRef, namespace: str | None, old: Obj, new: Obj) -> Obj:
        m = new["metadata"]
        if old.get("spec") != new.get("spec"):
            m["generation"] = int(old["metadata"].get("generation") or 1) + 1
        m["resourceVersion"] = str(next(self._rv))
        key = self._key(res, namespace, m["name"])
        if m.get("deletionTimestamp") and not m.get("finalizers"):
            self.objects.pop(key, None)
        else:
            self.objects[key] = new
        return copy.deepcopy(new)

    async def update(
        self, res: ResourceRef, namespace: str | None, body: Obj, sub: str = ""
    ) -> Obj:
        name = body["metadata"]["name"]
        verb = "update_status" if sub == "status" else "update"
        plural = f"{res.plural}/{sub}" if sub else res.plural
        self._record(Action(verb, plural, namespace, name, copy.deepcopy(body)))
        old = self._current(res, namespace, name)
        rv = body["metadata"].get("resourceVersion")
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise Conflict(409, "Conflict", f'{res.plural} "{name}": the object has been modified')
        new = copy.deepcopy(old if sub == "status" else body)
        if sub == "status":
            new["status"] = copy.deepcopy(body.get("status"))
        else:
            new["status"] = copy.deepcopy(old.get("status"))
            for f in ("uid", "creationTimestamp", "generation", "deletionTimestamp"):
                if f in old["metadata"]:
                    new["metadata"][f] = old["metadata"][f]
        return self._store(res, namespace, old, new)

    async def update_status(self, res: ResourceRef, namespace: str | None, body: Obj) -> Obj:
        return await self.update(res, namespace, body, "status")

    async def patch(
        self,
        res: ResourceRef,
        namespace: str | None,
        name: str,
        patch: Any,
        *,
        kind: str = "merge",
        sub: str = "",
    ) -> Obj:
        plural = f"{res.plural}/{sub}" if sub else res.plural
        self._record(Action("patch", plural, namespace, name, copy.deepcopy(patch), {"kind": kind}))
        old = self._current(res, namespace, name)
        if kind == "json":
            raise NotImplementedError("the fake client applies merge patches only")
        rv = ((patch or {}).get("metadata") or {}).get("resourceVersion")
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise Conflict(409, "Conflict", f'{res.plural} "{name}": the object has been modified')
        return self._store(res, namespace, old, _merge(old, patch))

    async def delete(
        self,
        res: ResourceRef,
        namespace: str | None,
        name: str,
        *,
        grace_period: int | None = None,
        propagation: str | None = None,
        preconditions: Obj | None = None,
    ) -> Obj | None:
        opts: dict[str, Any] = {}
        if grace_period is not None:
            opts["gracePeriodSeconds"] = grace_period
        if propagation:
            opts["propagationPolicy"] = propagation
        if preconditions:
            opts["preconditions"] = preconditions
        self._record(Action("delete", res.plural, namespace, name, None, opts))
        obj = self._current(res, namespace, name)
        uid = (preconditions or {}).get("uid")
        if uid and uid != obj["metadata"].get("uid"):
            raise Conflict(409, "Conflict", f'{res.plural} "{name}": precondition failed')
        new = copy.deepcopy(obj)
        fins = list(new["metadata"].get("finalizers") or [])
        if propagation == "Foreground" and "foregroundDeletion" not in fins:
            fins.append("foregroundDeletion")
        if propagation == "Orphan" and "orphan" not in fins:
            fins.append("orphan")
        if fins:
            new["metadata"]["finalizers"] = fins
            new["metadata"].setdefault("deletionTimestamp", _now())
            return self._store(res, namespace, obj, new)
        self.objects.pop(self._key(res, namespace, name))
        return new

    async def watch(
        self,
        res: ResourceRef,
        namespace: str | None = None,
        *,
        resource_version: str = "",
        label_selector: str = "",
        field_selector: str = "",
        timeout_seconds: int = 300,
        bookmarks: bool = True,
    ) -> AsyncIterator[WatchEvent]:
        """No events: unit tests list with ``InformerFactory.relist`` instead of watching."""
        await asyncio.sleep(timeout_seconds)
        return
        yield  # an async generator


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
