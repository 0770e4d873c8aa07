"""Overlayfs root filesystems, mounted and unmounted through the host seam
(``corral_common.hostsys``).

The mount costs the same whatever the image size: the layer trees are used in place as
read-only lower layers, and ``workdir`` gets an empty ``upper`` and ``work`` for the
container's writes.
"""

from __future__ import annotations

import errno
from pathlib import Path

from corral_common import hostsys

from .errors import MountError

MNT_DETACH = hostsys.MNT_DETACH


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
    checked = [_escape(p) for p in lowers]
    _escape(upper)
    _escape(work)
    try:
        hostsys.host().mount_overlay(checked, upper, work, dest)
    except hostsys.HostError as e:
        raise MountError(e.step, e.errno or errno.EIO, e.strerror or "") from None


def umount(dest: Path) -> None:
    """Unmount ``dest``; a busy mount is detached lazily. Not mounted is not an error."""
    try:
        hostsys.host().umount(dest)
    except hostsys.HostError as e:
        raise MountError(e.step, e.errno or errno.EIO, e.strerror or "") from None
