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
    Container,
    ContainerPort,
    KeyToPath,
    ObjectMeta,
    Pod,
    PodSecurityContext,
    PodSpec,
    Probe,
    ResourceRequirements,
    SecurityContext,
    Volume,
)
from kubemodel.codec import DEFAULTERS, INT_RANGES, VALIDATORS
from kubemodel.defaults import DEFAULT_GRACE_PERIOD, DEFAULT_MODE, default_pull_policy
from kubemodel.errors import FieldError, at, q
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

__all__ = ["default_pull_policy", "set_defaults_pod", "validate_pod"]

MAX_ID = 2**31 - 1
MAX_ANNOTATIONS_BYTES = 256 * 1024

RESTART_POLICIES = ("Always", "OnFailure", "Never")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
PROTOCOLS = ("TCP", "UDP", "SCTP")
SCHEMES = ("HTTP", "HTTPS")
STORAGE_MEDIA = ("", "Memory", "HugePages")
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


def _default_container(c: Container, host_network: bool) -> None:
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
        raise FieldError(where, f"must be {text}, not {value}")


def _choice(value: str | None, allowed: Iterable[str], where: str) -> None:
    allowed = tuple(allowed)
    if value is not None and value not in allowed:
        shown = ", ".join(q(a) for a in allowed if a)
        raise FieldError(where, f"unsupported value {q(value)}: must be one of {shown}")


def _required(value: str | None, where: str) -> str:
    if not value:
        raise FieldError(where, "is required")
    return value


def check_relative_path(value: str, where: str) -> None:
    if value.startswith("/"):
        raise FieldError(where, f"must be a relative path, not {q(value)}")
    if ".." in value.split("/"):
        raise FieldError(where, f"must not contain '..': {q(value)}")
    if "\0" in value:
        raise FieldError(where, "must not contain a NUL byte")


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
            raise FieldError("metadata.labels", f"invalid label key {q(key)}: {problem}")
        check_label_value(value, at("metadata.labels", key))
    size = 0
    for key, value in (meta.annotations or {}).items():
        problem = qualified_name_problem(key.lower())
        if problem:
            raise FieldError("metadata.annotations", f"invalid annotation key {q(key)}: {problem}")
        size += len(key) + len(value)
    if size > MAX_ANNOTATIONS_BYTES:
        raise FieldError(
            "metadata.annotations", f"too long: must have at most {MAX_ANNOTATIONS_BYTES} bytes"
        )


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
    if spec.hostname:
        check_dns_label(spec.hostname, at(path, "hostname"))
    if spec.subdomain:
        check_dns_label(spec.subdomain, at(path, "subdomain"))
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
                raise FieldError(
                    at(ref_path, "apiVersion"),
                    f'unsupported value {q(ref.api_version)}: must be "v1"',
                )
            _required(ref.field_path, at(ref_path, "fieldPath"))
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
        if m.sub_path:
            check_relative_path(m.sub_path, at(where, "subPath"))
        if m.sub_path_expr:
            if m.sub_path:
                raise FieldError(
                    at(where, "subPathExpr"), "subPathExpr and subPath are mutually exclusive"
                )
            check_relative_path(m.sub_path_expr, at(where, "subPathExpr"))


def _validate_resources(r: ResourceRequirements | None, path: str) -> None:
    if r is None:
        return
    amounts: dict[str, dict[str, Amount]] = {}
    for kind in ("limits", "requests"):
        values = getattr(r, kind) or {}
        amounts[kind] = {}
        for key, value in values.items():
            amount = value.amount()
            if amount.value < 0:
                raise FieldError(
                    at(at(path, kind), key), f"must be greater than or equal to 0, not {q(value)}"
                )
            amounts[kind][key] = amount
    for key, req in amounts["requests"].items():
        lim = amounts["limits"].get(key)
        if lim is not None and req > lim:
            raise FieldError(
                at(at(path, "requests"), key),
                f"invalid value {q(str(req))}: must be less than or equal to {key} limit of"
                f" {q(str(lim))}",
            )


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
    return names


def _validate_items(items: list[KeyToPath], path: str) -> None:
    paths: set[str] = set()
    for i, it in enumerate(items):
        where = at(path, i)
        check_config_key(_required(it.key, at(where, "key")), at(where, "key"))
        p = _required(it.path, at(where, "path"))
        check_relative_path(p, at(where, "path"))
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
