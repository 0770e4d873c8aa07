"""subPath mounts, made the kubelet's way (its fix for CVE-2017-1002101).

A ``subPath`` (or an expanded ``subPathExpr``) names a file or directory inside a volume that
containers write to, so it may be a symlink an earlier container made (``ln -s / esc``).
Joining it onto the volume's host path and handing that to the runtime would bind the host's
``/``. Instead, at container start (after the init containers ran) the monitor's prestart
step, ``python -m runtime.pod.reset --subpaths``, calls ``mount_all``: each subPath is
opened inside its volume with openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS) (a relative
symlink that stays inside is followed; ``..``, an absolute symlink or a magic link that leaves
the volume is an error), a missing one is made as a directory one component at a time
(mkdirat, then opened with O_NOFOLLOW), and the opened fd is bind-mounted
(``/proc/self/fd/N``) onto a pod-owned path, ``volume-subpaths/<volume>/<container>/<index>``
below the pod directory: nothing can be swapped in between resolving and mounting. The
container's config.json binds that path. ``umount_container`` removes a container's subPath
mounts before it is created again; the pod's teardown unmounts everything below the pod
directory.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from dataclasses import asdict, dataclass
from pathlib import Path

from corral_common import hostsys
from corral_common.rmtree import rmtree
from runtime.errors import CorralError

__all__ = [
    "PLAN_FILE",
    "SUBPATH_DIR",
    "SubPathError",
    "SubPathMount",
    "check_sub_path",
    "make_dirs_beneath",
    "mount_all",
    "read_plan",
    "umount_container",
    "write_plan",
]

SUBPATH_DIR = "volume-subpaths"  # below the pod directory
PLAN_FILE = "subpaths.json"  # below the container's directory


class SubPathError(CorralError):
    """A subPath could not be mounted; the message names the volume and the subPath."""

    def __init__(self, err: int, message: str) -> None:
        self.errno = err
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class SubPathMount:
    """One subPath of a container: resolved in ``source`` (the volume's host directory),
    mounted on ``target`` (absolute, below the pod's ``volume-subpaths/``). ``error``: the
    subPathExpr could not be expanded (the start fails with it)."""

    volume: str
    sub_path: str
    source: str
    target: str
    error: str = ""

    def where(self) -> str:
        return f"volume {self.volume!r} subPath {self.sub_path!r}"


def check_sub_path(sub_path: str) -> str | None:
    """Why ``sub_path`` can never be inside a volume (absolute, a ``..`` component, empty,
    NUL), or None."""
    if not sub_path.strip("/"):
        return "is empty"
    if sub_path.startswith("/"):
        return "must not be an absolute path"
    if ".." in sub_path.split("/"):
        return "must not contain '..'"
    if "\0" in sub_path:
        return "must not contain a NUL byte"
    return None


def _placeholder(target: Path, is_dir: bool) -> None:
    """An empty directory or file to mount on (what was there before is gone)."""
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if is_dir:
        target.mkdir(mode=0o755)
    else:
        os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o644))


# ============================================================================= resolving


def make_dirs_beneath(volfd: int, sub_path: str) -> int:
    """Make the missing directories of ``sub_path`` below ``volfd``, as the kubelet's
    SafeMakeDir: the longest existing prefix is resolved beneath the volume, then each missing
    component is made with mkdirat (the volume's mode) and opened with O_NOFOLLOW. Returns an
    O_PATH fd of the last one."""
    parts = [p for p in sub_path.split("/") if p and p != "."]
    mode = stat.S_IMODE(os.fstat(volfd).st_mode)
    have = len(parts)
    fd = -1
    while have > 0:
        try:
            fd = hostsys.open_beneath(volfd, "/".join(parts[:have]), os.O_PATH | os.O_DIRECTORY)
            break
        except FileNotFoundError:
            have -= 1
    if fd < 0:
        fd = os.dup(volfd)
    try:
        for name in parts[have:]:
            try:
                os.mkdir(name, mode, dir_fd=fd)
            except FileExistsError:  # made meanwhile, or a symlink to nothing: refused
                if stat.S_ISLNK(os.lstat(name, dir_fd=fd).st_mode):
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), name) from None
            flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
            child = os.open(name, flags, dir_fd=fd)
            try:
                os.fchmod(child, mode)  # not the umask's
            except BaseException:
                os.close(child)
                raise
            os.close(fd)
            fd = child
        return fd
    except BaseException:
        os.close(fd)
        raise


def _resolve(m: SubPathMount) -> int:
    """An fd open on ``m``'s subPath inside its volume (made as a directory if missing)."""
    why = m.error or check_sub_path(m.sub_path)
    if why:
        raise SubPathError(errno.EINVAL, f"{m.where()}: {why}")
    try:
        volfd = os.open(m.source, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise SubPathError(e.errno, f"{m.where()}: open volume {m.source}: {e.strerror}") from e
    try:
        try:
            return hostsys.open_beneath(volfd, m.sub_path)  # EXDEV if it leaves
        except FileNotFoundError:
            return make_dirs_beneath(volfd, m.sub_path)
    except OSError as e:
        if e.errno == errno.EXDEV:
            why = "resolves outside the volume (a symlink or '..' leaves it)"
        elif e.errno == errno.ELOOP:
            why = "is a symlink to nothing, or has too many levels of symlinks"
        elif e.errno == errno.ENOSYS:
            why = "openat2 is not available (Linux >= 5.6 is needed for subPath)"
        elif e.errno in (errno.ENOTDIR, errno.EEXIST):
            why = "a component is not a directory"
        else:
            why = e.strerror or str(e)
        raise SubPathError(e.errno or errno.EINVAL, f"{m.where()}: {why}") from e
    finally:
        os.close(volfd)


# ============================================================================= mounting


def write_plan(cdir: str | os.PathLike[str], mounts: list[SubPathMount]) -> None:
    from runtime.pod.store import write_atomic

    text = json.dumps([asdict(m) for m in mounts], indent=1) + "\n"
    write_atomic(Path(cdir) / PLAN_FILE, text, 0o600)


def read_plan(cdir: str | os.PathLike[str]) -> list[SubPathMount]:
    try:
        data = json.loads((Path(cdir) / PLAN_FILE).read_text())
    except FileNotFoundError:
        return []
    return [SubPathMount(**d) for d in data]


def _container_dirs(pod_path: Path, container: str) -> list[Path]:
    top = pod_path / SUBPATH_DIR
    if not top.is_dir():
        return []
    return [d / container for d in sorted(top.iterdir()) if (d / container).exists()]


def umount_container(pod_path: str | os.PathLike[str], container: str) -> None:
    """Remove the subPath mounts of ``container`` (and their placeholders)."""
    from runtime.pod.prepare import mounts_under, umount_all

    for d in _container_dirs(Path(pod_path), container):
        umount_all(d)
        if not mounts_under(d):  # never remove through a mount
            rmtree(d)


def mount_all(pod_path: str | os.PathLike[str], container: str) -> None:
    """Mount every subPath of ``container`` (its plan, ``containers/<name>/subpaths.json``)
    on its target; the ones made are unmounted again when one fails."""
    from runtime.pod.prepare import umount_all

    pod = Path(pod_path)
    plan = read_plan(pod / "containers" / container)
    made: list[Path] = []
    try:
        for m in plan:
            target = Path(m.target)
            if pod / SUBPATH_DIR not in target.parents:
                raise SubPathError(errno.EINVAL, f"{m.where()}: target {target} not in the pod")
            fd = _resolve(m)
            try:
                is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
                _placeholder(target, is_dir)
                made.append(target)
                try:
                    hostsys.host().bind_fd(fd, target)
                except OSError as e:
                    raise SubPathError(e.errno, f"{m.where()}: {e}") from e
            finally:
                os.close(fd)
    except BaseException:
        for target in reversed(made):
            try:
                umount_all(target)
                if target.is_dir():
                    target.rmdir()
                else:
                    target.unlink()
            except OSError:
                pass
        raise
