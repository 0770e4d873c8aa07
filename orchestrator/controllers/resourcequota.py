"""The ResourceQuota controller (kube-controller-manager's ``resourcequota``): keeps each
quota's status current, status.hard its spec.hard and status.used what the namespace uses of
each (pods from the shared pod informer, finished pods no longer counted; object counts
listed through the API). A quota is counted when made or when its spec.hard changes; a pod
or service that changes what it uses, or goes, has its namespace's quotas counted again
(kube's replenishment); every quota is recounted after RESYNC seconds as well (kube's
--resource-quota-sync-period, 5m there)."""

from __future__ import annotations

import logging
from fractions import Fraction

from kubemodel.quota import (
    Usage,
    add,
    encode_usage,
    object_usage,
    pod_usage,
    quota_covers,
)
from orchestrator.client import NotFound, Obj, ResourceRef
from orchestrator.client.rest import PODS, SERVICES

from .base import Client, Controller, InformerFactory
from .util import meta

__all__ = ["RESOURCEQUOTAS", "ResourceQuotaController", "used_by"]

log = logging.getLogger("corral.controllers")

RESOURCEQUOTAS = ResourceRef("", "v1", "resourcequotas", True, "ResourceQuota")
RESYNC = 60.0
_LEGACY = {
    "services": "services",
    "configmaps": "configmaps",
    "secrets": "secrets",
    "replicationcontrollers": "replicationcontrollers",
    "resourcequotas": "resourcequotas",
    "persistentvolumeclaims": "persistentvolumeclaims",
}


def _counted_resource(name: str) -> tuple[str, str] | None:
    """(resource, group) an object-count quota name counts, e.g. count/deployments.apps."""
    if name in _LEGACY:
        return name, ""
    if name.startswith("services."):
        return "services", ""
    if name == "requests.storage" or ".storageclass.storage.k8s.io/" in name:
        return "persistentvolumeclaims", ""
    if name.startswith("count/") and name != "count/pods":
        resource, _, group = name[len("count/") :].partition(".")
        return resource, group
    return None


def used_by(quota: Obj, pods: list[Obj], objects: dict[tuple[str, str], list[Obj]]) -> Usage:
    """What a namespace uses of ``quota``'s hard resources (zero for those it does not)."""
    usage: Usage = {}
    for pod in pods:
        if quota_covers(quota, "pods", "", pod):
            usage = add(usage, pod_usage(pod))
    for (resource, group), items in objects.items():
        for obj in items:
            if quota_covers(quota, resource, group, obj):
                usage = add(usage, object_usage(resource, group, obj))
    hard = (quota.get("spec") or {}).get("hard") or {}
    return {r: usage.get(r, (Fraction(0), False)) for r in hard}


class ResourceQuotaController(Controller):
    name = "resourcequota"
    workers = 2

    def __init__(self, client: Client, factory: InformerFactory) -> None:
        super().__init__(client, factory)
        self.quotas = factory.informer(RESOURCEQUOTAS)
        self.pods = factory.informer(PODS)
        self.services = factory.informer(SERVICES)
        self.quotas.add_handler(self._on_quota)
        self.pods.add_handler(self._replenish("pods"))
        self.services.add_handler(self._replenish("services"))

    def _on_quota(self, event: str, old: Obj | None, new: Obj | None) -> None:
        """A new quota, or one whose spec.hard changed, is counted; not one whose status
        changed: the admission charges status.used ahead of the object it admits, and a count
        then (before the informers see that object) would give its room away again."""
        if old is not None and new is not None:
            if (old.get("spec") or {}).get("hard") == (new.get("spec") or {}).get("hard"):
                return
        self.enqueue_handler(event, old, new)

    def _replenish(self, resource: str):  # type: ignore[no-untyped-def]
        """kube's replenishment: an object that went, or uses less, frees room (an added one
        was charged by the admission)."""

        def handler(event: str, old: Obj | None, new: Obj | None) -> None:
            if old is None:
                return
            if new is not None and object_usage(resource, "", old) == object_usage(
                resource, "", new
            ):
                return  # a status update that changes nothing counted
            obj = new if new is not None else old
            ns = meta(obj or {}).get("namespace")
            if ns:
                for quota in self.quotas.by_index("namespace", ns):
                    self.enqueue(quota)

        return handler

    async def reconcile(self, key: str) -> float | None:
        quota = self.quotas.get(key)
        if quota is None:
            return None
        ns = str(meta(quota).get("namespace"))
        hard = (quota.get("spec") or {}).get("hard") or {}
        objects: dict[tuple[str, str], list[Obj]] = {}
        for name in hard:
            counted = _counted_resource(name)
            if counted is None or counted in objects:
                continue
            if counted == ("services", ""):
                objects[counted] = self.services.by_index("namespace", ns)
                continue
            ref = ResourceRef(counted[1], "v1", counted[0], True)
            try:
                objects[counted], _ = await self.client.list_all(ref, ns)
            except NotFound:  # a kind the API does not serve: none of it
                objects[counted] = []
        usage = used_by(quota, self.pods.by_index("namespace", ns), objects)
        status = {"hard": dict(hard), "used": encode_usage(usage, list(hard))}
        if quota.get("status") != status:
            body = {**quota, "status": status}
            try:
                await self.client.update_status(RESOURCEQUOTAS, ns, body)
            except NotFound:
                return None
        return RESYNC
