"""The image config checked against the OCI image spec (config.md), once, at the edge.

``check_config(cfg)`` raises ``FormatError`` naming the first field that is wrong
(``config.Cmd: must be an array of strings``), so inner code (``images.bundle``, the pod
bundles) can trust the types. Absent fields and ``null`` (docker writes ``"Cmd": null``) are
accepted wherever the spec makes a field optional; unknown fields are ignored, as the spec
asks of readers.
"""

from __future__ import annotations

import re
from typing import Any

from .errors import FormatError

__all__ = ["check_config"]

# OCI descriptor digests: algorithm ":" encoded (image-spec descriptor.md).
_DIGEST = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")
_ENV_NAME = re.compile(r"^[^=\0]+$")


class _Bad(Exception):
    def __init__(self, field: str, why: str) -> None:
        super().__init__(f"{field}: {why}")


def _opt_str(obj: dict[str, Any], key: str, where: str) -> None:
    v = obj.get(key)
    if v is not None and not isinstance(v, str):
        raise _Bad(f"{where}{key}", "must be a string")


def _opt_obj(obj: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    v = obj.get(key)
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise _Bad(f"{where}{key}", "must be an object")
    return v


def _opt_strs(obj: dict[str, Any], key: str, where: str) -> list[str]:
    v = obj.get(key)
    if v is None:
        return []
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise _Bad(f"{where}{key}", "must be an array of strings")
    return v


def _set_of_objects(obj: dict[str, Any], key: str, where: str) -> None:
    """ExposedPorts and Volumes: keys name the port or path, values are empty objects."""
    for k, v in _opt_obj(obj, key, where).items():
        if not k:
            raise _Bad(f"{where}{key}", "has an empty key")
        if v is not None and not isinstance(v, dict):
            raise _Bad(f"{where}{key}[{k!r}]", "must be an object")


def _container_config(c: dict[str, Any]) -> None:
    w = "config."
    for key in ("User", "WorkingDir", "StopSignal"):
        _opt_str(c, key, w)
    _set_of_objects(c, "ExposedPorts", w)
    _set_of_objects(c, "Volumes", w)
    for i, e in enumerate(_opt_strs(c, "Env", w)):
        name = e.partition("=")[0]
        if "=" not in e or not _ENV_NAME.match(name):
            raise _Bad(f"{w}Env[{i}]", f"must be NAME=VALUE, not {e!r}")
    _opt_strs(c, "Entrypoint", w)
    _opt_strs(c, "Cmd", w)
    for k, v in _opt_obj(c, "Labels", w).items():
        if not isinstance(v, str):
            raise _Bad(f"{w}Labels[{k!r}]", "must be a string")
    if c.get("ArgsEscaped") is not None and not isinstance(c["ArgsEscaped"], bool):
        raise _Bad(f"{w}ArgsEscaped", "must be a boolean")


def _rootfs(cfg: dict[str, Any]) -> None:
    if "rootfs" not in cfg:
        raise _Bad("rootfs", "is required")
    r = _opt_obj(cfg, "rootfs", "")
    if r.get("type") != "layers":
        raise _Bad("rootfs.type", f"must be 'layers', not {r.get('type')!r}")
    ids = r.get("diff_ids")
    if ids is None:
        ids = []
    if not isinstance(ids, list):
        raise _Bad("rootfs.diff_ids", "must be an array of digests")
    for i, d in enumerate(ids):
        if not isinstance(d, str) or not _DIGEST.match(d):
            raise _Bad(f"rootfs.diff_ids[{i}]", f"must be a digest (algorithm:hex), not {d!r}")


def _history(cfg: dict[str, Any]) -> None:
    h = cfg.get("history")
    if h is None:
        return
    if not isinstance(h, list):
        raise _Bad("history", "must be an array")
    for i, entry in enumerate(h):
        where = f"history[{i}]"
        if not isinstance(entry, dict):
            raise _Bad(where, "must be an object")
        for key in ("created", "author", "created_by", "comment"):
            _opt_str(entry, key, where + ".")
        if entry.get("empty_layer") is not None and not isinstance(entry["empty_layer"], bool):
            raise _Bad(f"{where}.empty_layer", "must be a boolean")


def check_config(cfg: Any, what: str = "image config", *, run_only: bool = False) -> None:
    """Raise ``FormatError("<what>: <field>: <why>")`` unless ``cfg`` is a valid image config.
    ``run_only``: check only what running it reads (the top level and ``config``)."""
    try:
        if not isinstance(cfg, dict):
            raise _Bad("(top level)", "must be an object")
        _container_config(_opt_obj(cfg, "config", ""))
        if run_only:
            return
        for key in ("architecture", "os", "variant", "os.version", "created", "author"):
            _opt_str(cfg, key, "")
        _opt_strs(cfg, "os.features", "")
        _rootfs(cfg)
        _history(cfg)
    except _Bad as e:
        raise FormatError(f"{what}: {e}") from None
