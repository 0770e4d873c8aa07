"""From an image config to the image-derived part of an OCI runtime config.

``oci_config(image_config, rootfs)`` returns a partial config.json dict (``process`` args,
env, cwd, user; ``annotations``; ``root``) for the caller to merge over the runtime's
defaults. ``User`` is resolved through the image's own /etc/passwd and /etc/group, read with
every symlink resolved inside ``rootfs`` (a hostile image cannot point us at the host's files).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import FormatError, ImageError
from .imageconfig import check_config

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
STOP_SIGNAL = "org.opencontainers.image.stopSignal"
MAX_LINKS = 40
MAX_DB = 4 << 20


class UserError(ImageError):
    """The image's User cannot be resolved."""


@dataclass(frozen=True)
class ExecUser:
    uid: int
    gid: int
    additional_gids: tuple[int, ...] = ()
    home: str = "/"


def read_in_root(root: Path, path: str, limit: int = MAX_DB) -> bytes | None:
    """Read ``path`` as seen from inside ``root``: symlinks (absolute or relative) resolve
    against ``root``, never above it. None if it does not exist."""
    rfd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    fds = [rfd]
    try:
        todo = [p for p in path.split("/") if p]
        stack: list[int] = [rfd]
        links = 0
        while todo:
            part = todo.pop(0)
            if part == ".":
                continue
            if part == "..":
                if len(stack) > 1:
                    stack.pop()
                continue
            try:
                st = os.stat(part, dir_fd=stack[-1], follow_symlinks=False)
            except (FileNotFoundError, NotADirectoryError):
                return None
            if stat.S_ISLNK(st.st_mode):
                links += 1
                if links > MAX_LINKS:
                    raise UserError(f"{path}: too many symlinks")
                target = os.readlink(part, dir_fd=stack[-1])
                if target.startswith("/"):
                    del stack[1:]
                todo = [p for p in target.split("/") if p] + todo
                continue
            if not todo:
                if not stat.S_ISREG(st.st_mode):
                    return None
                fd = os.open(part, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=stack[-1])
                with os.fdopen(fd, "rb") as f:
                    return f.read(limit)
            if not stat.S_ISDIR(st.st_mode):
                return None
            nfd = os.open(
                part, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=stack[-1]
            )
            fds.append(nfd)
            stack.append(nfd)
        return None
    finally:
        for fd in fds:
            os.close(fd)


def _db(root: Path | None, path: str) -> list[list[str]]:
    data = read_in_root(root, path) if root is not None else None
    if data is None:
        return []
    rows = []
    for line in data.decode("utf-8", "replace").splitlines():
        if line and not line.startswith("#"):
            rows.append(line.split(":"))
    return rows


def _int(s: str) -> int | None:
    return int(s) if s.isdigit() else None


def resolve_user(spec: str, root: Path | None) -> ExecUser:
    """``user``, ``uid``, ``user:group``, ``uid:gid`` (any mix) -> ids, the way runc and
    podman do: names must exist in the image; a bare uid need not; supplementary groups come
    from /etc/group membership unless a group was given."""
    spec = (spec or "").strip()
    user, _, group = spec.partition(":")
    passwd = _db(root, "/etc/passwd")
    groups = _db(root, "/etc/group")
    uid, gid, home, name = 0, 0, "/", ""
    if user:
        n = _int(user)
        row = next(
            (r for r in passwd if len(r) >= 7 and (r[0] == user if n is None else _int(r[2]) == n)),
            None,
        )
        if row is None and n is None:
            raise UserError(f"user {user!r} not found in the image's /etc/passwd")
        if row is not None:
            uid, gid, home, name = _int(row[2]) or 0, _int(row[3]) or 0, row[5] or "/", row[0]
        else:
            uid = n or 0
    elif passwd:
        row = next((r for r in passwd if len(r) >= 7 and r[2] == "0"), None)
        if row is not None:
            home, name = row[5] or "/", row[0]
    if group:
        g = _int(group)
        if g is None:
            grow = next((r for r in groups if len(r) >= 3 and r[0] == group), None)
            if grow is None:
                raise UserError(f"group {group!r} not found in the image's /etc/group")
            g = _int(grow[2]) or 0
        return ExecUser(uid, g, (), home)
    extra = []
    if name:
        for r in groups:
            if len(r) >= 4 and name in r[3].split(",") and (gi := _int(r[2])) is not None:
                if gi != gid and gi not in extra:
                    extra.append(gi)
    return ExecUser(uid, gid, tuple(extra), home)


def oci_config(
    image_config: dict[str, Any],
    rootfs: str | os.PathLike[str] | None,
    *,
    args: list[str] | None = None,
    entrypoint: list[str] | None = None,
    env: list[str] | None = None,
    user: str | None = None,
    cwd: str | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The image-derived part of an OCI config.json.

    ``args`` replaces the image's Cmd, ``entrypoint`` its Entrypoint, ``env`` entries are
    added after the image's (later wins), ``user``/``cwd`` override User/WorkingDir. Labels
    and StopSignal become annotations (the latter as ``org.opencontainers.image.stopSignal``,
    as umoci writes it). ``rootfs`` is the unpacked or mounted root, used to resolve the user.
    """
    check_config(image_config, run_only=True)  # stored before import checked it, or changed
    c = image_config.get("config") or {}
    ep = list(entrypoint if entrypoint is not None else c.get("Entrypoint") or [])
    cmd = list(args if args is not None else c.get("Cmd") or [])
    argv = ep + cmd
    if not argv:
        raise FormatError("image has no Entrypoint or Cmd and no command was given")
    envs = _merge_env(list(c.get("Env") or []), list(env or []))
    root = Path(rootfs) if rootfs is not None else None
    eu = resolve_user(user if user is not None else c.get("User") or "", root)
    keys = {e.split("=", 1)[0] for e in envs}
    if "PATH" not in keys:
        envs.insert(0, f"PATH={DEFAULT_PATH}")
    if "HOME" not in keys:
        envs.append(f"HOME={eu.home}")
    ann: dict[str, str] = {str(k): str(v) for k, v in (c.get("Labels") or {}).items()}
    if c.get("StopSignal"):
        ann[STOP_SIGNAL] = str(c["StopSignal"])
    ann.update(annotations or {})
    user_obj: dict[str, Any] = {"uid": eu.uid, "gid": eu.gid}
    if eu.additional_gids:
        user_obj["additionalGids"] = list(eu.additional_gids)
    out: dict[str, Any] = {
        "process": {
            "args": argv,
            "env": envs,
            "cwd": cwd or c.get("WorkingDir") or "/",
            "user": user_obj,
        },
        "annotations": ann,
    }
    if root is not None:
        out["root"] = {"path": str(root)}
    return out


def _merge_env(base: list[str], extra: list[str]) -> list[str]:
    out: dict[str, str] = {}
    for e in base + extra:
        k, _, v = e.partition("=")
        out.pop(k, None)
        out[k] = v
    return [f"{k}={v}" for k, v in out.items()]
