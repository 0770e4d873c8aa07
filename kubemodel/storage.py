"""PersistentVolume, PersistentVolumeClaim (core/v1) and StorageClass (storage.k8s.io/v1):
kube-apiserver's defaults and the main rules of its validation, on create (registered with
the codec) and on update (``validate_*_update``, over the stored JSON, as
``pod.validate_pod_update``)."""

from __future__ import annotations

from typing import Any

from kubemodel._generated import (
    LabelSelector,
    PersistentVolume,
    PersistentVolumeClaim,
    PersistentVolumeClaimSpec,
    StorageClass,
)
from kubemodel.codec import DEFAULTERS, VALIDATORS
from kubemodel.errors import FieldError, at
from kubemodel.names import check_dns_subdomain, qualified_name_problem
from kubemodel.pod import (
    _validate_requirement,
    _validate_term,
    invalid,
    not_supported,
    validate_meta,
)
from kubemodel.quantity import parse_quantity

__all__ = [
    "ACCESS_MODES",
    "DEFAULT_CLASS_ANNOTATION",
    "access_modes_text",
    "is_default_class",
    "validate_pv_update",
    "validate_pvc_update",
    "validate_storage_class_update",
]

# in the order kubectl prints them (GetAccessModesAsString)
ACCESS_MODES = {
    "ReadWriteOnce": "RWO",
    "ReadOnlyMany": "ROX",
    "ReadWriteMany": "RWX",
    "ReadWriteOncePod": "RWOP",
}
_MODES_SORTED = sorted(ACCESS_MODES)
RECLAIM_POLICIES = ("Delete", "Recycle", "Retain")
VOLUME_MODES = ("Block", "Filesystem")
BINDING_MODES = ("Immediate", "WaitForFirstConsumer")
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"
_BETA_DEFAULT_CLASS_ANNOTATION = "storageclass.beta.kubernetes.io/is-default-class"
# The PersistentVolume sources, by JSON name: a PV has exactly one.
PV_SOURCES = (
    ("awsElasticBlockStore", "aws_elastic_block_store"),
    ("azureDisk", "azure_disk"),
    ("azureFile", "azure_file"),
    ("cephfs", "cephfs"),
    ("cinder", "cinder"),
    ("csi", "csi"),
    ("fc", "fc"),
    ("flexVolume", "flex_volume"),
    ("flocker", "flocker"),
    ("gcePersistentDisk", "gce_persistent_disk"),
    ("glusterfs", "glusterfs"),
    ("hostPath", "host_path"),
    ("iscsi", "iscsi"),
    ("local", "local"),
    ("nfs", "nfs"),
    ("photonPersistentDisk", "photon_persistent_disk"),
    ("portworxVolume", "portworx_volume"),
    ("quobyte", "quobyte"),
    ("rbd", "rbd"),
    ("scaleIO", "scale_io"),
    ("storageos", "storageos"),
    ("vsphereVolume", "vsphere_volume"),
)
_PV_SOURCE_KEYS = frozenset(json_name for json_name, _ in PV_SOURCES)
_HOST_PATH_TYPES = (
    "",
    "BlockDevice",
    "CharDevice",
    "Directory",
    "DirectoryOrCreate",
    "File",
    "FileOrCreate",
    "Socket",
)


def access_modes_text(modes: list[str] | None) -> str:
    """kubectl's ``RWO,ROX``: the modes given, each once, in kube's order."""
    given = set(modes or ())
    return ",".join(short for mode, short in ACCESS_MODES.items() if mode in given)


def is_default_class(sc: dict[str, Any]) -> bool:
    ann = (sc.get("metadata") or {}).get("annotations") or {}
    return "true" in (ann.get(DEFAULT_CLASS_ANNOTATION), ann.get(_BETA_DEFAULT_CLASS_ANNOTATION))


# ============================================================================ defaults


def _defaults_pv(pv: PersistentVolume) -> None:
    """SetDefaults_PersistentVolume: Retain, Filesystem; a new volume is Pending."""
    if pv.spec is not None:
        pv.spec.persistent_volume_reclaim_policy = pv.spec.persistent_volume_reclaim_policy or (
            "Retain"
        )
        pv.spec.volume_mode = pv.spec.volume_mode or "Filesystem"
        if pv.spec.host_path is not None and pv.spec.host_path.type is None:
            pv.spec.host_path.type = ""


def _defaults_pvc(pvc: PersistentVolumeClaim) -> None:
    if pvc.spec is not None:
        pvc.spec.volume_mode = pvc.spec.volume_mode or "Filesystem"


def _defaults_storage_class(sc: StorageClass) -> None:
    """SetDefaults_StorageClass: Delete, Immediate."""
    sc.reclaim_policy = sc.reclaim_policy or "Delete"
    sc.volume_binding_mode = sc.volume_binding_mode or "Immediate"


# ========================================================================== validation


def _access_modes(modes: list[str] | None, where: str) -> None:
    if not modes:
        raise FieldError(where, "Required value: at least 1 access mode is required")
    for mode in modes:
        if mode not in ACCESS_MODES:
            raise not_supported(where, mode, _MODES_SORTED)
    if "ReadWriteOncePod" in modes and len(modes) > 1:
        raise FieldError(where, "Forbidden: may not use ReadWriteOncePod with other access modes")


def _class_name(name: str | None, where: str) -> None:
    if name:
        check_dns_subdomain(name, where)


def _selector(sel: LabelSelector | None, where: str) -> None:
    if sel is None:
        return
    for i, r in enumerate(sel.match_expressions or ()):
        _validate_requirement(r, at(at(where, "matchExpressions"), i), ())


def _validate_pvc_spec(spec: PersistentVolumeClaimSpec | None, where: str) -> None:
    if spec is None:
        raise FieldError(where, "Required value")
    _access_modes(spec.access_modes, at(where, "accessModes"))
    _selector(spec.selector, at(where, "selector"))
    requests = (spec.resources.requests if spec.resources else None) or {}
    storage_at = f"{where}.resources[storage]"
    if "storage" not in requests:
        raise FieldError(storage_at, "Required value")
    amount = parse_quantity(requests["storage"], storage_at)
    if amount.value <= 0:
        raise invalid(storage_at, str(requests["storage"]), "must be greater than zero")
    _class_name(spec.storage_class_name, at(where, "storageClassName"))
    if spec.volume_mode is not None and spec.volume_mode not in VOLUME_MODES:
        raise not_supported(at(where, "volumeMode"), spec.volume_mode, VOLUME_MODES)


def _validate_pvc(pvc: PersistentVolumeClaim) -> None:
    validate_meta(pvc.metadata, True)
    _validate_pvc_spec(pvc.spec, "spec")


def _validate_pv(pv: PersistentVolume) -> None:
    validate_meta(pv.metadata, False)
    spec = pv.spec
    if spec is None:
        raise FieldError("spec", "Required value")
    _access_modes(spec.access_modes, "spec.accessModes")
    if not spec.capacity:
        raise FieldError("spec.capacity", "Required value")
    if set(spec.capacity) != {"storage"}:
        shown = ", ".join(sorted(spec.capacity))
        raise FieldError("spec.capacity", f'Unsupported value: "{shown}": supported values:'
                         ' "storage"')  # fmt: skip
    amount = parse_quantity(spec.capacity["storage"], "spec.capacity[storage]")
    if amount.value <= 0:
        raise invalid("spec.capacity[storage]", str(spec.capacity["storage"]),
                      "must be greater than zero")  # fmt: skip
    policy = spec.persistent_volume_reclaim_policy
    if policy is not None and policy not in RECLAIM_POLICIES:
        raise not_supported("spec.persistentVolumeReclaimPolicy", policy, RECLAIM_POLICIES)
    if spec.volume_mode is not None and spec.volume_mode not in VOLUME_MODES:
        raise not_supported("spec.volumeMode", spec.volume_mode, VOLUME_MODES)
    _class_name(spec.storage_class_name, "spec.storageClassName")
    given = [json_name for json_name, attr in PV_SOURCES if getattr(spec, attr) is not None]
    if not given:
        raise FieldError("spec", "Required value: must specify a volume type")
    if len(given) > 1:
        raise FieldError(at("spec", given[1]), "Forbidden: may not specify more than 1 volume"
                         " type")  # fmt: skip
    if spec.host_path is not None:
        path = spec.host_path.path
        if not path:
            raise FieldError("spec.hostPath.path", "Required value")
        if ".." in path.split("/"):
            raise invalid("spec.hostPath.path", path, "must not contain '..'")
        if spec.host_path.type not in _HOST_PATH_TYPES:
            raise not_supported("spec.hostPath.type", spec.host_path.type or "",
                                _HOST_PATH_TYPES[1:])  # fmt: skip
        if policy == "Recycle" and path == "/":
            raise FieldError(
                "spec.persistentVolumeReclaimPolicy",
                "Forbidden: may not be 'recycle' for a hostPath mount of '/'",
            )
    if spec.local is not None:
        if not spec.local.path:
            raise FieldError("spec.local.path", "Required value")
        if ".." in spec.local.path.split("/"):
            raise invalid("spec.local.path", spec.local.path, "must not contain '..'")
        if spec.node_affinity is None:
            raise FieldError("spec.nodeAffinity", "Required value: Local volume requires node"
                             " affinity")  # fmt: skip
    if spec.node_affinity is not None:
        required = spec.node_affinity.required
        where = "spec.nodeAffinity.required"
        if required is None:
            raise FieldError(where, "Required value: must specify required node constraints")
        if not required.node_selector_terms:
            raise FieldError(at(where, "nodeSelectorTerms"), "Required value: must have at least"
                             " one node selector term")  # fmt: skip
        for i, term in enumerate(required.node_selector_terms):
            _validate_term(term, at(at(where, "nodeSelectorTerms"), i))
    if spec.claim_ref is not None and not spec.claim_ref.name:
        raise FieldError("spec.claimRef.name", "Required value")


def _validate_storage_class(sc: StorageClass) -> None:
    validate_meta(sc.metadata, False)
    if not sc.provisioner:
        raise FieldError("provisioner", "Required value")
    problem = qualified_name_problem(sc.provisioner)
    if problem:
        raise invalid("provisioner", sc.provisioner, problem)
    if sc.reclaim_policy is not None and sc.reclaim_policy not in ("Delete", "Retain"):
        raise not_supported("reclaimPolicy", sc.reclaim_policy, ("Delete", "Retain"))
    if sc.volume_binding_mode is None:
        raise FieldError("volumeBindingMode", "Required value")
    if sc.volume_binding_mode not in BINDING_MODES:
        raise not_supported("volumeBindingMode", sc.volume_binding_mode, BINDING_MODES)
    if len(sc.parameters or {}) > 512:
        raise FieldError("parameters", "Too many: must have at most 512 parameters")
    for key in sc.parameters or {}:
        if not key:
            raise invalid("parameters", "", "field can not be empty.")


# ============================================================================== update


def _storage(spec: dict[str, Any]) -> Any:
    return ((spec.get("resources") or {}).get("requests") or {}).get("storage")


def validate_pvc_update(old: dict[str, Any], new: dict[str, Any], expandable: bool = False) -> None:
    """ValidatePersistentVolumeClaimUpdate over two stored claims: the spec is immutable but
    for volumeName set once (binding) and, on a bound claim whose class allows expansion
    (``expandable``: the PersistentVolumeClaimResize admission), a larger storage request."""
    old_spec, new_spec = dict(old.get("spec") or {}), dict(new.get("spec") or {})
    bound = (old.get("status") or {}).get("phase") == "Bound"
    if not old_spec.get("volumeName") and "volumeName" in new_spec:
        old_spec["volumeName"] = new_spec["volumeName"]
    old_size, new_size = _storage(old_spec), _storage(new_spec)
    if bound and old_size is not None and new_size is not None and old_size != new_size:
        where = "spec.resources.requests.storage"
        if parse_quantity(new_size, where).value < parse_quantity(old_size, where).value:
            raise FieldError(where, "Forbidden: field can not be less than previous value")
        if not expandable:
            raise FieldError(
                "spec",
                "Forbidden: only dynamically provisioned pvc can be resized and the"
                " storageclass that provisions the pvc must support resize",
            )
        resources = dict(new_spec.get("resources") or {})
        resources["requests"] = dict(resources.get("requests") or {}, storage=old_size)
        new_spec["resources"] = resources
    for spec in (old_spec, new_spec):
        spec.pop("volumeAttributesClassName", None)
    if old_spec != new_spec:
        raise FieldError(
            "spec",
            "Forbidden: spec is immutable after creation except resources.requests and"
            " volumeAttributesClassName for bound claims",
        )


def validate_pv_update(old: dict[str, Any], new: dict[str, Any]) -> None:
    """ValidatePersistentVolumeUpdate: the volume's source, its volumeMode and a nodeAffinity
    once set do not change."""
    old_spec, new_spec = old.get("spec") or {}, new.get("spec") or {}
    source = [{k: s.get(k) for k in _PV_SOURCE_KEYS} for s in (old_spec, new_spec)]
    if source[0] != source[1]:
        raise FieldError(
            "spec.persistentvolumesource",
            "Forbidden: spec.persistentvolumesource is immutable after creation",
        )
    if old_spec.get("volumeMode") != new_spec.get("volumeMode"):
        raise invalid("spec.volumeMode", new_spec.get("volumeMode") or "", "field is immutable")
    if old_spec.get("nodeAffinity") and old_spec["nodeAffinity"] != new_spec.get("nodeAffinity"):
        raise FieldError("spec.nodeAffinity", "Invalid value: field is immutable")


def validate_storage_class_update(old: dict[str, Any], new: dict[str, Any]) -> None:
    """ValidateStorageClassUpdate: parameters, provisioner, reclaimPolicy and
    volumeBindingMode are fixed at creation."""
    for key in ("parameters", "provisioner", "reclaimPolicy"):
        if (old.get(key) or None) != (new.get(key) or None):
            raise FieldError(key, f"Forbidden: updates to {key} are forbidden.")
    if old.get("volumeBindingMode") != new.get("volumeBindingMode"):
        raise invalid("volumeBindingMode", new.get("volumeBindingMode") or "",
                      "field is immutable")  # fmt: skip


DEFAULTERS.update(
    {
        PersistentVolume: _defaults_pv,
        PersistentVolumeClaim: _defaults_pvc,
        StorageClass: _defaults_storage_class,
    }
)
VALIDATORS.update(
    {
        PersistentVolume: _validate_pv,
        PersistentVolumeClaim: _validate_pvc,
        StorageClass: _validate_storage_class,
    }
)
