"""Typed model of a Kubernetes ``v1 Pod`` manifest (the YAML ``kubectl apply -f`` takes).

Parsed, defaulted and validated once, at the edge (``load_pod``); the pod code trusts the model.
Field names are the Kubernetes JSON names in snake_case. Errors are ``ManifestError``s whose
``field`` is the manifest path, as the API server words it: ``spec.containers[0].ports[1].name``.

What is accepted
----------------
The fields listed in each ``_FIELDS`` table below; see the classes for their meaning and
defaults. Every other field is an error: ``unknown field`` when Kubernetes has no such field (a
typo), ``not supported by corral`` when it does but corral does not implement it. Nothing is
silently dropped, except what the API server itself writes and ignores on input:

- ``status`` (output only; ``kubectl get -o yaml`` prints it);
- ``metadata.creationTimestamp``, ``resourceVersion``, ``generation``, ``selfLink`` and
  ``managedFields``. ``metadata.uid`` is kept, as the pod's uid when it is given.

Local sources
-------------
- ``image`` is an image name (in corral's store, or pulled from a registry by the container's
  ``imagePullPolicy``: ``runtime.pod.imagepull``), or the path of an image tarball to import: a
  path is a value that starts with ``/``, ``./`` or ``../``, or ends with ``.tar``,
  ``.tar.gz``, ``.tgz``, ``.tar.xz`` or ``.tar.zst``.
- A ``configMap`` or ``secret`` volume keeps its Kubernetes form (``configMap.name``,
  ``secret.secretName``) and the pod's annotations say where that object lives on this host::

      metadata:
        annotations:
          configmap.corral.io/app-config: ./config      # a directory: one key per regular file
          secret.corral.io/db-password: /etc/db/pass    # a file: one key, the file's name

  A directory's keys are its regular files (not recursive, like ``kubectl create configmap
  --from-file=DIR``); a file is a single key named after it (``runtime.pod.sources`` lists
  them). A missing annotation is an error unless the volume is ``optional: true`` (then the
  volume is empty, as in Kubernetes). Other ``*.corral.io/`` annotation keys are errors (typos).

Relative paths (tarballs, local sources) are taken from the manifest's directory (``base_dir``;
the working directory when the manifest did not come from a file) and stored absolute.

Quantities
----------
``parse_quantity`` implements the Kubernetes grammar exactly: a signed decimal number, then one
of the suffixes ``n u m "" k M G T P E`` (decimal SI: note kilo is a lower-case ``k``; ``1K`` is
rejected, as the API server rejects it), ``Ki Mi Gi Ti Pi Ei`` (binary) or an exponent ``e3``,
``E-2``. Values are exact fractions. Like the kubelet, cpu is used in millicores rounded up
(``Quantity.milli``) and memory in bytes rounded up (``Quantity.ceil``).
"""

from __future__ import annotations

import ipaddress
import os
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from types import MappingProxyType
from typing import Any

import kubemodel as k8s
from kubemodel.defaults import DEFAULT_GRACE_PERIOD, DEFAULT_MODE, default_pull_policy
from kubemodel.errors import FieldError, at, q
from kubemodel.quantity import Amount
from kubemodel.quantity import parse_quantity as _parse_quantity
from runtime.pod.errors import ManifestError

__all__ = [
    "API_VERSION",
    "CONFIGMAP_ANNOTATION",
    "KIND",
    "SECRET_ANNOTATION",
    "Capabilities",
    "ConfigMapVolume",
    "Container",
    "ContainerPort",
    "PodDnsConfig",
    "EmptyDirVolume",
    "EnvVar",
    "ExecAction",
    "HTTPGetAction",
    "HTTPHeader",
    "HostPathType",
    "HostPathVolume",
    "KeyToPath",
    "ManifestError",
    "ObjectMeta",
    "Pod",
    "PodSecurityContext",
    "PodSpec",
    "Probe",
    "Protocol",
    "PullPolicy",
    "Quantity",
    "ResourceList",
    "ResourceRequirements",
    "RestartPolicy",
    "Scheme",
    "SecretVolume",
    "SecurityContext",
    "StorageMedium",
    "TCPSocketAction",
    "Volume",
    "VolumeMount",
    "is_image_archive",
    "load_pod",
    "loads_pod",
    "read_manifest",
    "parse_pod",
    "parse_quantity",
]

API_VERSION = "v1"
KIND = "Pod"
CONFIGMAP_ANNOTATION = "configmap.corral.io/"
SECRET_ANNOTATION = "secret.corral.io/"


# ============================================================================= enums


class RestartPolicy(StrEnum):
    ALWAYS = "Always"
    ON_FAILURE = "OnFailure"
    NEVER = "Never"


class Protocol(StrEnum):
    TCP = "TCP"
    UDP = "UDP"
    SCTP = "SCTP"


class Scheme(StrEnum):
    HTTP = "HTTP"
    HTTPS = "HTTPS"


class PullPolicy(StrEnum):
    ALWAYS = "Always"
    IF_NOT_PRESENT = "IfNotPresent"
    NEVER = "Never"


class StorageMedium(StrEnum):
    DEFAULT = ""  # the node's disk
    MEMORY = "Memory"  # tmpfs


class HostPathType(StrEnum):
    UNSET = ""  # no check
    DIRECTORY_OR_CREATE = "DirectoryOrCreate"
    DIRECTORY = "Directory"
    FILE_OR_CREATE = "FileOrCreate"
    FILE = "File"
    SOCKET = "Socket"
    CHAR_DEVICE = "CharDevice"
    BLOCK_DEVICE = "BlockDevice"


# ============================================================================= quantities

Quantity = Amount  # a quantity's exact value and text (kubemodel.quantity.Amount)


def parse_quantity(value: object, where: str = "") -> Quantity:
    """Parse a quantity written as a YAML string or number; a bad one names ``where``."""
    try:
        return _parse_quantity(value, where)
    except FieldError as e:
        raise ManifestError(e.field, e.message) from None


# ============================================================================= the model


def _empty_map() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class ObjectMeta:
    name: str
    namespace: str = "default"
    uid: str | None = None
    labels: Mapping[str, str] = field(default_factory=_empty_map)
    annotations: Mapping[str, str] = field(default_factory=_empty_map)


@dataclass(frozen=True, slots=True)
class EnvVar:
    """An environment variable: a literal ``value``, or ``field_ref`` (a pod field path such as
    ``status.podIP``) that the runtime resolves when it starts the container."""

    name: str
    value: str = ""
    field_ref: str | None = None


@dataclass(frozen=True, slots=True)
class ContainerPort:
    container_port: int
    host_port: int | None = None  # with hostNetwork, defaulted to container_port
    protocol: Protocol = Protocol.TCP
    name: str | None = None


@dataclass(frozen=True, slots=True)
class ResourceList:
    cpu: Quantity | None = None
    memory: Quantity | None = None


@dataclass(frozen=True, slots=True)
class ResourceRequirements:
    """requests and limits, after Kubernetes defaulting: a request that is not given but whose
    limit is equals the limit."""

    requests: ResourceList = field(default_factory=ResourceList)
    limits: ResourceList = field(default_factory=ResourceList)


@dataclass(frozen=True, slots=True)
class Capabilities:
    """Capabilities in OCI form (``CAP_NET_ADMIN``; the manifest may omit ``CAP_``), or ``ALL``."""

    add: tuple[str, ...] = ()
    drop: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SecurityContext:
    """A container's effective security settings: its own, else the pod's runAsUser/Group.

    ``None`` ids mean the image's user. ``allow_privilege_escalation`` None means the default
    (true, as Kubernetes: no_new_privs is set only when it is false and not privileged).
    """

    run_as_user: int | None = None
    run_as_group: int | None = None
    read_only_root_filesystem: bool = False
    privileged: bool = False
    capabilities: Capabilities = field(default_factory=Capabilities)
    allow_privilege_escalation: bool | None = None


@dataclass(frozen=True, slots=True)
class ExecAction:
    command: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class HTTPHeader:
    name: str
    value: str


@dataclass(frozen=True, slots=True)
class HTTPGetAction:
    """``port`` is the number; ``port_name`` the container port name it was given as, if so.
    ``host`` None means the pod IP."""

    port: int
    path: str = "/"
    host: str | None = None
    scheme: Scheme = Scheme.HTTP
    http_headers: tuple[HTTPHeader, ...] = ()
    port_name: str | None = None


@dataclass(frozen=True, slots=True)
class TCPSocketAction:
    port: int
    host: str | None = None
    port_name: str | None = None


@dataclass(frozen=True, slots=True)
class Probe:
    """A probe with the Kubernetes defaults applied (0 in the manifest also means default)."""

    handler: ExecAction | HTTPGetAction | TCPSocketAction
    initial_delay_seconds: int = 0
    period_seconds: int = 10
    timeout_seconds: int = 1
    success_threshold: int = 1
    failure_threshold: int = 3


@dataclass(frozen=True, slots=True)
class VolumeMount:
    name: str
    mount_path: str
    read_only: bool = False
    sub_path: str | None = None
    sub_path_expr: str | None = None  # $(VAR) expanded from the container's env at start


@dataclass(frozen=True, slots=True)
class Container:
    """A container or init container. ``image_archive`` is the absolute path of the image
    tarball when ``image`` names one (see ``is_image_archive``), else None."""

    name: str
    image: str
    image_archive: str | None = None
    image_pull_policy: PullPolicy = PullPolicy.IF_NOT_PRESENT
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    env: tuple[EnvVar, ...] = ()
    working_dir: str | None = None
    ports: tuple[ContainerPort, ...] = ()
    resources: ResourceRequirements = field(default_factory=ResourceRequirements)
    security_context: SecurityContext = field(default_factory=SecurityContext)
    liveness_probe: Probe | None = None
    readiness_probe: Probe | None = None
    startup_probe: Probe | None = None
    volume_mounts: tuple[VolumeMount, ...] = ()
    tty: bool = False  # a terminal: its stdin (with ``stdin``), stdout and stderr
    stdin: bool = False  # stdin stays open for attach (else it is /dev/null)
    stdin_once: bool = False  # ... and is closed when the first attach ends
    target: str | None = None  # an ephemeral container's targetContainerName: its pid namespace


@dataclass(frozen=True, slots=True)
class EmptyDirVolume:
    medium: StorageMedium = StorageMedium.DEFAULT
    size_limit: Quantity | None = None


@dataclass(frozen=True, slots=True)
class HostPathVolume:
    path: str
    type: HostPathType = HostPathType.UNSET


@dataclass(frozen=True, slots=True)
class KeyToPath:
    key: str
    path: str
    mode: int | None = None


@dataclass(frozen=True, slots=True)
class ConfigMapVolume:
    """``local_path`` is the file or directory the pod's annotation names (absolute), or None
    for a missing optional source."""

    name: str
    local_path: str | None
    items: tuple[KeyToPath, ...] = ()
    default_mode: int = DEFAULT_MODE
    optional: bool = False


@dataclass(frozen=True, slots=True)
class SecretVolume:
    """Like ``ConfigMapVolume``; ``secret_name`` is the manifest's ``secretName``."""

    secret_name: str
    local_path: str | None
    items: tuple[KeyToPath, ...] = ()
    default_mode: int = DEFAULT_MODE
    optional: bool = False


VolumeSource = EmptyDirVolume | HostPathVolume | ConfigMapVolume | SecretVolume


@dataclass(frozen=True, slots=True)
class Volume:
    name: str
    source: VolumeSource


@dataclass(frozen=True, slots=True)
class PodSecurityContext:
    run_as_user: int | None = None
    run_as_group: int | None = None


@dataclass(frozen=True, slots=True)
class PodDnsConfig:
    """``spec.dnsConfig``: options are (name, value or None)."""

    nameservers: tuple[str, ...] = ()
    searches: tuple[str, ...] = ()
    options: tuple[tuple[str, str | None], ...] = ()


@dataclass(frozen=True, slots=True)
class PodSpec:
    containers: tuple[Container, ...]
    init_containers: tuple[Container, ...] = ()
    # added to the running pod (``runtime.pod.ephemeral``), never part of its start
    ephemeral_containers: tuple[Container, ...] = ()
    volumes: tuple[Volume, ...] = ()
    restart_policy: RestartPolicy = RestartPolicy.ALWAYS
    termination_grace_period_seconds: int = DEFAULT_GRACE_PERIOD
    hostname: str | None = None
    subdomain: str | None = None  # the pod's FQDN is <hostname>.<subdomain>.<ns>.svc.<domain>
    host_network: bool = False
    host_pid: bool = False  # the node's pid namespace (the machine's: a netns node has no other)
    host_ipc: bool = False  # the node's IPC namespace (the machine's, as for host_pid)
    share_process_namespace: bool = False
    security_context: PodSecurityContext = field(default_factory=PodSecurityContext)
    dns_policy: str = "ClusterFirst"  # ClusterFirst, ClusterFirstWithHostNet, Default or None
    dns_config: PodDnsConfig | None = None  # spec.dnsConfig, merged into what the policy gives
    # the OCI runtime handler to run the containers with (PodOptions.for_handler); on a node
    # the kubelet puts the handler of the pod's RuntimeClass here
    runtime_class_name: str | None = None
    # spec.overhead (its RuntimeClass's podFixed, set at admission): counted into the pod
    # cgroup's values as kube's ResourceConfigForPod counts it (cpu and memory; the others
    # are the scheduler's alone)
    overhead: ResourceList = field(default_factory=ResourceList)


@dataclass(frozen=True, slots=True)
class Pod:
    metadata: ObjectMeta
    spec: PodSpec

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        return self.metadata.namespace

    @property
    def all_containers(self) -> tuple[Container, ...]:
        """Init containers (in order), then app containers."""
        return self.spec.init_containers + self.spec.containers

    def container(self, name: str) -> Container:
        for c in self.all_containers + self.spec.ephemeral_containers:
            if c.name == name:
                return c
        raise KeyError(name)

    def volume(self, name: str) -> Volume:
        for v in self.spec.volumes:
            if v.name == name:
                return v
        raise KeyError(name)

    @property
    def hostname(self) -> str:
        """The UTS hostname as the kubelet picks it: spec.hostname, else the pod name cut to 63
        characters without a trailing '-' or '.'."""
        if self.spec.hostname:
            return self.spec.hostname
        return self.metadata.name[:63].rstrip("-.")

    def host_domain(self, cluster_domain: str) -> str:
        """The domain of the pod's FQDN in its /etc/hosts (the kubelet's
        GeneratePodHostNameAndDomain): ``<subdomain>.<namespace>.svc.<cluster domain>`` when
        it has a subdomain (a StatefulSet's pods: its serviceName), else none."""
        if not self.spec.subdomain:
            return ""
        parts = (self.spec.subdomain, self.namespace, "svc", cluster_domain)
        return ".".join(p for p in parts if p)


# ============================================================================= corral's checks

_UID = re.compile(r"[0-9A-Za-z][-0-9A-Za-z]{0,63}")
_SEARCH = re.compile(
    r"(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
)
_ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.xz", ".tar.zst")


def is_image_archive(image: str) -> bool:
    """True when a container's ``image`` is the path of an image tarball, not an image name."""
    return image.startswith(("/", "./", "../")) or image.endswith(_ARCHIVE_SUFFIXES)


def _local_path(base_dir: str | None, path: str) -> str:
    return os.path.abspath(os.path.join(base_dir or os.getcwd(), os.path.expanduser(path)))


def _check_absolute(value: str, where: str) -> None:
    if not value.startswith("/"):
        raise ManifestError(where, f"must be an absolute path, not {q(value)}")
    if "\0" in value:
        raise ManifestError(where, "must not contain a NUL byte")


# What corral implements, per Kubernetes type (JSON names); a type not listed is supported
# whole. Any other field Kubernetes has is refused as "not supported by corral", unless it
# holds the value kube-apiserver's defaulting gives it (so an object read back from the API,
# or stored encoded by api.create, is accepted again). Keyed by the kubemodel type's name: the
# types are loaded at the first manifest read, not with this module (an idle node has none).
_SUPPORTED: dict[str, frozenset[str]] = {
    "Pod": frozenset({"apiVersion", "kind", "metadata", "spec", "status"}),
    "ObjectMeta": frozenset(
        {"name", "namespace", "uid", "labels", "annotations"}
        | {"creationTimestamp", "resourceVersion", "generation", "selfLink", "managedFields"}
    ),
    "PodSpec": frozenset(
        "containers initContainers volumes restartPolicy terminationGracePeriodSeconds hostname"
        " subdomain hostNetwork shareProcessNamespace securityContext dnsPolicy dnsConfig"
        " runtimeClassName overhead ephemeralContainers hostPID hostIPC".split()
    ),
    "Container": frozenset(
        "name image imagePullPolicy command args env workingDir ports resources securityContext"
        " livenessProbe readinessProbe startupProbe volumeMounts tty stdin stdinOnce".split()
    ),
    "EphemeralContainer": frozenset(
        "name image imagePullPolicy command args env workingDir resources securityContext"
        " volumeMounts tty stdin stdinOnce targetContainerName".split()
    ),
    "EnvVarSource": frozenset({"fieldRef"}),
    "ContainerPort": frozenset({"containerPort", "hostPort", "protocol", "name"}),
    "ResourceRequirements": frozenset({"requests", "limits"}),
    "SecurityContext": frozenset(
        "runAsUser runAsGroup readOnlyRootFilesystem privileged capabilities"
        " allowPrivilegeEscalation".split()
    ),
    "PodSecurityContext": frozenset({"runAsUser", "runAsGroup"}),
    "Probe": frozenset(
        "exec httpGet tcpSocket initialDelaySeconds periodSeconds timeoutSeconds successThreshold"
        " failureThreshold".split()
    ),
    "VolumeMount": frozenset({"name", "mountPath", "readOnly", "subPath", "subPathExpr"}),
    "Volume": frozenset({"name", "emptyDir", "hostPath", "configMap", "secret"}),
}
_DEFAULTED: dict[tuple[str, str], object] = {
    ("PodSpec", "dnsPolicy"): "ClusterFirst",
    ("PodSpec", "schedulerName"): "default-scheduler",
    ("PodSpec", "enableServiceLinks"): True,
    ("PodSpec", "priority"): 0,
    ("PodSpec", "preemptionPolicy"): "PreemptLowerPriority",
    ("Container", "terminationMessagePath"): "/dev/termination-log",
    ("Container", "terminationMessagePolicy"): "File",
    ("Container", "stdin"): False,
    ("Container", "stdinOnce"): False,
    ("EphemeralContainer", "terminationMessagePath"): "/dev/termination-log",
    ("EphemeralContainer", "terminationMessagePolicy"): "File",
    ("EphemeralContainer", "stdin"): False,
    ("EphemeralContainer", "stdinOnce"): False,
}
_NOT_WALKED = frozenset({"status", "managedFields"})
_FIELD_TYPES: dict[type, dict[str, tuple[type | None, bool]]] = {}


def _field_types(cls: type) -> dict[str, tuple[type | None, bool]]:
    """Each JSON field of ``cls``: the struct type it holds (or None) and whether in a list."""
    import msgspec

    found = _FIELD_TYPES.get(cls)
    if found is None:
        found = {f.encode_name: _struct_of(f.type) for f in msgspec.structs.fields(cls)}
        _FIELD_TYPES[cls] = found
    return found


def _struct_of(typ: Any) -> tuple[type | None, bool]:
    """The struct type in ``T``, ``T | None`` or ``list[T] | None``, and whether it is a list."""
    import msgspec

    args = getattr(typ, "__args__", None)
    if args and type(None) in args:
        typ = next(a for a in args if a is not type(None))
    is_list = getattr(typ, "__origin__", None) is list
    if is_list:
        typ = typ.__args__[0]
    if isinstance(typ, type) and issubclass(typ, msgspec.Struct):
        return typ, is_list
    return None, False


def _check_supported(cls: type, data: object, path: str) -> None:
    """Refuse, on the manifest as written, each field Kubernetes does not have and each one
    corral does not implement, before any value is read."""
    if not isinstance(data, dict):
        return  # decoding says what is wrong
    types = _field_types(cls)
    supported = _SUPPORTED.get(cls.__name__)
    for key, value in data.items():
        if not isinstance(key, str):
            raise ManifestError(path, f"field names must be strings, not {key!r}")
        if key not in types:
            raise ManifestError(at(path, key), "unknown field")  # before any value's error
        if value is None:
            continue
        if supported is not None and key not in supported:
            if _DEFAULTED.get((cls.__name__, key), _NOT_DEFAULT) != value:
                raise ManifestError(at(path, key), "not supported by corral")
            continue
        if key in _NOT_WALKED:
            continue
        inner, is_list = types[key]
        if inner is None:
            continue
        if not is_list:
            _check_supported(inner, value, at(path, key))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                _check_supported(inner, item, at(at(path, key), i))


_NOT_DEFAULT = object()


def _capability(value: str, where: str) -> str:
    from runtime.config import CAPABILITIES

    name = value.upper()
    if name == "ALL":
        return name
    if not name.startswith("CAP_"):
        name = "CAP_" + name
    if name not in CAPABILITIES:
        raise ManifestError(where, f"unknown capability {q(value)}")
    return name


# ============================================================================= the parser

_FIELD_REFS = frozenset({"metadata.name", "metadata.namespace", "metadata.uid", "status.podIP"})
_RESOURCE_NAMES = ("cpu", "memory")
_VOLUME_TYPES = "emptyDir, hostPath, configMap or secret"


def load_pod(path: str | os.PathLike[str]) -> Pod:
    """Read, parse and validate a pod manifest file (YAML or JSON)."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ManifestError("", f"cannot read {path}: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise ManifestError("", f"{path} is not UTF-8 text") from e
    return loads_pod(text, base_dir=os.path.dirname(os.path.abspath(path)))


def loads_pod(text: str, base_dir: str | None = None) -> Pod:
    """Parse a manifest given as YAML text (one document); see ``parse_pod`` for base_dir."""
    return parse_pod(read_manifest(text), base_dir=base_dir)


def read_manifest(text: str) -> object:
    """The one YAML (or JSON) document of a manifest, as plain data; every way it can fail
    is a one-line ManifestError."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        docs = [d for d in yaml.load_all(text, Loader=loader) if d is not None]  # noqa: S506
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or str(e)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ManifestError("", f"invalid YAML{where}: {problem}") from None
    except RecursionError:
        # The loader builds nested collections recursively: "[[[[...]]]]" ten thousand deep.
        raise ManifestError("", "invalid YAML: nested too deeply") from None
    if len(docs) != 1:
        raise ManifestError("", f"expected one Pod document, found {len(docs)}")
    return docs[0]


def decode_pod(data: object) -> k8s.Pod:
    """The manifest as a Kubernetes Pod (kubemodel), defaulted and validated as the API server
    does, after refusing what corral does not implement. ``status`` is ignored."""
    try:
        return _decode(data)
    except FieldError as e:
        message = e.message
        if message == "must specify a volume type":
            message += f": {_VOLUME_TYPES}"
        raise ManifestError(e.field, message) from None


def _decode(data: object) -> k8s.Pod:
    if not isinstance(data, dict):
        raise FieldError("", f"must be an object, not {k8s.codec.kind_of(data)}")  # type: ignore[attr-defined]
    api_version = data.get("apiVersion")
    if api_version != API_VERSION:
        shown = api_version if isinstance(api_version, str) else ""
        raise FieldError("apiVersion", f"must be {q(API_VERSION)}, not {q(shown)}")
    kind = data.get("kind")
    if kind != KIND:
        raise FieldError(
            "kind", f"must be {q(KIND)}, not {q(kind if isinstance(kind, str) else '')}"
        )
    for key in ("metadata", "spec"):
        if data.get(key) is None:
            raise FieldError(key, "is required")
    _check_supported(k8s.Pod, data, "")
    data = {k: v for k, v in data.items() if k != "status"}
    spec = data["spec"]
    if isinstance(spec, dict) and isinstance(spec.get("volumes"), list):
        # `emptyDir:` (YAML null) means `emptyDir: {}` here, as it always has.
        volumes = [
            {**v, "emptyDir": {}}
            if isinstance(v, dict) and "emptyDir" in v and v["emptyDir"] is None
            else v
            for v in spec["volumes"]
        ]
        data["spec"] = {**spec, "volumes": volumes}
    return k8s.decode(data, k8s.Pod)


def parse_pod(data: object, base_dir: str | None = None) -> Pod:
    """Validate and default a manifest already decoded into dicts and lists.

    ``base_dir`` is where relative local paths (image tarballs, configMap/secret sources) are
    taken from: the manifest's directory; the working directory when None.
    """
    return from_kube(decode_pod(data), base_dir)


def from_kube(pod: k8s.Pod, base_dir: str | None = None) -> Pod:
    """Corral's model of a decoded, defaulted and validated Pod, after the node's own checks."""
    try:
        return _from_kube(pod, base_dir)
    except FieldError as e:
        raise ManifestError(e.field, e.message) from None


def _from_kube(kp: k8s.Pod, base_dir: str | None) -> Pod:
    assert kp.metadata is not None and kp.spec is not None
    metadata = _meta(kp.metadata)
    spec = kp.spec
    psc = spec.security_context or k8s.PodSecurityContext()
    pod_security = PodSecurityContext(run_as_user=psc.run_as_user, run_as_group=psc.run_as_group)
    volumes = tuple(
        _volume(v, at("spec.volumes", i), metadata, base_dir)
        for i, v in enumerate(spec.volumes or ())
    )

    def containers(key: str, items: list[k8s.Container] | None) -> tuple[Container, ...]:
        return tuple(
            _container(c, at(at("spec", key), i), pod_security, base_dir)
            for i, c in enumerate(items or ())
        )

    return Pod(
        metadata,
        PodSpec(
            containers=containers("containers", spec.containers),
            init_containers=containers("initContainers", spec.init_containers),
            ephemeral_containers=tuple(
                replace(c, target=e.target_container_name or None)
                for c, e in zip(
                    containers("ephemeralContainers", spec.ephemeral_containers),  # type: ignore[arg-type]
                    spec.ephemeral_containers or (),
                    strict=True,
                )
            ),
            volumes=volumes,
            restart_policy=RestartPolicy(spec.restart_policy or "Always"),
            termination_grace_period_seconds=(
                spec.termination_grace_period_seconds
                if spec.termination_grace_period_seconds is not None
                else DEFAULT_GRACE_PERIOD
            ),
            hostname=spec.hostname or None,
            subdomain=spec.subdomain or None,
            host_network=spec.host_network,
            host_pid=bool(spec.host_pid),
            host_ipc=bool(spec.host_ipc),
            share_process_namespace=bool(spec.share_process_namespace),
            security_context=pod_security,
            dns_policy=_dns_policy(spec.dns_policy, spec.dns_config),
            dns_config=_dns_config(spec.dns_config),
            runtime_class_name=spec.runtime_class_name or None,
            overhead=_overhead(spec.overhead),
        ),
    )


DNS_POLICIES = ("ClusterFirst", "ClusterFirstWithHostNet", "Default", "None")
MAX_DNS_NAMESERVERS = 3  # kube's validation limits
MAX_DNS_SEARCHES = 32
MAX_DNS_SEARCH_CHARS = 2048


def _dns_policy(policy: str | None, config: k8s.PodDNSConfig | None) -> str:
    if policy in (None, ""):
        return "ClusterFirst"
    if policy not in DNS_POLICIES:
        raise ManifestError(
            "spec.dnsPolicy",
            f"Unsupported value: {q(policy)}: supported values: {', '.join(map(q, DNS_POLICIES))}",
        )
    if policy == "None" and config is None:
        raise ManifestError(
            "spec.dnsConfig", "Required value: must provide `dnsConfig` when `dnsPolicy` is None"
        )
    if policy == "None" and not (config and config.nameservers):
        raise ManifestError(
            "spec.dnsConfig.nameservers",
            "Required value: must provide at least one DNS nameserver when `dnsPolicy` is None",
        )
    return policy


def _dns_config(config: k8s.PodDNSConfig | None) -> PodDnsConfig | None:
    """``spec.dnsConfig``, checked as kube-apiserver's validation does."""
    if config is None:
        return None
    servers = tuple(config.nameservers or ())
    if len(servers) > MAX_DNS_NAMESERVERS:
        raise ManifestError(
            "spec.dnsConfig.nameservers",
            f"Invalid value: {list(servers)!r}: must not have more than"
            f" {MAX_DNS_NAMESERVERS} nameservers",
        )
    for i, ns in enumerate(servers):
        try:
            ipaddress.ip_address(ns)
        except ValueError:
            raise ManifestError(
                f"spec.dnsConfig.nameservers[{i}]",
                f"Invalid value: {q(ns)}: must be a valid IP address",
            ) from None
    searches = tuple(config.searches or ())
    if len(searches) > MAX_DNS_SEARCHES:
        raise ManifestError(
            "spec.dnsConfig.searches",
            f"Invalid value: {list(searches)!r}: must not have more than"
            f" {MAX_DNS_SEARCHES} search paths",
        )
    if len(" ".join(searches)) > MAX_DNS_SEARCH_CHARS:
        raise ManifestError(
            "spec.dnsConfig.searches",
            f"Invalid value: must not have more than {MAX_DNS_SEARCH_CHARS} characters",
        )
    for i, d in enumerate(searches):
        if d != "." and not _SEARCH.fullmatch(d.rstrip(".")):
            raise ManifestError(
                f"spec.dnsConfig.searches[{i}]", f"Invalid value: {q(d)}: must be a DNS subdomain"
            )
    options = []
    for i, o in enumerate(config.options or ()):
        if not o.name:
            raise ManifestError(f"spec.dnsConfig.options[{i}].name", "Required value")
        options.append((o.name, o.value))
    return PodDnsConfig(servers, searches, tuple(options))


def _meta(m: k8s.ObjectMeta) -> ObjectMeta:
    uid = m.uid or None
    if uid is not None and not _UID.fullmatch(uid):
        # The uid names the pod's cgroup (pod<uid>): nothing that could leave that directory.
        raise ManifestError(
            "metadata.uid", f"Invalid value: {q(uid)}: must be 1-64 letters, digits or '-'"
        )
    annotations = dict(m.annotations or {})
    for key in annotations:
        prefix = key.rpartition("/")[0]
        if (prefix == "corral.io" or prefix.endswith(".corral.io")) and not key.startswith(
            (CONFIGMAP_ANNOTATION, SECRET_ANNOTATION)
        ):
            raise ManifestError(at("metadata.annotations", key), "unknown corral annotation")
    return ObjectMeta(
        name=m.name or "",
        namespace=m.namespace or "default",
        uid=uid,
        labels=MappingProxyType(dict(m.labels or {})),
        annotations=MappingProxyType(annotations),
    )


def _container(
    c: k8s.Container, path: str, pod_security: PodSecurityContext, base_dir: str | None
) -> Container:
    image = c.image or ""
    archive = is_image_archive(image)
    if c.working_dir:
        _check_absolute(c.working_dir, at(path, "workingDir"))
    ports = tuple(
        ContainerPort(
            p.container_port, p.host_port or None, Protocol(p.protocol or "TCP"), p.name or None
        )
        for p in c.ports or ()
    )
    port_names = {p.name: p.container_port for p in ports if p.name}
    pull = c.image_pull_policy or default_pull_policy(image)
    if archive and c.image_pull_policy == "Always" and default_pull_policy(image) == "Always":
        pull = "IfNotPresent"  # a tarball is never pulled: the tag rule does not apply
    return Container(
        name=c.name,
        image=image,
        image_archive=_local_path(base_dir, image) if archive else None,
        image_pull_policy=PullPolicy(pull),
        command=tuple(c.command or ()),
        args=tuple(c.args or ()),
        env=_env(c, path),
        working_dir=c.working_dir or None,
        ports=ports,
        resources=_resources(c.resources, at(path, "resources")),
        security_context=_security(c.security_context, pod_security, at(path, "securityContext")),
        liveness_probe=_probe(c.liveness_probe, at(path, "livenessProbe"), port_names),
        readiness_probe=_probe(c.readiness_probe, at(path, "readinessProbe"), port_names),
        startup_probe=_probe(c.startup_probe, at(path, "startupProbe"), port_names),
        volume_mounts=_mounts(c, path),
        tty=bool(c.tty),
        stdin=bool(c.stdin),
        stdin_once=bool(c.stdin and c.stdin_once),
    )


def _env(c: k8s.Container, path: str) -> tuple[EnvVar, ...]:
    out = []
    for i, e in enumerate(c.env or ()):
        ref = e.value_from.field_ref if e.value_from is not None else None
        if e.value_from is not None and ref is None:
            raise ManifestError(
                at(at(at("", path), "env"), i) + ".valueFrom", "must specify one of: `fieldRef`"
            )
        if ref is None:
            out.append(EnvVar(e.name, e.value or ""))
            continue
        if ref.field_path not in _FIELD_REFS:
            allowed = ", ".join(q(p) for p in sorted(_FIELD_REFS))
            raise ManifestError(
                at(at(path, "env"), i) + ".valueFrom.fieldRef.fieldPath",
                f"unsupported value {q(ref.field_path)}: must be one of {allowed}",
            )
        out.append(EnvVar(e.name, field_ref=ref.field_path))
    return tuple(out)


def _resource_list(values: dict[str, k8s.Quantity] | None, path: str) -> ResourceList:
    values = values or {}
    for key in values:
        if key not in _RESOURCE_NAMES:
            raise ManifestError(
                at(path, key), "resource not supported by corral: only cpu and memory are"
            )
    cpu, memory = values.get("cpu"), values.get("memory")
    return ResourceList(
        cpu=None if cpu is None else cpu.amount(),
        memory=None if memory is None else memory.amount(),
    )


def _overhead(values: dict[str, k8s.Quantity] | None) -> ResourceList:
    """The pod's overhead in cpu and memory (what else it names is not the node's to apply)."""
    known = {k: v for k, v in (values or {}).items() if k in _RESOURCE_NAMES}
    return _resource_list(known, "spec.overhead")


def _resources(r: k8s.ResourceRequirements | None, path: str) -> ResourceRequirements:
    if r is None:
        return ResourceRequirements()
    limits = _resource_list(r.limits, at(path, "limits"))
    return ResourceRequirements(
        requests=_resource_list(r.requests, at(path, "requests")), limits=limits
    )


def _security(s: k8s.SecurityContext | None, pod: PodSecurityContext, path: str) -> SecurityContext:
    if s is None:
        return SecurityContext(run_as_user=pod.run_as_user, run_as_group=pod.run_as_group)
    caps = Capabilities()
    if s.capabilities is not None:
        where = at(path, "capabilities")
        caps = Capabilities(
            add=tuple(
                _capability(v, at(at(where, "add"), i))
                for i, v in enumerate(s.capabilities.add or ())
            ),
            drop=tuple(
                _capability(v, at(at(where, "drop"), i))
                for i, v in enumerate(s.capabilities.drop or ())
            ),
        )
    return SecurityContext(
        run_as_user=s.run_as_user if s.run_as_user is not None else pod.run_as_user,
        run_as_group=s.run_as_group if s.run_as_group is not None else pod.run_as_group,
        read_only_root_filesystem=bool(s.read_only_root_filesystem),
        privileged=bool(s.privileged),
        capabilities=caps,
        allow_privilege_escalation=s.allow_privilege_escalation,
    )


def _probe_port(
    port: int | str, where: str, port_names: Mapping[str, int]
) -> tuple[int, str | None]:
    if isinstance(port, str):  # IntOrString: a string is a port name, even "8080"
        if port not in port_names:
            raise ManifestError(where, f"no container port named {q(port)}")
        return port_names[port], port
    return port, None


def _probe(p: k8s.Probe | None, path: str, port_names: Mapping[str, int]) -> Probe | None:
    if p is None:
        return None
    handler: ExecAction | HTTPGetAction | TCPSocketAction
    if p.exec is not None:
        handler = ExecAction(tuple(p.exec.command or ()))
    elif p.http_get is not None:
        h = p.http_get
        port, port_name = _probe_port(h.port, at(at(path, "httpGet"), "port"), port_names)
        url_path = h.path or "/"
        if not url_path.startswith("/"):
            url_path = "/" + url_path  # the kubelet's URL building does the same
        handler = HTTPGetAction(
            port=port,
            path=url_path,
            host=h.host or None,
            scheme=Scheme(h.scheme or "HTTP"),
            http_headers=tuple(HTTPHeader(x.name, x.value) for x in h.http_headers or ()),
            port_name=port_name,
        )
    else:
        assert p.tcp_socket is not None
        t = p.tcp_socket
        port, port_name = _probe_port(t.port, at(at(path, "tcpSocket"), "port"), port_names)
        handler = TCPSocketAction(port=port, host=t.host or None, port_name=port_name)
    return Probe(
        handler=handler,
        initial_delay_seconds=p.initial_delay_seconds,
        period_seconds=p.period_seconds,
        timeout_seconds=p.timeout_seconds,
        success_threshold=p.success_threshold,
        failure_threshold=p.failure_threshold,
    )


def _mounts(c: k8s.Container, path: str) -> tuple[VolumeMount, ...]:
    out: list[VolumeMount] = []
    paths: set[str] = set()
    for i, m in enumerate(c.volume_mounts or ()):
        where = at(at(path, "volumeMounts"), i)
        _check_absolute(m.mount_path, at(where, "mountPath"))
        mount_path = posixpath.normpath(m.mount_path)
        if mount_path.startswith("//"):
            mount_path = "/" + mount_path.lstrip("/")
        if mount_path in paths:
            raise ManifestError(at(where, "mountPath"), f"Duplicate value: {q(mount_path)}")
        paths.add(mount_path)
        out.append(
            VolumeMount(
                m.name, mount_path, m.read_only, m.sub_path or None, m.sub_path_expr or None
            )
        )
    return tuple(out)


def _volume(v: k8s.Volume, path: str, meta: ObjectMeta, base_dir: str | None) -> Volume:
    source: VolumeSource
    if v.empty_dir is not None:
        medium = v.empty_dir.medium or ""
        if medium not in ("", "Memory"):
            raise ManifestError(
                at(at(path, "emptyDir"), "medium"),
                f'unsupported value {q(medium)}: must be one of "Memory"',
            )
        size = v.empty_dir.size_limit
        source = EmptyDirVolume(StorageMedium(medium), None if size is None else size.amount())
    elif v.host_path is not None:
        _check_absolute(v.host_path.path, at(at(path, "hostPath"), "path"))
        source = HostPathVolume(v.host_path.path, HostPathType(v.host_path.type or ""))
    else:
        src: k8s.ConfigMapVolumeSource | k8s.SecretVolumeSource
        make: type[ConfigMapVolume] | type[SecretVolume]
        if v.config_map is not None:
            kind, key, src, make = "configMap", "name", v.config_map, ConfigMapVolume
            name = v.config_map.name or ""
        else:
            assert v.secret is not None
            kind, key, src, make = "secret", "secretName", v.secret, SecretVolume
            name = v.secret.secret_name or ""
        optional = bool(src.optional)
        source = make(
            name,
            _source(at(at(path, kind), key), kind, name, optional, meta, base_dir),
            _items(src.items),
            DEFAULT_MODE if src.default_mode is None else src.default_mode,
            optional,
        )
    return Volume(v.name, source)


def _source(
    where: str, kind: str, name: str, optional: bool, meta: ObjectMeta, base_dir: str | None
) -> str | None:
    prefix = CONFIGMAP_ANNOTATION if kind == "configMap" else SECRET_ANNOTATION
    source = meta.annotations.get(prefix + name)
    if not source and not optional:
        raise ManifestError(
            where,
            f"no local source for {kind} {q(name)}: add the pod annotation"
            f" {prefix}{name}: <file or directory>",
        )
    return _local_path(base_dir, source) if source else None


def _items(items: list[k8s.KeyToPath] | None) -> tuple[KeyToPath, ...]:
    return tuple(KeyToPath(it.key, it.path, it.mode) for it in items or ())
