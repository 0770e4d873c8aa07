"""The volumes the node makes from API objects: configMap, secret, downwardAPI and projected
(configMap, secret, downwardAPI and serviceAccountToken sources).

The kubelet decides each volume's files as Kubernetes does (keys or ``items``, modes from the
item or the volume's ``defaultMode``, ``optional`` sources, downward API values) and writes
them, flat, into a directory of the agent's, ``<data-dir>/volume-sources/<pod uid>/<volume>/``
(0700). A ServiceAccount token is a secret too: the pod manager requests it (TokenRequest) and
hands it in (``tokens``, by audience and lifetime). A volume holding anything of a secret is
written to a tmpfs the agent mounts there (``.../secret/``), so a secret never reaches its disk.
The pod handed to the node runtime gets, for each such volume, a configMap volume (a secret
volume when a secret is in it: the runtime puts those on a tmpfs) whose ``items`` say which
source file goes to which path with what mode, and the runtime's local-source annotation naming
the directory (runtime.pod.manifest). When the files change (an object, the pod's labels, a
renewed token), they are written again and the runtime projects the volume again (an atomic
``..data`` swap)."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from pathlib import Path
from typing import Any

from corral_common import hostsys
from orchestrator.client import Obj

__all__ = [
    "PreparedVolumes",
    "TokenSource",
    "Tokens",
    "VolumeError",
    "drop_sources",
    "prepare_volumes",
    "sources_of",
    "token_sources",
]

CONFIGMAP_ANNOTATION = "configmap.corral.io/"
SECRET_ANNOTATION = "secret.corral.io/"
SECRET_TMPFS_SIZE = 16 * 1024 * 1024
DEFAULT_MODE = 0o644
KINDS = ("configMap", "secret", "downwardAPI", "projected")

Lookup = Callable[[str, str, str], Obj | None]  # (kind, namespace, name) -> object
TOKEN_SECONDS = 3600  # a serviceAccountToken source's default expirationSeconds
TOKEN_MIN_SECONDS = 600
Tokens = Mapping[tuple[str, int], str]  # (audience, expirationSeconds) -> token


class VolumeError(Exception):
    """A volume's source cannot be had: ``volume`` names it."""

    def __init__(self, volume: str, message: str) -> None:
        super().__init__(f"volume {volume!r}: {message}")
        self.volume = volume


@dataclass(frozen=True)
class File:
    path: str
    data: bytes
    mode: int


def sources_of(pod: Obj) -> list[str]:
    """``configmap/<ns>/<name>`` and ``secret/<ns>/<name>`` of every object the pod's volumes
    read (an index: a change to one of them concerns the pod)."""
    ns = (pod.get("metadata") or {}).get("namespace") or "default"
    out = []
    for v in (pod.get("spec") or {}).get("volumes") or []:
        srcs = [v] + [s for s in (v.get("projected") or {}).get("sources") or []]
        for s in srcs:
            if s.get("configMap") is not None:
                out.append(f"configmap/{ns}/{s['configMap'].get('name') or ''}")
            if s.get("secret") is not None:
                name = s["secret"].get("secretName") or s["secret"].get("name") or ""
                out.append(f"secret/{ns}/{name}")
    return out


@dataclass(frozen=True)
class TokenSource:
    """A projected serviceAccountToken source: the token the volume needs ("" audience: the
    API server's own)."""

    volume: str
    audience: str
    seconds: int


def _token_source(volume: str, src: Obj) -> TokenSource:
    seconds = src.get("expirationSeconds")
    if seconds is None:
        seconds = TOKEN_SECONDS
    if not isinstance(seconds, int) or isinstance(seconds, bool) or seconds < TOKEN_MIN_SECONDS:
        raise VolumeError(
            volume, f"serviceAccountToken expirationSeconds {seconds!r}: at least 600 is required"
        )
    audience = src.get("audience") or ""
    if not isinstance(audience, str):
        raise VolumeError(volume, f"serviceAccountToken audience {audience!r} is not a string")
    return TokenSource(volume, audience, seconds)


def token_sources(pod: Obj) -> list[TokenSource]:
    """The ServiceAccount tokens the pod's projected volumes hold."""
    out = []
    for v in (pod.get("spec") or {}).get("volumes") or []:
        for s in (v.get("projected") or {}).get("sources") or []:
            if s.get("serviceAccountToken") is not None:
                out.append(_token_source(v.get("name", ""), s["serviceAccountToken"]))
    return out


def _keys(kind: str, obj: Obj) -> dict[str, bytes]:
    keys: dict[str, bytes] = {}
    for k, val in (obj.get("data") or {}).items():
        keys[k] = base64.b64decode(val) if kind == "secret" else str(val).encode()
    for k, val in (obj.get("binaryData") or {}).items():
        keys[k] = base64.b64decode(val)
    return keys


def _object_files(
    lookup: Lookup, ns: str, volume: str, kind: str, src: Obj, default_mode: int
) -> list[File]:
    name = src.get("secretName" if kind == "secret" and "secretName" in src else "name") or ""
    obj = lookup(kind, ns, name)
    optional = bool(src.get("optional"))
    if obj is None:
        if optional:
            return []
        raise VolumeError(volume, f'{kind} "{name}" not found')
    keys = _keys(kind, obj)
    items = src.get("items") or []
    if not items:
        return [File(k, v, default_mode) for k, v in sorted(keys.items())]
    out = []
    for it in items:
        key = it.get("key", "")
        if key not in keys:
            if optional:
                continue
            raise VolumeError(volume, f"{kind} {name!r} has no key {key!r} (listed in items)")
        mode = it["mode"] if it.get("mode") is not None else default_mode
        out.append(File(it.get("path", key), keys[key], mode))
    return out


def _map_text(m: dict[str, str]) -> str:
    import json

    return "\n".join(f"{k}={json.dumps(v)}" for k, v in sorted(m.items()))


def _field(pod: Obj, path: str, volume: str) -> str:
    meta = pod.get("metadata") or {}
    if path in ("metadata.name", "metadata.namespace", "metadata.uid"):
        return str(meta.get(path.split(".", 1)[1]) or "")
    for what in ("labels", "annotations"):
        values = meta.get(what) or {}
        if path == f"metadata.{what}":
            return _map_text(values)
        prefix = f"metadata.{what}['"
        if path.startswith(prefix) and path.endswith("']"):
            return str(values.get(path[len(prefix) : -2], ""))
    raise VolumeError(volume, f"fieldRef {path!r} is not supported in a downwardAPI volume")


def _resource(pod: Obj, ref: Obj, volume: str) -> str:
    from kubemodel.quantity import parse_quantity

    resource = ref.get("resource", "")
    kind, _, what = resource.partition(".")
    if kind not in ("limits", "requests") or what not in ("cpu", "memory"):
        raise VolumeError(volume, f"resourceFieldRef {resource!r} is not supported")
    containers = (pod.get("spec") or {}).get("containers") or []
    name = ref.get("containerName") or (containers[0]["name"] if containers else "")
    c = next((c for c in containers if c.get("name") == name), None)
    if c is None:
        raise VolumeError(volume, f"resourceFieldRef: no container {name!r}")
    value = ((c.get("resources") or {}).get(kind) or {}).get(what)
    if value is None:
        if kind == "requests":
            value = "0"
        else:  # no limit: the node's allocatable, as the kubelet says
            value = str(os.cpu_count() or 1) if what == "cpu" else str(_mem_total())
    divisor = parse_quantity(ref.get("divisor") or "1").value
    amount = parse_quantity(value).value
    if not divisor:
        raise VolumeError(volume, "resourceFieldRef divisor must not be 0")
    return str(int((Decimal(amount.numerator) / Decimal(amount.denominator)
                    / (Decimal(divisor.numerator) / Decimal(divisor.denominator)))
                   .to_integral_value(ROUND_CEILING)))  # fmt: skip


def _mem_total() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


def _downward_files(pod: Obj, volume: str, src: Obj, default_mode: int) -> list[File]:
    out = []
    for it in src.get("items") or []:
        mode = it["mode"] if it.get("mode") is not None else default_mode
        if it.get("fieldRef") is not None:
            text = _field(pod, it["fieldRef"].get("fieldPath", ""), volume)
        elif it.get("resourceFieldRef") is not None:
            text = _resource(pod, it["resourceFieldRef"], volume)
        else:
            raise VolumeError(volume, f"item {it.get('path')!r} has no fieldRef")
        out.append(File(it.get("path", ""), text.encode(), mode))
    return out


def volume_files(
    lookup: Lookup, pod: Obj, v: Obj, tokens: Tokens | None = None
) -> tuple[list[File], bool]:
    """The files of an API volume, and whether a secret (or a token) is among its sources."""
    ns = (pod.get("metadata") or {}).get("namespace") or "default"
    name = v.get("name", "")
    if v.get("configMap") is not None:
        src = v["configMap"]
        mode = src.get("defaultMode", DEFAULT_MODE)
        return _object_files(lookup, ns, name, "configmap", src, mode), False
    if v.get("secret") is not None:
        src = v["secret"]
        mode = src.get("defaultMode", DEFAULT_MODE)
        return _object_files(lookup, ns, name, "secret", src, mode), True
    if v.get("downwardAPI") is not None:
        src = v["downwardAPI"]
        return _downward_files(pod, name, src, src.get("defaultMode", DEFAULT_MODE)), False
    proj = v["projected"]
    mode = proj.get("defaultMode", DEFAULT_MODE)
    files: list[File] = []
    secret = False
    for i, s in enumerate(proj.get("sources") or []):
        if s.get("configMap") is not None:
            files += _object_files(lookup, ns, name, "configmap", s["configMap"], mode)
        elif s.get("secret") is not None:
            files += _object_files(lookup, ns, name, "secret", s["secret"], mode)
            secret = True
        elif s.get("downwardAPI") is not None:
            files += _downward_files(pod, name, s["downwardAPI"], mode)
        elif s.get("serviceAccountToken") is not None:
            src = s["serviceAccountToken"]
            want = _token_source(name, src)
            token = (tokens or {}).get((want.audience, want.seconds))
            if token is None:
                raise VolumeError(name, "no ServiceAccount token was had for it")
            files.append(File(src.get("path") or "token", token.encode(), mode))
            secret = True
        else:
            what = next(iter(s), "an empty source")
            raise VolumeError(name, f"projected sources[{i}]: {what} is not supported yet")
    return files, secret


@dataclass
class PreparedVolumes:
    """What ``prepare_volumes`` made: the runtime's view of each volume, its annotations, and
    a digest of each volume's files (to tell a change)."""

    volumes: dict[str, Obj]
    annotations: dict[str, str]
    digests: dict[str, str]


def _digest(files: list[File]) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.path}\0{f.mode}\0".encode() + hashlib.sha256(f.data).digest())
    return h.hexdigest()


def _secret_tmpfs(base: Path) -> Path:
    d = base / "secret"
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not os.path.ismount(d):
        hostsys.mount(
            "tmpfs",
            d,
            "tmpfs",
            hostsys.MS_NOSUID | hostsys.MS_NODEV | hostsys.MS_NOEXEC,
            f"mode=700,size={SECRET_TMPFS_SIZE}",
            step=f"mount tmpfs on {d}",
        )
    return d


def _write(where: Path, files: list[File]) -> None:
    where.mkdir(mode=0o700, parents=True, exist_ok=True)
    want = {f"k{i}": f.data for i, f in enumerate(files)}
    for old in os.listdir(where):
        if old not in want:
            os.unlink(where / old)
    # not fsync'd: the sources are written again from the API whenever the pod is made
    for key, data in want.items():
        hostsys.write_atomic(where / key, data, 0o600, durable=False)


def prepare_volumes(
    lookup: Lookup, pod: Obj, base: Path, write: bool = True, tokens: Tokens | None = None
) -> PreparedVolumes:
    """Decide the files of the pod's API-fed volumes and (``write``) write them below
    ``base``; ``tokens`` are the ServiceAccount tokens of its ``token_sources``. Without
    ``write`` nothing is made or mounted: the answer (its digests) is all a running pod's
    sync asks for, to tell whether anything changed."""
    out = PreparedVolumes({}, {}, {})
    for v in (pod.get("spec") or {}).get("volumes") or []:
        if not any(v.get(k) is not None for k in KINDS):
            continue
        name = v.get("name", "")
        files, secret = volume_files(lookup, pod, v, tokens)
        out.digests[name] = _digest(files)
        source = f"{name}.volume.corral"  # names this volume's source, not an API object
        if write:
            where = (_secret_tmpfs(base) if secret else base / "configmap") / name
            _write(where, files)
        else:
            where = base / ("secret" if secret else "configmap") / name
        items: list[Any] = [
            {"key": f"k{i}", "path": f.path, "mode": f.mode} for i, f in enumerate(files)
        ]
        if secret:
            out.volumes[name] = {"name": name, "secret": {"secretName": source, "items": items}}
            out.annotations[SECRET_ANNOTATION + source] = str(where)
        else:
            out.volumes[name] = {"name": name, "configMap": {"name": source, "items": items}}
            out.annotations[CONFIGMAP_ANNOTATION + source] = str(where)
    return out


def drop_sources(base: Path) -> None:
    """Remove a pod's sources (the secret tmpfs unmounted first)."""
    if not base.exists():
        return
    # the tmpfs this module mounts, unmounted without a read of every mount of the host
    # (it grows with the node's pods); then the one read that proves nothing is left below
    secret = base / "secret"
    for _ in range(8):  # mounts may be stacked; False: no mount (left) there
        try:
            if not hostsys.host().umount(secret):
                break
        except OSError:
            break  # umount_all tries again, and says what stays
    hostsys.umount_all(base)
    shutil.rmtree(base, ignore_errors=True)
