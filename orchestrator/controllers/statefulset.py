"""The StatefulSet controller (kube's statefulset controller): pods with stable names
``<set>-<ordinal>`` (hostname and subdomain from the governing service), made in order and
removed in reverse order, each waiting for the one before to be Running and Ready
(OrderedReady; Parallel does not wait); RollingUpdate from the highest ordinal down to the
partition, one pod at a time, with ControllerRevisions as the template history (ordinals
below the partition keep the current revision); OnDelete leaves replacement to the user.

Each pod gets a claim per ``volumeClaimTemplates`` entry, ``<template>-<set>-<ordinal>``, made
before the pod (labels: the template's and the selector's) and mounted in place of the
template's volume of that name. ``persistentVolumeClaimRetentionPolicy``: Retain (the default)
keeps the claims; whenDeleted Delete makes the set their owner (the garbage collector deletes
them with it), whenScaled Delete makes a pod removed by a scale-down the owner of its claims.
"""

from __future__ import annotations

import logging
import re

from orchestrator.client import ClientError, NotFound, Obj, split_key
from orchestrator.client.rest import (
    CONTROLLERREVISIONS,
    PERSISTENTVOLUMECLAIMS,
    PODS,
    STATEFULSETS,
)

from .base import Client, Controller, InformerFactory
from .history import REVISION_HASH, ensure_revision, revision_template, trim_history
from .refs import claim
from .util import (
    controller_ref,
    deep_copy,
    is_pod_ready,
    labels_of,
    meta,
    omit_zero,
    owner_ref,
    pod_available,
)

__all__ = ["StatefulSetController"]

log = logging.getLogger("corral.controllers.statefulset")

POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"


def _ordinal(sts_name: str, pod: Obj) -> int | None:
    m = re.fullmatch(re.escape(sts_name) + r"-(\d+)", meta(pod).get("name", ""))
    return int(m.group(1)) if m else None


def _running_ready(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") == "Running" and is_pod_ready(pod)


class StatefulSetController(Controller):
    name = "statefulset"
    workers = 2

    def __init__(self, client: Client, factory: InformerFactory) -> None:
        super().__init__(client, factory)
        self.sets = factory.informer(STATEFULSETS)
        self.pods = factory.informer(PODS)
        self.revisions = factory.informer(CONTROLLERREVISIONS)
        self.claims = factory.informer(PERSISTENTVOLUMECLAIMS)
        self.sets.add_handler(self.enqueue_handler)
        self.pods.add_handler(self._on_pod)

    def _on_pod(self, event: str, old: Obj | None, new: Obj | None) -> None:
        pod = new or old
        assert pod is not None
        ref = controller_ref(pod)
        if ref is not None and ref.get("kind") == "StatefulSet":
            self.queue.add(f"{meta(pod).get('namespace')}/{ref.get('name')}")

    def _pod(self, sts: Obj, ordinal: int, template: Obj, h: str) -> Obj:
        name = f"{meta(sts)['name']}-{ordinal}"
        tmeta = template.get("metadata") or {}
        labels = {
            **(tmeta.get("labels") or {}),
            REVISION_HASH: h,
            POD_NAME_LABEL: name,
            POD_INDEX_LABEL: str(ordinal),
        }
        m: Obj = {
            "name": name,
            "namespace": meta(sts).get("namespace"),
            "labels": labels,
            "ownerReferences": [owner_ref(sts, "apps/v1", "StatefulSet")],
        }
        if tmeta.get("annotations"):
            m["annotations"] = dict(tmeta["annotations"])
        spec = deep_copy(template.get("spec") or {})
        claims = _claim_volumes(sts, ordinal)
        if claims:  # the template's volume of a claim's name gives way to the claim
            names = {v["name"] for v in claims}
            spec["volumes"] = [
                v for v in spec.get("volumes") or [] if v.get("name") not in names
            ] + claims
        spec["hostname"] = name
        service = (sts.get("spec") or {}).get("serviceName")
        if service:
            spec["subdomain"] = service
        return {"apiVersion": "v1", "kind": "Pod", "metadata": m, "spec": spec}

    async def reconcile(self, key: str) -> float | None:
        ns, name = split_key(key)
        sts = self.sets.get(key)
        if sts is None:
            return None
        spec = sts.get("spec") or {}

        async def recheck() -> Obj | None:
            try:
                return await self.client.get(STATEFULSETS, ns, name)
            except NotFound:
                return None

        pods = await claim(
            self.client,
            sts,
            "apps/v1",
            "StatefulSet",
            spec.get("selector"),
            self.pods.by_index("namespace", ns or ""),
            PODS,
            recheck,
        )
        if meta(sts).get("deletionTimestamp"):
            return None
        update_hash, update_rev, others = await ensure_revision(
            self.client, self.revisions, sts, "StatefulSet"
        )
        status = sts.get("status") or {}
        current_name = status.get("currentRevision") or meta(update_rev)["name"]
        current_rev = next(
            (r for r in [update_rev, *others] if meta(r)["name"] == current_name), update_rev
        )
        current_hash = labels_of(current_rev).get(REVISION_HASH, update_hash)
        await trim_history(
            self.client,
            sts,
            [r for r in others if r is not current_rev],
            {labels_of(p).get(REVISION_HASH) for p in pods},
        )

        replicas = int(spec.get("replicas", 1))
        start = int((spec.get("ordinals") or {}).get("start") or 0)
        parallel = spec.get("podManagementPolicy") == "Parallel"
        strategy = spec.get("updateStrategy") or {}
        rolling = strategy.get("type", "RollingUpdate") == "RollingUpdate"
        partition = int((strategy.get("rollingUpdate") or {}).get("partition") or 0)
        by_ordinal: dict[int, Obj] = {}
        extra: list[Obj] = []
        for p in pods:
            o = _ordinal(meta(sts)["name"], p)
            if o is not None and start <= o < start + replicas:
                by_ordinal[o] = p
            else:
                extra.append(p)

        def template_for(o: int) -> tuple[Obj, str]:
            if rolling and o - start < partition and current_hash != update_hash:
                return revision_template(current_rev), current_hash
            return spec.get("template") or {}, update_hash

        # Replace failed pods; make the missing ones in order.
        for o in range(start, start + replicas):
            pod = by_ordinal.get(o)
            if pod is not None and (pod.get("status") or {}).get("phase") == "Failed":
                if not meta(pod).get("deletionTimestamp"):
                    await self._delete(pod)
                if not parallel:
                    return await self._status(sts, pods, update_rev, current_rev, update_hash)
                continue
            if pod is None:
                template, h = template_for(o)
                await self._ensure_claims(sts, o)
                try:
                    await self.client.create(PODS, ns, self._pod(sts, o, template, h))
                except ClientError as e:
                    if e.code != 409:
                        raise
                if not parallel:
                    return await self._status(sts, pods, update_rev, current_rev, update_hash)
                continue
            if not parallel and (meta(pod).get("deletionTimestamp") or not _running_ready(pod)):
                return await self._status(sts, pods, update_rev, current_rev, update_hash)
        # Remove the ones beyond replicas, highest ordinal first.
        extra.sort(key=lambda p: _ordinal(meta(sts)["name"], p) or 0, reverse=True)
        for p in extra:
            if not meta(p).get("deletionTimestamp"):
                await self._claims_owned_by(sts, p)
                await self._delete(p)
            if not parallel:
                return await self._status(sts, pods, update_rev, current_rev, update_hash)
        # Rolling update: highest ordinal first, down to the partition, one at a time.
        if rolling:
            for o in range(start + replicas - 1, start + partition - 1, -1):
                pod = by_ordinal.get(o)
                if pod is None:
                    break
                if labels_of(pod).get(REVISION_HASH) != update_hash:
                    if not meta(pod).get("deletionTimestamp"):
                        await self._delete(pod)
                    break
                if not _running_ready(pod):
                    break
        return await self._status(sts, pods, update_rev, current_rev, update_hash)

    async def _ensure_claims(self, sts: Obj, ordinal: int) -> None:
        """kube's createPersistentVolumeClaims: each claim of the pod made if missing."""
        ns = meta(sts).get("namespace")
        policy = (sts.get("spec") or {}).get("persistentVolumeClaimRetentionPolicy") or {}
        for pvc in _claims(sts, ordinal):
            name = pvc["metadata"]["name"]
            if self.claims.get(f"{ns}/{name}") is not None:
                continue
            if policy.get("whenDeleted") == "Delete":
                pvc["metadata"]["ownerReferences"] = [owner_ref(sts, "apps/v1", "StatefulSet")]
            try:
                await self.client.create(PERSISTENTVOLUMECLAIMS, ns, pvc)
                log.info("statefulset: made claim %s/%s", ns, name)
            except ClientError as e:
                if e.code != 409:
                    raise

    async def _claims_owned_by(self, sts: Obj, pod: Obj) -> None:
        """whenScaled Delete: a pod removed by a scale-down owns its claims (they go with
        it)."""
        policy = (sts.get("spec") or {}).get("persistentVolumeClaimRetentionPolicy") or {}
        ordinal = _ordinal(meta(sts)["name"], pod)
        if policy.get("whenScaled") != "Delete" or ordinal is None:
            return
        ns = meta(sts).get("namespace")
        ref = owner_ref(pod, "v1", "Pod")
        for pvc in _claims(sts, ordinal):
            name = pvc["metadata"]["name"]
            cached = self.claims.get(f"{ns}/{name}")
            if cached is None or any(
                r.get("uid") == ref["uid"] for r in meta(cached).get("ownerReferences") or []
            ):
                continue
            refs = [*(meta(cached).get("ownerReferences") or []), ref]
            try:
                await self.client.patch(
                    PERSISTENTVOLUMECLAIMS, ns, name, {"metadata": {"ownerReferences": refs}}
                )
            except NotFound:
                pass

    async def _delete(self, pod: Obj) -> None:
        m = meta(pod)
        log.info("statefulset: deleting pod %s/%s", m.get("namespace"), m["name"])
        try:
            await self.client.delete(
                PODS, m.get("namespace"), m["name"], preconditions={"uid": m["uid"]}
            )
        except NotFound:
            pass

    async def _status(
        self, sts: Obj, pods: list[Obj], update_rev: Obj, current_rev: Obj, update_hash: str
    ) -> float | None:
        spec = sts.get("spec") or {}
        min_ready = int(spec.get("minReadySeconds") or 0)
        live = [p for p in pods if not meta(p).get("deletionTimestamp")]
        current_hash = labels_of(current_rev).get(REVISION_HASH)
        updated = sum(1 for p in live if labels_of(p).get(REVISION_HASH) == update_hash)
        current = sum(1 for p in live if labels_of(p).get(REVISION_HASH) == current_hash)
        replicas = int(spec.get("replicas", 1))
        ready = sum(1 for p in live if is_pod_ready(p))
        current_name = meta(current_rev)["name"]
        if updated == replicas and len(live) == replicas and ready == replicas:
            current_name, current = meta(update_rev)["name"], updated  # the rollout is done
        status = deep_copy(sts.get("status") or {})
        status.update(
            observedGeneration=meta(sts).get("generation", 1),
            replicas=len(live),
            readyReplicas=ready,
            availableReplicas=sum(1 for p in live if pod_available(p, min_ready)),
            currentReplicas=current,
            updatedReplicas=updated,
            currentRevision=current_name,
            updateRevision=meta(update_rev)["name"],
        )
        status = omit_zero(status, keep=("replicas", "availableReplicas"))
        if status != (sts.get("status") or {}):
            body = deep_copy(sts)
            body["status"] = status
            await self.client.update_status(STATEFULSETS, meta(sts).get("namespace"), body)
        return float(min_ready) if min_ready and ready != status.get("availableReplicas") else None


def _claims(sts: Obj, ordinal: int) -> list[Obj]:
    """The claims of the set's pod ``ordinal``, from its volumeClaimTemplates (kube's
    getPersistentVolumeClaims)."""
    spec = sts.get("spec") or {}
    selector = (spec.get("selector") or {}).get("matchLabels") or {}
    out = []
    for t in spec.get("volumeClaimTemplates") or []:
        tmeta = t.get("metadata") or {}
        m: Obj = {
            "name": f"{tmeta.get('name')}-{meta(sts)['name']}-{ordinal}",
            "namespace": meta(sts).get("namespace"),
            "labels": {**(tmeta.get("labels") or {}), **selector},
        }
        if tmeta.get("annotations"):
            m["annotations"] = dict(tmeta["annotations"])
        out.append(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": m,
                "spec": deep_copy(t.get("spec") or {}),
            }
        )
    return out


def _claim_volumes(sts: Obj, ordinal: int) -> list[Obj]:
    templates = (sts.get("spec") or {}).get("volumeClaimTemplates") or []
    return [
        {
            "name": (t.get("metadata") or {}).get("name"),
            "persistentVolumeClaim": {"claimName": c["metadata"]["name"]},
        }
        for t, c in zip(templates, _claims(sts, ordinal), strict=True)
    ]
