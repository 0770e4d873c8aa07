"""Persistent volumes as the scheduler, the controllers and the kubelet read them: a pod's
claims, whether a volume can be used on a node, which available volume suits a claim. Pure
functions over JSON objects (kube's volume helpers in component-helpers and the PV
controller's ``findMatchingVolume``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .labels import label_selector_matches, requirement_matches

__all__ = [
    "LOCAL_PATH_PROVISIONER",
    "LOCAL_PATH_ROOT_ANNOTATION",
    "SELECTED_NODE",
    "STORAGE_PROVISIONER",
    "claim_names",
    "find_volume",
    "quantity_bytes",
    "volume_fits_node",
]

Obj = dict[str, Any]
SELECTED_NODE = "volume.kubernetes.io/selected-node"
STORAGE_PROVISIONER = "volume.kubernetes.io/storage-provisioner"
BETA_STORAGE_PROVISIONER = "volume.beta.kubernetes.io/storage-provisioner"
BIND_COMPLETED = "pv.kubernetes.io/bind-completed"
BOUND_BY_CONTROLLER = "pv.kubernetes.io/bound-by-controller"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
LOCAL_PATH_PROVISIONER = "corral.io/local-path"
# The directory a node's local-path volumes are made in (<agent data-dir>/storage): the agent
# puts it on its Node, the provisioner reads it there.
LOCAL_PATH_ROOT_ANNOTATION = "corral.io/local-path-root"

_SUFFIX = {
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
    "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18, "m": 1,
}  # fmt: skip


def quantity_bytes(value: Any) -> float:
    """A storage quantity in bytes (enough for comparing sizes: "1Gi" > "500Mi")."""
    text = str(value or "0").strip()
    for suffix in sorted(_SUFFIX, key=len, reverse=True):
        if text.endswith(suffix):
            number = float(text[: -len(suffix)] or 0)
            return number / 1000 if suffix == "m" else number * _SUFFIX[suffix]
    try:
        return float(text)
    except ValueError:
        return 0.0


def claim_names(pod: Obj) -> list[str]:
    """The claims a pod's volumes name (ephemeral volumes' claims are ``<pod>-<volume>``)."""
    out: list[str] = []
    pod_name = (pod.get("metadata") or {}).get("name") or ""
    for v in (pod.get("spec") or {}).get("volumes") or ():
        if (pvc := v.get("persistentVolumeClaim")) and pvc.get("claimName"):
            out.append(pvc["claimName"])
        elif v.get("ephemeral"):
            out.append(f"{pod_name}-{v.get('name')}")
    return out


def volume_fits_node(pv: Obj, node_name: str, labels: Mapping[str, str]) -> bool:
    """The volume's ``spec.nodeAffinity`` holds for the node (a volume without one fits
    everywhere)."""
    required = ((pv.get("spec") or {}).get("nodeAffinity") or {}).get("required")
    if not required:
        return True
    for term in required.get("nodeSelectorTerms") or ():
        exprs, fields = term.get("matchExpressions") or [], term.get("matchFields") or []
        if not exprs and not fields:
            continue
        if all(requirement_matches(e, labels.get(e.get("key", ""))) for e in exprs) and all(
            f.get("key") == "metadata.name" and requirement_matches(f, node_name) for f in fields
        ):
            return True
    return False


def _selector_matches(sel: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A claim's selector: none (or an empty one) takes any volume."""
    return not sel or label_selector_matches(sel, labels)


def find_volume(
    claim: Obj,
    volumes: Iterable[Obj],
    node: tuple[str, Mapping[str, str]] | None = None,
) -> Obj | None:
    """The smallest volume that can be bound to ``claim``: one pre-bound to it (claimRef
    naming it), else an available one (no claimRef, not being deleted) of the claim's class,
    with its access modes, at least its requested size, matching its selector; and, given
    ``node`` (name, labels: the claim waits for its first consumer), usable on that node."""
    cmeta, spec = claim.get("metadata") or {}, claim.get("spec") or {}
    want_modes = set(spec.get("accessModes") or ())
    want = quantity_bytes(((spec.get("resources") or {}).get("requests") or {}).get("storage"))
    cls = spec.get("storageClassName") or ""
    mode = spec.get("volumeMode") or "Filesystem"
    best: tuple[float, str] | None = None
    chosen: Obj | None = None
    for pv in volumes:
        pmeta, pspec = pv.get("metadata") or {}, pv.get("spec") or {}
        if pmeta.get("deletionTimestamp"):
            continue
        ref = pspec.get("claimRef")
        if ref:
            mine = ref.get("name") == cmeta.get("name") and ref.get("namespace") == cmeta.get(
                "namespace"
            )
            if mine and ref.get("uid") in (None, "", cmeta.get("uid")):
                if node is None or volume_fits_node(pv, *node):
                    return pv  # pre-bound to this claim (a provisioned volume)
            continue
        if (pv.get("status") or {}).get("phase") not in (None, "Available", "Pending"):
            continue
        if (pspec.get("storageClassName") or "") != cls:
            continue
        if (pspec.get("volumeMode") or "Filesystem") != mode:
            continue
        if not want_modes <= set(pspec.get("accessModes") or ()):
            continue
        size = quantity_bytes((pspec.get("capacity") or {}).get("storage"))
        if size < want:
            continue
        if not _selector_matches(spec.get("selector"), pmeta.get("labels") or {}):
            continue
        if node is not None and not volume_fits_node(pv, *node):
            continue
        rank = (size, pmeta.get("name") or "")
        if best is None or rank < best:
            best, chosen = rank, pv
    return chosen
