"""Resources served in another form than they are stored: events.k8s.io/v1 Event is core/v1's
Event (one storage, /registry/events/), autoscaling/v1 HorizontalPodAutoscaler is v2's,
converted on the way in and out as kube-apiserver converts them (kubemodel.events,
kubemodel.autoscaling). ``Converted`` has Storage's methods for such a resource: the API
server calls it instead of Storage, and it calls Storage with the stored resource."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import kubemodel
from kubemodel.autoscaling import hpa_to_v1, hpa_to_v2
from kubemodel.errors import DecodeError, FieldError
from kubemodel.events import to_core, to_events_v1, validate_event_create_v1

from . import errors
from .resources import Resource, by_path
from .storage import Storage, View

__all__ = ["Converted", "stored_resource", "to_stored_form"]

Obj = dict[str, Any]
_EPOCH = "1970-01-01T00:00:00Z"


def stored_resource(res: Resource) -> Resource:
    stored = by_path(res.stored_group or "", res.stored_version or res.version, res.name)
    assert stored is not None, res
    return stored


# (group, version, resource) served -> (stored form -> served form, served -> stored)
_CONVERSIONS: dict[tuple[str, str, str], tuple[Callable[[Obj], Obj], Callable[[Obj], Obj]]] = {
    ("events.k8s.io", "v1", "events"): (to_events_v1, to_core),
    ("autoscaling", "v1", "horizontalpodautoscalers"): (hpa_to_v1, hpa_to_v2),
}


def _conversion(res: Resource) -> tuple[Callable[[Obj], Obj], Callable[[Obj], Obj]]:
    return _CONVERSIONS[(res.group, res.version, res.name)]


def _decode_check(res: Resource, obj: Obj) -> None:
    """Refuse what Go's decoder refuses in the served form (unknown fields, wrong types):
    a 400 naming the served kind. Fields the model requires but Go takes as zero values
    (eventTime null) are left to validation."""
    probe = dict(obj)
    if res.kind == "Event" and probe.get("eventTime") is None:
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
    return _conversion(res)[1](obj)


class Converted:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    @staticmethod
    def to_view(res: Resource) -> Callable[[Obj], Obj]:
        return _conversion(res)[0]

    def _view(self, res: Resource) -> View:
        return View(res, self.to_view(res), lambda o: to_stored_form(res, o))

    async def get(self, res: Resource, ns: str | None, name: str) -> Obj:
        return self.to_view(res)(await self.storage.get(stored_resource(res), ns, name))

    async def list(
        self, res: Resource, ns: str | None, **kw: Any
    ) -> tuple[list[Obj], int, str | None]:
        kw["shallow"] = False
        items, rev, cont = await self.storage.list(stored_resource(res), ns, **kw)
        view = self.to_view(res)
        return [view(o) for o in items], rev, cont

    async def create(self, res: Resource, ns: str | None, body: Obj, **kw: Any) -> Obj:
        stored = to_stored_form(res, body)
        name = (stored.get("metadata") or {}).get("name") or ""
        meta = stored.get("metadata")
        if isinstance(meta, dict) and res.namespaced and not meta.get("namespace"):
            meta["namespace"] = ns
        if res.kind == "Event":
            try:  # the strict rules of the new API, on the object as stored
                typed = kubemodel.decode(stored, kubemodel.Event, validate=False)
                validate_event_create_v1(typed)
            except DecodeError as e:
                raise errors.cannot_decode(res.kind, res.version, e.field, e.message) from None
            except FieldError as e:
                # kube names the stored (internal core) kind: Event "x" is invalid
                raise errors.invalid(res.kind, name, e.field, e.message) from None
        kw["owned"] = True
        return self.to_view(res)(await self.storage.create(stored_resource(res), ns, stored, **kw))

    async def update(self, res: Resource, ns: str | None, name: str, body: Obj, **kw: Any) -> Obj:
        stored = to_stored_form(res, body)
        return self.to_view(res)(
            await self.storage.update(stored_resource(res), ns, name, stored, **kw)
        )

    async def patch(
        self, res: Resource, ns: str | None, name: str, kind: str, patch: Any, **kw: Any
    ) -> Obj:
        stored = await self.storage.patch(
            stored_resource(res), ns, name, kind, patch, view=self._view(res), **kw
        )
        return self.to_view(res)(stored)

    async def apply(
        self, res: Resource, ns: str | None, name: str, config: Obj, **kw: Any
    ) -> tuple[Obj, bool]:
        stored = to_stored_form(res, config)
        obj, created = await self.storage.apply(stored_resource(res), ns, name, stored, **kw)
        return self.to_view(res)(obj), created

    async def delete(
        self, res: Resource, ns: str | None, name: str, options: Obj, **kw: Any
    ) -> Obj:
        return self.to_view(res)(
            await self.storage.delete(stored_resource(res), ns, name, options, **kw)
        )
