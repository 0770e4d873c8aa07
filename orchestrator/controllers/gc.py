"""The garbage collector by ownerReferences (kube-controller-manager's garbagecollector):

- background: an object whose owners are all gone is deleted; references to owners that are
  gone are removed while others remain;
- foreground: an owner deleted with propagationPolicy=Foreground carries the
  ``foregroundDeletion`` finalizer: its dependents are deleted (those that block it, with
  ``blockOwnerDeletion``, in the foreground too), and the finalizer goes once none blocks;
- orphan: an owner with the ``orphan`` finalizer has its references removed from its
  dependents, then the finalizer.

An owner missing from the cache is looked up in the API before a dependent is deleted for it
(the cache may lag behind a new owner).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from orchestrator.client import ClientError, Informer, NotFound, Obj, ResourceRef
from orchestrator.client.rest import (
    CONFIGMAPS,
    CONTROLLERREVISIONS,
    CRONJOBS,
    DAEMONSETS,
    DEPLOYMENTS,
    ENDPOINTS,
    ENDPOINTSLICES,
    JOBS,
    LEASES,
    NODES,
    PERSISTENTVOLUMECLAIMS,
    PERSISTENTVOLUMES,
    PODS,
    REPLICASETS,
    REPLICATIONCONTROLLERS,
    SECRETS,
    SERVICEACCOUNTS,
    SERVICES,
    STATEFULSETS,
)

from .base import Client, Controller, InformerFactory
from .util import meta

__all__ = ["GarbageCollector", "GC_RESOURCES"]

log = logging.getLogger("corral.controllers.gc")

FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"

_RBAC = "rbac.authorization.k8s.io"
ROLES = ResourceRef(_RBAC, "v1", "roles", True, "Role")
ROLEBINDINGS = ResourceRef(_RBAC, "v1", "rolebindings", True, "RoleBinding")
CLUSTERROLES = ResourceRef(_RBAC, "v1", "clusterroles", False, "ClusterRole")
CLUSTERROLEBINDINGS = ResourceRef(_RBAC, "v1", "clusterrolebindings", False, "ClusterRoleBinding")
PODDISRUPTIONBUDGETS = ResourceRef(
    "policy", "v1", "poddisruptionbudgets", True, "PodDisruptionBudget"
)

# The kinds the collector watches (those the API serves are chosen at start).
GC_RESOURCES: tuple[ResourceRef, ...] = (
    ROLES,
    ROLEBINDINGS,
    CLUSTERROLES,
    CLUSTERROLEBINDINGS,
    PODDISRUPTIONBUDGETS,
    PODS,
    REPLICASETS,
    REPLICATIONCONTROLLERS,
    DEPLOYMENTS,
    DAEMONSETS,
    STATEFULSETS,
    CONTROLLERREVISIONS,
    JOBS,
    CRONJOBS,
    SERVICES,
    ENDPOINTS,
    ENDPOINTSLICES,
    CONFIGMAPS,
    SECRETS,
    PERSISTENTVOLUMECLAIMS,
    PERSISTENTVOLUMES,
    SERVICEACCOUNTS,
    LEASES,
    NODES,
)


def _owner_uids(obj: Obj) -> Iterable[str]:
    return [r["uid"] for r in meta(obj).get("ownerReferences") or [] if r.get("uid")]


class GarbageCollector(Controller):
    name = "garbagecollector"
    workers = 4

    def __init__(
        self,
        client: Client,
        factory: InformerFactory,
        resources: Iterable[ResourceRef] = GC_RESOURCES,
    ) -> None:
        super().__init__(client, factory)
        self.factory = factory
        self.candidates = tuple(resources)
        self.resources: list[ResourceRef] = []
        self.informers: dict[ResourceRef, Informer] = {}
        self._by_kind: dict[tuple[str, str], ResourceRef] = {}
        self._uids: dict[str, tuple[ResourceRef, str]] = {}

    async def prepare(self) -> None:
        """Watch the candidate kinds the API serves (asked once, at start)."""
        for res in self.candidates:
            try:
                await self.client.list(res, None, limit=1)
            except NotFound:
                log.info("garbage collector: %s not served, not watched", res.plural)
                continue
            self.watch(res)

    def watch(self, res: ResourceRef) -> None:
        inf = self.factory.informer(res)
        inf.add_index("owner", _owner_uids)
        self.resources.append(res)
        self.informers[res] = inf
        self._by_kind[(res.api_version, res.kind)] = res
        self._by_kind.setdefault(("*", res.kind), res)
        inf.add_handler(lambda ev, old, new, res=res: self._on_event(res, ev, old, new))

    # ------------------------------------------------------------ handlers

    def _item(self, res: ResourceRef, key: str) -> str:
        return f"{self.resources.index(res)}|{key}"

    def _on_event(self, res: ResourceRef, event: str, old: Obj | None, new: Obj | None) -> None:
        obj = new if new is not None else old
        assert obj is not None
        m = meta(obj)
        key = _key(obj)
        uid = m.get("uid")
        if event == "DELETED":
            if uid:
                self._uids.pop(uid, None)
        elif uid:
            self._uids[uid] = (res, key)
        if event != "DELETED" and (
            m.get("ownerReferences") or (m.get("deletionTimestamp") and m.get("finalizers"))
        ):
            self.queue.add(self._item(res, key))
        # Dependents of a deleted (or deleting) owner may be dangling, or waited for.
        if uid and (event == "DELETED" or m.get("deletionTimestamp")):
            for dep_res, dep in self._dependents(uid):
                self.queue.add(self._item(dep_res, _key(dep)))
        # An owner in foreground deletion waits on its dependents: tell it when one changes.
        refs = list(_owner_uids(obj))
        if old is not None:
            refs += list(_owner_uids(old))
        for ref_uid in refs:
            where = self._uids.get(ref_uid)
            if where is not None:
                owner = self.informers[where[0]].get(where[1])
                if owner is not None and meta(owner).get("deletionTimestamp"):
                    self.queue.add(self._item(*where))

    def _dependents(self, uid: str) -> list[tuple[ResourceRef, Obj]]:
        return [(res, o) for res, inf in self.informers.items() for o in inf.by_index("owner", uid)]

    # ------------------------------------------------------------ reconcile

    async def reconcile(self, key: str) -> float | None:
        index, _, obj_key = key.partition("|")
        res = self.resources[int(index)]
        obj = self.informers[res].get(obj_key)
        if obj is None:
            return None
        m = meta(obj)
        finalizers = m.get("finalizers") or []
        if m.get("deletionTimestamp") and ORPHAN in finalizers:
            await self._orphan_dependents(res, obj)
            return None
        if m.get("deletionTimestamp") and FOREGROUND in finalizers:
            await self._delete_dependents(res, obj)
        if m.get("ownerReferences"):
            await self._check_owners(res, obj)
        return None

    async def _orphan_dependents(self, res: ResourceRef, owner: Obj) -> None:
        uid = meta(owner)["uid"]
        for dep_res, dep in self._dependents(uid):
            dm = meta(dep)
            refs = [r for r in dm.get("ownerReferences") or [] if r.get("uid") != uid]
            patch = {
                "metadata": {"ownerReferences": refs, "resourceVersion": dm["resourceVersion"]}
            }
            try:
                await self.client.patch(dep_res, dm.get("namespace"), dm["name"], patch)
            except NotFound:
                pass
        await self._remove_finalizer(res, owner, ORPHAN)

    async def _delete_dependents(self, res: ResourceRef, owner: Obj) -> None:
        uid = meta(owner)["uid"]
        blocking = 0
        for dep_res, dep in self._dependents(uid):
            dm = meta(dep)
            ref = next(r for r in dm.get("ownerReferences") or [] if r.get("uid") == uid)
            blocks = bool(ref.get("blockOwnerDeletion"))
            if blocks:
                blocking += 1
            if dm.get("deletionTimestamp"):
                continue
            # A dependent with other owners still alive is not deleted: background GC drops
            # this reference from it once the owner is gone.
            if await self._has_solid_owner(dep, skip=uid):
                if blocks:
                    blocking -= 1
                continue
            try:
                await self.client.delete(
                    dep_res,
                    dm.get("namespace"),
                    dm["name"],
                    # Foreground only for one with dependents of its own (kube's GC).
                    propagation="Foreground"
                    if blocks and self._dependents(dm["uid"])
                    else "Background",
                    preconditions={"uid": dm["uid"]},
                )
            except NotFound:
                if blocks:
                    blocking -= 1
        if blocking == 0:
            await self._remove_finalizer(res, owner, FOREGROUND)

    async def _has_solid_owner(self, obj: Obj, skip: str) -> bool:
        for ref in meta(obj).get("ownerReferences") or []:
            if ref.get("uid") == skip:
                continue
            owner = await self._owner(obj, ref)
            if owner is None:
                continue
            om = meta(owner)
            if not (om.get("deletionTimestamp") and FOREGROUND in (om.get("finalizers") or [])):
                return True
        return False

    async def _owner(self, obj: Obj, ref: Obj) -> Obj | None | bool:
        """The owner ``ref`` names (None when gone; True when its kind is unknown here)."""
        res = self._by_kind.get((ref.get("apiVersion", ""), ref.get("kind", ""))) or (
            self._by_kind.get(("*", ref.get("kind", "")))
        )
        if res is None:
            return True
        ns = meta(obj).get("namespace") if res.namespaced else None
        key = f"{ns}/{ref.get('name')}" if ns else str(ref.get("name"))
        cached = self.informers[res].get(key)
        if cached is not None and meta(cached).get("uid") == ref.get("uid"):
            return cached
        try:  # the cache may not have seen a new owner: ask the API
            live = await self.client.get(res, ns, str(ref.get("name")))
        except NotFound:
            return None
        return live if meta(live).get("uid") == ref.get("uid") else None

    async def _check_owners(self, res: ResourceRef, obj: Obj) -> None:
        m = meta(obj)
        solid, dangling, waiting = [], [], []
        for ref in m.get("ownerReferences") or []:
            owner = await self._owner(obj, ref)
            if owner is None:
                dangling.append(ref)
            elif owner is True:
                solid.append(ref)
            else:
                om = meta(owner)  # type: ignore[arg-type]
                if om.get("deletionTimestamp") and FOREGROUND in (om.get("finalizers") or []):
                    waiting.append(ref)
                else:
                    solid.append(ref)
        if solid:
            if not dangling and not waiting:
                return
            gone = {r["uid"] for r in dangling + waiting}
            refs = [r for r in m.get("ownerReferences") or [] if r.get("uid") not in gone]
            patch = {"metadata": {"ownerReferences": refs, "resourceVersion": m["resourceVersion"]}}
            try:
                await self.client.patch(res, m.get("namespace"), m["name"], patch)
            except NotFound:
                pass
            return
        if m.get("deletionTimestamp"):
            return  # already going
        policy = "Foreground" if waiting and self._dependents(m["uid"]) else "Background"
        log.info("garbage collector: deleting %s %s (%s)", res.kind, _key(obj), policy.lower())
        try:
            await self.client.delete(
                res,
                m.get("namespace"),
                m["name"],
                propagation=policy,
                preconditions={"uid": m["uid"]},
            )
        except NotFound:
            pass

    async def _remove_finalizer(self, res: ResourceRef, obj: Obj, name: str) -> None:
        m = meta(obj)
        fins = [f for f in m.get("finalizers") or [] if f != name]
        patch = {"metadata": {"finalizers": fins, "resourceVersion": m["resourceVersion"]}}
        try:
            await self.client.patch(res, m.get("namespace"), m["name"], patch)
        except NotFound:
            return
        except ClientError:
            raise
        log.info("garbage collector: %s %s: %s finalizer removed", res.kind, _key(obj), name)


def _key(obj: Obj) -> str:
    m = meta(obj)
    return f"{m['namespace']}/{m['name']}" if m.get("namespace") else str(m.get("name"))
