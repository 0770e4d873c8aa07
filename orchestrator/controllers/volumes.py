"""Persistent volumes in the controller manager, as kube-controller-manager's
persistentvolume-binder, pvc-protection and pv-protection controllers and k3s' local-path
provisioner do it.

``PersistentVolumeController`` (keys ``claim:<ns>/<name>`` and ``volume:<name>``):

* binds a Pending claim to the smallest matching volume (``find_volume``: pre-bound to it,
  or available, of its class, access modes, size and selector): the volume's claimRef and
  phase Bound first, then the claim's volumeName and its status (phase, capacity, modes);
* a claim of a class with a provisioner and no volume: Immediate asks for one at once,
  WaitForFirstConsumer once the scheduler has written ``volume.kubernetes.io/selected-node``
  (the annotation ``volume.kubernetes.io/storage-provisioner`` names who must make it);
* a volume whose claim is gone is Released; with reclaimPolicy Delete it is deleted (a
  local-path volume's directory goes with it: its node's agent removes what no volume names);
* the protection finalizers: a deleted claim keeps ``kubernetes.io/pvc-protection`` while a
  pod that is not finished uses it, a deleted volume ``kubernetes.io/pv-protection`` while it
  is Bound.

``LocalPathProvisioner``: a claim that waits for ``corral.io/local-path`` and has a selected
node gets a volume ``pvc-<claim uid>``: a hostPath ``DirectoryOrCreate`` in the node's
``corral.io/local-path-root`` (``<agent data-dir>/storage/<volume>``), with node affinity to
that node, pre-bound to the claim, the class's reclaim policy.
"""

from __future__ import annotations

import logging
from typing import Any

from orchestrator.client import ClientError, NotFound, Obj
from orchestrator.client.rest import (
    NODES,
    PERSISTENTVOLUMECLAIMS,
    PERSISTENTVOLUMES,
    PODS,
    STORAGECLASSES,
)
from orchestrator.client.volumes import (
    BETA_STORAGE_PROVISIONER,
    BIND_COMPLETED,
    BOUND_BY_CONTROLLER,
    LOCAL_PATH_PROVISIONER,
    LOCAL_PATH_ROOT_ANNOTATION,
    PROVISIONED_BY,
    SELECTED_NODE,
    STORAGE_PROVISIONER,
    claim_names,
    find_volume,
)

from .base import Client, Controller, InformerFactory
from .util import deep_copy, labels_of, meta

__all__ = ["LocalPathProvisioner", "PersistentVolumeController"]

log = logging.getLogger("corral.controllers.volumes")

PVC_PROTECTION = "kubernetes.io/pvc-protection"
PV_PROTECTION = "kubernetes.io/pv-protection"
CLAIM, VOLUME = "claim:", "volume:"


def _pod_claims_index(pod: Obj) -> list[str]:
    """``<ns>/<claim>`` for each claim of a pod that is not finished (pvc-protection's "in
    use")."""
    if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return []
    ns = meta(pod).get("namespace") or ""
    return [f"{ns}/{c}" for c in claim_names(pod)]


def _volume_claim_index(pv: Obj) -> list[str]:
    ref = (pv.get("spec") or {}).get("claimRef") or {}
    return [f"{ref.get('namespace')}/{ref.get('name')}"] if ref.get("name") else []


def _claim_event(c: Controller, claim: Obj, type_: str, reason: str, message: str) -> None:
    c.event(claim, "v1", "PersistentVolumeClaim", type_, reason, message)


def _volume_event(c: Controller, pv: Obj, type_: str, reason: str, message: str) -> None:
    c.event(pv, "v1", "PersistentVolume", type_, reason, message)


def _drop_finalizer(obj: Obj, name: str) -> Obj:
    """A copy to update (compare-and-swap on its resourceVersion) without the finalizer."""
    body = deep_copy(obj)
    rest = [f for f in body["metadata"].get("finalizers") or [] if f != name]
    if rest:
        body["metadata"]["finalizers"] = rest
    else:
        body["metadata"].pop("finalizers", None)
    return body


class PersistentVolumeController(Controller):
    name = "persistentvolume-binder"
    component = "persistentvolume-controller"
    workers = 2

    def __init__(self, client: Client, factory: InformerFactory) -> None:
        super().__init__(client, factory)
        self.claims = factory.informer(PERSISTENTVOLUMECLAIMS)
        self.volumes = factory.informer(PERSISTENTVOLUMES)
        self.classes = factory.informer(STORAGECLASSES)
        self.nodes = factory.informer(NODES)
        self.pods = factory.informer(PODS)
        self.pods.add_index("claims", _pod_claims_index)
        self.volumes.add_index("claim", _volume_claim_index)
        self.claims.add_handler(self._on_claim)
        self.volumes.add_handler(self._on_volume)
        self.pods.add_handler(self._on_pod)
        self._waiting: set[str] = set()  # claims told they wait for their first consumer

    def _on_claim(self, event: str, old: Obj | None, new: Obj | None) -> None:
        obj = new if new is not None else old
        assert obj is not None
        m = meta(obj)
        key = f"{m.get('namespace')}/{m.get('name')}"
        self.queue.add(CLAIM + key)
        for pv in self.volumes.by_index("claim", key):  # Released when it goes
            self.queue.add(VOLUME + meta(pv)["name"])
        if volume := (obj.get("spec") or {}).get("volumeName"):
            self.queue.add(VOLUME + volume)

    def _on_volume(self, event: str, old: Obj | None, new: Obj | None) -> None:
        obj = new if new is not None else old
        assert obj is not None
        self.queue.add(VOLUME + meta(obj)["name"])
        for pv in (old, new):
            ref = ((pv or {}).get("spec") or {}).get("claimRef") or {}
            if ref.get("name"):
                self.queue.add(f"{CLAIM}{ref.get('namespace')}/{ref['name']}")
        if event == "ADDED" and not ((obj.get("spec") or {}).get("claimRef")):
            # a new available volume: the claims still waiting may take it
            for c in self.claims.list():
                if not (c.get("spec") or {}).get("volumeName"):
                    self.queue.add(CLAIM + f"{meta(c).get('namespace')}/{meta(c)['name']}")

    def _on_pod(self, event: str, old: Obj | None, new: Obj | None) -> None:
        # a deleted claim waits for its pods (pvc-protection)
        for pod in (old, new):
            if pod is not None:
                ns = meta(pod).get("namespace")
                for c in claim_names(pod):
                    claim = self.claims.get(f"{ns}/{c}")
                    if claim is not None and meta(claim).get("deletionTimestamp"):
                        self.queue.add(f"{CLAIM}{ns}/{c}")

    async def reconcile(self, key: str) -> float | None:
        if key.startswith(CLAIM):
            return await self._claim(key[len(CLAIM) :])
        if key.startswith(VOLUME):
            return await self._volume(key[len(VOLUME) :])
        return None

    # ------------------------------------------------------------------ claims

    async def _claim(self, key: str) -> float | None:
        claim = self.claims.get(key)
        if claim is None:
            return None
        m = meta(claim)
        if m.get("deletionTimestamp"):
            await self._release_claim(claim, key)
            return None
        spec, status = claim.get("spec") or {}, claim.get("status") or {}
        if spec.get("volumeName"):
            pv = self.volumes.get(spec["volumeName"])
            if pv is None:
                if status.get("phase") == "Bound":
                    await self._claim_status(claim, "Lost", None)
                    _claim_event(
                        self,
                        claim,
                        "Warning",
                        "ClaimLost",
                        "Bound claim has lost its PersistentVolume. Data on the volume is lost!",
                    )
                return None
            ref = (pv.get("spec") or {}).get("claimRef") or {}
            if ref.get("name") == m["name"] and ref.get("namespace") == m.get("namespace"):
                if ref.get("uid") in (None, "", m.get("uid")):
                    await self._bind(claim, pv)
                return None
            if not ref:
                await self._bind(claim, pv)  # a claim that named its volume
            return None
        cls = self._class(claim)
        wait = cls is not None and cls.get("volumeBindingMode") == "WaitForFirstConsumer"
        node_name = (m.get("annotations") or {}).get(SELECTED_NODE)
        node: tuple[str, Any] | None = None
        if node_name:
            n = self.nodes.get(node_name)
            node = (node_name, labels_of(n) if n is not None else {})
        elif wait:
            if not self._waiting_event_sent(claim):
                _claim_event(
                    self,
                    claim,
                    "Normal",
                    "WaitForFirstConsumer",
                    "waiting for first consumer to be created before binding",
                )
            return None
        pv = find_volume(claim, self.volumes.list(), node)
        if pv is not None:
            await self._bind(claim, pv)
            return None
        provisioner = (cls or {}).get("provisioner")
        if provisioner and spec.get("storageClassName"):
            ann = m.get("annotations") or {}
            if ann.get(STORAGE_PROVISIONER) != provisioner:
                await self.client.patch(
                    PERSISTENTVOLUMECLAIMS,
                    m.get("namespace"),
                    m["name"],
                    {
                        "metadata": {
                            "annotations": {
                                STORAGE_PROVISIONER: provisioner,
                                BETA_STORAGE_PROVISIONER: provisioner,
                            }
                        }
                    },
                )
                _claim_event(
                    self,
                    claim,
                    "Normal",
                    "ExternalProvisioning",
                    "Waiting for a volume to be created either by"
                    f" the external provisioner '{provisioner}' or manually by the"
                    " system administrator.",
                )
            return None
        if spec.get("storageClassName") and cls is None:
            _claim_event(
                self,
                claim,
                "Warning",
                "ProvisioningFailed",
                f'storageclass.storage.k8s.io "{spec["storageClassName"]}" not found',
            )
        elif not spec.get("storageClassName"):
            _claim_event(
                self,
                claim,
                "Normal",
                "FailedBinding",
                "no persistent volumes available for this claim and no storage class is set",
            )
        return None

    def _waiting_event_sent(self, claim: Obj) -> bool:
        # one event per claim and controller run (kube repeats it on every resync)
        uid = meta(claim).get("uid") or ""
        if uid in self._waiting:
            return True
        self._waiting.add(uid)
        return False

    def _class(self, claim: Obj) -> Obj | None:
        name = (claim.get("spec") or {}).get("storageClassName")
        return self.classes.get(name) if name else None

    async def _bind(self, claim: Obj, pv: Obj) -> None:
        """kube's bind(): the volume first (claimRef, phase Bound), then the claim
        (volumeName, annotations, then its status)."""
        m, pm = meta(claim), meta(pv)
        ref = (pv.get("spec") or {}).get("claimRef") or {}
        want_ref = {
            "kind": "PersistentVolumeClaim",
            "namespace": m.get("namespace"),
            "name": m["name"],
            "uid": m.get("uid"),
            "apiVersion": "v1",
            "resourceVersion": m.get("resourceVersion"),
        }
        if ref.get("uid") != m.get("uid"):
            body = deep_copy(pv)
            body["spec"]["claimRef"] = want_ref
            if not ref:
                body["metadata"].setdefault("annotations", {})[BOUND_BY_CONTROLLER] = "yes"
            pv = await self.client.update(PERSISTENTVOLUMES, None, body)
        if (pv.get("status") or {}).get("phase") != "Bound":
            body = deep_copy(pv)
            body["status"] = {"phase": "Bound"}
            pv = await self.client.update_status(PERSISTENTVOLUMES, None, body)
        spec = claim.get("spec") or {}
        ann = m.get("annotations") or {}
        if spec.get("volumeName") != pm["name"] or ann.get(BIND_COMPLETED) != "yes":
            body = deep_copy(claim)
            body["spec"]["volumeName"] = pm["name"]
            extra = {BIND_COMPLETED: "yes"}
            if not spec.get("volumeName"):
                extra[BOUND_BY_CONTROLLER] = "yes"
            body["metadata"]["annotations"] = {**ann, **extra}
            claim = await self.client.update(PERSISTENTVOLUMECLAIMS, m.get("namespace"), body)
        await self._claim_status(claim, "Bound", pv)

    async def _claim_status(self, claim: Obj, phase: str, pv: Obj | None) -> None:
        status: Obj = {"phase": phase}
        if pv is not None:
            pspec = pv.get("spec") or {}
            status["accessModes"] = list(pspec.get("accessModes") or [])
            status["capacity"] = dict(pspec.get("capacity") or {})
        if (claim.get("status") or {}) != status:
            body = deep_copy(claim)
            body["status"] = status
            await self.client.update_status(
                PERSISTENTVOLUMECLAIMS, meta(claim).get("namespace"), body
            )

    async def _release_claim(self, claim: Obj, key: str) -> None:
        """pvc-protection: the finalizer goes once no unfinished pod uses the claim."""
        m = meta(claim)
        if PVC_PROTECTION not in (m.get("finalizers") or []):
            return
        if self.pods.by_index("claims", key):
            return
        # The cache may lag behind a pod just made: ask the API, as kube's controller does.
        ns = m.get("namespace")
        pods = await self.client.list_all(PODS, ns)
        if any(_pod_claims_index(p) and key in _pod_claims_index(p) for p in pods[0]):
            return
        await self.client.update(PERSISTENTVOLUMECLAIMS, ns, _drop_finalizer(claim, PVC_PROTECTION))

    # ----------------------------------------------------------------- volumes

    async def _volume(self, name: str) -> float | None:
        pv = self.volumes.get(name)
        if pv is None:
            return None
        pm, spec = meta(pv), pv.get("spec") or {}
        phase = (pv.get("status") or {}).get("phase")
        ref = spec.get("claimRef") or {}
        claim = self.claims.get(f"{ref.get('namespace')}/{ref.get('name')}") if ref else None
        if claim is not None and ref.get("uid") and meta(claim).get("uid") != ref.get("uid"):
            claim = None  # a new claim of the same name is not this volume's
        if claim is None and ref.get("uid"):
            # its claim was bound and is gone: ask the API before letting the volume go
            try:
                got = await self.client.get(
                    PERSISTENTVOLUMECLAIMS, ref.get("namespace"), ref["name"]
                )
                if meta(got).get("uid") == ref.get("uid"):
                    claim = got
            except NotFound:
                pass
        if pm.get("deletionTimestamp"):
            if PV_PROTECTION in (pm.get("finalizers") or []) and (
                phase != "Bound" or claim is None
            ):
                await self.client.update(
                    PERSISTENTVOLUMES, None, _drop_finalizer(pv, PV_PROTECTION)
                )
            return None
        if not ref:
            await self._volume_phase(pv, "Available")
            return None
        if claim is None:
            if not ref.get("uid"):
                await self._volume_phase(pv, "Available")  # pre-bound, its claim not there yet
                return None
            if phase != "Released":
                await self._volume_phase(pv, "Released")
            if spec.get("persistentVolumeReclaimPolicy") == "Delete":
                log.info("deleting released volume %s", name)
                try:
                    await self.client.delete(
                        PERSISTENTVOLUMES, None, name, preconditions={"uid": pm.get("uid")}
                    )
                except NotFound:
                    pass
                _volume_event(
                    self,
                    pv,
                    "Normal",
                    "VolumeDelete",
                    f"volume {name} deleted: its claim is gone and its reclaim policy is Delete",
                )
            return None
        if (claim.get("spec") or {}).get("volumeName") == name:
            await self._volume_phase(pv, "Bound")
        return None

    async def _volume_phase(self, pv: Obj, phase: str) -> None:
        if (pv.get("status") or {}).get("phase") == phase:
            return
        body = deep_copy(pv)
        body["status"] = {"phase": phase}
        await self.client.update_status(PERSISTENTVOLUMES, None, body)


class LocalPathProvisioner(Controller):
    name = "local-path-provisioner"
    component = "corral.io/local-path"
    workers = 1

    def __init__(self, client: Client, factory: InformerFactory) -> None:
        super().__init__(client, factory)
        self.claims = factory.informer(PERSISTENTVOLUMECLAIMS)
        self.volumes = factory.informer(PERSISTENTVOLUMES)
        self.classes = factory.informer(STORAGECLASSES)
        self.nodes = factory.informer(NODES)
        self.claims.add_handler(self.enqueue_handler)

    async def reconcile(self, key: str) -> float | None:
        claim = self.claims.get(key)
        if claim is None:
            return None
        m, spec = meta(claim), claim.get("spec") or {}
        ann = m.get("annotations") or {}
        if (
            m.get("deletionTimestamp")
            or spec.get("volumeName")
            or ann.get(STORAGE_PROVISIONER) != LOCAL_PATH_PROVISIONER
        ):
            return None
        name = f"pvc-{m['uid']}"
        if self.volumes.get(name) is not None:
            return None
        cls = self.classes.get(spec.get("storageClassName") or "")
        if cls is None or cls.get("provisioner") != LOCAL_PATH_PROVISIONER:
            return None
        node_name = ann.get(SELECTED_NODE)
        if not node_name:
            _claim_event(
                self,
                claim,
                "Warning",
                "ProvisioningFailed",
                "failed to provision volume with StorageClass"
                f' "{meta(cls)["name"]}": configuration error, no node was specified',
            )
            return None
        node = self.nodes.get(node_name)
        root = (
            (meta(node).get("annotations") or {}).get(LOCAL_PATH_ROOT_ANNOTATION) if node else None
        )
        if not root:
            _claim_event(
                self,
                claim,
                "Warning",
                "ProvisioningFailed",
                f"failed to provision volume: node {node_name} has no"
                f" {LOCAL_PATH_ROOT_ANNOTATION} (is its agent running?)",
            )
            return 5.0
        requests = (spec.get("resources") or {}).get("requests") or {}
        pv: Obj = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {
                "name": name,
                "annotations": {PROVISIONED_BY: LOCAL_PATH_PROVISIONER, SELECTED_NODE: node_name},
            },
            "spec": {
                "accessModes": list(spec.get("accessModes") or ["ReadWriteOnce"]),
                "capacity": {"storage": requests.get("storage")},
                "hostPath": {"path": f"{root.rstrip('/')}/{name}", "type": "DirectoryOrCreate"},
                "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "kubernetes.io/hostname", "operator": "In", "values": [node_name]}
                ]}]}},
                "persistentVolumeReclaimPolicy": cls.get("reclaimPolicy") or "Delete",
                "storageClassName": meta(cls)["name"],
                "volumeMode": spec.get("volumeMode") or "Filesystem",
                "claimRef": {
                    "kind": "PersistentVolumeClaim",
                    "apiVersion": "v1",
                    "namespace": m.get("namespace"),
                    "name": m["name"],
                    "uid": m["uid"],
                },
            },
        }  # fmt: skip
        _claim_event(
            self,
            claim,
            "Normal",
            "Provisioning",
            f'External provisioner is provisioning volume for claim "{key}"',
        )
        try:
            await self.client.create(PERSISTENTVOLUMES, None, pv)
        except ClientError as e:
            if e.code != 409:
                raise
        _claim_event(
            self,
            claim,
            "Normal",
            "ProvisioningSucceeded",
            f"Successfully provisioned volume {name}",
        )
        return None
