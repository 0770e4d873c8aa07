"""The pod record: ``pod.json`` in each pod directory, typed.

Written by the ``corral`` process that creates the pod, then read by every later process:
``start``, status and listings, the monitor's ``finish`` and ``reset`` helpers, ``stop``,
``remove`` and ``gc``. ``teardown`` reads nothing else, so the record names every object the pod
holds on the host *before* it is made (images, the cgroup, volumes).

One reader (``read``) and one writer (``write``, atomic). The format is the one pods were
always written in (sorted keys, one space of indent), with an optional ``version``; a record
without it is version 1. A field this code does not know, a value of the wrong type or a
version newer than ``VERSION`` is refused with an error that names the pod and the file.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Literal

import msgspec

if TYPE_CHECKING:
    from runtime.pod.prepare import PodOptions

__all__ = [
    "VERSION",
    "CgroupRecord",
    "ContainerRecord",
    "PodRecord",
    "RecordError",
    "read",
    "write",
]

VERSION = 1
FILE = "pod.json"


class RecordError(ValueError):
    """pod.json is unreadable: ``path`` names it, ``reason`` says what is wrong."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class _Rec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    pass


class ContainerRecord(_Rec, frozen=True):
    """A container of the pod, init containers first, in the manifest's order; then the
    ephemeral containers added to it while it runs, in the order they were added."""

    name: str
    kind: Literal["init", "app", "ephemeral"]
    image: str  # as the manifest names it
    image_id: str  # the image store's id, which holds a ref for this pod


class CgroupRecord(_Rec, frozen=True):
    """The pod cgroup: its path below the cgroup parent, and its directory per hierarchy
    (``runtime.cgroups.manager_from_paths``)."""

    path: str
    paths: dict[str, str]


class PodRecord(_Rec, frozen=True, kw_only=True):
    """pod.json. ``uid``, ``name``, ``namespace`` and ``created`` are written first, at
    create; ``prepare`` adds ``images`` and ``containers``, then ``cgroup``, then ``volumes``,
    each before it makes them; ``start`` adds ``pod_ip``."""

    uid: str
    name: str
    namespace: str
    created: float  # time.time() at create
    qos: str = ""  # Guaranteed | Burstable | BestEffort
    host_network: bool = False
    share_pid: bool = False
    options: dict[str, Any] | None = None  # PodOptions.to_json(); read with pod_options()
    manifest: dict[str, Any] | None = None  # the Pod as the API returns it (kubemodel)
    base_dir: str | None = None  # the manifest's directory: relative image archives
    images: tuple[str, ...] = ()
    containers: tuple[ContainerRecord, ...] = ()
    cgroup: CgroupRecord | None = None
    volumes: dict[str, str] | None = None  # name -> path, relative to the pod directory
    pod_ip: str | None = None
    version: int = VERSION

    @classmethod
    def blank(cls, uid: str) -> PodRecord:
        """What a pod directory says before its pod.json is written: nothing but its uid."""
        return cls(uid=uid, name="", namespace="", created=0.0)

    def replace(self, **changes: Any) -> PodRecord:
        return msgspec.structs.replace(self, **changes)

    def container(self, name: str) -> ContainerRecord | None:
        for c in self.containers:
            if c.name == name:
                return c
        return None

    @property
    def container_names(self) -> list[str]:
        return [c.name for c in self.containers]

    @property
    def app_containers(self) -> list[str]:
        return [c.name for c in self.containers if c.kind == "app"]

    @property
    def has_init(self) -> bool:
        return any(c.kind == "init" for c in self.containers)

    def pod_options(self, fallback: PodOptions | None = None) -> PodOptions:
        """The ``PodOptions`` the pod was created with (``fallback`` for a record without
        them, or defaults when that is None). Kept as JSON: ``PodOptions.from_json`` reads
        the options of other versions (it ignores the ones it does not know)."""
        from runtime.pod.prepare import PodOptions

        if self.options:
            return PodOptions.from_json(self.options)
        return fallback if fallback is not None else PodOptions()

    def grace_period(self) -> int:
        """The manifest's terminationGracePeriodSeconds (30 without one)."""
        spec = (self.manifest or {}).get("spec") or {}
        value = spec.get("terminationGracePeriodSeconds")
        return int(value) if isinstance(value, int) else 30


_decoder = msgspec.json.Decoder(PodRecord)


def decode(data: bytes, path: str) -> PodRecord:
    """A record from the bytes of ``path``; RecordError naming what is wrong."""
    try:
        version = msgspec.json.decode(data, type=_Version).version
    except msgspec.DecodeError:
        version = VERSION  # the full decode below says what is wrong
    if version > VERSION:
        raise RecordError(
            path, f"record version {version} is newer than this corral reads ({VERSION})"
        )
    try:
        return _decoder.decode(data)
    except msgspec.ValidationError as e:
        raise RecordError(path, f"invalid pod record: {e}") from None
    except msgspec.DecodeError as e:
        raise RecordError(path, f"invalid JSON: {e}") from None


class _Version(msgspec.Struct):
    version: int = VERSION


def encode(record: PodRecord) -> bytes:
    """Sorted keys, one space of indent, a final newline: as pod.json was always written
    (by ``json.dumps``; msgspec's encoder is an order of magnitude faster, and writes
    non-ASCII text as UTF-8 rather than escaped)."""
    raw = msgspec.json.encode(msgspec.to_builtins(record), order="sorted")
    return msgspec.json.format(raw, indent=1) + b"\n"


def read(pod_dir: str | os.PathLike[str], uid: str) -> PodRecord | None:
    """``<pod_dir>/pod.json``; None while it is not written yet. RecordError when it cannot
    be read or is not a record of pod ``uid``."""
    from runtime.pod.store import read_bytes

    path = f"{os.fspath(pod_dir)}/{FILE}"
    try:
        data = read_bytes(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        raise RecordError(path, f"cannot read: {e.strerror or e}") from None
    record = decode(data, path)
    if record.uid != uid:
        raise RecordError(path, f"holds the record of pod {record.uid!r}, not {uid!r}")
    return record


def write(pod_dir: str | os.PathLike[str], record: PodRecord, durable: bool = True) -> None:
    """Replace ``<pod_dir>/pod.json`` atomically (a reader sees the old record or the new);
    ``durable``: on disk before it returns (``runtime.pod.store.write_atomic``)."""
    from runtime.pod.store import write_atomic

    write_atomic(f"{os.fspath(pod_dir)}/{FILE}", encode(record), durable=durable)
