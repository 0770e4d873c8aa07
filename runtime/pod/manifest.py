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
- ``image`` is an image name in corral's store, or the path of an image tarball to import: a
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

import json
import math
import os
import posixpath
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction
from types import MappingProxyType
from typing import TypeVar

from runtime.errors import ConfigError

__all__ = [
    "API_VERSION",
    "CONFIGMAP_ANNOTATION",
    "KIND",
    "SECRET_ANNOTATION",
    "Capabilities",
    "ConfigMapVolume",
    "Container",
    "ContainerPort",
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
    "parse_pod",
    "parse_quantity",
]

API_VERSION = "v1"
KIND = "Pod"
CONFIGMAP_ANNOTATION = "configmap.corral.io/"
SECRET_ANNOTATION = "secret.corral.io/"

MAX_ID = 2**31 - 1  # runAsUser/runAsGroup: the API server's bound
DEFAULT_MODE = 0o644  # configMap/secret defaultMode
DEFAULT_GRACE_PERIOD = 30
_MAX_ANNOTATIONS_BYTES = 256 * 1024


class ManifestError(ConfigError):
    """The pod manifest is invalid; ``field`` is its path, e.g. ``spec.containers[0].image``."""


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

_QUANTITY = re.compile(
    r"(?P<sign>[+-]?)(?P<num>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
    r"(?P<suffix>[KMGTPE]i|[eE][+-]?[0-9]+|[numkMGTPE]?)"
)
_BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_MAX_EXPONENT = 64  # Kubernetes quantities are int64-scaled; far beyond that is a typo


@dataclass(frozen=True, slots=True, order=True)
class Quantity:
    """A Kubernetes resource quantity: its exact value and the text it was written as.

    Two quantities are equal when their values are ("1" == "1000m"), as Kubernetes compares.
    """

    value: Fraction
    text: str = field(default="", compare=False)

    def milli(self) -> int:
        """The value in thousandths, rounded up (Kubernetes' ``MilliValue``): cpu millicores."""
        return math.ceil(self.value * 1000)

    def ceil(self) -> int:
        """The value rounded up to an integer (Kubernetes' ``Value``): memory bytes."""
        return math.ceil(self.value)

    def is_zero(self) -> bool:
        return self.value == 0

    def __str__(self) -> str:
        return self.text or str(self.value)


def parse_quantity(value: object, where: str = "") -> Quantity:
    """Parse a quantity written as a YAML string or number; a bad one names ``where``."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ManifestError(where, f"must be a quantity (a string or a number), not {_kind(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ManifestError(where, f"invalid quantity {_q(repr(value))}")
    text = value if isinstance(value, str) else repr(value)
    m = _QUANTITY.fullmatch(text)
    if m is None:
        raise ManifestError(where, f"invalid quantity {_q(text)}")
    number = Fraction(Decimal(m["num"]))
    suffix = m["suffix"]
    if suffix in _BINARY:
        scale = Fraction(1024 ** _BINARY[suffix])
    else:
        exponent = _DECIMAL[suffix] if suffix in _DECIMAL else int(suffix[1:])
        if abs(exponent) > _MAX_EXPONENT:
            raise ManifestError(where, f"invalid quantity {_q(text)}: exponent out of range")
        scale = Fraction(10) ** exponent
    amount = number * scale
    return Quantity(-amount if m["sign"] == "-" else amount, text)


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
class PodSpec:
    containers: tuple[Container, ...]
    init_containers: tuple[Container, ...] = ()
    volumes: tuple[Volume, ...] = ()
    restart_policy: RestartPolicy = RestartPolicy.ALWAYS
    termination_grace_period_seconds: int = DEFAULT_GRACE_PERIOD
    hostname: str | None = None
    host_network: bool = False
    share_process_namespace: bool = False
    security_context: PodSecurityContext = field(default_factory=PodSecurityContext)


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
        for c in self.all_containers:
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


# ============================================================================= reading helpers


def _q(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__  # e.g. a YAML timestamp


def _at(base: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{base}[{key}]"
    return f"{base}.{key}" if base else key


class _Range:
    __slots__ = ("hi", "lo", "text")

    def __init__(self, lo: int, hi: int, text: str) -> None:
        self.lo, self.hi, self.text = lo, hi, text


_NONNEG = _Range(0, 2**31 - 1, "a non-negative integer")
_GRACE = _Range(0, 2**63 - 1, "a non-negative integer")
_PORT = _Range(1, 65535, "an integer between 1 and 65535")
_ID = _Range(0, MAX_ID, f"an integer between 0 and {MAX_ID}")
_MODE = _Range(0, 0o777, "a number between 0 and 0777 (octal), both inclusive")


_E = TypeVar("_E", bound=StrEnum)


class _Obj:
    """One manifest object being read. Like the API server, a null field counts as absent."""

    __slots__ = ("data", "path")

    def __init__(self, data: object, path: str) -> None:
        if not isinstance(data, dict):
            raise ManifestError(path, f"must be an object, not {_kind(data)}")
        for key in data:
            if not isinstance(key, str):
                raise ManifestError(path, f"field names must be strings, not {key!r}")
        self.data: dict[str, object] = data
        self.path = path

    def fields(
        self,
        known: frozenset[str],
        unsupported: frozenset[str] = frozenset(),
        ignored: frozenset[str] = frozenset(),
    ) -> None:
        """Reject every field not in ``known`` (or ``ignored``), naming the first one."""
        for key in self.data:
            if key in known or key in ignored:
                continue
            if key in unsupported:
                raise ManifestError(self.at(key), "not supported by corral")
            raise ManifestError(self.at(key), "unknown field")

    def at(self, key: str) -> str:
        return _at(self.path, key)

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def get(self, key: str) -> object:
        return self.data.get(key)

    def str_(self, key: str, default: str | None = None) -> str | None:
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, str):
            raise ManifestError(self.at(key), f"must be a string, not {_kind(value)}")
        return value

    def req_str(self, key: str) -> str:
        value = self.str_(key)
        if not value:
            raise ManifestError(self.at(key), "is required")
        return value

    def int_(self, key: str, rng: _Range, default: int | None = None) -> int | None:
        value = self.data.get(key)
        if value is None:
            return default
        return _as_int(value, self.at(key), rng)

    def flag(self, key: str, default: bool = False) -> bool:
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise ManifestError(self.at(key), f"must be true or false, not {_kind(value)}")
        return value

    def opt_flag(self, key: str) -> bool | None:
        return self.flag(key) if self.has(key) else None

    def items(self, key: str) -> Iterator[tuple[object, str]]:
        value = self.data.get(key)
        if value is None:
            return iter(())
        where = self.at(key)
        if not isinstance(value, list):
            raise ManifestError(where, f"must be a list, not {_kind(value)}")
        return ((item, _at(where, i)) for i, item in enumerate(value))

    def objs(self, key: str) -> list[_Obj]:
        return [_Obj(item, where) for item, where in self.items(key)]

    def strs(self, key: str) -> tuple[str, ...]:
        out = []
        for item, where in self.items(key):
            if not isinstance(item, str):
                raise ManifestError(where, f"must be a string, not {_kind(item)}")
            out.append(item)
        return tuple(out)

    def obj(self, key: str) -> _Obj | None:
        value = self.data.get(key)
        return None if value is None else _Obj(value, self.at(key))

    def choice(self, key: str, enum: type[_E], default: _E) -> _E:
        value = self.str_(key)
        if value is None:
            return default
        try:
            return enum(value)
        except ValueError:
            allowed = ", ".join(_q(e.value) for e in enum if e.value)
            raise ManifestError(
                self.at(key), f"unsupported value {_q(value)}: must be one of {allowed}"
            ) from None

    def str_map(self, key: str) -> dict[str, str]:
        value = self.data.get(key)
        if value is None:
            return {}
        where = self.at(key)
        if not isinstance(value, dict):
            raise ManifestError(where, f"must be an object of strings, not {_kind(value)}")
        for k, v in value.items():
            if not isinstance(k, str):
                raise ManifestError(where, f"keys must be strings, not {k!r}")
            if not isinstance(v, str):
                raise ManifestError(_at(where, k), f"must be a string, not {_kind(v)}")
        return dict(value)


def _as_int(value: object, where: str, rng: _Range) -> int:
    # bool is an int in Python but not in YAML/JSON; 1.0 is not an integer for the API server.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ManifestError(where, f"must be {rng.text}, not {_kind(value)}")
    if not rng.lo <= value <= rng.hi:
        raise ManifestError(where, f"must be {rng.text}, not {value}")
    return value


# ============================================================================= name rules

_DNS_LABEL = re.compile(r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(
    r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*"
)
_QUALIFIED_NAME = re.compile(r"[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?")
_CONFIG_KEY = re.compile(r"[-._a-zA-Z0-9]+")
_UID = re.compile(r"[0-9A-Za-z][-0-9A-Za-z]{0,63}")
_HTTP_TOKEN = re.compile(r"[-!#$%&'*+.^_`|~0-9A-Za-z]+")


def _check_dns_label(value: str, where: str) -> None:
    if len(value) > 63:
        raise ManifestError(where, f"invalid value {_q(value)}: must be no more than 63 characters")
    if not _DNS_LABEL.fullmatch(value):
        raise ManifestError(
            where,
            f"invalid value {_q(value)}: a lowercase RFC 1123 label must consist of lower case"
            " alphanumeric characters or '-', and must start and end with an alphanumeric"
            " character",
        )


def _check_dns_subdomain(value: str, where: str) -> None:
    if len(value) > 253:
        raise ManifestError(
            where, f"invalid value {_q(value)}: must be no more than 253 characters"
        )
    if not _DNS_SUBDOMAIN.fullmatch(value):
        raise ManifestError(
            where,
            f"invalid value {_q(value)}: a lowercase RFC 1123 subdomain must consist of lower"
            " case alphanumeric characters, '-' or '.', and must start and end with an"
            " alphanumeric character",
        )


def _qualified_name_problem(key: str) -> str | None:
    """Why ``key`` is not a Kubernetes qualified name (``[prefix/]name``), or None."""
    prefix, slash, name = key.rpartition("/")
    if slash and not prefix:
        return "prefix part must be non-empty"
    if prefix:
        if len(prefix) > 253 or not _DNS_SUBDOMAIN.fullmatch(prefix):
            return "prefix part must be a lowercase RFC 1123 subdomain"
        if "/" in prefix:
            return "a qualified name must have at most one '/'"
    if not name:
        return "name part must be non-empty"
    if len(name) > 63:
        return "name part must be no more than 63 characters"
    if not _QUALIFIED_NAME.fullmatch(name):
        return (
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must"
            " start and end with an alphanumeric character"
        )
    return None


def _check_port_name(value: str, where: str) -> None:
    """IANA_SVC_NAME: at most 15 characters, [a-z0-9-], a letter, no '-' at an end or twice."""
    if len(value) > 15:
        raise ManifestError(where, f"invalid value {_q(value)}: must be no more than 15 characters")
    if not re.fullmatch(r"[a-z0-9-]+", value):
        raise ManifestError(
            where,
            f"invalid value {_q(value)}: must contain only alphanumeric characters (a-z, 0-9)"
            " and hyphens (-)",
        )
    if "--" in value or value.startswith("-") or value.endswith("-"):
        raise ManifestError(
            where, f"invalid value {_q(value)}: hyphens must not start, end or be adjacent"
        )
    if not re.search(r"[a-z]", value):
        raise ManifestError(where, f"invalid value {_q(value)}: must contain at least one letter")


def _check_relative(value: str, where: str) -> None:
    if value.startswith("/"):
        raise ManifestError(where, f"must be a relative path, not {_q(value)}")
    if ".." in value.split("/"):
        raise ManifestError(where, f"must not contain '..': {_q(value)}")
    if "\0" in value:
        raise ManifestError(where, "must not contain a NUL byte")


def _check_absolute(value: str, where: str) -> None:
    if not value.startswith("/"):
        raise ManifestError(where, f"must be an absolute path, not {_q(value)}")
    if "\0" in value:
        raise ManifestError(where, "must not contain a NUL byte")


_ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.xz", ".tar.zst")


def is_image_archive(image: str) -> bool:
    """True when a container's ``image`` is the path of an image tarball, not an image name."""
    return image.startswith(("/", "./", "../")) or image.endswith(_ARCHIVE_SUFFIXES)


def _local_path(base_dir: str | None, path: str) -> str:
    return os.path.abspath(os.path.join(base_dir or os.getcwd(), os.path.expanduser(path)))


# ============================================================================= the parser

_TOP = frozenset({"apiVersion", "kind", "metadata", "spec"})
_META = frozenset({"name", "namespace", "uid", "labels", "annotations"})
_META_UNSUPPORTED = frozenset(
    {"generateName", "ownerReferences", "finalizers", "deletionTimestamp"}
    | {"deletionGracePeriodSeconds"}
)
_META_IGNORED = frozenset(
    {"creationTimestamp", "resourceVersion", "generation", "selfLink", "managedFields"}
)
_SPEC = frozenset(
    {"containers", "initContainers", "volumes", "restartPolicy", "terminationGracePeriodSeconds"}
    | {"hostname", "hostNetwork", "shareProcessNamespace", "securityContext"}
)
_SPEC_UNSUPPORTED = frozenset(
    "activeDeadlineSeconds affinity automountServiceAccountToken dnsConfig dnsPolicy"
    " enableServiceLinks ephemeralContainers hostAliases hostIPC hostPID hostUsers"
    " imagePullSecrets nodeName nodeSelector os overhead preemptionPolicy priority"
    " priorityClassName readinessGates resourceClaims resources runtimeClassName schedulerName"
    " schedulingGates serviceAccount serviceAccountName setHostnameAsFQDN subdomain tolerations"
    " topologySpreadConstraints".split()
)
_CONTAINER = frozenset(
    "name image imagePullPolicy command args env workingDir ports resources securityContext"
    " livenessProbe readinessProbe startupProbe volumeMounts".split()
)
_CONTAINER_UNSUPPORTED = frozenset(
    "envFrom lifecycle resizePolicy restartPolicy stdin stdinOnce terminationMessagePath"
    " terminationMessagePolicy tty volumeDevices".split()
)
_INIT_FORBIDDEN = ("livenessProbe", "readinessProbe", "startupProbe")
_ENV = frozenset({"name", "value", "valueFrom"})
_VALUE_FROM_UNSUPPORTED = frozenset(
    {"configMapKeyRef", "secretKeyRef", "resourceFieldRef", "fileKeyRef"}
)
_FIELD_REFS = frozenset({"metadata.name", "metadata.namespace", "metadata.uid", "status.podIP"})
_PORT_FIELDS = frozenset({"containerPort", "hostPort", "protocol", "name"})
_RESOURCE_NAMES = ("cpu", "memory")
_SECURITY = frozenset(
    "runAsUser runAsGroup readOnlyRootFilesystem privileged capabilities"
    " allowPrivilegeEscalation".split()
)
_SECURITY_UNSUPPORTED = frozenset(
    "appArmorProfile procMount runAsNonRoot seLinuxOptions seccompProfile windowsOptions".split()
)
_POD_SECURITY = frozenset({"runAsUser", "runAsGroup"})
_POD_SECURITY_UNSUPPORTED = frozenset(
    "appArmorProfile fsGroup fsGroupChangePolicy runAsNonRoot seLinuxChangePolicy seLinuxOptions"
    " seccompProfile supplementalGroups supplementalGroupsPolicy sysctls windowsOptions".split()
)
_PROBE = frozenset(
    "exec httpGet tcpSocket initialDelaySeconds periodSeconds timeoutSeconds successThreshold"
    " failureThreshold".split()
)
_PROBE_UNSUPPORTED = frozenset({"grpc", "terminationGracePeriodSeconds"})
_PROBE_HANDLERS = ("exec", "httpGet", "tcpSocket")
_VOLUME_SOURCES = ("emptyDir", "hostPath", "configMap", "secret")
_VOLUME_UNSUPPORTED = frozenset(
    "awsElasticBlockStore azureDisk azureFile cephfs cinder csi downwardAPI ephemeral fc"
    " flexVolume flocker gcePersistentDisk gitRepo glusterfs image iscsi nfs"
    " persistentVolumeClaim photonPersistentDisk portworxVolume projected quobyte rbd scaleIO"
    " storageos vsphereVolume".split()
)
_MOUNT = frozenset({"name", "mountPath", "readOnly", "subPath", "subPathExpr"})
_MOUNT_UNSUPPORTED = frozenset({"mountPropagation", "recursiveReadOnly"})


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
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        docs = [d for d in yaml.load_all(text, Loader=loader) if d is not None]  # noqa: S506
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or str(e)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ManifestError("", f"invalid YAML{where}: {problem}") from None
    if len(docs) != 1:
        raise ManifestError("", f"expected one Pod document, found {len(docs)}")
    return parse_pod(docs[0], base_dir=base_dir)


def parse_pod(data: object, base_dir: str | None = None) -> Pod:
    """Validate and default a manifest already decoded into dicts and lists.

    ``base_dir`` is where relative local paths (image tarballs, configMap/secret sources) are
    taken from: the manifest's directory; the working directory when None.
    """
    r = _Obj(data, "")
    r.fields(_TOP, ignored=frozenset({"status"}))
    api_version = r.str_("apiVersion")
    if api_version != API_VERSION:
        raise ManifestError("apiVersion", f"must be {_q(API_VERSION)}, not {_q(api_version or '')}")
    kind = r.str_("kind")
    if kind != KIND:
        raise ManifestError("kind", f"must be {_q(KIND)}, not {_q(kind or '')}")
    meta = r.obj("metadata")
    if meta is None:
        raise ManifestError("metadata", "is required")
    spec = r.obj("spec")
    if spec is None:
        raise ManifestError("spec", "is required")
    metadata = _parse_metadata(meta)
    return Pod(metadata, _parse_spec(spec, metadata, base_dir))


def _parse_metadata(r: _Obj) -> ObjectMeta:
    r.fields(_META, _META_UNSUPPORTED, _META_IGNORED)
    name = r.req_str("name")
    _check_dns_subdomain(name, r.at("name"))
    namespace = r.str_("namespace") or "default"
    _check_dns_label(namespace, r.at("namespace"))
    uid = r.str_("uid") or None
    if uid is not None and not _UID.fullmatch(uid):
        # The uid names the pod's cgroup (pod<uid>): nothing that could leave that directory.
        raise ManifestError(
            r.at("uid"), f"invalid value {_q(uid)}: must be 1-64 letters, digits or '-'"
        )
    labels = r.str_map("labels")
    for key, value in labels.items():
        where = r.at("labels")
        problem = _qualified_name_problem(key)
        if problem:
            raise ManifestError(where, f"invalid label key {_q(key)}: {problem}")
        if len(value) > 63:
            raise ManifestError(
                _at(where, key),
                f"invalid label value {_q(value)}: must be no more than 63 characters",
            )
        if value and not _QUALIFIED_NAME.fullmatch(value):
            raise ManifestError(
                _at(where, key),
                f"invalid label value {_q(value)}: must be empty or consist of alphanumeric"
                " characters, '-', '_' or '.', and must start and end with an alphanumeric"
                " character",
            )
    annotations = r.str_map("annotations")
    size = 0
    for key, value in annotations.items():
        where = r.at("annotations")
        problem = _qualified_name_problem(key.lower())
        if problem:
            raise ManifestError(where, f"invalid annotation key {_q(key)}: {problem}")
        prefix = key.rpartition("/")[0]
        if (prefix == "corral.io" or prefix.endswith(".corral.io")) and not key.startswith(
            (CONFIGMAP_ANNOTATION, SECRET_ANNOTATION)
        ):
            raise ManifestError(_at(where, key), "unknown corral annotation")
        size += len(key) + len(value)
    if size > _MAX_ANNOTATIONS_BYTES:
        raise ManifestError(
            r.at("annotations"), f"too long: must have at most {_MAX_ANNOTATIONS_BYTES} bytes"
        )
    return ObjectMeta(
        name=name,
        namespace=namespace,
        uid=uid,
        labels=MappingProxyType(labels),
        annotations=MappingProxyType(annotations),
    )


def _parse_spec(r: _Obj, meta: ObjectMeta, base_dir: str | None) -> PodSpec:
    r.fields(_SPEC, _SPEC_UNSUPPORTED)
    host_network = r.flag("hostNetwork")
    pod_sec = r.obj("securityContext")
    pod_security = PodSecurityContext()
    if pod_sec is not None:
        pod_sec.fields(_POD_SECURITY, _POD_SECURITY_UNSUPPORTED)
        pod_security = PodSecurityContext(
            run_as_user=pod_sec.int_("runAsUser", _ID),
            run_as_group=pod_sec.int_("runAsGroup", _ID),
        )
    volumes = _parse_volumes(r, meta, base_dir)
    volume_names = {v.name for v in volumes}
    names: set[str] = set()

    def containers(key: str, init: bool) -> tuple[Container, ...]:
        out = []
        for c in r.objs(key):
            container = _parse_container(
                c, init, pod_security, volume_names, host_network, base_dir
            )
            if container.name in names:
                raise ManifestError(c.at("name"), f"Duplicate value: {_q(container.name)}")
            names.add(container.name)
            out.append(container)
        return tuple(out)

    init_containers = containers("initContainers", True)
    app_containers = containers("containers", False)
    if not app_containers:
        raise ManifestError(r.at("containers"), "is required: a pod needs at least one container")
    _check_host_ports(r, app_containers)
    hostname = r.str_("hostname") or None
    if hostname is not None:
        _check_dns_label(hostname, r.at("hostname"))
    return PodSpec(
        containers=app_containers,
        init_containers=init_containers,
        volumes=volumes,
        restart_policy=r.choice("restartPolicy", RestartPolicy, RestartPolicy.ALWAYS),
        termination_grace_period_seconds=r.int_(
            "terminationGracePeriodSeconds", _GRACE, DEFAULT_GRACE_PERIOD
        )
        or 0,
        hostname=hostname,
        host_network=host_network,
        share_process_namespace=r.flag("shareProcessNamespace"),
        security_context=pod_security,
    )


def _check_host_ports(r: _Obj, containers: tuple[Container, ...]) -> None:
    seen: set[tuple[int, Protocol]] = set()
    for i, c in enumerate(containers):
        for j, port in enumerate(c.ports):
            if port.host_port is None:
                continue
            key = (port.host_port, port.protocol)
            if key in seen:
                where = f"{r.at('containers')}[{i}].ports[{j}].hostPort"
                raise ManifestError(where, f'Duplicate value: "{port.host_port}/{port.protocol}"')
            seen.add(key)


# ----------------------------------------------------------------------------- containers


def _parse_container(
    r: _Obj,
    init: bool,
    pod_security: PodSecurityContext,
    volume_names: set[str],
    host_network: bool,
    base_dir: str | None,
) -> Container:
    r.fields(_CONTAINER, _CONTAINER_UNSUPPORTED)
    if init:
        for key in _INIT_FORBIDDEN:
            if key in r.data:
                raise ManifestError(r.at(key), "may not be set for init containers")
    name = r.req_str("name")
    _check_dns_label(name, r.at("name"))
    image = r.req_str("image")
    if image != image.strip():
        raise ManifestError(r.at("image"), "must not have leading or trailing whitespace")
    archive = is_image_archive(image)
    working_dir = r.str_("workingDir") or None
    if working_dir is not None:
        _check_absolute(working_dir, r.at("workingDir"))
    ports = _parse_ports(r, host_network)
    port_names = {p.name: p.container_port for p in ports if p.name}
    probes: dict[str, Probe | None] = {}
    for key in _INIT_FORBIDDEN:
        probe = r.obj(key)
        probes[key] = None if probe is None else _parse_probe(probe, key, port_names)
    return Container(
        name=name,
        image=image,
        image_archive=_local_path(base_dir, image) if archive else None,
        image_pull_policy=r.choice("imagePullPolicy", PullPolicy, _default_pull(image, archive)),
        command=r.strs("command"),
        args=r.strs("args"),
        env=_parse_env(r),
        working_dir=working_dir,
        ports=ports,
        resources=_parse_resources(r.obj("resources")),
        security_context=_parse_security(r.obj("securityContext"), pod_security),
        liveness_probe=probes["livenessProbe"],
        readiness_probe=probes["readinessProbe"],
        startup_probe=probes["startupProbe"],
        volume_mounts=_parse_mounts(r, volume_names),
    )


def _default_pull(image: str, archive: bool) -> PullPolicy:
    """Kubernetes: Always for an image without a tag or with :latest, else IfNotPresent."""
    if archive or "@" in image:
        return PullPolicy.IF_NOT_PRESENT
    last = image.rpartition("/")[2]
    _, colon, tag = last.partition(":")
    return PullPolicy.ALWAYS if not colon or tag == "latest" else PullPolicy.IF_NOT_PRESENT


def _parse_env(r: _Obj) -> tuple[EnvVar, ...]:
    out = []
    for e in r.objs("env"):
        e.fields(_ENV)
        name = e.req_str("name")
        if "=" in name or not all(" " <= ch <= "~" for ch in name):
            raise ManifestError(
                e.at("name"),
                f"invalid value {_q(name)}: must consist of printable ASCII characters except '='",
            )
        value = e.str_("value", "") or ""
        source = e.obj("valueFrom")
        if source is None:
            out.append(EnvVar(name, value))
            continue
        if value:
            raise ManifestError(e.at("valueFrom"), "may not be specified when `value` is not empty")
        source.fields(frozenset({"fieldRef"}), _VALUE_FROM_UNSUPPORTED)
        ref = source.obj("fieldRef")
        if ref is None:
            raise ManifestError(source.path, "must specify one of: `fieldRef`")
        ref.fields(frozenset({"fieldPath", "apiVersion"}))
        api = ref.str_("apiVersion") or API_VERSION
        if api != API_VERSION:
            raise ManifestError(ref.at("apiVersion"), f'unsupported value {_q(api)}: must be "v1"')
        path = ref.req_str("fieldPath")
        if path not in _FIELD_REFS:
            allowed = ", ".join(_q(p) for p in sorted(_FIELD_REFS))
            raise ManifestError(
                ref.at("fieldPath"), f"unsupported value {_q(path)}: must be one of {allowed}"
            )
        out.append(EnvVar(name, field_ref=path))
    return tuple(out)


def _parse_ports(r: _Obj, host_network: bool) -> tuple[ContainerPort, ...]:
    out: list[ContainerPort] = []
    names: set[str] = set()
    for p in r.objs("ports"):
        p.fields(_PORT_FIELDS, frozenset({"hostIP"}))
        container_port = p.int_("containerPort", _PORT)
        if container_port is None:
            raise ManifestError(p.at("containerPort"), "is required")
        host_port = p.int_("hostPort", _Range(0, 65535, "an integer between 0 and 65535")) or None
        if host_network:
            if host_port is not None and host_port != container_port:
                raise ManifestError(
                    p.at("hostPort"), "must match `containerPort` when `hostNetwork` is true"
                )
            host_port = container_port
        name = p.str_("name") or None
        if name is not None:
            _check_port_name(name, p.at("name"))
            if name in names:
                raise ManifestError(p.at("name"), f"Duplicate value: {_q(name)}")
            names.add(name)
        protocol = p.choice("protocol", Protocol, Protocol.TCP)
        out.append(ContainerPort(container_port, host_port, protocol, name))
    return tuple(out)


def _parse_resource_list(r: _Obj | None) -> ResourceList:
    if r is None:
        return ResourceList()
    values: dict[str, Quantity | None] = {}
    for key in r.data:
        if key not in _RESOURCE_NAMES:
            raise ManifestError(
                r.at(key), "resource not supported by corral: only cpu and memory are"
            )
    for key in _RESOURCE_NAMES:
        raw = r.get(key)
        if raw is None:
            values[key] = None
            continue
        q = parse_quantity(raw, r.at(key))
        if q.value < 0:
            raise ManifestError(r.at(key), f"must be greater than or equal to 0, not {_q(str(q))}")
        values[key] = q
    return ResourceList(cpu=values["cpu"], memory=values["memory"])


def _parse_resources(r: _Obj | None) -> ResourceRequirements:
    if r is None:
        return ResourceRequirements()
    r.fields(frozenset({"requests", "limits"}), frozenset({"claims"}))
    limits = _parse_resource_list(r.obj("limits"))
    requests = _parse_resource_list(r.obj("requests"))
    # Kubernetes defaulting: a request that is not given defaults to its limit.
    requests = ResourceList(
        cpu=requests.cpu if requests.cpu is not None else limits.cpu,
        memory=requests.memory if requests.memory is not None else limits.memory,
    )
    for key in _RESOURCE_NAMES:
        req: Quantity | None = getattr(requests, key)
        lim: Quantity | None = getattr(limits, key)
        if req is not None and lim is not None and req > lim:
            raise ManifestError(
                _at(_at(r.path, "requests"), key),
                f"invalid value {_q(str(req))}: must be less than or equal to {key} limit of"
                f" {_q(str(lim))}",
            )
    return ResourceRequirements(requests=requests, limits=limits)


def _capability(value: object, where: str) -> str:
    from runtime.config import CAPABILITIES

    if not isinstance(value, str):
        raise ManifestError(where, f"must be a string, not {_kind(value)}")
    name = value.upper()
    if name == "ALL":
        return name
    if not name.startswith("CAP_"):
        name = "CAP_" + name
    if name not in CAPABILITIES:
        raise ManifestError(where, f"unknown capability {_q(value)}")
    return name


def _parse_security(r: _Obj | None, pod: PodSecurityContext) -> SecurityContext:
    if r is None:
        return SecurityContext(run_as_user=pod.run_as_user, run_as_group=pod.run_as_group)
    r.fields(_SECURITY, _SECURITY_UNSUPPORTED)
    caps = Capabilities()
    c = r.obj("capabilities")
    if c is not None:
        c.fields(frozenset({"add", "drop"}))
        caps = Capabilities(
            add=tuple(_capability(v, where) for v, where in c.items("add")),
            drop=tuple(_capability(v, where) for v, where in c.items("drop")),
        )
    run_as_user = r.int_("runAsUser", _ID)
    run_as_group = r.int_("runAsGroup", _ID)
    privileged = r.flag("privileged")
    escalation = r.opt_flag("allowPrivilegeEscalation")
    if escalation is False and privileged:
        raise ManifestError(
            r.path, "cannot set `allowPrivilegeEscalation` to false and `privileged` to true"
        )
    if escalation is False and "CAP_SYS_ADMIN" in caps.add:
        raise ManifestError(
            r.path,
            "cannot set `allowPrivilegeEscalation` to false and `capabilities.Add` CAP_SYS_ADMIN",
        )
    return SecurityContext(
        run_as_user=run_as_user if run_as_user is not None else pod.run_as_user,
        run_as_group=run_as_group if run_as_group is not None else pod.run_as_group,
        read_only_root_filesystem=r.flag("readOnlyRootFilesystem"),
        privileged=privileged,
        capabilities=caps,
        allow_privilege_escalation=escalation,
    )


# ----------------------------------------------------------------------------- probes


def _probe_port(r: _Obj, port_names: Mapping[str, int]) -> tuple[int, str | None]:
    value = r.get("port")
    where = r.at("port")
    if value is None:
        raise ManifestError(where, "is required")
    if isinstance(value, str):  # IntOrString: a string is a port name, even "8080"
        _check_port_name(value, where)
        if value not in port_names:
            raise ManifestError(where, f"no container port named {_q(value)}")
        return port_names[value], value
    return _as_int(value, where, _PORT), None


def _parse_probe(r: _Obj, kind: str, port_names: Mapping[str, int]) -> Probe:
    r.fields(_PROBE, _PROBE_UNSUPPORTED)
    given = [key for key in _PROBE_HANDLERS if r.has(key)]
    if not given:
        raise ManifestError(r.path, "must specify a handler type: exec, httpGet or tcpSocket")
    if len(given) > 1:
        raise ManifestError(r.at(given[1]), "may not specify more than 1 handler type")
    h = _Obj(r.get(given[0]), r.at(given[0]))
    handler: ExecAction | HTTPGetAction | TCPSocketAction
    if given[0] == "exec":
        h.fields(frozenset({"command"}))
        command = h.strs("command")
        if not command:
            raise ManifestError(h.at("command"), "is required")
        handler = ExecAction(command)
    elif given[0] == "httpGet":
        h.fields(frozenset({"path", "port", "host", "scheme", "httpHeaders"}))
        port, port_name = _probe_port(h, port_names)
        headers = []
        for hh in h.objs("httpHeaders"):
            hh.fields(frozenset({"name", "value"}))
            name = hh.req_str("name")
            if not _HTTP_TOKEN.fullmatch(name):
                raise ManifestError(hh.at("name"), f"invalid HTTP header name {_q(name)}")
            headers.append(HTTPHeader(name, hh.str_("value", "") or ""))
        path = h.str_("path") or "/"
        if not path.startswith("/"):
            path = "/" + path  # the kubelet's URL building does the same
        handler = HTTPGetAction(
            port=port,
            path=path,
            host=h.str_("host") or None,
            scheme=h.choice("scheme", Scheme, Scheme.HTTP),
            http_headers=tuple(headers),
            port_name=port_name,
        )
    else:
        h.fields(frozenset({"port", "host"}))
        port, port_name = _probe_port(h, port_names)
        handler = TCPSocketAction(port=port, host=h.str_("host") or None, port_name=port_name)

    def seconds(key: str, default: int) -> int:
        # The API server defaults a 0 (or missing) period, timeout and thresholds.
        value = r.int_(key, _NONNEG, 0) or 0
        return value or default

    success = seconds("successThreshold", 1)
    if kind != "readinessProbe" and success != 1:
        raise ManifestError(r.at("successThreshold"), f"must be 1, not {success}")
    return Probe(
        handler=handler,
        initial_delay_seconds=r.int_("initialDelaySeconds", _NONNEG, 0) or 0,
        period_seconds=seconds("periodSeconds", 10),
        timeout_seconds=seconds("timeoutSeconds", 1),
        success_threshold=success,
        failure_threshold=seconds("failureThreshold", 3),
    )


# ----------------------------------------------------------------------------- volumes


def _parse_mounts(r: _Obj, volume_names: set[str]) -> tuple[VolumeMount, ...]:
    out: list[VolumeMount] = []
    paths: set[str] = set()
    for m in r.objs("volumeMounts"):
        m.fields(_MOUNT, _MOUNT_UNSUPPORTED)
        name = m.req_str("name")
        if name not in volume_names:
            raise ManifestError(m.at("name"), f"not found: no volume named {_q(name)}")
        mount_path = m.req_str("mountPath")
        _check_absolute(mount_path, m.at("mountPath"))
        mount_path = posixpath.normpath(mount_path)
        if mount_path.startswith("//"):
            mount_path = "/" + mount_path.lstrip("/")
        if mount_path in paths:
            raise ManifestError(m.at("mountPath"), f"Duplicate value: {_q(mount_path)}")
        paths.add(mount_path)
        sub_path = m.str_("subPath") or None
        if sub_path is not None:
            _check_relative(sub_path, m.at("subPath"))
        sub_path_expr = m.str_("subPathExpr") or None
        if sub_path_expr is not None:
            if sub_path is not None:
                raise ManifestError(
                    m.at("subPathExpr"), "subPathExpr and subPath are mutually exclusive"
                )
            _check_relative(sub_path_expr, m.at("subPathExpr"))
        out.append(VolumeMount(name, mount_path, m.flag("readOnly"), sub_path, sub_path_expr))
    return tuple(out)


def _parse_volumes(r: _Obj, meta: ObjectMeta, base_dir: str | None) -> tuple[Volume, ...]:
    out: list[Volume] = []
    names: set[str] = set()
    for v in r.objs("volumes"):
        v.fields(frozenset({"name", *_VOLUME_SOURCES}), _VOLUME_UNSUPPORTED)
        name = v.req_str("name")
        _check_dns_label(name, v.at("name"))
        if name in names:
            raise ManifestError(v.at("name"), f"Duplicate value: {_q(name)}")
        names.add(name)
        given = [key for key in _VOLUME_SOURCES if key in v.data]
        if not given:
            raise ManifestError(
                v.path, "must specify a volume type: emptyDir, hostPath, configMap or secret"
            )
        if len(given) > 1:
            raise ManifestError(v.at(given[1]), "may not specify more than 1 volume type")
        kind = given[0]
        # `emptyDir: {}` is the usual spelling, and YAML `emptyDir:` (null) means the same.
        raw = v.get(kind)
        s = _Obj({} if raw is None else raw, v.at(kind))
        source: VolumeSource
        if kind == "emptyDir":
            s.fields(frozenset({"medium", "sizeLimit"}))
            size = s.get("sizeLimit")
            size_limit = None if size is None else parse_quantity(size, s.at("sizeLimit"))
            if size_limit is not None and size_limit.value < 0:
                raise ManifestError(s.at("sizeLimit"), "must be greater than or equal to 0")
            source = EmptyDirVolume(
                s.choice("medium", StorageMedium, StorageMedium.DEFAULT), size_limit
            )
        elif kind == "hostPath":
            s.fields(frozenset({"path", "type"}))
            path = s.req_str("path")
            _check_absolute(path, s.at("path"))
            if ".." in path.split("/"):
                raise ManifestError(s.at("path"), f"must not contain '..': {_q(path)}")
            source = HostPathVolume(path, s.choice("type", HostPathType, HostPathType.UNSET))
        else:
            source = _parse_projection(s, kind, meta, base_dir)
        out.append(Volume(name, source))
    return tuple(out)


def _parse_projection(
    s: _Obj, kind: str, meta: ObjectMeta, base_dir: str | None
) -> ConfigMapVolume | SecretVolume:
    name_key = "name" if kind == "configMap" else "secretName"
    s.fields(frozenset({name_key, "items", "defaultMode", "optional"}))
    name = s.req_str(name_key)
    _check_dns_subdomain(name, s.at(name_key))
    optional = s.flag("optional")
    prefix = CONFIGMAP_ANNOTATION if kind == "configMap" else SECRET_ANNOTATION
    source = meta.annotations.get(prefix + name)
    if not source and not optional:
        raise ManifestError(
            s.at(name_key),
            f"no local source for {kind} {_q(name)}: add the pod annotation"
            f" {prefix}{name}: <file or directory>",
        )
    items: list[KeyToPath] = []
    paths: set[str] = set()
    for it in s.objs("items"):
        it.fields(frozenset({"key", "path", "mode"}))
        key = it.req_str("key")
        if len(key) > 253 or not _CONFIG_KEY.fullmatch(key) or key in (".", ".."):
            raise ManifestError(
                it.at("key"),
                f"invalid value {_q(key)}: a valid config key must consist of alphanumeric"
                " characters, '-', '_' or '.'",
            )
        path = it.req_str("path")
        _check_relative(path, it.at("path"))
        if path in paths:
            raise ManifestError(it.at("path"), f"Duplicate value: {_q(path)}")
        paths.add(path)
        items.append(KeyToPath(key, path, it.int_("mode", _MODE)))
    default_mode = s.int_("defaultMode", _MODE)
    if default_mode is None:
        default_mode = DEFAULT_MODE
    local = _local_path(base_dir, source) if source else None
    if kind == "configMap":
        return ConfigMapVolume(name, local, tuple(items), default_mode, optional)
    return SecretVolume(name, local, tuple(items), default_mode, optional)
