"""Overlayfs root filesystems: mount(2) and umount2(2) through ctypes.

The mount costs the same whatever the image size: the layer trees are used in place as
read-only lower layers, and ``workdir`` gets an empty ``upper`` and ``work`` for the
container's writes.
"""

from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path

from .errors import MountError

MNT_DETACH = 2
# The legacy mount(2) data argument is one page; longer lowerdir lists go through the new
# mount API, one ``lowerdir+`` per layer (Linux >= 6.8).
_MAX_DATA = 4095
# Syscall numbers 428..432 are the same on every architecture.
SYS_MOVE_MOUNT, SYS_FSOPEN, SYS_FSCONFIG, SYS_FSMOUNT = 429, 430, 431, 432
FSOPEN_CLOEXEC = FSMOUNT_CLOEXEC = 1
FSCONFIG_SET_STRING, FSCONFIG_CMD_CREATE = 1, 6
MOVE_MOUNT_F_EMPTY_PATH = 4
AT_FDCWD = -100

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.syscall.restype = ctypes.c_long


def _escape(p: Path) -> str:
    s = str(p)
    for bad in (",", ":", "\\"):
        if bad in s:
            raise MountError("overlay options", errno.EINVAL, f"path {s!r} contains {bad!r}")
    return s


def mount(lowers: list[Path], dest: Path, workdir: Path) -> None:
    """Mount an overlay of ``lowers`` (topmost first) at ``dest``; upper and work in ``workdir``."""
    upper, work = workdir / "upper", workdir / "work"
    for d in (workdir, upper, work):
        d.mkdir(mode=0o755, parents=d is workdir, exist_ok=d is workdir)
    if not lowers:
        empty = workdir / "empty"
        empty.mkdir(mode=0o755)
        lowers = [empty]
    dest.mkdir(mode=0o755, parents=True, exist_ok=True)
    lowerdir = ":".join(_escape(p) for p in lowers)
    data = f"lowerdir={lowerdir},upperdir={_escape(upper)},workdir={_escape(work)}"
    if len(data) > _MAX_DATA:
        _mount_fs_api(lowers, upper, work, dest)
        return
    ret = _libc.mount(b"overlay", os.fsencode(dest), b"overlay", 0, data.encode())
    if ret < 0:
        e = ctypes.get_errno()
        raise MountError(f"mount overlay on {dest}", e, os.strerror(e))


def umount(dest: Path) -> None:
    """Unmount ``dest``; a busy mount is detached lazily. Not mounted is not an error."""
    target = os.fsencode(dest)
    if _libc.umount2(target, 0) == 0:
        return
    e = ctypes.get_errno()
    if e == errno.EBUSY and _libc.umount2(target, MNT_DETACH) == 0:
        return
    if e in (errno.EINVAL, errno.ENOENT):
        return  # not a mount point (any more)
    raise MountError(f"umount {dest}", e, os.strerror(e))


def _sys(step: str, nr: int, *args: object) -> int:
    ret = _libc.syscall(nr, *args)
    if ret < 0:
        e = ctypes.get_errno()
        raise MountError(step, e, os.strerror(e))
    return int(ret)


def _mount_fs_api(lowers: list[Path], upper: Path, work: Path, dest: Path) -> None:
    fs = _sys("fsopen(overlay)", SYS_FSOPEN, b"overlay", FSOPEN_CLOEXEC)
    try:
        opts = [(b"lowerdir+", p) for p in lowers] + [(b"upperdir", upper), (b"workdir", work)]
        for key, path in opts:
            _sys(f"fsconfig({key.decode()}={path})", SYS_FSCONFIG, fs, FSCONFIG_SET_STRING,
                 key, os.fsencode(path), 0)  # fmt: skip
        _sys("fsconfig(create)", SYS_FSCONFIG, fs, FSCONFIG_CMD_CREATE, None, None, 0)
        mnt = _sys("fsmount(overlay)", SYS_FSMOUNT, fs, FSMOUNT_CLOEXEC, 0)
    finally:
        os.close(fs)
    try:
        _sys(f"move_mount({dest})", SYS_MOVE_MOUNT, mnt, b"", AT_FDCWD, os.fsencode(dest),
             MOVE_MOUNT_F_EMPTY_PATH)  # fmt: skip
    finally:
        os.close(mnt)
