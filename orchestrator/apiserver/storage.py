"""The generic resource layer: create, get, list, update, patch and delete any kind of the
table over the store, as kube-apiserver's generic registry does.

Objects are plain JSON dicts here. A write decodes the object with kubemodel (unknown fields
refused, defaults applied, validated), encodes it back and stores it without its
resourceVersion: the store revision is the resourceVersion, set on every read.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec

import kubemodel
from kubemodel.certificates import validate_csr_update
from kubemodel.errors import DecodeError, FieldError, kind_of
from kubemodel.names import (
    check_dns1035_label,
    check_dns_label,
    check_dns_subdomain,
    check_path_segment,
    random_bytes,
    random_name,
)
from kubemodel.networking import validate_ingress_class_update, validate_ingress_create
from kubemodel.pod import (
    validate_ephemeral_containers_update,
    validate_meta,
    validate_pod_update,
)
from kubemodel.runtimeclass import validate_runtime_class_update
from kubemodel.storage import (
    validate_pv_update,
    validate_pvc_update,
    validate_storage_class_update,
)
from orchestrator.store import (
    AlreadyExists,
    Backend,
    Conflict,
    Gone,
    InvalidArgument,
    KeyValue,
    NotFound,
)

from . import errors, managedfields
from .certificates import GROUP as CSR_GROUP
from .certificates import REQUEST_USER, SignerCheck
from .certificates import RESOURCE as CSRS
from .certificates import admit_update as admit_csr_update
from .certificates import prepare_create as prepare_csr_create
from .certificates import prepare_update as prepare_csr_update
from .certificates import restrict_subject as restrict_csr_subject
from .ingress import set_default_class
from .limits import LimitRanger
from .patch import NoMergeKey, PatchError, json_patch, merge_patch, strategic_merge_patch
from .priority import PriorityAdmission, builtin_classes, validate_class
from .quota import Charge, QuotaAdmission
from .resources import (
    APIEXTENSIONS,
    INITIAL_STATUS,
    RESOURCES,
    Resource,
    by_path,
    custom_resources,
)
from .runtimeclass import RuntimeClassAdmission
from .serviceaccount import admit_pod as admit_service_account
from .services import Allocation, ServiceAllocator
from .volumes import StorageAdmission, builtin_storage_classes
from .webhooks import EXEMPT as WEBHOOK_CONFIGS
from .webhooks import Attributes, WebhookAdmission

__all__ = ["Storage", "View", "now_rfc3339"]

log = logging.getLogger("corral.apiserver")

Obj = dict[str, Any]
NAMESPACES = by_path("", "v1", "namespaces")
assert NAMESPACES is not None
PRIORITYCLASSES = by_path("scheduling.k8s.io", "v1", "priorityclasses")
SERVICEACCOUNTS = by_path("", "v1", "serviceaccounts")
STORAGECLASSES = by_path("storage.k8s.io", "v1", "storageclasses")
assert PRIORITYCLASSES is not None and SERVICEACCOUNTS is not None
INGRESSCLASSES = by_path("networking.k8s.io", "v1", "ingressclasses")
assert INGRESSCLASSES is not None
assert STORAGECLASSES is not None
PODS = by_path("", "v1", "pods")
assert PODS is not None
CRDS = "customresourcedefinitions"
INITIAL_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
UNDELETABLE_NAMESPACES = ("default", "kube-system", "kube-public")
PATCH_RETRIES = 5
# Who the server's own writes are, to webhooks (REQUEST_USER is None for them).
APISERVER_USER: Obj = {"username": "system:apiserver", "groups": ["system:masters"]}
GC_FOREGROUND = "foregroundDeletion"
GC_ORPHAN = "orphan"
MAX_GENERATED_BASE = 58  # a generated name is at most 63 characters (apimachinery's)
_GENERATE_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # apimachinery's utilrand alphabet


_stamp: tuple[int, str] = (0, "")  # the last second formatted, and its text


def now_rfc3339(delta: float = 0) -> str:
    global _stamp
    second = int(time.time() + delta)
    if second != _stamp[0]:  # formatted once a second (a create formats one per object)
        t = datetime.fromtimestamp(second, UTC)
        _stamp = (second, t.strftime("%Y-%m-%dT%H:%M:%SZ"))
    return _stamp[1]


def decode_value(kv: KeyValue) -> Obj:
    obj = msgspec.json.decode(kv.value)
    obj.setdefault("metadata", {})["resourceVersion"] = str(kv.mod_rev)
    return obj


_top_level = msgspec.json.Decoder(dict[str, msgspec.Raw])
_shallow_or_none = msgspec.json.Decoder(dict[str, msgspec.Raw] | None)


def decode_shallow(kv: KeyValue) -> Obj:
    """The stored object with only its metadata decoded: every other field stays the JSON it
    was stored as (``msgspec.Raw``), encoded back byte for byte. For lists that are only
    encoded again (a tenth of the time of a full decode, and nearly no garbage)."""
    obj: Obj = _top_level.decode(kv.value)
    raw = obj.get("metadata")
    meta = msgspec.json.decode(raw) if raw is not None else {}
    meta["resourceVersion"] = str(kv.mod_rev)
    obj["metadata"] = meta
    return obj


def _new_uid() -> str:
    """A random (version 4) UUID, as uuid.uuid4(), from pooled os.urandom bytes."""
    return _uuid4_text(random_bytes(16))


def _uuid4_text(raw: bytes) -> str:
    """``str(uuid.UUID(bytes=raw, version=4))`` without the UUID object: the version and
    variant bits set in the bytes, then the hex digits grouped 8-4-4-4-12."""
    b = bytearray(raw)
    b[6] = (b[6] & 0x0F) | 0x40  # version 4
    b[8] = (b[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _copy(value: Any) -> Any:
    """A copy of decoded JSON (dicts and lists copied, scalars shared): copy.deepcopy without
    its memo and dispatch, twice as fast."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _encode_value(obj: Obj) -> bytes:
    meta = obj.get("metadata") or {}
    rv = meta.pop("resourceVersion", None)
    try:
        return msgspec.json.encode(obj)
    finally:
        if rv is not None:
            meta["resourceVersion"] = rv


def _check_name(res: Resource, name: str, where: str) -> None:
    """A FieldError unless ``name`` is a name of ``res``'s kind."""
    if res.name == "namespaces":
        check_dns_label(name, where)
    elif res.name == "services":
        check_dns1035_label(name, where)
    elif res.group in ("rbac.authorization.k8s.io", CSR_GROUP):  # (CSRs: any path segment)
        check_path_segment(name, where)
    else:
        check_dns_subdomain(name, where)


def _json_text(value: Any) -> str:
    return msgspec.json.encode(value).decode()


def _is_time(text: str) -> bool:
    try:
        datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


_ENTRY_STRINGS = ("apiVersion", "fieldsType", "manager", "operation", "subresource", "time")


def _check_sent_managed_fields(res: Resource, name: str, value: Any) -> None:
    """What kube-apiserver refuses in the managedFields a write was sent with: values its
    decoder cannot read (400; fieldsV1 is raw JSON there, anything goes), and, in the entries
    its field manager can read (FieldsV1), what ValidateManagedFields refuses (422). Entries
    it cannot read are replaced by the live ones, as there."""
    if value is None:
        return
    where = "metadata.managedFields"
    if not isinstance(value, list):
        raise errors.cannot_decode(
            res.kind, res.version, where, f"must be a list, not {kind_of(value)}"
        )
    for i, entry in enumerate(value):
        path = f"{where}[{i}]"
        if not isinstance(entry, dict):
            raise errors.cannot_decode(
                res.kind, res.version, path, f"must be an object, not {kind_of(entry)}"
            )
        for key in _ENTRY_STRINGS:
            v = entry.get(key)
            if v is not None and not isinstance(v, str):
                raise errors.cannot_decode(
                    res.kind, res.version, f"{path}.{key}", f"must be a string, not {kind_of(v)}"
                )
        if entry.get("time") is not None and not _is_time(entry["time"]):
            raise errors.cannot_decode(
                res.kind, res.version, f"{path}.time", "must be a timestamp (RFC 3339)"
            )
        if entry.get("fieldsType") != "FieldsV1" or not isinstance(entry.get("fieldsV1"), dict):
            continue  # the field manager cannot decode it: the live entries are kept
        op, manager = entry.get("operation"), entry.get("manager") or ""
        problem = ""
        if op not in ("Apply", "Update"):
            field, problem = (
                "operation",
                f"Invalid value: {_json_text(op or '')}: must be `Apply` or `Update`",
            )
        elif len(manager) > 128:
            field, problem = "manager", "Too long: may not be more than 128 bytes"
        elif not manager.isprintable():
            field, problem = (
                "manager",
                f"Invalid value: {_json_text(manager)}: must only contain printable characters",
            )
        elif len(entry.get("subresource") or "") > 128:
            field, problem = "subresource", "Too long: may not be more than 128 bytes"
        if problem:
            raise errors.invalid(res.kind, name, f"{path}.{field}", problem, res.group)


def _validate_crd_update(old: Obj, new: Obj) -> None:
    from .crd import validate_update

    validate_update(old, new)


_UPDATE_CHECKS: dict[str, Callable[[Obj, Obj], None]] = {
    "customresourcedefinitions": _validate_crd_update,
    "persistentvolumeclaims": validate_pvc_update,
    "persistentvolumes": validate_pv_update,
    "storageclasses": validate_storage_class_update,
    CSRS: validate_csr_update,
    "runtimeclasses": validate_runtime_class_update,
}


def _tracks_generation(res: Resource) -> bool:
    return res.untyped or res.group in ("apps", "batch", "policy", "networking.k8s.io")


def _spec_of(res: Resource, obj: Obj) -> Any:
    """What a change of bumps the generation: the spec; all but metadata (and status, with
    a status subresource) of a custom resource, as kube's customResourceStrategy."""
    if res.custom is None:
        return obj.get("spec")
    skip = ("metadata", "status") if "status" in res.subresources else ("metadata",)
    return {k: v for k, v in obj.items() if k not in skip and k not in ("apiVersion", "kind")}


def _qos_class(pod: Obj) -> str:
    containers = ((pod.get("spec") or {}).get("containers") or []) + (
        (pod.get("spec") or {}).get("initContainers") or []
    )
    requests = [((c.get("resources") or {}).get("requests") or {}) for c in containers]
    limits = [((c.get("resources") or {}).get("limits") or {}) for c in containers]
    if not any(requests) and not any(limits):
        return "BestEffort"
    for req, lim in zip(requests, limits, strict=True):
        if set(lim) < {"cpu", "memory"}:
            return "Burstable"
        if any(req.get(r, lim[r]) != lim[r] for r in ("cpu", "memory")):
            return "Burstable"
    return "Guaranteed"


def _zero_pod_selector(policy: Obj) -> None:
    """A NetworkPolicy's spec and spec.podSelector are Go values, not pointers: absent, Go's
    decoder leaves them zero (an empty selector: every pod of the namespace), and kube-apiserver
    stores them so (the model, from the OpenAPI schema, requires podSelector)."""
    spec = policy.get("spec")
    if spec is None:
        policy["spec"] = spec = {}
    if isinstance(spec, dict) and spec.get("podSelector") is None:
        spec["podSelector"] = {}


def _fold_string_data(secret: Obj) -> None:
    """stringData is write-only: its entries go into data, base64-encoded (kube-apiserver)."""
    string_data = secret.pop("stringData", None)
    if isinstance(string_data, dict):
        data = secret.get("data") if isinstance(secret.get("data"), dict) else {}
        for k, v in string_data.items():
            if isinstance(v, str):
                data[k] = base64.b64encode(v.encode()).decode()
        secret["data"] = data
    elif string_data is not None:
        secret["stringData"] = string_data  # let the model refuse it, naming the field
    secret.setdefault("type", "Opaque")


def _job_selector(job: Obj) -> None:
    """A Job without manualSelector selects its pods by its uid: the selector and the
    template's labels are generated (kube-apiserver's job strategy)."""
    spec = job.get("spec")
    if not isinstance(spec, dict) or spec.get("manualSelector"):
        return
    template = spec.get("template")
    if not isinstance(template, dict):
        return
    tmeta = template.setdefault("metadata", {})
    if not isinstance(tmeta, dict):
        return
    m = job["metadata"]
    uid, name = m["uid"], m["name"]
    spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    labels = tmeta.get("labels") if isinstance(tmeta.get("labels"), dict) else {}
    tmeta["labels"] = {
        **labels,
        "batch.kubernetes.io/controller-uid": uid,
        "batch.kubernetes.io/job-name": name,
        "controller-uid": uid,
        "job-name": name,
    }


@dataclass(frozen=True)
class View:
    """A resource served in another form than it is stored (events.k8s.io/v1 Event)."""

    res: Resource
    to_view: Callable[[Obj], Obj]
    to_stored: Callable[[Obj], Obj]


class Storage:
    def __init__(self, store: Backend) -> None:
        self.store = store
        # DefaultTolerationSeconds admission: how long a pod stays on a not-ready or
        # unreachable node (kube-apiserver's --default-*-toleration-seconds).
        self.not_ready_toleration_seconds = 300
        self.unreachable_toleration_seconds = 300
        self._ns_tasks: dict[str, asyncio.Task[None]] = {}
        self.priority = PriorityAdmission(store)
        self.runtime_classes = RuntimeClassAdmission(store)
        self.volumes = StorageAdmission(store)
        # ClusterIPs and NodePorts (the server sets its --service-cidr and port range)
        self.services = ServiceAllocator(store)
        self.quota = QuotaAdmission(store)  # ResourceQuota's admission
        # may the request's user approve or sign for a signerName (Security sets it; None:
        # no authorizer, every writer may)
        self.signer_allowed: SignerCheck | None = None
        # the local-path StorageClass made at start (off with --disable local-storage)
        self.builtin_storage_class = True
        self.limits = LimitRanger(store)  # LimitRange's
        self.webhooks = WebhookAdmission(store, self)  # admission webhooks (started by the server)
        # called after every write of a CustomResourceDefinition (crdcontrol.py serves what
        # it defines from then on)
        self.on_crd_write: Callable[[], Awaitable[None]] | None = None

    # ------------------------------------------------------------------ reading

    async def get(self, res: Resource, ns: str | None, name: str) -> Obj:
        return (await self._current(res, ns, name))[1]

    async def _sa_pull_secrets(
        self, pod: Obj, account: Callable[[str, str], Awaitable[Obj | None]]
    ) -> None:
        """The ServiceAccount admission's part for image pulls: a pod that names no
        ``imagePullSecrets`` gets those of its ServiceAccount, when that exists."""
        spec = pod.get("spec")
        if not isinstance(spec, dict) or spec.get("imagePullSecrets"):
            return
        sa_name = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
        sa = await account(pod["metadata"]["namespace"], str(sa_name))
        if sa is None:
            return
        refs = [
            {"name": r["name"]}
            for r in sa.get("imagePullSecrets") or ()
            if isinstance(r, dict) and r.get("name")
        ]
        if refs:
            spec["imagePullSecrets"] = refs

    async def list(
        self,
        res: Resource,
        ns: str | None,
        *,
        match: Callable[[Obj], bool] | None = None,
        limit: int = 0,
        continue_token: str | None = None,
        resource_version: str = "",
        exact: bool = False,
        shallow: bool = False,
    ) -> tuple[list[Obj], int, str | None]:
        """(items, list revision, continue token or None). ``shallow``: the items are only
        to be encoded again, so (when nothing is matched) only their metadata is decoded."""
        prefix = res.key_prefix(ns)
        revision = 0
        if resource_version not in ("", "0") and not continue_token:
            try:
                wanted = int(resource_version)
            except ValueError:
                raise errors.bad_request(
                    f"invalid resourceVersion {resource_version!r}: not an integer"
                ) from None
            current = await self.store.current_revision()
            if wanted > current:
                raise errors.ApiError(
                    504, "Timeout", f"Too large resource version: {wanted}, current: {current}"
                )
            if exact:
                revision = wanted
        items: list[Obj] = []
        token = continue_token
        list_rev = 0
        while True:
            want = limit - len(items) if limit > 0 else 0
            try:
                page = await self.store.list(
                    prefix, limit=want, continue_token=token, revision=revision
                )
            except Gone as e:
                if token:
                    raise errors.gone(
                        "The provided continue parameter is too old to display a consistent"
                        " list result. You can start a new list without the continue"
                        " parameter, or use the continue token in this response to retrieve"
                        " the remainder of the results. Continuing with the provided token"
                        " results in an inconsistent list - objects that were created,"
                        " modified, or deleted between the time the first chunk was returned"
                        " and now may show up in the list."
                    ) from None
                raise errors.gone(
                    f"too old resource version: {e.revision} ({e.compacted})"
                ) from None
            except InvalidArgument as e:
                raise errors.bad_request(str(e)) from None
            list_rev = page.revision
            revision = page.revision
            if shallow and match is None:
                items += map(decode_shallow, page.items)
            else:
                for kv in page.items:
                    obj = decode_value(kv)
                    if match is None or match(obj):
                        items.append(obj)
            token = page.continue_token
            if token is None or (limit > 0 and len(items) >= limit):
                break
        return items, list_rev, token

    # ------------------------------------------------------------------ writing

    def _admit(self, res: Resource, obj: Obj) -> Obj:
        """Decode with the object model (unknown fields refused, defaults, validation) and
        encode back: the object as it will be stored."""
        name = (obj.get("metadata") or {}).get("name") or ""
        if res.untyped:
            return self._admit_untyped(res, obj, name)
        if res.name == "secrets":
            _fold_string_data(obj)
        if res.name == "networkpolicies":
            _zero_pod_selector(obj)
        try:
            typed = kubemodel.decode(obj, res.model)
            if name:  # the kind's own name rule first, as kube's ValidateObjectMeta checks it
                _check_name(res, name, "metadata.name")
            if res.model is not kubemodel.Pod:
                validate_meta(
                    typed.metadata,  # type: ignore[attr-defined]
                    res.namespaced,
                    path_segment_name=res.group in ("rbac.authorization.k8s.io", CSR_GROUP),
                )
        except DecodeError as e:  # Go's decoder refuses it before validation: 400
            raise errors.cannot_decode(res.kind, res.version, e.field, e.message) from None
        except FieldError as e:
            raise errors.invalid(res.kind, name, e.field, e.message, res.group) from None
        except RecursionError:
            raise errors.bad_request("the object is nested too deeply") from None
        return kubemodel.to_dict(typed)

    def _admit_untyped(self, res: Resource, obj: Obj, name: str) -> Obj:
        """A CRD or custom resource: its metadata decoded and validated as any object's,
        the rest by crd.py (the CRD's rules, or the custom resource's schema)."""
        from .crd import FieldErrors, admit_crd, admit_custom

        meta = obj.get("metadata")
        try:
            # (decoded as a ConfigMap's: ObjectMeta is no kind of its own)
            typed = kubemodel.decode(
                {"metadata": meta}, kubemodel.ConfigMap, defaults=False, validate=False
            ).metadata
            if name:
                _check_name(res, name, "metadata.name")
            validate_meta(typed, res.namespaced)
            meta = kubemodel.to_dict(typed)
            out = (
                admit_custom(res, obj) if res.custom is not None else admit_crd(obj, now_rfc3339())
            )
        except DecodeError as e:
            raise errors.cannot_decode(res.kind, res.version, e.field, e.message) from None
        except FieldErrors as e:
            raise errors.invalid_all(res.kind, name, e.found, res.group) from None
        except FieldError as e:
            raise errors.invalid(res.kind, name, e.field, e.message, res.group) from None
        except RecursionError:
            raise errors.bad_request("the object is nested too deeply") from None
        out["metadata"] = {
            **meta,
            **{k: v for k, v in out["metadata"].items() if k == "finalizers"},
        }
        out["apiVersion"] = out.get("apiVersion") or res.api_version
        out["kind"] = res.kind
        return out

    def _check_type(self, res: Resource, obj: Obj) -> None:
        api, kind = obj.get("apiVersion"), obj.get("kind")
        if api is not None and api != res.api_version:
            raise errors.bad_request(
                f"the API version in the data ({api}) does not match the expected API"
                f" version ({res.api_version})"
            )
        if kind is not None and kind != res.kind:
            raise errors.bad_request(
                f"the kind in the data ({kind}) does not match the expected kind ({res.kind})"
                f" of {res.name}"
            )
        meta = obj.get("metadata")
        if meta is not None and not isinstance(meta, dict):
            raise errors.cannot_decode(res.kind, res.version, "metadata", "must be an object")

    async def _check_namespace(self, res: Resource, ns: str | None, name: str) -> None:
        if not res.namespaced:
            return
        assert ns is not None
        try:
            kv = await self.store.get(NAMESPACES.key(None, ns))
        except NotFound:
            raise errors.not_found("namespaces", ns) from None
        if msgspec.json.decode(kv.value).get("metadata", {}).get("deletionTimestamp"):
            err = errors.forbidden(
                res.name,
                name,
                f"unable to create new content in namespace {ns} because it is being terminated",
                res.group,
            )
            assert err.details is not None
            err.details["causes"] = [  # what clients look for (NamespaceTerminatingCause)
                {
                    "reason": "NamespaceTerminating",
                    "message": f"namespace {ns} is being terminated",
                    "field": "metadata.namespace",
                }
            ]
            raise err

    async def create(
        self,
        res: Resource,
        ns: str | None,
        body: Obj,
        *,
        dry_run: bool = False,
        manager: str | None = None,
        managed: list[Obj] | None = None,
        owned: bool = False,
    ) -> Obj:
        """Create ``body``; ``manager`` owns its fields (an Update entry in managedFields), or
        ``managed`` are the object's managedFields as they are (an apply that creates).
        ``body`` is left as it is, unless ``owned``: the caller gives it up (a request's body
        decoded for this call alone) and it is changed in place rather than copied."""
        self._check_type(res, body)
        obj = body if owned else _copy(body)
        meta = obj.setdefault("metadata", {})
        if meta is None:
            meta = obj["metadata"] = {}
        if res.namespaced:
            if meta.get("namespace") and meta["namespace"] != ns:
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent"
                    " on the request"
                )
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        if meta.get("resourceVersion"):
            raise errors.bad_request("resourceVersion should not be set on objects to be created")
        if not meta.get("name"):
            gen = meta.get("generateName")
            if gen is not None and not isinstance(gen, str):
                raise errors.cannot_decode(
                    res.kind,
                    res.version,
                    "metadata.generateName",
                    f"must be a string, not {kind_of(gen)}",
                )
            if not gen:
                raise errors.invalid(
                    res.kind, "", "metadata.name", "name or generateName is required", res.group
                )
            meta["name"] = gen[:MAX_GENERATED_BASE] + random_name(_GENERATE_CHARS, 5)
        name = meta["name"]
        if isinstance(gen := meta.get("generateName"), str) and gen:
            # kube's ValidateObjectMeta checks generateName whole, a trailing '-' taken as a
            # letter (maskTrailingDash), before the name made of it
            masked = gen[:-1] + "a" if gen.endswith("-") else gen
            try:
                _check_name(res, masked, "metadata.generateName")
            except FieldError as e:
                message = e.message.replace(_json_text(masked), _json_text(gen), 1)
                raise errors.invalid(res.kind, name, e.field, message, res.group) from None
        meta["uid"] = _new_uid()
        meta["creationTimestamp"] = now_rfc3339()
        _check_sent_managed_fields(res, name, meta.get("managedFields"))
        if managed is None and meta.get("managedFields") != [{}]:  # ([{}]: none, as kube)
            sent = managedfields.valid_entries(meta.get("managedFields"))
        else:
            sent = None
        for f in ("deletionTimestamp", "deletionGracePeriodSeconds", "selfLink", "managedFields"):
            meta.pop(f, None)
        if _tracks_generation(res):
            meta["generation"] = 1
        else:
            meta.pop("generation", None)
        if res.custom is not None:
            if "status" in res.subresources:  # set through /status alone
                obj.pop("status", None)
            if res.custom.terminating:
                raise errors.ApiError(
                    405,
                    "MethodNotAllowed",
                    "create not allowed while custom resource definition is terminating",
                )
        elif "status" in res.subresources:
            obj["status"] = copy.deepcopy(INITIAL_STATUS.get(res.name, {}))
        if res.name == "namespaces":
            obj["spec"] = {"finalizers": ["kubernetes"]}
            obj["status"] = {"phase": "Active"}
            meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = name
        if res.name == "pods" and isinstance(obj.get("spec"), dict):
            account = _read_once(self._service_account)  # both admission steps read it
            await admit_service_account(obj, account)
            await self._sa_pull_secrets(obj, account)
            await self.priority.admit_pod(obj)
            await self.runtime_classes.admit_pod(obj)
        if res.name == "pods":
            self._default_tolerations(obj)
            if ns is not None and isinstance(obj.get("spec"), dict):
                await self.limits.admit_pod(obj, ns)
        if res.name == "jobs":
            _job_selector(obj)
        if res.name == CSRS:
            prepare_csr_create(obj, REQUEST_USER.get())
        if res.name == "persistentvolumeclaims":
            await self.volumes.admit_claim(obj)
        if res.name == "persistentvolumes":
            self.volumes.admit_volume(obj)
        if res.name == "ingresses":
            await set_default_class(obj, self._ingress_classes)
            self._check(res, name, obj, validate_ingress_create)
        if res.name == "services":
            alloc = await self.services.on_create(obj, dry_run)
            try:
                return await self._create_stored(
                    res, ns, name, obj, dry_run, manager, managed, sent
                )
            except BaseException:
                await self.services.release(alloc.taken, meta["uid"])
                raise
        return await self._create_stored(res, ns, name, obj, dry_run, manager, managed, sent)

    async def _create_stored(
        self,
        res: Resource,
        ns: str | None,
        name: str,
        obj: Obj,
        dry_run: bool,
        manager: str | None,
        managed: list[Obj] | None,
        sent: list[Obj] | None = None,
    ) -> Obj:
        stored = self._admit(res, obj)
        if self.webhooks.wants(res):
            options = {"fieldManager": manager} if manager else {}
            given = stored["metadata"]
            stored = await self._call_webhooks(
                res, "", "CREATE", ns, name, stored, None, dry_run, options
            )
            assert stored is not None
            meta = stored["metadata"]
            if res.namespaced and meta.get("namespace") != ns:  # (BeforeCreate's check)
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent"
                    " on the request"
                )
            for f in ("uid", "creationTimestamp", "generation"):  # set after admission in kube
                if f in given:
                    meta[f] = given[f]
                else:
                    meta.pop(f, None)
            name = meta["name"]  # (stored under the name a webhook gave it, as kube does)
        if res.name == CSRS:
            restrict_csr_subject(stored)
        if res.name == "pods" and (stored.get("spec") or {}).get("ephemeralContainers"):
            # ValidatePodCreate: they are added to a running pod (its ephemeralcontainers)
            raise errors.invalid(
                res.kind,
                name,
                "spec.ephemeralContainers",
                "Forbidden: cannot be set on create",
            )
        if managed is None and sent:  # valid managedFields sent with the object
            managed = sent
            if manager:
                managed = managedfields.created_over_sent(
                    sent,
                    stored,
                    _root(res),
                    "status" in res.subresources,
                    manager,
                    res.api_version,
                    now_rfc3339(),
                )
        elif managed is None and manager:
            managed = managedfields.created_entries(
                stored,
                _root(res),
                "status" in res.subresources,
                manager,
                res.api_version,
                now_rfc3339(),
            )
        if managed:
            stored["metadata"]["managedFields"] = managed
        if res.name == "pods":
            stored["status"] = {"phase": "Pending", "qosClass": _qos_class(stored)}
        elif res.name == "priorityclasses":
            await self.priority.check_class(stored)
            self.priority.forget()
        await self._check_namespace(res, ns, name)
        charge = await self.quota.admit(res, ns, stored, dry_run)
        if dry_run:
            return stored
        try:
            kv = await self.store.create(res.key(ns, name), _encode_value(stored))
        except BaseException as e:
            # not written: what the quotas were charged for it is given back
            await asyncio.shield(self.quota.release(charge))
            if isinstance(e, AlreadyExists):
                raise errors.already_exists(res.name, name, res.group) from None
            raise
        stored["metadata"]["resourceVersion"] = str(kv.mod_rev)
        if res.name in WEBHOOK_CONFIGS:  # in force before the client hears of it
            await self.webhooks.synced(res.name, kv.mod_rev)
        await self._written(res)
        return stored

    async def _written(self, res: Resource) -> None:
        if res.name == CRDS and res.group == APIEXTENSIONS and self.on_crd_write is not None:
            await self.on_crd_write()

    async def _call_webhooks(
        self,
        res: Resource,
        subresource: str,
        operation: str,
        ns: str | None,
        name: str,
        obj: Obj | None,
        old: Obj | None,
        dry_run: bool,
        options: Obj,
    ) -> Obj | None:
        """The admission webhooks on a request: mutating ones (the object they leave decoded
        and validated again), then validating ones; the object to store."""
        user = REQUEST_USER.get()
        a = Attributes(
            res,
            subresource,
            operation,
            ns or "",
            name,
            obj,
            old,
            dry_run,
            {**options, "dryRun": ["All"]} if dry_run else options,
            user.as_dict() if user is not None else APISERVER_USER,
        )
        patched = await self.webhooks.mutate(a)
        if patched is not None:
            obj = a.obj = self._admit(res, patched)
        await self.webhooks.validate(a)
        return obj

    async def admit_subresource(
        self, operation: str, sub: str, ns: str, name: str, obj: Obj, dry_run: bool = False
    ) -> None:
        """A pod's subresource that stores no object of its own: a CONNECT (``exec``,
        ``attach``, ``portforward``, the request's options the object) or a CREATE
        (``binding``, ``eviction``): the admission webhooks whose rules match it are asked."""
        if not self.webhooks.wants(PODS):
            return
        user = REQUEST_USER.get()
        a = Attributes(
            PODS,
            sub,
            operation,
            ns,
            name,
            obj,
            None,
            dry_run,
            {"dryRun": ["All"]} if dry_run else ({} if operation == "CREATE" else None),
            user.as_dict() if user is not None else APISERVER_USER,
            str(obj.get("kind") or ""),
        )
        await self.webhooks.mutate(a)
        await self.webhooks.validate(a)

    async def _ingress_classes(self) -> list[Obj]:
        return (await self.list(INGRESSCLASSES, None))[0]

    def _check(self, res: Resource, name: str, obj: Obj, check: Callable[[Any], None]) -> None:
        """``check`` the typed object (a kind's rule beyond its validation), as a 422."""
        if res.untyped:
            return
        try:
            typed = kubemodel.decode(obj, res.model, defaults=False, validate=False)
        except FieldError:
            return  # the object's decoding and validation name it
        try:
            check(typed)
        except FieldError as e:
            raise errors.invalid(res.kind, name, e.field, e.message, res.group) from None

    async def _service_account(self, ns: str, name: str) -> Obj | None:
        try:
            return await self.get(SERVICEACCOUNTS, ns, name)
        except errors.ApiError:
            return None

    def _default_tolerations(self, pod: Obj) -> None:
        """A pod that does not tolerate the not-ready and unreachable NoExecute taints gets
        tolerations of them for a while (kube's DefaultTolerationSeconds admission)."""
        spec = pod.get("spec")
        if not isinstance(spec, dict):
            return
        tolerations = spec.get("tolerations")
        if tolerations is not None and not isinstance(tolerations, list):
            return  # the model names the error
        have = [t for t in tolerations or [] if isinstance(t, dict)]
        added = []
        for key, seconds in (
            ("node.kubernetes.io/not-ready", self.not_ready_toleration_seconds),
            ("node.kubernetes.io/unreachable", self.unreachable_toleration_seconds),
        ):
            if any(
                t.get("effect") in (None, "", "NoExecute")
                and (t.get("key") == key or (not t.get("key") and t.get("operator") == "Exists"))
                for t in have
            ):
                continue
            added.append(
                {
                    "key": key,
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": seconds,
                }
            )
        if added:
            spec["tolerations"] = [*(tolerations or []), *added]

    async def _current(self, res: Resource, ns: str | None, name: str) -> tuple[KeyValue, Obj]:
        try:
            kv = await self.store.get(res.key(ns, name))
        except NotFound:
            raise errors.not_found(res.name, name, res.group) from None
        obj = decode_value(kv)
        if res.custom is not None:  # conversion None: only apiVersion changes
            obj["apiVersion"] = res.api_version
        return kv, obj

    def _prepare_update(self, res: Resource, old: Obj, new: Obj, subresource: str | None) -> Obj:
        """The object to store when ``new`` replaces ``old`` (both with metadata)."""
        self._check_type(res, new)
        new = copy.deepcopy(new)
        old_meta = old["metadata"]
        if subresource in ("status", "approval"):  # (approval: a CSR's conditions)
            result = copy.deepcopy(old)
            result["status"] = new.get("status")
            if result["status"] is None:
                result.pop("status")
            new = result
        elif subresource == "ephemeralcontainers":
            # kube's dropNonEphemeralContainerUpdates: the old pod with the new
            # spec.ephemeralContainers; any other change is dropped, not refused
            result = copy.deepcopy(old)
            spec = new.get("spec")
            ecs = spec.get("ephemeralContainers") if isinstance(spec, dict) else None
            result_spec = result.setdefault("spec", {})
            if ecs is None:
                result_spec.pop("ephemeralContainers", None)
            else:
                result_spec["ephemeralContainers"] = ecs
            new = result
        elif "status" in res.subresources and res.name != "namespaces":
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            else:
                new.pop("status", None)
        meta = new.get("metadata")
        if not isinstance(meta, dict):
            meta = new["metadata"] = {}
        if meta.get("name") not in (None, old_meta["name"]):
            raise errors.bad_request(
                f"the name of the object ({meta.get('name')}) does not match the name on the"
                f" URL ({old_meta['name']})"
            )
        if res.namespaced and meta.get("namespace") not in (None, old_meta.get("namespace")):
            raise errors.bad_request(
                "the namespace of the provided object does not match the namespace sent on"
                " the request"
            )
        # kube's BeforeUpdate: an empty uid is the old one, creationTimestamp and a set
        # deletionTimestamp are kept; a different uid, or a deletionTimestamp the object does
        # not have, is refused (ValidateObjectMetaUpdate), never silently dropped.
        uid, gone = meta.get("uid"), meta.get("deletionTimestamp")
        for f, given, how in (
            ("uid", uid if uid and uid != old_meta.get("uid") else None, "field is immutable"),
            (
                "deletionTimestamp",
                gone if gone and not old_meta.get("deletionTimestamp") else None,
                "field is immutable; may only be changed via deletion",
            ),
        ):
            if given:
                raise errors.invalid(
                    res.kind,
                    old_meta["name"],
                    f"metadata.{f}",
                    f"Invalid value: {msgspec.json.encode(given).decode()}: {how}",
                    res.group,
                )
        for f in (
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ):
            if f in old_meta:
                meta[f] = old_meta[f]
            else:
                meta.pop(f, None)
        _check_sent_managed_fields(res, old_meta["name"], meta.get("managedFields"))
        if old_meta.get("deletionTimestamp") and isinstance(meta.get("finalizers"), list):
            # ValidateNoNewFinalizers: what is being deleted takes no new finalizer
            have = old_meta.get("finalizers") or []
            extra = sorted({f for f in meta["finalizers"] if f not in have}, key=str)
            if extra:
                shown = ", ".join(_json_text(f) for f in extra)
                raise errors.invalid(
                    res.kind,
                    old_meta["name"],
                    "metadata.finalizers",
                    "Forbidden: no new finalizers can be added if the object is being deleted,"
                    f" found new finalizers []string{{{shown}}}",
                    res.group,
                )
        meta.pop("selfLink", None)
        meta.pop("managedFields", None)
        if res.name in ("rolebindings", "clusterrolebindings") and new.get("roleRef") != old.get(
            "roleRef"
        ):
            raise errors.invalid(
                res.kind,
                old_meta["name"],
                "roleRef",
                f"Invalid value: {msgspec.json.encode(new.get('roleRef')).decode()}:"
                " cannot change roleRef",
                res.group,
            )
        if res.name == CSRS:
            new = prepare_csr_update(old, new, subresource, now_rfc3339())
        if res.name == "namespaces":
            new["spec"] = copy.deepcopy(old.get("spec") or {})
            if subresource != "status":
                new["status"] = copy.deepcopy(old.get("status") or {})
        if _tracks_generation(res) and _spec_of(res, new) != _spec_of(res, old):
            meta["generation"] = int(old_meta.get("generation") or 0) + 1
        if res.name == "ingressclasses":
            try:
                validate_ingress_class_update(old, new)
            except FieldError as e:
                name = old_meta["name"]
                raise errors.invalid(res.kind, name, e.field, e.message, res.group) from None
        if res.name == "priorityclasses":
            if new.get("value") != old.get("value"):
                raise errors.invalid(
                    res.kind,
                    old_meta["name"],
                    "value",
                    "may not be changed in an update",
                    res.group,
                )
            validate_class(new)
            self.priority.forget()
        return new

    async def _write(
        self,
        res: Resource,
        ns: str | None,
        kv: KeyValue,
        old: Obj,
        new: Obj,
        dry_run: bool,
        track: Callable[[Obj], None],
        subresource: str | None = None,
    ) -> Obj:
        name = old["metadata"]["name"]
        rv = new["metadata"].pop("resourceVersion", None)
        alloc: Allocation | None = None
        if res.name == "services":
            alloc = await self.services.on_update(old, new, dry_run)
        charge: Charge = []
        try:
            stored = self._admit(res, new)
            if self.webhooks.wants(res):
                ns_ = old["metadata"].get("namespace")
                called = await self._call_webhooks(
                    res, subresource or "", "UPDATE", ns_, name, stored, old, dry_run, {}
                )
                assert called is not None
                stored = called
                _check_webhook_update(res, old, stored)
            if _tracks_generation(res) and _spec_of(res, stored) == _spec_of(res, old):
                # the spec as decoded (quantities canonical) is the old one: kube bumps the
                # generation only for a change of the decoded object
                generation = old["metadata"].get("generation")
                if generation is None:
                    stored["metadata"].pop("generation", None)
                else:
                    stored["metadata"]["generation"] = generation
            if res.name == "pods":
                try:
                    if subresource == "ephemeralcontainers":
                        validate_ephemeral_containers_update(old, stored)
                    else:
                        validate_pod_update(old.get("spec") or {}, stored.get("spec") or {})
                except FieldError as e:
                    raise errors.invalid(res.kind, name, e.field, e.message) from None
            elif res.name in _UPDATE_CHECKS:
                try:
                    if res.name == "persistentvolumeclaims":
                        validate_pvc_update(old, stored, await self.volumes.expandable(old))
                    else:
                        _UPDATE_CHECKS[res.name](old, stored)
                except FieldError as e:
                    raise errors.invalid(res.kind, name, e.field, e.message, res.group) from None
                if res.name == CSRS:  # who may approve, who may sign
                    await admit_csr_update(old, stored, subresource, self.signer_allowed)
            if res.name == "services":  # a NodePort or LoadBalancer more to count
                charge = await self.quota.admit(
                    res, old["metadata"].get("namespace"), stored, dry_run, old
                )
        except BaseException:
            if alloc is not None:
                await self.services.release(alloc.taken, old["metadata"]["uid"])
            raise
        if rv is not None:
            new["metadata"]["resourceVersion"] = rv
        track(stored)
        old_cmp = copy.deepcopy(old)
        old_cmp["metadata"].pop("resourceVersion", None)
        if stored == old_cmp or dry_run:  # nothing changed: no write, same resourceVersion
            stored["metadata"]["resourceVersion"] = str(kv.mod_rev)
            return stored
        meta = stored["metadata"]
        try:
            out = await self._store_update(res, name, kv, old, stored)
        except BaseException:
            await asyncio.shield(self.quota.release(charge))  # not written: given back
            if alloc is not None:
                await self.services.release(alloc.taken, meta["uid"])
            raise
        if alloc is not None:
            await self.services.release(alloc.dropped, meta["uid"])
        return out

    async def _store_update(
        self, res: Resource, name: str, kv: KeyValue, old: Obj, stored: Obj
    ) -> Obj:
        meta = stored["metadata"]
        if (
            meta.get("deletionTimestamp")
            and not meta.get("finalizers")
            and not (res.name == "namespaces" or (res.name == "pods" and self._pod_waits(old)))
        ):
            return await self._cas_delete(res, name, kv, stored)
        return await self._cas_update(res, name, kv, stored)

    async def _cas_update(self, res: Resource, name: str, kv: KeyValue, obj: Obj) -> Obj:
        """Store ``obj`` over ``kv`` if it is still the current version (409 when not, 404
        when gone); ``obj`` gets the new resourceVersion."""
        try:
            out = await self.store.update(kv.key, _encode_value(obj), kv.mod_rev)
        except Conflict:
            raise errors.conflict(res.name, name, res.group) from None
        except NotFound:
            raise errors.not_found(res.name, name, res.group) from None
        obj["metadata"]["resourceVersion"] = str(out.mod_rev)
        if res.name in WEBHOOK_CONFIGS:
            await self.webhooks.synced(res.name, out.mod_rev)
        await self._written(res)
        return obj

    async def _cas_delete(self, res: Resource, name: str, kv: KeyValue, obj: Obj) -> Obj:
        """Delete ``kv`` if it is still the current version (409 when not, 404 when gone);
        ``obj`` gets the deletion's resourceVersion."""
        try:
            deleted = await self.store.delete(kv.key, kv.mod_rev)
        except Conflict:
            raise errors.conflict(res.name, name, res.group) from None
        except NotFound:
            raise errors.not_found(res.name, name, res.group) from None
        obj["metadata"]["resourceVersion"] = str(deleted.revision)
        if res.name in WEBHOOK_CONFIGS:
            await self.webhooks.synced(res.name, deleted.revision)
        if res.name == "services":
            await self.services.release(self.services.keys_of(obj), obj["metadata"]["uid"])
        await self._written(res)
        return obj

    async def _update_with_retries(
        self,
        res: Resource,
        ns: str | None,
        name: str,
        want_rv: str | None,
        make: Callable[[Obj], Obj],
        subresource: str | None,
        dry_run: bool,
        manager: str | None,
        entry_subresource: str | None = None,
    ) -> Obj:
        """Read, ``make`` the new object from the current one, write it with compare-and-swap;
        on a conflict read again (PATCH_RETRIES times), unless the caller named the
        resourceVersion it expects."""
        for _ in range(PATCH_RETRIES):
            kv, old = await self._current(res, ns, name)
            if want_rv and want_rv != str(kv.mod_rev):
                raise errors.conflict(res.name, name, res.group)
            made = make(old)
            track = self._tracker(res, old, made, manager, subresource, entry_subresource)
            new = self._prepare_update(res, old, made, subresource)
            try:
                return await self._write(res, ns, kv, old, new, dry_run, track, subresource)
            except errors.ApiError as e:
                if e.reason != "Conflict" or want_rv:
                    raise
        raise errors.conflict(res.name, name, res.group)

    @staticmethod
    def _tracker(
        res: Resource,
        old: Obj,
        made: Obj,
        manager: str | None,
        subresource: str | None,
        entry_subresource: str | None,
    ) -> Callable[[Obj], None]:
        """What sets the managedFields of the object an update stores: those it was sent
        with when they differ from the live ones (``[{}]`` clears them, as in kube), with the
        fields this write changed moved to ``manager`` (its entry names
        ``entry_subresource``, e.g. "scale", else the subresource written)."""
        current = old["metadata"].get("managedFields") or []
        meta = made.get("metadata")
        sent = meta.get("managedFields") if isinstance(meta, dict) else None
        if sent == [{}]:  # cleared: the writer owns what it changed in the same request
            base: list[Obj] = []
        else:
            given = managedfields.valid_entries(sent)
            base = current if given is None or sent == current else given

        def track(stored: Obj) -> None:
            entries = base
            if manager:
                entries = managedfields.updated_entries(
                    base,
                    old,
                    stored,
                    _root(res),
                    "status" in res.subresources,
                    subresource,
                    manager,
                    res.api_version,
                    entry_subresource or subresource,
                    now_rfc3339(),
                )
            if entries:
                stored["metadata"]["managedFields"] = entries

        return track

    async def update(
        self,
        res: Resource,
        ns: str | None,
        name: str,
        body: Obj,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
        manager: str | None = None,
    ) -> Obj:
        if not isinstance(body.get("metadata"), dict | None):
            raise errors.cannot_decode(res.kind, res.version, "metadata", "must be an object")
        want_rv = (body.get("metadata") or {}).get("resourceVersion")
        return await self._update_with_retries(
            res, ns, name, want_rv, lambda old: body, subresource, dry_run, manager
        )

    async def patch(
        self,
        res: Resource,
        ns: str | None,
        name: str,
        patch_type: str,
        patch: Any,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
        manager: str | None = None,
        entry_subresource: str | None = None,
        view: View | None = None,
    ) -> Obj:
        """``view``: the patch is to the object as another resource serves it (converted to
        that form, patched, converted back)."""
        want_rv = None
        if isinstance(patch, dict) and isinstance(patch.get("metadata"), dict):
            want_rv = patch["metadata"].get("resourceVersion")

        root = _root(view.res if view else res) if patch_type == "strategic" else None

        def apply(old: Obj) -> Obj:
            if view is not None:
                old = view.to_view(old)
            try:
                if patch_type == "merge":
                    patched = merge_patch(old, patch)
                elif patch_type == "json":
                    patched = json_patch(old, patch)
                else:
                    assert root is not None
                    patched = strategic_merge_patch(old, patch, root)
            except NoMergeKey as e:
                raise errors.ApiError(500, "", str(e)) from None
            except PatchError as e:
                raise errors.ApiError(422, "Invalid", f"the patch cannot be applied: {e}") from None
            except RecursionError:
                raise errors.bad_request("the patch is nested too deeply") from None
            if not isinstance(patched, dict):
                raise errors.bad_request("the patched object is not a JSON object")
            return patched if view is None else view.to_stored(patched)

        try:
            return await self._update_with_retries(
                res, ns, name, want_rv, apply, subresource, dry_run, manager, entry_subresource
            )
        except errors.DecodeFailed as e:  # a patched object that does not decode: 422 in kube
            raise errors.invalid(res.kind, name, e.field, e.detail, res.group) from None

    async def apply(
        self,
        res: Resource,
        ns: str | None,
        name: str,
        config: Obj,
        *,
        manager: str,
        force: bool = False,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> tuple[Obj, bool]:
        """Server-side apply of ``config`` by ``manager``: (the object, whether it was
        created). Creates the object when it does not exist (not through a subresource)."""
        self._check_type(res, config)
        if not config.get("apiVersion") or not config.get("kind"):
            raise errors.bad_request(
                f"the apply configuration must set apiVersion ({res.api_version}) and kind"
                f" ({res.kind})"
            )
        config = _copy(config)
        meta = config.get("metadata")
        if not isinstance(meta, dict):
            meta = config["metadata"] = {}
        if meta.get("name") not in (None, name):
            raise errors.bad_request(
                f"the name of the object ({meta.get('name')}) does not match the name on the"
                f" URL ({name})"
            )
        if meta.get("managedFields") is not None:
            raise errors.bad_request("metadata.managedFields must be nil")
        try:  # a value of the wrong type fails before ownership is weighed (it was a 409)
            if not res.untyped:
                kubemodel.decode(config, res.model, defaults=False, validate=False)
        except DecodeError as e:
            raise errors.cannot_decode(res.kind, res.version, e.field, e.message) from None
        except FieldError:
            pass  # a required field an apply configuration need not set
        want_rv = meta.pop("resourceVersion", None)
        t = _root(res)
        status_sub = "status" in res.subresources
        for _ in range(PATCH_RETRIES):
            try:
                kv, old = await self._current(res, ns, name)
            except errors.ApiError as e:
                if e.code != 404 or subresource or want_rv:
                    raise
                obj, entries = managedfields.apply(
                    None,
                    config,
                    t,
                    [],
                    manager,
                    res.api_version,
                    None,
                    status_sub,
                    force,
                    now_rfc3339(),
                )
                obj["metadata"]["name"] = name
                try:
                    created = await self.create(res, ns, obj, dry_run=dry_run, managed=entries)
                except errors.ApiError as e:
                    if e.reason == "AlreadyExists":
                        continue
                    raise
                return created, True
            if want_rv and want_rv != str(kv.mod_rev):
                raise errors.conflict(res.name, name, res.group)
            merged, entries = managedfields.apply(
                old,
                config,
                t,
                old["metadata"].get("managedFields") or [],
                manager,
                res.api_version,
                subresource,
                status_sub,
                force,
                now_rfc3339(),
            )
            new = self._prepare_update(res, old, merged, subresource)

            def track(stored: Obj, entries: list[Obj] = entries) -> None:
                if entries:
                    stored["metadata"]["managedFields"] = entries

            try:
                return (
                    await self._write(res, ns, kv, old, new, dry_run, track, subresource),
                    False,
                )
            except errors.ApiError as e:
                if e.reason != "Conflict" or want_rv:
                    raise
        raise errors.conflict(res.name, name, res.group)

    async def bind(self, res: Resource, ns: str | None, name: str, binding: Obj) -> None:
        """pods/binding: set ``spec.nodeName`` of a pod not yet bound, with compare-and-swap,
        so that two schedulers racing never bind one pod twice (as kube-apiserver's
        assignPod); the PodScheduled condition is set with it."""
        target = binding.get("target")
        node = target.get("name") if isinstance(target, dict) else None
        if not isinstance(node, str) or not node:
            raise errors.invalid("Binding", name, "target.name", "Required value")
        if self.webhooks.wants(PODS) and ns is not None:
            sent = {"kind": "Binding", "apiVersion": "v1", **binding}
            await self.admit_subresource("CREATE", "binding", ns, name, sent)
        meta = binding.get("metadata") or {}
        annotations = meta.get("annotations") if isinstance(meta, dict) else None
        for _ in range(PATCH_RETRIES):
            try:
                kv = await self.store.get(res.key(ns, name))
            except NotFound:
                raise errors.not_found(res.name, name, res.group) from None
            # Only what a bind reads or writes is decoded (the status, the top level of the
            # spec and metadata, the annotations); the rest, containers, volumes and
            # managedFields, stays the JSON it was stored as (``msgspec.Raw``) and is
            # written back byte for byte.
            old = _top_level.decode(kv.value)
            pod_meta = _shallow_or_none.decode(old.get("metadata") or b"null") or {}
            spec = _shallow_or_none.decode(old.get("spec") or b"null") or {}
            old["status"] = msgspec.json.decode(old.get("status") or b"null")
            deleting = pod_meta.get("deletionTimestamp")
            if deleting is not None and msgspec.json.decode(deleting):
                raise errors.conflict(
                    "pods/binding",
                    name,
                    why=f"pod {name} is being deleted, cannot be assigned to a host",
                )
            bound = msgspec.json.decode(spec["nodeName"]) if "nodeName" in spec else None
            if bound:
                raise errors.conflict(
                    "pods/binding", name, why=f'pod {name} is already assigned to node "{bound}"'
                )
            # ``old`` was just decoded from the store: only the parts written are copied, and
            # the stored pod is not validated again (kube-apiserver's assignPod neither).
            new = dict(old)
            new["spec"] = dict(spec)
            new["spec"]["nodeName"] = node
            new["metadata"] = dict(pod_meta)
            if isinstance(annotations, dict) and annotations:
                have = pod_meta.get("annotations")
                merged = dict(msgspec.json.decode(have) or {}) if have is not None else {}
                merged.update({str(k): str(v) for k, v in annotations.items()})
                new["metadata"]["annotations"] = merged
            status = new["status"] = dict(old.get("status") or {})
            conds = [c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"]
            conds.append(
                {
                    "type": "PodScheduled",
                    "status": "True",
                    "lastProbeTime": None,
                    "lastTransitionTime": now_rfc3339(),
                }
            )
            status["conditions"] = conds
            new["metadata"].pop("resourceVersion", None)
            stored = new
            try:
                await self._cas_update(res, name, kv, stored)
                return
            except errors.ApiError as e:
                if e.reason != "Conflict":
                    raise
        raise errors.conflict(res.name, name, res.group)

    # ------------------------------------------------------------------ deleting

    @staticmethod
    def _pod_waits(pod: Obj) -> bool:
        """A pod bound to a node waits for its kubelet to confirm it stopped (graceful)."""
        phase = (pod.get("status") or {}).get("phase")
        return bool((pod.get("spec") or {}).get("nodeName")) and phase not in (
            "Succeeded",
            "Failed",
        )

    async def delete(
        self, res: Resource, ns: str | None, name: str, options: Obj, *, dry_run: bool = False
    ) -> Obj:
        """Delete (or mark deleted), read again on a write that raced with another (a status
        update) as kube-apiserver does; a failed precondition is the caller's 409."""
        for attempt in range(PATCH_RETRIES):
            try:
                return await self._delete_once(res, ns, name, options, dry_run)
            except errors.ApiError as e:
                if e.code != 409 or "Precondition failed" in str(e) or attempt == PATCH_RETRIES - 1:
                    raise
        raise AssertionError("unreachable")

    async def _delete_once(
        self, res: Resource, ns: str | None, name: str, options: Obj, dry_run: bool
    ) -> Obj:
        kv, obj = await self._current(res, ns, name)
        pre = options.get("preconditions") or {}
        if pre.get("uid") and pre["uid"] != obj["metadata"].get("uid"):
            raise errors.conflict(
                res.name,
                name,
                res.group,
                f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta:"
                f" {obj['metadata'].get('uid')}",
            )
        if pre.get("resourceVersion") and pre["resourceVersion"] != str(kv.mod_rev):
            raise errors.conflict(
                res.name,
                name,
                res.group,
                f"Precondition failed: ResourceVersion in precondition:"
                f" {pre['resourceVersion']}, ResourceVersion in object meta: {kv.mod_rev}",
            )
        if self.webhooks.wants(res):
            await self._call_webhooks(res, "", "DELETE", ns, name, None, obj, dry_run, options)
        meta = obj["metadata"]
        if res.name == "namespaces":
            if name in UNDELETABLE_NAMESPACES:
                raise errors.forbidden(res.name, name, "this namespace may not be deleted")
            if dry_run:
                return obj
            return await self._terminate_namespace(kv, obj)
        finalizers = self._gc_finalizers(meta, options)
        if finalizers != (meta.get("finalizers") or []):
            if finalizers:
                meta["finalizers"] = finalizers
            else:
                meta.pop("finalizers")
            if meta.get("deletionTimestamp"):  # already going: only the policy changes
                return obj if dry_run else await self._cas_update(res, name, kv, obj)
        grace = options.get("gracePeriodSeconds")
        if res.name == "pods" and grace is None:
            grace = (obj.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
        graceful = res.name == "pods" and grace and self._pod_waits(obj)
        if meta.get("finalizers") or graceful:
            if meta.get("deletionTimestamp"):
                return obj  # already being deleted
            meta["deletionTimestamp"] = now_rfc3339(grace if graceful else 0)
            meta["deletionGracePeriodSeconds"] = int(grace or 0)
            if dry_run:
                return obj
            return await self._cas_update(res, name, kv, obj)
        if dry_run:
            return obj
        return await self._cas_delete(res, name, kv, obj)

    @staticmethod
    def _gc_finalizers(meta: Obj, options: Obj) -> list[str]:
        """The finalizers after a delete with ``options``: propagationPolicy Foreground adds
        foregroundDeletion, Orphan (or orphanDependents) adds orphan, Background takes both
        away; the garbage collector acts on them (kube-apiserver's
        deletionFinalizersForGarbageCollection)."""
        policy = options.get("propagationPolicy")
        if policy is None and options.get("orphanDependents") is not None:
            policy = "Orphan" if options.get("orphanDependents") else "Background"
        if policy not in (None, "Foreground", "Background", "Orphan"):
            raise errors.bad_request(
                f"propagationPolicy: Unsupported value: {policy!r}: supported values:"
                ' "Foreground", "Background", "Orphan"'
            )
        fins = list(meta.get("finalizers") or [])
        if policy is None:
            return fins
        fins = [f for f in fins if f not in (GC_FOREGROUND, GC_ORPHAN)]
        if policy == "Foreground":
            fins.append(GC_FOREGROUND)
        elif policy == "Orphan":
            fins.append(GC_ORPHAN)
        return fins

    # ------------------------------------------------------------------ namespaces

    async def ensure_namespaces(self) -> None:
        """The namespaces every cluster has (and the built-in priority classes); resume the
        deletion of terminating ones."""
        for ns in INITIAL_NAMESPACES:
            with contextlib.suppress(errors.ApiError):
                await self.create(NAMESPACES, None, {"metadata": {"name": ns}})
        for cls in builtin_classes():
            with contextlib.suppress(errors.ApiError):
                await self.create(PRIORITYCLASSES, None, cls)
        for sc in builtin_storage_classes() if self.builtin_storage_class else []:
            with contextlib.suppress(errors.ApiError):
                await self.create(STORAGECLASSES, None, sc)
        items, _, _ = await self.list(NAMESPACES, None)
        for obj in items:
            if obj["metadata"].get("deletionTimestamp"):
                self._start_namespace_cleanup(obj["metadata"]["name"])

    async def _terminate_namespace(self, kv: KeyValue, obj: Obj) -> Obj:
        name = obj["metadata"]["name"]
        if not obj["metadata"].get("deletionTimestamp"):
            obj["metadata"]["deletionTimestamp"] = now_rfc3339()
            obj["metadata"]["deletionGracePeriodSeconds"] = 0
            obj["status"] = {"phase": "Terminating"}
            await self._cas_update(NAMESPACES, name, kv, obj)
        self._start_namespace_cleanup(name)
        return obj

    def _start_namespace_cleanup(self, name: str) -> None:
        task = self._ns_tasks.get(name)
        if task is None or task.done():
            self._ns_tasks[name] = asyncio.get_running_loop().create_task(
                self._cleanup_namespace(name)
            )

    async def _cleanup_namespace(self, name: str) -> None:
        """Delete everything in a terminating namespace, then the namespace (the namespace
        controller's work, done here until the controllers exist)."""
        delay = 0.05
        while True:
            left = 0
            for res in (*RESOURCES, *_custom_once()):
                if not res.namespaced or res.stored_group is not None:
                    continue  # (a resource stored as another goes with that one)
                items, _, _ = await self.list(res, name)
                for obj in items:
                    left += 1
                    with contextlib.suppress(errors.ApiError):
                        await self.delete(
                            res,
                            name,
                            obj["metadata"]["name"],
                            {"gracePeriodSeconds": 0, "propagationPolicy": "Background"},
                        )
            if left == 0:
                break
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
        with contextlib.suppress(NotFound):
            await self.store.delete(NAMESPACES.key(None, name))
        log.info("namespace %s: deleted", name)

    async def close(self) -> None:
        for task in self._ns_tasks.values():
            task.cancel()
        for task in self._ns_tasks.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.webhooks.close()


def _check_webhook_update(res: Resource, old: Obj, new: Obj) -> None:
    """What mutating webhooks made of an update, as kube's BeforeUpdate takes it after them:
    name, namespace and uid are immutable (422), the creation time kept, the generation one
    more than the old one's when the spec they leave differs."""
    old_meta, meta = old["metadata"], new["metadata"]
    for f in ("name", "namespace", "uid"):
        if meta.get(f) != old_meta.get(f):
            raise errors.invalid(
                res.kind,
                old_meta["name"],
                f"metadata.{f}",
                f"Invalid value: {_json_text(meta.get(f))}: field is immutable",
                res.group,
            )
    if "creationTimestamp" in old_meta:
        meta["creationTimestamp"] = old_meta["creationTimestamp"]
    if _tracks_generation(res) and _spec_of(res, new) != _spec_of(res, old):
        meta["generation"] = int(old_meta.get("generation") or 0) + 1


def _custom_once() -> list[Resource]:
    """One served custom resource per stored kind (its versions share the keys)."""
    seen: dict[str, Resource] = {}
    for r in custom_resources():
        seen.setdefault(r.custom.prefix, r)
    return list(seen.values())


def _root(res: Resource) -> managedfields.Type:
    if res.custom is not None:
        return managedfields.custom_root(res.custom.schema)
    return managedfields.root_type(res.group, res.version, res.kind)


def _read_once(
    lookup: Callable[[str, str], Awaitable[Obj | None]],
) -> Callable[[str, str], Awaitable[Obj | None]]:
    """``lookup`` with its answers kept: one read per (namespace, name)."""
    seen: dict[tuple[str, str], Obj | None] = {}

    async def read(ns: str, name: str) -> Obj | None:
        if (ns, name) not in seen:
            seen[(ns, name)] = await lookup(ns, name)
        return seen[(ns, name)]

    return read
