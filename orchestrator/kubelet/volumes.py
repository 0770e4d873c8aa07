"""configMap and secret volumes fed from the API: the objects' keys are written into a
directory of the agent's (``<data-dir>/volume-sources/<pod uid>/``, mode 0700) and the pod
handed to the node runtime names it with the runtime's local-source annotations
(``configmap.corral.io/<name>``, ``secret.corral.io/<name>``, see runtime.pod.manifest)."""

from __future__ import annotations

import base64
import os
import shutil
from pathlib import Path

from corral_common import hostsys
from orchestrator.client import ApiClient, NotFound, Obj
from orchestrator.client.rest import CONFIGMAPS, SECRETS

__all__ = ["VolumeError", "drop_sources", "write_sources"]

CONFIGMAP_ANNOTATION = "configmap.corral.io/"
SECRET_ANNOTATION = "secret.corral.io/"


class VolumeError(Exception):
    """A volume's source cannot be had: ``volume`` names it."""

    def __init__(self, volume: str, message: str) -> None:
        super().__init__(f"volume {volume!r}: {message}")
        self.volume = volume


def _write_keys(where: Path, keys: dict[str, bytes]) -> None:
    where.mkdir(mode=0o700, parents=True, exist_ok=True)
    for old in os.listdir(where):
        if old not in keys:
            os.unlink(where / old)
    for key, data in keys.items():
        if "/" in key or key in (".", ".."):
            raise VolumeError(str(where.name), f"invalid key {key!r}")
        hostsys.write_atomic(where / key, data, 0o600)


async def write_sources(client: ApiClient, pod: Obj, base: Path) -> dict[str, str]:
    """Write the keys of every configMap and secret the pod mounts below ``base``; the
    annotations that name them for the runtime."""
    meta = pod.get("metadata") or {}
    ns = meta.get("namespace") or "default"
    out: dict[str, str] = {}
    for v in (pod.get("spec") or {}).get("volumes") or []:
        if v.get("configMap") is not None:
            src, res, kind = v["configMap"], CONFIGMAPS, "configmap"
            name = src.get("name") or ""
        elif v.get("secret") is not None:
            src, res, kind = v["secret"], SECRETS, "secret"
            name = src.get("secretName") or ""
        else:
            continue
        try:
            obj = await client.get(res, ns, name)
        except NotFound:
            if src.get("optional"):
                continue
            raise VolumeError(v.get("name", ""), f'{kind} "{name}" not found') from None
        keys: dict[str, bytes] = {}
        for k, val in (obj.get("data") or {}).items():
            keys[k] = base64.b64decode(val) if kind == "secret" else str(val).encode()
        for k, val in (obj.get("binaryData") or {}).items():
            keys[k] = base64.b64decode(val)
        where = base / kind / name
        _write_keys(where, keys)
        prefix = CONFIGMAP_ANNOTATION if kind == "configmap" else SECRET_ANNOTATION
        out[prefix + name] = str(where)
    return out


def drop_sources(base: Path) -> None:
    shutil.rmtree(base, ignore_errors=True)
