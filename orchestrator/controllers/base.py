"""The controller framework, as sample-controller and kube-controller-manager shape it: shared
informers made by one factory (one list+watch per resource however many controllers read it),
event handlers that only enqueue keys, and N workers per controller that take a key, reconcile
it, and forget it or retry it with per-key backoff.

``reconcile(key)`` is level-triggered and idempotent: it reads the informer caches (never
changing a cached object), writes through the API, and returns the seconds after which the key
should be looked at again (or None). An exception retries the key with backoff.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import time
from collections.abc import Iterable
from typing import Any, Protocol

from orchestrator.client import (
    Informer,
    Obj,
    ResourceRef,
    ShutDown,
    WorkQueue,
    meta_key,
    strip_managed_fields,
)
from orchestrator.client.events import EventRecorder

__all__ = ["Client", "Controller", "InformerFactory", "Metrics"]

log = logging.getLogger("corral.controllers")


class Client(Protocol):
    """The verbs of ``orchestrator.client.ApiClient`` the controllers use (the fake client of
    the unit tests has the same)."""

    async def get(
        self, res: ResourceRef, namespace: str | None, name: str, sub: str = ""
    ) -> Obj: ...

    async def list_all(
        self,
        res: ResourceRef,
        namespace: str | None = None,
        *,
        label_selector: str = "",
        field_selector: str = "",
        page: int = 500,
    ) -> tuple[list[Obj], str]: ...

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
    ) -> Obj: ...

    async def create(
        self, res: ResourceRef, namespace: str | None, body: Obj, sub: str = "", name: str = ""
    ) -> Obj: ...

    async def update(
        self, res: ResourceRef, namespace: str | None, body: Obj, sub: str = ""
    ) -> Obj: ...

    async def update_status(self, res: ResourceRef, namespace: str | None, body: Obj) -> Obj: ...

    async def patch(
        self,
        res: ResourceRef,
        namespace: str | None,
        name: str,
        patch: Any,
        *,
        kind: str = "merge",
        sub: str = "",
    ) -> Obj: ...

    async def delete(
        self,
        res: ResourceRef,
        namespace: str | None,
        name: str,
        *,
        grace_period: int | None = None,
        propagation: str | None = None,
        preconditions: Obj | None = None,
    ) -> Obj | None: ...

    def watch(
        self,
        res: ResourceRef,
        namespace: str | None = None,
        *,
        resource_version: str = "",
        label_selector: str = "",
        field_selector: str = "",
        timeout_seconds: int = 300,
        bookmarks: bool = True,
    ) -> Any: ...


class InformerFactory:
    """One shared informer per resource (all namespaces), as client-go's
    SharedInformerFactory: controllers ask for the resources they read; ``start`` runs them
    all."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._informers: dict[tuple[ResourceRef, str], Informer] = {}

    def informer(self, res: ResourceRef, field_selector: str = "") -> Informer:
        """The shared informer of ``res`` (of the objects ``field_selector`` picks: e.g.
        ``metadata.name=x`` in every namespace)."""
        inf = self._informers.get((res, field_selector))
        if inf is None:
            # Cached without managedFields (no controller reads them; an update sent from a
            # cached object leaves them as they are): half of a pod's dictionaries, which the
            # cyclic collector of the server they run in would walk again and again.
            inf = Informer(
                self.client,  # type: ignore[arg-type]
                res,
                field_selector=field_selector,
                transform=strip_managed_fields,
            )
            inf.add_index("namespace", _namespace_index)
            self._informers[(res, field_selector)] = inf
        return inf

    @property
    def informers(self) -> list[Informer]:
        return list(self._informers.values())

    def start(self) -> None:
        for inf in self._informers.values():
            inf.start()

    async def wait_synced(self) -> None:
        await asyncio.gather(*(inf.wait_synced() for inf in self._informers.values()))

    async def relist(self) -> None:
        """List every resource once (no watch): the caches of a unit test."""
        for inf in self._informers.values():
            await inf.relist()

    async def stop(self) -> None:
        for inf in self._informers.values():
            await inf.stop()


def _namespace_index(obj: Obj) -> Iterable[str]:
    ns = (obj.get("metadata") or {}).get("namespace")
    return (ns,) if ns else ()


# ------------------------------------------------------------------------------ metrics

LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Histogram:
    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(LATENCY_BUCKETS, value)] += 1
        self.sum += value
        self.count += 1


class Metrics:
    """Per controller: work queue depth, adds and retries, reconcile latency and errors, in
    Prometheus' text format (the names kube-controller-manager's workqueue metrics use)."""

    def __init__(self) -> None:
        self.controllers: dict[str, Controller] = {}
        self.latency: dict[str, Histogram] = {}
        self.errors: dict[str, int] = {}

    def register(self, c: Controller) -> None:
        self.controllers[c.name] = c
        self.latency.setdefault(c.name, Histogram())
        self.errors.setdefault(c.name, 0)

    def render(self) -> str:
        out: list[str] = []

        def family(name: str, typ: str, help_: str) -> None:
            out.append(f"# HELP {name} {help_}")
            out.append(f"# TYPE {name} {typ}")

        family("workqueue_depth", "gauge", "Current depth of the work queue.")
        for name, c in sorted(self.controllers.items()):
            out.append(f'workqueue_depth{{name="{name}"}} {c.queue.depth}')
        family("workqueue_adds_total", "counter", "Keys added to the work queue.")
        for name, c in sorted(self.controllers.items()):
            out.append(f'workqueue_adds_total{{name="{name}"}} {c.queue.adds}')
        family("workqueue_retries_total", "counter", "Keys retried with backoff.")
        for name, c in sorted(self.controllers.items()):
            out.append(f'workqueue_retries_total{{name="{name}"}} {c.queue.retries}')
        family("controller_reconcile_errors_total", "counter", "Reconciles that failed.")
        for name, n in sorted(self.errors.items()):
            out.append(f'controller_reconcile_errors_total{{controller="{name}"}} {n}')
        family("controller_reconcile_duration_seconds", "histogram", "Time one reconcile takes.")
        for name, h in sorted(self.latency.items()):
            cum = 0
            for bound, n in zip(LATENCY_BUCKETS, h.counts, strict=False):
                cum += n
                out.append(
                    f'controller_reconcile_duration_seconds_bucket{{controller="{name}",'
                    f'le="{bound}"}} {cum}'
                )
            out.append(
                f'controller_reconcile_duration_seconds_bucket{{controller="{name}",le="+Inf"}}'
                f" {h.count}"
            )
            out.append(f'controller_reconcile_duration_seconds_sum{{controller="{name}"}} {h.sum}')
            out.append(
                f'controller_reconcile_duration_seconds_count{{controller="{name}"}} {h.count}'
            )
        return "\n".join(out) + "\n"


# ------------------------------------------------------------------------------ controller


class Controller:
    """A work queue of keys and the workers that reconcile them. Subclasses set ``name``,
    register handlers on the factory's informers in ``__init__`` and implement
    ``reconcile``."""

    name = "controller"
    workers = 2
    # The component its Events name as their source (kube-controller-manager's, e.g.
    # "deployment-controller"); the manager gives those that have one a recorder.
    component: str | None = None

    def __init__(self, client: Client, factory: InformerFactory) -> None:
        self.client = client
        self.factory = factory
        self.queue = WorkQueue(self.name, base_delay=0.005, max_delay=60.0)
        self.metrics: Metrics | None = None
        self.recorder: EventRecorder | None = None

    def event(
        self, obj: Obj, api_version: str, kind: str, type_: str, reason: str, message: str
    ) -> None:
        """Record an Event about ``obj`` (never blocks; nothing without a recorder)."""
        if self.recorder is not None:
            self.recorder.event(
                {**obj, "apiVersion": api_version, "kind": kind}, type_, reason, message
            )

    def enqueue(self, obj: Obj | None) -> None:
        if obj is not None:
            self.queue.add(meta_key(obj))

    def enqueue_handler(self, event: str, old: Obj | None, new: Obj | None) -> None:
        """An informer handler that enqueues the object's own key."""
        self.enqueue(new if new is not None else old)

    async def prepare(self) -> None:
        """Before the informers start: what needs the API (e.g. which kinds it serves)."""

    async def reconcile(self, key: str) -> float | None:
        raise NotImplementedError

    async def process_one(self) -> None:
        """One turn of a worker: take a key, reconcile, forget it or retry it with backoff."""
        key = await self.queue.get()
        t0 = time.monotonic()
        try:
            again = await self.reconcile(key)
        except asyncio.CancelledError:
            self.queue.done(key)
            raise
        except Exception as e:
            log.info("%s: %s: %s; retrying", self.name, key, e, exc_info=log.isEnabledFor(10))
            if self.metrics is not None:
                self.metrics.errors[self.name] = self.metrics.errors.get(self.name, 0) + 1
            self.queue.add_rate_limited(key)
        else:
            self.queue.forget(key)
            if again is not None:
                self.queue.add_after(key, max(again, 0.0))
        finally:
            self.queue.done(key)
            if self.metrics is not None:
                self.metrics.latency[self.name].observe(time.monotonic() - t0)

    async def run(self) -> None:
        """The workers, until cancelled (the informers are started and synced by the
        caller)."""

        async def worker() -> None:
            with contextlib.suppress(ShutDown):
                while True:
                    await self.process_one()

        tasks = [
            asyncio.create_task(worker(), name=f"{self.name}-{i}") for i in range(self.workers)
        ]
        try:
            await asyncio.gather(*tasks)
        finally:
            self.queue.shutdown()
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await t
