"""configMap and secret volumes fed from the API.

The objects' keys are written into a directory of the agent's,
``<data-dir>/volume-sources/<pod uid>/{configmap,secret}/<name>/`` (0700; the secret one is a
tmpfs the agent mounts, so a secret never reaches the disk), and the pod handed to the node
runtime names it with the runtime's local-source annotations (``configmap.corral.io/<name>``,
``secret.corral.io/<name>``, see runtime.pod.manifest). When an object changes, its files are
written again and the runtime projects the volume again (an atomic ``..data`` swap)."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from corral_common import hostsys
from orchestrator.client import Obj

__all__ = [
    "VolumeError",
    "drop_sources",
    "referenced",
    "source_digest",
    "write_sources",
]

CONFIGMAP_ANNOTATION = "configmap.corral.io/"
SECRET_ANNOTATION = "secret.corral.io/"
SECRET_TMPFS_SIZE = 16 * 1024 * 1024

Lookup = Callable[[str, str, str], Obj | None]  # (kind, namespace, name) -> object


class VolumeError(Exception):
    """A volume's source cannot be had: ``volume`` names it."""

    def __init__(self, volume: str, message: str) -> None:
        super().__init__(f"volume {volume!r}: {message}")
        self.volume = volume


def referenced(pod: Obj) -> list[tuple[str, str, str]]:
    """(volume name, kind, object name) of the pod's configMap and secret volumes."""
    out = []
    for v in (pod.get("spec") or {}).get("volumes") or []:
        if v.get("configMap") is not None:
            out.append((v.get("name", ""), "configmap", v["configMap"].get("name") or ""))
        elif v.get("secret") is not None:
            out.append((v.get("name", ""), "secret", v["secret"].get("secretName") or ""))
    return out


def _keys(kind: str, obj: Obj) -> dict[str, bytes]:
    keys: dict[str, bytes] = {}
    for k, val in (obj.get("data") or {}).items():
        keys[k] = base64.b64decode(val) if kind == "secret" else str(val).encode()
    for k, val in (obj.get("binaryData") or {}).items():
        keys[k] = base64.b64decode(val)
    return keys


def source_digest(kind: str, obj: Obj | None) -> str:
    """What a volume's content is made of (the object's keys), to tell a change."""
    h = hashlib.sha256()
    for k, v in sorted(_keys(kind, obj).items()) if obj is not None else ():
        h.update(k.encode() + b"\0" + hashlib.sha256(v).digest())
    return h.hexdigest()


def _write_keys(where: Path, keys: dict[str, bytes], volume: str) -> None:
    where.mkdir(mode=0o700, parents=True, exist_ok=True)
    for key in keys:
        if "/" in key or key in (".", "..") or not key:
            raise VolumeError(volume, f"invalid key {key!r}")
    for old in os.listdir(where):
        if old not in keys:
            os.unlink(where / old)
    for key, data in keys.items():
        hostsys.write_atomic(where / key, data, 0o600)


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


def write_sources(lookup: Lookup, pod: Obj, base: Path) -> tuple[dict[str, str], dict[str, str]]:
    """Write the keys of every configMap and secret the pod mounts below ``base``: the
    annotations that name them for the runtime, and each volume's ``source_digest``."""
    ns = (pod.get("metadata") or {}).get("namespace") or "default"
    annotations: dict[str, str] = {}
    digests: dict[str, str] = {}
    volumes = {v.get("name"): v for v in (pod.get("spec") or {}).get("volumes") or []}
    for volume, kind, name in referenced(pod):
        src = volumes[volume]["configMap" if kind == "configmap" else "secret"]
        obj = lookup(kind, ns, name)
        digests[volume] = source_digest(kind, obj)
        if obj is None:
            if src.get("optional"):
                continue
            raise VolumeError(volume, f'{kind} "{name}" not found')
        top = _secret_tmpfs(base) if kind == "secret" else base / "configmap"
        where = top / name
        _write_keys(where, _keys(kind, obj), volume)
        prefix = CONFIGMAP_ANNOTATION if kind == "configmap" else SECRET_ANNOTATION
        annotations[prefix + name] = str(where)
    return annotations, digests


def drop_sources(base: Path) -> None:
    """Remove a pod's sources (the secret tmpfs unmounted first)."""
    if not base.exists():
        return
    hostsys.umount_all(base)
    shutil.rmtree(base, ignore_errors=True)
