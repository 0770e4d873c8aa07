"""The files a configMap or secret volume projects, read from its local source.

A manifest names each source with a pod annotation (``configmap.corral.io/<name>`` or
``secret.corral.io/<name>``, see ``runtime.pod.manifest``); this module lists that source's
keys and decides, as the kubelet does, which file of the volume each becomes and with what mode:

- a directory's keys are its regular files (symlinks to regular files included, subdirectories
  and other entries skipped), a file is a single key named after it;
- without ``items`` every key becomes a file of that name; with ``items`` only the listed keys,
  at their ``path``;
- a file's mode is its item's ``mode``, else the volume's ``defaultMode``;
- a missing source or key is an error unless the volume is ``optional`` (then it is skipped).

Errors are ``ManifestError``s that name the annotation or the item.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from typing import TYPE_CHECKING

from runtime.pod.errors import ManifestError

if TYPE_CHECKING:
    from runtime.pod.manifest import ConfigMapVolume, SecretVolume

__all__ = ["ProjectedFile", "projected_files", "source_keys"]

_CONFIG_KEY = re.compile(r"[-._a-zA-Z0-9]+")


@dataclass(frozen=True, slots=True)
class ProjectedFile:
    """One file of a projected volume: ``path`` inside the volume, the host file to copy from,
    and its mode."""

    path: str
    source: str
    mode: int


def _annotation(volume: ConfigMapVolume | SecretVolume) -> str:
    from runtime.pod.manifest import CONFIGMAP_ANNOTATION, SECRET_ANNOTATION, ConfigMapVolume

    if isinstance(volume, ConfigMapVolume):
        return f"metadata.annotations.{CONFIGMAP_ANNOTATION}{volume.name}"
    return f"metadata.annotations.{SECRET_ANNOTATION}{volume.secret_name}"


def _check_key(name: str, path: str, where: str) -> None:
    """A key is a file name of the volume: a config key, and none of the atomic writer's own
    ``..`` names (``..data``, the version directories)."""
    if len(name) > 253 or not _CONFIG_KEY.fullmatch(name) or name.startswith(".."):
        raise ManifestError(where, f"{path}: {name!r} is not a valid config key")


def source_keys(local_path: str, where: str = "") -> dict[str, str]:
    """The keys of a local source and the host file behind each, sorted by key."""
    try:
        st = os.stat(local_path)
    except OSError as e:
        raise ManifestError(where, f"cannot read {local_path}: {e.strerror}") from e
    if stat.S_ISREG(st.st_mode):
        name = os.path.basename(local_path)
        _check_key(name, local_path, where)
        return {name: local_path}
    if not stat.S_ISDIR(st.st_mode):
        raise ManifestError(where, f"{local_path} is neither a regular file nor a directory")
    keys: dict[str, str] = {}
    try:
        entries = sorted(os.scandir(local_path), key=lambda e: e.name)
    except OSError as e:
        raise ManifestError(where, f"cannot read {local_path}: {e.strerror}") from e
    for entry in entries:
        if not entry.is_file():  # follows symlinks, like kubectl's --from-file=DIR
            continue
        _check_key(entry.name, entry.path, where)
        keys[entry.name] = entry.path
    return keys


def projected_files(volume: ConfigMapVolume | SecretVolume) -> tuple[ProjectedFile, ...]:
    """The files ``volume`` shows its containers, from its local source."""
    where = _annotation(volume)
    if volume.local_path is None:
        return ()
    if volume.optional and not os.path.exists(volume.local_path):
        return ()
    keys = source_keys(volume.local_path, where)
    if not volume.items:
        return tuple(ProjectedFile(k, src, volume.default_mode) for k, src in keys.items())
    out = []
    for item in volume.items:
        src = keys.get(item.key)
        if src is None:
            if volume.optional:
                continue
            raise ManifestError(
                where, f"no key {item.key!r} in {volume.local_path} (listed in the volume's items)"
            )
        mode = volume.default_mode if item.mode is None else item.mode
        out.append(ProjectedFile(item.path, src, mode))
    return tuple(out)
