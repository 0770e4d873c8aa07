"""Resources served in another form than they are stored: events.k8s.io/v1 Event is core/v1's
Event (one storage, /registry/events/), converted on the way in and out as kube-apiserver
converts them (kubemodel.events). ``Converted`` has Storage's methods for such a resource:
the API server calls it instead of Storage, and it calls Storage with the stored resource."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import kubemodel
from kubemodel.errors import DecodeError, FieldError
from kubemodel.events import to_core, to_events_v1, validate_event_create_v1

from . import errors
from .resources import Resource, by_path
from .storage import Storage, View

__all__ = ["Converted", "stored_resource", "to_stored_form"]

Obj = dict[str, Any]
_EPOCH = "1970-01-01T00:00:00Z"


def stored_resource(res: Resource) -> Resource:
    stored = by_path(res.stored_group or "", res.version, res.name)
    assert stored is not None, res
    return stored


def _decode_check(res: Resource, obj: Obj) -> None:
    """Refuse what Go's decoder refuses in the served form (unknown fields, wrong types):
    a 400 naming the served kind. Fields the model requires but Go takes as zero values
    (eventTime null) are left to validation."""
    probe = dict(obj)
    if probe.get("eventTime") is None:
        probe["eventTime"] = _EPOCH
    try:
        kubemodel.decode(probe, res.model, defaults=False, validate=False)
    except DecodeError as e:
        raise errors.cannot_decode(res.kind, res.version, e.field, e.message) from None
    except FieldError:
        pass


def to_stored_form(res: Resource, obj: Obj) -> Obj:
    """``obj`` as ``res`` serves it -> as it is stored (checked as Go decodes it first)."""
    _decode_check(res, obj)
    return to_core(obj)


class Converted:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    @staticmethod
    def to_view(res: Resource) -> Callable[[Obj], Obj]:
        del res  # events.k8s.io/v1 Event is the only one
        return to_events_v1

    def _view(self, res: Resource) -> View:
        return View(res, to_events_v1, lambda o: to_stored_form(res, o))

    async def get(self, res: Resource, ns: str | None, name: str) -> Obj:
        return to_events_v1(await self.storage.get(stored_resource(res), ns, name))

    async def list(
        self, res: Resource, ns: str | None, **kw: Any
    ) -> tuple[list[Obj], int, str | None]:
        kw["shallow"] = False
        items, rev, cont = await self.storage.list(stored_resource(res), ns, **kw)
        return [to_events_v1(o) for o in items], rev, cont

    async def create(self, res: Resource, ns: str | None, body: Obj, **kw: Any) -> Obj:
        core = to_stored_form(res, body)
        name = (core.get("metadata") or {}).get("name") or ""
        meta = core.get("metadata")
        if isinstance(meta, dict) and res.namespaced and not meta.get("namespace"):
            meta["namespace"] = ns
        try:  # the strict rules of the new API, on the object as stored
            typed = kubemodel.decode(core, kubemodel.Event, validate=False)
            validate_event_create_v1(typed)
        except DecodeError as e:
            raise errors.cannot_decode(res.kind, res.version, e.field, e.message) from None
        except FieldError as e:
            # kube names the stored (internal core) kind: Event "x" is invalid
            raise errors.invalid(res.kind, name, e.field, e.message) from None
        kw["owned"] = True
        return to_events_v1(await self.storage.create(stored_resource(res), ns, core, **kw))

    async def update(self, res: Resource, ns: str | None, name: str, body: Obj, **kw: Any) -> Obj:
        core = to_stored_form(res, body)
        return to_events_v1(await self.storage.update(stored_resource(res), ns, name, core, **kw))

    async def patch(
        self, res: Resource, ns: str | None, name: str, kind: str, patch: Any, **kw: Any
    ) -> Obj:
        stored = await self.storage.patch(
            stored_resource(res), ns, name, kind, patch, view=self._view(res), **kw
        )
        return to_events_v1(stored)

    async def apply(
        self, res: Resource, ns: str | None, name: str, config: Obj, **kw: Any
    ) -> tuple[Obj, bool]:
        core = to_stored_form(res, config)
        obj, created = await self.storage.apply(stored_resource(res), ns, name, core, **kw)
        return to_events_v1(obj), created

    async def delete(
        self, res: Resource, ns: str | None, name: str, options: Obj, **kw: Any
    ) -> Obj:
        return to_events_v1(
            await self.storage.delete(stored_resource(res), ns, name, options, **kw)
        )
