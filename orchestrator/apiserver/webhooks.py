"""Admission webhooks (kube-apiserver's ``MutatingAdmissionWebhook`` and
``ValidatingAdmissionWebhook`` plugins): which webhooks of the admissionregistration.k8s.io/v1
configurations a request matches, and what their answers do to it.

The configurations are kept in memory from a watch of the store (an update takes effect as
soon as its event arrives; the server's own writes of them wait for that). A request that no
webhook could match costs one look at an empty tuple: the HTTPS client
(``webhookcall``) is imported, and its session made, at the first call.

A request matches a webhook when one of its rules names the operation, the group, version
and resource (``*``, ``pods/*``, ``*/status``) and the scope; the namespace's labels match its
namespaceSelector (a Namespace's own labels for one; cluster-scoped objects are not
filtered), and the old or new object's labels its objectSelector. Mutating webhooks are called
one after the other, each with the object as the ones before left it (their JSONPatch
applied), those with reinvocationPolicy IfNeeded once more when a later one changed it; the
object is then decoded and validated again; validating webhooks are called after
validation, all at once. A refusal is the webhook's status (403 unless it says
otherwise), ``admission webhook "x" denied the request: ...``; a webhook that cannot be
called, times out or answers nonsense refuses with 500 ``failed calling webhook "x": ...``
under failurePolicy Fail and is passed over under Ignore. Warnings go to the client.

A rule's ``pods/*`` matches pods' subresources and pods themselves, ``*`` every resource
but no subresource, ``*/*`` everything (kube's matcher: ``*`` is any subresource or none).

Not done as kube does: matchConditions (CEL) are not evaluated (a webhook with them is
called as if they held); under matchPolicy
Equivalent a request is taken as made to the resource's stored form (events.k8s.io/v1 and
autoscaling/v1 are converted to it before storage sees them): a webhook whose rules name
another form is told of it in that form (``equivalents``), with the stored form as its
requestKind. A mutating webhook with
reinvocationPolicy IfNeeded is called once more when a later one changed the object (kube's
reinvocation, the in-tree plugins after the webhooks aside: they run before them here).
``pods/binding`` and ``pods/eviction`` are CREATEs of a Binding and an Eviction; the delete
an eviction makes is not sent (``INTERNAL``), as in kube.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import msgspec

from orchestrator.store import Backend, StoreError

from .selectors import selector_matches

if TYPE_CHECKING:
    from .resources import Resource

__all__ = ["WARNINGS", "Attributes", "Hook", "WebhookAdmission", "matches_rules"]

log = logging.getLogger("corral.apiserver")

Obj = dict[str, Any]
GROUP = "admissionregistration.k8s.io"
VALIDATING = "validatingwebhookconfigurations"
MUTATING = "mutatingwebhookconfigurations"
EXEMPT = frozenset({VALIDATING, MUTATING})  # never sent to webhooks (kube exempts them)
# The warnings of the request being served (the API server sends them as Warning headers);
# None outside a request.
WARNINGS: ContextVar[list[str] | None] = ContextVar("corral_admission_warnings", default=None)
# Set while the server writes on its own behalf within an admitted request (an eviction's
# delete of its pod, as kube's eviction writes through the registry): no webhook is asked.
INTERNAL: ContextVar[bool] = ContextVar("corral_admission_internal", default=False)


@dataclass(frozen=True, slots=True)
class Hook:
    """One webhook of a configuration, as stored (defaults applied)."""

    config: str  # the configuration's name
    mutating: bool
    spec: Obj

    @property
    def name(self) -> str:
        return str(self.spec.get("name") or "")


@dataclass(slots=True)
class Attributes:
    """What a webhook is told about a request (admission.Attributes)."""

    res: Resource
    subresource: str  # "" for the object itself
    operation: str  # CREATE, UPDATE, DELETE, CONNECT
    namespace: str
    name: str
    obj: Obj | None
    old: Obj | None
    dry_run: bool
    options: Obj | None
    user: Obj
    kind: str = ""  # the object's kind, when not the resource's (CONNECT: PodExecOptions)


def _rule_matches(rule: Obj, a: Attributes) -> bool:
    ops = rule.get("operations") or []
    if "*" not in ops and a.operation not in ops:
        return False
    groups = rule.get("apiGroups") or []
    if "*" not in groups and a.res.group not in groups:
        return False
    versions = rule.get("apiVersions") or []
    if "*" not in versions and a.res.version not in versions:
        return False
    scope = rule.get("scope") or "*"
    if scope == "Cluster" and a.res.namespaced or scope == "Namespaced" and not a.res.namespaced:
        return False
    for r in rule.get("resources") or []:
        res, _, sub = r.partition("/")
        if res not in ("*", a.res.name):
            continue
        if sub == "*" or sub == a.subresource:  # ("pods": the object itself only)
            return True
    return False


def matches_rules(hook: Obj, a: Attributes) -> bool:
    return any(_rule_matches(r, a) for r in hook.get("rules") or [])


_EQUIVALENTS: dict[tuple[str, str, str], tuple[Resource, ...]] | None = None


def equivalents(res: Resource) -> tuple[Resource, ...]:
    """The other forms the resource ``res`` is served in (events.k8s.io/v1 events for core
    v1 events, autoscaling/v1 horizontalpodautoscalers for v2's), and those of the stored
    resource when ``res`` is one of them."""
    global _EQUIVALENTS
    if _EQUIVALENTS is None:
        from .resources import RESOURCES, by_path

        groups: dict[tuple[str, str, str], list[Resource]] = {}
        for r in RESOURCES:
            if r.stored_group is None:
                continue
            stored = by_path(r.stored_group, r.stored_version or r.version, r.name)
            assert stored is not None
            groups.setdefault((stored.group, stored.version, stored.name), [stored]).append(r)
        _EQUIVALENTS = {}
        for members in groups.values():
            for m in members:
                _EQUIVALENTS[(m.group, m.version, m.name)] = tuple(x for x in members if x != m)
    return _EQUIVALENTS.get((res.group, res.version, res.name), ())


def rule_match(hook: Obj, a: Attributes) -> Resource | None:
    """The resource a webhook is told of for request ``a``: the request's own when a rule
    names it, else (matchPolicy Equivalent) an equivalent one that a rule names; None when
    the rules do not match."""
    if matches_rules(hook, a):
        return a.res
    if hook.get("matchPolicy") == "Exact":
        return None
    for other in equivalents(a.res):
        if matches_rules(hook, replace(a, res=other)):
            return other
    return None


def _labels(obj: Obj | None) -> dict[str, str]:
    meta = (obj or {}).get("metadata")
    return (meta.get("labels") or {}) if isinstance(meta, dict) else {}


def object_matches(hook: Obj, a: Attributes) -> bool:
    """objectSelector: the new or the old object's labels match."""
    sel = hook.get("objectSelector")
    if not sel:
        return True
    return any(selector_matches(sel, _labels(o)) for o in (a.obj, a.old) if isinstance(o, dict))


class WebhookAdmission:
    def __init__(self, store: Backend, storage: Any = None) -> None:
        self.store = store
        self.storage = storage  # (apiserver.storage.Storage) a Service's endpoints
        # TLS to kubelets and the netns they are reached from (the API server sets them): a
        # webhook's Service is reached through the kubelet of its endpoint's node
        self.kubelet_client: Any = None
        self.kubelet_netns: str | None = None
        self._configs: dict[str, dict[str, Obj]] = {VALIDATING: {}, MUTATING: {}}
        self._revisions: dict[str, int] = {VALIDATING: 0, MUTATING: 0}
        self._listed: set[str] = set()  # the kinds listed once
        self.mutating: tuple[Hook, ...] = ()
        self.validating: tuple[Hook, ...] = ()
        self._tasks: list[asyncio.Task[None]] = []
        self._changed = asyncio.Event()
        self._client: Any = None  # webhookcall.Client, made at the first call

    # ------------------------------------------------------------------ the configurations

    def start(self) -> None:
        if not self._tasks:
            loop = asyncio.get_running_loop()
            self._tasks = [loop.create_task(self._watch(r)) for r in (VALIDATING, MUTATING)]

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._tasks = []
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def _watch(self, resource: str) -> None:
        prefix = f"/registry/{resource}.{GROUP}/"
        while True:
            try:
                listed = await self.store.list(prefix)
                self._configs[resource] = {
                    kv.key: msgspec.json.decode(kv.value) for kv in listed.items
                }
                self._listed.add(resource)
                self._rebuild(resource, listed.revision)  # (wakes who waits for it)
                watch = self.store.watch(prefix, listed.revision)
                try:
                    async for ev in watch:
                        if ev.type.value == "DELETED":
                            self._configs[resource].pop(ev.kv.key, None)
                        else:
                            self._configs[resource][ev.kv.key] = msgspec.json.decode(ev.kv.value)
                        self._rebuild(resource, ev.revision)
                finally:
                    with contextlib.suppress(Exception):
                        await watch.aclose()  # type: ignore[attr-defined]
            except asyncio.CancelledError:
                raise
            except Exception as e:  # never left stale: list and watch again
                log.warning("webhook configurations: %s; listing again", e)
            await asyncio.sleep(0.5)

    def _rebuild(self, resource: str, revision: int) -> None:
        hooks = []
        for key in sorted(self._configs[resource]):  # kube sorts configurations by name
            config = self._configs[resource][key]
            name = (config.get("metadata") or {}).get("name") or ""
            for spec in config.get("webhooks") or []:
                hooks.append(Hook(name, resource == MUTATING, spec))
        if resource == MUTATING:
            self.mutating = tuple(hooks)
        else:
            self.validating = tuple(hooks)
        self._revisions[resource] = revision
        self._changed.set()
        self._changed = asyncio.Event()

    async def listed(self) -> None:
        """Wait until both kinds of configuration were listed once: the server serves no
        request before (as kube-apiserver is not ready before its informers synced), so no
        request passes by a webhook configured before it started."""
        while len(self._listed) < 2:
            await self._changed.wait()

    async def synced(self, resource: str, revision: int, timeout: float = 1.0) -> None:
        """Wait (at most ``timeout``) until the configurations of ``resource`` are known at
        ``revision`` (the server's own write of one takes effect before it answers)."""
        if not self._tasks:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._revisions[resource] < revision:
            left = deadline - loop.time()
            if left <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)

    # ------------------------------------------------------------------ admission

    def wants(self, res: Resource) -> bool:
        """Whether a webhook could be called for a request on ``res``."""
        return (
            bool(self.mutating or self.validating) and res.name not in EXEMPT and not INTERNAL.get()
        )

    async def _matching(
        self, hooks: tuple[Hook, ...], a: Attributes
    ) -> list[tuple[Hook, Resource]]:
        """The webhooks that match ``a``, each with the resource it is told of."""
        out = []
        ns_labels: dict[str, str] | None = None
        for h in hooks:
            as_res = rule_match(h.spec, a)
            if as_res is None or not object_matches(h.spec, a):
                continue
            sel = h.spec.get("namespaceSelector")
            if sel and (a.res.namespaced or a.res.name == "namespaces"):
                if a.res.name == "namespaces":
                    labels = _labels(a.obj if a.obj is not None else a.old)
                else:
                    if ns_labels is None:
                        ns_labels = await self._namespace_labels(a.namespace)
                    labels = ns_labels
                if not selector_matches(sel, labels):
                    continue
            out.append((h, as_res))
        return out

    async def _namespace_labels(self, namespace: str) -> dict[str, str]:
        try:
            kv = await self.store.get(f"/registry/namespaces/{namespace}")
        except StoreError:
            return {}
        return _labels(msgspec.json.decode(kv.value))

    def _caller(self) -> Any:
        if self._client is None:
            from .webhookcall import Client  # only once a webhook is called

            self._client = Client(self)
        return self._client

    async def mutate(self, a: Attributes) -> Obj | None:
        """Call the matching mutating webhooks in order; the object they leave (None when
        none changed it)."""
        hooks = await self._matching(self.mutating, a)
        if not hooks:
            return None
        client = self._caller()
        changed = False
        reinvocable: list[int] = []  # the IfNeeded webhooks called so far
        again: set[int] = set()
        for i, (h, as_res) in enumerate(hooks):
            patched = await client.admit(h, a, as_res)
            if patched is not None and a.obj is not None and patched != a.obj:
                a.obj = patched
                changed = True
                again.update(reinvocable)  # a change after them: they are called once more
            if h.spec.get("reinvocationPolicy") == "IfNeeded":
                reinvocable.append(i)
        for i in sorted(again):
            h, as_res = hooks[i]
            patched = await client.admit(h, a, as_res)
            if patched is not None and a.obj is not None and patched != a.obj:
                a.obj = patched
        return a.obj if changed else None

    async def validate(self, a: Attributes) -> None:
        """Call the matching validating webhooks at once; the first refusal (in their order)
        is the request's."""
        hooks = await self._matching(self.validating, a)
        if not hooks:
            return
        client = self._caller()
        results = await asyncio.gather(
            *(client.admit(h, a, as_res) for h, as_res in hooks), return_exceptions=True
        )
        for r in results:
            if isinstance(r, BaseException):
                raise r
