"""The root CA publisher (kube-controller-manager's ``root-ca-cert-publisher``): a ConfigMap
``kube-root-ca.crt`` holding the cluster CA (key ``ca.crt``) in every namespace, so that a pod's
ServiceAccount token volume can give the pod the CA to verify the API server with. A deleted
one is made again, a changed one set back."""

from __future__ import annotations

import logging

from orchestrator.client import AlreadyExists, NotFound, Obj
from orchestrator.client.rest import CONFIGMAPS, NAMESPACES

from .base import Client, Controller, InformerFactory
from .util import meta

__all__ = ["CONFIGMAP", "DESCRIPTION", "RootCAPublisher"]

log = logging.getLogger("corral.controllers")

CONFIGMAP = "kube-root-ca.crt"
KEY = "ca.crt"
DESCRIPTION_ANNOTATION = "kubernetes.io/description"
DESCRIPTION = (
    "Contains a CA bundle that can be used to verify the kube-apiserver when using internal"
    " endpoints such as the internal service IP or kubernetes.default.svc. No other usage is"
    " guaranteed across distributions of Kubernetes clusters."
)


class RootCAPublisher(Controller):
    name = "root-ca-cert-publisher"
    workers = 1

    def __init__(self, client: Client, factory: InformerFactory, ca_pem: str) -> None:
        super().__init__(client, factory)
        if not ca_pem.strip():
            raise ValueError("root CA publisher: no cluster CA to publish")
        self.ca_pem = ca_pem
        self.namespaces = factory.informer(NAMESPACES)
        self.configmaps = factory.informer(CONFIGMAPS, f"metadata.name={CONFIGMAP}")
        self.namespaces.add_handler(self.enqueue_handler)
        self.configmaps.add_handler(self._on_configmap)

    def _on_configmap(self, event: str, old: Obj | None, new: Obj | None) -> None:
        obj = new if new is not None else old
        if obj is not None and meta(obj).get("name") == CONFIGMAP:
            self.queue.add(str(meta(obj).get("namespace")))

    def _want(self, cm: Obj) -> bool:
        """Whether ``cm`` holds what it should."""
        annotations = meta(cm).get("annotations") or {}
        return (cm.get("data") or {}) == {KEY: self.ca_pem} and annotations.get(
            DESCRIPTION_ANNOTATION
        ) == DESCRIPTION

    async def reconcile(self, key: str) -> float | None:
        ns = self.namespaces.get(key)
        if ns is None or meta(ns).get("deletionTimestamp"):
            return None  # gone or going: nothing may be made in it
        cm = self.configmaps.get(f"{key}/{CONFIGMAP}")
        if cm is None:
            body = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": CONFIGMAP,
                    "namespace": key,
                    "annotations": {DESCRIPTION_ANNOTATION: DESCRIPTION},
                },
                "data": {KEY: self.ca_pem},
            }
            try:
                await self.client.create(CONFIGMAPS, key, body)
            except (AlreadyExists, NotFound):  # made meanwhile, or the namespace went
                pass
            return None
        if self._want(cm):
            return None
        fixed = dict(cm)
        m = dict(meta(cm))
        m["annotations"] = {**(m.get("annotations") or {}), DESCRIPTION_ANNOTATION: DESCRIPTION}
        fixed["metadata"] = m
        fixed["data"] = {KEY: self.ca_pem}
        fixed.pop("binaryData", None)
        try:
            await self.client.update(CONFIGMAPS, key, fixed)
        except NotFound:  # deleted meanwhile: the watch brings the key back
            return None
        # (Conflict: changed meanwhile; raised, so the key is retried after the watch)
        log.info("root CA publisher: %s/%s set back to the cluster CA", key, CONFIGMAP)
        return None
