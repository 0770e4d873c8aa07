"""Pod: Kubernetes' defaulting and validation, as kube-apiserver applies them on create.

Defaults (``set_defaults_pod``) follow pkg/apis/core/v1/defaults.go plus the Priority
admission plugin's ``priority: 0`` and ``preemptionPolicy``; validation (``validate_pod``)
follows pkg/apis/core/validation for the fields it checks, in the API server's words. What a
node supports is not checked here (runtime.pod.manifest does that).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from kubemodel._generated import (
    Affinity,
    Container,
    ContainerPort,
    DownwardAPIVolumeFile,
    EphemeralContainer,
    KeyToPath,
    LabelSelector,
    LabelSelectorRequirement,
    NodeSelectorRequirement,
    NodeSelectorTerm,
    ObjectFieldSelector,
    ObjectMeta,
    OwnerReference,
    Pod,
    PodAffinityTerm,
    PodSecurityContext,
    PodSpec,
    Probe,
    ProjectedVolumeSource,
    ResourceRequirements,
    SecurityContext,
    Toleration,
    Volume,
)
from kubemodel.codec import DEFAULTERS, INT_RANGES, VALIDATORS
from kubemodel.defaults import DEFAULT_GRACE_PERIOD, DEFAULT_MODE, default_pull_policy
from kubemodel.errors import FieldError, at, q
from kubemodel.errors import key as map_key
from kubemodel.names import (
    check_config_key,
    check_dns_label,
    check_dns_subdomain,
    check_env_name,
    check_http_header_name,
    check_label_value,
    check_path_segment,
    check_port_name,
    qualified_name_problem,
)
from kubemodel.quantity import Amount

__all__ = [
    "default_pull_policy",
    "set_defaults_pod",
    "validate_ephemeral_containers_update",
    "validate_pod",
    "validate_pod_update",
]

MAX_ID = 2**31 - 1
MAX_ANNOTATIONS_BYTES = 256 * 1024

RESTART_POLICIES = ("Always", "OnFailure", "Never")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
PROTOCOLS = ("TCP", "UDP", "SCTP")
SCHEMES = ("HTTP", "HTTPS")
STORAGE_MEDIA = ("", "Memory", "HugePages")
MOUNT_PROPAGATIONS = ("Bidirectional", "HostToContainer", "None")
TERMINATION_MESSAGE_POLICIES = ("File", "FallbackToLogsOnError")
DNS_POLICIES = ("ClusterFirstWithHostNet", "ClusterFirst", "Default", "None")
HOST_PATH_TYPES = (
    "",
    "DirectoryOrCreate",
    "Directory",
    "FileOrCreate",
    "File",
    "Socket",
    "CharDevice",
    "BlockDevice",
)

# ============================================================================= defaults


def _default_probe(p: Probe | None) -> None:
    if p is None:
        return
    p.timeout_seconds = p.timeout_seconds or 1
    p.period_seconds = p.period_seconds or 10
    p.success_threshold = p.success_threshold or 1
    p.failure_threshold = p.failure_threshold or 3
    if p.http_get is not None:
        p.http_get.path = p.http_get.path or "/"
        p.http_get.scheme = p.http_get.scheme or "HTTP"


def _default_container(c: Container | EphemeralContainer, host_network: bool) -> None:
    if c.image_pull_policy is None and c.image:
        c.image_pull_policy = default_pull_policy(c.image)
    c.termination_message_path = c.termination_message_path or "/dev/termination-log"
    c.termination_message_policy = c.termination_message_policy or "File"
    if c.resources is None:
        c.resources = ResourceRequirements()
    limits = c.resources.limits
    if limits:
        # A request not given defaults to its limit.
        requests = c.resources.requests if c.resources.requests is not None else {}
        for key, value in limits.items():
            requests.setdefault(key, value)
        c.resources.requests = requests
    for port in c.ports or ():
        port.protocol = port.protocol or "TCP"
        if host_network and not port.host_port:
            port.host_port = port.container_port
    for env in c.env or ():
        ref = env.value_from.field_ref if env.value_from is not None else None
        if ref is not None and not ref.api_version:
            ref.api_version = "v1"
    _default_probe(c.liveness_probe)
    _default_probe(c.readiness_probe)
    _default_probe(c.startup_probe)


def _default_volume(v: Volume) -> None:
    if v.host_path is not None and v.host_path.type is None:
        v.host_path.type = ""
    for source in (v.config_map, v.secret, v.projected, v.downward_api):
        if source is not None and source.default_mode is None:
            source.default_mode = DEFAULT_MODE


def set_defaults_pod(pod: Pod) -> None:
    """Fill in what kube-apiserver fills in when a Pod is created (in place)."""
    if pod.metadata is None:
        pod.metadata = ObjectMeta()
    spec = pod.spec
    if spec is None:
        return
    spec.restart_policy = spec.restart_policy or "Always"
    spec.dns_policy = spec.dns_policy or "ClusterFirst"
    if spec.termination_grace_period_seconds is None:
        spec.termination_grace_period_seconds = DEFAULT_GRACE_PERIOD
    spec.scheduler_name = spec.scheduler_name or "default-scheduler"
    if spec.security_context is None:
        spec.security_context = PodSecurityContext()
    if spec.enable_service_links is None:
        spec.enable_service_links = True
    if spec.priority is None:
        spec.priority = 0
    spec.preemption_policy = spec.preemption_policy or "PreemptLowerPriority"
    for c in (*(spec.init_containers or ()), *spec.containers):
        _default_container(c, spec.host_network)
    for ec in spec.ephemeral_containers or ():
        _default_container(ec, spec.host_network)
    for v in spec.volumes or ():
        _default_volume(v)


# ============================================================================= validation

_NONNEG = "a non-negative integer"
_PORT = "an integer between 1 and 65535"
_HOST_PORT = "an integer between 0 and 65535"
_ID = f"an integer between 0 and {MAX_ID}"
_MODE = "a number between 0 and 0777 (octal), both inclusive"
INT_RANGES.update(
    {
        (PodSpec, "terminationGracePeriodSeconds"): _NONNEG,
        (PodSpec, "activeDeadlineSeconds"): "a positive integer",
        (ContainerPort, "containerPort"): _PORT,
        (ContainerPort, "hostPort"): _HOST_PORT,
        (SecurityContext, "runAsUser"): _ID,
        (SecurityContext, "runAsGroup"): _ID,
        (PodSecurityContext, "runAsUser"): _ID,
        (PodSecurityContext, "runAsGroup"): _ID,
        (KeyToPath, "mode"): _MODE,
        **{(Probe, k): _NONNEG for k in ("initialDelaySeconds", "periodSeconds")},
        **{(Probe, k): _NONNEG for k in ("timeoutSeconds", "successThreshold")},
        **{(Probe, k): _NONNEG for k in ("failureThreshold",)},
    }
)


def _range(value: int | None, lo: int, hi: int, text: str, where: str) -> None:
    if value is not None and not lo <= value <= hi:
        raise invalid(where, value, f"must be {text}")


def _choice(value: str | None, allowed: Iterable[str], where: str) -> None:
    allowed = tuple(allowed)
    if value is not None and value not in allowed:
        raise not_supported(where, value, (a for a in allowed if a))


def _required(value: str | None, where: str) -> str:
    if not value:
        raise FieldError(where, "is required")
    return value


def invalid(where: str, value: object, detail: str) -> FieldError:
    """kube-apiserver's ``field.Invalid``: ``<where>: Invalid value: "<value>": <detail>``."""
    shown = q(value) if isinstance(value, str) else str(value)
    return FieldError(where, f"Invalid value: {shown}: {detail}")


def not_supported(where: str, value: str, allowed: Iterable[str]) -> FieldError:
    """kube-apiserver's ``field.NotSupported``."""
    shown = ", ".join(q(a) for a in allowed)
    return FieldError(where, f"Unsupported value: {q(value)}: supported values: {shown}")


def check_relative_path(value: str, where: str, reserved: bool = False) -> None:
    """A path inside a volume (kube's validateLocalDescendingPath): relative, no ``..``
    component; ``reserved``: nor starting with ``..`` (validateLocalNonReservedPath: the
    atomic writer's ``..data`` and version directories are the volume's own)."""
    if value.startswith("/"):
        raise invalid(where, value, "must be a relative path")
    if ".." in value.split("/"):
        raise invalid(where, value, "must not contain '..'")
    if reserved and value.startswith(".."):
        raise invalid(where, value, "must not start with '..'")
    if "\0" in value:
        raise invalid(where, value, "must not contain a NUL byte")


def validate_meta(
    meta: ObjectMeta | None, namespaced: bool = True, path_segment_name: bool = False
) -> None:
    """``path_segment_name``: the name need only be a URL path segment (RBAC kinds), not an
    RFC 1123 subdomain."""
    if meta is None:
        raise FieldError("metadata", "is required")
    name = _required(meta.name, "metadata.name")
    if path_segment_name:
        check_path_segment(name, "metadata.name")
    else:
        check_dns_subdomain(name, "metadata.name")
    if namespaced and meta.namespace:
        check_dns_label(meta.namespace, "metadata.namespace")
    for key, value in (meta.labels or {}).items():
        problem = qualified_name_problem(key)
        if problem:
            raise invalid("metadata.labels", key, problem)
        check_label_value(value, "metadata.labels")  # (kube's ValidateLabels: the map's path)
    size = 0
    for key, value in (meta.annotations or {}).items():
        problem = qualified_name_problem(key.lower())
        if problem:
            raise invalid("metadata.annotations", key, problem)
        size += len(key.encode()) + len(value.encode())  # bytes, not characters
    if size > MAX_ANNOTATIONS_BYTES:
        raise FieldError(
            "metadata.annotations", f"Too long: may not be more than {MAX_ANNOTATIONS_BYTES} bytes"
        )
    _validate_finalizers(meta.finalizers or [])
    _validate_owner_references(meta.owner_references or [])


def _validate_finalizers(finalizers: list[str]) -> None:
    """apimachinery's ValidateFinalizers: each a qualified name; orphan and foregroundDeletion
    not both."""
    for name in finalizers:
        if problem := qualified_name_problem(name):
            raise invalid("metadata.finalizers", name, problem)
    if "orphan" in finalizers and "foregroundDeletion" in finalizers:
        shown = ", ".join(q(f) for f in finalizers)
        raise FieldError(
            "metadata.finalizers",
            f"Invalid value: []string{{{shown}}}: finalizer orphan and foregroundDeletion cannot"
            " be both set",
        )


def _validate_owner_references(refs: list[OwnerReference]) -> None:
    """apimachinery's ValidateOwnerReferences (its paths are not indexed): a version, kind,
    name and uid each; an Event owns nothing; one controller at most."""
    where = "metadata.ownerReferences"
    controller = ""
    for ref in refs:
        group, slash, version = ref.api_version.partition("/")
        if not slash:
            group, version = "", group
        if "/" in version:  # schema.ParseGroupVersion refuses it: no version
            version = ""
        for field, value, what in (
            ("apiVersion", version, "version"),
            ("kind", ref.kind, "kind"),
            ("name", ref.name, "name"),
            ("uid", ref.uid, "uid"),
        ):
            if not value:
                shown = ref.api_version if field == "apiVersion" else value
                raise invalid(at(where, field), shown, f"{what} must not be empty")
        if (group, version, ref.kind) == ("", "v1", "Event"):
            raise invalid(where, ref.name, "/v1, Kind=Event is disallowed from being an owner")
        if ref.controller:
            this = f"{ref.kind}/{ref.name}"
            if controller:
                raise invalid(
                    where,
                    this,
                    'Only one reference can have Controller set to true. Found "true" in'
                    f" references for {controller} and {this}",
                )
            controller = this


def validate_pod(pod: Pod) -> None:
    """Raise a FieldError for the first field of ``pod`` Kubernetes would refuse."""
    validate_meta(pod.metadata)
    if pod.spec is None:
        raise FieldError("spec", "is required")
    _validate_spec(pod.spec, "spec")


def _validate_spec(spec: PodSpec, path: str) -> None:
    _choice(spec.restart_policy, RESTART_POLICIES, at(path, "restartPolicy"))
    _range(
        spec.termination_grace_period_seconds,
        0,
        2**63 - 1,
        _NONNEG,
        at(path, "terminationGracePeriodSeconds"),
    )
    deadline = spec.active_deadline_seconds
    if deadline is not None and not 1 <= deadline <= MAX_ID:
        raise invalid(
            at(path, "activeDeadlineSeconds"),
            deadline,
            f"must be between 1 and {MAX_ID}, inclusive",
        )
    if spec.dns_policy is not None and spec.dns_policy not in DNS_POLICIES:
        raise not_supported(at(path, "dnsPolicy"), spec.dns_policy, DNS_POLICIES)
    for key, value in (
        ("nodeName", spec.node_name),
        ("serviceAccountName", spec.service_account_name),
        ("priorityClassName", spec.priority_class_name),
    ):
        if value:  # names the node, kubelets and admission look up by (never a path)
            check_dns_subdomain(value, at(path, key))
    if spec.hostname:
        check_dns_label(spec.hostname, at(path, "hostname"))
    if spec.subdomain:
        check_dns_label(spec.subdomain, at(path, "subdomain"))
    if spec.share_process_namespace and spec.host_pid:
        raise FieldError(
            at(path, "shareProcessNamespace"),
            "Invalid value: true: ShareProcessNamespace and HostPID cannot both be enabled",
        )
    psc = spec.security_context
    if psc is not None:
        where = at(path, "securityContext")
        _range(psc.run_as_user, 0, MAX_ID, _ID, at(where, "runAsUser"))
        _range(psc.run_as_group, 0, MAX_ID, _ID, at(where, "runAsGroup"))
    volume_names = _validate_volumes(spec.volumes or [], at(path, "volumes"))
    names: set[str] = set()
    host_ports: set[tuple[int, str]] = set()
    for key, init in (("initContainers", True), ("containers", False)):
        for i, c in enumerate(getattr(spec, "init_containers" if init else "containers") or ()):
            where = at(at(path, key), i)
            _validate_container(c, where, init, volume_names, spec.host_network)
            if c.name in names:
                raise FieldError(at(where, "name"), f"Duplicate value: {q(c.name)}")
            names.add(c.name)
            for j, port in enumerate(c.ports or ()):
                if init or not port.host_port:
                    continue
                entry = (port.host_port, port.protocol or "TCP")
                if entry in host_ports:
                    raise FieldError(
                        at(at(where, "ports"), j) + ".hostPort",
                        f'Duplicate value: "{entry[0]}/{entry[1]}"',
                    )
                host_ports.add(entry)
    if not spec.containers:
        raise FieldError(at(path, "containers"), "is required: a pod needs at least one container")
    _validate_ephemeral(spec, at(path, "ephemeralContainers"), names, volume_names)
    for i, tol in enumerate(spec.tolerations or ()):
        _validate_toleration(tol, at(at(path, "tolerations"), i))
    if spec.affinity is not None:
        _validate_affinity(spec.affinity, at(path, "affinity"))


# EphemeralContainerCommon's fields an ephemeral container may not have, in the struct's order
# (validateFieldAllowList over allowedEphemeralContainerFields, kube 1.32)
EPHEMERAL_FORBIDDEN = (
    "ports",
    "resources",
    "resizePolicy",
    "restartPolicy",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
    "lifecycle",
)
_EPHEMERAL_FORBIDDEN = "Forbidden: cannot be set for an Ephemeral Container"


def _is_set(value: object) -> bool:
    """Not Go's zero value (resources {} is: no limits, requests or claims)."""
    if isinstance(value, ResourceRequirements):
        return bool(value.limits or value.requests or value.claims)
    return value not in (None, [], "", False)


def _validate_ephemeral(
    spec: PodSpec, path: str, other_names: set[str], volume_names: set[str]
) -> None:
    """kube's validateEphemeralContainers: each is a container's fields (validated as one)
    without the fields that serve the pod's workload (ports, probes, lifecycle, resources,
    resizePolicy, restartPolicy) or subPaths; its name unique among all the pod's containers;
    its targetContainerName a regular (init or app) container."""
    names: set[str] = set(other_names)
    for i, ec in enumerate(spec.ephemeral_containers or ()):
        where = at(path, i)
        common = {f: getattr(ec, f) for f in Container.__struct_fields__}
        for key in EPHEMERAL_FORBIDDEN:
            attr = _EPHEMERAL_ATTRS[key]
            if _is_set(getattr(ec, attr)):
                raise FieldError(at(where, key), _EPHEMERAL_FORBIDDEN)
        for j, m in enumerate(ec.volume_mounts or ()):
            for key, value in (("subPath", m.sub_path), ("subPathExpr", m.sub_path_expr)):
                if value:
                    raise FieldError(
                        at(at(at(where, "volumeMounts"), j), key), _EPHEMERAL_FORBIDDEN
                    )
        _validate_container(Container(**common), where, False, volume_names, spec.host_network)
        if ec.name in names:
            raise FieldError(at(where, "name"), f"Duplicate value: {q(ec.name)}")
        names.add(ec.name)
        target = ec.target_container_name
        if target and target not in other_names:
            raise FieldError(at(where, "targetContainerName"), f"Not found: {q(target)}")


_EPHEMERAL_ATTRS = {
    "ports": "ports",
    "resources": "resources",
    "resizePolicy": "resize_policy",
    "restartPolicy": "restart_policy",
    "livenessProbe": "liveness_probe",
    "readinessProbe": "readiness_probe",
    "startupProbe": "startup_probe",
    "lifecycle": "lifecycle",
}


TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
NODE_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt")
LABEL_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


def _check_label_key(key: str, where: str) -> None:
    if problem := qualified_name_problem(key):
        raise invalid(where, key, problem)


def _validate_toleration(t: Toleration, where: str) -> None:
    """ValidateTolerations: what the scheduler and the taint manager compare with."""
    op = t.operator or ""
    if t.key:
        _check_label_key(t.key, at(where, "key"))
    elif op != "Exists":
        raise invalid(at(where, "operator"), op, "operator must be Exists when `key` is empty,"
                      ' which means "match all values and all keys"')  # fmt: skip
    if t.toleration_seconds is not None and t.effect != "NoExecute":
        raise invalid(at(where, "effect"), t.effect or "", "effect must be 'NoExecute' when"
                      " `tolerationSeconds` is set")  # fmt: skip
    if op in ("", "Equal"):
        if t.value:
            check_label_value(t.value, at(where, "operator"))
    elif op == "Exists":
        if t.value:
            raise invalid(at(where, "operator"), t.value, "value must be empty when `operator`"
                          " is 'Exists'")  # fmt: skip
    else:
        raise not_supported(at(where, "operator"), op, ("Equal", "Exists"))
    if t.effect:
        _choice(t.effect, TAINT_EFFECTS, at(where, "effect"))


def _validate_requirement(
    r: NodeSelectorRequirement | LabelSelectorRequirement, where: str, ops: tuple[str, ...]
) -> None:
    """ValidateNodeSelectorRequirement / ValidateLabelSelectorRequirement."""
    values = r.values or []
    if r.operator in ("In", "NotIn"):
        if not values:
            raise FieldError(at(where, "values"), "Required value: must be specified when"
                             " `operator` is 'In' or 'NotIn'")  # fmt: skip
    elif r.operator in ("Exists", "DoesNotExist"):
        if values:
            raise FieldError(at(where, "values"), "Forbidden: may not be specified when"
                             " `operator` is 'Exists' or 'DoesNotExist'")  # fmt: skip
    elif r.operator in ("Gt", "Lt") and r.operator in ops:
        if len(values) != 1:
            raise FieldError(at(where, "values"), "Required value: must be specified single"
                             " value when `operator` is 'Lt' or 'Gt'")  # fmt: skip
    else:
        raise invalid(at(where, "operator"), r.operator, "not a valid selector operator")
    _check_label_key(r.key, at(where, "key"))


def _validate_term(term: NodeSelectorTerm, where: str) -> None:
    for i, r in enumerate(term.match_expressions or ()):
        _validate_requirement(r, at(at(where, "matchExpressions"), i), NODE_OPERATORS)
    for i, r in enumerate(term.match_fields or ()):
        w = at(at(where, "matchFields"), i)
        if r.key != "metadata.name":
            raise invalid(at(w, "key"), r.key, "not a valid field selector key")
        if r.operator not in ("In", "NotIn"):
            raise invalid(at(w, "operator"), r.operator, "not a valid selector operator")
        if len(r.values or ()) != 1:
            raise FieldError(at(w, "values"), "Required value: must be only one value when"
                             " `operator` is 'In' or 'NotIn' for node field selector")  # fmt: skip


def _weight(weight: int, where: str) -> None:
    if not 1 <= weight <= 100:
        raise invalid(at(where, "weight"), weight, "must be in the range 1-100")


def _validate_pod_term(term: PodAffinityTerm, where: str) -> None:
    if not term.topology_key:
        raise FieldError(at(where, "topologyKey"), "Required value: can not be empty")
    _check_label_key(term.topology_key, at(where, "topologyKey"))
    for key in ("label_selector", "namespace_selector"):
        sel: LabelSelector | None = getattr(term, key)
        name = "labelSelector" if key == "label_selector" else "namespaceSelector"
        for i, r in enumerate((sel.match_expressions if sel else None) or ()):
            _validate_requirement(r, at(at(at(where, name), "matchExpressions"), i),
                                  LABEL_OPERATORS)  # fmt: skip


def _validate_affinity(a: Affinity, where: str) -> None:
    """ValidateAffinity: the node and pod (anti-)affinity terms the scheduler evaluates."""
    na = a.node_affinity
    if na is not None:
        w = at(where, "nodeAffinity")
        req = na.required_during_scheduling_ignored_during_execution
        if req is not None:
            rw = at(at(w, "requiredDuringSchedulingIgnoredDuringExecution"), "nodeSelectorTerms")
            if not req.node_selector_terms:
                raise FieldError(rw, "Required value: must have at least one node selector term")
            for i, term in enumerate(req.node_selector_terms):
                _validate_term(term, at(rw, i))
        for i, pref in enumerate(na.preferred_during_scheduling_ignored_during_execution or ()):
            pw = at(at(w, "preferredDuringSchedulingIgnoredDuringExecution"), i)
            _weight(pref.weight, pw)
            _validate_term(pref.preference, at(pw, "preference"))
    for name, pa in (("podAffinity", a.pod_affinity), ("podAntiAffinity", a.pod_anti_affinity)):
        if pa is None:
            continue
        w = at(where, name)
        for i, term in enumerate(pa.required_during_scheduling_ignored_during_execution or ()):
            _validate_pod_term(term, at(at(w, "requiredDuringSchedulingIgnoredDuringExecution"), i))
        for i, wt in enumerate(pa.preferred_during_scheduling_ignored_during_execution or ()):
            pw = at(at(w, "preferredDuringSchedulingIgnoredDuringExecution"), i)
            _weight(wt.weight, pw)
            _validate_pod_term(wt.pod_affinity_term, at(pw, "podAffinityTerm"))


def _validate_container(
    c: Container, path: str, init: bool, volume_names: set[str], host_network: bool
) -> None:
    if init:
        for key, probe in (
            ("livenessProbe", c.liveness_probe),
            ("readinessProbe", c.readiness_probe),
            ("startupProbe", c.startup_probe),
        ):
            if probe is not None:
                raise FieldError(at(path, key), "may not be set for init containers")
    check_dns_label(_required(c.name, at(path, "name")), at(path, "name"))
    image = _required(c.image, at(path, "image"))
    if image != image.strip():
        raise FieldError(at(path, "image"), "must not have leading or trailing whitespace")
    _choice(c.image_pull_policy, PULL_POLICIES, at(path, "imagePullPolicy"))
    policy = c.termination_message_policy
    if policy is not None and policy not in TERMINATION_MESSAGE_POLICIES:
        raise not_supported(
            at(path, "terminationMessagePolicy"), policy, TERMINATION_MESSAGE_POLICIES
        )
    for i, env in enumerate(c.env or ()):
        where = at(at(path, "env"), i)
        check_env_name(_required(env.name, at(where, "name")), at(where, "name"))
        src = env.value_from
        if src is None:
            continue
        if env.value:
            raise FieldError(
                at(where, "valueFrom"), "may not be specified when `value` is not empty"
            )
        given = [
            k
            for k, v in (
                ("fieldRef", src.field_ref),
                ("resourceFieldRef", src.resource_field_ref),
                ("configMapKeyRef", src.config_map_key_ref),
                ("secretKeyRef", src.secret_key_ref),
            )
            if v is not None
        ]
        if not given:
            raise FieldError(
                at(where, "valueFrom"),
                "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or"
                " `secretKeyRef`",
            )
        if len(given) > 1:
            raise FieldError(
                at(at(where, "valueFrom"), given[1]),
                "may not have more than one field specified at a time",
            )
        ref = src.field_ref
        if ref is not None:
            ref_path = at(at(where, "valueFrom"), "fieldRef")
            if ref.api_version not in (None, "", "v1"):
                raise not_supported(at(ref_path, "apiVersion"), ref.api_version, ("v1",))
            _required(ref.field_path, at(ref_path, "fieldPath"))
            _check_field_path(ref, ref_path, _DOWNWARD_ENV_FIELDS)
        selectors = (
            ("configMapKeyRef", src.config_map_key_ref),
            ("secretKeyRef", src.secret_key_ref),
        )
        for key, sel in selectors:
            if sel is None:
                continue
            sp = at(at(where, "valueFrom"), key)
            check_dns_subdomain(_required(sel.name, at(sp, "name")), at(sp, "name"))
            check_config_key(_required(sel.key, at(sp, "key")), at(sp, "key"))
    for i, env_from in enumerate(c.env_from or ()):
        where = at(at(path, "envFrom"), i)
        refs = (("configMapRef", env_from.config_map_ref), ("secretRef", env_from.secret_ref))
        for key, env_ref in refs:
            if env_ref is not None:
                name_at = at(at(where, key), "name")
                check_dns_subdomain(_required(env_ref.name, name_at), name_at)
    names: set[str] = set()
    for i, port in enumerate(c.ports or ()):
        where = at(at(path, "ports"), i)
        _range(port.container_port, 1, 65535, _PORT, at(where, "containerPort"))
        _range(port.host_port, 0, 65535, _HOST_PORT, at(where, "hostPort"))
        if host_network and port.host_port != port.container_port:
            raise FieldError(
                at(where, "hostPort"), "must match `containerPort` when `hostNetwork` is true"
            )
        _choice(port.protocol, PROTOCOLS, at(where, "protocol"))
        if port.name:
            check_port_name(port.name, at(where, "name"))
            if port.name in names:
                raise FieldError(at(where, "name"), f"Duplicate value: {q(port.name)}")
            names.add(port.name)
    _validate_resources(c.resources, at(path, "resources"))
    _validate_security(c.security_context, at(path, "securityContext"))
    for key, probe in (
        ("livenessProbe", c.liveness_probe),
        ("readinessProbe", c.readiness_probe),
        ("startupProbe", c.startup_probe),
    ):
        if probe is not None:
            _validate_probe(probe, at(path, key), key)
    mount_paths: set[str] = set()
    for i, m in enumerate(c.volume_mounts or ()):
        where = at(at(path, "volumeMounts"), i)
        name = _required(m.name, at(where, "name"))
        if name not in volume_names:
            raise FieldError(at(where, "name"), f"not found: no volume named {q(name)}")
        mount_path = _required(m.mount_path, at(where, "mountPath"))
        if mount_path in mount_paths:
            raise FieldError(at(where, "mountPath"), f"Duplicate value: {q(mount_path)}")
        mount_paths.add(mount_path)
        if m.mount_propagation is not None and m.mount_propagation not in MOUNT_PROPAGATIONS:
            raise not_supported(
                at(where, "mountPropagation"), m.mount_propagation, MOUNT_PROPAGATIONS
            )
        if m.sub_path:
            check_relative_path(m.sub_path, at(where, "subPath"))
        if m.sub_path_expr:
            if m.sub_path:
                raise FieldError(
                    at(where, "subPathExpr"), "subPathExpr and subPath are mutually exclusive"
                )
            check_relative_path(m.sub_path_expr, at(where, "subPathExpr"))


def _validate_resources(r: ResourceRequirements | None, path: str) -> None:
    """ValidateContainerResourceRequirements' first error: each amount's name and value at
    ``limits[name]`` or ``requests[name]``; a request above its limit at ``requests``; a
    resource that cannot be overcommitted (extended, hugepages) requested as its limit."""
    if r is None:
        return
    amounts: dict[str, dict[str, Amount]] = {}
    for kind in ("limits", "requests"):
        values = getattr(r, kind) or {}
        amounts[kind] = {}
        for name, value in values.items():
            where = map_key(at(path, kind), name)
            _check_resource_name(name, where)
            amount = value.amount()
            if amount.value < 0:
                raise invalid(where, str(value), "must be greater than or equal to 0")
            if "/" in name and not _native(name) and amount.value.denominator != 1:
                raise invalid(where, str(value), "must be an integer")
            amounts[kind][name] = amount
    limits = at(path, "limits")
    for name, req in amounts["requests"].items():
        lim = amounts["limits"].get(name)
        overcommit = ("/" not in name or _native(name)) and not name.startswith("hugepages-")
        if lim is None:
            if not overcommit:
                raise FieldError(
                    limits, "Required value: Limit must be set for non overcommitable resources"
                )
        elif req != lim and not overcommit:
            raise invalid(at(path, "requests"), str(req), f"must be equal to {name} limit of {lim}")
        elif req > lim:
            raise invalid(
                at(path, "requests"),
                str(req),
                f"must be less than or equal to {name} limit of {lim}",
            )


STANDARD_CONTAINER_RESOURCES = ("cpu", "memory", "ephemeral-storage")


def _native(name: str) -> bool:
    prefix = name.partition("/")[0]
    return prefix == "kubernetes.io" or prefix.endswith(".kubernetes.io")


def _check_resource_name(name: str, where: str) -> None:
    """kube's validateContainerResourceName: a standard resource, or a qualified extended
    resource name (``example.com/gpu``)."""
    if "/" not in name:
        if name not in STANDARD_CONTAINER_RESOURCES and not name.startswith("hugepages-"):
            raise invalid(where, name, "must be a standard resource for containers")
        return
    problem = qualified_name_problem(name)
    if problem:
        raise invalid(where, name, problem)
    if not _native(name) and name.partition("/")[2].startswith("requests."):
        raise invalid(where, name, "doesn't follow extended resource name standard")


def _validate_security(s: SecurityContext | None, path: str) -> None:
    if s is None:
        return
    _range(s.run_as_user, 0, MAX_ID, _ID, at(path, "runAsUser"))
    _range(s.run_as_group, 0, MAX_ID, _ID, at(path, "runAsGroup"))
    if s.allow_privilege_escalation is False:
        if s.privileged:
            raise FieldError(
                path, "cannot set `allowPrivilegeEscalation` to false and `privileged` to true"
            )
        added = [
            c.upper().removeprefix("CAP_")
            for c in ((s.capabilities.add or []) if s.capabilities else [])
        ]
        if "SYS_ADMIN" in added:
            raise FieldError(
                path,
                "cannot set `allowPrivilegeEscalation` to false and `capabilities.Add`"
                " CAP_SYS_ADMIN",
            )


def _validate_probe(p: Probe, path: str, kind: str) -> None:
    handlers = [
        k
        for k, v in (("exec", p.exec), ("httpGet", p.http_get), ("tcpSocket", p.tcp_socket))
        + (("grpc", p.grpc),)
        if v is not None
    ]
    if not handlers:
        raise FieldError(path, "must specify a handler type: exec, httpGet or tcpSocket")
    if len(handlers) > 1:
        raise FieldError(at(path, handlers[1]), "may not specify more than 1 handler type")
    for key in (
        "initialDelaySeconds",
        "periodSeconds",
        "timeoutSeconds",
        "successThreshold",
        "failureThreshold",
    ):
        value = getattr(p, _SNAKE[key])
        _range(value, 0, 2**31 - 1, _NONNEG, at(path, key))
    if kind != "readinessProbe" and p.success_threshold not in (0, 1):
        raise FieldError(at(path, "successThreshold"), f"must be 1, not {p.success_threshold}")
    if p.exec is not None and not p.exec.command:
        raise FieldError(at(at(path, "exec"), "command"), "is required")
    for action, key in ((p.http_get, "httpGet"), (p.tcp_socket, "tcpSocket")):
        if action is None:
            continue
        where = at(at(path, key), "port")
        if isinstance(action.port, str):
            check_port_name(action.port, where)
        else:
            _range(action.port, 1, 65535, _PORT, where)
    if p.http_get is not None:
        _choice(p.http_get.scheme, SCHEMES, at(at(path, "httpGet"), "scheme"))
        for i, h in enumerate(p.http_get.http_headers or ()):
            check_http_header_name(h.name, at(at(at(path, "httpGet"), "httpHeaders"), i) + ".name")


_SNAKE = {
    "initialDelaySeconds": "initial_delay_seconds",
    "periodSeconds": "period_seconds",
    "timeoutSeconds": "timeout_seconds",
    "successThreshold": "success_threshold",
    "failureThreshold": "failure_threshold",
}


def _validate_volumes(volumes: list[Volume], path: str) -> set[str]:
    names: set[str] = set()
    for i, v in enumerate(volumes):
        where = at(path, i)
        check_dns_label(_required(v.name, at(where, "name")), at(where, "name"))
        if v.name in names:
            raise FieldError(at(where, "name"), f"Duplicate value: {q(v.name)}")
        names.add(v.name)
        given = [json_name for json_name, value in _sources(v) if value is not None]
        if not given:
            raise FieldError(where, "must specify a volume type")
        if len(given) > 1:
            raise FieldError(at(where, given[1]), "may not specify more than 1 volume type")
        if v.empty_dir is not None:
            _choice(v.empty_dir.medium, STORAGE_MEDIA, at(at(where, "emptyDir"), "medium"))
            size = v.empty_dir.size_limit
            if size is not None and size.amount().value < 0:
                raise FieldError(
                    at(at(where, "emptyDir"), "sizeLimit"), "must be greater than or equal to 0"
                )
        if v.host_path is not None:
            hp = at(where, "hostPath")
            host = _required(v.host_path.path, at(hp, "path"))
            if ".." in host.split("/"):
                raise FieldError(at(hp, "path"), f"must not contain '..': {q(host)}")
            _choice(v.host_path.type, HOST_PATH_TYPES, at(hp, "type"))
        for source, key, name_key in (
            (v.config_map, "configMap", "name"),
            (v.secret, "secret", "secretName"),
        ):
            if source is None:
                continue
            sp = at(where, key)
            ref = source.name if key == "configMap" else source.secret_name  # type: ignore[union-attr]
            check_dns_subdomain(_required(ref, at(sp, name_key)), at(sp, name_key))
            _range(source.default_mode, 0, 0o777, _MODE, at(sp, "defaultMode"))
            _validate_items(source.items or [], at(sp, "items"))
        if v.downward_api is not None:
            dp = at(where, "downwardAPI")
            _range(v.downward_api.default_mode, 0, 0o777, _MODE, at(dp, "defaultMode"))
            for item in v.downward_api.items or ():
                _validate_downward_file(item, dp, set())
        if v.projected is not None:
            _validate_projected(v.projected, at(where, "projected"))
    return names


_DOWNWARD_VOLUME_FIELDS = (
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
)
_DOWNWARD_ENV_FIELDS = (
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
)
_RESOURCE_FIELDS = tuple(
    f"{kind}.{name}"
    for kind in ("limits", "requests")
    for name in ("cpu", "ephemeral-storage", "memory")
)


def _check_field_path(ref: ObjectFieldSelector, where: str, allowed: tuple[str, ...]) -> None:
    """kube's validateObjectFieldSelector: apiVersion v1 and a field it can give (a label or
    an annotation by key: ``metadata.labels['app']``)."""
    if ref.api_version not in (None, "", "v1"):
        raise not_supported(at(where, "apiVersion"), ref.api_version, ("v1",))
    path = _required(ref.field_path, at(where, "fieldPath"))
    for what in ("labels", "annotations"):  # metadata.labels['key']
        prefix = f"metadata.{what}['"
        if path.startswith(prefix) and path.endswith("']"):
            key = path[len(prefix) : -2]
            problem = qualified_name_problem(key.lower() if what == "annotations" else key)
            if problem:
                raise invalid(at(where, "fieldPath"), key, problem)
            return
    if path not in allowed:
        raise not_supported(at(where, "fieldPath"), path, allowed)


def _validate_downward_file(item: DownwardAPIVolumeFile, where: str, paths: set[str]) -> None:
    path = _required(item.path, at(where, "path"))
    check_relative_path(path, at(where, "path"), reserved=True)
    if item.field_ref is not None:
        if item.resource_field_ref is not None:
            raise invalid(
                where,
                "resource",
                "fieldRef and resourceFieldRef can not be specified simultaneously",
            )
        _check_field_path(item.field_ref, at(where, "fieldRef"), _DOWNWARD_VOLUME_FIELDS)
    elif item.resource_field_ref is not None:
        ref = item.resource_field_ref
        rp = at(where, "resourceFieldRef")
        resource = _required(ref.resource, at(rp, "resource"))
        if resource not in _RESOURCE_FIELDS and not resource.startswith(
            ("limits.hugepages-", "requests.hugepages-")
        ):
            raise not_supported(at(rp, "resource"), resource, _RESOURCE_FIELDS)
        if ref.divisor is not None and ref.divisor.amount().value <= 0:
            raise invalid(at(rp, "divisor"), str(ref.divisor), "must be greater than zero")
    else:
        raise FieldError(where, "Required value: one of fieldRef and resourceFieldRef is required")
    _range(item.mode, 0, 0o777, _MODE, at(where, "mode"))
    if path in paths:
        raise invalid(where, path, "conflicting duplicate paths")
    paths.add(path)


def _validate_projected(proj: ProjectedVolumeSource, path: str) -> None:
    """kube's validateProjectedVolumeSource: modes, each source's paths (inside the volume,
    not its own ``..`` names) and no path twice across the sources."""
    _range(proj.default_mode, 0, 0o777, _MODE, at(path, "defaultMode"))
    paths: set[str] = set()
    for i, src in enumerate(proj.sources or ()):
        sp = at(at(path, "sources"), i)
        given = [
            k
            for k, v in (
                ("clusterTrustBundle", src.cluster_trust_bundle),
                ("configMap", src.config_map),
                ("downwardAPI", src.downward_api),
                ("secret", src.secret),
                ("serviceAccountToken", src.service_account_token),
            )
            if v is not None
        ]
        if len(given) > 1:
            raise FieldError(sp, "Forbidden: may not specify more than 1 volume type")
        for key, obj in (("configMap", src.config_map), ("secret", src.secret)):
            if obj is None:
                continue
            op = at(sp, key)
            check_dns_subdomain(_required(obj.name, at(op, "name")), at(op, "name"))
            _validate_items(obj.items or [], at(op, "items"))
            for it in obj.items or ():
                if it.path in paths:
                    raise invalid(path, obj.name or "", "conflicting duplicate paths")
                paths.add(it.path)
        if src.downward_api is not None:
            for item in src.downward_api.items or ():
                _validate_downward_file(item, at(sp, "downwardAPI"), paths)
        token = src.service_account_token
        if token is not None:
            tp = at(sp, "serviceAccountToken")
            seconds = token.expiration_seconds
            if seconds is not None and seconds < 600:
                raise invalid(
                    at(tp, "expirationSeconds"),
                    seconds,
                    "may not specify a duration less than 10 minutes",
                )
            if seconds is not None and seconds > 1 << 32:
                raise invalid(
                    at(tp, "expirationSeconds"),
                    seconds,
                    "may not specify a duration larger than 2^32 seconds",
                )
            token_path = _required(token.path, at(path, "path"))
            check_relative_path(token_path, at(path, "path"), reserved=True)
            if token_path in paths:
                raise invalid(path, token_path, "conflicting duplicate paths")
            paths.add(token_path)


def _validate_items(items: list[KeyToPath], path: str) -> None:
    paths: set[str] = set()
    for i, it in enumerate(items):
        where = at(path, i)
        check_config_key(_required(it.key, at(where, "key")), at(where, "key"))
        p = _required(it.path, at(where, "path"))
        check_relative_path(p, at(where, "path"), reserved=True)
        if p in paths:
            raise FieldError(at(where, "path"), f"Duplicate value: {q(p)}")
        paths.add(p)
        _range(it.mode, 0, 0o777, _MODE, at(where, "mode"))


@functools.cache
def _volume_sources() -> tuple[tuple[str, str], ...]:
    """(JSON name, attribute) of each volume type. Read once (msgspec.structs.fields reads
    annotations: slow) and made whole before it is kept: threads validate pods at once (a
    list filled in place was once filled twice by two of them, and every volume then counted
    two types)."""
    import msgspec

    fields = msgspec.structs.fields(Volume)
    return tuple((f.encode_name, f.name) for f in fields if f.name != "name")


def _sources(v: Volume) -> list[tuple[str, object]]:
    return [(json_name, getattr(v, attr)) for json_name, attr in _volume_sources()]


DEFAULTERS[Pod] = set_defaults_pod
VALIDATORS[Pod] = validate_pod


# ============================================================================= update

POD_UPDATE_FORBIDDEN = (
    "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,"
    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only"
    " additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be"
    " set to 1 if it was previously negative)"
)


def validate_pod_update(old: dict, new: dict) -> None:  # type: ignore[type-arg]
    """kube-apiserver's ValidatePodUpdate over two defaulted pod specs (as stored): a pod's
    spec is immutable but for its containers' images, activeDeadlineSeconds (set or
    lowered), tolerations (only added) and schedulingGates (only removed)."""
    munged = dict(new)
    for field in ("containers", "initContainers"):
        olds, news = old.get(field) or [], new.get(field) or []
        if news and len(olds) == len(news) and all(isinstance(c, dict) for c in news):
            munged[field] = [
                {**n, "image": o.get("image")} if "image" in o else n
                for o, n in zip(olds, news, strict=True)
            ]
    old_ads, new_ads = old.get("activeDeadlineSeconds"), new.get("activeDeadlineSeconds")
    if old_ads is not None:
        if new_ads is None:
            raise invalid("spec.activeDeadlineSeconds", "null", "must not update from a positive"
                          " integer to nil value")  # fmt: skip
        if new_ads > old_ads:
            raise invalid("spec.activeDeadlineSeconds", new_ads, "must be less than or equal to"
                          " previous value")  # fmt: skip
    _set(munged, "activeDeadlineSeconds", old_ads)
    old_tol, new_tol = old.get("tolerations") or [], new.get("tolerations") or []
    if all(t in new_tol for t in old_tol):
        _set(munged, "tolerations", old.get("tolerations"))
    old_gates, new_gates = old.get("schedulingGates") or [], new.get("schedulingGates") or []
    if all(g in old_gates for g in new_gates):
        _set(munged, "schedulingGates", old.get("schedulingGates"))
    old_grace = old.get("terminationGracePeriodSeconds")
    if old_grace is not None and old_grace < 0 and new.get("terminationGracePeriodSeconds") == 1:
        _set(munged, "terminationGracePeriodSeconds", old_grace)
    if _present(munged) != _present(old):
        raise FieldError("spec", POD_UPDATE_FORBIDDEN)


def _present(spec: dict) -> dict:  # type: ignore[type-arg]
    """The fields set (an empty list or object, as Go's nil, is not a change)."""
    return {k: v for k, v in spec.items() if v not in (None, [], {})}


def _set(spec: dict, key: str, value: object) -> None:  # type: ignore[type-arg]
    if value is None:
        spec.pop(key, None)
    else:
        spec[key] = value


MIRROR_ANNOTATION = "kubernetes.io/config.mirror"


def validate_ephemeral_containers_update(old: dict, new: dict) -> None:  # type: ignore[type-arg]
    """kube's ValidatePodEphemeralContainersUpdate over two stored pods: no ephemeral
    containers in a static pod's mirror; an ephemeral container once added is never removed
    or changed (each found by name: a patch need not keep their order)."""
    annotations = (old.get("metadata") or {}).get("annotations") or {}
    if MIRROR_ANNOTATION in annotations:
        raise FieldError("", "Forbidden: static pods do not support ephemeral containers")
    olds = (old.get("spec") or {}).get("ephemeralContainers") or []
    by_name = {c.get("name"): c for c in (new.get("spec") or {}).get("ephemeralContainers") or []}
    for c in olds:
        now = by_name.get(c.get("name"))
        if now is None:
            raise FieldError(
                "spec.ephemeralContainers",
                f"Forbidden: existing ephemeral containers {q(c.get('name'))} may not be removed\n",
            )
        if now != c:
            raise FieldError(
                "spec.ephemeralContainers",
                f"Forbidden: existing ephemeral containers {q(c.get('name'))} may not be changed\n",
            )
