"""Persistent volumes on the node: a pod's ``persistentVolumeClaim`` volumes resolved, claim ->
bound volume -> its path, into the ``hostPath`` volumes the node runtime mounts (read-only
where the claim's volume source says so); and the node's local-path directories.

A local-path volume (``corral.io/local-path``) is the directory ``<data-dir>/storage/<pv>``
(``LOCAL_PATH_DIR``; the agent puts its path on the Node, ``corral.io/local-path-root``, where
the provisioner reads it). The kubelet makes it, 0777 as k3s' local-path helper does, when a
pod that uses it is made. ``LocalPathSweeper`` removes a directory there once the
PersistentVolume it is named after is gone: a Delete volume is deleted by the controller
manager once released, and its directory goes with it. Only volumes this agent has seen: a
directory whose volume it never saw (deleted while the agent was down, or the node joined to
another cluster) is left, with a log line, rather than risk data that may still be wanted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path
from typing import Any

from corral_common.rmtree import rmtree
from orchestrator.client import ClientError, Informer, NotFound, Obj
from orchestrator.client.rest import PERSISTENTVOLUMECLAIMS, PERSISTENTVOLUMES
from orchestrator.client.volumes import LOCAL_PATH_PROVISIONER, PROVISIONED_BY

from .volumes import VolumeError

__all__ = [
    "CLAIM_RETRY",
    "LOCAL_PATH_DIR",
    "ClaimError",
    "LocalPathSweeper",
    "claim_volumes",
    "with_claims",
]

log = logging.getLogger("corral.kubelet")

LOCAL_PATH_DIR = "storage"
SWEEP_EVERY = 30.0  # seconds between sweeps besides those a deleted volume asks for


def _has_claims(pod: Obj) -> bool:
    return any(
        v.get("persistentVolumeClaim") is not None
        for v in (pod.get("spec") or {}).get("volumes") or ()
    )


class ClaimError(VolumeError):
    """Claims the node cannot resolve yet (missing, not bound, their volume missing): the
    FailedMount kube's kubelet reports at once (its volume manager's wait ends on the
    populator's errors, it does not wait out its 2m03s for them), in its words; the pod's
    sync is tried again after ``CLAIM_RETRY``, as kube's pod worker retries a failed sync."""

    def __init__(self, failed: dict[str, str]) -> None:
        names = " ".join(sorted(failed))
        self.text = (
            f"Unable to attach or mount volumes: unmounted volumes=[{names}], unattached"
            f" volumes=[], failed to process volumes=[{names}]: "
            + "; ".join(failed[n] for n in sorted(failed))
        )
        super().__init__(sorted(failed)[0], self.text)

    def __str__(self) -> str:
        return self.text


CLAIM_RETRY = 10.0  # seconds: kube's pod worker backOffPeriod after a failed sync


async def claim_volumes(client: Any, pod: Obj, local_root: Path) -> dict[str, Obj]:
    """For each ``persistentVolumeClaim`` volume of the pod, the ``hostPath`` volume that
    replaces it (by volume name). ClaimError (FailedMount) when claims are missing, not
    bound, or their volume is; VolumeError when a volume is none the node can mount."""
    out: dict[str, Obj] = {}
    if not _has_claims(pod):
        return out
    ns = (pod.get("metadata") or {}).get("namespace") or "default"
    failed: dict[str, str] = {}
    for v in (pod.get("spec") or {}).get("volumes") or ():
        source = v.get("persistentVolumeClaim")
        if source is None:
            continue
        name = source.get("claimName") or ""
        what = f"error processing PVC {ns}/{name}: "
        try:
            claim = await client.get(PERSISTENTVOLUMECLAIMS, ns, name)
        except NotFound:
            failed[v["name"]] = (
                f'{what}failed to fetch PVC from API server: persistentvolumeclaims "{name}"'
                " not found"
            )
            continue
        except ClientError as e:
            failed[v["name"]] = f"{what}failed to fetch PVC from API server: {e}"
            continue
        phase = (claim.get("status") or {}).get("phase") or "Pending"
        volume = (claim.get("spec") or {}).get("volumeName")
        if phase != "Bound" or not volume:
            failed[v["name"]] = (
                f'{what}PVC {ns}/{name} has non-bound phase ("{phase}") or empty'
                f' pvc.Spec.VolumeName ("{volume or ""}")'
            )
            continue
        try:
            pv = await client.get(PERSISTENTVOLUMES, None, volume)
        except NotFound:
            failed[v["name"]] = f'{what}persistentvolumes "{volume}" not found'
            continue
        except ClientError as e:
            failed[v["name"]] = f"{what}{e}"
            continue
        if not failed:
            out[v["name"]] = _host_path(v["name"], pv, local_root)
    if failed:
        raise ClaimError(failed)
    return out


def _host_path(name: str, pv: Obj, local_root: Path) -> Obj:
    spec = pv.get("spec") or {}
    pv_name = (pv.get("metadata") or {}).get("name") or ""
    if (hp := spec.get("hostPath")) is not None:
        path, kind = hp.get("path") or "", hp.get("type") or ""
    elif (local := spec.get("local")) is not None:
        path, kind = local.get("path") or "", "Directory"
    else:
        raise VolumeError(name, f'persistentvolume "{pv_name}": only hostPath and local volumes'
                          " can be mounted on this node")  # fmt: skip
    ann = (pv.get("metadata") or {}).get("annotations") or {}
    if ann.get(PROVISIONED_BY) == LOCAL_PATH_PROVISIONER and Path(path) == local_root / pv_name:
        try:  # the directory a local-path volume is, made when its first pod is
            os.makedirs(path, mode=0o777, exist_ok=True)
            os.chmod(path, 0o777)
        except OSError as e:
            raise VolumeError(name, f"make {path}: {e.strerror}") from None
    return {"name": name, "hostPath": {"path": path, "type": kind}}


def with_claims(spec: Obj, claims: dict[str, Obj]) -> Obj:
    """The pod spec with its claim volumes replaced; the mounts of a volume whose claim
    source is ``readOnly`` are read-only (as the kubelet mounts such a volume)."""
    if not claims:
        return spec
    read_only = read_only_claims(spec) & claims.keys()
    out = dict(spec)
    out["volumes"] = [claims.get(v.get("name"), v) for v in spec.get("volumes") or ()]
    if read_only:
        for kind in ("initContainers", "containers", "ephemeralContainers"):
            if out.get(kind):
                out[kind] = [with_read_only(c, read_only) for c in out[kind]]
    return out


def read_only_claims(spec: Obj) -> set[str]:
    """The volumes of ``spec`` whose claim source is ``readOnly``."""
    return {
        v["name"]
        for v in spec.get("volumes") or ()
        if (v.get("persistentVolumeClaim") or {}).get("readOnly")
    }


def with_read_only(container: Obj, volumes: set[str]) -> Obj:
    """``container`` with its mounts of ``volumes`` read-only."""
    if not container.get("volumeMounts"):
        return container
    mounts = [
        {**m, "readOnly": True} if m.get("name") in volumes else m
        for m in container.get("volumeMounts") or ()
    ]
    return {**container, "volumeMounts": mounts}


class LocalPathSweeper:
    """Removes the node's local-path directories whose PersistentVolume it saw go."""

    def __init__(self, client: Any, root: Path) -> None:
        self.root = root
        self.informer = Informer(client, PERSISTENTVOLUMES)
        self.informer.add_handler(self._on_volume)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._seen: set[str] = set()  # the volumes listed or watched since the agent started
        self._unknown: set[str] = set()  # directories already reported as left alone

    def _on_volume(self, event: str, old: Obj | None, new: Obj | None) -> None:
        obj = new if new is not None else old
        if obj is not None:
            self._seen.add((obj.get("metadata") or {}).get("name") or "")
        if event == "DELETED":
            self._wake.set()

    def start(self) -> None:
        self.informer.start()
        self._task = asyncio.create_task(self._run(), name="kubelet-local-path")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.informer.stop()

    async def _run(self) -> None:
        await self.informer.wait_synced()
        while True:
            try:
                await asyncio.get_running_loop().run_in_executor(None, self.sweep)
            except Exception:
                log.exception("sweeping %s", self.root)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), SWEEP_EVERY)

    def sweep(self) -> list[str]:
        """Remove the directories of the volumes seen and gone (only once the informer has
        listed them)."""
        if not self.informer.has_synced:
            return []
        try:
            entries = os.listdir(self.root)
        except FileNotFoundError:
            return []
        named = {(pv.get("metadata") or {}).get("name") for pv in self.informer.list()}
        gone = [e for e in entries if e not in named and e in self._seen]
        for entry in sorted(set(entries) - named - self._seen - self._unknown):
            self._unknown.add(entry)
            log.warning("%s: no PersistentVolume of this cluster names it: left", self.root / entry)
        for entry in gone:
            log.info("removing local-path volume %s (its PersistentVolume is gone)", entry)
            rmtree(self.root / entry, ignore_errors=True)
        return gone
