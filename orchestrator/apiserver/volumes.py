"""Admission of the storage kinds, as kube-apiserver's plugins do it:

* DefaultStorageClass: a claim created without ``spec.storageClassName`` gets the default
  class (the one annotated ``storageclass.kubernetes.io/is-default-class: "true"``; of several,
  the newest);
* StorageObjectInUseProtection: a new claim gets the ``kubernetes.io/pvc-protection``
  finalizer, a new volume ``kubernetes.io/pv-protection`` (the controller manager removes them
  once no pod uses the claim, once no claim is bound to the volume);
* PersistentVolumeClaimResize: a bound claim may ask for more only when its class allows
  volume expansion.

The built-in class: ``local-path`` (provisioner ``corral.io/local-path``, WaitForFirstConsumer,
Delete), the default one, made at the server's first start as k3s deploys its own.
"""

from __future__ import annotations

from typing import Any

import msgspec

from orchestrator.store import Backend, NotFound

__all__ = [
    "LOCAL_PATH_CLASS",
    "LOCAL_PATH_PROVISIONER",
    "PV_PROTECTION",
    "PVC_PROTECTION",
    "StorageAdmission",
    "builtin_storage_classes",
]

Obj = dict[str, Any]
PREFIX = "/registry/storageclasses.storage.k8s.io/"
PVC_PROTECTION = "kubernetes.io/pvc-protection"
PV_PROTECTION = "kubernetes.io/pv-protection"
LOCAL_PATH_CLASS = "local-path"
LOCAL_PATH_PROVISIONER = "corral.io/local-path"


def builtin_storage_classes() -> list[Obj]:
    return [
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {
                "name": LOCAL_PATH_CLASS,
                "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
            },
            "provisioner": LOCAL_PATH_PROVISIONER,
            "reclaimPolicy": "Delete",
            "volumeBindingMode": "WaitForFirstConsumer",
        }
    ]


def _add_finalizer(obj: Obj, name: str) -> None:
    meta = obj.setdefault("metadata", {})
    finalizers = meta.get("finalizers")
    if not isinstance(finalizers, list):
        finalizers = meta["finalizers"] = [] if finalizers is None else finalizers
    if isinstance(finalizers, list) and name not in finalizers:
        finalizers.append(name)


class StorageAdmission:
    def __init__(self, store: Backend) -> None:
        self.store = store

    async def default_class(self) -> Obj | None:
        from kubemodel.storage import is_default_class

        best: Obj | None = None
        for kv in (await self.store.list(PREFIX)).items:
            sc = msgspec.json.decode(kv.value)
            if not is_default_class(sc):
                continue
            key = (sc["metadata"].get("creationTimestamp") or "", sc["metadata"]["name"])
            if best is None or key > (
                best["metadata"].get("creationTimestamp") or "",
                best["metadata"]["name"],
            ):
                best = sc
        return best

    async def admit_claim(self, pvc: Obj) -> None:
        spec = pvc.get("spec")
        if isinstance(spec, dict) and spec.get("storageClassName") is None:
            sc = await self.default_class()
            if sc is not None:
                spec["storageClassName"] = sc["metadata"]["name"]
        _add_finalizer(pvc, PVC_PROTECTION)

    @staticmethod
    def admit_volume(pv: Obj) -> None:
        _add_finalizer(pv, PV_PROTECTION)

    async def expandable(self, pvc: Obj) -> bool:
        """Whether the claim's class allows volume expansion (PersistentVolumeClaimResize)."""
        name = (pvc.get("spec") or {}).get("storageClassName")
        if not name:
            return False
        try:
            kv = await self.store.get(PREFIX + name)
        except NotFound:
            return False
        return bool(msgspec.json.decode(kv.value).get("allowVolumeExpansion"))
